//! The CUDA executor against the CPU executor on tiny random models: the
//! same batches (prefill over several flash tiles, chunked prefill over a
//! cached prefix, decodes, a long context that takes the split-K path) must
//! give the same logits within bf16 tolerance, and the device-side scoring
//! and sampling must agree with the logits they reduce. Needs a GPU: where
//! there is none, each test prints why it is skipping (and the missing-driver
//! test checks the error the CUDA path gives instead).

use engine::config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
use engine::cpu::{CpuExecutor, CpuModel};
use engine::cuda::{CudaExecutor, CudaSettings, RowSample};
use engine::executor::{Executor, SeqSlice, StepInput};
use engine::sampling::log_prob;
use engine::skip_log::skip;
use engine::testing::{random_weights, tiny_config};
use engine::{
    EngineError, EngineSettings, GenerateRequest, LlmEngine, LoglikelihoodRequest, Weights,
};

const BLOCK: usize = 16;
const BLOCKS: usize = 512;

fn settings(flash: bool) -> CudaSettings {
    CudaSettings {
        num_kv_blocks: Some(BLOCKS),
        block_size: BLOCK,
        max_num_batched_tokens: 1024,
        max_num_seqs: 16,
        flash_prefill: flash,
        // Small chunks so the chunked LM head is exercised.
        logits_chunk_rows: 37,
        ..CudaSettings::default()
    }
}

/// The CUDA executor, or `None` (with the reason recorded for `test`, see
/// `engine::skip_log`) without a GPU. `SHARDLINE_REQUIRE_GPU=1` (set by
/// bench/gpu/check.sh) turns a missing GPU or library into a failure, so a
/// broken setup cannot pass as skips.
fn cuda(test: &str, config: &ModelConfig, w: &Weights, flash: bool) -> Option<CudaExecutor> {
    match CudaExecutor::new(config, w.clone(), &settings(flash), 0) {
        Ok(e) => Some(e),
        Err(EngineError::CudaUnavailable(m))
            if std::env::var_os("SHARDLINE_REQUIRE_GPU").is_some() =>
        {
            panic!("SHARDLINE_REQUIRE_GPU is set but the CUDA path cannot start: {m}")
        }
        Err(EngineError::CudaUnavailable(m)) => {
            skip(
                &format!("engine cuda_executor::{test}"),
                &format!("no usable GPU: {m}"),
            );
            None
        }
        Err(e) => panic!("CUDA executor failed to start: {e}"),
    }
}

fn cpu(config: &ModelConfig, w: &Weights) -> CpuExecutor {
    CpuExecutor::new(
        CpuModel::new(config.clone(), w.clone()).unwrap(),
        BLOCKS,
        BLOCK,
    )
    .unwrap()
}

/// Weights rounded to bf16, so both paths multiply by the same numbers and
/// the remaining difference is the CUDA path's bf16 activations and cache.
fn bf16_weights(config: &ModelConfig, seed: u64) -> Weights {
    let mut w = random_weights(config, seed);
    for t in w.tensors.values_mut() {
        for v in t.data.iter_mut() {
            *v = half::bf16::from_f32(*v).to_f32();
        }
    }
    w
}

/// Head size 128 (the real models'), so flash tiles and 4-element lanes run.
fn wide_config(arch: Architecture) -> ModelConfig {
    let mut c = tiny_config(arch);
    c.hidden_size = 256;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 128;
    c.intermediate_size = 512;
    c.vocab_size = 300;
    c.max_position_embeddings = 2048;
    c
}

fn llama31_interleaved() -> ModelConfig {
    let mut c = wide_config(Architecture::Llama);
    c.rope_style = RopeStyle::Interleaved;
    c.rope_theta = 500000.0;
    c.rope_scaling = Some(RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    });
    c
}

/// One sequence's part of a step: its id (which picks its blocks), first
/// position and tokens.
struct Part<'a> {
    seq: usize,
    start: usize,
    tokens: &'a [u32],
}

/// A batch where every position gets logits; sequence `i` owns blocks
/// `i * 100 ..`.
fn batch(parts: &[Part]) -> StepInput {
    let mut b = StepInput::default();
    for p in parts {
        let first = b.token_ids.len();
        let end = p.start + p.tokens.len();
        let table: Vec<u32> = (0..end.div_ceil(BLOCK))
            .map(|i| (p.seq * 100 + i) as u32)
            .collect();
        b.token_ids.extend_from_slice(p.tokens);
        for pos in p.start..end {
            b.positions.push(pos);
            b.slot_mapping
                .push(table[pos / BLOCK] as usize * BLOCK + pos % BLOCK);
        }
        b.logits_indices.extend(first..b.token_ids.len());
        b.seqs.push(SeqSlice {
            token_range: first..b.token_ids.len(),
            block_table: table,
        });
    }
    b
}

