//! `metrics.json`: per-metric mean, standard error and subsets, and the
//! terminal table made from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spec::MetricKind;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StderrMethod {
    Bootstrap,
    /// Sample standard deviation / sqrt(n), used for very large runs.
    Analytic,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct SubsetSummary {
    pub mean: f64,
    pub count: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct MetricSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// `None` when no document was scored.
    pub mean: Option<f64>,
    /// `None` with fewer than two scored documents.
    pub stderr: Option<f64>,
    pub stderr_method: StderrMethod,
    pub count: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, SubsetSummary>,
}

/// `metrics.json`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct MetricsReport {
    pub job: String,
    pub model: String,
    pub model_fingerprint: String,
    pub metrics: Vec<MetricSummary>,
    pub docs_scored: u64,
    /// Documents with at least one missing output (not scored).
    pub docs_missing: u64,
    /// Dataset rows skipped by `on_bad_row = "skip"`; set by the caller.
    #[serde(default)]
    pub bad_rows: u64,
    pub bootstrap_iters: u32,
    pub seed: u64,
}

impl MetricsReport {
    /// An aligned text table for the terminal: one row per metric, then its
    /// subsets indented below it.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 4]> = vec![[
            "metric".to_string(),
            "value".to_string(),
            "± stderr".to_string(),
            "n".to_string(),
        ]];
        for m in &self.metrics {
            rows.push([
                m.name.clone(),
                m.mean.map_or("-".to_string(), |v| format!("{v:.4}")),
                m.stderr.map_or(String::new(), |v| format!("± {v:.4}")),
                m.count.to_string(),
            ]);
            for (subset, s) in &m.subsets {
                rows.push([
                    format!("  {subset}"),
                    format!("{:.4}", s.mean),
                    String::new(),
                    s.count.to_string(),
                ]);
            }
        }
        let mut widths = [0usize; 4];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} · {} · {} docs scored{}{}",
            self.job,
            self.model,
            self.docs_scored,
            if self.docs_missing > 0 {
                format!(", {} missing", self.docs_missing)
            } else {
                String::new()
            },
            if self.bad_rows > 0 {
                format!(", {} bad rows skipped", self.bad_rows)
            } else {
                String::new()
            },
        );
        for (i, row) in rows.iter().enumerate() {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
            let _ = writeln!(out, "{}", line.trim_end());
            if i == 0 {
                let total = widths.iter().sum::<usize>() + 6;
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        out
    }
}
