//! End to end: templates for every model. A tiny Hugging Face model with no
//! chat template (one of the engine's transformers fixtures, given a
//! word-level tokenizer) refuses a chat job with the ways out, runs with
//! `[model.prompt_format]` (the default join and role strings) and with a
//! `model.chat_template` file; a replaced template renders the samples'
//! prompts and changes the request keys; a template file changed after
//! submitting is refused by the worker; and an API that only offers
//! `/v1/completions` gets the formatted prompt.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::*;
use testkit::{FakeConfig, FakeOpenAi};

/// The fixture's config and weights with a tokenizer of 256 words
/// (`w0`…`w255`, any other word is `w0`) and, when given, a chat template
/// of its own in `tokenizer_config.json`.
fn tiny_model(dir: &Path, own_template: Option<&str>) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("engine/fixtures/transformers/llama3_gqa_untied");
    let model = dir.join("tiny-base");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), model.join(file)).unwrap();
    }
    let vocab: serde_json::Map<String, serde_json::Value> = (0..256)
        .map(|i| (format!("w{i}"), serde_json::json!(i)))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
    });
    std::fs::write(model.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    if let Some(template) = own_template {
        let config = serde_json::json!({"chat_template": template});
        std::fs::write(model.join("tokenizer_config.json"), config.to_string()).unwrap();
    }
    model
}

/// A chat job on `model` over three questions; `model_extra` goes into
/// `[model]`, `tail` at the end of the file.
fn write_chat_job(dir: &Path, model: &Path, model_extra: &str, tail: &str) -> PathBuf {
    let data = dir.join("data.jsonl");
    let rows: Vec<String> = (0..3)
        .map(|i| serde_json::json!({"id": format!("q{i}"), "q": format!("What is {i} plus {i}?"), "a": format!("{}", 2 * i)}).to_string())
        .collect();
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let job = format!(
        r#"name = "templates"

[model]
backend = "engine"
model = "tiny-base"
path = "{model}"
{model_extra}

[dataset]
path = "data.jsonl"
id_field = "id"

[task]
kind = "generate"
target = "{{{{ a }}}}"
messages = [
  {{ role = "system", content = "Answer briefly." }},
  {{ role = "user", content = "{{{{ q }}}}" }},
]

[task.generation]
max_tokens = 3

[[metrics]]
type = "exact_match"
{tail}"#,
        model = model.display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

/// `shardline run JOB` with a private fingerprint cache.
fn run(job: &Path, home: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    let child = command(&args)
        .env(
            "SHARDLINE_FINGERPRINT_CACHE",
            home.parent().unwrap().join("digests"),
        )
        .spawn()
        .expect("spawn shardline");
    wait_bounded(child, Duration::from_secs(180))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The prompts of the latest run's samples, in document order.
fn prompts(home: &Path) -> Vec<String> {
    read_lines(&home.join("results/templates/samples.jsonl"))
        .iter()
        .map(|s| s["prompt"].as_str().expect("a prompt").to_string())
        .collect()
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

fn assert_ran(out: &Output, summary: &str) {
    assert!(out.status.success(), "{}", describe(out));
    assert!(stderr(out).contains(summary), "{}", describe(out));
}

#[test]
fn a_chat_job_on_a_model_without_a_template_is_refused_with_the_ways_out() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), None);
    let job = write_chat_job(dir.path(), &model, "", "");
    let home = dir.path().join("home");
    let out = run(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    for needle in [
        "job.toml",
        "tiny-base has no chat template",
        "[model.prompt_format]",
        "joins the messages' contents with spaces",
        "pre = \"[INST] \"",
        "model.chat_template",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!home.join("results/templates").exists());
}

#[test]
fn prompt_formats_make_the_prompt_a_base_model_reads() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), None);
    let home = dir.path().join("home");

    // The default: the messages' contents joined with a space.
    let job = write_chat_job(dir.path(), &model, "", "\n[model.prompt_format]\n");
    let out = run(&job, &home, &[]);
    assert_ran(&out, "3 requests: 0 from the cache, 3 run, 0 failed");
    assert_eq!(
        prompts(&home),
        [0, 1, 2].map(|i| format!("Answer briefly. What is {i} plus {i}?"))
    );

    // Role strings (Llama 2's, as LiteLLM writes them): another prompt, so
    // other keys; nothing comes from the cache.
    let roles = r#"
