//! Block manager for the paged KV cache: fixed-size blocks, reference counts,
//! and prefix caching by chained block hashes. Pure data structure, no I/O.
//!
//! A block's hash covers its parent's hash and its own token ids, so equal
//! hashes mean equal whole prefixes; only full blocks whose KV has been
//! computed are published for sharing. Freed blocks that carry a hash stay
//! findable until their memory is needed again (least recently freed first),
//! which is what lets a few-shot prefix shared by thousands of prompts be
//! computed once.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Index of a block in the executor's KV cache.
pub type BlockId = u32;

/// The blocks of one sequence, in position order, plus the chained hashes
/// of its leading committed (full and computed) blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockTable {
    pub blocks: Vec<BlockId>,
    hashes: Vec<u64>,
}

impl BlockTable {
    /// Number of leading blocks already published to the prefix cache.
    pub fn num_committed(&self) -> usize {
        self.hashes.len()
    }
}

/// Prefix-cache hit accounting since the manager was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Tokens looked up (prompt tokens eligible for reuse).
    pub queried_tokens: u64,
    /// Of those, tokens whose KV was found in the cache and reused.
    pub hit_tokens: u64,
    /// Cached blocks dropped to make room.
    pub evicted_blocks: u64,
}

#[derive(Clone, Debug, Default)]
struct Block {
    ref_count: u32,
    /// Set when the block is published in `hash_to_block`.
    hash: Option<u64>,
    /// The block's tokens, kept to tell hash collisions from hits.
    tokens: Vec<u32>,
    /// Key in `free_cached` while the block is free and still cached.
    free_tick: Option<u64>,
}

/// Allocates KV-cache blocks to sequences and shares computed prefixes.
#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    blocks: Vec<Block>,
    /// Free blocks holding nothing worth keeping: used first.
    free_plain: Vec<BlockId>,
    /// Free blocks still holding a published prefix, by the time they were
    /// freed: evicted oldest first.
    free_cached: BTreeMap<u64, BlockId>,
    hash_to_block: HashMap<u64, BlockId>,
    tick: u64,
    prefix_caching: bool,
    stats: PrefixCacheStats,
}

