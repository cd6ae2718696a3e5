//! Per-document metrics: exact match, contains, regex, choice letter, token F1
//! (SQuAD-style) and log-likelihood accuracy (lm-evaluation-harness's `acc`
//! and `acc_norm`), and the `Scorer` that applies a job's metrics to a
//! document's outputs (and its judges' verdicts, `judged`).

mod choice;
mod judged;
mod scorer;
mod text;

pub use choice::{acc, acc_norm, extract_choice_letter};
pub use scorer::Scorer;
pub use text::{contains, exact_match, normalize, regex_match, token_f1, SQUAD_NORMALIZATION};
