//! Forward-pass and engine tests on tiny random Llama/Qwen2/Qwen3 models.

use crate::config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
use crate::cpu::{CpuExecutor, CpuModel};
use crate::engine::{
    EngineSettings, FinishReason, GenerateRequest, LlmEngine, LoglikelihoodRequest, TokenAction,
};
use crate::executor::{Executor, SeqSlice, StepInput};
use crate::sampling::log_prob;
use crate::testing::{naive_forward, random_weights, tiny_config};

const ARCHS: [Architecture; 3] = [
    Architecture::Llama,
    Architecture::Qwen2,
    Architecture::Qwen3,
];
const TOL: f32 = 1e-4;

fn tokens(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 31 + salt * 17 + 5) % 97)
        .collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: max abs diff {worst} > {tol}");
}

fn executor(config: &ModelConfig, seed: u64) -> CpuExecutor {
    let model = CpuModel::new(config.clone(), random_weights(config, seed)).unwrap();
    CpuExecutor::new(model, 16, 4).unwrap()
}

/// A single-sequence batch over `table` computing positions
/// `start..start + toks.len()`, with logits for every one of them.
fn seq_batch(toks: &[u32], start: usize, table: &[u32], bs: usize) -> StepInput {
    let positions: Vec<usize> = (start..start + toks.len()).collect();
    StepInput {
        token_ids: toks.to_vec(),
        slot_mapping: positions
            .iter()
            .map(|&p| table[p / bs] as usize * bs + p % bs)
            .collect(),
        positions,
        seqs: vec![SeqSlice {
            token_range: 0..toks.len(),
            block_table: table.to_vec(),
        }],
        logits_indices: (0..toks.len()).collect(),
    }
}

fn configs() -> Vec<ModelConfig> {
    let mut out: Vec<ModelConfig> = ARCHS.iter().map(|&a| tiny_config(a)).collect();
    // Llama 3.1 rope scaling with GGUF-style interleaved RoPE.
    let mut llama31 = tiny_config(Architecture::Llama);
    llama31.rope_theta = 500000.0;
    llama31.rope_style = RopeStyle::Interleaved;
    llama31.rope_scaling = Some(RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    });
    out.push(llama31);
    out
}

#[test]
fn prefill_and_incremental_decode_match_the_naive_forward() {
    for config in configs() {
        let weights = random_weights(&config, 7);
        let mut ex = executor(&config, 7);
        let all = tokens(20, 1);
        let reference = naive_forward(&config, &weights, &all);
        // Scattered, non-monotonic blocks exercise the block table.
        let table = [9u32, 2, 14, 0, 5];
        let out = ex.forward(&seq_batch(&all[..12], 0, &table, 4)).unwrap();
        for (p, want) in reference.iter().enumerate().take(12) {
            assert_close(
                out.row(p),
                want,
                TOL,
                &format!("{:?} prefill pos {p}", config.architecture),
            );
        }
        for p in 12..20 {
            let out = ex
                .forward(&seq_batch(&all[p..p + 1], p, &table, 4))
                .unwrap();
            assert_close(
                out.row(0),
                &reference[p],
                TOL,
                &format!("{:?} decode pos {p}", config.architecture),
            );
        }
    }
}

#[test]
fn chunked_prefill_equals_unchunked() {
    for config in configs() {
        let all = tokens(17, 2);
        let table = [3u32, 1, 4, 15, 9];
        let mut whole = executor(&config, 3);
        let want = whole.forward(&seq_batch(&all, 0, &table, 4)).unwrap();
        let mut chunked = executor(&config, 3);
        let mut p = 0;
        for size in [3, 5, 1, 8] {
            let out = chunked
                .forward(&seq_batch(&all[p..p + size], p, &table, 4))
                .unwrap();
            for i in 0..size {
                assert_close(out.row(i), want.row(p + i), 1e-5, "chunk vs whole");
            }
            p += size;
        }
    }
}

