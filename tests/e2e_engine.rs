//! End to end on a real model: `shardline run` with the `engine` backend on
//! SmolLM2-135M-Instruct (GGUF, CPU), the quickstart jobs on a few
//! documents. Checks outputs and metrics, that a rerun is answered from the
//! cache alone, that `backend = "none"` scores the engine's outputs, and
//! that a missing, corrupt or different model is refused clearly.
//!
//! Needs `SHARDLINE_SMOLLM2_GGUF` (scripts/test.sh sets it from
//! scripts/fetch-smollm2.sh); without it each test records why it skips
//! (`support::skip`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::*;

const MODEL_ENV: &str = "SHARDLINE_SMOLLM2_GGUF";

fn smollm2(test: &str) -> Option<PathBuf> {
    match std::env::var_os(MODEL_ENV) {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            skip(
                &format!("e2e_engine::{test}"),
                &format!(
                    "{MODEL_ENV} does not name the SmolLM2 GGUF file; run scripts/test.sh, or \
                     export {MODEL_ENV}=\"$(scripts/fetch-smollm2.sh)\""
                ),
            );
            None
        }
    }
}

/// The quickstart example folder, copied so jobs can be edited.
fn examples(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/examples/quickstart-local");
    let dst = dir.join("quickstart-local");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
    }
    dst
}

/// `shardline run JOB --home HOME --no-progress EXTRA…` with the model path
/// in the environment and a private fingerprint cache.
fn run_engine(job: &Path, home: &Path, model: &Path, digests: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    let child = command(&args)
        .env(MODEL_ENV, model)
        .env("SHARDLINE_FINGERPRINT_CACHE", digests)
        .spawn()
        .expect("spawn shardline");
    // Debug builds run the model slowly; the jobs here are small.
    wait_bounded(child, Duration::from_secs(300))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn metric<'a>(metrics: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    metrics["metrics"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no metric {name} in {metrics}"))
}

