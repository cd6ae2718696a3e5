//! Tests of run diffs over samples files written here.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

/// A samples line: `scores` as (metric, score) pairs; `None` marks the
/// document missing.
fn line(id: &str, subset: &str, scores: Option<&[(&str, f64)]>, output: &str) -> String {
    let map: serde_json::Map<String, serde_json::Value> = scores
        .unwrap_or_default()
        .iter()
        .map(|(m, s)| (m.to_string(), json!(s)))
        .collect();
    json!({
        "doc_id": id, "doc_index": 0, "subset": subset,
        "prompt": format!("question {id}"), "outputs": [output], "target": "right",
        "scores": map, "missing": scores.is_none(),
        "doc_hash": "", "prompt_hash": "",
    })
    .to_string()
}

fn write(dir: &Path, name: &str, lines: &[String]) -> RunFiles {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("samples.jsonl"), lines.join("\n") + "\n").unwrap();
    RunFiles::in_folder(&folder)
}

/// `n` documents scored 1 (right) or 0 by `right(i)`, exact match only,
/// subsets by parity.
fn run(n: usize, right: impl Fn(usize) -> bool) -> Vec<String> {
    (0..n)
        .map(|i| {
            let em = f64::from(u8::from(right(i)));
            let subset = if i % 2 == 0 { "even" } else { "odd" };
            let out = if em == 1.0 { "right" } else { "wrong" };
            line(&format!("d{i}"), subset, Some(&[("exact_match", em)]), out)
        })
        .collect()
}

fn options() -> DiffOptions {
    DiffOptions {
        seed: 42,
        ..DiffOptions::default()
    }
}

#[test]
fn a_clear_regression_is_significant_and_its_flips_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a", &run(200, |i| i % 5 != 0));
    // B loses every third document A had right, and gains none.
    let mut b_lines = run(200, |i| i % 5 != 0 && i % 3 != 0);
    b_lines.reverse(); // pairing goes by doc_id, not by line
    let b = write(dir.path(), "b", &b_lines);
    let diff = diff_runs(&a, &b, &options()).unwrap();

    assert_eq!(diff.docs.paired, 200);
    let em = &diff.metrics[0];
    assert_eq!(em.name, "exact_match");
    let lost = (0..200).filter(|i| i % 5 != 0 && i % 3 == 0).count() as u64;
    assert_eq!(em.overall.flips_worse, lost);
    assert_eq!(em.overall.flips_better, 0);
    assert!((em.overall.mean_a - 0.8).abs() < 1e-9);
    assert!((em.overall.diff + lost as f64 / 200.0).abs() < 1e-9);
    assert!(em.overall.significant, "{:?}", em.overall);
    assert!(em.overall.ci_high.unwrap() < 0.0);
    assert_eq!(em.overall.method, Some(CiMethod::Bootstrap));
    assert_eq!(diff.regressions(0.02).len(), 1);
    assert!(diff.regressions(0.5).is_empty());
    // Subsets split the documents; their flips add up.
    let names: Vec<&str> = em.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["even", "odd"]);
    assert_eq!(em.subsets.iter().map(|s| s.comparison.n).sum::<u64>(), 200);
    assert_eq!(
        em.subsets
            .iter()
            .map(|s| s.comparison.flips_worse)
            .sum::<u64>(),
        lost
    );

    // Every flip is listed, the first ten with their texts.
    assert_eq!(diff.flips.len() as u64, lost);
    assert!(diff.flips.iter().all(|f| f.direction == Direction::Worse));
    let with_texts: Vec<&Flip> = diff.flips.iter().filter(|f| f.texts.is_some()).collect();
    assert_eq!(with_texts.len(), 10);
    let first = with_texts[0];
    let texts = first.texts.as_ref().unwrap();
    assert_eq!(texts.prompt, json!(format!("question {}", first.doc_id)));
    assert_eq!(texts.output_a, json!(["right"]));
    assert_eq!(texts.output_b, json!(["wrong"]));
    assert_eq!((first.a, first.b), (1.0, 0.0));

    // The JSON form keeps every field; with no limit every flip has texts.
    let all = diff_runs(
        &a,
        &b,
        &DiffOptions {
            flip_texts: None,
            ..options()
        },
    )
    .unwrap();
    assert!(all.flips.iter().all(|f| f.texts.is_some()));
    let back: RunDiff = serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
    assert_eq!(back, all);
}

