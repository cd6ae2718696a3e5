//! LLM-as-judge: the requests a job's `type = "judge"` metrics make for a
//! document's outputs, and how their verdicts become grades and scores.
//!
//! `item` is what a judge keeps of a document until its outputs exist,
//! `judges` compiles a job's judges and renders their requests, `grade`
//! reads a grade out of a verdict.

mod grade;
mod item;
mod judges;

pub use grade::{Grade, Grader};
pub use item::JudgeItem;
pub use judges::{JudgeRequest, Judges};

#[cfg(test)]
mod tests;
