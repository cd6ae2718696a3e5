//! The body of every non-2xx answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}