fn tokens(n: usize, seed: u32, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 97)) % vocab as u32)
        .collect()
}

/// The steps every comparison runs: two prompts (one over two flash tiles),
/// then a decode beside a chunk that continues a cached prefix, then a long
/// prompt in chunks and a decode over 1100 positions (split-K).
fn steps(vocab: usize) -> Vec<StepInput> {
    let a = tokens(71, 1, vocab);
    let b = tokens(40, 2, vocab);
    let c = tokens(1101, 3, vocab);
    vec![
        batch(&[
            Part {
                seq: 0,
                start: 0,
                tokens: &a[..70],
            },
            Part {
                seq: 1,
                start: 0,
                tokens: &b[..5],
            },
        ]),
        batch(&[
            Part {
                seq: 0,
                start: 70,
                tokens: &a[70..],
            },
            Part {
                seq: 1,
                start: 5,
                tokens: &b[5..],
            },
        ]),
        batch(&[Part {
            seq: 2,
            start: 0,
            tokens: &c[..512],
        }]),
        batch(&[Part {
            seq: 2,
            start: 512,
            tokens: &c[512..1100],
        }]),
        batch(&[
            Part {
                seq: 2,
                start: 1100,
                tokens: &c[1100..],
            },
            Part {
                seq: 0,
                start: 71,
                tokens: &b[..1],
            },
        ]),
    ]
}

struct Diff {
    max_abs: f32,
    max_logit: f32,
    argmax_agree: usize,
    rows: usize,
}

fn compare(want: &[f32], got: &[f32], vocab: usize) -> Diff {
    assert_eq!(want.len(), got.len());
    let mut d = Diff {
        max_abs: 0.0,
        max_logit: 0.0,
        argmax_agree: 0,
        rows: want.len() / vocab,
    };
    for (w, g) in want.chunks(vocab).zip(got.chunks(vocab)) {
        for (a, b) in w.iter().zip(g) {
            assert!(b.is_finite(), "non-finite CUDA logit");
            d.max_abs = d.max_abs.max((a - b).abs());
            d.max_logit = d.max_logit.max(a.abs());
        }
        if engine::sampling::argmax(w) == engine::sampling::argmax(g) {
            d.argmax_agree += 1;
        }
    }
    d
}

fn run_all(exec: &mut dyn Executor, steps: &[StepInput]) -> Vec<Vec<f32>> {
    steps
        .iter()
        .map(|b| exec.forward(b).unwrap().logits)
        .collect()
}

