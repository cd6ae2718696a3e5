//! End-to-end tests of `shardline diff` on the real binary: two real runs
//! against the fake OpenAI-compatible server, the second with worse
//! answers; the diff finds exactly the documents that flipped, calls the
//! drop significant, prints JSON that parses, exits 4 with
//! `--fail-on-regression`, finds the runs by job name and id in a local
//! home and on a coordinator, counts documents present in one run only,
//! and refuses bad input with exit 2.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Output;

use support::local::LocalCluster;
use support::*;
use testkit::{FakeConfig, FakeOpenAi};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `shardline diff ARGS…` with no coordinator or home from the environment.
fn diff(args: &[&str]) -> Output {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    let child = command(&all)
        .env_remove("SHARDLINE_COORDINATOR")
        .env_remove("SHARDLINE_HOME")
        .env_remove("SHARDLINE_CONFIG")
        .spawn()
        .expect("spawn shardline");
    wait_bounded(child, std::time::Duration::from_secs(60))
}

/// A fake that answers every question but those of `wrong` correctly.
async fn fake_answering(rows: &[(String, String)], wrong: &[usize]) -> FakeOpenAi {
    let answers: HashMap<String, String> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !wrong.contains(i))
        .map(|(_, (q, a))| (q.clone(), a.clone()))
        .collect();
    FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        answers,
        ..FakeConfig::default()
    })
    .await
    .unwrap()
}

