//! Times the CPU matmul on SmolLM2-135M's layer shapes for decode-sized
//! (1, 4, 16, 32 rows) and prefill-sized (128 rows) inputs: the row-major
//! `matmul_t` (gemm re-packs the weights on every call) against the
//! panel-packed `matmul_packed` the executor uses. Prints the best of 15
//! timings of each, so a busy shared machine disturbs it less.
//!
//! ```text
//! cargo run --release -p engine --example matmul_bench
//! ```

use std::time::Instant;

use engine::cpu::ops::{matmul_packed, matmul_t, PackedMatrix};

fn best_seconds(f: &mut dyn FnMut(), flops: f64) -> f64 {
    f();
    let reps = ((5e7 / flops) as usize).clamp(1, 200);
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    // (name, n = out features, k = in features)
    let shapes = [
        ("qkv", 960, 576),
        ("o_proj", 576, 576),
        ("gate_up", 3072, 576),
        ("down", 576, 1536),
        ("lm_head", 49152, 576),
    ];
    println!("threads: {}", rayon::current_num_threads());
    for m in [1usize, 4, 16, 32, 128] {
        for &(name, n, k) in &shapes {
            let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i % 13) as f32 - 6.0) / 64.0).collect();
            let packed = PackedMatrix::from_rows(&w, n, k);
            let mut out = vec![0.0f32; m * n];
            let flops = 2.0 * (m * n * k) as f64;
            let rows = best_seconds(&mut || matmul_t(&mut out, &a, &w, m, n, k, false), flops);
            let reference = out.clone();
            let panels = best_seconds(
                &mut || matmul_packed(&mut out, &a, &packed, m, false),
                flops,
            );
            let diff = reference
                .iter()
                .zip(&out)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            println!(
                "m={m:4} {name:8} {n:6}x{k:<5} row-major {:9.1} us {:6.1} GFLOP/s | packed {:9.1} us {:6.1} GFLOP/s | max diff {diff:.1e}",
                rows * 1e6,
                flops / rows / 1e9,
                panels * 1e6,
                flops / panels / 1e9,
            );
        }
    }
}
