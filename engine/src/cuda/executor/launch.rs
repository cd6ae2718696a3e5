//! Typed launchers for the NVRTC-compiled kernels: one Rust function per
//! kernel, whose parameters are named and typed as in its `.cu` signature,
//! so that no caller has to list arguments in the kernel's order.

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{
    sys::CUfunction_attribute_enum, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr,
    LaunchArgs, LaunchConfig, PushKernelArg,
};
use half::bf16;

use crate::cuda::kernels;
use crate::error::EngineError;

/// A device address of `T` elements (`null` is 0). The element type keeps
/// a bf16 buffer from being passed where a kernel reads f32.
pub(super) struct DevPtr<T> {
    addr: u64,
    _elem: PhantomData<T>,
}

impl<T> Clone for DevPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for DevPtr<T> {}

impl<T> DevPtr<T> {
    pub(super) fn new(addr: u64) -> DevPtr<T> {
        DevPtr {
            addr,
            _elem: PhantomData,
        }
    }

    /// The null pointer, which the kernels read as "absent".
    pub(super) fn null() -> DevPtr<T> {
        DevPtr::new(0)
    }

    /// The address `elems` elements further.
    pub(super) fn add(self, elems: usize) -> DevPtr<T> {
        DevPtr::new(self.addr + (elems * std::mem::size_of::<T>()) as u64)
    }

    pub(super) fn addr(self) -> u64 {
        self.addr
    }

    /// The start of `slice`.
    pub(super) fn of(slice: &CudaSlice<T>, stream: &CudaStream) -> DevPtr<T> {
        DevPtr::new(slice.device_ptr(stream).0)
    }
}

/// Parameters of `qkv_rope_kv_write`, in the kernel's terms.
pub(super) struct QkvRope {
    pub qkv: DevPtr<f32>,
    pub bias: DevPtr<f32>,
    pub q_norm: DevPtr<f32>,
    pub k_norm: DevPtr<f32>,
    pub inv_freq: DevPtr<f32>,
    pub positions: DevPtr<i32>,
    pub slots: DevPtr<i32>,
    pub q_out: DevPtr<bf16>,
    pub k_cache: DevPtr<bf16>,
    pub v_cache: DevPtr<bf16>,
    pub tokens: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub interleaved: bool,
}

/// The paged cache of one layer as the attention kernels read it.
#[derive(Clone, Copy)]
pub(super) struct PagedKv {
    pub k_cache: DevPtr<bf16>,
    pub v_cache: DevPtr<bf16>,
    pub block_tables: DevPtr<i32>,
    pub table_stride: usize,
    pub block_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
}

/// Parameters of `paged_attention` (one query row per item).
pub(super) struct PagedAttention {
    pub out: DevPtr<bf16>,
    pub part_acc: DevPtr<f32>,
    pub part_ml: DevPtr<f32>,
    pub q: DevPtr<bf16>,
    pub kv: PagedKv,
    pub q_rows: DevPtr<i32>,
    pub item_seq: DevPtr<i32>,
    pub ctx_lens: DevPtr<i32>,
    pub num_items: usize,
    pub splits: usize,
    pub partition: usize,
    pub scale: f32,
}

/// Parameters of `flash_prefill` (64-row tiles of prefill chunks).
pub(super) struct FlashPrefill {
    pub out: DevPtr<bf16>,
    pub q: DevPtr<bf16>,
    pub kv: PagedKv,
    pub tiles: DevPtr<i32>,
    pub num_tiles: usize,
    pub scale: f32,
}

/// Parameters of `sample_tokens`: per row a temperature, top-p, top-k and
/// uniform draw.
pub(super) struct SampleTokens {
    pub out: DevPtr<i32>,
    pub logits: DevPtr<f32>,
    pub temps: DevPtr<f32>,
    pub top_ps: DevPtr<f32>,
    pub top_ks: DevPtr<i32>,
    pub us: DevPtr<f64>,
    pub rows: usize,
    pub vocab: usize,
}

