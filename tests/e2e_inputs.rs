//! End to end: bad input fails clearly (never a panic) with exit code 2 and
//! nothing sent, different models or temperatures never share cache
//! entries, and datasets in every format and place (CSV, JSONL shards,
//! sharded Parquet, `s3://` objects, prefixes and globs) run like one
//! local JSONL file.

mod support;

use cache::ObjectStore;

use support::*;
use testkit::{FakeConfig, FakeOpenAi};

fn assert_clean_failure(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe(out));
    assert!(!stderr.contains("panicked"), "{}", describe(out));
    // Piped, not a terminal: log lines come without colour codes.
    assert!(!stderr.contains('\u{1b}'), "{}", describe(out));
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "missing {needle:?} in\n{}",
            describe(out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (dataset, _) = write_dataset(dir.path(), 5);

    // Unknown spec field: file, line and field path.
    let job = write_job(
        dir.path(),
        &dataset,
        "http://127.0.0.1:9/v1",
        "temprature = 0.5",
    );
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(&out, &["job.toml:", "temprature"]);

    // A template that refers to a field the rows do not have.
    let text =
        std::fs::read_to_string(write_job(dir.path(), &dataset, "http://127.0.0.1:9/v1", ""))
            .unwrap()
            .replace("{{ question }}", "{{ qestion }}");
    std::fs::write(&job, text).unwrap();
    let out = run_job(&job, &home, &[]);
    assert_clean_failure(&out, &["data.jsonl:1", "qestion", "task.messages"]);

    // A dataset that cannot be read.
    let missing = dir.path().join("nope.jsonl");
    let job = write_job(dir.path(), &missing, "http://127.0.0.1:9/v1", "");
    let out = run_job(&job, &home, &[]);
    assert_clean_failure(&out, &["nope.jsonl"]);

    // Malformed JSONL: file:line and the way out.
    std::fs::write(&dataset, "{\"id\": \"a\", \"question\": \"q\", \"answer\": \"a\", \"subset\": \"s\"}\n{\"id\": \"b\",\n").unwrap();
    let job = write_job(dir.path(), &dataset, "http://127.0.0.1:9/v1", "");
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(&out, &["data.jsonl:2", "on_bad_row"]);
}

