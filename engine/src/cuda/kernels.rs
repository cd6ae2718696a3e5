//! The CUDA kernels' sources (embedded `.cu` files) and their compilation
//! with NVRTC. Each model gets its own build with its head size and GQA
//! group size as compile-time constants, so loops over a head unroll fully.

use std::path::Path;

use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::EngineError;

const PRELUDE: &str = include_str!("kernels/prelude.cuh");

/// Every source file, in compilation order after the prelude.
pub const SOURCES: &[(&str, &str)] = &[
    ("layers.cu", include_str!("kernels/layers.cu")),
    ("attention.cu", include_str!("kernels/attention.cu")),
    ("sampling.cu", include_str!("kernels/sampling.cu")),
];

/// Kernels every build has.
pub const KERNELS: &[&str] = &[
    "embed_gather",
    "rms_norm_bf16",
    "qkv_rope_kv_write",
    "swiglu_bf16",
    "paged_attention",
    "paged_attention_reduce",
    "logprob_gather",
    "sample_tokens",
];

/// Present when [`KernelSpec::has_flash_prefill`].
pub const FLASH_PREFILL: &str = "flash_prefill";

/// The model-dependent constants a kernel build is specialised for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    pub head_dim: usize,
    /// Query heads per KV head.
    pub gqa_group: usize,
}

impl KernelSpec {
    /// Checks the limits the kernels are written for.
    pub fn new(head_dim: usize, gqa_group: usize) -> Result<KernelSpec, EngineError> {
        let bad = |m: String| Err(EngineError::Settings(format!("CUDA path: {m}")));
        if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > 256 {
            return bad(format!(
                "head_dim {head_dim} is not supported (even, at most 256)"
            ));
        }
        // paged_attention keeps 4 warps × group × head_dim floats in
        // shared memory (48 KiB of static shared memory at most).
        if gqa_group == 0 || 4 * gqa_group * head_dim * 4 > 40 * 1024 {
            return bad(format!(
                "{gqa_group} query heads per KV head with head_dim {head_dim} is not supported"
            ));
        }
        Ok(KernelSpec {
            head_dim,
            gqa_group,
        })
    }

    /// Whether the tensor-core prefill kernel exists for this head size.
    pub fn has_flash_prefill(&self) -> bool {
        self.head_dim.is_multiple_of(16) && self.head_dim <= 128
    }

    /// The kernel names this build defines.
    pub fn kernel_names(&self) -> Vec<&'static str> {
        let mut names = KERNELS.to_vec();
        if self.has_flash_prefill() {
            names.push(FLASH_PREFILL);
        }
        names
    }
}

/// The whole program: prelude then every source file.
pub fn program_source() -> String {
    let mut src = String::from(PRELUDE);
    for (name, text) in SOURCES {
        src.push_str(&format!("\n// ---- {name} ----\n"));
        src.push_str(text);
    }
    src
}

/// The virtual architecture to compile for, given a compute capability:
/// PTX for it is JIT-compiled by the driver, which accepts PTX of its own
/// CUDA version (13.0 here) or older.
pub fn arch_for(major: i32, minor: i32) -> Result<&'static str, EngineError> {
    let arch = match (major, minor) {
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (8, _) => "compute_80",
        (9, _) => "compute_90",
        (10, 0) => "compute_100",
        (10, _) => "compute_100",
        (11, _) => "compute_110",
        (12, _) => "compute_120",
        (m, _) if m > 12 => "compute_120",
        _ => {
            return Err(EngineError::CudaUnavailable(format!(
                "GPU compute capability {major}.{minor} is too old: the CUDA path needs 8.0 (Ampere) or newer for bf16 tensor cores"
            )))
        }
    };
    Ok(arch)
}

/// Compiles the kernels for `spec` and `arch` (e.g. "compute_90") to PTX.
/// `include_dir` is passed to NVRTC when given (the kernels need no
/// headers; it is there for local experiments).
pub fn compile(
    spec: KernelSpec,
    arch: &'static str,
    include_dir: Option<&Path>,
) -> Result<Ptx, EngineError> {
    super::libs::ensure(super::libs::CudaLib::Nvrtc)?;
    let opts = CompileOptions {
        arch: Some(arch),
        include_paths: include_dir
            .map(|d| vec![d.display().to_string()])
            .unwrap_or_default(),
        options: vec![
            "-std=c++17".into(),
            format!("-DHEAD_DIM={}", spec.head_dim),
            format!("-DGQA_GROUP={}", spec.gqa_group),
        ],
        name: Some("shardline_kernels.cu".into()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(program_source(), opts).map_err(|e| {
        let detail = match &e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        };
        EngineError::Cuda(format!(
            "NVRTC could not compile the kernels (head_dim {}, group {}, {arch}):\n{detail}",
            spec.head_dim, spec.gqa_group
        ))
    })
}

/// The PTX text of a compiled program (for checks that look inside it).
pub fn ptx_text(ptx: &Ptx) -> String {
    ptx.to_src()
}
