//! A step's integer metadata, built on the host as one array (token ids,
//! positions, slots, block tables, attention work, logits rows, the head's
//! per-row extra) so that it goes to the GPU in one copy, with the offset of
//! each part.

use crate::error::EngineError;
use crate::executor::StepInput;

/// Rows of a flash prefill tile.
const TILE_ROWS: usize = 64;

/// Where each metadata array of a step lives in the uploaded `meta` buffer
/// (offsets in i32 elements), and the attention work's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct StepLayout {
    pub tokens: usize,
    pub table_stride: usize,
    /// Paged attention items (one query row each).
    pub num_items: usize,
    /// Split-K partitions of the paged attention (1: none).
    pub splits: usize,
    /// Context positions per split.
    pub partition: usize,
    /// Flash prefill tiles (4 ints each: sequence, first row, rows, first
    /// position).
    pub num_tiles: usize,
    /// Logits rows.
    pub rows: usize,
    pub off_ids: usize,
    pub off_pos: usize,
    pub off_slots: usize,
    pub off_tables: usize,
    pub off_q_rows: usize,
    pub off_item_seq: usize,
    pub off_ctx: usize,
    pub off_tiles: usize,
    pub off_rows: usize,
    pub off_extra: usize,
}

/// What the attention work split depends on besides the step.
#[derive(Clone, Copy, Debug)]
pub(super) struct AttentionShape {
    /// Prefill chunks run as flash tiles (else one item per token).
    pub flash: bool,
    /// `CudaSettings::attention_partition`.
    pub attention_partition: usize,
    pub num_kv_heads: usize,
    pub sm_count: usize,
}

fn to_i32(v: usize, what: &str) -> Result<i32, EngineError> {
    i32::try_from(v)
        .map_err(|_| EngineError::InvalidStep(format!("{what} {v} does not fit in 32 bits")))
}

