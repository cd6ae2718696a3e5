//! Arbitrary file contents as a dataset in each text format (JSONL, a JSON
//! array, CSV, TSV; gzip or zstd when the bytes say so), read by
//! `DatasetReader` (the planner's and the scorer's reader), and as a
//! few-shot file (`read_jsonl_examples`). The first byte picks the
//! `[dataset]` options (`limit`, `id_field`, `subset_field`, `on_bad_row`).
//! Any panic is a bug: every bad row must be a `DatasetError` or a counted
//! skip.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jobs::spec::{DatasetFormat, DatasetSpec, OnBadRow};
use jobs::{read_jsonl_examples, DatasetReader, DatasetRoots, ReadLimits, ReadPolicy};
use libfuzzer_sys::fuzz_target;

fn dataset_file() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        DIR.get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .join("data.jsonl")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, contents)) = data.split_first() else {
        return;
    };
    let path = dataset_file();
    std::fs::write(path, contents).unwrap();
    for format in [
        DatasetFormat::Jsonl,
        DatasetFormat::Json,
        DatasetFormat::Csv,
        DatasetFormat::Tsv,
    ] {
        read(path, format, options);
    }
    let policy = small_limits();
    let _ = read_jsonl_examples(path, usize::from(options), &policy);
});

/// Small limits, so that the limit paths are fuzzed too.
fn small_limits() -> ReadPolicy {
    ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_line_bytes: 256,
            max_bytes: 4096,
            max_docs: 8,
        },
    )
}

/// Reads `path` as a `format` dataset with the options `options` picks.
fn read(path: &Path, format: DatasetFormat, options: u8) {
    let spec = DatasetSpec {
        path: path.to_path_buf(),
        format: Some(format),
        limit: (options & 1 != 0).then_some(u64::from(options >> 4)),
        id_field: (options & 2 != 0).then(|| "id".to_string()),
        subset_field: (options & 4 != 0).then(|| "subject".to_string()),
        on_bad_row: if options & 8 != 0 {
            OnBadRow::Skip
        } else {
            OnBadRow::Fail
        },
    };
    let policy = small_limits();
    // A regular file opens as JSONL; other formats may refuse it whole (a
    // CSV header naming a column twice).
    let mut reader = match DatasetReader::open(&spec, &policy) {
        Ok(reader) => reader,
        Err(e) if format != DatasetFormat::Jsonl => {
            let _ = e.to_string();
            return;
        }
        Err(e) => panic!("a regular file opens: {e}"),
    };
    let mut accepted = 0u64;
    for doc in reader.by_ref() {
        let Ok(doc) = doc else { break };
        assert_eq!(doc.index, accepted, "documents are numbered in order");
        accepted += 1;
    }
    assert!(accepted <= 8, "read {accepted} documents past max_docs");
    if let Some(limit) = spec.limit {
        assert!(
            accepted <= limit,
            "read {accepted} documents past limit {limit}"
        );
    }
    let _ = reader.bad_rows();
}