/// A row as `write_dataset` writes them, with the given id.
fn row(id: &str, i: usize) -> String {
    serde_json::json!({"id": id, "question": format!("q{i}"), "answer": "a", "subset": "s"})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_datasets_exit_2_naming_the_file_and_lines_and_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let (dataset, _) = write_dataset(dir.path(), 1);
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");

    // Ten rows with one id: refused, naming the first two lines.
    let rows: Vec<String> = (0..10).map(|i| row("same", i)).collect();
    std::fs::write(&dataset, rows.join("\n") + "\n").unwrap();
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(&out, &["data.jsonl:2: id \"same\"", "line 1", "id_field"]);

    // The same rows without `id_field`: numbered, all ten run.
    edit_file(&job, "id_field = \"id\"\n", "");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let samples = read_lines(&home.join("results/e2e/samples.jsonl"));
    let ids: Vec<&str> = samples
        .iter()
        .map(|s| s["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let sent = fake.stats().total;
    assert_eq!(sent, 10);

    // No documents at all: said with the file's name, not scored as `-`.
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    for text in ["", "\n\n"] {
        std::fs::write(&dataset, text).unwrap();
        let out = run_job(&job, &home, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert_clean_failure(&out, &["data.jsonl: no documents to evaluate"]);
        let out = run_job(&job, &home, &["--dry-run"]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert_clean_failure(&out, &["data.jsonl: no documents to evaluate"]);
    }

    // A row that is not UTF-8: bad input like any malformed row.
    let mut bytes = (row("a", 0) + "\n").into_bytes();
    bytes.extend_from_slice(b"{\"id\": \"b\", \"question\": \"\xff\xfe\"}\n");
    std::fs::write(&dataset, bytes).unwrap();
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(&out, &["data.jsonl:2: not valid UTF-8", "on_bad_row"]);
    assert_eq!(fake.stats().total, sent, "a bad dataset sent requests");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_variables_of_the_spec_exit_2_before_anything_runs() {
    // The quickstart with its variables unset: one message naming both,
    // exit 2, no backend ever built.
    let dir = tempfile::tempdir().unwrap();
    let quickstart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/jobs/examples/quickstart/job.toml"
    );
    let home = dir.path().join("home");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            quickstart,
            "--home",
            home.to_str().unwrap(),
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        let child = command(&args)
            .env_remove("SHARDLINE_QUICKSTART_BASE_URL")
            .env("SHARDLINE_QUICKSTART_API_KEY", " ")
            .env("SHARDLINE_LOG", "info")
            .spawn()
            .unwrap();
        wait_bounded(child, std::time::Duration::from_secs(60))
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(
        &out,
        &[
            "quickstart/job.toml: SHARDLINE_QUICKSTART_BASE_URL (named by model.base_url_env) is \
             not set, SHARDLINE_QUICKSTART_API_KEY (named by model.api_key_env) is empty; export \
             them and run again",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one message, nothing else: {stderr}"
    );
    assert!(!home.exists(), "nothing may run: {}", describe(&out));

    // The dry run estimates, then says the same.
    let out = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing was sent"),
        "{}",
        describe(&out)
    );
    assert_clean_failure(
        &out,
        &["SHARDLINE_QUICKSTART_BASE_URL (named by model.base_url_env)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_fails_with_the_endpoint_named() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = write_dataset(dir.path(), 6);
    // Nothing listens on this port: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let job = write_job(dir.path(), &dataset, &url, "");
    edit_file(&job, "max_retries = 3", "max_retries = 1");
    edit_file(&job, "shard_size = 10", "shard_size = 10\nmax_attempts = 1");
    let home = dir.path().join("home");
    let out = run_to_end(&[
        "run",
        job.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
        "--no-progress",
    ]);
    // Every request failed after its retries: the job finished with them
    // counted, and running it again retries them.
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_clean_failure(&out, &[&format!("127.0.0.1:{port}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_temperatures_never_share_cache_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = write_dataset(dir.path(), 15);
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let job = write_job(dir.path(), &dataset, &fake.base_url(), "");
    let home = dir.path().join("home");
    let (job_s, home_s) = (job.to_str().unwrap(), home.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut args = vec!["run", job_s, "--home", home_s, "--no-progress"];
        args.extend_from_slice(extra);
        let out = run_to_end(&args);
        assert!(out.status.success(), "{}", describe(&out));
    };

    run(&[]);
    assert_eq!(fake.stats().ok, 15);
    run(&[]);
    assert_eq!(
        fake.stats().ok,
        15,
        "same model, same parameters: all cached"
    );
    run(&["--model", "fake-model-2"]);
    assert_eq!(fake.stats().ok, 30, "another model must not reuse outputs");
    let by_model = |m: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.body["model"] == m)
            .count()
    };
    assert_eq!((by_model("fake-model"), by_model("fake-model-2")), (15, 15));

    edit_file(&job, "temperature = 0.0", "temperature = 0.7");
    run(&[]);
    assert_eq!(
        fake.stats().ok,
        45,
        "another temperature must not reuse outputs"
    );
    run(&[]);
    assert_eq!(fake.stats().ok, 45);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_and_folders_of_jsonl_shards_run_like_one_jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let doc_ids = |home: &std::path::Path| -> Vec<String> {
        read_lines(&home.join("results/e2e/samples.jsonl"))
            .iter()
            .map(|s| s["doc_id"].as_str().unwrap().to_string())
            .collect()
    };

    // CSV: the header names the fields; a quoted cell keeps its comma.
    let csv = dir.path().join("qa.csv");
    std::fs::write(
        &csv,
        "id,question,answer,subset\nc1,\"Two, words?\",2,even\nc2,Three?,3,odd\n",
    )
    .unwrap();
    let job = write_job(dir.path(), &csv, &fake.base_url(), "");
    let home = dir.path().join("home-csv");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home), ["c1", "c2"]);
    let prompts: Vec<String> = fake.requests().into_iter().map(|r| r.prompt).collect();
    assert!(prompts.iter().any(|p| p == "Two, words?"), "{prompts:?}");
    assert_eq!(fake.stats().ok, 2);

    // A bad CSV record: exit 2, naming the file and line, nothing sent.
    std::fs::write(&csv, "id,question,answer,subset\nc1,Four?,4,even,extra\n").unwrap();
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(&out, &["qa.csv:2: expected 4 fields", "on_bad_row"]);
    assert_eq!(fake.stats().total, 2);

    // A folder of JSONL shards with the same ids in each: the ids name
    // their shard, every document runs once.
    let shards = dir.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    for (n, name) in ["test-00001.jsonl", "test-00000.jsonl.gz"]
        .iter()
        .enumerate()
    {
        let text = format!(
            "{}\n{}\n",
            serde_json::json!({"id": "a", "question": format!("shard {n} a"), "answer": "x", "subset": "s"}),
            serde_json::json!({"id": "b", "question": format!("shard {n} b"), "answer": "x", "subset": "s"}),
        );
        let bytes = if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
            gz.finish().unwrap()
        } else {
            text.into_bytes()
        };
        std::fs::write(shards.join(name), bytes).unwrap();
    }
    let job = write_job(dir.path(), &shards, &fake.base_url(), "");
    let home = dir.path().join("home-shards");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        doc_ids(&home),
        [
            "test-00000.jsonl.gz/a",
            "test-00000.jsonl.gz/b",
            "test-00001.jsonl/a",
            "test-00001.jsonl/b"
        ]
    );
    assert_eq!(fake.stats().ok, 6);

    // A glob of the same shards: the same documents, all cached now.
    let job = write_job(dir.path(), &shards.join("test-*"), &fake.base_url(), "");
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home).len(), 4);
    assert_eq!(fake.stats().ok, 6, "the glob's documents were cached");
    fake.shutdown().await;
}

/// The documents' ids of the last run in `home`, in order.
fn doc_ids(home: &std::path::Path) -> Vec<String> {
    read_lines(&home.join("results/e2e/samples.jsonl"))
        .iter()
        .map(|s| s["doc_id"].as_str().unwrap().to_string())
        .collect()
}

/// Makes the job's prompt show the list column, as a multiple-choice
/// prompt would.
fn prompt_with_choices(job: &std::path::Path) {
    edit_file(
        job,
        "content = \"{{ question }}\"",
        "content = \"{{ question }} Choices: {{ choices | join(', ') }}\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_parquet_folders_and_globs_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let data = dir.path().join("data");
    parquet_files::write_parquet_shards(&data, 2, 3);
    let home = dir.path().join("home");

    // The folder: every shard in name order, ids naming their shard, the
    // list column a list in the template.
    let job = write_job(dir.path(), &data, &fake.base_url(), "");
    prompt_with_choices(&job);
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home), parquet_files::shard_ids(2, 3));
    let prompts: Vec<String> = fake.requests().into_iter().map(|r| r.prompt).collect();
    assert!(
        prompts
            .iter()
            .any(|p| p == "What is 2 plus 2? Choices: 4, 5, none"),
        "{prompts:?}"
    );
    assert_eq!(fake.stats().ok, 6);

    // The Hub's glob for the split: the same documents, all cached.
    let job = write_job(
        dir.path(),
        &data.join("test-*.parquet"),
        &fake.base_url(),
        "",
    );
    prompt_with_choices(&job);
    let out = run_job(&job, &home, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home), parquet_files::shard_ids(2, 3));
    assert_eq!(fake.stats().ok, 6, "the glob's documents were cached");

    // A shard that is not Parquet: exit 2 naming it, nothing sent.
    std::fs::write(data.join("test-00002-of-00002.parquet"), "not parquet").unwrap();
    let out = run_job(&job, &home, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(
        &out,
        &["test-00002-of-00002.parquet:1: cannot read the file as Parquet"],
    );
    assert_eq!(fake.stats().total, 6);
    fake.shutdown().await;
}

