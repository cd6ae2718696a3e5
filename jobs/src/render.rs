//! Rendering a dataset row: the error a failed template reports, and how a
//! rendered gold answer is resolved to a choice.

use std::fmt;

use crate::spec::TargetKind;
use crate::template::letter_index;

/// A template failed for one dataset row.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderError {
    /// Field path of the template, e.g. `task.messages[1].content`.
    pub template: String,
    /// `file:line` of the row (or of the few-shot example).
    pub row: String,
    pub doc_id: String,
    pub reason: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: template `{}` failed for doc {:?}: {}",
            self.row, self.template, self.doc_id, self.reason
        )
    }
}

impl std::error::Error for RenderError {}

/// Resolves a rendered gold answer to a choice index, as `kind` says. With
/// `Auto` the target may be a choice's text, a 0-based index or a letter;
/// when two readings point at different choices (numeric choices "1".."4"
/// with an index target, say) it is an error rather than a silent guess.
pub fn resolve_gold(target: &str, choices: &[String], kind: TargetKind) -> Result<usize, String> {
    let t = target.trim();
    let by_text = || choices.iter().position(|c| c.trim() == t);
    let by_index = || t.parse::<usize>().ok().filter(|&i| i < choices.len());
    let by_letter = || letter_index(t).filter(|&i| i < choices.len());
    let last = choices.len().saturating_sub(1);
    let not_found =
        |what: &str| format!("gold answer {target:?} is not {what} (choices: {choices:?})");
    match kind {
        TargetKind::Text => by_text().ok_or_else(|| not_found("the text of a choice")),
        TargetKind::Index => {
            by_index().ok_or_else(|| not_found(&format!("a choice index 0-{last}")))
        }
        TargetKind::Letter => by_letter().ok_or_else(|| not_found("a choice letter")),
        TargetKind::Auto => {
            let readings = [
                ("text", by_text()),
                ("index", by_index()),
                ("letter", by_letter()),
            ];
            let found: Vec<(&str, usize)> = readings
                .iter()
                .filter_map(|(name, i)| i.map(|i| (*name, i)))
                .collect();
            match found.first() {
                None => Err(not_found(&format!(
                    "a choice's text, a choice index 0-{last} or a letter"
                ))),
                Some(&(first_name, first)) => {
                    if let Some(&(other_name, other)) = found.iter().find(|(_, i)| *i != first) {
                        return Err(format!(
                            "gold answer {target:?} is ambiguous: as a {first_name} it is choice {first}, \
                             as a {other_name} choice {other} (choices: {choices:?}); set \
                             task.target_kind = \"{first_name}\" or \"{other_name}\""
                        ));
                    }
                    Ok(first)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_resolution() {
        let choices: Vec<String> = ["Paris", "Rome", "Oslo"].map(String::from).to_vec();
        let auto = TargetKind::Auto;
        assert_eq!(resolve_gold("1", &choices, auto), Ok(1));
        assert_eq!(resolve_gold(" Oslo ", &choices, auto), Ok(2));
        assert_eq!(resolve_gold("C", &choices, auto), Ok(2));
        assert_eq!(resolve_gold("a", &choices, auto), Ok(0));
        assert!(resolve_gold("D", &choices, auto).is_err());
        assert!(resolve_gold("7", &choices, auto).is_err());
        assert!(resolve_gold("Berlin", &choices, auto).is_err());
        // Numeric choices: "2" is choice 1's text but index 2. Auto refuses
        // to guess; an explicit kind decides.
        let numeric: Vec<String> = ["1", "2", "3", "4"].iter().map(|s| s.to_string()).collect();
        let err = resolve_gold("2", &numeric, auto).unwrap_err();
        assert!(
            err.contains("ambiguous") && err.contains("target_kind"),
            "{err}"
        );
        assert_eq!(resolve_gold("2", &numeric, TargetKind::Text), Ok(1));
        assert_eq!(resolve_gold("2", &numeric, TargetKind::Index), Ok(2));
        assert!(resolve_gold("B", &numeric, TargetKind::Index).is_err());
        assert_eq!(resolve_gold("B", &numeric, TargetKind::Letter), Ok(1));
        // Readings that agree are fine: choices that are their own letters.
        let letters: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resolve_gold("B", &letters, auto), Ok(1));
    }
}
