//! The dataset reader's formats and file sets on real files: compressed
//! JSONL, JSON arrays, CSV and TSV, formats told by name, folders and
//! globs of files under the roots.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::spec::{DatasetFormat, DatasetSpec, OnBadRow};

fn any() -> ReadPolicy {
    ReadPolicy::unrestricted()
}

fn spec(path: &Path) -> DatasetSpec {
    DatasetSpec {
        path: path.to_path_buf(),
        format: None,
        limit: None,
        id_field: Some("id".into()),
        subset_field: None,
        on_bad_row: OnBadRow::Fail,
    }
}

fn read_all(spec: &DatasetSpec, policy: &ReadPolicy) -> Vec<Result<Doc, DatasetError>> {
    DatasetReader::open(spec, policy).unwrap().collect()
}

fn docs(spec: &DatasetSpec) -> Vec<Doc> {
    read_all(spec, &any())
        .into_iter()
        .map(|d| d.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn ids(docs: &[Doc]) -> Vec<&str> {
    docs.iter().map(|d| d.id.as_str()).collect()
}

fn last_error(spec: &DatasetSpec, policy: &ReadPolicy) -> DatasetError {
    let read = read_all(spec, policy);
    match read.into_iter().last() {
        Some(Err(e)) => e,
        other => panic!(
            "expected an error, got {:?}",
            other.map(|r| r.map(|d| d.id))
        ),
    }
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).unwrap()
}

const JSONL: &str = "{\"id\": \"a\", \"q\": 1}\n\n{\"id\": \"b\", \"q\": 2}\n";

#[test]
fn compressed_jsonl_reads_as_the_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("d.jsonl");
    std::fs::write(&plain, JSONL).unwrap();
    let expected: Vec<(String, u64, Value)> = docs(&spec(&plain))
        .into_iter()
        .map(|d| (d.id, d.line, d.fields["q"].clone()))
        .collect();
    for (name, bytes) in [
        ("d.jsonl.gz", gzip(JSONL.as_bytes())),
        ("d.jsonl.zst", zstd(JSONL.as_bytes())),
        // Told by its first bytes, not its name.
        ("gzipped.jsonl", gzip(JSONL.as_bytes())),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let got: Vec<(String, u64, Value)> = docs(&spec(&path))
            .into_iter()
            .map(|d| (d.id, d.line, d.fields["q"].clone()))
            .collect();
        assert_eq!(got, expected, "{name}");
    }
    // Two gzip members one after another are one stream.
    let mut two = gzip(b"{\"id\": 1}\n");
    two.extend(gzip(b"{\"id\": 2}\n"));
    let path = dir.path().join("two.jsonl.gz");
    std::fs::write(&path, two).unwrap();
    assert_eq!(ids(&docs(&spec(&path))), ["1", "2"]);
}

