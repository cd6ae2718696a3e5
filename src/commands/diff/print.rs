//! The diff as tables for a person: which documents were compared, one
//! row per metric and subset, then the flipped documents with their
//! prompt, target and both outputs.

use std::fmt::Write as _;

use jobs::diff::{Comparison, Direction, Flip, FlipTexts, MetricDiff, RunDiff};
use serde_json::Value;

use crate::terminal::printable;

/// Longest prompt or output shown, in characters.
const SHOWN_CHARS: usize = 200;

/// The whole report; `a` and `b` say what the runs are.
pub fn render(diff: &RunDiff, a: &str, b: &str, flips_shown: usize) -> String {
    let mut out = String::new();
    let side = |side: &jobs::diff::RunSide| match (&side.job, &side.model) {
        (Some(job), Some(model)) => format!(" ({} · {})", printable(job), printable(model)),
        _ => String::new(),
    };
    let _ = writeln!(out, "A  {}{}", printable(a), side(&diff.a));
    let _ = writeln!(out, "B  {}{}", printable(b), side(&diff.b));
    let _ = writeln!(out, "{}", documents_line(diff));
    let _ = writeln!(
        out,
        "B − A over the documents both runs scored, {}% paired bootstrap intervals ({} \
         resamples, seed {}); * = significant (the interval leaves out 0)\n",
        percent(diff.confidence),
        diff.resamples,
        diff.seed
    );
    out.push_str(&table(diff));
    for (what, names) in [
        ("scored in A only", &diff.metrics_only_in_a),
        ("scored in B only", &diff.metrics_only_in_b),
        (
            "scored by both runs, never on the same document",
            &diff.metrics_unpaired,
        ),
    ] {
        if !names.is_empty() {
            let _ = writeln!(
                out,
                "{what}, not compared: {}",
                printable(&names.join(", "))
            );
        }
    }
    for metric in &diff.metrics {
        out.push_str(&flips_of(diff, metric, flips_shown));
    }
    out
}

fn documents_line(diff: &RunDiff) -> String {
    let d = &diff.docs;
    let mut parts = vec![format!("{} documents compared", d.paired)];
    let mut count = |n: u64, what: &str, examples: &[String]| {
        if n > 0 {
            parts.push(format!(
                "{n} {what} (e.g. {})",
                printable(&examples.join(", "))
            ));
        }
    };
    count(d.only_in_a, "only in A", &d.only_in_a_examples);
    count(d.only_in_b, "only in B", &d.only_in_b_examples);
    count(
        d.missing_in_a,
        "missing an output in A",
        &d.missing_in_a_examples,
    );
    count(
        d.missing_in_b,
        "missing an output in B",
        &d.missing_in_b_examples,
    );
    parts.join("; ")
}

/// A confidence level as a percentage without trailing zeros: `95`, `99.9`.
pub fn percent(confidence: f64) -> String {
    let p = format!("{:.2}", confidence * 100.0);
    p.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn table(diff: &RunDiff) -> String {
    let ci_head = format!("{}% interval", percent(diff.confidence));
    let mut rows: Vec<[String; 8]> = vec![[
        "metric".into(),
        "n".into(),
        "A".into(),
        "B".into(),
        "B − A".into(),
        ci_head,
        String::new(),
        "flips".into(),
    ]];
    for m in &diff.metrics {
        rows.push(row(printable(&m.name).into_owned(), &m.overall));
        for s in &m.subsets {
            rows.push(row(format!("  {}", printable(&s.name)), &s.comparison));
        }
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, (cell, w)) in r.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Names and intervals read from the left, numbers from the right.
            if c == 0 || c >= 5 {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    out
}

fn row(name: String, c: &Comparison) -> [String; 8] {
    let interval = match (c.ci_low, c.ci_high) {
        (Some(low), Some(high)) => format!("[{low:+.4}, {high:+.4}]"),
        _ => "-".to_string(),
    };
    [
        name,
        c.n.to_string(),
        format!("{:.4}", c.mean_a),
        format!("{:.4}", c.mean_b),
        format!("{:+.4}", c.diff),
        interval,
        if c.significant { "*" } else { "" }.to_string(),
        format!("{} worse, {} better", c.flips_worse, c.flips_better),
    ]
}

/// The flips of `metric`: the first `shown` with their texts.
fn flips_of(diff: &RunDiff, metric: &MetricDiff, shown: usize) -> String {
    let flips: Vec<&Flip> = diff
        .flips
        .iter()
        .filter(|f| f.metric == metric.name)
        .collect();
    if flips.is_empty() || shown == 0 {
        return String::new();
    }
    let c = &metric.overall;
    let mut out = format!(
        "\nflips of {}: {} worse, {} better (a score moved by more than {})\n",
        printable(&metric.name),
        c.flips_worse,
        c.flips_better,
        diff.flip_threshold
    );
    for flip in flips.iter().take(shown) {
        // A 0/1 score says right or wrong; a graded one only which way.
        let binary = [flip.a, flip.b].iter().all(|s| *s == 0.0 || *s == 1.0);
        let arrow = match (flip.direction, binary) {
            (Direction::Worse, true) => "right → wrong",
            (Direction::Better, true) => "wrong → right",
            (Direction::Worse, false) => "worse",
            (Direction::Better, false) => "better",
        };
        let subset = flip
            .subset
            .as_deref()
            .map(|s| format!(" [{}]", printable(s)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}{subset}  {} → {}  ({arrow})",
            printable(&flip.doc_id),
            score(flip.a),
            score(flip.b)
        );
        if let Some(texts) = &flip.texts {
            out.push_str(&texts_lines(texts));
        }
    }
    if flips.len() > shown {
        let _ = writeln!(
            out,
            "  … {} more: --flips N shows more, --json lists them all",
            flips.len() - shown
        );
    }
    out
}

fn score(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.3}")
    }
}

