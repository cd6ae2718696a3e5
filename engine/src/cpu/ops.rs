//! CPU kernels of the forward pass: matrix multiplication through the `gemm`
//! crate (multi-threaded over rayon), RMSNorm, RoPE and SwiGLU.
//!
//! Weights of linear layers are kept as [`PackedMatrix`]: panels of
//! [`PANEL`] output features stored column by column. `gemm` multiplies a
//! column-major operand in place, so no call re-packs the weights; with the
//! row-major `[out, in]` layout it copied every weight matrix on every call,
//! which for decoding (a few rows) cost more than the multiplication.

use rayon::prelude::*;

use crate::config::{ModelConfig, RopeStyle};

/// Raw output pointer shared by the column blocks of one matmul; each block
/// writes a disjoint set of columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to write disjoint column ranges from different threads.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method (rather than `.0`) so closures capture the whole wrapper,
    /// which is `Send`, not the bare pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out[m×n] = a[m×k] · w[n×k]ᵀ` (or `+=` when `accumulate`): `w` is an
/// `nn.Linear` weight, `[out_features, in_features]` row-major.
///
/// For few rows (decoding) gemm takes a single-threaded gemv path, so the
/// output columns are split over rayon's threads instead; for many rows
/// gemm parallelises itself.
pub fn matmul_t(
    out: &mut [f32],
    a: &[f32],
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    // Internal invariant (callers size buffers from the model config);
    // checked because the call below is unsafe.
    assert!(
        out.len() >= m * n && a.len() >= m * k && w.len() >= n * k,
        "matmul_t: buffers too small for {m}x{n}x{k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let work = m * n * k;
    if threads > 1 && m <= 16 && n >= 64 && work >= 1 << 16 {
        let chunks = threads * 4;
        let cols = n.div_ceil(chunks).next_multiple_of(16);
        let dst = SendPtr(out.as_mut_ptr());
        (0..n.div_ceil(cols)).into_par_iter().for_each(|c| {
            let j0 = c * cols;
            let nc = cols.min(n - j0);
            // SAFETY: columns j0..j0+nc of an m×n row-major matrix lie within
            // `out`; blocks are disjoint; `w` rows j0..j0+nc lie within `w`.
            unsafe {
                gemm_raw(
                    dst.get().add(j0),
                    n,
                    a.as_ptr(),
                    w.as_ptr().add(j0 * k),
                    m,
                    nc,
                    k,
                    accumulate,
                    gemm::Parallelism::None,
                );
            }
        });
    } else {
        let par = if threads > 1 && work >= 1 << 16 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: sizes checked above.
        unsafe {
            gemm_raw(
                out.as_mut_ptr(),
                n,
                a.as_ptr(),
                w.as_ptr(),
                m,
                n,
                k,
                accumulate,
                par,
            );
        }
    }
}

/// `dst[m×nc] (+)= a[m×k] · w[nc×k]ᵀ` with `dst` rows `dst_rs` apart.
///
/// # Safety
/// All three matrices must lie within valid allocations for these sizes.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_rs: usize,
    a: *const f32,
    w: *const f32,
    m: usize,
    nc: usize,
    k: usize,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        nc,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        a,
        1,
        k as isize,
        w,
        k as isize,
        1,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    );
}

/// Output features per panel of a [`PackedMatrix`]: a multiple of the SIMD
/// width (so `gemm` never re-packs a panel), and small enough that one
/// panel (`PANEL * in` floats) stays in the L2 cache while it is used.
pub const PANEL: usize = 64;

/// An `[n, k]` linear-layer weight (`n` output features) in panels: panel
/// `p` holds features `p * PANEL..` as a column-major `PANEL × k` block
/// (for each input index, `PANEL` consecutive values), the last panel
/// zero-padded.
#[derive(Clone, Debug, Default)]
pub struct PackedMatrix {
    data: Vec<f32>,
    n: usize,
    k: usize,
}