#[test]
fn a_compression_bomb_stops_at_the_byte_limit_naming_file_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let policy = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_line_bytes: 1024,
            max_bytes: 1_000_000,
            max_docs: 10,
        },
    );
    // 50 MB of blank lines in under half the byte limit.
    let blank = vec![b'\n'; 50_000_000];
    for (name, bytes) in [
        ("bomb.jsonl.gz", gzip(&blank)),
        ("bomb.jsonl.zst", zstd(&blank)),
    ] {
        assert!(bytes.len() < 500_000, "{name}: {}", bytes.len());
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = last_error(&spec(&path), &policy);
        assert!(matches!(err, DatasetError::TooLarge { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("more than 1000000 bytes"), "{message}");
        assert!(message.contains("after decompression"), "{message}");
        assert!(message.contains("--max-dataset-bytes"), "{message}");
    }
    // One endless line is stopped at the line limit.
    let path = dir.path().join("line.jsonl.gz");
    std::fs::write(&path, gzip(&vec![b'x'; 10_000_000])).unwrap();
    let err = last_error(&spec(&path), &policy);
    assert!(
        matches!(err, DatasetError::LineTooLong { line: 1, .. }),
        "{err}"
    );
    // The same bomb as a JSON array or a CSV file.
    let mut array = b"[".to_vec();
    array.extend(vec![b' '; 5_000_000]);
    let path = dir.path().join("bomb.json.gz");
    std::fs::write(&path, gzip(&array)).unwrap();
    let err = last_error(&spec(&path), &policy);
    assert!(matches!(err, DatasetError::TooLarge { .. }), "{err}");
    let mut csv = b"id,q\n".to_vec();
    csv.extend(b"1,2\n".repeat(1_000_000));
    let path = dir.path().join("bomb.csv.zst");
    std::fs::write(&path, zstd(&csv)).unwrap();
    let mut s = spec(&path);
    s.id_field = None;
    s.limit = None;
    let read = DatasetReader::open(
        &s,
        &ReadPolicy::new(
            DatasetRoots::Any,
            ReadLimits {
                max_docs: 10_000_000,
                ..policy.limits
            },
        ),
    )
    .unwrap()
    .find_map(Result::err)
    .unwrap();
    assert!(matches!(read, DatasetError::TooLarge { .. }), "{read}");
}

#[test]
fn a_corrupt_compressed_file_is_the_inputs_fault() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gzip(JSONL.repeat(100).as_bytes());
    let half = bytes.len() / 2;
    bytes.truncate(half);
    let path = dir.path().join("cut.jsonl.gz");
    std::fs::write(&path, bytes).unwrap();
    let err = last_error(&spec(&path), &any());
    assert!(matches!(err, DatasetError::BadFile { .. }), "{err}");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("cannot decompress"), "{err}");
}

#[test]
fn json_arrays_stream_their_elements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    std::fs::write(
        &path,
        "[\n  {\"id\": \"a\", \"t\": \"] and \\\" and [\"},\n  {\"id\": 2, \"n\": {\"x\": [1, 2]}}\n]\n",
    )
    .unwrap();
    let read = docs(&spec(&path));
    assert_eq!(ids(&read), ["a", "2"]);
    assert_eq!(read[0].line, 2);
    assert_eq!(read[1].line, 3);
    assert_eq!(read[0].fields["t"], json!("] and \" and ["));
    assert_eq!(read[1].fields["n"], json!({"x": [1, 2]}));

    // Minified, one line; a bad element is a bad row, skipped or failed.
    std::fs::write(&path, "[{\"id\":1},7,{\"id\":2},{\"id\":}]").unwrap();
    let mut s = spec(&path);
    s.on_bad_row = OnBadRow::Skip;
    let mut reader = DatasetReader::open(&s, &any()).unwrap();
    let got: Vec<Doc> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(ids(&got), ["1", "2"]);
    assert_eq!(reader.bad_rows(), 2);
    assert!(
        reader.bad_row_examples()[0]
            .ends_with(":1: array element 2: expected a JSON object, found a number"),
        "{:?}",
        reader.bad_row_examples()
    );
    let err = last_error(&spec(&path), &any());
    assert!(err.to_string().contains("array element 2"), "{err}");
    assert!(err.to_string().contains("on_bad_row"), "{err}");

    // A duplicate id on the same line is still found.
    std::fs::write(&path, "[{\"id\":1},{\"id\":1}]").unwrap();
    let err = last_error(&spec(&path), &any());
    assert!(matches!(err, DatasetError::DuplicateId { .. }), "{err}");
}

