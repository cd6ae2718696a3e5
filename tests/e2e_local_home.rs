//! End-to-end tests of what comes after a first `shardline run`, on the
//! real binary against the fake OpenAI-compatible server: `status`,
//! `results` and `cancel` read the local home `run` used, each run keeps
//! its own results folder (a `--limit` run never replaces a full one), and
//! a rerun answered wholly from the cache says so.

mod support;

use std::path::Path;
use std::process::Output;

use support::*;
use testkit::{FakeConfig, FakeOpenAi};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `shardline ARGS` in `cwd`, with no coordinator or token in the
/// environment, to completion.
fn in_dir(cwd: &Path, args: &[&str]) -> Output {
    let child = command(args)
        .current_dir(cwd)
        .env_remove("SHARDLINE_COORDINATOR")
        .env_remove("SHARDLINE_ADMIN_TOKEN")
        .env_remove("SHARDLINE_HOME")
        .env_remove("SHARDLINE_CONFIG")
        .spawn()
        .expect("spawn shardline");
    wait_bounded(child, std::time::Duration::from_secs(60))
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
    // Asked for, the per-sample table lands in the run's folder.
    let sent = fake.stats().total;
    let out = run_job(&job, &home, &["--format", "csv"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().total, sent);
    let table = std::fs::read_to_string(results.join("latest/samples.csv")).unwrap();
    assert_eq!(table.lines().count(), 21, "{table}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_results_and_cancel_read_the_local_home() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 10);
    let fake = FakeOpenAi::start(FakeConfig {
        answers: rows.iter().cloned().collect(),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    // The default home of a `run` started in this folder.
    let home = dir.path().join(".shardline");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let home_s = home.to_str().unwrap();

    let out = in_dir(dir.path(), &["status", "--home", home_s]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.contains(" e2e "))
        .unwrap_or_else(|| panic!("no e2e job in\n{table}"));
    assert!(row.contains("completed"), "{table}");
    let id = row.split_whitespace().next().unwrap().to_string();

    // No coordinator named, and a home here: it is read, and the user told.
    let out = in_dir(dir.path(), &["status"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains(&id), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no coordinator named") && stderr(&out).contains(".shardline"),
        "{}",
        describe(&out)
    );

    let out = in_dir(dir.path(), &["results", &id, "--home", home_s]);
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["metrics"][0]["mean"].as_f64(), Some(1.0), "{report}");
    assert_eq!(report["missing_requests"], 0, "{report}");
    let saved = dir.path().join("saved");
    let out = in_dir(
        dir.path(),
        &[
            "results",
            &id,
            "--home",
            home_s,
            "--output",
            saved.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read_lines(&saved.join("samples.jsonl")).len(), 10);

    // The per-sample table for pandas: one row per document, one column
    // per metric; it needs a folder to go to.
    let table = dir.path().join("table");
    let args = ["results", &id, "--home", home_s, "--format", "csv"];
    let out = in_dir(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("--output"), "{}", describe(&out));
    let mut with_output = args.to_vec();
    with_output.extend(["--output", table.to_str().unwrap()]);
    let out = in_dir(dir.path(), &with_output);
    assert!(out.status.success(), "{}", describe(&out));
    let csv = std::fs::read_to_string(table.join("samples.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("doc_id,doc_index,subset,prompt,output,target,")
            && lines[0].contains(",exact_match,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 11, "{csv}");
    // The prompt, JSON messages, is one quoted cell.
    assert!(
        lines[1].starts_with("q0,0,even,\"[{\"\"role\"\":\"\"user\"\""),
        "{csv}"
    );
    let mut parquet = args.to_vec();
    parquet[5] = "parquet";
    parquet.extend(["--output", table.to_str().unwrap()]);
    let out = in_dir(dir.path(), &parquet);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("(10 rows)"), "{}", describe(&out));
    let bytes = std::fs::read(table.join("samples.parquet")).unwrap();
    assert!(
        bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "not a Parquet file"
    );

    // Cancelling a finished job leaves it finished; an unknown id is
    // refused naming the home.
    let out = in_dir(dir.path(), &["cancel", &id, "--home", home_s]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains("completed"), "{}", describe(&out));
    let unknown = uuid::Uuid::nil().to_string();
    let out = in_dir(dir.path(), &["cancel", &unknown, "--home", home_s]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no job") && stderr(&out).contains(home_s),
        "{}",
        describe(&out)
    );

    // Both places named: refused. Neither, and no home: the message says
    // how to read one.
    let out = in_dir(
        dir.path(),
        &[
            "status",
            "--home",
            home_s,
            "--coordinator",
            "http://127.0.0.1:9",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = in_dir(&elsewhere, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("--home"), "{}", describe(&out));
    let out = in_dir(&elsewhere, &["status", "--home", "nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not a Shardline home"),
        "{}",
        describe(&out)
    );
    fake.shutdown().await;
}