#[test]
fn different_means_without_a_significant_paired_difference() {
    let dir = tempfile::tempdir().unwrap();
    // 60 documents: B loses three that A had right and gains two: the
    // means differ (0.5 vs 0.4833), but so little that the paired interval
    // keeps 0.
    let a = write(dir.path(), "a", &run(60, |i| i < 30));
    let b = write(
        dir.path(),
        "b",
        &run(60, |i| (3..30).contains(&i) || i == 40 || i == 41),
    );
    let diff = diff_runs(&a, &b, &options()).unwrap();
    let em = &diff.metrics[0].overall;
    assert!(em.mean_a != em.mean_b);
    assert!((em.diff + 1.0 / 60.0).abs() < 1e-9, "{em:?}");
    assert!(!em.significant, "{em:?}");
    assert!(em.ci_low.unwrap() < 0.0 && em.ci_high.unwrap() > 0.0);
    assert_eq!((em.flips_worse, em.flips_better), (3, 2));
    assert!(diff.regressions(0.0).is_empty());
    // Seeded: the same interval every time.
    let again = diff_runs(&a, &b, &options()).unwrap();
    assert_eq!(again.metrics[0].overall, *em);
}

#[test]
fn documents_in_one_run_only_or_missing_in_one_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let em = |s: f64| Some(vec![("exact_match", s), ("f1", s / 2.0)]);
    let a = write(
        dir.path(),
        "a",
        &[
            line("both", "x", em(1.0).as_deref(), "o"),
            line("only-a", "x", em(1.0).as_deref(), "o"),
            line("missing-in-a", "x", None, "o"),
            line("missing-in-b", "x", em(1.0).as_deref(), "o"),
            line("no-f1-in-b", "x", em(0.0).as_deref(), "o"),
        ],
    );
    let b = write(
        dir.path(),
        "b",
        &[
            line("only-b", "x", em(1.0).as_deref(), "o"),
            line("both", "x", em(1.0).as_deref(), "o"),
            line("missing-in-a", "x", em(0.0).as_deref(), "o"),
            line("missing-in-b", "x", None, "o"),
            line("no-f1-in-b", "x", Some(&[("exact_match", 1.0)]), "o"),
        ],
    );
    let diff = diff_runs(&a, &b, &options()).unwrap();
    let d = &diff.docs;
    assert_eq!((d.shared, d.paired), (4, 2));
    assert_eq!((d.only_in_a, d.only_in_b), (1, 1));
    assert_eq!((d.missing_in_a, d.missing_in_b), (1, 1));
    assert_eq!(d.only_in_a_examples, ["only-a"]);
    assert_eq!(d.only_in_b_examples, ["only-b"]);
    assert_eq!(d.missing_in_a_examples, ["missing-in-a"]);
    assert_eq!(d.missing_in_b_examples, ["missing-in-b"]);
    assert_eq!((diff.a.docs, diff.a.docs_missing), (5, 1));
    let f1 = diff.metrics.iter().find(|m| m.name == "f1").unwrap();
    assert_eq!(f1.overall.n, 1);
    assert_eq!(f1.unscored_in_b, 1);
    // One document: no interval, so nothing is significant.
    assert_eq!(f1.overall.ci_low, None);
    assert!(!f1.overall.significant);
    let em = diff
        .metrics
        .iter()
        .find(|m| m.name == "exact_match")
        .unwrap();
    assert_eq!(em.overall.n, 2);
    assert_eq!((em.n_a_all, em.n_b_all), (4, 4));
}

#[test]
fn graded_scores_flip_only_beyond_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let graded = |pairs: &[(&str, f64)]| -> Vec<String> {
        pairs
            .iter()
            .map(|(id, s)| line(id, "x", Some(&[("f1", *s)]), "o"))
            .collect()
    };
    let a = write(
        dir.path(),
        "a",
        &graded(&[("p", 0.9), ("q", 0.9), ("r", 0.2)]),
    );
    let b = write(
        dir.path(),
        "b",
        &graded(&[("p", 0.6), ("q", 0.1), ("r", 0.9)]),
    );
    let diff = diff_runs(&a, &b, &options()).unwrap();
    let flips: Vec<(&str, Direction)> = diff
        .flips
        .iter()
        .map(|f| (f.doc_id.as_str(), f.direction))
        .collect();
    assert_eq!(flips, [("q", Direction::Worse), ("r", Direction::Better)]);
    let tight = diff_runs(
        &a,
        &b,
        &DiffOptions {
            flip_threshold: 0.2,
            ..options()
        },
    )
    .unwrap();
    assert_eq!(tight.flips.len(), 3);
}