impl BlockManager {
    /// `num_blocks` blocks of `block_size` tokens each (both must be > 0).
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> BlockManager {
        let block_size = block_size.max(1);
        BlockManager {
            block_size,
            blocks: vec![Block::default(); num_blocks],
            // Reversed so that pops hand out low ids first (easier to read
            // in tests and logs).
            free_plain: (0..num_blocks as BlockId).rev().collect(),
            free_cached: BTreeMap::new(),
            hash_to_block: HashMap::new(),
            tick: 0,
            prefix_caching,
            stats: PrefixCacheStats::default(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks that can be handed out now (including cached ones that would
    /// be evicted).
    pub fn num_free_blocks(&self) -> usize {
        self.free_plain.len() + self.free_cached.len()
    }

    pub fn stats(&self) -> PrefixCacheStats {
        self.stats
    }

    /// Blocks needed to hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// Cache slot of position `pos` of a sequence with `table`, or `None`
    /// when the table does not reach that far.
    pub fn slot(&self, table: &BlockTable, pos: usize) -> Option<usize> {
        let block = *table.blocks.get(pos / self.block_size)?;
        Some(block as usize * self.block_size + pos % self.block_size)
    }

    /// Allocates blocks for the `tokens` of a new (or recomputed) sequence,
    /// reusing cached blocks for its longest cached prefix of full blocks
    /// that lie entirely within the first `reusable_tokens` tokens. Returns
    /// the table and how many leading tokens are already computed, or `None`
    /// (changing nothing) when there are not enough free blocks.
    pub fn allocate(
        &mut self,
        tokens: &[u32],
        reusable_tokens: usize,
    ) -> Option<(BlockTable, usize)> {
        let bs = self.block_size;
        let total = self.blocks_for(tokens.len());
        let reusable_blocks = if self.prefix_caching {
            reusable_tokens.min(tokens.len()) / bs
        } else {
            0
        };

        // Find hits without changing anything.
        let mut hits: Vec<(BlockId, u64)> = Vec::new();
        let mut parent = None;
        for b in 0..reusable_blocks {
            let chunk = &tokens[b * bs..(b + 1) * bs];
            let h = block_hash(parent, chunk);
            match self.hash_to_block.get(&h) {
                Some(&id) if self.blocks[id as usize].tokens == chunk => {
                    hits.push((id, h));
                    parent = Some(h);
                }
                _ => break,
            }
        }
        let hits_now_free = hits
            .iter()
            .filter(|(id, _)| self.blocks[*id as usize].ref_count == 0)
            .count();
        let fresh = total - hits.len();
        if fresh > self.num_free_blocks() - hits_now_free {
            return None;
        }

        self.stats.queried_tokens += (reusable_blocks * bs) as u64;
        self.stats.hit_tokens += (hits.len() * bs) as u64;
        let mut table = BlockTable::default();
        for (id, h) in hits {
            let block = &mut self.blocks[id as usize];
            if let Some(t) = block.free_tick.take() {
                self.free_cached.remove(&t);
            }
            block.ref_count += 1;
            table.blocks.push(id);
            table.hashes.push(h);
        }
        let cached_tokens = table.blocks.len() * bs;
        for _ in 0..fresh {
            // Cannot fail: counted above.
            if let Some(id) = self.take_free_block() {
                table.blocks.push(id);
            }
        }
        Some((table, cached_tokens))
    }

    /// Blocks `table` still needs to hold `num_tokens` tokens.
    pub fn blocks_needed(&self, table: &BlockTable, num_tokens: usize) -> usize {
        self.blocks_for(num_tokens)
            .saturating_sub(table.blocks.len())
    }

    /// Grows `table` to hold `num_tokens` tokens; `false` (changing nothing)
    /// when there are not enough free blocks.
    pub fn grow(&mut self, table: &mut BlockTable, num_tokens: usize) -> bool {
        let need = self.blocks_needed(table, num_tokens);
        if need > self.num_free_blocks() {
            return false;
        }
        for _ in 0..need {
            if let Some(id) = self.take_free_block() {
                table.blocks.push(id);
            }
        }
        true
    }

    /// Publishes the full blocks among the first `num_computed` tokens of a
    /// sequence (whose tokens are `tokens`) to the prefix cache. Call after
    /// their KV has been written.
    pub fn commit(&mut self, table: &mut BlockTable, tokens: &[u32], num_computed: usize) {
        if !self.prefix_caching {
            return;
        }
        let bs = self.block_size;
        let full = (num_computed.min(tokens.len()) / bs).min(table.blocks.len());
        for b in table.hashes.len()..full {
            let chunk = &tokens[b * bs..(b + 1) * bs];
            let h = block_hash(table.hashes.last().copied(), chunk);
            table.hashes.push(h);
            let id = table.blocks[b];
            let block = &mut self.blocks[id as usize];
            if block.hash.is_some() {
                continue;
            }
            // Another sequence may have published the same prefix first; the
            // earlier copy stays the shared one and ours remains private.
            if let std::collections::hash_map::Entry::Vacant(e) = self.hash_to_block.entry(h) {
                e.insert(id);
                block.hash = Some(h);
                block.tokens = chunk.to_vec();
            }
        }
    }

    /// Releases a sequence's blocks. Published blocks stay cached until
    /// their memory is needed; the tail is freed first so that it is
    /// evicted before the (more widely shared) head.
    pub fn free(&mut self, table: BlockTable) {
        for &id in table.blocks.iter().rev() {
            let block = &mut self.blocks[id as usize];
            block.ref_count = block.ref_count.saturating_sub(1);
            if block.ref_count > 0 {
                continue;
            }
            if block.hash.is_some() {
                self.tick += 1;
                block.free_tick = Some(self.tick);
                self.free_cached.insert(self.tick, id);
            } else {
                self.free_plain.push(id);
            }
        }
    }

    /// Takes a free block, evicting the least recently freed cached block
    /// when no plain one is left.
    fn take_free_block(&mut self) -> Option<BlockId> {
        let id = match self.free_plain.pop() {
            Some(id) => id,
            None => {
                let (_, id) = self.free_cached.pop_first()?;
                let block = &mut self.blocks[id as usize];
                if let Some(h) = block.hash.take() {
                    if self.hash_to_block.get(&h) == Some(&id) {
                        self.hash_to_block.remove(&h);
                    }
                }
                block.tokens.clear();
                block.free_tick = None;
                self.stats.evicted_blocks += 1;
                id
            }
        };
        let block = &mut self.blocks[id as usize];
        block.ref_count = 1;
        Some(id)
    }

    /// Reference count of a block (for tests and diagnostics).
    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.blocks.get(id as usize).map_or(0, |b| b.ref_count)
    }

    /// Checks the internal invariants; used by tests.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        let mut free = vec![false; self.blocks.len()];
        for &id in &self.free_plain {
            assert!(!free[id as usize], "block {id} twice in free lists");
            free[id as usize] = true;
            assert_eq!(self.blocks[id as usize].ref_count, 0);
            assert!(self.blocks[id as usize].hash.is_none());
        }
        for (&t, &id) in &self.free_cached {
            assert!(!free[id as usize], "block {id} twice in free lists");
            free[id as usize] = true;
            let b = &self.blocks[id as usize];
            assert_eq!(b.ref_count, 0);
            assert_eq!(b.free_tick, Some(t));
            assert!(b.hash.is_some());
        }
        for (id, b) in self.blocks.iter().enumerate() {
            assert_eq!(
                b.ref_count == 0,
                free[id],
                "block {id}: ref count vs free list"
            );
        }
        for (&h, &id) in &self.hash_to_block {
            assert_eq!(self.blocks[id as usize].hash, Some(h));
        }
    }
}

/// Hash of a full block chained on its parent's hash.
fn block_hash(parent: Option<u64>, tokens: &[u32]) -> u64 {
    // SipHash with fixed keys: deterministic within and across runs, and
    // collisions are caught by comparing the stored tokens anyway.
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize, offset: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i + offset).collect()
    }