#[test]
fn a_json_file_of_the_wrong_shape_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    for (text, says) in [
        ("{\"id\": 1}\n{\"id\": 2}\n", "set `format = \"jsonl\"`"),
        (
            "[{\"id\": 1} {\"id\": 2}]",
            "expected `,` or `]` after array element 1",
        ),
        ("[{\"id\": 1},]", "expected array element 2 after `,`"),
        ("[{\"id\": 1}] []", "after the array's closing `]`"),
        (
            "[{\"id\": 1}, {\"id\": 2",
            "the file ends inside array element 2",
        ),
        (
            "[{\"id\": 1}",
            "expected `,` or `]` after array element 1, found the end",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let mut s = spec(&path);
        s.on_bad_row = OnBadRow::Skip;
        let err = last_error(&s, &any());
        assert!(matches!(err, DatasetError::BadFile { .. }), "{text}: {err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{}:1: ", path.display())),
            "{message}"
        );
        assert!(message.contains(says), "{text}: {message}");
    }
    std::fs::write(&path, " [ ] ").unwrap();
    let err = last_error(&spec(&path), &any());
    assert!(matches!(err, DatasetError::Empty { .. }), "{err}");

    let limits = ReadLimits {
        max_line_bytes: 16,
        ..ReadLimits::default()
    };
    std::fs::write(
        &path,
        "[{\"id\": 1},\n {\"id\": 2, \"long\": \"xxxxxxxxxxxxxxxx\"}]",
    )
    .unwrap();
    let err = last_error(&spec(&path), &ReadPolicy::new(DatasetRoots::Any, limits));
    assert!(
        err.to_string()
            .contains(":2: array element longer than 16 bytes"),
        "{err}"
    );
}

#[test]
fn csv_cells_are_typed_only_when_they_write_back_the_same() {
    use super::delimited::typed;
    for (cell, value) in [
        ("7", json!(7)),
        ("-2", json!(-2)),
        ("0.5", json!(0.5)),
        ("18446744073709551615", json!(18446744073709551615u64)),
        ("true", json!(true)),
        ("false", json!(false)),
        ("007", json!("007")),
        ("1.50", json!("1.50")),
        ("1e3", json!("1e3")),
        ("-0", json!("-0")),
        ("+1", json!("+1")),
        ("NaN", json!("NaN")),
        ("True", json!("True")),
        ("", json!("")),
        ("12 apples", json!("12 apples")),
    ] {
        assert_eq!(typed(cell), value, "{cell:?}");
    }
}

#[test]
fn csv_and_tsv_rows_are_documents_named_by_their_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    std::fs::write(
        &path,
        "\u{feff}id,question,answer,subject\nq1,\"Two, words\",4,math\nq2,\"line one\nline two\",,bio\n",
    )
    .unwrap();
    let mut s = spec(&path);
    s.subset_field = Some("subject".into());
    let read = docs(&s);
    assert_eq!(ids(&read), ["q1", "q2"]);
    assert_eq!((read[0].line, read[1].line), (2, 3));
    assert_eq!(read[0].fields["question"], json!("Two, words"));
    assert_eq!(read[0].fields["answer"], json!(4));
    assert_eq!(read[1].fields["question"], json!("line one\nline two"));
    assert_eq!(read[1].fields["answer"], json!(""));
    assert_eq!(read[1].subset.as_deref(), Some("bio"));

    // TSV has no quoting: a `"` is text.
    let path = dir.path().join("d.tsv");
    std::fs::write(&path, "id\tq\n1\t\"Hi,\" she said\n").unwrap();
    let read = docs(&spec(&path));
    assert_eq!(read[0].fields["q"], json!("\"Hi,\" she said"));
    assert_eq!(read[0].id, "1");
}