impl PackedMatrix {
    /// Rearranges a row-major `[n, k]` matrix.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> PackedMatrix {
        assert_eq!(
            w.len(),
            n * k,
            "PackedMatrix::from_rows: {n}x{k} needs {} values",
            n * k
        );
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * PANEL * k];
        data.par_chunks_mut(PANEL * k)
            .enumerate()
            .for_each(|(p, panel)| {
                for jj in 0..PANEL.min(n - p * PANEL) {
                    let row = &w[(p * PANEL + jj) * k..][..k];
                    for (q, &v) in row.iter().enumerate() {
                        panel[q * PANEL + jj] = v;
                    }
                }
            });
        PackedMatrix { data, n, k }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Copies row `j` of the original matrix into `out` (`k` values).
    pub fn copy_row(&self, j: usize, out: &mut [f32]) {
        let panel = &self.data[(j / PANEL) * PANEL * self.k..][..PANEL * self.k];
        for (q, o) in out[..self.k].iter_mut().enumerate() {
            *o = panel[q * PANEL + j % PANEL];
        }
    }
}

/// `out[m×n] = a[m×k] · wᵀ` (or `+=` when `accumulate`) for a packed
/// `[n, k]` weight. Panels are spread over rayon's threads, each multiplied
/// by one single-threaded `gemm` call (a gemv when `m == 1`).
pub fn matmul_packed(out: &mut [f32], a: &[f32], w: &PackedMatrix, m: usize, accumulate: bool) {
    let (n, k) = (w.n, w.k);
    // Internal invariant (callers size buffers from the model config);
    // checked because the calls below are unsafe.
    assert!(
        out.len() >= m * n && a.len() >= m * k,
        "matmul_packed: buffers too small for {m}x{n}x{k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(PANEL);
    let threads = rayon::current_num_threads();
    // A few tasks per thread for balance; one panel per task once each
    // panel is a substantial multiplication.
    let per_task = if m >= 64 {
        1
    } else {
        panels.div_ceil(threads * 4).max(1)
    };
    let tasks = panels.div_ceil(per_task);
    let dst = SendPtr(out.as_mut_ptr());
    let run = |task: usize| {
        for p in task * per_task..((task + 1) * per_task).min(panels) {
            let j0 = p * PANEL;
            let nc = PANEL.min(n - j0);
            // SAFETY: columns j0..j0+nc of the m×n row-major `out` are in
            // bounds (checked above) and written by this panel only; the
            // panel's PANEL×k block lies within `w.data`.
            unsafe {
                gemm::gemm(
                    m,
                    nc,
                    k,
                    dst.get().add(j0),
                    1,
                    n as isize,
                    accumulate,
                    a.as_ptr(),
                    1,
                    k as isize,
                    w.data.as_ptr().add(p * PANEL * k),
                    1,
                    PANEL as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    };
    if threads > 1 && tasks > 1 && m * n * k >= 1 << 15 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        (0..tasks).for_each(run);
    }
}

/// RMSNorm of each `dim`-wide row of `x` into `out`.
pub fn rms_norm(out: &mut [f32], x: &[f32], weight: &[f32], dim: usize, eps: f32) {
    for (o, xi) in out.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
        rms_norm_row(o, xi, weight, eps);
    }
}

pub fn rms_norm_row(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = w * (v * scale);
    }
}

/// In-place RMSNorm of one row.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for (v, w) in x.iter_mut().zip(weight) {
        *v = w * (*v * scale);
    }
}

/// RoPE inverse frequencies, with Llama 3.1 scaling when configured.
pub fn rope_inv_freq(config: &ModelConfig) -> Vec<f32> {
    let d = config.head_dim;
    // f32 like the reference implementation, which computes them in f32.
    let mut inv: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / (config.rope_theta as f32).powf((2 * i) as f32 / d as f32))
        .collect();
    if let Some(s) = &config.rope_scaling {
        let old = s.original_max_position_embeddings as f64;
        let low_wavelen = old / s.low_freq_factor;
        let high_wavelen = old / s.high_freq_factor;
        for f in inv.iter_mut() {
            let freq = *f as f64;
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let scaled = if wavelen > low_wavelen {
                freq / s.factor
            } else if wavelen < high_wavelen {
                freq
            } else {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * freq / s.factor + smooth * freq
            };
            *f = scaled as f32;
        }
    }
    inv
}