#[test]
fn two_sequences_in_one_batch_do_not_see_each_other() {
    let config = tiny_config(Architecture::Qwen2);
    let weights = random_weights(&config, 4);
    let mut ex = executor(&config, 4);
    let (a, b) = (tokens(6, 3), tokens(9, 4));
    let mut input = seq_batch(&a, 0, &[0, 1], 4);
    let second = seq_batch(&b, 0, &[5, 6, 7], 4);
    input.token_ids.extend(&second.token_ids);
    input.positions.extend(&second.positions);
    input.slot_mapping.extend(&second.slot_mapping);
    input.seqs.push(SeqSlice {
        token_range: 6..15,
        block_table: vec![5, 6, 7],
    });
    input.logits_indices = vec![5, 14];
    let out = ex.forward(&input).unwrap();
    assert_close(
        out.row(0),
        &naive_forward(&config, &weights, &a)[5],
        TOL,
        "seq a",
    );
    assert_close(
        out.row(1),
        &naive_forward(&config, &weights, &b)[8],
        TOL,
        "seq b",
    );
}

#[test]
fn malformed_batches_are_errors_not_panics() {
    let config = tiny_config(Architecture::Llama);
    let mut ex = executor(&config, 1);
    let mut bad_token = seq_batch(&[5, 500], 0, &[0], 4);
    assert!(ex.forward(&bad_token).is_err());
    bad_token.token_ids[1] = 5;
    bad_token.seqs[0].block_table = vec![99];
    assert!(ex.forward(&bad_token).is_err());
    let past_table = seq_batch(&tokens(6, 0), 0, &[0, 1], 4);
    let mut short = past_table.clone();
    short.seqs[0].block_table = vec![0];
    assert!(ex.forward(&short).is_err());
}

fn engine(config: &ModelConfig, settings: EngineSettings) -> LlmEngine {
    LlmEngine::new_cpu(config.clone(), random_weights(config, 11), &settings).unwrap()
}

fn settings(budget: usize, blocks: usize, prefix: bool) -> EngineSettings {
    EngineSettings {
        max_num_seqs: 8,
        max_num_batched_tokens: budget,
        block_size: 4,
        num_kv_blocks: Some(blocks),
        enable_prefix_caching: prefix,
        ..EngineSettings::default()
    }
}

fn greedy(prompt: Vec<u32>, n: usize) -> GenerateRequest {
    GenerateRequest {
        prompt_tokens: prompt,
        max_tokens: n,
        ignore_eos: true,
        ..GenerateRequest::default()
    }
}

#[test]
fn loglikelihood_matches_reference_log_softmax() {
    for config in configs() {
        let weights = random_weights(&config, 11);
        let mut e = engine(&config, settings(7, 64, true));
        let reqs: Vec<LoglikelihoodRequest> = (0..5)
            .map(|i| LoglikelihoodRequest {
                context_tokens: tokens(3 + 4 * i, i as u32),
                continuation_tokens: tokens(1 + i, 50 + i as u32),
            })
            .collect();
        let outs = e.loglikelihood(reqs.clone()).unwrap();
        for (r, o) in reqs.iter().zip(&outs) {
            let mut all = r.context_tokens.clone();
            all.extend(&r.continuation_tokens);
            let logits = naive_forward(&config, &weights, &all);
            let n_ctx = r.context_tokens.len();
            let mut want = Vec::new();
            let mut greedy = true;
            for (i, &t) in r.continuation_tokens.iter().enumerate() {
                let row = &logits[n_ctx - 1 + i];
                want.push(log_prob(row, t));
                greedy &= crate::sampling::argmax(row) == t;
            }
            assert_eq!(o.token_logprobs.len(), want.len());
            for (a, b) in o.token_logprobs.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            assert!((o.logprob - want.iter().sum::<f64>()).abs() < 1e-3);
            assert_eq!(o.is_greedy, greedy);
        }
    }
}

#[test]
fn greedy_continuation_scores_as_greedy() {
    let config = tiny_config(Architecture::Llama);
    let mut e = engine(&config, settings(64, 64, true));
    let prompt = tokens(5, 9);
    let gen = e.generate(vec![greedy(prompt.clone(), 4)]).unwrap();
    let ll = e
        .loglikelihood(vec![LoglikelihoodRequest {
            context_tokens: prompt,
            continuation_tokens: gen[0].tokens.clone(),
        }])
        .unwrap();
    assert!(ll[0].is_greedy);
    assert!(ll[0].logprob < 0.0);
}