/// The loaded kernels of one compiled program.
pub(super) struct Kernels {
    embed_gather: CudaFunction,
    rms_norm: CudaFunction,
    qkv_rope: CudaFunction,
    swiglu: CudaFunction,
    paged_attention: CudaFunction,
    paged_reduce: CudaFunction,
    flash_prefill: Option<CudaFunction>,
    logprob_gather: CudaFunction,
    sample_tokens: CudaFunction,
    _module: Arc<CudaModule>,
}

fn grid(x: usize, y: usize, z: usize, block: u32, shared: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (x as u32, y as u32, z as u32),
        block_dim: (block, 1, 1),
        shared_mem_bytes: shared as u32,
    }
}

/// Launches what `args` holds.
///
/// # Safety
/// The arguments must match the kernel's `.cu` signature in order and type,
/// and every pointer must address a live allocation large enough for the
/// launch (the typed launchers below are the only callers).
unsafe fn run(mut args: LaunchArgs<'_>, cfg: LaunchConfig, name: &str) -> Result<(), EngineError> {
    unsafe { args.launch(cfg) }
        .map(|_| ())
        .map_err(|e| EngineError::Cuda(format!("kernel launch ({name}): {e}")))
}

fn int(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Kernels {
    /// Looks the kernels up in `module`; the flash prefill kernel only when
    /// `flash` (the build has it and the settings want it).
    pub(super) fn load(
        module: &Arc<CudaModule>,
        flash: bool,
        head_dim: usize,
    ) -> Result<Kernels, EngineError> {
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| EngineError::Cuda(format!("kernel {name} missing: {e}")))
        };
        let k = Kernels {
            embed_gather: load("embed_gather")?,
            rms_norm: load("rms_norm_bf16")?,
            qkv_rope: load("qkv_rope_kv_write")?,
            swiglu: load("swiglu_bf16")?,
            paged_attention: load("paged_attention")?,
            paged_reduce: load("paged_attention_reduce")?,
            flash_prefill: if flash {
                Some(load(kernels::FLASH_PREFILL)?)
            } else {
                None
            },
            logprob_gather: load("logprob_gather")?,
            sample_tokens: load("sample_tokens")?,
            _module: module.clone(),
        };
        // The RoPE kernel's per-warp head buffer may exceed the default
        // 48 KiB only for huge heads; set the limit explicitly anyway.
        let _ = k.qkv_rope.set_attribute(
            CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            (4 * head_dim * 4) as i32,
        );
        Ok(k)
    }

    /// Whether prefill chunks run as flash tiles.
    pub(super) fn has_flash_prefill(&self) -> bool {
        self.flash_prefill.is_some()
    }

    /// `x[t] = table[ids[t]]` as f32, for `tokens` rows of `hidden`.
    pub(super) fn embed_gather(
        &self,
        s: &CudaStream,
        x: DevPtr<f32>,
        table: DevPtr<bf16>,
        ids: DevPtr<i32>,
        tokens: usize,
        hidden: usize,
    ) -> Result<(), EngineError> {
        let (x, table, ids, hidden) = (x.addr, table.addr, ids.addr, int(hidden));
        let mut b = s.launch_builder(&self.embed_gather);
        b.arg(&x).arg(&table).arg(&ids).arg(&hidden);
        // SAFETY: the order and types of embed_gather's signature.
        unsafe { run(b, grid(tokens, 1, 1, 256, 0), "embed_gather") }
    }

    /// `out[r] = rmsnorm(x[rows[r]]) · w` as bf16 for `n` rows; a null
    /// `rows` reads row `r` itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rms_norm(
        &self,
        s: &CudaStream,
        out: DevPtr<bf16>,
        x: DevPtr<f32>,
        w: DevPtr<f32>,
        rows: DevPtr<i32>,
        n: usize,
        hidden: usize,
        eps: f32,
    ) -> Result<(), EngineError> {
        let (out, x, w, rows, hidden) = (out.addr, x.addr, w.addr, rows.addr, int(hidden));
        let mut b = s.launch_builder(&self.rms_norm);
        b.arg(&out)
            .arg(&x)
            .arg(&w)
            .arg(&rows)
            .arg(&hidden)
            .arg(&eps);
        // SAFETY: the order and types of rms_norm_bf16's signature.
        unsafe { run(b, grid(n, 1, 1, 256, 0), "rms_norm_bf16") }
    }

    /// Bias, q/k norm and RoPE on the fused QKV rows, queries out as bf16,
    /// keys and values written into the cache at each token's slot.
    pub(super) fn qkv_rope_kv_write(&self, s: &CudaStream, a: &QkvRope) -> Result<(), EngineError> {
        let (qkv, bias, qn, kn) = (a.qkv.addr, a.bias.addr, a.q_norm.addr, a.k_norm.addr);
        let (inv_freq, pos, slots) = (a.inv_freq.addr, a.positions.addr, a.slots.addr);
        let (q_out, kc, vc) = (a.q_out.addr, a.k_cache.addr, a.v_cache.addr);
        let (nh, nkv, interleaved) = (
            int(a.num_heads),
            int(a.num_kv_heads),
            i32::from(a.interleaved),
        );
        let mut b = s.launch_builder(&self.qkv_rope);
        b.arg(&qkv)
            .arg(&bias)
            .arg(&qn)
            .arg(&kn)
            .arg(&inv_freq)
            .arg(&pos)
            .arg(&slots)
            .arg(&q_out)
            .arg(&kc)
            .arg(&vc)
            .arg(&nh)
            .arg(&nkv)
            .arg(&a.eps)
            .arg(&interleaved);
        let cfg = grid(a.tokens, 1, 1, 128, 4 * a.head_dim * 4);
        // SAFETY: the order and types of qkv_rope_kv_write's signature.
        unsafe { run(b, cfg, "qkv_rope_kv_write") }
    }

    /// Decode attention over the paged cache, one item per query row; with
    /// `splits > 1` each split writes partials for [`Self::paged_reduce`].
    pub(super) fn paged_attention(
        &self,
        s: &CudaStream,
        a: &PagedAttention,
    ) -> Result<(), EngineError> {
        let (out, acc, ml, q) = (a.out.addr, a.part_acc.addr, a.part_ml.addr, a.q.addr);
        let (kc, vc, tables) = (a.kv.k_cache.addr, a.kv.v_cache.addr, a.kv.block_tables.addr);
        let (q_rows, item_seq, ctx) = (a.q_rows.addr, a.item_seq.addr, a.ctx_lens.addr);
        let (stride, nh, nkv) = (
            int(a.kv.table_stride),
            int(a.kv.num_heads),
            int(a.kv.num_kv_heads),
        );
        let (block_size, partition) = (int(a.kv.block_size), int(a.partition));
        let mut b = s.launch_builder(&self.paged_attention);
        b.arg(&out)
            .arg(&acc)
            .arg(&ml)
            .arg(&q)
            .arg(&kc)
            .arg(&vc)
            .arg(&tables)
            .arg(&stride)
            .arg(&q_rows)
            .arg(&item_seq)
            .arg(&ctx)
            .arg(&nh)
            .arg(&nkv)
            .arg(&block_size)
            .arg(&partition)
            .arg(&a.scale);
        let cfg = grid(a.num_items, a.kv.num_kv_heads, a.splits, 128, 0);
        // SAFETY: the order and types of paged_attention's signature.
        unsafe { run(b, cfg, "paged_attention") }
    }

    /// Combines the split partials of [`Self::paged_attention`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn paged_reduce(
        &self,
        s: &CudaStream,
        out: DevPtr<bf16>,
        part_acc: DevPtr<f32>,
        part_ml: DevPtr<f32>,
        q_rows: DevPtr<i32>,
        num_items: usize,
        num_heads: usize,
        splits: usize,
    ) -> Result<(), EngineError> {
        let (out, acc, ml, q_rows) = (out.addr, part_acc.addr, part_ml.addr, q_rows.addr);
        let (nh, splits32) = (int(num_heads), int(splits));
        let mut b = s.launch_builder(&self.paged_reduce);
        b.arg(&out)
            .arg(&acc)
            .arg(&ml)
            .arg(&q_rows)
            .arg(&nh)
            .arg(&splits32);
        let cfg = grid(num_items, num_heads, 1, 128, 0);
        // SAFETY: the order and types of paged_attention_reduce's signature.
        unsafe { run(b, cfg, "paged_attention_reduce") }
    }

    /// Tensor-core causal attention for prefill tiles; an error when this
    /// build has no flash kernel.
    pub(super) fn flash_prefill(
        &self,
        s: &CudaStream,
        a: &FlashPrefill,
    ) -> Result<(), EngineError> {
        let f = self.flash_prefill.as_ref().ok_or_else(|| {
            EngineError::Cuda("internal: prefill tiles without the flash kernel".into())
        })?;
        let (out, q, tiles) = (a.out.addr, a.q.addr, a.tiles.addr);
        let (kc, vc, tables) = (a.kv.k_cache.addr, a.kv.v_cache.addr, a.kv.block_tables.addr);
        let (stride, nh, nkv) = (
            int(a.kv.table_stride),
            int(a.kv.num_heads),
            int(a.kv.num_kv_heads),
        );
        let block_size = int(a.kv.block_size);
        // The kernel works in base 2.
        let scale_log2 = a.scale * std::f32::consts::LOG2_E;
        let mut b = s.launch_builder(f);
        b.arg(&out)
            .arg(&q)
            .arg(&kc)
            .arg(&vc)
            .arg(&tables)
            .arg(&stride)
            .arg(&tiles)
            .arg(&nh)
            .arg(&nkv)
            .arg(&block_size)
            .arg(&scale_log2);
        let cfg = grid(a.num_tiles, a.kv.num_heads, 1, 128, 0);
        // SAFETY: the order and types of flash_prefill's signature.
        unsafe { run(b, cfg, kernels::FLASH_PREFILL) }
    }

    /// `act = silu(gate) · up` as bf16 over `tokens × inter` elements.
    pub(super) fn swiglu(
        &self,
        s: &CudaStream,
        act: DevPtr<bf16>,
        gate_up: DevPtr<f32>,
        tokens: usize,
        inter: usize,
    ) -> Result<(), EngineError> {
        let total = (tokens * inter) as i64;
        let blocks = ((total as u64).div_ceil(256)).min(1 << 20) as usize;
        let (act, gate_up, inter) = (act.addr, gate_up.addr, int(inter));
        let mut b = s.launch_builder(&self.swiglu);
        b.arg(&act).arg(&gate_up).arg(&inter).arg(&total);
        // SAFETY: the order and types of swiglu_bf16's signature.
        unsafe { run(b, grid(blocks, 1, 1, 256, 0), "swiglu_bf16") }
    }

    /// Per logits row, the log-probability of `targets[row]` and whether it
    /// is the row's argmax.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn logprob_gather(
        &self,
        s: &CudaStream,
        out_lp: DevPtr<f64>,
        out_greedy: DevPtr<i32>,
        logits: DevPtr<f32>,
        targets: DevPtr<i32>,
        rows: usize,
        vocab: usize,
    ) -> Result<(), EngineError> {
        let (lp, greedy, logits, targets) =
            (out_lp.addr, out_greedy.addr, logits.addr, targets.addr);
        let vocab = int(vocab);
        let mut b = s.launch_builder(&self.logprob_gather);
        b.arg(&lp)
            .arg(&greedy)
            .arg(&logits)
            .arg(&targets)
            .arg(&vocab);
        // SAFETY: the order and types of logprob_gather's signature.
        unsafe { run(b, grid(rows, 1, 1, 1024, 0), "logprob_gather") }
    }

    /// One sampled token per logits row.
    pub(super) fn sample_tokens(
        &self,
        s: &CudaStream,
        a: &SampleTokens,
    ) -> Result<(), EngineError> {
        let (out, logits, temps) = (a.out.addr, a.logits.addr, a.temps.addr);
        let (top_ps, top_ks, us, vocab) = (a.top_ps.addr, a.top_ks.addr, a.us.addr, int(a.vocab));
        let mut b = s.launch_builder(&self.sample_tokens);
        b.arg(&out)
            .arg(&logits)
            .arg(&temps)
            .arg(&top_ps)
            .arg(&top_ks)
            .arg(&us)
            .arg(&vocab);
        // SAFETY: the order and types of sample_tokens's signature.
        unsafe { run(b, grid(a.rows, 1, 1, 1024, 0), "sample_tokens") }
    }
}
