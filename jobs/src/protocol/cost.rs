//! What a job's recorded tokens cost, as `status` and `results` report it
//! (computed by `crate::cost`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spec::BackendKind;

/// What a job's recorded tokens cost.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct CostSummary {
    pub currency: String,
    /// The backend whose prices `cost` uses.
    pub backend: BackendKind,
    /// Cost of the recorded tokens under the job's backend.
    pub cost: f64,
    /// What the same tokens cost on the synchronous API.
    pub synchronous_cost: f64,
}

impl CostSummary {
    /// `"0.0123 USD (synchronous: 0.0246 USD)"`.
    pub fn describe(&self) -> String {
        if self.backend == BackendKind::OpenaiBatch {
            format!(
                "{} {} (synchronous API: {} {})",
                money(self.cost),
                self.currency,
                money(self.synchronous_cost),
                self.currency
            )
        } else {
            format!("{} {}", money(self.cost), self.currency)
        }
    }
}

/// Amounts with four significant decimals below 1, two above.
pub fn money(amount: f64) -> String {
    if amount.abs() < 1.0 {
        format!("{amount:.4}")
    } else {
        format!("{amount:.2}")
    }
}