#[test]
fn bad_input_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good", &run(4, |_| true));

    let mut lines = run(4, |_| true);
    lines[2] = "{\"doc_id\": \"d2\", \"scores\": {".to_string();
    let bad = write(dir.path(), "bad", &lines);
    let err = diff_runs(&good, &bad, &options()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}:3:", bad.samples.display())),
        "{text}"
    );
    assert!(err.is_bad_input());

    // A file of another kind: lines without scores.
    let other = write(dir.path(), "other", &[json!({"doc_id": "d0"}).to_string()]);
    let err = diff_runs(&other, &good, &options()).unwrap_err();
    assert!(err.to_string().contains(":1:"), "{err}");
    assert!(err.to_string().contains("scores"), "{err}");

    let mut lines = run(3, |_| true);
    lines.push(lines[0].clone());
    let twice = write(dir.path(), "twice", &lines);
    let err = diff_runs(&twice, &good, &options()).unwrap_err();
    assert!(
        matches!(err, DiffError::DuplicateDoc { line: 4, .. }),
        "{err}"
    );
    let err = diff_runs(&good, &twice, &options()).unwrap_err();
    assert!(
        matches!(err, DiffError::DuplicateDoc { line: 4, .. }),
        "{err}"
    );

    let strangers = write(
        dir.path(),
        "strangers",
        &[line("elsewhere", "x", Some(&[("exact_match", 1.0)]), "o")],
    );
    let err = diff_runs(&good, &strangers, &options()).unwrap_err();
    assert!(
        matches!(err, DiffError::NoSharedDocs { shared: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("no doc_id is in both (4 lines in"),
        "{err}"
    );
    let all_missing: Vec<String> = (0..4)
        .map(|i| line(&format!("d{i}"), "x", None, "o"))
        .collect();
    let all_missing = write(dir.path(), "all-missing", &all_missing);
    let err = diff_runs(&good, &all_missing, &options()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the 4 doc_ids in both are missing an output in one run"),
        "{err}"
    );

    let err = diff_runs(
        &good,
        &good,
        &DiffOptions {
            metrics: vec!["acc".into()],
            ..options()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no metric \"acc\" in either run (they have: exact_match)"
    );

    let gone = RunFiles::in_folder(&PathBuf::from(dir.path()).join("nowhere"));
    let err = diff_runs(&gone, &good, &options()).unwrap_err();
    assert!(
        matches!(err, DiffError::Read { .. }) && err.is_bad_input(),
        "{err}"
    );
}

#[test]
fn metrics_json_orders_and_labels_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let scores = Some(vec![("acc", 1.0), ("zeta", 0.0)]);
    let lines = vec![
        line("x", "s", scores.as_deref(), "o"),
        line("y", "s", scores.as_deref(), "o"),
    ];
    let a = write(dir.path(), "a", &lines);
    let b = write(dir.path(), "b", &lines);
    std::fs::write(
        a.metrics.as_ref().unwrap(),
        json!({"job": "qa", "model": "m1", "metrics": [{"name": "zeta"}, {"name": "acc"}]})
            .to_string(),
    )
    .unwrap();
    let diff = diff_runs(&a, &b, &options()).unwrap();
    let names: Vec<&str> = diff.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["zeta", "acc"]);
    assert_eq!(diff.a.job.as_deref(), Some("qa"));
    assert_eq!(diff.b.job, None);
    assert!(diff.flips.is_empty());
    assert!(!diff.metrics[0].overall.significant);

    std::fs::write(b.metrics.as_ref().unwrap(), "not json").unwrap();
    let err = diff_runs(&a, &b, &options()).unwrap_err();
    assert!(matches!(err, DiffError::Metrics { .. }), "{err}");
}

#[test]
fn a_metric_never_scored_on_a_shared_document_is_named_not_compared() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a",
        &[
            line("x", "s", Some(&[("em", 1.0)]), "o"),
            line("y", "s", Some(&[("em", 1.0), ("judge", 0.5)]), "o"),
        ],
    );
    let b = write(
        dir.path(),
        "b",
        &[
            line("x", "s", Some(&[("em", 0.0)]), "o"),
            line("z", "s", Some(&[("judge", 1.0)]), "o"),
        ],
    );
    let diff = diff_runs(&a, &b, &options()).unwrap();
    let names: Vec<&str> = diff.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["em"]);
    assert_eq!(diff.metrics_unpaired, ["judge"]);
    assert_eq!((diff.docs.only_in_a, diff.docs.only_in_b), (1, 1));
}

#[test]
fn a_handful_of_flips_is_not_significant_for_a_0_1_metric() {
    // 4 of 1,000 documents go wrong and none right: the bootstrap interval
    // leaves out 0, but a 4-0 split happens by luck 12.5% of the time.
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a", &run(1000, |_| true));
    let b = write(dir.path(), "b", &run(1000, |i| i >= 4));
    let diff = diff_runs(&a, &b, &options()).unwrap();
    let em = &diff.metrics[0].overall;
    assert_eq!(em.flips_worse, 4);
    assert!((em.sign_test_p.unwrap() - 0.125).abs() < 1e-12, "{em:?}");
    assert!(!em.significant, "{em:?}");
    assert!(diff.regressions(0.0).is_empty());
}
