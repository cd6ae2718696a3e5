//! Continuous-batching scheduler: waiting and running queues, a per-step
//! token budget with chunked prefill, prefix-cache reuse and preemption by
//! recomputation. Pure data structure over the block manager, no I/O.
//!
//! Every step, running sequences go first (decodes before prefill chunks, so
//! a long prompt cannot stall generation), then waiting ones are admitted
//! while the budget, `max_num_seqs` and free blocks allow. A newly admitted
//! sequence gets blocks for all its tokens at once and skips the prefix that
//! is already in the cache; decodes grow their tables one block at a time,
//! and when no block is free the most recently admitted sequence is
//! preempted: its blocks are freed and it goes back to the front of the
//! waiting queue to be recomputed (often largely from the prefix cache).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;

use crate::error::EngineError;
use crate::kv::{BlockId, BlockManager, BlockTable, PrefixCacheStats};

/// Identifies a sequence within one scheduler.
pub type SeqId = u64;

/// What a sequence's logits are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqKind {
    /// Generation: logits of the last token, every time the sequence has
    /// been computed to its end.
    Generate,
    /// Scoring: logits of every position from `logits_from` on.
    Score { logits_from: usize },
}

/// Scheduler limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// Most tokens computed in one step (all sequences together).
    pub max_num_batched_tokens: usize,
    pub block_size: usize,
    pub num_kv_blocks: usize,
    pub enable_prefix_caching: bool,
}

/// A sequence as the scheduler tracks it.
#[derive(Clone, Debug)]
pub struct Sequence {
    id: SeqId,
    tokens: Vec<u32>,
    num_prompt_tokens: usize,
    num_computed: usize,
    /// Positions below this have had their logits delivered (kept across
    /// preemption so that recomputation does not deliver them twice).
    next_logit_pos: usize,
    table: BlockTable,
    kind: SeqKind,
    num_cached_tokens: usize,
}

impl Sequence {
    pub fn id(&self) -> SeqId {
        self.id
    }
    /// Prompt followed by every token appended since.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    pub fn num_prompt_tokens(&self) -> usize {
        self.num_prompt_tokens
    }
    /// Tokens whose KV is in the cache.
    pub fn num_computed(&self) -> usize {
        self.num_computed
    }
    /// Tokens taken from the prefix cache at the last admission.
    pub fn num_cached_tokens(&self) -> usize {
        self.num_cached_tokens
    }
    pub fn kind(&self) -> SeqKind {
        self.kind
    }
    pub fn block_table(&self) -> &[BlockId] {
        &self.table.blocks
    }

    /// Leading tokens whose KV may come from the prefix cache: at least the
    /// first position that needs logits must be computed.
    fn reusable_tokens(&self) -> usize {
        let last = self.tokens.len().saturating_sub(1);
        match self.kind {
            SeqKind::Generate => last,
            SeqKind::Score { logits_from } => logits_from.min(last),
        }
    }

    fn logits_range(&self, start: usize, end: usize) -> Range<usize> {
        let from = match self.kind {
            SeqKind::Generate => {
                if end == self.tokens.len() {
                    end - 1
                } else {
                    end
                }
            }
            SeqKind::Score { logits_from } => logits_from.max(start),
        };
        let from = from.max(self.next_logit_pos).min(end);
        from..end
    }
}

/// One sequence's share of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub seq_id: SeqId,
    /// First position computed this step (earlier ones are in the cache).
    pub start: usize,
    /// The tokens at positions `start..start + token_ids.len()`.
    pub token_ids: Vec<u32>,
    /// The sequence's whole block table.
    pub block_table: Vec<BlockId>,
    /// KV-cache slot of each computed position.
    pub slot_mapping: Vec<usize>,
    /// Absolute positions whose logits are wanted, within the computed ones.
    pub logits: Range<usize>,
}

/// What to compute in one step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduledStep {
    pub seqs: Vec<ScheduledSeq>,
}

