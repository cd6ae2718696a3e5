//! `[dataset]`: which rows to read and how.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// How a data file's rows are written. A compressed file (gzip or zstd) is
/// recognised by its contents, so `format` names what lies inside it.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// A JSON array of objects.
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// Apache Parquet (never compressed as a whole file).
    Parquet,
}

/// The extensions each format is known by, for inference and messages.
const EXTENSIONS: [(&str, DatasetFormat); 6] = [
    ("jsonl", DatasetFormat::Jsonl),
    ("ndjson", DatasetFormat::Jsonl),
    ("json", DatasetFormat::Json),
    ("csv", DatasetFormat::Csv),
    ("tsv", DatasetFormat::Tsv),
    ("parquet", DatasetFormat::Parquet),
];

/// Extensions of a compressed file, looked past to find its format.
const COMPRESSED: [&str; 3] = ["gz", "zst", "zstd"];

impl DatasetFormat {
    /// The format a file's name says (`.jsonl`, `.jsonl.gz`, `.csv.zst`, …),
    /// or `None` when its extension is none of the known ones.
    pub fn from_path(path: &Path) -> Option<DatasetFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let mut parts = name.rsplit('.');
        let mut ext = parts.next()?;
        if COMPRESSED.contains(&ext) {
            ext = parts.next()?;
        }
        // A name without a dot has no extension at all.
        if !name.contains('.') {
            return None;
        }
        EXTENSIONS
            .iter()
            .find(|(known, _)| *known == ext)
            .map(|(_, format)| *format)
    }

    /// The formats and their extensions, for messages.
    pub fn known() -> &'static str {
        "jsonl (.jsonl, .ndjson), json (.json: an array of objects), csv (.csv), tsv (.tsv), \
         each optionally compressed (.gz, .zst); parquet (.parquet)"
    }

    /// The name `format` takes in a job file.
    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Jsonl => "jsonl",
            DatasetFormat::Json => "json",
            DatasetFormat::Csv => "csv",
            DatasetFormat::Tsv => "tsv",
            DatasetFormat::Parquet => "parquet",
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBadRow {
    #[default]
    Fail,
    Skip,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// A file, a folder (its data files, in name order) or a glob
    /// (`data/test-*.jsonl`). Relative paths are resolved against the job
    /// file's folder when the spec is loaded from a file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// How the files are written; when absent, each file's extension says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DatasetFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Field holding the document id; the row number when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// Field whose value groups documents for per-subset scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_field: Option<String>,
    #[serde(default)]
    pub on_bad_row: OnBadRow,
}
