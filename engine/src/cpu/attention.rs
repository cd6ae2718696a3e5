//! Causal self-attention with GQA over the paged KV cache, parallel over
//! (sequence, query head, row tile) work items.
//!
//! Two kernels, chosen per work item by how many query rows it has:
//! - one or two rows (decoding): the scores are dot products straight against
//!   the cached keys, block by block, with no copying; the dot products and
//!   the weighted sum of values are SIMD loops (AVX2 when the CPU has it,
//!   detected at run time, portable code otherwise);
//! - more rows (prefill): the head's keys and values are gathered into
//!   contiguous scratch and `Q·Kᵀ` and `P·V` are two `gemm` calls.
//!
//! Every item computes each of its rows with the same sequence of operations
//! whatever else is in the batch, so a request's result does not depend on
//! its batch neighbours.

use rayon::prelude::*;

use crate::executor::StepInput;

/// Query rows per prefill work item: large enough for efficient gemm calls,
/// small enough that a single long prompt still yields many items.
const ROW_TILE: usize = 32;

/// Work items with at most this many rows use the direct kernel.
const DIRECT_MAX_ROWS: usize = 2;

/// Attention geometry, from the model config and cache layout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub head_dim: usize,
    /// Query heads per KV head.
    pub group: usize,
    /// Width of a `qkv` row: `q_dim + 2 * kv_dim`.
    pub qkv_width: usize,
    pub q_dim: usize,
    pub kv_dim: usize,
    pub block_size: usize,
    pub scale: f32,
}

/// One work item: rows `rows` (indices into the batch's tokens) of sequence
/// `seq`, query head `head`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    seq: usize,
    head: usize,
    first_row: usize,
    num_rows: usize,
}