#[test]
fn chunked_engine_runs_equal_unchunked() {
    for config in configs() {
        let reqs: Vec<GenerateRequest> = (0..3)
            .map(|i| greedy(tokens(9 + 5 * i, i as u32), 6))
            .collect();
        let a = engine(&config, settings(1024, 64, false))
            .generate(reqs.clone())
            .unwrap();
        let b = engine(&config, settings(3, 64, false))
            .generate(reqs)
            .unwrap();
        assert_eq!(
            a.iter().map(|o| &o.tokens).collect::<Vec<_>>(),
            b.iter().map(|o| &o.tokens).collect::<Vec<_>>()
        );
    }
}

#[test]
fn prefix_cache_hits_give_the_same_results_as_cold_runs() {
    for config in configs() {
        let shared = tokens(24, 5);
        let req = |tail: u32| {
            let mut ctx = shared.clone();
            ctx.extend(tokens(3, tail));
            LoglikelihoodRequest {
                context_tokens: ctx,
                continuation_tokens: tokens(4, tail + 100),
            }
        };
        let cold = engine(&config, settings(64, 64, false))
            .loglikelihood(vec![req(1)])
            .unwrap();
        let mut warm = engine(&config, settings(64, 64, true));
        warm.loglikelihood(vec![req(2)]).unwrap();
        let before = warm.stats().prefix_cache.hit_tokens;
        let hot = warm.loglikelihood(vec![req(1)]).unwrap();
        assert!(
            warm.stats().prefix_cache.hit_tokens >= before + 24,
            "{:?}",
            warm.stats()
        );
        for (a, b) in cold[0].token_logprobs.iter().zip(&hot[0].token_logprobs) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(cold[0].is_greedy, hot[0].is_greedy);

        // Generation too, with the prompt fully in the cache.
        let g_cold = engine(&config, settings(64, 64, false))
            .generate(vec![greedy(shared.clone(), 5)])
            .unwrap();
        let g_hot = warm.generate(vec![greedy(shared.clone(), 5)]).unwrap();
        assert_eq!(g_hot[0].cached_prompt_tokens, 20);
        assert_eq!(g_cold[0].tokens, g_hot[0].tokens);
    }
}

#[test]
fn few_shot_prefix_is_computed_once() {
    let config = tiny_config(Architecture::Llama);
    let mut e = engine(&config, settings(256, 256, true));
    let shared = tokens(32, 3);
    let warmup = LoglikelihoodRequest {
        context_tokens: shared.clone(),
        continuation_tokens: vec![4],
    };
    e.loglikelihood(vec![warmup]).unwrap();
    let reqs: Vec<LoglikelihoodRequest> = (0..40)
        .map(|i| {
            let mut ctx = shared.clone();
            ctx.push(i as u32 + 10);
            LoglikelihoodRequest {
                context_tokens: ctx,
                continuation_tokens: vec![7, 8],
            }
        })
        .collect();
    let before = e.stats().computed_tokens;
    e.loglikelihood(reqs).unwrap();
    let computed = e.stats().computed_tokens - before;
    // Each request recomputes at most its last partial block.
    assert!(computed <= 40 * 4, "computed {computed} tokens");
}

#[test]
fn greedy_output_is_batch_invariant() {
    for config in configs() {
        let target = greedy(tokens(11, 42), 8);
        let alone = engine(&config, settings(1024, 128, true))
            .generate(vec![target.clone()])
            .unwrap();
        let mut batch: Vec<GenerateRequest> = (0..7)
            .map(|i| greedy(tokens(4 + 3 * i, i as u32 + 1), 5 + i))
            .collect();
        batch.insert(3, target);
        let together = engine(&config, settings(1024, 128, true))
            .generate(batch)
            .unwrap();
        assert_eq!(together.len(), 8);
        assert_eq!(
            alone[0].tokens, together[3].tokens,
            "{:?}",
            config.architecture
        );
        assert_eq!(together[3].finish_reason, FinishReason::Length);
    }
}

