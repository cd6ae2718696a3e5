//! [`JudgeItem`]: what a judge needs of one document, kept from planning
//! until the document's outputs exist (stored by the coordinator, so that
//! judging never reads the dataset again).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::dataset::Doc;
use crate::plan::DocPlan;
use crate::request::RequestKey;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JudgeItem {
    pub doc_index: u64,
    pub doc_id: String,
    /// `file:line` of the row, for errors.
    pub row: String,
    /// The dataset row, which the grading template sees.
    pub fields: Map<String, Value>,
    /// The document's input as one string (`[role] content` lines).
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    /// The keys of the document's requests, one per sample, whose outputs
    /// are judged.
    pub keys: Vec<RequestKey>,
}

impl JudgeItem {
    pub fn of(doc: &Doc, plan: &DocPlan) -> JudgeItem {
        JudgeItem {
            doc_index: plan.doc_index,
            doc_id: plan.doc_id.clone(),
            row: format!("{}:{}", doc.path.display(), doc.line),
            fields: doc.fields.clone(),
            prompt: plan.prompt_display(),
            target: plan.target.clone(),
            choices: plan.choices.clone(),
            keys: plan.requests.iter().map(|r| r.key.clone()).collect(),
        }
    }
}