/// A job file `<name>.toml` beside the dataset, named `name`, for model
/// `model` at `fake`.
fn job_for(
    dir: &Path,
    dataset: &Path,
    fake: &FakeOpenAi,
    name: &str,
    model: &str,
) -> std::path::PathBuf {
    let written = write_job(dir, dataset, &fake.base_url(), "");
    let job = dir.join(format!("{name}.toml"));
    std::fs::rename(&written, &job).unwrap();
    edit_file(&job, "name = \"e2e\"", &format!("name = \"{name}\""));
    // The model is part of every request key: another model's outputs are
    // never taken from the cache for it.
    edit_file(
        &job,
        "model = \"fake-model\"",
        &format!("model = \"{model}\""),
    );
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_run_shows_its_flips_and_a_significant_regression() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 40);
    // A misses items 9 and 19; B misses every fourth from 1 (9 among them)
    // but gets 19 right: 9 right → wrong, 1 wrong → right.
    let b_wrong: Vec<usize> = (0..40).filter(|i| i % 4 == 1).collect();
    let fake_a = fake_answering(&rows, &[9, 19]).await;
    let fake_b = fake_answering(&rows, &b_wrong).await;
    let home = dir.path().join("home");
    let job_a = job_for(dir.path(), &dataset, &fake_a, "nightly-a", "model-a");
    let job_b = job_for(dir.path(), &dataset, &fake_b, "nightly-b", "model-b");
    for job in [&job_a, &job_b] {
        let out = run_job(job, &home, &[]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let folder_a = home.join("results/nightly-a/latest");
    let folder_b = home.join("results/nightly-b/latest");
    let (a, b) = (folder_a.to_str().unwrap(), folder_b.to_str().unwrap());
    let worse: BTreeSet<String> = b_wrong
        .iter()
        .filter(|&&i| i != 9)
        .map(|i| format!("q{i}"))
        .collect();

    // The table: both means, the drop marked significant, the flips with
    // their prompt and both outputs.
    let out = diff(&[a, b, "--flips", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with("exact_match"))
        .unwrap_or_else(|| panic!("no exact_match row:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..5], ["40", "0.9500", "0.7500", "-0.2000"], "{row}");
    assert!(row.contains(" * "), "not significant: {row}");
    assert!(row.contains("9 worse, 1 better"), "{row}");
    assert!(table.contains("40 documents compared"), "{table}");
    assert!(
        table.contains("flips of exact_match: 9 worse, 1 better"),
        "{table}"
    );
    assert!(
        table.contains("q1 [odd]  1 → 0  (right → wrong)"),
        "{table}"
    );
    assert!(
        table.contains("prompt  [user] What is 1 plus 1? (item 1)"),
        "{table}"
    );
    assert!(table.contains("target  2"), "{table}");
    assert!(table.contains("    A       2\n"), "{table}");
    assert!(table.contains("… 7 more"), "{table}");

    // The JSON: every flip, with its texts.
    let out = diff(&[a, b, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diff --json parses");
    let em = &json["metrics"][0];
    assert_eq!(em["name"], "exact_match");
    assert_eq!(em["n"], 40);
    assert!((em["diff"].as_f64().unwrap() + 0.2).abs() < 1e-9, "{em}");
    assert_eq!(em["significant"], true);
    assert!(em["ci_high"].as_f64().unwrap() < 0.0, "{em}");
    assert_eq!(em["method"], "bootstrap");
    assert_eq!(em["subsets"].as_array().unwrap().len(), 2);
    assert_eq!(json["docs"]["paired"], 40);
    let flips = json["flips"].as_array().unwrap();
    let by = |direction: &str| -> BTreeSet<String> {
        flips
            .iter()
            .filter(|f| f["direction"] == direction)
            .map(|f| f["doc_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(by("worse"), worse);
    assert_eq!(by("better"), BTreeSet::from(["q19".to_string()]));
    let q1 = flips.iter().find(|f| f["doc_id"] == "q1").unwrap();
    assert_eq!(q1["texts"]["output_a"], serde_json::json!(["2"]));
    assert_ne!(q1["texts"]["output_b"], serde_json::json!(["2"]));
    assert_eq!(q1["texts"]["target"], "2");
    assert!(flips.iter().all(|f| f["texts"].is_object()));

    // A pipeline's gate: a 2-point drop fails it with exit 4; a 50-point
    // threshold does not.
    let out = diff(&[a, b, "--fail-on-regression", "0.02", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        stderr(&out).contains("exact_match fell by 0.2000"),
        "{}",
        describe(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["regression"]["metrics"],
        serde_json::json!(["exact_match"])
    );
    let out = diff(&[a, b, "--fail-on-regression", "0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // B against A the other way round is an improvement, not a regression.
    let out = diff(&[b, a, "--fail-on-regression", "0.02"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // Jobs by name (the newest completed run) and by id, from the home.
    let home_s = home.to_str().unwrap();
    let out = diff(&["nightly-a", "nightly-b", "--home", home_s, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let by_name: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_name["metrics"][0]["diff"], json_diff(&json));
    assert_eq!(by_name["flips"].as_array().unwrap().len(), 10);
    let status = run_to_end(&["status", "--home", home_s]);
    let id_a = stdout(&status)
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.get(1) == Some(&"nightly-a")).then(|| words[0].to_string())
        })
        .unwrap_or_else(|| panic!("no nightly-a in {}", describe(&status)));
    let out = diff(&[&id_a, b, "--home", home_s, "--fail-on-regression", "0.02"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        stdout(&out).contains(&format!("A  job {id_a} (nightly-a)")),
        "{}",
        describe(&out)
    );
    let out = diff(&["nightly-c", b, "--home", home_s]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no job named \"nightly-c\""),
        "{}",
        describe(&out)
    );

    // Documents in one run only are counted, not dropped.
    let partial = dir.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(folder_b.join("samples.jsonl"))
        .unwrap()
        .lines()
        .skip(2)
        .map(str::to_string)
        .collect();
    std::fs::write(partial.join("samples.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = diff(&[a, partial.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["docs"]["only_in_a"], 2);
    assert_eq!(json["docs"]["paired"], 38);
    assert_eq!(
        json["docs"]["only_in_a_examples"],
        serde_json::json!(["q0", "q1"])
    );

    // Bad input: exit 2, naming what is wrong and where.
    let mut broken = lines.clone();
    broken[2] = "{\"doc_id\": \"q4\", \"scores\": ".to_string();
    std::fs::write(partial.join("samples.jsonl"), broken.join("\n") + "\n").unwrap();
    let out = diff(&[a, partial.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let expected = format!("{}:3:", partial.join("samples.jsonl").display());
    assert!(stderr(&out).contains(&expected), "{}", describe(&out));
    let nowhere = dir.path().join("nowhere");
    let out = diff(&[a, nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no results folder"),
        "{}",
        describe(&out)
    );
    let out = diff(&[a, b, "--metric", "f1"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no metric \"f1\""),
        "{}",
        describe(&out)
    );
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains("panicked"), "{text}");
    }

    fake_a.shutdown().await;
    fake_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_on_a_coordinator_are_compared_by_name_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 20);
    let fake_a = fake_answering(&rows, &[]).await;
    let fake_b = fake_answering(&rows, &[2, 4, 6, 8, 10, 12, 14]).await;
    let c = LocalCluster::start(
        dir.path(),
        "admin-token-for-the-diff-test",
        "worker-token-for-the-diff-test",
        &[("SHARDLINE_KEY_E2E", "test-key")],
    )
    .await;
    let mut ids = Vec::new();
    for (name, model, fake) in [("cl-a", "model-a", &fake_a), ("cl-b", "model-b", &fake_b)] {
        let job = job_for(dir.path(), &dataset, fake, name, model);
        let out = c.admin(&["submit", job.to_str().unwrap(), "--watch"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            describe(&out),
            c.logs()
        );
        ids.push(
            stdout(&out)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        );
    }

    let out = c.admin(&[
        "diff",
        "cl-a",
        "cl-b",
        "--json",
        "--fail-on-regression",
        "0.1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        describe(&out),
        c.logs()
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json parses");
    let em = &json["metrics"][0];
    assert!((em["diff"].as_f64().unwrap() + 0.35).abs() < 1e-9, "{em}");
    assert_eq!(em["significant"], true);
    let worse: BTreeSet<&str> = json["flips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        worse,
        BTreeSet::from(["q2", "q4", "q6", "q8", "q10", "q12", "q14"])
    );
    assert!(json["a"]["samples"]
        .as_str()
        .unwrap()
        .contains("shardline-diff-"));

    // By id, as tables; the samples fetched into a temporary folder are
    // gone afterwards.
    let out = c.admin(&["diff", &ids[0], &ids[1]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        describe(&out),
        c.logs()
    );
    assert!(
        stdout(&out).contains(&format!("A  job {} (cl-a)", ids[0])),
        "{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains("7 worse, 0 better"),
        "{}",
        describe(&out)
    );
    let samples = json["a"]["samples"].as_str().unwrap();
    assert!(!Path::new(samples).exists(), "{samples} was left behind");

    fake_a.shutdown().await;
    fake_b.shutdown().await;
}

fn json_diff(json: &serde_json::Value) -> serde_json::Value {
    json["metrics"][0]["diff"].clone()
}