    #[test]
    fn allocates_and_frees_without_sharing() {
        let mut bm = BlockManager::new(8, 4, true);
        let (t, cached) = bm.allocate(&toks(9, 0), 9).unwrap();
        assert_eq!(t.blocks.len(), 3);
        assert_eq!(cached, 0);
        assert_eq!(bm.num_free_blocks(), 5);
        assert_eq!(bm.slot(&t, 5), Some(t.blocks[1] as usize * 4 + 1));
        assert_eq!(bm.slot(&t, 12), None);
        bm.assert_consistent();
        bm.free(t);
        assert_eq!(bm.num_free_blocks(), 8);
        bm.assert_consistent();
    }

    #[test]
    fn refuses_when_full_and_changes_nothing() {
        let mut bm = BlockManager::new(3, 4, true);
        let (a, _) = bm.allocate(&toks(8, 0), 8).unwrap();
        assert!(bm.allocate(&toks(5, 100), 5).is_none());
        assert_eq!(bm.num_free_blocks(), 1);
        let mut a = a;
        assert!(bm.grow(&mut a, 12));
        assert!(!bm.grow(&mut a, 13));
        assert_eq!(a.blocks.len(), 3);
        bm.assert_consistent();
    }

    #[test]
    fn only_committed_full_blocks_are_shared() {
        let mut bm = BlockManager::new(16, 4, true);
        let prompt = toks(10, 0);
        let (mut a, _) = bm.allocate(&prompt, 10).unwrap();
        // Not computed yet: nothing to share.
        let (b, cached) = bm.allocate(&prompt, 10).unwrap();
        assert_eq!(cached, 0);
        bm.free(b);
        // Computed 6 tokens: only block 0 is full and computed.
        bm.commit(&mut a, &prompt, 6);
        assert_eq!(a.num_committed(), 1);
        let (b, cached) = bm.allocate(&prompt, 10).unwrap();
        assert_eq!(cached, 4);
        assert_eq!(b.blocks[0], a.blocks[0]);
        assert_eq!(bm.ref_count(a.blocks[0]), 2);
        bm.free(b);
        bm.commit(&mut a, &prompt, 10);
        assert_eq!(a.num_committed(), 2);
        let (c, cached) = bm.allocate(&prompt, 10).unwrap();
        assert_eq!(cached, 8);
        assert_eq!(&c.blocks[..2], &a.blocks[..2]);
        assert_ne!(c.blocks[2], a.blocks[2], "partial block is never shared");
        bm.assert_consistent();
    }

