//! Parquet files, valid and damaged, read by `DatasetReader` (the planner's
//! and the scorer's reader) from a local file or, through an in-memory
//! object store, as an `s3://` object. Random bytes rarely get past
//! Parquet's footer, so most inputs are a valid file written from the
//! input (its rows' ids, numbers and list lengths), then damaged where
//! the input says: the page, the footer and the list decoding are reached
//! with bad values. The first byte picks the mode and the `[dataset]`
//! options. Any panic or abort is a bug: a bad file must be a
//! `DatasetError`, a bad row an error or a counted skip. The one
//! exception is a panic inside the parquet crate that the reader catches
//! (`parquet_rows` runs the crate under `catch_unwind`, as the crate is not
//! known never to panic on a bad file): libfuzzer-sys's panic hook would
//! abort on it before it is caught, so the hook lets those through; one
//! the reader does not catch still aborts when it leaves the target.
#![no_main]

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Once, OnceLock};

use jobs::dataset::{ObjectSource, ObjectSourceError, RemoteObject};
use jobs::spec::{DatasetSpec, OnBadRow};
use jobs::{DatasetReader, DatasetRoots, ReadLimits, ReadPolicy};
use libfuzzer_sys::fuzz_target;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

fn dataset_file() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        DIR.get_or_init(|| tempfile::tempdir().unwrap())
            .path()
            .join("data.parquet")
    })
}

/// One object, `s3://fuzz/data.parquet`.
struct OneObject(Vec<u8>);

impl ObjectSource for OneObject {
    fn list(
        &self,
        _bucket: &str,
        _prefix: &str,
        _delimited: bool,
        visit: &mut dyn FnMut(RemoteObject) -> bool,
    ) -> Result<(), ObjectSourceError> {
        visit(RemoteObject {
            key: "data.parquet".to_string(),
            size: self.0.len() as u64,
        });
        Ok(())
    }

    fn open(&self, _bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, ObjectSourceError> {
        match key {
            "data.parquet" => Ok(Box::new(std::io::Cursor::new(self.0.clone()))),
            _ => Err(ObjectSourceError::NotFound),
        }
    }
}

/// Keeps libfuzzer-sys's aborting panic hook for every panic but those
/// raised in the parquet crate's own code (see the module comment).
fn let_parquet_panics_be_caught() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_parquet = info
                .location()
                .is_some_and(|at| at.file().contains("/parquet-"));
            if !in_parquet {
                aborting(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_parquet_panics_be_caught();
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let bytes = if options & 0x80 != 0 {
        rest.to_vec()
    } else {
        damaged(rest)
    };
    let remote = options & 0x40 != 0;
    let policy = ReadPolicy::new(
        DatasetRoots::Any,
        ReadLimits {
            max_line_bytes: 512,
            max_bytes: 64 * 1024,
            max_docs: 64,
        },
    );
    let (path, policy) = if remote {
        let path = PathBuf::from("s3://fuzz/data.parquet");
        (path, policy.with_objects(Arc::new(OneObject(bytes))))
    } else {
        let path = dataset_file().clone();
        std::fs::write(&path, &bytes).unwrap();
        (path, policy)
    };
    let spec = DatasetSpec {
        path,
        format: None,
        limit: (options & 1 != 0).then_some(16),
        id_field: (options & 2 != 0).then(|| "id".to_string()),
        subset_field: (options & 4 != 0).then(|| "id".to_string()),
        on_bad_row: if options & 8 != 0 {
            OnBadRow::Skip
        } else {
            OnBadRow::Fail
        },
    };
    let Ok(reader) = DatasetReader::open(&spec, &policy) else {
        return;
    };
    let mut accepted = 0u64;
    for doc in reader {
        match doc {
            Ok(_) => accepted += 1,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    assert!(accepted <= 64, "read {accepted} documents past max_docs");
});

/// A valid file from the input's first bytes, damaged by the rest:
/// (offset, byte) pairs, offsets taken modulo the file's length.
fn damaged(input: &[u8]) -> Vec<u8> {
    let split = input.len().min(32);
    let (shape, damage) = input.split_at(split);
    let mut file = valid_file(shape);
    for pair in damage.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % file.len();
        file[at] = pair[2];
    }
    file
}

/// A Parquet file with a row per byte of `shape`: an id, an optional
/// number, and a list of `byte % 4` strings.
fn valid_file(shape: &[u8]) -> Vec<u8> {
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
    let props = Arc::new(WriterProperties::builder().build());
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, Arc::new(schema), props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        match column {
            0 => {
                let ids: Vec<ByteArray> = shape
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        ByteArray::from(format!("{}", (usize::from(*b) + i) % 7).as_str())
                    })
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&ids, None, None)
                    .unwrap();
            }
            1 => {
                let values: Vec<i64> = shape
                    .iter()
                    .filter(|b| *b % 2 == 0)
                    .map(|b| i64::from(*b))
                    .collect();
                let defs: Vec<i16> = shape.iter().map(|b| i16::from(b % 2 == 0)).collect();
                col.typed::<Int64Type>()
                    .write_batch(&values, Some(&defs), None)
                    .unwrap();
            }
            _ => {
                let (mut values, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
                for b in shape {
                    let len = usize::from(b % 4);
                    for i in 0..len {
                        values.push(ByteArray::from("choice"));
                        defs.push(2);
                        reps.push(i16::from(i > 0));
                    }
                    if len == 0 {
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
    out
}