#[test]
fn a_csv_record_with_the_wrong_number_of_fields_is_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    std::fs::write(&path, "id,q\n1,a\n2,b,extra\n3\n4,d\n").unwrap();
    let err = last_error(&spec(&path), &any());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}:3: expected 2 fields, as the header row has, found 3",
            path.display()
        )),
        "{message}"
    );
    assert!(message.contains("on_bad_row"), "{message}");
    let mut s = spec(&path);
    s.on_bad_row = OnBadRow::Skip;
    let mut reader = DatasetReader::open(&s, &any()).unwrap();
    let got: Vec<Doc> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(ids(&got), ["1", "4"]);
    assert_eq!(reader.bad_rows(), 2);
    assert!(reader.bad_row_examples()[1].contains(":4: expected 2 fields"));

    // A header naming one column twice, a header and no rows.
    std::fs::write(&path, "id,q,q\n1,a,b\n").unwrap();
    let err = DatasetReader::open(&spec(&path), &any()).err().unwrap();
    assert!(err.to_string().contains("names `q` twice"), "{err}");
    for text in ["id,q\n", ""] {
        std::fs::write(&path, text).unwrap();
        let err = last_error(&spec(&path), &any());
        assert!(matches!(err, DatasetError::Empty { .. }), "{text:?}: {err}");
    }
    // A cell that is not UTF-8.
    std::fs::write(&path, b"id,q\n1,\xff\n").unwrap();
    let err = last_error(&spec(&path), &any());
    assert!(
        err.to_string().contains(":2: field `q`: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn the_format_comes_from_the_name_or_the_spec() {
    for (name, format) in [
        ("a.jsonl", Some(DatasetFormat::Jsonl)),
        ("a.NDJSON", Some(DatasetFormat::Jsonl)),
        ("a.jsonl.gz", Some(DatasetFormat::Jsonl)),
        ("a.json.zst", Some(DatasetFormat::Json)),
        ("dir.v2/a.csv", Some(DatasetFormat::Csv)),
        ("a.tsv.gz", Some(DatasetFormat::Tsv)),
        ("a.txt", None),
        ("a.gz", None),
        ("jsonl", None),
        ("a.parquet", Some(DatasetFormat::Parquet)),
        ("a.xlsx", None),
    ] {
        assert_eq!(DatasetFormat::from_path(Path::new(name)), format, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "{\"id\": 1}\n").unwrap();
    let err = DatasetReader::open(&spec(&path), &any()).err().unwrap();
    assert!(matches!(err, DatasetError::UnknownFormat { .. }), "{err}");
    let message = err.to_string();
    for needle in ["data.txt", "jsonl", "csv", "tsv", "set `format`"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let mut s = spec(&path);
    s.format = Some(DatasetFormat::Jsonl);
    assert_eq!(ids(&docs(&s)), ["1"]);
    // `format` wins over the name.
    let path = dir.path().join("rows.json");
    std::fs::write(&path, "id,q\n5,x\n").unwrap();
    let mut s = spec(&path);
    s.format = Some(DatasetFormat::Csv);
    assert_eq!(ids(&docs(&s)), ["5"]);
}

fn shards(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("test-00002.jsonl"), "{\"id\": \"x\", \"q\": 3}\n").unwrap();
    std::fs::write(
        dir.join("test-00001.jsonl"),
        "{\"id\": \"x\", \"q\": 1}\n{\"id\": \"y\", \"q\": 2}\n",
    )
    .unwrap();
    std::fs::write(dir.join("test-00003.csv"), "id,q\nx,4\n").unwrap();
    std::fs::write(dir.join(".hidden.jsonl"), "nope\n").unwrap();
    std::fs::write(dir.join("README.md"), "# not data\n").unwrap();
    // What `datasets` writes beside the data: not rows.
    std::fs::write(dir.join("dataset_info.json"), "{\"features\": {}}\n").unwrap();
    std::fs::write(dir.join("state.json"), "{\"_split\": \"test\"}\n").unwrap();
}

#[test]
fn a_folder_is_its_data_files_in_name_order_with_ids_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    shards(&data);
    let read = docs(&spec(&data));
    assert_eq!(
        ids(&read),
        [
            "test-00001.jsonl/x",
            "test-00001.jsonl/y",
            "test-00002.jsonl/x",
            "test-00003.csv/x"
        ]
    );
    assert_eq!(
        read.iter().map(|d| d.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(read[2].location().ends_with("test-00002.jsonl:1"));
    // Numbered ids restart in each file.
    let mut s = spec(&data);
    s.id_field = None;
    s.format = Some(DatasetFormat::Jsonl);
    assert_eq!(
        ids(&docs(&s)),
        [
            "test-00001.jsonl/0",
            "test-00001.jsonl/1",
            "test-00002.jsonl/0"
        ]
    );
    // `limit` and the document cap count across files.
    let mut s = spec(&data);
    s.limit = Some(3);
    assert_eq!(docs(&s).len(), 3);
    let capped = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_docs: 2,
            ..ReadLimits::default()
        },
    );
    let err = last_error(&spec(&data), &capped);
    assert!(
        err.to_string()
            .contains("test-00002.jsonl:1: more than 2 documents"),
        "{err}"
    );
    // So does the byte limit.
    let small = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_bytes: 50,
            ..ReadLimits::default()
        },
    );
    let err = last_error(&spec(&data), &small);
    assert!(matches!(err, DatasetError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("test-00002.jsonl:1:"), "{err}");

    // A bad row or a duplicate names its own file and line.
    std::fs::write(
        data.join("test-00002.jsonl"),
        "{\"id\": \"x\"}\n{\"id\": \"x\"}\n",
    )
    .unwrap();
    let err = last_error(&spec(&data), &any());
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
    assert!(
        err.to_string().contains("test-00002.jsonl:2: id \"x\""),
        "{err}"
    );
    std::fs::write(data.join("test-00002.jsonl"), "{\"id\": \"x\"}\nnope\n").unwrap();
    let err = last_error(&spec(&data), &any());
    assert!(
        err.to_string().contains("test-00002.jsonl:2: invalid JSON"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "x").unwrap();
    let err = DatasetReader::open(&spec(&empty), &any()).err().unwrap();
    assert!(matches!(err, DatasetError::NoFiles { .. }), "{err}");
}

#[test]
fn a_glob_is_its_matches_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    shards(&data);
    let read = docs(&spec(&data.join("test-*.jsonl")));
    assert_eq!(
        ids(&read),
        [
            "test-00001.jsonl/x",
            "test-00001.jsonl/y",
            "test-00002.jsonl/x"
        ]
    );
    // Wildcards in folders too: the ids name the file below the fixed part.
    shards(&dir.path().join("more/b"));
    shards(&dir.path().join("more/a"));
    let read = docs(&spec(&dir.path().join("more/*/test-0000[13].*")));
    assert_eq!(
        ids(&read),
        [
            "a/test-00001.jsonl/x",
            "a/test-00001.jsonl/y",
            "a/test-00003.csv/x",
            "b/test-00001.jsonl/x",
            "b/test-00001.jsonl/y",
            "b/test-00003.csv/x"
        ]
    );
    let err = DatasetReader::open(&spec(&data.join("train-*.jsonl")), &any())
        .err()
        .unwrap();
    assert!(matches!(err, DatasetError::NoFiles { .. }), "{err}");
    assert!(
        err.to_string().contains("train-*.jsonl: no file matches"),
        "{err}"
    );
}

