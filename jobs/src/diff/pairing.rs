//! Pairing two runs by `doc_id`: run A is read into a compact index
//! (per document its subset and one f32 per metric, never its texts), then
//! run B is streamed against it. Every paired score difference is kept for
//! the bootstrap, grouped by metric and subset; documents found in one run
//! only, or missing an output in one, are counted with a few examples.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::error::DiffError;
use super::names::Names;
use super::report::DocCounts;
use super::samples::{for_each_line, parse, ScoreLine};

/// How many document ids each count of the report gives as examples.
const EXAMPLES: usize = 5;

/// One document of run A.
struct DocEntry {
    /// Its scores: `start..start + len` of the index's arena, by metric id.
    start: usize,
    len: u16,
    /// 0 for no subset, else the subset's id + 1.
    slot: u32,
    /// Its line in A's file: examples go in file order, and a flip's
    /// texts are read back from there.
    line: u32,
    missing: bool,
    seen_in_b: bool,
}

/// The paired scores of one metric in one subset.
#[derive(Default)]
pub(super) struct Cell {
    /// B − A per paired document.
    pub diffs: Vec<f32>,
    pub sum_a: f64,
    pub sum_b: f64,
    /// Documents whose score fell (rose) by more than the flip threshold.
    pub worse: u64,
    pub better: u64,
}

/// One metric's pairs, by subset slot (0: documents without a subset).
#[derive(Default)]
pub(super) struct MetricPairs {
    pub cells: Vec<Cell>,
    /// Documents scored in both runs with this metric's score in one only.
    pub unscored_in_a: u64,
    pub unscored_in_b: u64,
}

/// A document whose score changed by more than the threshold.
pub(super) struct FlipRef {
    pub metric: u32,
    pub doc_id: Box<str>,
    pub slot: u32,
    pub a: f32,
    pub b: f32,
    pub line_a: u64,
    pub line_b: u64,
}

/// A document of both runs, as pairing needs it.
struct PairedDoc {
    /// A's scores: `arena[start..start + len]`.
    start: usize,
    len: usize,
    slot: u32,
    line_a: u64,
    line_b: u64,
}

/// Each run's own totals per metric: (sum, documents scored).
#[derive(Default, Clone)]
pub(super) struct RunTotals {
    pub lines: u64,
    pub missing: u64,
    pub metrics: Vec<(f64, u64)>,
}

impl RunTotals {
    fn add(&mut self, metric: u32, score: f64) {
        let i = metric as usize;
        if self.metrics.len() <= i {
            self.metrics.resize(i + 1, (0.0, 0));
        }
        self.metrics[i].0 += score;
        self.metrics[i].1 += 1;
    }

    /// Whether this run scored `metric` on any document.
    pub fn has(&self, metric: u32) -> bool {
        self.metrics
            .get(metric as usize)
            .is_some_and(|(_, n)| *n > 0)
    }
}

/// Both runs, paired.
pub(super) struct Pairer {
    threshold: f32,
    pub metrics: Names,
    pub subsets: Names,
    docs: HashMap<Box<str>, DocEntry>,
    arena: Vec<(u32, f32)>,
    pub totals_a: RunTotals,
    pub totals_b: RunTotals,
    /// Per metric id.
    pub pairs: Vec<MetricPairs>,
    pub flips: Vec<FlipRef>,
    pub counts: DocCounts,
    /// B's documents not in A, to find one given twice.
    b_only: HashSet<Box<str>>,
    scratch: Vec<(u32, f32)>,
}

impl Pairer {
    /// A document is flipped when a score moved by more than `threshold`.
    pub fn new(threshold: f64) -> Pairer {
        Pairer {
            threshold: threshold as f32,
            metrics: Names::default(),
            subsets: Names::default(),
            docs: HashMap::new(),
            arena: Vec::new(),
            totals_a: RunTotals::default(),
            totals_b: RunTotals::default(),
            pairs: Vec::new(),
            flips: Vec::new(),
            counts: DocCounts::default(),
            b_only: HashSet::new(),
            scratch: Vec::new(),
        }
    }

    /// Reads run A's samples into the index.
    pub fn index_a(&mut self, path: &Path) -> Result<(), DiffError> {
        for_each_line(path, |line, text| {
            let record: ScoreLine = parse(path, line, text)?;
            let too_large = |what: &str| DiffError::TooLarge {
                path: path.to_path_buf(),
                message: what.to_string(),
            };
            let line_a = u32::try_from(line).map_err(|_| too_large("over 4 billion lines"))?;
            self.totals_a.lines += 1;
            let slot = self.slot(record.subset.as_deref());
            let start = self.arena.len();
            if !record.missing {
                for (name, score) in &record.scores {
                    let id = self.metrics.id(name);
                    self.totals_a.add(id, *score);
                    self.arena.push((id, *score as f32));
                }
            } else {
                self.totals_a.missing += 1;
            }
            self.arena[start..].sort_unstable_by_key(|(id, _)| *id);
            let len = u16::try_from(self.arena.len() - start)
                .map_err(|_| too_large("over 65,535 metrics on one line"))?;
            let entry = DocEntry {
                start,
                len,
                slot,
                line: line_a,
                missing: record.missing,
                seen_in_b: false,
            };
            if self.docs.contains_key(record.doc_id.as_str()) {
                return Err(DiffError::DuplicateDoc {
                    path: path.to_path_buf(),
                    line,
                    doc_id: record.doc_id,
                });
            }
            self.docs.insert(record.doc_id.into_boxed_str(), entry);
            Ok(())
        })
    }