/// The test S3 server's bucket of datasets: `qa/data.jsonl` (four rows of
/// `write_dataset`), `qa/bad.jsonl` (its line 2 cut short) and
/// `hf/data/`, two Parquet shards of three rows beside a metadata file.
async fn upload_datasets(s3: &cache::S3TestServer, dir: &std::path::Path) {
    let bucket = cache::S3Store::new("s3://shardline-datasets", s3.options()).unwrap();
    bucket.create_bucket_if_missing().await.unwrap();
    let (local, _) = write_dataset(dir, 4);
    let put = |key: &'static str, bytes: Vec<u8>| (key.to_string(), bytes);
    let mut objects = vec![put("qa/data.jsonl", std::fs::read(&local).unwrap())];
    let bad = format!("{}\n{{\"id\": \"b\",\n", row("a", 0));
    objects.push(put("qa/bad.jsonl", bad.into_bytes()));
    let shards = dir.join("shards");
    parquet_files::write_parquet_shards(&shards, 2, 3);
    for entry in std::fs::read_dir(&shards).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        objects.push((format!("hf/data/{name}"), std::fs::read(&path).unwrap()));
    }
    objects.push(put("hf/data/dataset_info.json", b"{}".to_vec()));
    for (key, bytes) in objects {
        bucket.put(&key, bytes.into()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_datasets_run_end_to_end_and_fail_naming_the_url() {
    let s3 = cache::S3TestServer::start().expect("moto S3 server (scripts/ensure-s3.sh)");
    let dir = tempfile::tempdir().unwrap();
    upload_datasets(&s3, dir.path()).await;
    let fake = FakeOpenAi::start(FakeConfig::default()).await.unwrap();
    let home = dir.path().join("home");
    let run_in = |home: &std::path::Path, dataset: &str, extra: &[&str]| {
        let job = write_job(
            dir.path(),
            std::path::Path::new(dataset),
            &fake.base_url(),
            "",
        );
        if dataset.contains("/hf/") {
            prompt_with_choices(&job);
        }
        let (job, home) = (job.to_str().unwrap(), home.to_str().unwrap());
        let mut args = vec!["run", job, "--home", home, "--no-progress"];
        args.extend_from_slice(extra);
        let child = command(&args).envs(s3.env()).spawn().unwrap();
        wait_bounded(child, std::time::Duration::from_secs(120))
    };
    let run = |dataset: &str, extra: &[&str]| run_in(&home, dataset, extra);

    // One JSONL object.
    let out = run("s3://shardline-datasets/qa/data.jsonl", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home), ["q0", "q1", "q2", "q3"]);
    assert_eq!(fake.stats().ok, 4);

    // A prefix and a glob of sharded Parquet: the same six documents.
    let out = run("s3://shardline-datasets/hf/data/", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home), parquet_files::shard_ids(2, 3));
    assert_eq!(fake.stats().ok, 10);
    let glob = "s3://shardline-datasets/hf/data/test-*.parquet";
    let out = run(glob, &["--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("documents:     6"), "{}", describe(&out));
    assert!(
        stdout.contains("all already in the cache"),
        "{}",
        describe(&out)
    );
    let out = run(glob, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&home), parquet_files::shard_ids(2, 3));
    assert_eq!(fake.stats().ok, 10, "the glob's documents were cached");

    // A missing object, a malformed one, a missing bucket: exit 2 naming
    // the URL (and the line), nothing sent.
    let out = run("s3://shardline-datasets/qa/nope.jsonl", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(
        &out,
        &["s3://shardline-datasets/qa/nope.jsonl: cannot open dataset: no such object"],
    );
    let out = run("s3://shardline-datasets/qa/bad.jsonl", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(
        &out,
        &[
            "s3://shardline-datasets/qa/bad.jsonl:2: invalid JSON",
            "on_bad_row",
        ],
    );
    let out = run("s3://shardline-missing/qa.jsonl", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_clean_failure(
        &out,
        &[
            "s3://shardline-missing/qa.jsonl: ",
            "bucket shardline-missing does not exist",
        ],
    );
    assert_eq!(fake.stats().total, 10);

    // An S3 cache too: one set of S3 settings reaches both.
    let s3_home = dir.path().join("home-s3-cache");
    let cache = ["--cache", "s3://shardline-datasets/cache"];
    let out = run_in(&s3_home, "s3://shardline-datasets/qa/data.jsonl", &cache);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(doc_ids(&s3_home), ["q0", "q1", "q2", "q3"]);
    assert_eq!(fake.stats().ok, 14, "a new cache, so sent again");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_reads_s3_datasets_under_its_s3_roots_only() {
    const ADMIN: &str = "admin-token-for-the-s3-test";
    let s3 = cache::S3TestServer::start().expect("moto S3 server (scripts/ensure-s3.sh)");
    let dir = tempfile::tempdir().unwrap();
    upload_datasets(&s3, dir.path()).await;
    let port = support::cluster::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let home = dir.path().join("home");
    let mut serve = command(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--home",
        home.to_str().unwrap(),
        "--dataset-root",
        "s3://shardline-datasets/qa",
    ]);
    serve
        .env("SHARDLINE_ADMIN_TOKEN", ADMIN)
        .env("SHARDLINE_WORKER_TOKEN", "worker-token-for-the-s3-test")
        .envs(s3.env());
    let serve = support::cluster::Proc::spawn("serve", serve, dir.path());
    let client = client::CoordinatorClient::new(&url, ADMIN.into()).unwrap();
    let start = std::time::Instant::now();
    while client.healthz().await.is_err() {
        assert!(start.elapsed().as_secs() < 30, "{}", serve.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let spec = |dataset: &str| {
        let job = write_job(
            dir.path(),
            std::path::Path::new(dataset),
            "http://127.0.0.1:9/v1",
            "",
        );
        jobs::JobSpec::from_toml_file(&job).unwrap()
    };
    let planned = |id| {
        let client = &client;
        async move {
            let start = std::time::Instant::now();
            loop {
                let status = client.job(id).await.unwrap();
                if status.counts.requests > 0 || status.state.is_terminal() {
                    return status;
                }
                assert!(start.elapsed().as_secs() < 60, "not planned");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };

    // Under the root: planned from S3 with the coordinator's settings.
    let job = client
        .submit(&spec("s3://shardline-datasets/qa/data.jsonl"))
        .await
        .unwrap();
    let status = planned(job.id).await;
    assert_eq!(
        (status.counts.docs, status.counts.requests),
        (4, 4),
        "{status:?}\n{}",
        serve.log()
    );
    // A malformed object under the root fails the job naming URL and line.
    let job = client
        .submit(&spec("s3://shardline-datasets/qa/bad.jsonl"))
        .await
        .unwrap();
    let status = planned(job.id).await;
    let error = status.error.clone().unwrap_or_default();
    assert!(
        error.contains("s3://shardline-datasets/qa/bad.jsonl:2: invalid JSON"),
        "{status:?}"
    );
    // Outside it (another prefix of the same bucket): refused at submit.
    let refused = client
        .submit(&spec("s3://shardline-datasets/hf/data/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("dataset.path") && refused.contains("outside the dataset roots"),
        "{refused}"
    );
}