/// Per-thread scratch, reused across items and steps.
#[derive(Default)]
struct Local {
    scores: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: items write disjoint (row, head) blocks of the output.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    /// A method so closures capture the `Send` wrapper, not the raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Fills `items` with the work of `batch`.
pub(crate) fn plan(batch: &StepInput, n_heads: usize, items: &mut Vec<Item>) {
    items.clear();
    for (seq, s) in batch.seqs.iter().enumerate() {
        let mut first = s.token_range.start;
        while first < s.token_range.end {
            let num_rows = ROW_TILE.min(s.token_range.end - first);
            for head in 0..n_heads {
                items.push(Item {
                    seq,
                    head,
                    first_row: first,
                    num_rows,
                });
            }
            first += num_rows;
        }
    }
}

/// `out[t, head]` = softmax(q·Kᵀ·scale, causal) · V for every token `t` of
/// `batch`, reading q from `qkv` and K/V (already holding this step's
/// tokens) from the layer's cache.
pub(crate) fn attention(
    out: &mut [f32],
    qkv: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    batch: &StepInput,
    items: &[Item],
    g: Geometry,
) {
    let t_n = batch.num_tokens();
    assert!(out.len() >= t_n * g.q_dim && qkv.len() >= t_n * g.qkv_width);
    let dst = OutPtr(out.as_mut_ptr());
    items
        .par_iter()
        .for_each_init(Local::default, |local, item| {
            let seq = &batch.seqs[item.seq];
            let table = &seq.block_table;
            let kv_off = (item.head / g.group) * g.head_dim;
            let q_off = item.head * g.head_dim;
            if item.num_rows <= DIRECT_MAX_ROWS {
                for t in item.first_row..item.first_row + item.num_rows {
                    let ctx = batch.positions[t] + 1;
                    let q = &qkv[t * g.qkv_width + q_off..][..g.head_dim];
                    // SAFETY: row t, columns of `head`: inside `out` (checked
                    // above) and written by this item only.
                    let o = unsafe {
                        std::slice::from_raw_parts_mut(
                            dst.get().add(t * g.q_dim + q_off),
                            g.head_dim,
                        )
                    };
                    simd::attend_one(
                        o,
                        q,
                        k_cache,
                        v_cache,
                        table,
                        ctx,
                        kv_off,
                        &g,
                        &mut local.scores,
                    );
                }
            } else {
                // SAFETY: rows first_row.. of `out`, columns of `head`; the
                // gemm writes `num_rows` rows of `head_dim` at stride q_dim.
                unsafe {
                    attend_tile(
                        dst.get().add(item.first_row * g.q_dim + q_off),
                        qkv,
                        k_cache,
                        v_cache,
                        batch,
                        item,
                        kv_off,
                        &g,
                        local,
                    );
                }
            }
        });
}

/// Fills `dst` (`ctx` rows of `head_dim`) with one KV head's vectors of
/// positions `0..ctx`, read through the block table.
fn gather(
    dst: &mut Vec<f32>,
    cache: &[f32],
    table: &[u32],
    ctx: usize,
    kv_off: usize,
    g: &Geometry,
) {
    let hd = g.head_dim;
    dst.clear();
    dst.reserve(ctx * hd);
    for j in 0..ctx {
        let slot = table[j / g.block_size] as usize * g.block_size + j % g.block_size;
        dst.extend_from_slice(&cache[slot * g.kv_dim + kv_off..][..hd]);
    }
}

/// A prefill tile: `num_rows` consecutive tokens of one sequence, one head.
///
/// # Safety
/// `dst` must point at row `first_row`, column `head * head_dim` of the
/// attention output (`q_dim` columns per row) with `num_rows` rows in range,
/// written by no one else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn attend_tile(
    dst: *mut f32,
    qkv: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    batch: &StepInput,
    item: &Item,
    kv_off: usize,
    g: &Geometry,
    local: &mut Local,
) {
    let hd = g.head_dim;
    let rows = item.num_rows;
    let table = &batch.seqs[item.seq].block_table;
    let first_pos = batch.positions[item.first_row];
    // The last row sees the most context.
    let ctx = batch.positions[item.first_row + rows - 1] + 1;
    gather(&mut local.keys, k_cache, table, ctx, kv_off, g);
    gather(&mut local.values, v_cache, table, ctx, kv_off, g);
    local.scores.clear();
    local.scores.resize(rows * ctx, 0.0);

    let q = qkv[item.first_row * g.qkv_width + item.head * hd..].as_ptr();
    // scores[rows × ctx] = scale · Q[rows × hd] · Kᵀ[hd × ctx]
    gemm::gemm(
        rows,
        ctx,
        hd,
        local.scores.as_mut_ptr(),
        1,
        ctx as isize,
        false,
        q,
        1,
        g.qkv_width as isize,
        local.keys.as_ptr(),
        hd as isize,
        1,
        0.0,
        g.scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    for (r, row) in local.scores.chunks_exact_mut(ctx).enumerate() {
        // Row r is position first_pos + r: it sees keys 0..=that.
        let visible = first_pos + r + 1;
        softmax_in_place(&mut row[..visible]);
        row[visible..].fill(0.0);
    }
    // out[rows × hd] = P[rows × ctx] · V[ctx × hd]
    gemm::gemm(
        rows,
        hd,
        ctx,
        dst,
        1,
        g.q_dim as isize,
        false,
        local.scores.as_ptr(),
        1,
        ctx as isize,
        local.values.as_ptr(),
        1,
        hd as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The decode kernel, compiled twice: with AVX2 for CPUs that have it
/// (chosen at run time) and portable.
mod simd {
    use super::{softmax_in_place, Geometry};

    /// Lanes of independent accumulation: enough for two 8-wide AVX
    /// registers, and a fixed order so results do not depend on the path.
    const LANES: usize = 16;

    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (x, y) in ac.zip(bc) {
            for i in 0..LANES {
                acc[i] += x[i] * y[i];
            }
        }
        let mut tail = 0.0f32;
        for (x, y) in ar.iter().zip(br) {
            tail += x * y;
        }
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn axpy(out: &mut [f32], w: f32, v: &[f32]) {
        for (o, &x) in out.iter_mut().zip(v) {
            *o += w * x;
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn body(
        out: &mut [f32],
        q: &[f32],
        k_cache: &[f32],
        v_cache: &[f32],
        table: &[u32],
        ctx: usize,
        kv_off: usize,
        g: &Geometry,
        scores: &mut Vec<f32>,
    ) {
        let (hd, bs, kvd) = (g.head_dim, g.block_size, g.kv_dim);
        scores.clear();
        for (b, &block) in table.iter().enumerate() {
            let start = b * bs;
            if start >= ctx {
                break;
            }
            let base = block as usize * bs;
            for i in 0..bs.min(ctx - start) {
                let k = &k_cache[(base + i) * kvd + kv_off..][..hd];
                scores.push(dot(q, k) * g.scale);
            }
        }
        softmax_in_place(scores);
        out.fill(0.0);
        let mut j = 0;
        for &block in table {
            if j >= ctx {
                break;
            }
            let base = block as usize * bs;
            for i in 0..bs.min(ctx - j) {
                let v = &v_cache[(base + i) * kvd + kv_off..][..hd];
                axpy(out, scores[j + i], v);
            }
            j += bs;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn body_avx2(
        out: &mut [f32],
        q: &[f32],
        k_cache: &[f32],
        v_cache: &[f32],
        table: &[u32],
        ctx: usize,
        kv_off: usize,
        g: &Geometry,
        scores: &mut Vec<f32>,
    ) {
        body(out, q, k_cache, v_cache, table, ctx, kv_off, g, scores)
    }

    /// Attention of one query row over positions `0..ctx` of its sequence.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attend_one(
        out: &mut [f32],
        q: &[f32],
        k_cache: &[f32],
        v_cache: &[f32],
        table: &[u32],
        ctx: usize,
        kv_off: usize,
        g: &Geometry,
        scores: &mut Vec<f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { body_avx2(out, q, k_cache, v_cache, table, ctx, kv_off, g, scores) };
        }
        body(out, q, k_cache, v_cache, table, ctx, kv_off, g, scores)
    }
}