    #[test]
    fn reuse_is_capped_by_reusable_tokens_and_chained_on_the_prefix() {
        let mut bm = BlockManager::new(16, 4, true);
        let prompt = toks(12, 0);
        let (mut a, _) = bm.allocate(&prompt, 12).unwrap();
        bm.commit(&mut a, &prompt, 12);
        // Whole prompt cached, but the caller must compute from token 11.
        let (b, cached) = bm.allocate(&prompt, 11).unwrap();
        assert_eq!(cached, 8);
        bm.free(b);
        // Same second block after a different first block: no hit at all.
        let mut other = toks(12, 0);
        other[0] = 999;
        let (c, cached) = bm.allocate(&other, 12).unwrap();
        assert_eq!(cached, 0);
        bm.free(c);
        bm.assert_consistent();
    }

    #[test]
    fn freed_prefix_survives_until_evicted_lru() {
        let mut bm = BlockManager::new(4, 2, true);
        let p1 = toks(4, 0);
        let (mut a, _) = bm.allocate(&p1, 4).unwrap();
        bm.commit(&mut a, &p1, 4);
        bm.free(a);
        assert_eq!(bm.num_free_blocks(), 4);
        // Plain blocks are used before cached ones.
        let p2 = toks(4, 50);
        let (b, cached) = bm.allocate(&p2, 4).unwrap();
        assert_eq!(cached, 0);
        let (c, cached) = bm.allocate(&p1, 4).unwrap();
        assert_eq!(cached, 4, "p1 still cached after freeing");
        bm.free(c);
        bm.free(b);
        // Needing all four blocks evicts p1's blocks.
        let p3 = toks(8, 100);
        let (d, cached) = bm.allocate(&p3, 8).unwrap();
        assert_eq!(cached, 0);
        assert_eq!(bm.stats().evicted_blocks, 2);
        bm.free(d);
        let (e, cached) = bm.allocate(&p1, 4).unwrap();
        assert_eq!(cached, 0, "evicted prefix is gone");
        bm.free(e);
        bm.assert_consistent();
    }

    #[test]
    fn shared_few_shot_prefix_counts_hits() {
        let mut bm = BlockManager::new(64, 4, true);
        let prefix = toks(16, 0);
        let mut first = prefix.clone();
        first.extend([1000, 1001, 1002]);
        let (mut a, _) = bm.allocate(&first, first.len() - 1).unwrap();
        bm.commit(&mut a, &first, first.len());
        let mut tables = vec![a];
        for i in 0..20u32 {
            let mut p = prefix.clone();
            p.extend([2000 + i, 3000 + i]);
            let (t, cached) = bm.allocate(&p, p.len() - 1).unwrap();
            assert_eq!(cached, 16);
            tables.push(t);
        }
        assert_eq!(bm.ref_count(tables[0].blocks[0]), 21);
        let s = bm.stats();
        assert_eq!(s.hit_tokens, 20 * 16);
        for t in tables {
            bm.free(t);
        }
        assert_eq!(bm.num_free_blocks(), 64);
        bm.assert_consistent();
    }

    #[test]
    fn duplicate_commits_keep_one_shared_copy() {
        let mut bm = BlockManager::new(8, 2, true);
        let p = toks(4, 0);
        let (mut a, _) = bm.allocate(&p, 4).unwrap();
        let (mut b, _) = bm.allocate(&p, 4).unwrap();
        bm.commit(&mut a, &p, 4);
        bm.commit(&mut b, &p, 4);
        assert_eq!(b.num_committed(), 2);
        let (c, cached) = bm.allocate(&p, 4).unwrap();
        assert_eq!(cached, 4);
        assert_eq!(&c.blocks[..2], &a.blocks[..2]);
        bm.free(a);
        bm.free(b);
        bm.free(c);
        assert_eq!(bm.num_free_blocks(), 8);
        bm.assert_consistent();
    }

    #[test]
    fn disabled_prefix_caching_never_shares() {
        let mut bm = BlockManager::new(8, 2, false);
        let p = toks(4, 0);
        let (mut a, _) = bm.allocate(&p, 4).unwrap();
        bm.commit(&mut a, &p, 4);
        let (_b, cached) = bm.allocate(&p, 4).unwrap();
        assert_eq!(cached, 0);
        bm.assert_consistent();
    }
}