[model.prompt_format]
bos = "<s>"
system = { pre = "[INST] <<SYS>>\n", post = "\n<</SYS>>\n [/INST]\n" }
user = { pre = "[INST] ", post = " [/INST]\n" }
assistant = { post = "\n" }
"#;
    let job = write_chat_job(dir.path(), &model, "", roles);
    let out = run(&job, &home, &[]);
    assert_ran(&out, "3 requests: 0 from the cache, 3 run, 0 failed");
    assert_eq!(
        prompts(&home)[1],
        "<s>[INST] <<SYS>>\nAnswer briefly.\n<</SYS>>\n [/INST]\n[INST] What is 1 plus 1? [/INST]\n"
    );
    let out = run(&job, &home, &[]);
    assert_ran(&out, "3 requests: 3 from the cache, 0 run, 0 failed");

    // Once cached, a dry run has nothing to send.
    let out = run(&job, &home, &["--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("3, all already in the cache"), "{plan}");
}

#[test]
fn a_replacement_chat_template_renders_the_prompts_and_changes_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let own = "OWN {% for m in messages %}{{ m.content }} {% endfor %}";
    let model = tiny_model(dir.path(), Some(own));
    let home = dir.path().join("home");
    let job = write_chat_job(dir.path(), &model, "", "");
    let out = run(&job, &home, &[]);
    assert_ran(&out, "3 requests: 0 from the cache, 3 run, 0 failed");
    assert_eq!(prompts(&home)[0], "OWN Answer briefly. What is 0 plus 0? ");

    // The replacement, relative to the job file: its digest is printed and
    // is part of every key, so nothing comes from the cache.
    let template = dir.path().join("mine.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}\
         {% if add_generation_prompt %}<assistant>{% endif %}",
    )
    .unwrap();
    let job = write_chat_job(dir.path(), &model, "chat_template = \"mine.jinja\"", "");
    // The dry run counts the tokens of the prompts it renders with it:
    // exactly what the run then reads.
    let out = run(&job, &home, &["--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(plan.contains("3 to send"), "{plan}");
    let counted = number_after(&plan, "input tokens:  ");
    let out = run(&job, &home, &[]);
    assert_ran(&out, "3 requests: 0 from the cache, 3 run, 0 failed");
    let err = stderr(&out);
    assert!(err.contains(", chat template "), "{err}");
    assert_eq!(counted, number_after(&err, "tokens: "), "{plan}\n{err}");
    assert_eq!(
        prompts(&home)[2],
        "<system>Answer briefly.<user>What is 2 plus 2?<assistant>"
    );

    // A changed template: new keys again, and its prompt.
    std::fs::write(&template, "{{ messages[-1].content }} =").unwrap();
    let out = run(&job, &home, &[]);
    assert_ran(&out, "3 requests: 0 from the cache, 3 run, 0 failed");
    assert_eq!(prompts(&home)[1], "What is 1 plus 1? =");
    // `backend = "none"` keeps the identity, template included: it scores
    // those outputs from the cache alone.
    let metrics = read_json(&home.join("results/templates/metrics.json"));
    edit_file(&job, "backend = \"engine\"", "backend = \"none\"");
    let out = run(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        read_json(&home.join("results/templates/metrics.json")),
        metrics
    );
    edit_file(&job, "backend = \"none\"", "backend = \"engine\"");

    // A template that does not compile is refused naming its field and file.
    std::fs::write(&template, "{% if %}").unwrap();
    let out = run(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`model.chat_template`") && err.contains("mine.jinja"),
        "{err}"
    );
}

/// A worker whose template file is not the one the job was submitted with
/// refuses to build the backend, naming both digests and the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_changed_after_submitting_is_refused_by_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), None);
    let template = dir.path().join("mine.jinja");
    std::fs::write(&template, "{{ messages[0].content }}").unwrap();
    let job = write_chat_job(dir.path(), &model, "chat_template = \"mine.jinja\"", "");
    let mut spec = jobs::JobSpec::from_toml_file(&job).unwrap();
    let resolved = worker::backend::engine::resolve_model(&mut spec.model)
        .unwrap()
        .unwrap();
    let submitted = resolved
        .chat_template_sha256
        .expect("the template's digest");
    assert_eq!(spec.model.chat_template_sha256.as_ref(), Some(&submitted));
    spec.validate().unwrap();
    let keys = worker::backend::KeyPolicy::default();
    assert!(worker::build_backend(&spec.model, &keys).is_ok());

    std::fs::write(&template, "{{ messages[1].content }}").unwrap();
    let err = worker::build_backend(&spec.model, &keys)
        .err()
        .expect("a changed template is refused");
    assert!(
        matches!(err, worker::backend::BackendError::Config(_)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&submitted) && text.contains("mine.jinja") && text.contains("changed"),
        "{text}"
    );
    // The worker's message does not quote the file's own digest: it
    // becomes the job's error, which the submitter reads.
    let found = jobs::request::sha256_hex(&std::fs::read_to_string(&template).unwrap());
    assert!(!text.contains(&found), "{text}");
    // Samples and results do not render prompts with another template:
    // they show the prompts as planned (scoring needs no template).
    assert!(worker::backend::engine::EngineText::of(&spec.model)
        .unwrap()
        .is_none());

    // A device or a FIFO is no template: refused, not read forever.
    let mut device = spec.model.clone();
    device.chat_template = Some("/dev/zero".into());
    let err = worker::build_backend(&device, &keys)
        .err()
        .expect("a device is refused");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// An API model that only offers `/v1/completions` gets the messages as
/// one prompt, made by `[model.prompt_format]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completions_only_api_gets_the_formatted_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 4);
    let prompt_of = |q: &str| format!("### Question:\n{q}\n### Answer:\n");
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        answers: rows
            .iter()
            .map(|(q, a)| (prompt_of(q), a.clone()))
            .collect(),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let format = r####"endpoint = "completions"

[model.prompt_format]
user = { pre = "### Question:\n", post = "\n" }
final = "### Answer:\n""####;
    let job = write_job(dir.path(), &dataset, &fake.base_url(), format);
    let home = dir.path().join("home");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    for r in &requests {
        assert_eq!(r.path, "/v1/completions", "{r:?}");
        assert!(r.prompt.starts_with("### Question:\nWhat is "), "{r:?}");
    }
    let metrics = read_json(&home.join("results/e2e/metrics.json"));
    assert_eq!(metrics["metrics"][0]["mean"], 1.0, "{metrics}");
    let samples = read_lines(&home.join("results/e2e/samples.jsonl"));
    assert_eq!(samples[0]["prompt"], prompt_of(&rows[0].0));
}