#[test]
fn folders_and_globs_stay_inside_the_roots() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let outside = base.path().join("outside");
    shards(&root.join("data"));
    shards(&outside);
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("test-00001.jsonl"),
        root.join("data/test-00009.jsonl"),
    )
    .unwrap();
    let policy = ReadPolicy::new(
        DatasetRoots::only([root.to_str().unwrap()]).unwrap(),
        ReadLimits::default(),
    );
    let open = |path: std::path::PathBuf| DatasetReader::open(&spec(&path), &policy);
    for refused in [
        root.join("../outside/*.jsonl"),
        root.join("link/*.jsonl"),
        root.join("link"),
        outside.clone(),
    ] {
        let err = open(refused.clone()).err().unwrap();
        assert!(
            matches!(err, DatasetError::Outside(_)),
            "{refused:?}: {err}"
        );
    }
    // A wildcard never lists a folder that leads outside.
    let read: Vec<String> = open(root.join("*/test-00002.jsonl"))
        .unwrap()
        .map(|d| d.unwrap().id)
        .collect();
    assert_eq!(read, ["data/test-00002.jsonl/x"]);
    // A file inside by name but outside in fact is refused when opened.
    let read: Vec<_> = open(root.join("data")).unwrap().collect();
    let err = read.into_iter().find_map(Result::err).unwrap();
    assert!(matches!(err, DatasetError::Outside(_)), "{err}");
    assert!(err.to_string().contains("test-00009.jsonl"), "{err}");
    // Past a wildcard only names: `*/..` would list one file once per
    // folder, and hide where it leads.
    let err = open(root.join("*/../data/test-00001.jsonl")).err().unwrap();
    assert!(
        matches!(err, DatasetError::NoFiles { .. })
            && err.to_string().contains("after its first wildcard"),
        "{err}"
    );
}

