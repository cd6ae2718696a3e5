//! End-to-end tests of what comes after a first `shardline run`, on the
//! real binary against the fake OpenAI-compatible server: each run keeps
//! its own results folder (a `--limit` run never replaces a full one), and
//! a rerun answered wholly from the cache says so.

mod support;

use std::path::Path;
use std::process::Output;

use support::*;
use testkit::{FakeConfig, FakeOpenAi};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run folders of a job's results folder (not `latest`).
fn runs(job_results: &Path) -> Vec<std::path::PathBuf> {
    let mut runs: Vec<_> = std::fs::read_dir(job_results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    runs.sort();
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_keeps_its_results_and_a_cached_rerun_says_what_it_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 20);
    let fake = FakeOpenAi::start(FakeConfig {
        answers: rows.iter().cloned().collect(),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let home = dir.path().join("home");
    let results = home.join("results/e2e");

    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read_lines(&results.join("latest/samples.jsonl")).len(), 20);

    // A smaller run: its own folder, the latest; the full one is kept.
    let out = run_job(&job, &home, &["--limit", "5"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read_lines(&results.join("latest/samples.jsonl")).len(), 5);
    // The flat paths of earlier versions read the latest run.
    assert_eq!(read_lines(&results.join("samples.jsonl")).len(), 5);
    assert_eq!(read_json(&results.join("metrics.json"))["docs_scored"], 5);
    let kept: Vec<usize> = runs(&results)
        .iter()
        .map(|r| read_lines(&r.join("samples.jsonl")).len())
        .collect();
    assert_eq!(kept, vec![20, 5], "{:?}", runs(&results));

    // Everything cached: the run says so, with what the outputs cost when
    // they were made, not "tokens: 0 prompt" as if nothing was evaluated.
    let sent = fake.stats().total;
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().total, sent);
    let err = stderr(&out);
    assert!(
        err.contains(
            "20 requests: 20 from the cache, 0 run, 0 failed; all answered from the cache"
        ),
        "{err}"
    );
    assert!(
        err.contains("they cost ") && err.contains(" completion tokens when made"),
        "{err}"
    );
    assert!(
        !err.contains("tokens: 0 prompt") && !err.contains("they cost 0 prompt"),
        "{err}"
    );
    assert_eq!(runs(&results).len(), 3);
    fake.shutdown().await;
}