#[test]
fn missing_driver_is_a_clear_error_not_a_panic() {
    let config = tiny_config(Architecture::Llama);
    let w = random_weights(&config, 1);
    match CudaExecutor::new(&config, w, &settings(true), 0) {
        Ok(e) => println!(
            "a GPU is present ({}): nothing to check here",
            e.device_name()
        ),
        Err(EngineError::CudaUnavailable(m)) => {
            assert!(
                m.contains("CUDA driver not found") || m.contains("cannot open CUDA device"),
                "{m}"
            );
            println!("no GPU here, as expected: {m}");
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn cuda_logits_match_cpu_for_every_architecture() {
    let configs = [
        ("llama tiny (head 8)", tiny_config(Architecture::Llama)),
        ("qwen2 tiny (bias)", tiny_config(Architecture::Qwen2)),
        (
            "qwen3 tiny (q/k norm, head 16)",
            tiny_config(Architecture::Qwen3),
        ),
        ("llama head 128", wide_config(Architecture::Llama)),
        ("qwen2 head 128", wide_config(Architecture::Qwen2)),
        ("qwen3 head 128 tied", wide_config(Architecture::Qwen3)),
        ("llama3.1 scaling, interleaved rope", llama31_interleaved()),
    ];
    for (name, mut config) in configs {
        config.max_position_embeddings = 2048;
        let w = bf16_weights(&config, 7);
        let Some(mut gpu) = cuda(
            "cuda_logits_match_cpu_for_every_architecture",
            &config,
            &w,
            true,
        ) else {
            return;
        };
        let mut cpu = cpu(&config, &w);
        let steps = steps(config.vocab_size);
        let want = run_all(&mut cpu, &steps);
        let got = run_all(&mut gpu, &steps);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            let d = compare(w, g, config.vocab_size);
            println!(
                "{name}, step {i}: max |cpu - cuda| = {:.4} (max |logit| {:.2}), argmax agrees on {}/{} rows",
                d.max_abs, d.max_logit, d.argmax_agree, d.rows
            );
            assert!(
                d.max_abs <= 0.05 * d.max_logit.max(1.0),
                "{name}, step {i}: logits differ too much"
            );
            assert!(
                d.argmax_agree * 100 >= d.rows * 95,
                "{name}, step {i}: argmax differs too often"
            );
        }
    }
}

#[test]
fn flash_prefill_matches_the_paged_kernel() {
    for config in [
        wide_config(Architecture::Qwen3),
        tiny_config(Architecture::Qwen3),
    ] {
        let mut config = config;
        config.max_position_embeddings = 2048;
        let w = bf16_weights(&config, 11);
        let Some(mut flash) = cuda("flash_prefill_matches_the_paged_kernel", &config, &w, true)
        else {
            return;
        };
        let Some(mut paged) = cuda("flash_prefill_matches_the_paged_kernel", &config, &w, false)
        else {
            return;
        };
        assert!(flash.kernel_spec().has_flash_prefill());
        let steps = steps(config.vocab_size);
        let a = run_all(&mut flash, &steps);
        let b = run_all(&mut paged, &steps);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let d = compare(y, x, config.vocab_size);
            println!(
                "head {}, step {i}: max |flash - paged| = {:.5}",
                config.head_dim, d.max_abs
            );
            assert!(d.max_abs <= 0.01 * d.max_logit.max(1.0), "step {i}");
        }
    }
}

#[test]
fn device_scores_and_samples_agree_with_the_logits() {
    let mut config = wide_config(Architecture::Llama);
    config.max_position_embeddings = 2048;
    let w = bf16_weights(&config, 5);
    let Some(mut gpu) = cuda(
        "device_scores_and_samples_agree_with_the_logits",
        &config,
        &w,
        true,
    ) else {
        return;
    };
    let Some(mut twin) = cuda(
        "device_scores_and_samples_agree_with_the_logits",
        &config,
        &w,
        true,
    ) else {
        return;
    };
    let v = config.vocab_size;
    let steps = steps(v);
    for b in &steps {
        let logits = twin.forward(b).unwrap().logits;
        let rows = b.logits_indices.len();
        // Score each row against a few targets, including its argmax.
        let targets: Vec<u32> = (0..rows)
            .map(|r| {
                let row = &logits[r * v..(r + 1) * v];
                if r % 3 == 0 {
                    engine::sampling::argmax(row)
                } else {
                    (r * 31 % v) as u32
                }
            })
            .collect();
        let scores = gpu.forward_score(b, &targets).unwrap();
        for (r, s) in scores.iter().enumerate() {
            let row = &logits[r * v..(r + 1) * v];
            let want = log_prob(row, targets[r]);
            assert!(
                (s.logprob - want).abs() < 1e-3,
                "row {r}: {} vs {want}",
                s.logprob
            );
            assert_eq!(
                s.is_argmax,
                engine::sampling::argmax(row) == targets[r],
                "row {r}"
            );
        }
        let greedy = gpu.forward_greedy(b).unwrap();
        let agree = greedy
            .iter()
            .enumerate()
            .filter(|(r, &t)| engine::sampling::argmax(&logits[r * v..(r + 1) * v]) == t)
            .count();
        // Two runs of the same kernels on the same GPU are deterministic.
        assert_eq!(
            agree, rows,
            "device argmax differs from host argmax of device logits"
        );
    }

    // Inverse-CDF sampling: the same row many times with evenly spaced
    // uniforms reproduces softmax(logits / T) restricted by top-k / top-p.
    let first = &steps[0];
    let n = 2000;
    let mut b = first.clone();
    b.logits_indices = vec![first.logits_indices[3]; n];
    let row_logits = {
        let mut one = first.clone();
        one.logits_indices = vec![first.logits_indices[3]];
        twin.forward(&one).unwrap().logits
    };
    for (temperature, top_k, top_p) in [(1.0f32, 0usize, 1.0f32), (0.7, 5, 1.0), (1.3, 0, 0.6)] {
        let rows: Vec<RowSample> = (0..n)
            .map(|i| RowSample {
                temperature,
                top_p,
                top_k,
                u: (i as f64 + 0.5) / n as f64,
            })
            .collect();
        let got = gpu.forward_sample(&b, &rows).unwrap();
        let mut counts = vec![0usize; v];
        for &t in &got {
            counts[t as usize] += 1;
        }
        // Expected distribution on the host.
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&x, &y| row_logits[y].total_cmp(&row_logits[x]));
        let keep_k = if top_k == 0 { v } else { top_k };
        let mx = row_logits[order[0]];
        let p: Vec<f64> = order[..keep_k]
            .iter()
            .map(|&i| (((row_logits[i] - mx) / temperature) as f64).exp())
            .collect();
        let total: f64 = p.iter().sum();
        let mut keep = keep_k;
        if top_p < 1.0 {
            let mut cum = 0.0;
            for (j, q) in p.iter().enumerate() {
                cum += q / total;
                if cum >= top_p as f64 {
                    keep = j + 1;
                    break;
                }
            }
        }
        let kept: f64 = p[..keep].iter().sum();
        let mut max_err = 0.0f64;
        for (j, &i) in order.iter().enumerate() {
            let want = if j < keep { p[j] / kept } else { 0.0 };
            let have = counts[i] as f64 / n as f64;
            max_err = max_err.max((want - have).abs());
        }
        println!("T={temperature} top_k={top_k} top_p={top_p}: max |freq - p| = {max_err:.4}");
        // 1/n from the grid plus bf16 noise near the top-p boundary.
        assert!(
            max_err < 0.02,
            "sampled frequencies stray from the distribution"
        );
    }
}

