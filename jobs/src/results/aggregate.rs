//! The `Aggregator`: per-document scores in, `metrics.json` out — mean,
//! seeded bootstrap standard error and per-subset means per metric.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::spec::{JobSpec, MetricKind};

use super::record::SampleRecord;
use super::report::{MetricSummary, MetricsReport, StderrMethod, SubsetSummary};

/// Bootstrap resamples per metric.
pub const BOOTSTRAP_ITERS: u32 = 1000;

/// Above this many documents the bootstrap (which costs iterations × docs
/// random draws) is replaced by the analytic standard error of the mean,
/// which the bootstrap converges to anyway.
pub const BOOTSTRAP_MAX_DOCS: usize = 100_000;

struct MetricAcc {
    name: String,
    kind: MetricKind,
    scores: Vec<f64>,
    subsets: BTreeMap<String, (f64, u64)>,
}

/// Collects per-document scores. Keeps one f64 per document and metric (the
/// bootstrap needs them) and never the outputs.
pub struct Aggregator {
    job: String,
    model: String,
    fingerprint: String,
    metrics: Vec<MetricAcc>,
    docs_scored: u64,
    docs_missing: u64,
}

impl Aggregator {
    pub fn new(spec: &JobSpec) -> Aggregator {
        Aggregator {
            job: spec.name.clone(),
            model: spec.model.model.clone(),
            fingerprint: spec.model.fingerprint().0,
            metrics: spec
                .metrics
                .iter()
                .map(|m| MetricAcc {
                    name: m.display_name(),
                    kind: m.kind,
                    scores: Vec::new(),
                    subsets: BTreeMap::new(),
                })
                .collect(),
            docs_scored: 0,
            docs_missing: 0,
        }
    }

    pub fn add(&mut self, record: &SampleRecord) {
        if record.missing {
            self.docs_missing += 1;
            return;
        }
        self.docs_scored += 1;
        for m in &mut self.metrics {
            let Some(&score) = record.scores.get(&m.name) else {
                continue;
            };
            m.scores.push(score);
            if let Some(subset) = &record.subset {
                let entry = m.subsets.entry(subset.clone()).or_insert((0.0, 0));
                entry.0 += score;
                entry.1 += 1;
            }
        }
    }

    pub fn docs_scored(&self) -> u64 {
        self.docs_scored
    }

    pub fn docs_missing(&self) -> u64 {
        self.docs_missing
    }

