//! `s3://` datasets read through an in-memory object store: every format
//! and file set as local files have them, errors naming the location, the
//! roots and the byte limit applied as to files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::super::format_tests::{gzip, write_parquet};
use super::super::*;
use super::{ObjectSource, ObjectSourceError, RemoteObject};
use crate::spec::{DatasetSpec, OnBadRow};

/// Objects by (bucket, key); `broken` objects fail after their bytes.
#[derive(Default)]
struct Store {
    objects: BTreeMap<(String, String), Vec<u8>>,
    broken: Vec<String>,
}

impl Store {
    fn put(&mut self, url: &str, bytes: impl Into<Vec<u8>>) {
        let (bucket, key) = url.strip_prefix("s3://").unwrap().split_once('/').unwrap();
        self.objects
            .insert((bucket.to_string(), key.to_string()), bytes.into());
    }
}

/// A stream that ends in an error, as a connection lost partway.
struct Broken(std::io::Cursor<Vec<u8>>);

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(std::io::Error::other("connection reset")),
            n => Ok(n),
        }
    }
}

impl ObjectSource for Store {
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimited: bool,
        visit: &mut dyn FnMut(RemoteObject) -> bool,
    ) -> Result<(), ObjectSourceError> {
        if bucket == "refused" {
            return Err(ObjectSourceError::Refused("access denied".into()));
        }
        for ((b, key), bytes) in &self.objects {
            let under = b == bucket && key.starts_with(prefix);
            if !under || (delimited && key[prefix.len()..].contains('/')) {
                continue;
            }
            let object = RemoteObject {
                key: key.clone(),
                size: bytes.len() as u64,
            };
            if !visit(object) {
                break;
            }
        }
        Ok(())
    }

    fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, ObjectSourceError> {
        if bucket == "down" {
            return Err(ObjectSourceError::Unavailable(
                "endpoint unreachable".into(),
            ));
        }
        let bytes = self
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .ok_or(ObjectSourceError::NotFound)?
            .clone();
        if self.broken.iter().any(|b| b == key) {
            return Ok(Box::new(Broken(std::io::Cursor::new(bytes))));
        }
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }
}

fn policy(store: Store) -> ReadPolicy {
    ReadPolicy::unrestricted().with_objects(Arc::new(store))
}

fn spec(path: &str) -> DatasetSpec {
    DatasetSpec {
        path: path.into(),
        format: None,
        limit: None,
        id_field: Some("id".into()),
        subset_field: None,
        on_bad_row: OnBadRow::Fail,
    }
}

fn read(path: &str, policy: &ReadPolicy) -> Result<Vec<Doc>, DatasetError> {
    DatasetReader::open(&spec(path), policy)?.collect()
}

fn ids(docs: &[Doc]) -> Vec<&str> {
    docs.iter().map(|d| d.id.as_str()).collect()
}

fn parquet_bytes(rows: &[(&str, Option<i64>, &[&str])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    write_parquet(&path, rows);
    std::fs::read(path).unwrap()
}

const JSONL: &str = "{\"id\": \"a\", \"q\": 1}\n{\"id\": \"b\", \"q\": 2}\n";

#[test]
fn one_object_in_each_format_reads_as_the_local_file() {
    let mut store = Store::default();
    store.put("s3://evals/qa.jsonl", JSONL);
    store.put("s3://evals/qa.jsonl.gz", gzip(JSONL.as_bytes()));
    store.put("s3://evals/qa.json", "[{\"id\": \"a\"}, {\"id\": \"b\"}]");
    store.put("s3://evals/qa.csv", "id,q\na,1\nb,2\n");
    store.put("s3://evals/qa.tsv", "id\tq\na\t1\nb\t2\n");
    store.put(
        "s3://evals/qa.parquet",
        parquet_bytes(&[("a", Some(1), &["x", "y"]), ("b", None, &[])]),
    );
    let policy = policy(store);
    for name in [
        "qa.jsonl",
        "qa.jsonl.gz",
        "qa.json",
        "qa.csv",
        "qa.tsv",
        "qa.parquet",
    ] {
        let url = format!("s3://evals/{name}");
        let docs = read(&url, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ids(&docs), ["a", "b"], "{name}");
        assert!(docs[1].location().starts_with(&format!("{url}:")), "{name}");
    }
    let docs = read("s3://evals/qa.parquet", &policy).unwrap();
    assert_eq!(docs[0].fields["choices"], json!(["x", "y"]));
    // Few-shot examples come the same way.
    let shots = read_jsonl_examples(Path::new("s3://evals/qa.jsonl.gz"), 1, &policy).unwrap();
    assert_eq!(shots.len(), 1);
    assert_eq!(shots[0]["id"], json!("a"));
}

#[test]
fn prefixes_and_globs_list_like_folders_and_globs() {
    let mut store = Store::default();
    let shard = |id: &str| parquet_bytes(&[(id, None, &["p", "q"])]);
    store.put("s3://evals/data/test-00001-of-00002.parquet", shard("b"));
    store.put("s3://evals/data/test-00000-of-00002.parquet", shard("a"));
    store.put("s3://evals/data/train-00000-of-00001.parquet", shard("t"));
    store.put("s3://evals/data/dataset_info.json", "{}");
    store.put("s3://evals/data/.hidden.jsonl", JSONL);
    store.put("s3://evals/data/README.md", "# not data");
    store.put("s3://evals/data/nested/deep.jsonl", JSONL);
    store.put("s3://evals/database.jsonl", JSONL);
    let policy = policy(store);

    let folder = read("s3://evals/data/", &policy).unwrap();
    assert_eq!(
        ids(&folder),
        [
            "test-00000-of-00002.parquet/a",
            "test-00001-of-00002.parquet/b",
            "train-00000-of-00001.parquet/t"
        ]
    );
    // Without the slash, a key with no object and no format is the folder.
    assert_eq!(ids(&read("s3://evals/data", &policy).unwrap()).len(), 3);

    let glob = read("s3://evals/data/test-*.parquet", &policy).unwrap();
    assert_eq!(
        ids(&glob),
        [
            "test-00000-of-00002.parquet/a",
            "test-00001-of-00002.parquet/b"
        ]
    );
    assert_eq!(
        glob[1].path.to_str(),
        Some("s3://evals/data/test-00001-of-00002.parquet")
    );
    let deep = read("s3://evals/data/*/deep.jsonl", &policy).unwrap();
    assert_eq!(ids(&deep), ["nested/deep.jsonl/a", "nested/deep.jsonl/b"]);

    let err = read("s3://evals/data/none-*.csv", &policy).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("s3://evals/data/none-*.csv: no object matches this glob"),
        "{err}"
    );
    let err = read("s3://evals/empty/", &policy).unwrap_err();
    assert!(
        err.to_string().contains("no data object directly under"),
        "{err}"
    );
}

