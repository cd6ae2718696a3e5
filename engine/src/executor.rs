//! The execution layer's contract: one forward step over a flattened set
//! of sequences whose KV lives in a paged cache. The CPU executor implements
//! it; the CUDA executor implements the same trait, so scheduler and block
//! manager are shared.

use std::ops::Range;

use crate::error::EngineError;
use crate::kv::BlockId;
use crate::scheduler::ScheduledStep;

/// One sequence's part of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSlice {
    /// Its tokens' indices in [`StepInput::token_ids`].
    pub token_range: Range<usize>,
    /// Its whole block table: KV of positions `0..` lives in these blocks,
    /// `block_size` positions per block.
    pub block_table: Vec<BlockId>,
}

/// A step's input: tokens of several sequences, concatenated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepInput {
    pub token_ids: Vec<u32>,
    /// Position of each token in its sequence. Tokens of a sequence are
    /// consecutive positions; earlier positions' KV is already cached.
    pub positions: Vec<usize>,
    /// Cache slot (`block * block_size + offset`) where each token's K and V
    /// are written.
    pub slot_mapping: Vec<usize>,
    pub seqs: Vec<SeqSlice>,
    /// Indices into `token_ids` whose logits are returned, in this order.
    pub logits_indices: Vec<usize>,
}

impl StepInput {
    /// Flattens a scheduled step.
    pub fn from_scheduled(scheduled: &ScheduledStep) -> StepInput {
        let mut input = StepInput::default();
        for s in &scheduled.seqs {
            let first = input.token_ids.len();
            input.token_ids.extend_from_slice(&s.token_ids);
            input.positions.extend(s.start..s.start + s.token_ids.len());
            input.slot_mapping.extend_from_slice(&s.slot_mapping);
            input
                .logits_indices
                .extend(s.logits.clone().map(|p| first + p - s.start));
            input.seqs.push(SeqSlice {
                token_range: first..input.token_ids.len(),
                block_table: s.block_table.clone(),
            });
        }
        input
    }

    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    /// Checks the step against a cache of `num_blocks` blocks of
    /// `block_size` and a vocabulary of `vocab_size`, so executors can index
    /// without panicking on a malformed step.
    pub fn validate(
        &self,
        num_blocks: usize,
        block_size: usize,
        vocab_size: usize,
    ) -> Result<(), EngineError> {
        let n = self.token_ids.len();
        let bad = |m: String| Err(EngineError::InvalidStep(m));
        if self.positions.len() != n || self.slot_mapping.len() != n {
            return bad(format!(
                "{n} tokens but {} positions and {} slots",
                self.positions.len(),
                self.slot_mapping.len()
            ));
        }
        if let Some(t) = self.token_ids.iter().find(|&&t| t as usize >= vocab_size) {
            return bad(format!(
                "token id {t} is outside the vocabulary of {vocab_size}"
            ));
        }
        let num_slots = num_blocks * block_size;
        if let Some(s) = self.slot_mapping.iter().find(|&&s| s >= num_slots) {
            return bad(format!(
                "slot {s} is outside the cache of {num_slots} slots"
            ));
        }
        let mut next = 0;
        for s in &self.seqs {
            if s.token_range.start != next || s.token_range.end > n || s.token_range.is_empty() {
                return bad(format!(
                    "sequence token range {:?} does not continue at {next}",
                    s.token_range
                ));
            }
            next = s.token_range.end;
            if let Some(b) = s.block_table.iter().find(|&&b| b as usize >= num_blocks) {
                return bad(format!(
                    "block {b} is outside the cache of {num_blocks} blocks"
                ));
            }
            let last = self.positions[s.token_range.end - 1];
            if last >= s.block_table.len() * block_size {
                return bad(format!(
                    "position {last} is beyond the sequence's {} blocks",
                    s.block_table.len()
                ));
            }
            for w in self.positions[s.token_range.clone()].windows(2) {
                if w[1] != w[0] + 1 {
                    return bad("positions within a sequence must be consecutive".into());
                }
            }
        }
        if next != n {
            return bad(format!("sequences cover {next} of {n} tokens"));
        }
        if let Some(i) = self.logits_indices.iter().find(|&&i| i >= n) {
            return bad(format!(
                "logits index {i} is outside the step of {n} tokens"
            ));
        }
        Ok(())
    }
}

/// A step's output: one row of logits per entry of
/// [`StepInput::logits_indices`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutput {
    pub vocab_size: usize,
    /// `logits_indices.len() * vocab_size` values, row-major.
    pub logits: Vec<f32>,
}

impl StepOutput {
    pub fn num_rows(&self) -> usize {
        self.logits.len().checked_div(self.vocab_size).unwrap_or(0)
    }

    /// Row `i`, or an empty slice when out of range.
    pub fn row(&self, i: usize) -> &[f32] {
        let v = self.vocab_size;
        self.logits.get(i * v..(i + 1) * v).unwrap_or(&[])
    }
}

/// Runs forward steps over a paged KV cache it owns.
pub trait Executor {
    /// Computes the step: writes every token's K/V to its slot, attends
    /// causally over each sequence's cached positions, and returns the
    /// logits at `logits_indices`.
    fn forward(&mut self, step: &StepInput) -> Result<StepOutput, EngineError>;
    /// Blocks in the KV cache.
    fn num_kv_blocks(&self) -> usize;
    /// Positions per block.
    fn block_size(&self) -> usize;
}

/// A boxed executor is an executor (the engine over one chosen at run
/// time).
impl<E: Executor + ?Sized> Executor for Box<E> {
    fn forward(&mut self, step: &StepInput) -> Result<StepOutput, EngineError> {
        (**self).forward(step)
    }
    fn num_kv_blocks(&self) -> usize {
        (**self).num_kv_blocks()
    }
    fn block_size(&self) -> usize {
        (**self).block_size()
    }
}