    /// The report; `seed` makes the bootstrap reproducible.
    pub fn finish(self, seed: u64) -> MetricsReport {
        let metrics = self
            .metrics
            .into_iter()
            .map(|m| {
                let (stderr, method) = standard_error(&m.scores, seed);
                MetricSummary {
                    mean: mean(&m.scores),
                    stderr,
                    stderr_method: method,
                    count: m.scores.len() as u64,
                    subsets: m
                        .subsets
                        .into_iter()
                        .map(|(k, (sum, count))| {
                            (
                                k,
                                SubsetSummary {
                                    mean: sum / count.max(1) as f64,
                                    count,
                                },
                            )
                        })
                        .collect(),
                    name: m.name,
                    kind: m.kind,
                }
            })
            .collect();
        MetricsReport {
            job: self.job,
            model: self.model,
            model_fingerprint: self.fingerprint,
            metrics,
            docs_scored: self.docs_scored,
            docs_missing: self.docs_missing,
            bad_rows: 0,
            bootstrap_iters: BOOTSTRAP_ITERS,
            seed,
        }
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (n - 1 denominator).
fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64;
    Some(var.sqrt())
}

/// Bootstrap standard error of the mean: the standard deviation of the means
/// of `BOOTSTRAP_ITERS` resamples drawn with replacement from a seeded RNG.
pub fn standard_error(scores: &[f64], seed: u64) -> (Option<f64>, StderrMethod) {
    let n = scores.len();
    if n < 2 {
        return (None, StderrMethod::Bootstrap);
    }
    if n > BOOTSTRAP_MAX_DOCS {
        let se = sample_std(scores).map(|s| s / (n as f64).sqrt());
        return (se, StderrMethod::Analytic);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let means: Vec<f64> = (0..BOOTSTRAP_ITERS)
        .map(|_| {
            let sum: f64 = (0..n).map(|_| scores[rng.random_range(0..n)]).sum();
            sum / n as f64
        })
        .collect();
    (sample_std(&means), StderrMethod::Bootstrap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::SampleOutputs;

    fn spec() -> JobSpec {
        JobSpec::from_toml_str(
            r#"
name = "t"
[model]
backend = "none"
model = "m"
[dataset]
path = "d.jsonl"
[task]
kind = "generate"
prompt = "{{ q }}"
target = "{{ a }}"
[[metrics]]
type = "exact_match"
[[metrics]]
type = "f1"
"#,
            "test.toml",
            None,
        )
        .unwrap()
    }

    fn record(subset: &str, em: f64, missing: bool) -> SampleRecord {
        let mut scores = BTreeMap::new();
        if !missing {
            scores.insert("exact_match".to_string(), em);
            scores.insert("f1".to_string(), em / 2.0);
        }
        SampleRecord {
            doc_id: "x".into(),
            doc_index: 0,
            subset: Some(subset.into()),
            prompt: crate::results::SamplePrompt::Text("p".into()),
            outputs: SampleOutputs::Generated(vec![Some("o".into())]),
            target: Some("t".into()),
            choices: None,
            gold_index: None,
            scores,
            missing,
            doc_hash: String::new(),
            prompt_hash: String::new(),
            target_hash: None,
            judges: BTreeMap::new(),
        }
    }

    #[test]
    fn means_subsets_and_missing() {
        let mut agg = Aggregator::new(&spec());
        for (s, em) in [("a", 1.0), ("a", 0.0), ("b", 1.0), ("b", 1.0)] {
            agg.add(&record(s, em, false));
        }
        agg.add(&record("b", 0.0, true));
        let report = agg.finish(7);
        assert_eq!(report.docs_scored, 4);
        assert_eq!(report.docs_missing, 1);
        let em = &report.metrics[0];
        assert_eq!(em.name, "exact_match");
        assert_eq!(em.mean, Some(0.75));
        assert_eq!(em.count, 4);
        assert_eq!(
            em.subsets["a"],
            SubsetSummary {
                mean: 0.5,
                count: 2
            }
        );
        assert_eq!(
            em.subsets["b"],
            SubsetSummary {
                mean: 1.0,
                count: 2
            }
        );
        assert_eq!(report.metrics[1].mean, Some(0.375));
        let table = report.to_table();
        assert!(table.contains("exact_match  0.7500"), "{table}");
        assert!(table.contains("\n  a"), "{table}");
        let json = serde_json::to_string(&report).unwrap();
        let back: MetricsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.metrics[0].subsets, report.metrics[0].subsets);
        assert_eq!(back.docs_missing, 1);
        let se = back.metrics[0].stderr.unwrap();
        assert!((se - report.metrics[0].stderr.unwrap()).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_seeded_and_close_to_analytic() {
        let scores: Vec<f64> = (0..400).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
        let (a, method) = standard_error(&scores, 42);
        let (b, _) = standard_error(&scores, 42);
        let (c, _) = standard_error(&scores, 43);
        assert_eq!(method, StderrMethod::Bootstrap);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let analytic = sample_std(&scores).unwrap() / 20.0;
        let a = a.unwrap();
        assert!((a - analytic).abs() / analytic < 0.15, "{a} vs {analytic}");
        assert_eq!(standard_error(&[1.0], 1).0, None);
        assert_eq!(standard_error(&[1.0, 1.0, 1.0], 1).0, Some(0.0));
    }

    #[test]
    fn empty_report_has_no_mean() {
        let report = Aggregator::new(&spec()).finish(0);
        assert_eq!(report.metrics[0].mean, None);
        assert_eq!(report.metrics[0].count, 0);
        let table = report.to_table();
        let row = table
            .lines()
            .find(|l| l.starts_with("exact_match"))
            .unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            vec!["exact_match", "-", "0"]
        );
    }
}
