//! The dataset and few-shot readers on real files: documents, bad rows,
//! limits, devices and roots.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::spec::{DatasetFormat, DatasetSpec, OnBadRow};

fn any() -> ReadPolicy {
    ReadPolicy::unrestricted()
}

#[test]
fn devices_and_endless_lines_are_refused_not_read() {
    let zero = spec(Path::new("/dev/zero"));
    assert!(matches!(
        DatasetReader::open(&zero, &any()),
        Err(DatasetError::NotAFile { .. })
    ));
    assert!(matches!(
        read_jsonl_examples(Path::new("/dev/zero"), 5, &any()),
        Err(DatasetError::NotAFile { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.jsonl");
    let mut text = "{\"id\": \"1\"}\n".to_string();
    text.push_str(&"x".repeat(DEFAULT_MAX_LINE_BYTES as usize + 10));
    std::fs::write(&long, text).unwrap();
    let mut reader = DatasetReader::open(&spec(&long), &any()).unwrap();
    assert!(reader.next().unwrap().is_ok());
    match reader.next() {
        Some(Err(DatasetError::LineTooLong { line: 2, .. })) => {}
        other => panic!(
            "expected a too-long line 2, got {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
    assert!(matches!(
        read_jsonl_examples(&long, 5, &any()),
        Err(DatasetError::LineTooLong { line: 2, .. })
    ));
}

fn spec(path: &Path) -> DatasetSpec {
    DatasetSpec {
        path: path.to_path_buf(),
        format: Some(DatasetFormat::Jsonl),
        limit: None,
        id_field: Some("id".into()),
        subset_field: None,
        on_bad_row: OnBadRow::Fail,
    }
}

fn write(content: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f
}

#[test]
fn reads_docs_with_ids_lines_and_subsets() {
    let f = write("{\"id\": \"a\", \"q\": 1, \"s\": \"x\"}\n\n{\"id\": 7, \"q\": 2, \"s\": 3}\n");
    let mut s = spec(f.path());
    s.subset_field = Some("s".into());
    let docs: Vec<Doc> = DatasetReader::open(&s, &any())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(
        (docs[0].index, docs[0].line, docs[0].id.as_str()),
        (0, 1, "a")
    );
    assert_eq!(
        (docs[1].index, docs[1].line, docs[1].id.as_str()),
        (1, 3, "7")
    );
    assert_eq!(docs[0].subset.as_deref(), Some("x"));
    assert_eq!(docs[1].subset.as_deref(), Some("3"));
    assert_eq!(docs[1].fields["q"], Value::from(2));
}

#[test]
fn ids_are_numbered_without_an_id_field() {
    let f = write("{\"id\": 1}\n{\"id\": 1}\n");
    let mut s = spec(f.path());
    s.id_field = None;
    let ids: Vec<String> = DatasetReader::open(&s, &any())
        .unwrap()
        .map(|d| d.unwrap().id)
        .collect();
    assert_eq!(ids, vec!["0", "1"]);
}

#[test]
fn a_duplicate_id_is_refused_naming_both_lines() {
    // Line 2 is blank and line 3 a skipped bad row holding the id too: the
    // first document with it is on line 4, the second on line 6.
    let f = write(
        "{\"id\": \"a\", \"s\": 1}\n\n{\"id\": \"same\", \"s\": []}\n{\"id\": \"same\", \"s\": 1}\n{\"id\": 7, \"s\": 1}\n{\"id\": \"same\", \"s\": 2}\n{\"id\": \"z\", \"s\": 1}\n",
    );
    let mut s = spec(f.path());
    s.subset_field = Some("s".into());
    s.on_bad_row = OnBadRow::Skip;
    let read: Vec<Result<Doc, DatasetError>> = DatasetReader::open(&s, &any()).unwrap().collect();
    assert_eq!(
        read.len(),
        4,
        "three documents, then the error, then nothing"
    );
    match &read[3] {
        Err(DatasetError::DuplicateId {
            id,
            first_line: 4,
            line: 6,
            ..
        }) if id == "same" => {}
        other => panic!("expected a duplicate of line 4 on line 6, got {other:?}"),
    }
    let message = read[3].as_ref().unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:6: id \"same\"", f.path().display())),
        "{message}"
    );
    assert!(
        message.contains("line 4") && message.contains("id_field"),
        "{message}"
    );

    // A number and the same digits as a string are one id.
    let f = write("{\"id\": 7}\n{\"id\": \"7\"}\n");
    let err = DatasetReader::open(&spec(f.path()), &any())
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(
        matches!(
            err,
            DatasetError::DuplicateId {
                first_line: 1,
                line: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_hash_seen_twice_without_the_same_id_before_is_no_duplicate() {
    // What a collision of two ids' hashes finds when it reads the file again.
    let f = write("{\"id\": \"a\"}\n{\"id\": \"b\"}\n{\"id\": \"a\"}\n");
    let fields = super::row::RowFields {
        id_field: Some("id".into()),
        subset_field: None,
    };
    let jsonl = Some(DatasetFormat::Jsonl);
    let first = |id: &str, rows_before: u64| {
        super::ids::first_line_with_id(f.path(), jsonl, &any(), &fields, id, rows_before).unwrap()
    };
    assert_eq!(first("a", 2), Some(1));
    assert_eq!(first("b", 1), None, "only rows before the one read count");
    assert_eq!(first("c", 3), None);
}

#[test]
fn a_dataset_without_documents_is_refused_naming_the_file() {
    for (text, says) in [
        ("", "the file is empty"),
        ("\n  \n", "the file is empty"),
        ("nope\n[]\n", "all 2 rows were bad"),
    ] {
        let f = write(text);
        let mut s = spec(f.path());
        s.on_bad_row = OnBadRow::Skip;
        let read: Vec<_> = DatasetReader::open(&s, &any()).unwrap().collect();
        assert_eq!(read.len(), 1, "{text:?}");
        let err = read[0].as_ref().unwrap_err();
        assert!(matches!(err, DatasetError::Empty { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{}: no documents", f.path().display())),
            "{message}"
        );
        assert!(message.contains(says), "{text:?}: {message}");
    }
    let f = write("nope\n");
    let err = DatasetReader::open(&spec(f.path()), &any())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, DatasetError::BadRow { line: 1, .. }), "{err}");
}

#[test]
fn invalid_utf8_is_a_bad_row_with_its_line() {
    let f = write("{\"id\": 1}\n");
    std::fs::write(f.path(), b"{\"id\": 1}\n{\"id\": \"\xff\"}\n").unwrap();
    let read: Vec<_> = DatasetReader::open(&spec(f.path()), &any())
        .unwrap()
        .collect();
    let err = read[1].as_ref().unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: not valid UTF-8", f.path().display())),
        "{err}"
    );
}

#[test]
fn malformed_line_fails_with_file_and_line() {
    let f = write("{\"id\": 1}\n{not json\n{\"id\": 3}\n");
    let mut reader = DatasetReader::open(&spec(f.path()), &any()).unwrap();
    assert!(reader.next().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:2: invalid JSON", f.path().display())),
        "{err}"
    );
    assert!(err.contains("on_bad_row = \"skip\""), "{err}");
    assert!(reader.next().is_none());
}

#[test]
fn non_object_and_missing_id_are_bad_rows() {
    let f = write("[1,2]\n");
    let err = DatasetReader::open(&spec(f.path()), &any())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(":1: expected a JSON object, found an array"),
        "{err}"
    );
    let f = write("{\"x\": 1}\n");
    let err = DatasetReader::open(&spec(f.path()), &any())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(":1: missing field `id` (dataset.id_field)"),
        "{err}"
    );
}

#[test]
fn skip_counts_bad_rows_and_keeps_examples() {
    let f = write("{\"id\": 1}\nnope\n[]\n{\"id\": 2}\n{}\n");
    let mut s = spec(f.path());
    s.on_bad_row = OnBadRow::Skip;
    let mut reader = DatasetReader::open(&s, &any()).unwrap();
    let docs: Vec<Doc> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(
        docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["1", "2"]
    );
    assert_eq!(docs[1].index, 1);
    assert_eq!(docs[1].line, 4);
    assert_eq!(reader.bad_rows(), 3);
    assert_eq!(reader.bad_row_examples().len(), 3);
    let first = &reader.bad_row_examples()[0];
    assert!(
        first.starts_with(&format!("{}:2: invalid JSON", f.path().display())),
        "{first}"
    );
    assert!(reader.bad_row_examples()[2].ends_with(":5: missing field `id` (dataset.id_field)"));
}

#[test]
fn limit_stops_after_accepted_docs() {
    let f = write("{\"id\": 1}\nbad\n{\"id\": 2}\n{\"id\": 3}\n");
    let mut s = spec(f.path());
    s.on_bad_row = OnBadRow::Skip;
    s.limit = Some(2);
    let ids: Vec<String> = DatasetReader::open(&s, &any())
        .unwrap()
        .map(|d| d.unwrap().id)
        .collect();
    assert_eq!(ids, vec!["1", "2"]);
}

#[test]
fn missing_file_names_the_path() {
    let s = spec(Path::new("/nonexistent/shardline/data.jsonl"));
    let err = DatasetReader::open(&s, &any()).err().unwrap().to_string();
    assert!(
        err.starts_with("/nonexistent/shardline/data.jsonl: cannot open dataset"),
        "{err}"
    );
}

#[test]
fn examples_reader_is_strict() {
    let f = write("{\"a\": 1}\n\n{\"a\": 2}\n");
    assert_eq!(read_jsonl_examples(f.path(), 5, &any()).unwrap().len(), 2);
    let f = write("{\"a\": 1}\n3\n");
    let err = read_jsonl_examples(f.path(), 5, &any())
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2: expected a JSON object"), "{err}");
}

fn limited(max_line_bytes: u64, max_bytes: u64, max_docs: u64) -> ReadPolicy {
    ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_line_bytes,
            max_bytes,
            max_docs,
        },
    )
}

#[test]
fn limits_stop_reading_with_an_error_naming_them() {
    let f = write("{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n");
    let read = |policy: ReadPolicy| {
        DatasetReader::open(&spec(f.path()), &policy)
            .unwrap()
            .collect::<Vec<_>>()
    };
    let docs = read(limited(1024, 1024, 2));
    assert_eq!(docs.len(), 3, "two documents, then the error");
    let err = docs[2].as_ref().unwrap_err().to_string();
    assert!(err.contains(":3: more than 2 documents"), "{err}");
    assert!(err.contains("--max-docs-per-job"), "{err}");

    // `dataset.limit` under the cap reads no further than it.
    let mut s = spec(f.path());
    s.limit = Some(2);
    let docs: Vec<_> = DatasetReader::open(&s, &limited(1024, 1024, 2))
        .unwrap()
        .collect();
    assert!(docs.iter().all(Result::is_ok) && docs.len() == 2);

    let docs = read(limited(1024, 15, 10));
    let err = docs.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(err.contains(":2: more than 15 bytes read"), "{err}");
    assert!(err.contains("--max-dataset-bytes"), "{err}");

    let docs = read(limited(5, 1024, 10));
    let err = docs[0].as_ref().unwrap_err().to_string();
    assert!(err.contains(":1: line longer than 5 bytes"), "{err}");

    // The examples reader stops at the examples it needs.
    let examples = read_jsonl_examples(f.path(), 2, &limited(1024, 20, 10)).unwrap();
    assert_eq!(examples.len(), 2);
    assert!(read_jsonl_examples(f.path(), 3, &limited(1024, 20, 10)).is_err());
}

#[test]
fn files_outside_the_roots_are_refused_before_and_after_opening() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("ok.jsonl"), "{\"id\": 1}\n").unwrap();
    std::fs::write(base.path().join("private.jsonl"), "{\"id\": \"secret\"}\n").unwrap();
    std::os::unix::fs::symlink(base.path().join("private.jsonl"), root.join("link.jsonl")).unwrap();
    let policy = ReadPolicy::new(
        DatasetRoots::only([root.to_str().unwrap()]).unwrap(),
        ReadLimits::default(),
    );
    assert!(DatasetReader::open(&spec(&root.join("ok.jsonl")), &policy).is_ok());
    for refused in [
        root.join("link.jsonl"),
        root.join("../private.jsonl"),
        PathBuf::from("/etc/passwd"),
    ] {
        let err = DatasetReader::open(&spec(&refused), &policy).err().unwrap();
        assert!(
            matches!(err, DatasetError::Outside(_)),
            "{refused:?}: {err}"
        );
        let err = read_jsonl_examples(&refused, 1, &policy).unwrap_err();
        assert!(
            matches!(err, DatasetError::Outside(_)),
            "{refused:?}: {err}"
        );
    }
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("endless.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert!(matches!(
        DatasetReader::open(&spec(&fifo), &any()),
        Err(DatasetError::NotAFile { .. })
    ));
}