#[test]
fn engine_runs_smollm2_then_answers_reruns_from_the_cache() {
    let Some(model) = smollm2("engine_runs_smollm2_then_answers_reruns_from_the_cache") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = examples(dir.path());
    let home = dir.path().join("home");
    let digests = dir.path().join("digests");

    // Generation: 3 questions, with the model's chat template and few-shot
    // turns.
    let qa = jobs.join("qa.toml");
    let out = run_engine(&qa, &home, &model, &digests, &["--limit", "3"]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("3 requests: 0 from the cache, 3 run, 0 failed"),
        "{err}"
    );
    assert!(err.contains("fingerprint b179c9523d0e"), "{err}");
    let results = home.join("results/quickstart-qa");
    let samples = read_lines(&results.join("samples.jsonl"));
    assert_eq!(samples.len(), 3);
    for s in &samples {
        let output = s["outputs"][0].as_str().expect("an output");
        assert!(!output.trim().is_empty(), "{s}");
        // The stop string ends the answer before any newline.
        assert!(!output.contains('\n'), "{s}");
    }
    let metrics = read_json(&results.join("metrics.json"));
    for name in ["exact_match", "contains", "f1"] {
        assert_eq!(metric(&metrics, name)["count"], 3, "{metrics}");
    }
    // "What is the capital of France?" — the model knows this one.
    assert_eq!(
        samples[0]["outputs"][0].as_str().unwrap().trim(),
        "Paris",
        "{}",
        samples[0]
    );

    // The same run again: every output from the cache, no inference.
    let out = run_engine(&qa, &home, &model, &digests, &["--limit", "3"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("3 requests: 3 from the cache, 0 run, 0 failed; all answered"),
        "{}",
        describe(&out)
    );
    assert_eq!(read_lines(&results.join("samples.jsonl")), samples);

    // `backend = "none"` scores the engine's outputs with zero inference.
    edit_file(&qa, "backend = \"engine\"", "backend = \"none\"");
    let out = run_engine(&qa, &home, &model, &digests, &["--limit", "3"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read_json(&results.join("metrics.json")), metrics);

    // Multiple choice by log-likelihood: 4 questions × 4 choices.
    let mc = jobs.join("mc.toml");
    let out = run_engine(&mc, &home, &model, &digests, &["--limit", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("16 requests: 0 from the cache, 16 run, 0 failed"),
        "{}",
        describe(&out)
    );
    let metrics = read_json(&home.join("results/quickstart-mc/metrics.json"));
    let acc = metric(&metrics, "acc");
    assert_eq!(acc["count"], 4, "{metrics}");
    // Sun rises in the east, a baby cat is a kitten...: at least half.
    assert!(acc["mean"].as_f64().unwrap() >= 0.5, "{metrics}");
    // Every stored score is a real log-probability.
    let cache = segment_outputs(&home.join("cache"));
    let scores: Vec<f64> = cache
        .values()
        .filter_map(|r| r.output.as_ref()?.loglikelihood.as_ref().map(|l| l.logprob))
        .collect();
    assert_eq!(scores.len(), 16);
    assert!(
        scores.iter().all(|&lp| lp < 0.0 && lp.is_finite()),
        "{scores:?}"
    );
}

#[test]
fn missing_corrupt_or_different_models_are_refused() {
    let Some(model) = smollm2("missing_corrupt_or_different_models_are_refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = examples(dir.path());
    let home = dir.path().join("home");
    let digests = dir.path().join("digests");
    let qa = jobs.join("qa.toml");
    let refused = |out: &Output, needles: &[&str]| {
        assert_eq!(out.status.code(), Some(2), "{}", describe(out));
        let err = stderr(out);
        assert!(!err.contains("panicked"), "{err}");
        for needle in needles {
            assert!(err.contains(needle), "missing {needle:?} in\n{err}");
        }
    };

    let missing = dir.path().join("nope.gguf");
    let out = run_engine(&qa, &home, &missing, &digests, &["--limit", "1"]);
    refused(&out, &["qa.toml", "nope.gguf", "`model.path`"]);

    // The first megabyte of the real file: the header promises tensors
    // that are not there.
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&cut, &bytes[..1 << 20]).unwrap();
    let out = run_engine(&qa, &home, &cut, &digests, &["--limit", "1"]);
    refused(&out, &["cut.gguf", "truncated"]);

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"<html>not a model</html>").unwrap();
    let out = run_engine(&qa, &home, &junk, &digests, &["--limit", "1"]);
    refused(&out, &["junk.gguf", "not a GGUF file"]);

    // A fingerprint written in the spec that the file does not have.
    edit_file(
        &qa,
        "device = \"cpu\"",
        &format!("device = \"cpu\"\nfingerprint = \"{}\"", "0".repeat(64)),
    );
    let out = run_engine(&qa, &home, &model, &digests, &["--limit", "1"]);
    refused(
        &out,
        &["`model.fingerprint`", &"0".repeat(64), "b179c9523d0e"],
    );
    // Nothing ran: no results were written.
    assert!(!home.join("results/quickstart-qa").exists());
}

/// The number after `prefix` in `text` (thousands separators allowed).
fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"));
    let digits: String = text[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in\n{text}"))
}

/// A dry run counts an engine job's tokens with the model's own tokenizer
/// and chat template (what the run then reports, exactly), prices nothing;
/// the samples show the text the template made; and once everything is
/// cached, the dry run and the run say what the outputs cost when made.
#[test]
fn engine_tokens_are_counted_and_samples_show_the_template_text() {
    let Some(model) = smollm2("engine_tokens_are_counted_and_samples_show_the_template_text")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = examples(dir.path());
    let home = dir.path().join("home");
    let digests = dir.path().join("digests");
    let qa = jobs.join("qa.toml");
    let limit = ["--limit", "3"];

    let dry: Vec<&str> = limit.iter().copied().chain(["--dry-run"]).collect();
    let out = run_engine(&qa, &home, &model, &digests, &dry);
    assert!(out.status.success(), "{}", describe(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        plan.contains("(counted with the model's tokenizer and chat template)"),
        "{plan}"
    );
    assert!(plan.contains("cost:          none to pay"), "{plan}");
    let counted = number_after(&plan, "input tokens:  ");

    let out = run_engine(&qa, &home, &model, &digests, &limit);
    assert!(out.status.success(), "{}", describe(&out));
    let used = number_after(&stderr(&out), "tokens: ");
    assert_eq!(counted, used, "dry run {counted}, run {used}");

    let samples = read_lines(&home.join("results/quickstart-qa/samples.jsonl"));
    let prompt = samples[0]["prompt"].as_str().expect("the template's text");
    assert!(
        prompt.starts_with("<|im_start|>system\nAnswer the question")
            && prompt.contains("<|im_start|>user\nWhat is the capital of Germany?<|im_end|>")
            && prompt.contains("<|im_start|>user\nWhat is the capital of France?<|im_end|>")
            && prompt.ends_with("<|im_start|>assistant\n"),
        "{prompt}"
    );

    let out = run_engine(&qa, &home, &model, &digests, &dry);
    assert!(out.status.success(), "{}", describe(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        plan.contains("3, all already in the cache: nothing to send"),
        "{plan}"
    );
    assert_eq!(number_after(&plan, "they cost "), used, "{plan}");
    assert!(!plan.contains("~0"), "{plan}");

    let out = run_engine(&qa, &home, &model, &digests, &limit);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("all answered from the cache"), "{err}");
    assert_eq!(number_after(&err, "they cost "), used, "{err}");
    assert!(!err.contains("tokens: 0 prompt"), "{err}");
}

/// The quickstart's jobs find the model where scripts/fetch-smollm2.sh puts
/// it (`model.path_default`) in a shell that never exported the variable.
#[test]
fn quickstart_jobs_find_the_fetched_model_without_the_variable() {
    let Some(model) = smollm2("quickstart_jobs_find_the_fetched_model_without_the_variable") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = examples(dir.path());
    let home_dir = dir.path().join("user");
    let models = home_dir.join(".cache/shardline/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(&model, models.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let home = dir.path().join("home");
    let job = jobs.join("qa.toml");
    let child = command(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
        "--limit",
        "1",
    ])
    .env_remove(MODEL_ENV)
    .env("HOME", &home_dir)
    .env("SHARDLINE_FINGERPRINT_CACHE", dir.path().join("digests"))
    .spawn()
    .expect("spawn shardline");
    let out = wait_bounded(child, Duration::from_secs(300));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("fingerprint b179c9523d0e"),
        "{}",
        describe(&out)
    );

    // Without the file there either, the error names both places.
    std::fs::remove_file(models.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let out = command(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
    ])
    .env_remove(MODEL_ENV)
    .env("HOME", &home_dir)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains(MODEL_ENV) && err.contains("`model.path_default`"),
        "{err}"
    );
}

/// A worker whose model file is not the one the job was submitted with
/// refuses to run it (the whole shard fails once), naming both digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refuses_a_model_whose_fingerprint_changed() {
    let Some(model) = smollm2("worker_refuses_a_model_whose_fingerprint_changed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = examples(dir.path());
    let mut spec = jobs::JobSpec::from_toml_file(&jobs.join("qa.toml")).unwrap();
    spec.model.path = Some(model.clone());
    spec.model.fingerprint = Some("f".repeat(64));
    let backend =
        worker::build_backend(&spec.model, &worker::backend::KeyPolicy::default()).unwrap();
    let request = jobs::InferenceRequest::new(
        &spec.model.fingerprint(),
        0,
        jobs::RequestType::Generate,
        jobs::RenderedInput::Prompt {
            prompt: "Hi".into(),
        },
        None,
        jobs::GenerationParams {
            max_tokens: 2,
            temperature: 0.0,
            top_p: None,
            stop: vec![],
            seed: None,
            extra_body: Default::default(),
        },
        0,
    );
    let err = backend.run(&request).await.unwrap_err();
    assert!(err.is_endpoint_unusable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&"f".repeat(64))
            && text.contains("b179c9523d0e")
            && text.contains(&model.display().to_string()),
        "{text}"
    );
}