fn texts_lines(t: &FlipTexts) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "    {label:<7} {}", shorten(&text));
    };
    line("prompt", prompt_text(&t.prompt));
    if let Some(target) = &t.target {
        line("target", target.clone());
    }
    line("A", output_text(&t.output_a, t.choices.as_deref()));
    line("B", output_text(&t.output_b, t.choices.as_deref()));
    out
}

/// A prompt on one line: its text, or its chat's last message.
fn prompt_text(prompt: &Value) -> String {
    match prompt {
        Value::String(text) => text.clone(),
        Value::Array(messages) => match messages.last() {
            Some(last) => {
                let role = last.get("role").and_then(Value::as_str).unwrap_or("?");
                let content = last.get("content").map_or_else(String::new, |c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                let earlier = messages.len() - 1;
                let before = if earlier > 0 {
                    format!("({earlier} earlier messages) ")
                } else {
                    String::new()
                };
                format!("{before}[{role}] {content}")
            }
            None => String::new(),
        },
        other => other.to_string(),
    }
}

/// An output on one line: the generated text (samples joined by ` | `),
/// or for log-likelihoods the choice the model likes best.
fn output_text(outputs: &Value, choices: Option<&[String]>) -> String {
    let Value::Array(items) = outputs else {
        return outputs.to_string();
    };
    if items.iter().all(|i| i.is_string() || i.is_null()) {
        return items
            .iter()
            .map(|i| i.as_str().unwrap_or("<no output>").to_string())
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let best = items
        .iter()
        .enumerate()
        .filter_map(|(k, i)| Some((k, i.get("logprob")?.as_f64()?)))
        .max_by(|x, y| x.1.total_cmp(&y.1));
    match best {
        Some((k, logprob)) => {
            let text = choices.and_then(|c| c.get(k)).cloned().unwrap_or_default();
            format!("choice {k} {text:?} (logprob {logprob:.3})")
        }
        None => outputs.to_string(),
    }
}

/// `text` on one line, escaped for the terminal and cut to a readable
/// length.
fn shorten(text: &str) -> String {
    let one_line = printable(text);
    if one_line.chars().count() <= SHOWN_CHARS {
        return one_line.into_owned();
    }
    let cut: String = one_line.chars().take(SHOWN_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_and_prompts_fit_one_line() {
        let choices = ["Paris".to_string(), "Rome".to_string()];
        let mc =
            json!([{"logprob": -3.5, "is_greedy": false}, {"logprob": -0.2, "is_greedy": true}]);
        assert_eq!(
            output_text(&mc, Some(&choices)),
            "choice 1 \"Rome\" (logprob -0.200)"
        );
        assert_eq!(output_text(&json!(["a", null]), None), "a | <no output>");
        let chat = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "q\nr"}]);
        assert_eq!(prompt_text(&chat), "(1 earlier messages) [user] q\nr");
        assert_eq!(shorten("x\ny"), "x\\ny");
        assert_eq!(shorten(&"z".repeat(300)).chars().count(), SHOWN_CHARS + 1);
        assert_eq!(
            (percent(0.95), percent(0.999), percent(0.9)),
            ("95".into(), "99.9".into(), "90".into())
        );
    }
}