/// Fills `cos`/`sin` (`half` values per position) for `positions`.
pub fn rope_tables(inv_freq: &[f32], positions: &[usize], cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
    let half = inv_freq.len();
    cos.resize(positions.len() * half, 0.0);
    sin.resize(positions.len() * half, 0.0);
    for (t, &p) in positions.iter().enumerate() {
        for (i, &f) in inv_freq.iter().enumerate() {
            let angle = p as f32 * f;
            cos[t * half + i] = angle.cos();
            sin[t * half + i] = angle.sin();
        }
    }
}

/// Rotates one head vector in place.
pub fn apply_rope(x: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    match style {
        RopeStyle::Neox => {
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                x[i] = a * cos[i] - b * sin[i];
                x[i + half] = b * cos[i] + a * sin[i];
            }
        }
        RopeStyle::Interleaved => {
            for i in 0..half {
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a * cos[i] - b * sin[i];
                x[2 * i + 1] = b * cos[i] + a * sin[i];
            }
        }
    }
}

/// `out[t] = silu(gate[t]) * up[t]` where each row of `gate_up` is
/// `[gate (inter) | up (inter)]`.
pub fn swiglu(out: &mut [f32], gate_up: &[f32], inter: usize) {
    let row = |(o, gu): (&mut [f32], &[f32])| {
        let (g, u) = gu.split_at(inter);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    };
    // One exp per value: worth threads from a few rows on.
    if out.len() >= 4 * inter {
        out.par_chunks_exact_mut(inter)
            .zip(gate_up.par_chunks_exact(2 * inter))
            .for_each(row);
    } else {
        out.chunks_exact_mut(inter)
            .zip(gate_up.chunks_exact(2 * inter))
            .for_each(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|x| a[i * k + x] * w[j * k + x]).sum();
            }
        }
        out
    }

    #[test]
    fn matmul_matches_naive_for_decode_and_prefill_shapes() {
        for &(m, n, k) in &[(1, 300, 70), (3, 1000, 96), (40, 130, 64), (2, 5, 3)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let want = naive(&a, &w, m, n, k);
            let mut got = vec![0.0; m * n];
            matmul_t(&mut got, &a, &w, m, n, k, false);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{m}x{n}x{k}: {x} vs {y}");
            }
            // Accumulate adds on top.
            matmul_t(&mut got, &a, &w, m, n, k, true);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn packed_matmul_matches_naive_and_rows_round_trip() {
        // n not a multiple of PANEL; m on both sides of the task heuristics.
        for &(m, n, k) in &[
            (1, 300, 70),
            (3, 1000, 96),
            (70, 130, 64),
            (2, 5, 3),
            (16, 64, 576),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let packed = PackedMatrix::from_rows(&w, n, k);
            assert_eq!((packed.rows(), packed.cols()), (n, k));
            let mut row = vec![0.0; k];
            for j in [0, n / 2, n - 1] {
                packed.copy_row(j, &mut row);
                assert_eq!(row, &w[j * k..(j + 1) * k]);
            }
            let want = naive(&a, &w, m, n, k);
            let mut got = vec![0.0; m * n];
            matmul_packed(&mut got, &a, &packed, m, false);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{m}x{n}x{k}: {x} vs {y}");
            }
            matmul_packed(&mut got, &a, &packed, m, true);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn rope_styles_are_the_same_rotation_on_permuted_dims() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 + 1.0).collect();
        let cos = [0.5f32, 0.8, 0.1, 0.9];
        let sin = [0.3f32, 0.2, 0.7, 0.4];
        let mut neox = x.clone();
        apply_rope(&mut neox, &cos, &sin, RopeStyle::Neox);
        // Interleave (i, i + 4) -> (2i, 2i + 1).
        let mut inter: Vec<f32> = (0..4).flat_map(|i| [x[i], x[i + 4]]).collect();
        apply_rope(&mut inter, &cos, &sin, RopeStyle::Interleaved);
        for i in 0..4 {
            assert_eq!(inter[2 * i], neox[i]);
            assert_eq!(inter[2 * i + 1], neox[i + 4]);
        }
    }
}
