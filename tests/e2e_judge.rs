//! End-to-end tests of LLM-as-judge metrics as real `shardline run` and
//! `rescore` processes against the fake OpenAI-compatible server, which
//! answers the judged model's questions and the judge's grading prompts by
//! a rule the test controls: a SIGKILL while judging and a resume that
//! re-sends nothing written, a new grade extraction that costs nothing, and
//! a new grading template that sends judge requests only.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;
use testkit::{FakeBatchApi, FakeBatchConfig, FakeConfig, FakeOpenAi};

const ROWS: usize = 60;
const JUDGE_MODEL: &str = "judge-model";
const TEMPLATE: &str =
    "Grade this. Question: {{ question }} | Answer: {{ output }} | Reference: {{ target }}";
const TEMPLATE_2: &str =
    "Grade it again. Question: {{ question }} | Answer: {{ output }} | Reference: {{ target }}";

/// The judged model answers every third question right.
fn output(i: usize, answer: &str) -> String {
    if i.is_multiple_of(3) {
        answer.to_string()
    } else {
        format!("wrong {i}")
    }
}

fn judge_prompt(template: &str, question: &str, output: &str, target: &str) -> String {
    template
        .replace("{{ question }}", question)
        .replace("{{ output }}", output)
        .replace("{{ target }}", target)
}

/// The fake's answers: each question's output, and the judge's verdict on
/// it under both templates ("Row i: ..." names the row, so a verdict in
/// the cache tells which prompt it answered).
fn answers(rows: &[(String, String)]) -> HashMap<String, String> {
    let mut answers = HashMap::new();
    for (i, (q, a)) in rows.iter().enumerate() {
        let out = output(i, a);
        let verdict = if out == *a {
            format!("Row {i}: the answer matches the reference. CORRECT")
        } else {
            format!("Row {i}: it differs from the reference. INCORRECT")
        };
        for template in [TEMPLATE, TEMPLATE_2] {
            answers.insert(judge_prompt(template, q, &out, a), verdict.clone());
        }
        answers.insert(q.clone(), out);
    }
    answers
}

fn write_judge_job(
    dir: &Path,
    dataset: &Path,
    base_url: &str,
    template: &str,
    grading: &str,
) -> PathBuf {
    write_job_judged_on(dir, dataset, base_url, template, grading, "openai")
}

/// The judged job, its judge on `judge_backend`.
fn write_job_judged_on(
    dir: &Path,
    dataset: &Path,
    base_url: &str,
    template: &str,
    grading: &str,
    judge_backend: &str,
) -> PathBuf {
    let job = format!(
        r#"name = "judged"

[model]
backend = "openai"
model = "fake-model"
base_url = "{base_url}"
api_key_env = "SHARDLINE_KEY_E2E"
concurrency = 4

[dataset]
path = "{dataset}"
id_field = "id"

[task]
kind = "generate"
messages = [{{ role = "user", content = "{{{{ question }}}}" }}]
target = "{{{{ answer }}}}"

[task.generation]
max_tokens = 16

[[metrics]]
type = "exact_match"

[[metrics]]
type = "judge"
name = "judged_correct"
template = "{template}"
labels = ["CORRECT", "INCORRECT"]
{grading}

[metrics.model]
backend = "{judge_backend}"
model = "{JUDGE_MODEL}"
base_url = "{base_url}"
api_key_env = "SHARDLINE_KEY_E2E"
concurrency = 2

[metrics.generation]
max_tokens = 32
{batch}

[sharding]
shard_size = 5
"#,
        dataset = dataset.display(),
        batch = if judge_backend == "openai-batch" {
            "\n[metrics.model.batch]\npoll_interval_secs = 0.2\nmax_poll_interval_secs = 0.5"
        } else {
            ""
        },
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).expect("write job");
    path
}

/// Answered requests of `model` with exactly this prompt.
fn count(fake: &FakeOpenAi, model: &str, prompt: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.status == 200 && r.body["model"] == model && r.prompt == prompt)
        .count()
}

