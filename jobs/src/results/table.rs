//! The per-sample table for spreadsheets and pandas: `samples.csv`, one row
//! per document and one column per metric, written from `samples.jsonl`.
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

/// The table's file name beside `samples.jsonl`.
pub const CSV_FILE: &str = "samples.csv";

/// The columns before the metrics, in order.
const LEADING: [&str; 9] = [
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
const TRAILING: [&str; 3] = ["doc_hash", "prompt_hash", "target_hash"];

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
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: csv::Error },
}

/// Writes `dest` (CSV, header first) from the `samples.jsonl` at `samples`;
/// returns the number of rows. Columns: the document's id, index and
/// subset, the prompt (its text, or the messages as a JSON array), the
/// output (the text of a single sample; a JSON array for several samples or
/// for per-choice log-likelihoods), target, choices (JSON), gold index,
/// missing, one column per metric (empty where the document has no score),
/// then the hashes.
pub fn write_csv(samples: &Path, dest: &Path) -> Result<u64, TableError> {
    let mut metrics = BTreeSet::new();
    for_each_record(samples, |record| {
        metrics.extend(record.scores.keys().cloned());
        Ok(())
    })?;
    let write_error = |source| TableError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let mut out = csv::Writer::from_path(dest).map_err(write_error)?;
    let header = LEADING
        .iter()
        .copied()
        .chain(metrics.iter().map(String::as_str))
        .chain(TRAILING.iter().copied());
    out.write_record(header).map_err(write_error)?;
    let mut rows = 0;
    for_each_record(samples, |record| {
        out.write_record(row(&record, &metrics))
            .map_err(write_error)?;
        rows += 1;
        Ok(())
    })?;
    out.flush().map_err(|e| write_error(csv::Error::from(e)))?;
    Ok(rows)
}

/// One document's cells, in the header's order.
fn row(record: &SampleRecord, metrics: &BTreeSet<String>) -> Vec<String> {
    let prompt = match &record.prompt {
        SamplePrompt::Text(text) => text.clone(),
        SamplePrompt::Messages(messages) => json(messages),
    };
    let output = match &record.outputs {
        SampleOutputs::Generated(texts) if texts.len() == 1 => texts[0].clone().unwrap_or_default(),
        SampleOutputs::Generated(texts) => json(texts),
        SampleOutputs::Loglikelihoods(choices) => json(
            &choices
                .iter()
                .map(|c| c.as_ref().map(|c| c.logprob))
                .collect::<Vec<_>>(),
        ),
    };
    let mut cells = vec![
        record.doc_id.clone(),
        record.doc_index.to_string(),
        record.subset.clone().unwrap_or_default(),
        prompt,
        output,
        record.target.clone().unwrap_or_default(),
        record.choices.as_ref().map(json).unwrap_or_default(),
        record.gold_index.map(|g| g.to_string()).unwrap_or_default(),
        record.missing.to_string(),
    ];
    cells.extend(metrics.iter().map(|name| {
        record
            .scores
            .get(name)
            .map(|score| score.to_string())
            .unwrap_or_default()
    }));
    cells.push(record.doc_hash.clone());
    cells.push(record.prompt_hash.clone());
    cells.push(record.target_hash.clone().unwrap_or_default());
    cells
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
mod tests {
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
        }
    }

    fn write_samples(dir: &Path, records: &[SampleRecord]) -> PathBuf {
        let path = dir.join("samples.jsonl");
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn one_row_per_document_and_one_column_per_metric() {
        let dir = tempfile::tempdir().unwrap();
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
        missing.missing = true;
        missing.choices = Some(vec!["a".into(), "b".into()]);
        missing.gold_index = Some(1);
        let samples = write_samples(dir.path(), &[chat, sampled, missing]);
        let dest = dir.path().join(CSV_FILE);
        assert_eq!(write_csv(&samples, &dest).unwrap(), 3);

        let mut reader = csv::Reader::from_path(&dest).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            [
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
                "target_hash"
            ]
        );
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