#[test]
fn engine_on_cuda_generates_and_scores_like_the_cpu_engine() {
    let mut config = wide_config(Architecture::Qwen2);
    config.max_position_embeddings = 2048;
    let w = bf16_weights(&config, 3);
    let Some(gpu) = cuda(
        "engine_on_cuda_generates_and_scores_like_the_cpu_engine",
        &config,
        &w,
        true,
    ) else {
        return;
    };
    let es = EngineSettings {
        block_size: BLOCK,
        num_kv_blocks: Some(BLOCKS),
        max_num_seqs: 8,
        max_num_batched_tokens: 256,
        ..EngineSettings::default()
    };
    let mut on_gpu = LlmEngine::with_executor(gpu, config.clone(), &es).unwrap();
    let mut on_cpu = LlmEngine::new_cpu(config.clone(), w.clone(), &es).unwrap();
    let v = config.vocab_size;
    let gen: Vec<GenerateRequest> = (0..6)
        .map(|i| GenerateRequest {
            prompt_tokens: tokens(20 + 37 * i, i as u32, v),
            max_tokens: 24,
            ignore_eos: true,
            ..GenerateRequest::default()
        })
        .collect();
    let a = on_cpu.generate(gen.clone()).unwrap();
    let b = on_gpu.generate(gen).unwrap();
    let same = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.tokens == y.tokens)
        .count();
    println!("greedy continuations identical for {same}/6 prompts");
    assert!(same >= 5, "CUDA greedy decoding diverges from the CPU's");

    let ll: Vec<LoglikelihoodRequest> = (0..8)
        .map(|i| LoglikelihoodRequest {
            context_tokens: tokens(30 + 11 * i, 50 + i as u32, v),
            continuation_tokens: tokens(1 + i % 4, 90 + i as u32, v),
        })
        .collect();
    let a = on_cpu.loglikelihood(ll.clone()).unwrap();
    let b = on_gpu.loglikelihood(ll).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x.logprob - y.logprob).abs())
        .fold(0.0, f64::max);
    println!("log-likelihood: max |cpu - cuda| = {worst:.4} nats");
    assert!(
        worst < 0.05 * a.len() as f64,
        "log-likelihoods differ too much"
    );
}

#[test]
fn comparison_batches_are_valid_for_the_cpu_reference() {
    // Runs without a GPU too: the batches above must be well-formed, or
    // the GPU comparisons would fail for the wrong reason.
    let config = tiny_config(Architecture::Qwen3);
    let w = bf16_weights(&config, 1);
    let mut cpu = cpu(&config, &w);
    for (i, b) in steps(config.vocab_size).iter().enumerate() {
        let out = cpu.forward(b).unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(out.num_rows(), b.logits_indices.len());
        assert!(out.logits.iter().all(|v| v.is_finite()), "step {i}");
    }
}
