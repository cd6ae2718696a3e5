//! Stop strings watched while tokens are generated, with incremental
//! detokenization so that each check decodes only a few tokens.

use std::collections::HashMap;

use crate::engine::{RequestId, TokenAction};
use crate::tokenizer::Tokenizer;

/// Watches generated tokens for stop strings. Text is decoded
/// incrementally: each new token decodes a window that starts a few tokens
/// back (so tokenizers that drop a leading space at the start of a decode,
/// and bytes split over tokens, are handled), and only the text that could
/// complete a stop string is searched.
#[derive(Clone, Debug, Default)]
pub struct StopChecker {
    stop: Vec<String>,
    longest: usize,
    pub(super) text: String,
    prefix_offset: usize,
    read_offset: usize,
}

impl StopChecker {
    /// Empty stop strings are ignored (they would match everywhere).
    pub fn new(stop: &[String]) -> StopChecker {
        let stop: Vec<String> = stop.iter().filter(|s| !s.is_empty()).cloned().collect();
        StopChecker {
            longest: stop.iter().map(String::len).max().unwrap_or(0),
            stop,
            ..StopChecker::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stop.is_empty()
    }

    /// Called with every token generated so far; [`TokenAction::Stop`] once
    /// the text contains a stop string.
    pub fn push(&mut self, tokenizer: &Tokenizer, tokens: &[u32]) -> TokenAction {
        if self.stop.is_empty() || tokens.len() <= self.read_offset {
            return TokenAction::Continue;
        }
        let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
        let before = decode(&tokens[self.prefix_offset..self.read_offset]);
        let after = decode(&tokens[self.prefix_offset..]);
        // An incomplete UTF-8 sequence decodes to U+FFFD: wait for the
        // token that completes it.
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return TokenAction::Continue;
        }
        let Some(delta) = after.get(before.len()..) else {
            return TokenAction::Continue;
        };
        let mut from = self
            .text
            .len()
            .saturating_sub(self.longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.text.push_str(delta);
        self.prefix_offset = self.read_offset;
        self.read_offset = tokens.len();
        if self
            .stop
            .iter()
            .any(|s| self.text[from..].contains(s.as_str()))
        {
            TokenAction::Stop
        } else {
            TokenAction::Continue
        }
    }

    /// `text` cut before its first stop string, and whether one was found.
    pub fn truncate(&self, mut text: String) -> (String, bool) {
        match self.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            Some(at) => {
                text.truncate(at);
                (text, true)
            }
            None => (text, false),
        }
    }
}

/// Per-request stop watchers of a serving loop, by engine request id.
pub type StopCheckers = HashMap<RequestId, StopChecker>;
