//! Compile-checks every CUDA kernel with NVRTC, for the head sizes and GQA
//! groups of the supported model families, without needing a GPU: NVRTC
//! from the PyPI packages (scripts/ensure-nvrtc.sh) is enough. Fails on any
//! compile error or on PTX newer than CUDA 13.0's driver accepts; skips
//! with the reason recorded (`engine::skip_log`) when NVRTC cannot be found.

use engine::cuda::kernels::{self, KernelSpec};
use engine::cuda::libs::{self, CudaLib};
use engine::skip_log::skip;

/// (head_dim, query heads per KV head): Llama 3 8B/70B, Qwen2.5 0.5B–72B,
/// Qwen3 0.6B–32B, Mistral, SmolLM2 135M/360M, the tiny test models, MHA.
const SPECS: &[(usize, usize)] = &[
    (128, 4),
    (128, 8),
    (128, 7),
    (128, 2),
    (128, 1),
    (64, 3),
    (64, 5),
    (64, 1),
    (16, 2),
    (8, 2),
    (80, 4),
    (256, 2),
];

/// PTX ISA 9.0 is what CUDA 13.0 emits and its driver (580) accepts.
const MAX_PTX_VERSION: (u32, u32) = (9, 0);

fn ptx_version(ptx: &str) -> Option<(u32, u32)> {
    let line = ptx
        .lines()
        .find(|l| l.trim_start().starts_with(".version"))?;
    let v = line.split_whitespace().nth(1)?;
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[test]
fn every_kernel_compiles_with_nvrtc_for_every_supported_shape() {
    if let Err(e) = libs::ensure(CudaLib::Nvrtc) {
        skip(
            "engine cuda_nvrtc::every_kernel_compiles_with_nvrtc_for_every_supported_shape",
            &format!(
                "NVRTC not found: {e} (run `eval \"$(scripts/ensure-nvrtc.sh)\"; export \
                 SHARDLINE_NVRTC_LIB_DIR SHARDLINE_CUDA_INCLUDE_DIR` first)"
            ),
        );
        return;
    }
    let mut checked = 0;
    for &(head_dim, group) in SPECS {
        let spec = KernelSpec::new(head_dim, group).expect("spec within limits");
        let archs: &[&'static str] = if (head_dim, group) == (128, 4) {
            &["compute_80", "compute_90"]
        } else {
            &["compute_90"]
        };
        for &arch in archs {
            let ptx = kernels::compile(spec, arch, None)
                .unwrap_or_else(|e| panic!("head_dim {head_dim}, group {group}, {arch}: {e}"));
            let text = kernels::ptx_text(&ptx);
            for name in spec.kernel_names() {
                assert!(
                    text.contains(&format!(".entry {name}(")),
                    "{name} missing from the PTX for head_dim {head_dim}, group {group}"
                );
            }
            if !spec.has_flash_prefill() {
                assert!(!text.contains(".entry flash_prefill("));
            }
            let version = ptx_version(&text).expect("PTX has a .version line");
            assert!(
                version <= MAX_PTX_VERSION,
                "PTX ISA {version:?} is newer than CUDA 13.0's {MAX_PTX_VERSION:?}: NVRTC is too new for the GPU machines' driver"
            );
            let target = format!(".target sm_{}", &arch["compute_".len()..]);
            assert!(text.contains(&target), "PTX for {arch} lacks `{target}`");
            checked += 1;
        }
    }
    println!("compiled the kernels for {checked} (shape, arch) combinations");
}

#[test]
fn kernel_limits_are_enforced_with_clear_errors() {
    assert!(KernelSpec::new(7, 1).is_err(), "odd head size");
    assert!(KernelSpec::new(512, 1).is_err(), "head size above 256");
    let e = KernelSpec::new(256, 16).unwrap_err().to_string();
    assert!(e.contains("16 query heads per KV head"), "{e}");
    assert!(KernelSpec::new(128, 8).unwrap().has_flash_prefill());
    assert!(!KernelSpec::new(8, 2).unwrap().has_flash_prefill());
    assert!(!KernelSpec::new(256, 2).unwrap().has_flash_prefill());
    assert_eq!(kernels::arch_for(9, 0).unwrap(), "compute_90");
    assert_eq!(kernels::arch_for(8, 9).unwrap(), "compute_89");
    assert!(kernels::arch_for(7, 5).is_err(), "Turing has no bf16 MMA");
}
