//! Helpers shared by the end-to-end tests: datasets, job files, and the
//! `shardline` binary run as a real child process.

#![allow(dead_code)]

pub mod cluster;
pub mod cluster_jobs;
pub mod local;
pub mod parquet_files;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn shardline_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shardline")
}

/// A question/answer dataset of `n` rows with two subsets. Returns the
/// questions in order and the answers.
pub fn write_dataset(dir: &Path, n: usize) -> (PathBuf, Vec<(String, String)>) {
    let path = dir.join("data.jsonl");
    let mut text = String::new();
    let mut rows = Vec::new();
    for i in 0..n {
        let q = format!("What is {i} plus {i}? (item {i})");
        let a = format!("{}", 2 * i);
        let subset = if i % 2 == 0 { "even" } else { "odd" };
        text.push_str(
            &serde_json::json!({"id": format!("q{i}"), "question": q, "answer": a, "subset": subset})
                .to_string(),
        );
        text.push('\n');
        rows.push((q, a));
    }
    std::fs::write(&path, text).expect("write dataset");
    (path, rows)
}

/// Writes a generate job pointing at `base_url`.
pub fn write_job(dir: &Path, dataset: &Path, base_url: &str, extra_model: &str) -> PathBuf {
    let job = format!(
        r#"name = "e2e"

[model]
backend = "openai"
model = "fake-model"
base_url = "{base_url}"
api_key_env = "SHARDLINE_KEY_E2E"
concurrency = 4
max_retries = 3
timeout_secs = 10
{extra_model}

[dataset]
path = "{dataset}"
id_field = "id"
subset_field = "subset"

[task]
kind = "generate"
messages = [{{ role = "user", content = "{{{{ question }}}}" }}]
target = "{{{{ answer }}}}"

[task.generation]
max_tokens = 16
temperature = 0.0

[[metrics]]
type = "exact_match"
normalize = ["strip", "lowercase"]

[sharding]
shard_size = 10
"#,
        dataset = dataset.display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).expect("write job");
    path
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(shardline_bin());
    cmd.args(args)
        .env("SHARDLINE_KEY_E2E", "test-key")
        .env("SHARDLINE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `shardline` to completion (bounded), returning its output.
pub fn run_to_end(args: &[&str]) -> Output {
    let child = command(args).spawn().expect("spawn shardline");
    wait_bounded(child, Duration::from_secs(120))
}

pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "shardline did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every successful record in every segment under `cache_dir`, by key.
pub fn segment_outputs(cache_dir: &Path) -> HashMap<String, jobs::SegmentRecord> {
    let mut out = HashMap::new();
    let root = cache_dir.join("segments");
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.to_string_lossy().to_string();
            if !name.ends_with(".jsonl.zst")
                || path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&path).expect("read segment");
            for record in cache::decode_segment(&name, &data).expect("decode segment") {
                if record.is_success() {
                    out.insert(record.key.0.clone(), record);
                }
            }
        }
    }
    out
}

/// Request key → the question it asks, computed with the same planner the
/// coordinator uses.
pub fn keys_to_questions(job: &Path) -> HashMap<String, String> {
    let spec = jobs::JobSpec::from_toml_file(job).expect("load spec");
    let planner =
        jobs::plan::Planner::new(&spec, &jobs::ReadPolicy::unrestricted()).expect("planner");
    let reader =
        jobs::dataset::DatasetReader::open(&spec.dataset, &jobs::ReadPolicy::unrestricted())
            .expect("dataset");
    let mut map = HashMap::new();
    for doc in reader {
        let doc = doc.expect("doc");
        let question = doc.fields["question"]
            .as_str()
            .expect("question")
            .to_string();
        let plan = planner.plan_doc(&doc).expect("plan");
        for req in plan.requests {
            map.insert(req.key.0.clone(), question.clone());
        }
    }
    map
}

pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// `shardline run JOB --home HOME --no-progress EXTRA…`, to completion.
pub fn run_job(job: &Path, home: &Path, extra: &[&str]) -> Output {
    let (job, home) = (
        job.to_str().expect("utf-8 path"),
        home.to_str().expect("utf-8 path"),
    );
    let mut args = vec!["run", job, "--home", home, "--no-progress"];
    args.extend_from_slice(extra);
    run_to_end(&args)
}

/// Replaces `from` with `to` in a text file, failing if `from` is absent.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read file to edit");
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write edited file");
}

/// Records that `test` skipped because of `reason`: on its output, and as a
/// line of the file `SHARDLINE_SKIP_LOG` names, which scripts/test.sh
/// prints after the run (the format of `engine::skip_log`, which these
/// tests do not depend on).
pub fn skip(test: &str, reason: &str) {
    let line = format!(
        "{test}: {}",
        reason.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    eprintln!("SKIPPED {line}");
    if let Some(log) = std::env::var_os("SHARDLINE_SKIP_LOG") {
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    }
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}
