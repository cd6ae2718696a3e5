//! The texts of flipped documents: prompt, target and both runs' outputs,
//! read back from the two samples files by line number, for only the flips
//! that will be shown, so that the pairing pass never holds a document's
//! text. Other lines are not parsed, and each file is read only up to its
//! last wanted line.

use std::collections::HashMap;
use std::path::Path;

use super::error::DiffError;
use super::report::{Flip, FlipTexts};
use super::samples::{for_lines_until, parse, TextLine};

/// Gives texts to the first `per_metric` flips of each metric (all when
/// `None`); `flips` are grouped by metric.
pub(super) fn attach_texts(
    flips: &mut [Flip],
    a: &Path,
    b: &Path,
    per_metric: Option<usize>,
) -> Result<(), DiffError> {
    // Flip indices by their line in B, and the lines of A they need.
    let mut by_line_b: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut lines_a: HashMap<u64, Option<TextLine>> = HashMap::new();
    let mut shown = 0;
    for (i, flip) in flips.iter().enumerate() {
        if i > 0 && flips[i - 1].metric != flip.metric {
            shown = 0;
        }
        if per_metric.is_none_or(|n| shown < n) {
            by_line_b.entry(flip.line_b).or_default().push(i);
            lines_a.insert(flip.line_a, None);
            shown += 1;
        }
    }
    let (Some(&last_a), Some(&last_b)) = (lines_a.keys().max(), by_line_b.keys().max()) else {
        return Ok(());
    };
    for_lines_until(a, last_a, |line, text| {
        if let Some(slot) = lines_a.get_mut(&line) {
            *slot = Some(parse(a, line, text)?);
        }
        Ok(())
    })?;
    for_lines_until(b, last_b, |line, text| {
        let Some(indices) = by_line_b.get(&line) else {
            return Ok(());
        };
        let b_text: TextLine = parse(b, line, text)?;
        for &i in indices {
            let Some(Some(a_text)) = lines_a.get(&flips[i].line_a) else {
                continue;
            };
            flips[i].texts = Some(FlipTexts {
                prompt: a_text.prompt.clone(),
                target: a_text.target.clone(),
                choices: a_text.choices.clone(),
                output_a: a_text.outputs.clone(),
                output_b: b_text.outputs.clone(),
            });
        }
        Ok(())
    })
}
