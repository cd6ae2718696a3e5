//! End to end: a multiple-choice job scored by log-likelihood through the
//! completions endpoint's `echo` + `logprobs`, against the fake server.

mod support;

use support::*;
use testkit::{FakeConfig, FakeOpenAi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_choice_acc_from_prompt_logprobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = String::new();
    let mut favoured = Vec::new();
    for i in 0..12 {
        let choices: Vec<String> = ["alpha", "bravo", "charlie", "delta"]
            .iter()
            .map(|w| format!("{w}{i}"))
            .collect();
        let gold = i % 4;
        let letter = ["A", "B", "C", "D"][gold];
        // The fake model "knows" the even-numbered questions: their gold
        // continuation is the argmax with logprob -0.01 per token.
        if i % 2 == 0 {
            favoured.push(format!(" {}", choices[gold]));
        }
        data.push_str(
            &serde_json::json!({
                "id": format!("mc{i}"),
                "question": format!("Which word is number {i}?"),
                "options": choices,
                "answer": letter,
                "subject": if i < 6 { "first" } else { "second" },
            })
            .to_string(),
        );
        data.push('\n');
    }
    std::fs::write(dir.path().join("mc.jsonl"), data).unwrap();
    let fake = FakeOpenAi::start(FakeConfig {
        favoured_continuations: favoured,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = dir.path().join("mc.toml");
    std::fs::write(
        &job,
        format!(
            r#"name = "mc"
[model]
backend = "openai"
model = "fake-model"
base_url = "{}"
endpoint = "completions"

[dataset]
path = "mc.jsonl"
id_field = "id"
subset_field = "subject"

[task]
kind = "multiple_choice"
prompt = "Question: {{{{ question }}}}\nAnswer:"
choices = "options"
target = "{{{{ answer }}}}"

[[metrics]]
type = "acc"

[[metrics]]
type = "acc_norm"
"#,
            fake.base_url()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    let out = run_to_end(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    // One scoring request per choice, all on /v1/completions with echo.
    let stats = fake.stats();
    assert_eq!((stats.completions, stats.chat), (48, 0));
    assert!(fake.requests().iter().all(|r| r.body["echo"] == true));

    let samples = read_lines(&home.join("results/mc/samples.jsonl"));
    assert_eq!(samples.len(), 12);
    for s in &samples {
        let index = s["doc_index"].as_u64().unwrap();
        if index % 2 == 0 {
            assert_eq!(s["scores"]["acc"], 1.0, "doc {index} should be right: {s}");
            assert_eq!(s["gold_index"].as_u64(), Some(index % 4));
        }
    }
    let metrics: serde_json::Value = read_json(&home.join("results/mc/metrics.json"));
    let acc = metrics["metrics"][0]["mean"].as_f64().unwrap();
    assert!(acc >= 0.5, "acc {acc}");
    assert_eq!(metrics["metrics"][0]["subsets"]["first"]["count"], 6);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spec_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("bad.toml");
    std::fs::write(
        &job,
        "name = \"x\"\n[model]\nbackend = \"vllm\"\nmodel = \"m\"\n[dataset]\npath = \"d.jsonl\"\n[task]\nkind = \"generate\"\nprompt = \"{{ q }}\"\n",
    )
    .unwrap();
    let out = run_to_end(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        dir.path().join("h").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:3"), "{stderr}");
    assert!(stderr.contains("model.backend"), "{stderr}");
    assert!(stderr.contains("openai"), "{stderr}");

    // A malformed dataset row is reported as file:line before any request.
    std::fs::write(dir.path().join("d.jsonl"), "{\"q\": \"fine\"}\n{not json\n").unwrap();
    std::fs::write(
        &job,
        "name = \"x\"\n[model]\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[dataset]\npath = \"d.jsonl\"\n[task]\nkind = \"generate\"\nprompt = \"{{ q }}\"\n",
    )
    .unwrap();
    let out = run_to_end(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        dir.path().join("h").to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("d.jsonl:2"), "{stderr}");
    assert!(stderr.contains("on_bad_row"), "{stderr}");
}
