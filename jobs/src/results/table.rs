//! The per-sample table for spreadsheets and pandas, one row per document
//! and one column per metric, written from `samples.jsonl`: `samples.csv`
//! here, `samples.parquet` in `parquet_table`.
//!
//! The table is derived from the JSONL file rather than built beside it, so
//! it can be written for any results folder, local or downloaded, and
//! always agrees with it. Two passes over the file (the metric names first,
//! then the rows) keep memory independent of the number of documents.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::record::{SampleOutputs, SamplePrompt, SampleRecord};

/// The CSV table's file name beside `samples.jsonl`.
pub const CSV_FILE: &str = "samples.csv";

/// The columns before the metrics, in order.
pub(super) const LEADING: [&str; 9] = [
    "doc_id",
    "doc_index",
    "subset",
    "prompt",
    "output",
    "target",
    "choices",
    "gold_index",
    "missing",
];

/// The columns after the metrics, in order.
pub(super) const TRAILING: [&str; 3] = ["doc_hash", "prompt_hash", "target_hash"];

/// Why the table could not be written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a line of samples.jsonl ({message})")]
    Parse {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl TableError {
    pub(super) fn write(path: &Path, error: impl std::fmt::Display) -> TableError {
        TableError::Write {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }
}

/// One document's cells. Columns: the document's id, index and subset,
/// the prompt (its text, or the messages as a JSON array), the output (the
/// text of a single sample; a JSON array for several samples or for
/// per-choice log-likelihoods), target, choices (JSON), gold index,
/// missing, one score per metric (none where the document has no score),
/// then the hashes.
pub(super) struct TableRow {
    pub doc_id: String,
    pub doc_index: u64,
    pub subset: Option<String>,
    pub prompt: String,
    pub output: Option<String>,
    pub target: Option<String>,
    pub choices: Option<String>,
    pub gold_index: Option<u64>,
    pub missing: bool,
    /// In the order of the metric names.
    pub scores: Vec<Option<f64>>,
    pub doc_hash: String,
    pub prompt_hash: String,
    pub target_hash: Option<String>,
}

impl TableRow {
    fn of(record: SampleRecord, metrics: &BTreeSet<String>) -> TableRow {
        let prompt = match &record.prompt {
            SamplePrompt::Text(text) => text.clone(),
            SamplePrompt::Messages(messages) => json(messages),
        };
        let output = match &record.outputs {
            SampleOutputs::Generated(texts) if texts.len() == 1 => texts[0].clone(),
            SampleOutputs::Generated(texts) => Some(json(texts)),
            SampleOutputs::Loglikelihoods(choices) => Some(json(
                &choices
                    .iter()
                    .map(|c| c.as_ref().map(|c| c.logprob))
                    .collect::<Vec<_>>(),
            )),
        };
        TableRow {
            scores: metrics
                .iter()
                .map(|name| record.scores.get(name).copied())
                .collect(),
            choices: record.choices.as_ref().map(json),
            gold_index: record.gold_index.map(|g| g as u64),
            doc_id: record.doc_id,
            doc_index: record.doc_index,
            subset: record.subset,
            prompt,
            output,
            target: record.target,
            missing: record.missing,
            doc_hash: record.doc_hash,
            prompt_hash: record.prompt_hash,
            target_hash: record.target_hash,
        }
    }

    /// The cells as CSV text, in the header's order (empty for none).
    fn to_csv(&self) -> Vec<String> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut cells = vec![
            self.doc_id.clone(),
            self.doc_index.to_string(),
            text(&self.subset),
            self.prompt.clone(),
            text(&self.output),
            text(&self.target),
            text(&self.choices),
            self.gold_index.map(|g| g.to_string()).unwrap_or_default(),
            self.missing.to_string(),
        ];
        cells.extend(
            self.scores
                .iter()
                .map(|s| s.map(|s| s.to_string()).unwrap_or_default()),
        );
        cells.extend([
            self.doc_hash.clone(),
            self.prompt_hash.clone(),
            text(&self.target_hash),
        ]);
        cells
    }
}

/// The column of metric `name`: its name, or `metric:NAME` where a metric
/// is named like one of the other columns (`target`, `missing`, ...), so
/// that no two columns share a name.
pub(super) fn metric_column(name: &str) -> String {
    if LEADING.contains(&name) || TRAILING.contains(&name) {
        format!("metric:{name}")
    } else {
        name.to_string()
    }
}

/// The metric names of the samples at `path`, sorted: the table's metric
/// columns.
pub(super) fn metric_names(path: &Path) -> Result<BTreeSet<String>, TableError> {
    let mut metrics = BTreeSet::new();
    for_each_record(path, |record| {
        metrics.extend(record.scores.keys().cloned());
        Ok(())
    })?;
    Ok(metrics)
}

/// Calls `each` with every row of the samples at `path`, in order, until
/// it fails.
pub(super) fn for_each_row(
    path: &Path,
    metrics: &BTreeSet<String>,
    mut each: impl FnMut(TableRow) -> Result<(), TableError>,
) -> Result<(), TableError> {
    for_each_record(path, |record| each(TableRow::of(record, metrics)))
}

/// Writes `dest` (CSV, header first) from the `samples.jsonl` at `samples`;
/// returns the number of rows.
pub fn write_csv(samples: &Path, dest: &Path) -> Result<u64, TableError> {
    let metrics = metric_names(samples)?;
    let mut out = csv::Writer::from_path(dest).map_err(|e| TableError::write(dest, e))?;
    let header = LEADING
        .iter()
        .map(|c| c.to_string())
        .chain(metrics.iter().map(|m| metric_column(m)))
        .chain(TRAILING.iter().map(|c| c.to_string()));
    out.write_record(header)
        .map_err(|e| TableError::write(dest, e))?;
    let mut rows = 0;
    for_each_row(samples, &metrics, |row| {
        out.write_record(row.to_csv())
            .map_err(|e| TableError::write(dest, e))?;
        rows += 1;
        Ok(())
    })?;
    out.flush().map_err(|e| TableError::write(dest, e))?;
    Ok(rows)
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Plain data (strings, numbers, options): serialising cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Calls `each` with every record of the file, in order, until it fails.
fn for_each_record(
    path: &Path,
    mut each: impl FnMut(SampleRecord) -> Result<(), TableError>,
) -> Result<(), TableError> {
    let read_error = |source| TableError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_no = index as u64 + 1;
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let record: SampleRecord = serde_json::from_str(&line).map_err(|e| TableError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            message: e.to_string(),
        })?;
        each(record)?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::results::ChoiceLoglikelihood;
    use crate::ChatMessage;
    use std::collections::BTreeMap;

    fn record(id: &str, prompt: SamplePrompt, outputs: SampleOutputs) -> SampleRecord {
        SampleRecord {
            doc_id: id.to_string(),
            doc_index: 0,
            subset: None,
            prompt,
            outputs,
            target: Some("Paris".into()),
            choices: None,
            gold_index: None,
            scores: BTreeMap::new(),
            missing: false,
            doc_hash: "d".into(),
            prompt_hash: "p".into(),
            target_hash: None,
            judges: BTreeMap::new(),
        }
    }

    /// The table's columns for [`three_samples`], spelled out.
    pub(in crate::results) const THREE_SAMPLES_HEADER: [&str; 14] = [
        "doc_id",
        "doc_index",
        "subset",
        "prompt",
        "output",
        "target",
        "choices",
        "gold_index",
        "missing",
        "exact_match",
        "f1",
        "doc_hash",
        "prompt_hash",
        "target_hash",
    ];

    /// A `samples.jsonl` in `dir` with three documents: chat messages with
    /// commas, quotes and a newline scored by two metrics; two samples, one
    /// missing, scored by one; a missing multiple-choice document.
    pub(in crate::results) fn three_samples(dir: &Path) -> PathBuf {
        let mut chat = record(
            "q1",
            SamplePrompt::Messages(vec![ChatMessage {
                role: "user".into(),
                content: "Capital of France, \"please\"?\nOne word.".into(),
            }]),
            SampleOutputs::Generated(vec![Some("Paris, of course".into())]),
        );
        chat.subset = Some("geography".into());
        chat.scores.insert("exact_match".into(), 0.0);
        chat.scores.insert("f1".into(), 0.5);
        let mut sampled = record(
            "q2",
            SamplePrompt::Text("2+2=".into()),
            SampleOutputs::Generated(vec![Some("4".into()), None]),
        );
        sampled.doc_index = 1;
        sampled.scores.insert("exact_match".into(), 1.0);
        let mut missing = record(
            "q3",
            SamplePrompt::Text("Pick one:".into()),
            SampleOutputs::Loglikelihoods(vec![
                Some(ChoiceLoglikelihood {
                    logprob: -1.5,
                    is_greedy: true,
                }),
                None,
            ]),
        );
        missing.doc_index = 2;
        missing.missing = true;
        missing.choices = Some(vec!["a".into(), "b".into()]);
        missing.gold_index = Some(1);
        let path = dir.join("samples.jsonl");
        let mut text = String::new();
        for r in [chat, sampled, missing] {
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn one_row_per_document_and_one_column_per_metric() {
        let dir = tempfile::tempdir().unwrap();
        let samples = three_samples(dir.path());
        let dest = dir.path().join(CSV_FILE);
        assert_eq!(write_csv(&samples, &dest).unwrap(), 3);

        let mut reader = csv::Reader::from_path(&dest).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, THREE_SAMPLES_HEADER);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        // Commas, quotes and newlines survive the round trip.
        let messages: Vec<ChatMessage> = serde_json::from_str(&rows[0][3]).unwrap();
        assert_eq!(
            messages[0].content,
            "Capital of France, \"please\"?\nOne word."
        );
        assert_eq!(&rows[0][4], "Paris, of course");
        assert_eq!(&rows[0][2], "geography");
        assert_eq!((&rows[0][9], &rows[0][10]), ("0", "0.5"));
        // Several samples: a JSON array, a missing one as null.
        assert_eq!(&rows[1][4], r#"["4",null]"#);
        assert_eq!((&rows[1][9], &rows[1][10]), ("1", ""));
        // Log-likelihoods per choice; a missing document has no scores.
        assert_eq!(&rows[2][4], "[-1.5,null]");
        assert_eq!(&rows[2][6], r#"["a","b"]"#);
        assert_eq!((&rows[2][7], &rows[2][8]), ("1", "true"));
        assert_eq!((&rows[2][9], &rows[2][10]), ("", ""));
    }

    #[test]
    fn a_metric_named_like_a_column_gets_its_own_column() {
        let dir = tempfile::tempdir().unwrap();
        let samples = three_samples(dir.path());
        let text = std::fs::read_to_string(&samples)
            .unwrap()
            .replace("\"f1\"", "\"target\"");
        std::fs::write(&samples, text).unwrap();
        let dest = dir.path().join(CSV_FILE);
        write_csv(&samples, &dest).unwrap();
        let mut reader = csv::Reader::from_path(&dest).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header[5], "target");
        assert_eq!(header[10], "metric:target");
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_panics() {
        let dir = tempfile::tempdir().unwrap();
        let samples = dir.path().join("samples.jsonl");
        std::fs::write(&samples, "\n{\"doc_id\": 1}\n").unwrap();
        let err = write_csv(&samples, &dir.path().join(CSV_FILE)).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}:2: not a line of samples.jsonl",
                samples.display()
            )),
            "{err}"
        );
        let gone = write_csv(&dir.path().join("none.jsonl"), &dir.path().join("x.csv"));
        assert!(matches!(gone, Err(TableError::Read { .. })));
    }
}