#[test]
fn errors_name_the_location_and_the_row() {
    let mut store = Store::default();
    store.put("s3://evals/bad.jsonl", "{\"id\": \"a\"}\n{\"id\": \n");
    store.put(
        "s3://evals/dup.jsonl",
        "{\"id\": \"a\"}\n{\"id\": \"b\"}\n{\"id\": \"a\"}\n",
    );
    store.put("s3://evals/cut.jsonl", JSONL);
    store.put("s3://evals/bad.parquet", "not parquet at all");
    store.broken.push("cut.jsonl".into());
    let policy = policy(store);

    let err = read("s3://evals/missing.jsonl", &policy).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("s3://evals/missing.jsonl: cannot open dataset: no such object"),
        "{err}"
    );
    assert!(err.is_bad_input());
    let err = read("s3://evals/bad.jsonl", &policy).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("s3://evals/bad.jsonl:2: invalid JSON"),
        "{err}"
    );
    let err = read("s3://evals/dup.jsonl", &policy).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::DuplicateId {
                first_line: 1,
                line: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = read("s3://evals/bad.parquet", &policy).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("s3://evals/bad.parquet:1: cannot read the file as Parquet"),
        "{err}"
    );
    // A connection lost partway is the reading's fault, not the input's.
    let err = read("s3://evals/cut.jsonl", &policy).unwrap_err();
    assert!(matches!(err, DatasetError::Read { .. }), "{err}");
    assert!(!err.is_bad_input());
    let err = read("s3://down/x.jsonl", &policy).unwrap_err();
    assert!(err.to_string().contains("endpoint unreachable") && !err.is_bad_input());
    let err = read("s3://refused/data/", &policy).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("s3://refused/data/: access denied"),
        "{err}"
    );
    let err = read("s3://Evals/x.jsonl", &policy).unwrap_err();
    assert!(matches!(err, DatasetError::BadLocation { .. }), "{err}");

    // No object store at all: said, naming the location.
    let err = read("s3://evals/bad.jsonl", &ReadPolicy::unrestricted()).unwrap_err();
    assert!(
        matches!(err, DatasetError::NoObjectStore { .. }) && err.to_string().contains("S3"),
        "{err}"
    );
}

#[test]
fn roots_and_limits_hold_for_objects() {
    let mut store = Store::default();
    store.put("s3://evals/public/qa.jsonl", JSONL);
    store.put("s3://evals/private/qa.jsonl", JSONL);
    let rows: Vec<String> = (0..500).map(|i| format!("row-{i:05}")).collect();
    let rows: Vec<(&str, Option<i64>, &[&str])> = rows
        .iter()
        .map(|id| (id.as_str(), Some(1), &["a", "b"][..]))
        .collect();
    let big = parquet_bytes(&rows);
    let size = big.len() as u64;
    store.put("s3://evals/public/big.parquet", big);
    let roots = DatasetRoots::only(["s3://evals/public"]).unwrap();
    let limits = ReadLimits {
        max_bytes: size / 2,
        ..ReadLimits::default()
    };
    let policy = ReadPolicy::new(roots, limits).with_objects(Arc::new(store));

    assert_eq!(
        read("s3://evals/public/qa.jsonl", &policy).unwrap().len(),
        2
    );
    let err = read("s3://evals/private/qa.jsonl", &policy).unwrap_err();
    assert!(matches!(err, DatasetError::Outside(_)), "{err}");
    let err = read("s3://evals/p*/qa.jsonl", &policy).unwrap_err();
    assert!(matches!(err, DatasetError::Outside(_)), "{err}");
    // An object past the byte limit is refused before it is all fetched.
    let err = read("s3://evals/public/big.parquet", &policy).unwrap_err();
    assert!(matches!(err, DatasetError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("s3://evals/public/big.parquet:1"),
        "{err}"
    );
    // A local run allows every s3:// location, and its folders.
    let run = DatasetRoots::only(Vec::<String>::new())
        .unwrap()
        .with_all_s3();
    assert_eq!(run.check(Path::new("s3://any-bucket/x.jsonl")), Ok(()));
    assert!(run.check(Path::new("/etc/passwd")).is_err());
}
