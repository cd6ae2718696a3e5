//! `[dataset]`: which rows to read and how.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    #[default]
    Jsonl,
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
    /// Relative paths are resolved against the job file's folder when the
    /// spec is loaded from a file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    #[serde(default)]
    pub format: DatasetFormat,
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
