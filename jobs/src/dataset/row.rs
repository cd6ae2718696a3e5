//! One dataset row as a document: a JSON object whose id and subset are
//! read from the fields the spec names. Shared by the streaming reader and
//! the re-scan that names the first line of a duplicate id.

use serde_json::{Map, Value};

/// The fields a dataset's spec names in its rows.
#[derive(Clone, Debug)]
pub(super) struct RowFields {
    pub id_field: Option<String>,
    pub subset_field: Option<String>,
}

/// One row of a data file, in any format.
pub(super) struct RawRow {
    /// 1-based line where the row starts.
    pub line: u64,
    /// The row's fields, or why it is a bad row.
    pub fields: Result<Map<String, Value>, String>,
}

/// A row's parts, before it is numbered as a document.
pub(super) struct Row {
    /// The `id_field` value as text; `None` when the spec names no field.
    pub id: Option<String>,
    pub subset: Option<String>,
    pub fields: Map<String, Value>,
}

/// Parses one JSON line (without judging blank lines: the caller skips
/// them) as an object; the error is the reason the row is bad.
pub(super) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8: {e}"))?;
    let value: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("invalid JSON: {e}"))?;
    match value {
        Value::Object(fields) => Ok(fields),
        other => Err(format!(
            "expected a JSON object, found {}",
            json_kind(&other)
        )),
    }
}

impl RowFields {
    /// Reads a row's id and subset from its fields; the error is the reason
    /// the row is bad.
    pub(super) fn take(&self, fields: Map<String, Value>) -> Result<Row, String> {
        let id = match &self.id_field {
            Some(field) => Some(field_as_text(&fields, field, "id_field")?),
            None => None,
        };
        let subset = match &self.subset_field {
            Some(field) => Some(field_as_text(&fields, field, "subset_field")?),
            None => None,
        };
        Ok(Row { id, subset, fields })
    }
}

/// Whether a line holds nothing but whitespace (skipped, not a bad row).
pub(super) fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_as_text(
    fields: &Map<String, Value>,
    field: &str,
    setting: &str,
) -> Result<String, String> {
    match fields.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!(
            "field `{field}` (dataset.{setting}) must be a string or a number, found {}",
            json_kind(other)
        )),
        None => Err(format!("missing field `{field}` (dataset.{setting})")),
    }
}
