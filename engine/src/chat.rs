//! Chat requests in the engine's own terms: a turn of a conversation and
//! what to do with a system message the chat template may not accept.

use serde::{Deserialize, Serialize};

/// One chat turn, as chat templates read it (`message.role`,
/// `message.content`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How the system message reaches the chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SystemRole {
    /// As its own turn; a template that raises on it is an error.
    #[default]
    Keep,
    /// Merged into the first user turn, for chat templates without a
    /// system role (e.g. Gemma).
    Fold,
}