/// Writes the step's metadata into `m` (cleared first) and returns where
/// each array is. Work for attention: sequences computing one token become
/// paged attention items; longer chunks become 64-row flash tiles (or
/// items, one per token, when the flash kernel is unavailable).
pub(super) fn build(
    step: &StepInput,
    shape: AttentionShape,
    extra: &[i32],
    m: &mut Vec<i32>,
) -> Result<StepLayout, EngineError> {
    m.clear();
    let mut lay = StepLayout {
        tokens: step.num_tokens(),
        rows: step.logits_indices.len(),
        ..Default::default()
    };
    lay.off_ids = m.len();
    m.extend(step.token_ids.iter().map(|&x| x as i32));
    lay.off_pos = m.len();
    for &p in &step.positions {
        m.push(to_i32(p, "position")?);
    }
    lay.off_slots = m.len();
    for &s in &step.slot_mapping {
        m.push(to_i32(s, "slot")?);
    }
    lay.table_stride = step
        .seqs
        .iter()
        .map(|s| s.block_table.len())
        .max()
        .unwrap_or(1)
        .max(1);
    lay.off_tables = m.len();
    for s in &step.seqs {
        m.extend(s.block_table.iter().map(|&b| b as i32));
        m.extend(std::iter::repeat_n(
            0,
            lay.table_stride - s.block_table.len(),
        ));
    }
    // Attention work.
    let mut q_rows = Vec::new();
    let mut item_seq = Vec::new();
    let mut ctx = Vec::new();
    let mut tiles = Vec::new();
    let mut max_ctx = 0usize;
    for (si, s) in step.seqs.iter().enumerate() {
        let r = s.token_range.clone();
        if r.len() > 1 && shape.flash {
            let mut start = r.start;
            while start < r.end {
                let n = (r.end - start).min(TILE_ROWS);
                tiles.extend([
                    si as i32,
                    start as i32,
                    n as i32,
                    to_i32(step.positions[start], "position")?,
                ]);
                start += n;
            }
        } else {
            for row in r {
                let c = step.positions[row] + 1;
                max_ctx = max_ctx.max(c);
                q_rows.push(row as i32);
                item_seq.push(si as i32);
                ctx.push(to_i32(c, "context length")?);
            }
        }
    }
    lay.num_items = q_rows.len();
    lay.num_tiles = tiles.len() / 4;
    // Split long contexts only when the items alone leave the GPU idle.
    let part = shape.attention_partition.max(16);
    let kv_blocks = lay.num_items * shape.num_kv_heads;
    lay.splits = if kv_blocks >= 4 * shape.sm_count {
        1
    } else {
        max_ctx.div_ceil(part).clamp(1, 64)
    };
    lay.partition = if lay.splits == 1 {
        max_ctx.max(1)
    } else {
        max_ctx.div_ceil(lay.splits)
    };
    lay.off_q_rows = m.len();
    m.extend_from_slice(&q_rows);
    lay.off_item_seq = m.len();
    m.extend_from_slice(&item_seq);
    lay.off_ctx = m.len();
    m.extend_from_slice(&ctx);
    lay.off_tiles = m.len();
    m.extend_from_slice(&tiles);
    lay.off_rows = m.len();
    for &i in &step.logits_indices {
        m.push(i as i32);
    }
    lay.off_extra = m.len();
    m.extend_from_slice(extra);
    Ok(lay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SeqSlice;

    fn shape(flash: bool) -> AttentionShape {
        AttentionShape {
            flash,
            attention_partition: 16,
            num_kv_heads: 2,
            sm_count: 100,
        }
    }

    /// A 70-token prefill of one sequence and a decode of another at
    /// position 40.
    fn step() -> StepInput {
        let mut s = StepInput::default();
        s.token_ids.extend(0..71);
        s.positions.extend(0..70);
        s.positions.push(40);
        s.slot_mapping.extend(0..70);
        s.slot_mapping.push(200);
        s.seqs = vec![
            SeqSlice {
                token_range: 0..70,
                block_table: (0..5).collect(),
            },
            SeqSlice {
                token_range: 70..71,
                block_table: vec![12, 13, 14],
            },
        ];
        s.logits_indices = vec![69, 70];
        s
    }

    #[test]
    fn prefill_chunks_become_tiles_and_decodes_items() {
        let mut m = Vec::new();
        let lay = build(&step(), shape(true), &[7, 8], &mut m).unwrap();
        assert_eq!((lay.tokens, lay.rows, lay.table_stride), (71, 2, 5));
        assert_eq!((lay.num_tiles, lay.num_items), (2, 1));
        let tiles = &m[lay.off_tiles..lay.off_tiles + 8];
        assert_eq!(tiles, &[0, 0, 64, 0, 0, 64, 6, 64]);
        // Tables are padded to the longest.
        assert_eq!(
            &m[lay.off_tables + 5..lay.off_tables + 10],
            &[12, 13, 14, 0, 0]
        );
        assert_eq!(m[lay.off_ctx], 41);
        // Few items: the context of 41 splits into partitions of 16.
        assert_eq!((lay.splits, lay.partition), (3, 14));
        assert_eq!(&m[lay.off_rows..lay.off_rows + 2], &[69, 70]);
        assert_eq!(&m[lay.off_extra..], &[7, 8]);
    }

    #[test]
    fn without_flash_every_token_is_an_item() {
        let mut m = Vec::new();
        let lay = build(&step(), shape(false), &[], &mut m).unwrap();
        assert_eq!((lay.num_tiles, lay.num_items), (0, 71));
        // 71 items × 2 KV heads leave 100 SMs idle: still split.
        assert!(lay.splits > 1);
        let busy = AttentionShape {
            sm_count: 10,
            ..shape(false)
        };
        let lay = build(&step(), busy, &[], &mut m).unwrap();
        assert_eq!((lay.splits, lay.partition), (1, 70));
    }

    #[test]
    fn positions_beyond_32_bits_are_refused() {
        let mut s = step();
        s.positions[3] = usize::MAX;
        assert!(matches!(
            build(&s, shape(true), &[], &mut Vec::new()),
            Err(EngineError::InvalidStep(_))
        ));
    }
}