fn judge_score(metrics: &serde_json::Value) -> f64 {
    metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "judged_correct")
        .unwrap_or_else(|| panic!("no judge metric in {metrics}"))["mean"]
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judging_resumes_after_a_kill_and_rescoring_reuses_every_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), ROWS);
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        answers: answers(&rows),
        // Grading is slow, so that the kill lands while judging; answering
        // too, so that judging starts before the last answer.
        slow_prompts_containing: vec![
            ("Grade this.".into(), Duration::from_millis(120)),
            ("(item ".into(), Duration::from_millis(100)),
        ],
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_judge_job(dir.path(), &dataset, &fake.base_url(), TEMPLATE, "");
    let home = dir.path().join("home");
    let (home_s, job_s) = (home.to_str().unwrap(), job.to_str().unwrap());

    // First run: killed for real once some verdicts are in the cache.
    let mut child = command(&["run", job_s, "--home", home_s, "--no-progress"])
        .spawn()
        .unwrap();
    let cache_dir = home.join("cache");
    let verdict_rows = |outputs: &HashMap<String, jobs::SegmentRecord>| -> HashSet<usize> {
        outputs
            .values()
            .filter_map(|r| r.output.as_ref()?.text.as_deref()?.strip_prefix("Row "))
            .filter_map(|t| t.split(':').next()?.parse().ok())
            .collect()
    };
    let start = Instant::now();
    loop {
        if verdict_rows(&segment_outputs(&cache_dir)).len() >= 10 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("shardline exited before the kill: {status:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no verdict in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let judged_before_kill = verdict_rows(&segment_outputs(&cache_dir));
    assert!(
        judged_before_kill.len() < ROWS,
        "judging finished before the kill"
    );

    // Second run: resumes, and re-sends no request whose answer was written.
    let out = run_to_end(&["run", job_s, "--home", home_s, "--no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("judge judged_correct: 60 requests:"),
        "{}",
        describe(&out)
    );
    for (i, (q, a)) in rows.iter().enumerate() {
        assert_eq!(count(&fake, "fake-model", q), 1, "question {i} asked twice");
        let prompt = judge_prompt(TEMPLATE, q, &output(i, a), a);
        let n = count(&fake, JUDGE_MODEL, &prompt);
        if judged_before_kill.contains(&i) {
            assert_eq!(n, 1, "row {i} was judged before the kill but judged again");
        } else {
            assert!(n >= 1, "row {i} was never judged");
        }
    }

    // A document is judged as soon as its shard is done, not after the job.
    let requests = fake.requests();
    let first_judged = requests
        .iter()
        .filter(|r| r.body["model"] == JUDGE_MODEL)
        .map(|r| r.received_at)
        .min()
        .unwrap();
    let last_answered = requests
        .iter()
        .filter(|r| r.body["model"] == "fake-model")
        .map(|r| r.received_at)
        .max()
        .unwrap();
    assert!(
        first_judged < last_answered,
        "judging waited for the last answer"
    );

    // The verdicts and grades are in the samples, the score in the metrics.
    let results = home.join("results").join("judged");
    let samples = read_lines(&results.join("samples.jsonl"));
    assert_eq!(samples.len(), ROWS);
    for sample in &samples {
        let i: usize = sample["doc_id"].as_str().unwrap()[1..].parse().unwrap();
        let verdicts = sample["judges"]["judged_correct"].as_array().unwrap();
        assert_eq!(verdicts.len(), 1, "{sample}");
        let expected = if i.is_multiple_of(3) {
            "CORRECT"
        } else {
            "INCORRECT"
        };
        assert_eq!(verdicts[0]["grade"], expected, "{sample}");
        assert!(verdicts[0]["verdict"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Row {i}:")));
        assert_eq!(
            sample["scores"]["judged_correct"],
            f64::from(u8::from(i.is_multiple_of(3)))
        );
    }
    let metrics = read_json(&results.join("metrics.json"));
    assert!(
        (judge_score(&metrics) - 20.0 / 60.0).abs() < 1e-9,
        "{metrics}"
    );

    // A new grade extraction (a regex, another label counted) reads the
    // cached verdicts: nothing is sent.
    let before = fake.stats().total;
    let shares_incorrect = write_judge_job(
        dir.path(),
        &dataset,
        &fake.base_url(),
        TEMPLATE,
        "share_label = \"INCORRECT\"\npattern = '\\. (\\w+)$'",
    );
    let out = run_to_end(&[
        "rescore",
        shares_incorrect.to_str().unwrap(),
        "--home",
        home_s,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().total, before, "rescoring sent requests");
    let metrics = read_json(&results.join("metrics.json"));
    assert!(
        (judge_score(&metrics) - 40.0 / 60.0).abs() < 1e-9,
        "{metrics}"
    );

    // A new grading template: the rescore says the verdicts are missing...
    let regraded = write_judge_job(dir.path(), &dataset, &fake.base_url(), TEMPLATE_2, "");
    let regraded_s = regraded.to_str().unwrap();
    let out = run_to_end(&["rescore", regraded_s, "--home", home_s]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("60 judge requests have no verdict"),
        "{}",
        describe(&out)
    );
    assert_eq!(fake.stats().total, before, "rescoring sent requests");
    // ...and running it sends the judge requests only.
    let seen = fake.requests().len();
    let out = run_to_end(&["run", regraded_s, "--home", home_s, "--no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("judge judged_correct: 60 requests: 0 from the cache, 60 run, 0 failed"),
        "{}",
        describe(&out)
    );
    let new: Vec<_> = fake
        .requests()
        .into_iter()
        .skip(seen)
        .filter(|r| r.path.ends_with("completions"))
        .collect();
    assert_eq!(new.len(), ROWS, "one judge request per document");
    assert!(
        new.iter()
            .all(|r| r.body["model"] == JUDGE_MODEL && r.prompt.starts_with("Grade it again.")),
        "a request other than a new judge request was sent"
    );
    let metrics = read_json(&results.join("metrics.json"));
    assert!(
        (judge_score(&metrics) - 20.0 / 60.0).abs() < 1e-9,
        "{metrics}"
    );
    fake.shutdown().await;
}

/// A judge on the Batch API: its requests go out as provider batches, the
/// judged model's through the synchronous endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_judge_sends_its_requests_as_provider_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 20);
    let api = FakeBatchApi::start(
        FakeConfig {
            api_key: Some("test-key".into()),
            answers: answers(&rows),
            ..FakeConfig::default()
        },
        FakeBatchConfig::default(),
    )
    .await
    .unwrap();
    let job = write_job_judged_on(
        dir.path(),
        &dataset,
        &api.base_url(),
        TEMPLATE,
        "",
        "openai-batch",
    );
    let home = dir.path().join("home");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        api.sync_stats().ok,
        20,
        "the judged model answers synchronously"
    );
    let stats = api.batch_stats();
    assert_eq!(stats.lines_ok, 20, "one batch line per judge request");
    assert!(stats.creates >= 1);
    assert_eq!(
        stats.max_batches_per_request_set(),
        1,
        "no batch paid twice"
    );
    let metrics = read_json(&home.join("results").join("judged").join("metrics.json"));
    assert!(
        (judge_score(&metrics) - 7.0 / 20.0).abs() < 1e-9,
        "{metrics}"
    );
}

/// A judge on the engine backend: SmolLM2 on this machine grades an
/// endpoint model's outputs, its model fingerprinted like the job's; a
/// second run finds every verdict in the cache and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_judge_grades_on_this_machine() {
    let Some(gguf) = std::env::var_os("SHARDLINE_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        skip(
            "e2e_judge::an_engine_judge_grades_on_this_machine",
            "SHARDLINE_SMOLLM2_GGUF does not name the SmolLM2 GGUF file; run scripts/test.sh, or \
             export SHARDLINE_SMOLLM2_GGUF=\"$(scripts/fetch-smollm2.sh)\"",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 4);
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        answers: answers(&rows),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job_judged_on(
        dir.path(),
        &dataset,
        &fake.base_url(),
        "Question: {{ question }}\\nReference answer: {{ target }}\\nGiven answer: {{ output }}\\nIs the given answer right? Reply yes or no.",
        "",
        "engine",
    );
    // The engine judge: a model file instead of an endpoint.
    edit_file(
        &job,
        &format!(
            "backend = \"engine\"\nmodel = \"{JUDGE_MODEL}\"\nbase_url = \"{}\"\napi_key_env = \"SHARDLINE_KEY_E2E\"",
            fake.base_url()
        ),
        &format!(
            "backend = \"engine\"\nmodel = \"{JUDGE_MODEL}\"\npath = \"{}\"",
            gguf.display()
        ),
    );
    edit_file(
        &job,
        "labels = [\"CORRECT\", \"INCORRECT\"]",
        "labels = [\"yes\", \"no\"]",
    );
    let home = dir.path().join("home");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("judge of metrics[1]: model "),
        "the judge's model is fingerprinted: {}",
        describe(&out)
    );
    let samples = read_lines(&home.join("results").join("judged").join("samples.jsonl"));
    assert_eq!(samples.len(), 4);
    for sample in &samples {
        let verdicts = sample["judges"]["judged_correct"].as_array().unwrap();
        assert_eq!(verdicts.len(), 1, "{sample}");
        assert!(verdicts[0]["verdict"].is_string(), "{sample}");
    }
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("judge judged_correct: 4 requests: 4 from the cache, 0 run"),
        "{}",
        describe(&out)
    );
    assert_eq!(fake.stats().ok, 4, "each question asked once");
    fake.shutdown().await;
}
