//! The texts of flipped documents: prompt, target and both runs' outputs,
//! read back from the two samples files in one more pass over each, for
//! only the flips that will be shown, so that the pairing pass never holds
//! a document's text.

use std::collections::HashMap;
use std::path::Path;

use super::error::DiffError;
use super::report::{Flip, FlipTexts};
use super::samples::{for_each_line, parse, IdLine, TextLine};

/// Gives texts to the first `per_metric` flips of each metric (all when
/// `None`); `flips` are grouped by metric.
pub(super) fn attach_texts(
    flips: &mut [Flip],
    a: &Path,
    b: &Path,
    per_metric: Option<usize>,
) -> Result<(), DiffError> {
    let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
    let mut shown = 0;
    for (i, flip) in flips.iter().enumerate() {
        if i > 0 && flips[i - 1].metric != flip.metric {
            shown = 0;
        }
        if per_metric.is_none_or(|n| shown < n) {
            wanted.entry(flip.doc_id.clone()).or_default().push(i);
            shown += 1;
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut from_a: HashMap<String, TextLine> = HashMap::new();
    for_each_line(a, |line, text| {
        let id: IdLine = parse(a, line, text)?;
        if wanted.contains_key(&id.doc_id) {
            from_a.insert(id.doc_id, parse(a, line, text)?);
        }
        Ok(())
    })?;
    for_each_line(b, |line, text| {
        let id: IdLine = parse(b, line, text)?;
        let (Some(indices), Some(a_text)) = (wanted.get(&id.doc_id), from_a.remove(&id.doc_id))
        else {
            return Ok(());
        };
        let b_text: TextLine = parse(b, line, text)?;
        let texts = FlipTexts {
            prompt: a_text.prompt,
            target: a_text.target,
            choices: a_text.choices,
            output_a: a_text.outputs,
            output_b: b_text.outputs,
        };
        for &i in indices {
            flips[i].texts = Some(texts.clone());
        }
        Ok(())
    })
}