#[test]
fn a_csv_header_of_too_many_columns_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.csv");
    let header: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    std::fs::write(&path, format!("{}\n", header.join(","))).unwrap();
    let err = DatasetReader::open(&spec(&path), &any()).err().unwrap();
    assert!(err.to_string().contains("more than 10000"), "{err}");
}

#[test]
fn arbitrary_bytes_in_any_format_are_rows_or_errors_never_a_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    // Bytes that matter to some format, and a few that matter to none.
    const ALPHABET: &[u8] = b"[]{}\",:\\\t\n\r 01-.eatrufl\"id\xff\x1f\x8b";
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(15);
    let policy = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_line_bytes: 24,
            max_bytes: 256,
            max_docs: 8,
        },
    );
    for round in 0..4000 {
        let len = rng.random_range(0..64);
        let bytes: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
            .collect();
        let (name, format) = [
            ("f.jsonl", DatasetFormat::Jsonl),
            ("f.json", DatasetFormat::Json),
            ("f.csv", DatasetFormat::Csv),
            ("f.tsv", DatasetFormat::Tsv),
        ][round % 4];
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let mut s = spec(&path);
        s.format = Some(format);
        s.id_field = (round % 3 == 0).then(|| "id".to_string());
        s.on_bad_row = if round % 2 == 0 {
            OnBadRow::Skip
        } else {
            OnBadRow::Fail
        };
        if let Ok(reader) = DatasetReader::open(&s, &policy) {
            let read: Vec<_> = reader.collect();
            assert!(read.len() <= 9, "{bytes:?}: past the document cap");
        }
    }
}

