//! A job file and a dataset together, through what the planner does with
//! them: load the spec, compile its templates (`Planner::new`), then render
//! every row into requests (`plan_doc`). The input is the TOML text, a line
//! `---`, then the dataset's contents; the spec's dataset and few-shot paths
//! are pointed at that dataset. Any panic (or a hang) is a bug: a bad
//! template or row must be a `SpecError` or a `RenderError`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use jobs::{DatasetReader, JobSpec, Planner};
use libfuzzer_sys::fuzz_target;

fn files() -> &'static (PathBuf, PathBuf) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap()).path();
        (dir.join("job.toml"), dir.join("data.jsonl"))
    })
}

/// At most this many rows are planned per input, to keep runs fast.
const MAX_ROWS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let split = data.windows(5).position(|w| w == b"\n---\n");
    let (toml, rows) = match split {
        Some(at) => (&data[..at], &data[at + 5..]),
        None => (data, &b""[..]),
    };
    let (job, dataset) = files();
    std::fs::write(job, toml).unwrap();
    std::fs::write(dataset, rows).unwrap();
    let Ok(mut spec) = JobSpec::from_toml_file(job) else {
        return;
    };
    spec.dataset.path = dataset.clone();
    if let Some(fewshot) = &mut spec.task.fewshot {
        fewshot.path = dataset.clone();
    }
    let policy = jobs::ReadPolicy::unrestricted();
    let Ok(planner) = Planner::new(&spec, &policy) else {
        return;
    };
    let Ok(reader) = DatasetReader::open(&spec.dataset, &policy) else {
        return;
    };
    for doc in reader.take(MAX_ROWS) {
        let Ok(doc) = doc else { break };
        if let Ok(plan) = planner.plan_doc(&doc) {
            assert!(
                plan.requests.iter().all(|r| r.key.as_str().len() == 64),
                "every request has a sha256 key"
            );
        }
    }
});
