//! `[model.price]`: what a million tokens cost (the arithmetic is in
//! `crate::cost`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `[model.price]`: what a million tokens cost.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Per million input (prompt) tokens on the synchronous API.
    pub input_per_million: f64,
    /// Per million output (completion) tokens on the synchronous API.
    pub output_per_million: f64,
    /// Per million input tokens through the Batch API; half of
    /// `input_per_million` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_per_million: Option<f64>,
    /// Per million output tokens through the Batch API; half of
    /// `output_per_million` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_per_million: Option<f64>,
    /// Shown beside the amounts.
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_currency() -> String {
    "USD".to_string()
}