/// Writes a Parquet file (snappy pages) of rows `(id, n, choices)`: `n`
/// optional, `choices` a list of strings.
pub(super) fn write_parquet(path: &Path, rows: &[(&str, Option<i64>, &[&str])]) {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let schema = parse_message_type(
        "message row {
            required binary id (UTF8);
            optional int64 n;
            optional group choices (LIST) {
                repeated group list { required binary element (UTF8); }
            }
        }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        match column {
            0 => {
                let ids: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r.0)).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&ids, None, None)
                    .unwrap();
            }
            1 => {
                let values: Vec<i64> = rows.iter().filter_map(|r| r.1).collect();
                let defs: Vec<i16> = rows.iter().map(|r| i16::from(r.1.is_some())).collect();
                col.typed::<Int64Type>()
                    .write_batch(&values, Some(&defs), None)
                    .unwrap();
            }
            _ => {
                let (mut values, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
                for row in rows {
                    for (i, choice) in row.2.iter().enumerate() {
                        values.push(ByteArray::from(*choice));
                        defs.push(2);
                        reps.push(i16::from(i > 0));
                    }
                    if row.2.is_empty() {
                        defs.push(1);
                        reps.push(0);
                    }
                }
                col.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&defs), Some(&reps))
                    .unwrap();
            }
        }
        col.close().unwrap();
        column += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_rows_are_documents_with_lists_as_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.parquet");
    write_parquet(
        &path,
        &[
            ("a", Some(1), &["yes", "no"]),
            ("b", None, &["x"]),
            ("c", Some(3), &[]),
        ],
    );
    let mut s = spec(&path);
    s.subset_field = None;
    let read = docs(&s);
    assert_eq!(ids(&read), ["a", "b", "c"]);
    assert_eq!(
        read.iter().map(|d| d.line).collect::<Vec<_>>(),
        [1, 2, 3],
        "a Parquet row's line is its row number"
    );
    assert_eq!(read[0].fields["choices"], json!(["yes", "no"]));
    assert_eq!(read[0].fields["n"], json!(1));
    assert_eq!(read[1].fields["n"], Value::Null);
    assert_eq!(read[2].fields["choices"], json!([]));

    // A duplicate id names both rows; `limit` stops early.
    let dup = dir.path().join("dup.parquet");
    write_parquet(
        &dup,
        &[("a", None, &[]), ("z", None, &[]), ("a", None, &[])],
    );
    let err = last_error(&spec(&dup), &any());
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
    let mut s = spec(&dup);
    s.limit = Some(2);
    assert_eq!(ids(&docs(&s)), ["a", "z"]);

    // The byte limit is judged on the footer's uncompressed size.
    let tiny = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_bytes: 10,
            ..ReadLimits::default()
        },
    );
    let err = DatasetReader::open(&spec(&path), &tiny).err().unwrap();
    assert!(matches!(err, DatasetError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("after decompression"), "{err}");

    // ... then on every row as its JSON form, since the footer's figure is
    // the file's own word and run-length pages decode many rows from few
    // bytes.
    let long = dir.path().join("long.parquet");
    let names: Vec<String> = (0..200).map(|i| format!("row-{i:04}")).collect();
    let rows: Vec<(&str, Option<i64>, &[&str])> = names
        .iter()
        .map(|n| (n.as_str(), Some(7), &["same", "choices"][..]))
        .collect();
    write_parquet(&long, &rows);
    let declared: u64 = {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(std::fs::File::open(&long).unwrap()).unwrap();
        reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size() as u64)
            .sum()
    };
    let rows_count = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_bytes: declared + 500,
            ..ReadLimits::default()
        },
    );
    let err = last_error(&spec(&long), &rows_count);
    assert!(
        matches!(err, DatasetError::TooLarge { line, .. } if line > 1 && line < 200),
        "{err}"
    );

    // Not a Parquet file: said so, naming the file.
    std::fs::write(&path, "{\"id\": 1}\n").unwrap();
    let err = DatasetReader::open(&spec(&path), &any()).err().unwrap();
    assert!(matches!(err, DatasetError::BadFile { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "{}:1: cannot read the file as Parquet",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_damaged_parquet_file_is_an_error_never_a_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    let rows: Vec<(String, Option<i64>)> = (0..50).map(|i| (format!("id{i}"), Some(i))).collect();
    let rows: Vec<(&str, Option<i64>, &[&str])> = rows
        .iter()
        .map(|(id, n)| (id.as_str(), *n, &["a", "b"][..]))
        .collect();
    write_parquet(&good, &rows);
    let bytes = std::fs::read(&good).unwrap();
    let path = dir.path().join("bad.parquet");
    let mut rng = StdRng::seed_from_u64(58);
    for _ in 0..300 {
        let mut damaged = bytes.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(4..damaged.len() - 8);
            damaged[at] = rng.random();
        }
        std::fs::write(&path, &damaged).unwrap();
        let mut s = spec(&path);
        s.on_bad_row = OnBadRow::Skip;
        if let Ok(reader) = DatasetReader::open(&s, &any()) {
            assert!(reader.count() <= 51);
        }
    }
}