#[test]
fn seeded_sampling_is_batch_invariant_and_reproducible() {
    let config = tiny_config(Architecture::Qwen2);
    let sampled = |seed, index| GenerateRequest {
        prompt_tokens: tokens(6, 8),
        max_tokens: 10,
        temperature: 1.0,
        top_p: 0.9,
        top_k: 40,
        seed,
        sample_index: index,
        ignore_eos: true,
        ..GenerateRequest::default()
    };
    let alone = engine(&config, settings(64, 64, true))
        .generate(vec![sampled(3, 1)])
        .unwrap();
    let batch = vec![
        sampled(3, 0),
        sampled(3, 1),
        sampled(4, 1),
        greedy(tokens(9, 1), 4),
    ];
    let together = engine(&config, settings(64, 64, true))
        .generate(batch)
        .unwrap();
    assert_eq!(alone[0].tokens, together[1].tokens);
    assert_ne!(together[0].tokens, together[1].tokens);
}

#[test]
fn preemption_under_memory_pressure_gives_the_same_outputs() {
    let config = tiny_config(Architecture::Llama);
    let reqs: Vec<GenerateRequest> = (0..6)
        .map(|i| greedy(tokens(5 + i, i as u32), 12))
        .collect();
    let roomy = engine(&config, settings(64, 128, true))
        .generate(reqs.clone())
        .unwrap();
    let mut tight = engine(&config, settings(64, 12, true));
    let squeezed = tight.generate(reqs).unwrap();
    assert!(tight.stats().preemptions > 0, "{:?}", tight.stats());
    for (a, b) in roomy.iter().zip(&squeezed) {
        assert_eq!(a.tokens, b.tokens);
    }
}

#[test]
fn stop_tokens_callbacks_and_limits_end_generation() {
    let config = tiny_config(Architecture::Llama);
    let mut e = engine(&config, settings(64, 64, true));
    let free = e.generate(vec![greedy(tokens(5, 2), 6)]).unwrap();
    let first = free[0].tokens[0];
    let stop_first = GenerateRequest {
        stop_token_ids: vec![first],
        ..greedy(tokens(5, 2), 6)
    };
    let out = e.generate(vec![stop_first]).unwrap();
    assert!(out[0].tokens.is_empty());
    assert_eq!(out[0].finish_reason, FinishReason::StopToken(first));

    let mut seen = Vec::new();
    let out = e
        .generate_with(vec![greedy(tokens(5, 2), 6)], |i, toks| {
            seen.push((i, toks.len()));
            if toks.len() == 3 {
                TokenAction::Stop
            } else {
                TokenAction::Continue
            }
        })
        .unwrap();
    assert_eq!(out[0].tokens, free[0].tokens[..3]);
    assert_eq!(out[0].finish_reason, FinishReason::Stopped);
    assert_eq!(seen, vec![(0, 1), (0, 2), (0, 3)]);

    let zero = e.generate(vec![greedy(tokens(5, 2), 0)]).unwrap();
    assert!(zero[0].tokens.is_empty());
    assert!(e.generate(vec![greedy(vec![500], 3)]).is_err());
    assert!(e.generate(vec![greedy(vec![], 3)]).is_err());
    assert!(e
        .loglikelihood(vec![LoglikelihoodRequest {
            context_tokens: vec![],
            continuation_tokens: vec![1],
        }])
        .is_err());
    // The engine is still usable after rejected requests.
    assert_eq!(
        e.generate(vec![greedy(tokens(5, 2), 6)]).unwrap()[0].tokens,
        free[0].tokens
    );
}

#[test]
fn llama3_rope_scaling_keeps_high_and_divides_low_frequencies() {
    let mut c = tiny_config(Architecture::Llama);
    c.head_dim = 64;
    c.rope_theta = 500000.0;
    let plain = crate::cpu::ops::rope_inv_freq(&c);
    c.rope_scaling = Some(RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    });
    let scaled = crate::cpu::ops::rope_inv_freq(&c);
    for (p, s) in plain.iter().zip(&scaled) {
        let wavelen = 2.0 * std::f32::consts::PI / p;
        if wavelen < 2048.0 {
            assert_eq!(p, s);
        } else if wavelen > 8192.0 {
            assert!((p / 8.0 - s).abs() <= 1e-6 * p);
        } else {
            assert!(*s < *p && *s > p / 8.0);
        }
    }
}