    /// Streams run B's samples against the index of A.
    pub fn pair_b(&mut self, path: &Path) -> Result<(), DiffError> {
        for_each_line(path, |line, text| {
            let record: ScoreLine = parse(path, line, text)?;
            self.totals_b.lines += 1;
            if record.missing {
                self.totals_b.missing += 1;
            }
            self.scratch.clear();
            if !record.missing {
                for (name, score) in &record.scores {
                    let id = self.metrics.id(name);
                    self.totals_b.add(id, *score);
                    self.scratch.push((id, *score as f32));
                }
            }
            self.scratch.sort_unstable_by_key(|(id, _)| *id);
            let duplicate = || DiffError::DuplicateDoc {
                path: path.to_path_buf(),
                line,
                doc_id: record.doc_id.clone(),
            };
            let Some(entry) = self.docs.get_mut(record.doc_id.as_str()) else {
                if !self.b_only.insert(record.doc_id.clone().into_boxed_str()) {
                    return Err(duplicate());
                }
                self.counts.only_in_b += 1;
                example(&mut self.counts.only_in_b_examples, &record.doc_id);
                return Ok(());
            };
            if entry.seen_in_b {
                return Err(duplicate());
            }
            entry.seen_in_b = true;
            self.counts.shared += 1;
            if entry.missing {
                self.counts.missing_in_a += 1;
                example(&mut self.counts.missing_in_a_examples, &record.doc_id);
            }
            if record.missing {
                self.counts.missing_in_b += 1;
                example(&mut self.counts.missing_in_b_examples, &record.doc_id);
            }
            if entry.missing || record.missing {
                return Ok(());
            }
            self.counts.paired += 1;
            let doc = PairedDoc {
                start: entry.start,
                len: entry.len as usize,
                slot: entry.slot,
                line_a: u64::from(entry.line),
                line_b: line,
            };
            self.pair_doc(&doc, &record.doc_id);
            Ok(())
        })?;
        self.count_only_in_a();
        Ok(())
    }

    /// Pairs A's scores of `doc` with B's (in `scratch`), both sorted by
    /// metric id.
    fn pair_doc(&mut self, doc: &PairedDoc, doc_id: &str) {
        let slot = doc.slot;
        let a_scores = &self.arena[doc.start..doc.start + doc.len];
        let (mut i, mut j) = (0, 0);
        while i < a_scores.len() || j < self.scratch.len() {
            let a = a_scores.get(i).copied();
            let b = self.scratch.get(j).copied();
            let metric = match (a, b) {
                (Some((ma, _)), Some((mb, _))) => ma.min(mb),
                (Some((m, _)), None) | (None, Some((m, _))) => m,
                (None, None) => break,
            };
            let a = a.filter(|(m, _)| *m == metric).map(|(_, s)| s);
            let b = b.filter(|(m, _)| *m == metric).map(|(_, s)| s);
            i += usize::from(a.is_some());
            j += usize::from(b.is_some());
            let index = metric as usize;
            if self.pairs.len() <= index {
                self.pairs.resize_with(index + 1, MetricPairs::default);
            }
            let pairs = &mut self.pairs[index];
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (Some(_), None) => {
                    pairs.unscored_in_b += 1;
                    continue;
                }
                (None, _) => {
                    pairs.unscored_in_a += 1;
                    continue;
                }
            };
            if pairs.cells.len() <= slot as usize {
                pairs.cells.resize_with(slot as usize + 1, Cell::default);
            }
            let cell = &mut pairs.cells[slot as usize];
            cell.diffs.push(b - a);
            cell.sum_a += f64::from(a);
            cell.sum_b += f64::from(b);
            if (b - a).abs() > self.threshold {
                if b < a {
                    cell.worse += 1;
                } else {
                    cell.better += 1;
                }
                self.flips.push(FlipRef {
                    metric,
                    doc_id: doc_id.into(),
                    slot,
                    a,
                    b,
                    line_a: doc.line_a,
                    line_b: doc.line_b,
                });
            }
        }
    }

    fn count_only_in_a(&mut self) {
        let mut unseen: Vec<(u32, &str)> = self
            .docs
            .iter()
            .filter(|(_, e)| !e.seen_in_b)
            .map(|(id, e)| (e.line, &**id))
            .collect();
        self.counts.only_in_a = unseen.len() as u64;
        unseen.sort_unstable();
        self.counts.only_in_a_examples = unseen
            .iter()
            .take(EXAMPLES)
            .map(|(_, id)| id.to_string())
            .collect();
    }

    /// The subset slot of `subset` (0 for none).
    fn slot(&mut self, subset: Option<&str>) -> u32 {
        subset.map_or(0, |s| self.subsets.id(s) + 1)
    }

    /// The name of subset slot `slot` (none for slot 0).
    pub fn subset_of_slot(&self, slot: u32) -> Option<&str> {
        slot.checked_sub(1).map(|id| self.subsets.name(id))
    }

    /// The index of A is no longer needed once B is paired.
    pub fn drop_index(&mut self) {
        self.docs = HashMap::new();
        self.arena = Vec::new();
        self.b_only = HashSet::new();
    }
}

fn example(list: &mut Vec<String>, doc_id: &str) {
    if list.len() < EXAMPLES {
        list.push(doc_id.to_string());
    }
}
