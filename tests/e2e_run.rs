//! End-to-end tests of `shardline run`, `rescore` and `cache reindex` as real
//! processes against the fake OpenAI-compatible server: a SIGKILL mid-job and
//! a resume that re-sends nothing already written, failed requests retried
//! alone by a later run, Ctrl-C, and re-scoring with zero inference.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;
use testkit::{FakeConfig, FakeOpenAi};

fn answers_for(rows: &[(String, String)], every: usize) -> HashMap<String, String> {
    // The fake answers every `every`-th question correctly.
    rows.iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(_, (q, a))| (q.clone(), a.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_then_resume_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 300);
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        latency: Duration::from_millis(40),
        answers: answers_for(&rows, 3),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let home = dir.path().join("home");
    let home_s = home.to_str().unwrap();
    let job_s = job.to_str().unwrap();

    // First run: kill it for real once a few segments are written.
    let mut child = command(&["run", job_s, "--home", home_s, "--no-progress"])
        .spawn()
        .unwrap();
    let cache_dir = home.join("cache");
    let start = Instant::now();
    loop {
        if segment_outputs(&cache_dir).len() >= 30 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "shardline exited before the kill: {status:?}; the job is too small for this test"
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no segment written in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written_before_kill = segment_outputs(&cache_dir);
    let requests_before = fake.stats().ok;
    assert!(
        written_before_kill.len() < rows.len(),
        "the job finished before the kill ({} outputs written)",
        written_before_kill.len()
    );

    // Second run: resumes and completes.
    let out = run_to_end(&["run", job_s, "--home", home_s, "--no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));

    let key_to_question = keys_to_questions(&job);
    for key in written_before_kill.keys() {
        let question = &key_to_question[key];
        assert_eq!(
            fake.count_for_prompt(question),
            1,
            "output for {question:?} was written before the kill but requested again"
        );
    }
    // Every question was answered, and no more requests were made than one
    // per question plus those lost in flight when the process was killed.
    let total_ok = fake.stats().ok as usize;
    assert!(total_ok >= rows.len());
    assert!(
        total_ok - rows.len()
            <= (requests_before as usize).saturating_sub(written_before_kill.len()),
        "{total_ok} requests for {} questions",
        rows.len()
    );

    let results = home.join("results").join("e2e");
    let samples = read_lines(&results.join("samples.jsonl"));
    assert_eq!(samples.len(), rows.len());
    assert!(samples
        .iter()
        .all(|s| s["missing"] != serde_json::Value::Bool(true)));
    let metrics: serde_json::Value = read_json(&results.join("metrics.json"));
    let em = &metrics["metrics"][0];
    assert_eq!(em["name"], "exact_match");
    let mean = em["mean"].as_f64().unwrap();
    assert!((mean - 100.0 / 300.0).abs() < 1e-9, "exact_match {mean}");

    // Re-scoring reads the cache only: no request reaches the server.
    let before = fake.stats().total;
    let out = run_to_end(&["rescore", job_s, "--home", home_s, "--format", "parquet"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().total, before, "rescore sent requests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exact_match"), "{stdout}");
    let table = std::fs::read(results.join("latest/samples.parquet")).unwrap();
    assert!(
        table.starts_with(b"PAR1"),
        "no Parquet table beside the samples"
    );

    // So does a rerun of the finished job: everything is cached.
    let out = run_to_end(&["run", job_s, "--home", home_s, "--no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        fake.stats().total,
        before,
        "a rerun of a finished job sent requests"
    );

    // The index can be rebuilt from the segments alone.
    std::fs::remove_file(home.join("shardline.db")).unwrap();
    let _ = std::fs::remove_file(home.join("shardline.db-wal"));
    let _ = std::fs::remove_file(home.join("shardline.db-shm"));
    let out = run_to_end(&["cache", "reindex", "--home", home_s]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_to_end(&["rescore", job_s, "--home", home_s]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().total, before);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_reported_and_retried_alone_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 40);
    let fake = FakeOpenAi::start(FakeConfig {
        api_key: Some("test-key".into()),
        answers: answers_for(&rows, 1),
        // Rejected with 400: not retried, recorded as failed.
        fail_prompts_containing: vec!["(item 7)".into(), "(item 21)".into()],
        // Transient faults are retried and never surface.
        rate_limit_every: Some(9),
        retry_after_secs: 0.05,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let home = dir.path().join("home");
    let (home_s, job_s) = (home.to_str().unwrap(), job.to_str().unwrap());

    let out = run_to_end(&["run", job_s, "--home", home_s, "--no-progress"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 requests failed"), "{}", describe(&out));
    assert!(fake.stats().rate_limited > 0, "the fake never rate-limited");
    let samples = read_lines(&home.join("results/e2e/samples.jsonl"));
    assert_eq!(samples.iter().filter(|s| s["missing"] == true).count(), 2);
    // Both are listed with the endpoint's own words.
    let missing = read_lines(&home.join("results/e2e/missing.jsonl"));
    let ids: Vec<&str> = missing
        .iter()
        .map(|m| m["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["q7", "q21"]);
    assert!(
        missing
            .iter()
            .all(|m| m["error"].as_str().unwrap().contains("400")),
        "{missing:?}"
    );

    // The endpoint recovers; the next run sends only the two failed requests.
    fake.set_config(|c| c.fail_prompts_containing.clear());
    let ok_before = fake.stats().ok;
    let out = run_to_end(&["run", job_s, "--home", home_s, "--no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().ok - ok_before, 2);
    assert_eq!(fake.count_for_prompt("(item 7)"), 1);
    let metrics: serde_json::Value = read_json(&home.join("results/e2e/metrics.json"));
    assert_eq!(metrics["metrics"][0]["mean"].as_f64(), Some(1.0));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_none_scores_from_cache_or_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 20);
    let fake = FakeOpenAi::start(FakeConfig {
        answers: answers_for(&rows, 2),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let home = dir.path().join("home");

    // Nothing cached yet: `none` scores nothing, marks every doc missing,
    // lists every missing request, and exits 3.
    let none_dir = dir.path().join("none");
    std::fs::create_dir_all(&none_dir).unwrap();
    let none_job = write_job(&none_dir, &dataset, &fake.base_url(), "");
    edit_file(&none_job, "backend = \"openai\"", "backend = \"none\"");
    // The dataset lies beside the job's folder, not in it: its user allows
    // that folder too.
    let root = ["--dataset-root", dir.path().to_str().unwrap()];
    let out = run_job(&none_job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the dataset roots"),
        "{}",
        describe(&out)
    );
    let out = run_job(&none_job, &home, &root);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let results = home.join("results/e2e");
    let missing_file = results.join("missing.jsonl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("20 requests failed or are missing")
            && stderr.contains(&results.display().to_string())
            && stderr.contains("missing.jsonl")
            && stderr.contains("real backend"),
        "{}",
        describe(&out)
    );
    let samples = read_lines(&results.join("samples.jsonl"));
    assert_eq!(samples.len(), 20);
    assert!(samples.iter().all(|s| s["missing"] == true));
    let missing = read_lines(&missing_file);
    let ids: Vec<&str> = missing
        .iter()
        .map(|m| m["doc_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("q{i}")).collect();
    assert_eq!(ids, expected, "every missing request, in dataset order");
    assert_eq!(missing[19]["line"], 20);
    assert!(missing
        .iter()
        .all(|m| m["key"].as_str().unwrap().len() == 64));
    assert_eq!(fake.stats().total, 0);

    // After a real run, `none` scores the same outputs with zero requests.
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !missing_file.exists(),
        "an old list of missing requests was left"
    );
    let sent = fake.stats().total;
    assert_eq!(sent, 20);
    let out = run_job(&none_job, &home, &root);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fake.stats().total, sent);
    let metrics: serde_json::Value = read_json(&home.join("results/e2e/metrics.json"));
    assert_eq!(metrics["metrics"][0]["mean"].as_f64(), Some(0.5));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_keeps_what_was_paid_for() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, rows) = write_dataset(dir.path(), 200);
    let fake = FakeOpenAi::start(FakeConfig {
        latency: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let home = dir.path().join("home");
    let (home_s, job_s) = (home.to_str().unwrap(), job.to_str().unwrap());

    let child = command(&["run", job_s, "--home", home_s, "--no-progress"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while fake.stats().ok < 25 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGINT, as Ctrl-C sends.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let stopped_at = Instant::now();
    let out = wait_bounded(child, Duration::from_secs(30));
    assert!(
        stopped_at.elapsed() < Duration::from_secs(20),
        "Ctrl-C took {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run the same command again"),
        "{}",
        describe(&out)
    );
    let answered_before = fake.stats().ok as usize;
    let kept = segment_outputs(&home.join("cache")).len();

    let out = run_to_end(&["run", job_s, "--home", home_s, "--no-progress"]);
    assert!(out.status.success(), "{}", describe(&out));
    // Outputs written at Ctrl-C are not requested again.
    let total = fake.stats().ok as usize;
    assert!(
        total - answered_before <= rows.len() - kept,
        "{total} answered, {kept} kept of {answered_before}"
    );
    assert_eq!(
        read_lines(&home.join("results/e2e/samples.jsonl")).len(),
        rows.len()
    );
    fake.shutdown().await;
}