impl ScheduledStep {
    pub fn num_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.token_ids.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// Continuous-batching scheduler owning the KV block manager.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    blocks: BlockManager,
    seqs: HashMap<SeqId, Sequence>,
    waiting: VecDeque<SeqId>,
    running: VecDeque<SeqId>,
    next_id: SeqId,
    num_preemptions: u64,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Scheduler, EngineError> {
        if config.max_num_seqs == 0
            || config.max_num_batched_tokens == 0
            || config.block_size == 0
            || config.num_kv_blocks == 0
        {
            return Err(EngineError::Settings(format!(
                "max_num_seqs, max_num_batched_tokens, block_size and num_kv_blocks must all be positive (got {config:?})"
            )));
        }
        Ok(Scheduler {
            blocks: BlockManager::new(
                config.num_kv_blocks,
                config.block_size,
                config.enable_prefix_caching,
            ),
            config,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: VecDeque::new(),
            next_id: 0,
            num_preemptions: 0,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn block_manager(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.blocks.stats()
    }

    pub fn num_preemptions(&self) -> u64 {
        self.num_preemptions
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// True while any added sequence has not been finished.
    pub fn has_unfinished(&self) -> bool {
        !self.seqs.is_empty()
    }

    pub fn sequence(&self, id: SeqId) -> Option<&Sequence> {
        self.seqs.get(&id)
    }

    /// Queues a sequence. `max_len` is the most tokens it can reach (prompt
    /// plus everything it may generate); it must fit in the whole cache, so
    /// that a sequence alone can always run to its end.
    pub fn add(
        &mut self,
        prompt: Vec<u32>,
        kind: SeqKind,
        max_len: usize,
    ) -> Result<SeqId, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidStep(
                "a sequence needs at least one token".into(),
            ));
        }
        if let SeqKind::Score { logits_from } = kind {
            if logits_from >= prompt.len() {
                return Err(EngineError::InvalidStep(format!(
                    "logits_from {logits_from} is past the end of a {}-token sequence",
                    prompt.len()
                )));
            }
        }
        let max_len = max_len.max(prompt.len());
        let needed = self.blocks.blocks_for(max_len);
        if needed > self.blocks.num_blocks() {
            return Err(EngineError::KvCacheTooSmall {
                tokens: max_len,
                needed,
                available: self.blocks.num_blocks(),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.seqs.insert(
            id,
            Sequence {
                id,
                num_prompt_tokens: prompt.len(),
                tokens: prompt,
                num_computed: 0,
                next_logit_pos: 0,
                table: BlockTable::default(),
                kind,
                num_cached_tokens: 0,
            },
        );
        self.waiting.push_back(id);
        Ok(id)
    }

    /// Picks the work of the next step. Empty only when nothing is queued.
    pub fn schedule(&mut self) -> Result<ScheduledStep, EngineError> {
        let mut budget = self.config.max_num_batched_tokens;
        let mut picked: Vec<(SeqId, usize, usize)> = Vec::new();
        let mut scheduled: HashSet<SeqId> = HashSet::new();
        let mut preempted = false;

        // Decodes first, then prefill chunks, each in admission order.
        let remaining = |s: &Sequence| s.tokens.len() - s.num_computed;
        let (decodes, prefills): (Vec<SeqId>, Vec<SeqId>) = self
            .running
            .iter()
            .copied()
            .partition(|id| self.seqs.get(id).is_some_and(|s| remaining(s) <= 1));
        for id in decodes.into_iter().chain(prefills) {
            if budget == 0 {
                break;
            }
            let Some(seq) = self.seqs.get(&id) else {
                continue;
            };
            if !self.running.contains(&id) {
                continue; // preempted earlier in this step
            }
            let n = remaining(seq).min(budget);
            if n == 0 {
                continue;
            }
            let start = seq.num_computed;
            let mut self_preempted = false;
            while self.blocks.blocks_needed(&self.seqs[&id].table, start + n)
                > self.blocks.num_free_blocks()
            {
                let victim = self
                    .running
                    .iter()
                    .rev()
                    .copied()
                    .find(|v| *v != id && !scheduled.contains(v))
                    .unwrap_or(id);
                self.preempt(victim);
                preempted = true;
                if victim == id {
                    self_preempted = true;
                    break;
                }
            }
            if self_preempted {
                continue;
            }
            if let Some(seq) = self.seqs.get_mut(&id) {
                // Cannot fail: room was made above.
                self.blocks.grow(&mut seq.table, start + n);
            }
            picked.push((id, start, n));
            scheduled.insert(id);
            budget -= n;
        }

        // Admit waiting sequences, unless this step already had to preempt
        // (admitting now would only cause more).
        while !preempted && budget > 0 && self.running.len() < self.config.max_num_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let Some(seq) = self.seqs.get_mut(&id) else {
                self.waiting.pop_front();
                continue;
            };
            let Some((table, cached)) = self.blocks.allocate(&seq.tokens, seq.reusable_tokens())
            else {
                break;
            };
            self.waiting.pop_front();
            seq.table = table;
            seq.num_computed = cached;
            seq.num_cached_tokens = cached;
            let n = (seq.tokens.len() - cached).min(budget);
            picked.push((id, cached, n));
            budget -= n;
            self.running.push_back(id);
        }

        if picked.is_empty() && !self.seqs.is_empty() {
            // Only possible if a lone sequence cannot get its blocks, which
            // `add` rules out; report rather than spin.
            return Err(EngineError::KvCacheTooSmall {
                tokens: self
                    .waiting
                    .front()
                    .and_then(|id| self.seqs.get(id))
                    .map_or(0, |s| s.tokens.len()),
                needed: 0,
                available: self.blocks.num_free_blocks(),
            });
        }

        let mut scheduled = ScheduledStep::default();
        for (id, start, n) in picked {
            let seq = &self.seqs[&id];
            let end = start + n;
            let slot_mapping = (start..end)
                .map(|p| self.blocks.slot(&seq.table, p).unwrap_or(usize::MAX))
                .collect();
            scheduled.seqs.push(ScheduledSeq {
                seq_id: id,
                start,
                token_ids: seq.tokens[start..end].to_vec(),
                block_table: seq.table.blocks.clone(),
                slot_mapping,
                logits: seq.logits_range(start, end),
            });
        }
        Ok(scheduled)
    }

    /// Records that `scheduled` was computed: advances each sequence and
    /// publishes its newly completed blocks to the prefix cache.
    pub fn complete_step(&mut self, scheduled: &ScheduledStep) {
        for s in &scheduled.seqs {
            if let Some(seq) = self.seqs.get_mut(&s.seq_id) {
                seq.num_computed = s.start + s.token_ids.len();
                seq.next_logit_pos = seq.next_logit_pos.max(s.logits.end);
                self.blocks
                    .commit(&mut seq.table, &seq.tokens, seq.num_computed);
            }
        }
    }

    /// Appends a generated token to a sequence (computed in a later step).
    pub fn append_token(&mut self, id: SeqId, token: u32) {
        if let Some(seq) = self.seqs.get_mut(&id) {
            seq.tokens.push(token);
        }
    }

    /// Removes a sequence (finished or aborted), freeing its blocks.
    pub fn finish(&mut self, id: SeqId) -> Option<Sequence> {
        let mut seq = self.seqs.remove(&id)?;
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&w| w != id);
        self.blocks.free(std::mem::take(&mut seq.table));
        Some(seq)
    }

    fn preempt(&mut self, id: SeqId) {
        self.running.retain(|&r| r != id);
        if let Some(seq) = self.seqs.get_mut(&id) {
            self.blocks.free(std::mem::take(&mut seq.table));
            seq.num_computed = 0;
            self.waiting.push_front(id);
            self.num_preemptions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(max_seqs: usize, budget: usize, blocks: usize) -> Scheduler {
        Scheduler::new(SchedulerConfig {
            max_num_seqs: max_seqs,
            max_num_batched_tokens: budget,
            block_size: 4,
            num_kv_blocks: blocks,
            enable_prefix_caching: true,
        })
        .unwrap()
    }

    fn toks(n: usize, offset: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i + offset).collect()
    }

    /// Runs one step with a fake model that "generates" token 7 wherever
    /// a Generate sequence reaches its end.
    fn step(s: &mut Scheduler) -> ScheduledStep {
        let b = s.schedule().unwrap();
        s.complete_step(&b);
        for seq in &b.seqs {
            let kind = s.sequence(seq.seq_id).unwrap().kind();
            if kind == SeqKind::Generate && !seq.logits.is_empty() {
                s.append_token(seq.seq_id, 7);
            }
        }
        s.blocks.assert_consistent();
        b
    }

    #[test]
    fn prefill_then_decode_with_slots_from_block_table() {
        let mut s = sched(4, 64, 16);
        let id = s.add(toks(6, 0), SeqKind::Generate, 10).unwrap();
        let b = step(&mut s);
        assert_eq!(b.seqs.len(), 1);
        let x = &b.seqs[0];
        assert_eq!((x.start, x.token_ids.len()), (0, 6));
        assert_eq!(x.logits, 5..6);
        assert_eq!(x.block_table.len(), 2);
        for (i, &slot) in x.slot_mapping.iter().enumerate() {
            assert_eq!(slot, x.block_table[i / 4] as usize * 4 + i % 4);
        }
        let b = step(&mut s);
        assert_eq!((b.seqs[0].start, b.seqs[0].token_ids.clone()), (6, vec![7]));
        assert_eq!(b.seqs[0].logits, 6..7);
        assert_eq!(s.sequence(id).unwrap().tokens().len(), 8);
        s.finish(id);
        assert!(!s.has_unfinished());
        assert_eq!(s.block_manager().num_free_blocks(), 16);
    }

    #[test]
    fn token_budget_chunks_prefill_and_respects_max_num_seqs() {
        let mut s = sched(2, 5, 32);
        let a = s.add(toks(12, 0), SeqKind::Generate, 20).unwrap();
        let b = s.add(toks(3, 100), SeqKind::Generate, 20).unwrap();
        let c = s.add(toks(3, 200), SeqKind::Generate, 20).unwrap();
        let b1 = step(&mut s);
        assert_eq!(b1.num_tokens(), 5);
        assert_eq!(b1.seqs.len(), 1, "a takes the whole budget");
        assert!(b1.seqs[0].logits.is_empty(), "no logits mid-prompt");
        let b2 = step(&mut s);
        // a continues (5 more); the budget is spent, so b still waits.
        assert_eq!(
            b2.seqs.iter().map(|x| x.seq_id).collect::<Vec<_>>(),
            vec![a]
        );
        let b3 = step(&mut s);
        // a's last 2 tokens, then b's 3 tokens; c waits (max_num_seqs = 2).
        assert_eq!(b3.num_tokens(), 5);
        assert_eq!(b3.seqs[0].seq_id, a);
        assert_eq!(b3.seqs[0].logits, 11..12);
        assert_eq!(b3.seqs[1].seq_id, b);
        assert!(b3.seqs.iter().all(|x| x.seq_id != c));
        let b4 = step(&mut s);
        assert!(b4.seqs.iter().all(|x| x.token_ids.len() == 1), "decodes");
        s.finish(a);
        let b5 = step(&mut s);
        assert!(b5.seqs.iter().any(|x| x.seq_id == c));
    }

    #[test]
    fn decodes_are_scheduled_before_long_prefills() {
        let mut s = sched(4, 4, 32);
        let a = s.add(toks(3, 0), SeqKind::Generate, 30).unwrap();
        step(&mut s); // a prefilled, now decoding
        let long = s.add(toks(20, 50), SeqKind::Generate, 30).unwrap();
        step(&mut s); // a decodes 1 token, long gets 3
        let b = step(&mut s);
        assert_eq!(b.seqs[0].seq_id, a);
        assert_eq!(b.seqs[0].token_ids.len(), 1);
        assert_eq!(b.seqs[1].seq_id, long);
        assert_eq!(b.seqs[1].token_ids.len(), 3);
    }

    #[test]
    fn prefix_cache_hit_skips_computed_tokens() {
        let mut s = sched(4, 100, 32);
        let mut p1 = toks(16, 0);
        p1.push(500);
        let a = s.add(p1, SeqKind::Generate, 20).unwrap();
        step(&mut s);
        let mut p2 = toks(16, 0);
        p2.push(600);
        let b = s.add(p2, SeqKind::Generate, 20).unwrap();
        let batch = step(&mut s);
        let xb = batch.seqs.iter().find(|x| x.seq_id == b).unwrap();
        assert_eq!(xb.start, 16);
        assert_eq!(xb.token_ids, vec![600]);
        assert_eq!(s.sequence(b).unwrap().num_cached_tokens(), 16);
        let ta = s.sequence(a).unwrap().block_table()[..4].to_vec();
        assert_eq!(&s.sequence(b).unwrap().block_table()[..4], &ta[..]);
        assert_eq!(s.prefix_cache_stats().hit_tokens, 16);
    }

    #[test]
    fn fully_cached_prompt_still_computes_its_last_token() {
        let mut s = sched(4, 100, 32);
        let a = s.add(toks(8, 0), SeqKind::Generate, 8).unwrap();
        step(&mut s);
        s.finish(a);
        let b = s.add(toks(8, 0), SeqKind::Generate, 9).unwrap();
        let batch = step(&mut s);
        assert_eq!(batch.seqs[0].seq_id, b);
        assert_eq!(
            batch.seqs[0].start, 4,
            "block 1 holds the last token: recomputed"
        );
        assert_eq!(batch.seqs[0].logits, 7..8);
    }

    #[test]
    fn score_sequences_get_logits_for_every_continuation_position() {
        let mut s = sched(4, 4, 32);
        let id = s
            .add(toks(10, 0), SeqKind::Score { logits_from: 5 }, 10)
            .unwrap();
        let mut got = Vec::new();
        while s.has_unfinished() {
            let b = step(&mut s);
            got.extend(b.seqs[0].logits.clone());
            if s.sequence(id).unwrap().num_computed() == 10 {
                s.finish(id);
            }
        }
        assert_eq!(got, (5..10).collect::<Vec<_>>());
    }

    #[test]
    fn preempts_the_newest_sequence_when_blocks_run_out_and_recomputes_it() {
        // 4 blocks of 4 tokens; two sequences of 4 tokens each take 1 block,
        // then both grow until the cache is full.
        let mut s = sched(4, 64, 4);
        let a = s.add(toks(4, 0), SeqKind::Generate, 16).unwrap();
        let b = s.add(toks(4, 100), SeqKind::Generate, 16).unwrap();
        let mut steps = 0;
        while s.num_preemptions() == 0 {
            step(&mut s);
            steps += 1;
            assert!(steps < 20, "expected a preemption");
        }
        // b (admitted last) was preempted and waits; a keeps running.
        assert_eq!(s.sequence(b).unwrap().num_computed(), 0);
        assert_eq!(s.num_waiting(), 1);
        let len_b = s.sequence(b).unwrap().tokens().len();
        // Finish a, then b is recomputed over prompt + generated tokens.
        s.finish(a);
        let batch = step(&mut s);
        let xb = batch.seqs.iter().find(|x| x.seq_id == b).unwrap();
        assert_eq!(xb.start + xb.token_ids.len(), len_b);
        assert_eq!(xb.logits, len_b - 1..len_b);
    }

    #[test]
    fn rejects_sequences_larger_than_the_whole_cache() {
        let mut s = sched(4, 64, 2);
        let e = s.add(toks(4, 0), SeqKind::Generate, 9).unwrap_err();
        assert!(
            matches!(e, EngineError::KvCacheTooSmall { needed: 3, .. }),
            "{e}"
        );
        assert!(s.add(vec![], SeqKind::Generate, 1).is_err());
        assert!(s
            .add(toks(3, 0), SeqKind::Score { logits_from: 3 }, 3)
            .is_err());
    }

    #[test]
    fn many_sequences_under_pressure_all_finish() {
        let mut s = sched(8, 16, 10);
        let mut ids = Vec::new();
        for i in 0..20u32 {
            ids.push(
                s.add(toks(5 + (i as usize % 4), i * 10), SeqKind::Generate, 14)
                    .unwrap(),
            );
        }
        let mut steps = 0;
        while s.has_unfinished() {
            step(&mut s);
            for &id in &ids {
                if s.sequence(id).is_some_and(|q| q.tokens().len() >= 14) {
                    s.finish(id);
                }
            }
            steps += 1;
            assert!(steps < 500);
        }
        assert_eq!(s.block_manager().num_free_blocks(), 10);
    }
}
