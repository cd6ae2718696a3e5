//! Throughput of the CUDA path on a GPU machine (run by bench/gpu/check.sh):
//!
//! ```text
//! cuda_bench --model DIR --out RESULT.json [--seqs 256] [--min-len 100]
//!            [--max-len 1024] [--seed 0] [--mc-questions 1000]
//!            [--bandwidth 3.0e12] [--flops 8.0e14] [--engine-path]
//! ```
//!
//! 1. The nano-vllm shape: `--seqs` random prompts, input and output lengths
//!    uniform in [min-len, max-len], EOS ignored, greedy, through the
//!    scheduler with device-side token selection. Output tokens/s, and the
//!    run's time against a per-step roofline (max of bytes / bandwidth and
//!    FLOPs / peak, summed over the steps actually scheduled).
//! 2. Decode steps at batch 256 over a 512-token context: ms per step
//!    against the memory-bandwidth bound (weights + KV read once).
//! 3. A multiple-choice log-likelihood workload (4 choices sharing a
//!    context, prefix cache on), scored on the device: requests/s and
//!    tokens/s.
//!
//! `--engine-path` also runs 1 and 3 through `LlmEngine` (logits copied to
//! the host), for comparison. The workload's lengths are written to
//! RESULT.json so the transformers baseline can replay them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use engine::cuda::{CudaExecutor, CudaSettings};
use engine::executor::StepInput;
use engine::sampling::SeqRng;
use engine::scheduler::{Scheduler, SchedulerConfig, SeqKind};
use engine::{
    EngineError, EngineSettings, GenerateRequest, LlmEngine, LoglikelihoodRequest, ModelConfig,
};
use serde_json::json;

fn main() {
    if let Err(e) = run() {
        eprintln!("cuda_bench: {e}");
        std::process::exit(1);
    }
}

struct Args {
    model: PathBuf,
    out: PathBuf,
    seqs: usize,
    min_len: usize,
    max_len: usize,
    seed: u64,
    mc_questions: usize,
    bandwidth: f64,
    flops: f64,
    engine_path: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: PathBuf::new(),
        out: PathBuf::new(),
        seqs: 256,
        min_len: 100,
        max_len: 1024,
        seed: 0,
        mc_questions: 1000,
        bandwidth: 3.0e12,
        flops: 8.0e14,
        engine_path: false,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, name: &str| -> Result<f64, String> {
        v.and_then(|s| s.parse::<f64>().ok())
            .ok_or(format!("{name} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--model" => {
                a.model = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--model needs a folder")?
            }
            "--out" => a.out = it.next().map(PathBuf::from).ok_or("--out needs a file")?,
            "--seqs" => a.seqs = num(it.next(), "--seqs")? as usize,
            "--min-len" => a.min_len = num(it.next(), "--min-len")? as usize,
            "--max-len" => a.max_len = num(it.next(), "--max-len")? as usize,
            "--seed" => a.seed = num(it.next(), "--seed")? as u64,
            "--mc-questions" => a.mc_questions = num(it.next(), "--mc-questions")? as usize,
            "--bandwidth" => a.bandwidth = num(it.next(), "--bandwidth")?,
            "--flops" => a.flops = num(it.next(), "--flops")?,
            "--engine-path" => a.engine_path = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the file's header for usage)"
                ))
            }
        }
    }
    if a.model.as_os_str().is_empty() || a.out.as_os_str().is_empty() {
        return Err("usage: cuda_bench --model DIR --out RESULT.json [options]".into());
    }
    if a.min_len == 0 || a.max_len < a.min_len {
        return Err("need 0 < --min-len <= --max-len".into());
    }
    Ok(a)
}

fn uniform(rng: &mut SeqRng, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize
}

fn random_tokens(rng: &mut SeqRng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect()
}

/// Parameters read per token (all matrices; the embedding table is only
/// gathered, the LM head is read in full).
fn matmul_params(c: &ModelConfig) -> f64 {
    let (h, qd, kvd, i) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
    let per_layer = h * (qd + 2 * kvd) + qd * h + 3 * h * i;
    (c.num_hidden_layers * per_layer + c.vocab_size * h) as f64
}

/// Roofline of one step: `tokens` computed, `ctx` summed context length
/// of every computed token's attention, `rows` LM-head rows.
struct Roofline<'a> {
    c: &'a ModelConfig,
    weight_bytes: f64,
    kv_per_token: f64,
    bw: f64,
    peak: f64,
}

impl Roofline<'_> {
    fn step_seconds(
        &self,
        tokens: usize,
        kv_read_tokens: usize,
        attn_pairs: usize,
        rows: usize,
    ) -> f64 {
        let c = self.c;
        let layers_params = matmul_params(c) - (c.vocab_size * c.hidden_size) as f64;
        let flops = 2.0 * layers_params * tokens as f64
            + 2.0 * (c.vocab_size * c.hidden_size) as f64 * rows as f64
            + 4.0 * (c.num_hidden_layers * c.q_dim()) as f64 * attn_pairs as f64;
        let bytes = self.weight_bytes + self.kv_per_token * kv_read_tokens as f64;
        (bytes / self.bw).max(flops / self.peak)
    }
}

struct GenStats {
    seconds: f64,
    steps: usize,
    prefill_tokens: usize,
    output_tokens: usize,
    roofline_seconds: f64,
}

/// Runs generation requests to their exact output lengths through the
/// scheduler, selecting tokens on the device.
fn generate_device(
    exec: &mut CudaExecutor,
    sched_cfg: SchedulerConfig,
    prompts: &[Vec<u32>],
    out_lens: &[usize],
    roof: &Roofline,
) -> Result<GenStats, EngineError> {
    let mut sched = Scheduler::new(sched_cfg)?;
    let mut remaining: HashMap<u64, usize> = HashMap::new();
    for (p, &n) in prompts.iter().zip(out_lens) {
        let id = sched.add(p.clone(), SeqKind::Generate, p.len() + n)?;
        remaining.insert(id, n);
    }
    let mut st = GenStats {
        seconds: 0.0,
        steps: 0,
        prefill_tokens: 0,
        output_tokens: 0,
        roofline_seconds: 0.0,
    };
    let t0 = Instant::now();
    while sched.has_unfinished() {
        let batch = sched.schedule()?;
        let input = StepInput::from_scheduled(&batch);
        let tokens = exec.forward_greedy(&input)?;
        sched.complete_step(&batch);
        let mut kv_read = 0usize;
        let mut pairs = 0usize;
        for s in &batch.seqs {
            let n = s.token_ids.len();
            let end = s.start + n;
            kv_read += end;
            pairs += n * s.start + n * (n + 1) / 2;
            if n > 1 || s.logits.is_empty() {
                st.prefill_tokens += n;
            }
        }
        st.roofline_seconds += roof.step_seconds(input.num_tokens(), kv_read, pairs, tokens.len());
        let mut row = 0;
        for s in &batch.seqs {
            if s.logits.is_empty() {
                continue;
            }
            let token = tokens[row];
            row += 1;
            st.output_tokens += 1;
            let left = remaining.get_mut(&s.seq_id).map(|r| {
                *r -= 1;
                *r
            });
            if left == Some(0) {
                sched.finish(s.seq_id);
            } else {
                sched.append_token(s.seq_id, token);
            }
        }
        st.steps += 1;
    }
    st.seconds = t0.elapsed().as_secs_f64();
    Ok(st)
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let t_load = Instant::now();
    let (config, weights) = engine::hf::load_hf_model(&a.model).map_err(|e| e.to_string())?;
    let load_host = t_load.elapsed().as_secs_f64();
    let es = EngineSettings {
        max_num_seqs: 256,
        max_num_batched_tokens: 16384,
        block_size: 16,
        enable_prefix_caching: true,
        max_model_len: Some(2 * a.max_len + 16),
        ..EngineSettings::default()
    };
    let cs = CudaSettings {
        gpu_memory_utilization: 0.9,
        ..CudaSettings::from_engine(&es)
    };
    let t_gpu = Instant::now();
    let mut exec = CudaExecutor::new(&config, weights, &cs, 0).map_err(|e| e.to_string())?;
    let load_gpu = t_gpu.elapsed().as_secs_f64();
    let device = exec.device_name().to_string();
    println!(
        "{device}: {} MiB weights, {} KV blocks ({} MiB); host load {load_host:.1}s, GPU setup {load_gpu:.1}s",
        exec.weight_bytes() >> 20,
        engine::executor::Executor::num_kv_blocks(&exec),
        exec.kv_cache_bytes() >> 20
    );
    // Weights read per step: everything but an untied embedding table,
    // which is only gathered from.
    let embed_bytes = if config.tie_word_embeddings {
        0
    } else {
        config.vocab_size * config.hidden_size * 2
    };
    let read_bytes = (exec.weight_bytes() - embed_bytes) as f64;
    let roof = Roofline {
        c: &config,
        weight_bytes: read_bytes,
        kv_per_token: exec.kv_bytes_per_token() as f64,
        bw: a.bandwidth,
        peak: a.flops,
    };
    let sched_cfg = SchedulerConfig {
        max_num_seqs: es.max_num_seqs,
        max_num_batched_tokens: es.max_num_batched_tokens,
        block_size: engine::executor::Executor::block_size(&exec),
        num_kv_blocks: engine::executor::Executor::num_kv_blocks(&exec),
        enable_prefix_caching: true,
    };

    // 1. nano-vllm shape.
    let mut rng = SeqRng::new(a.seed, 0);
    let in_lens: Vec<usize> = (0..a.seqs)
        .map(|_| uniform(&mut rng, a.min_len, a.max_len))
        .collect();
    let out_lens: Vec<usize> = (0..a.seqs)
        .map(|_| uniform(&mut rng, a.min_len, a.max_len))
        .collect();
    let prompts: Vec<Vec<u32>> = in_lens
        .iter()
        .map(|&n| random_tokens(&mut rng, n, config.vocab_size))
        .collect();
    // Warm-up on a few sequences (plans for decode shapes, JIT caches).
    generate_device(
        &mut exec,
        sched_cfg,
        &prompts[..4.min(prompts.len())],
        &[8, 8, 8, 8][..4.min(prompts.len())],
        &roof,
    )
    .map_err(|e| e.to_string())?;
    let gen = generate_device(&mut exec, sched_cfg, &prompts, &out_lens, &roof)
        .map_err(|e| e.to_string())?;
    let out_total: usize = out_lens.iter().sum();
    let in_total: usize = in_lens.iter().sum();
    let tok_s = out_total as f64 / gen.seconds;
    println!(
        "generate: {} seqs, {in_total} prompt + {out_total} output tokens in {:.2}s = {tok_s:.0} output tok/s ({:.0} total tok/s), {} steps; roofline {:.2}s = {:.0}% of roofline",
        a.seqs,
        gen.seconds,
        (in_total + out_total) as f64 / gen.seconds,
        gen.steps,
        gen.roofline_seconds,
        100.0 * gen.roofline_seconds / gen.seconds
    );

    // 2. Decode steps at batch 256 over 512-token contexts.
    let batch = 256usize
        .min(sched_cfg.num_kv_blocks * sched_cfg.block_size / 600)
        .max(1);
    let ctx = 512usize;
    let mut sched = Scheduler::new(sched_cfg).map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    for _ in 0..batch {
        let p = random_tokens(&mut rng, ctx, config.vocab_size);
        ids.push(
            sched
                .add(p, SeqKind::Generate, ctx + 64)
                .map_err(|e| e.to_string())?,
        );
    }
    let mut decode_ms = Vec::new();
    for _ in 0..40 {
        let b = sched.schedule().map_err(|e| e.to_string())?;
        let input = StepInput::from_scheduled(&b);
        let is_decode = b.seqs.len() == batch && b.seqs.iter().all(|s| s.token_ids.len() == 1);
        exec.synchronize().map_err(|e| e.to_string())?;
        let t = Instant::now();
        let toks = exec.forward_greedy(&input).map_err(|e| e.to_string())?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if is_decode {
            decode_ms.push(ms);
        }
        sched.complete_step(&b);
        let mut row = 0;
        for s in &b.seqs {
            if !s.logits.is_empty() {
                sched.append_token(s.seq_id, toks[row]);
                row += 1;
            }
        }
        if decode_ms.len() >= 20 {
            break;
        }
    }
    for id in ids {
        sched.finish(id);
    }
    decode_ms.sort_by(|x, y| x.total_cmp(y));
    let median = decode_ms
        .get(decode_ms.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let kv_read = batch * (ctx + 10);
    let bytes = read_bytes + exec.kv_bytes_per_token() as f64 * kv_read as f64;
    let bound_ms = bytes / a.bandwidth * 1e3;
    println!(
        "decode step at batch {batch}, context ~{ctx}: {median:.2} ms (memory bound {bound_ms:.2} ms: {:.2}x)",
        median / bound_ms
    );

    // 3. Multiple-choice log-likelihood: 4 choices per question.
    let mut ll_reqs = Vec::new();
    for _ in 0..a.mc_questions {
        let ctx_len = uniform(&mut rng, 64, 512);
        let context = random_tokens(&mut rng, ctx_len, config.vocab_size);
        for _ in 0..4 {
            let n = uniform(&mut rng, 1, 8);
            ll_reqs.push(LoglikelihoodRequest {
                context_tokens: context.clone(),
                continuation_tokens: random_tokens(&mut rng, n, config.vocab_size),
            });
        }
    }
    let ll_input_tokens: usize = ll_reqs
        .iter()
        .map(|r| r.context_tokens.len() + r.continuation_tokens.len() - 1)
        .sum();
    let ll_cont_tokens: usize = ll_reqs.iter().map(|r| r.continuation_tokens.len()).sum();
    let mut sched = Scheduler::new(sched_cfg).map_err(|e| e.to_string())?;
    let mut targets: HashMap<u64, Vec<u32>> = HashMap::new();
    for r in &ll_reqs {
        let mut all = r.context_tokens.clone();
        all.extend_from_slice(&r.continuation_tokens);
        let input = all[..all.len() - 1].to_vec();
        let len = input.len();
        let id = sched
            .add(
                input,
                SeqKind::Score {
                    logits_from: r.context_tokens.len() - 1,
                },
                len,
            )
            .map_err(|e| e.to_string())?;
        targets.insert(id, all);
    }
    let t = Instant::now();
    let mut computed = 0usize;
    let mut checksum = 0.0f64;
    while sched.has_unfinished() {
        let b = sched.schedule().map_err(|e| e.to_string())?;
        let input = StepInput::from_scheduled(&b);
        computed += input.num_tokens();
        let mut tg = Vec::with_capacity(input.logits_indices.len());
        for s in &b.seqs {
            for p in s.logits.clone() {
                tg.push(targets[&s.seq_id][p + 1]);
            }
        }
        let scores = exec.forward_score(&input, &tg).map_err(|e| e.to_string())?;
        checksum += scores.iter().map(|s| s.logprob).sum::<f64>();
        sched.complete_step(&b);
        for s in &b.seqs {
            let done = sched
                .sequence(s.seq_id)
                .is_some_and(|q| q.num_computed() == q.tokens().len());
            if done {
                sched.finish(s.seq_id);
            }
        }
    }
    let ll_secs = t.elapsed().as_secs_f64();
    let hits = sched.prefix_cache_stats();
    println!(
        "loglikelihood: {} requests ({} input tokens, {} computed after prefix-cache hits, {ll_cont_tokens} scored) in {ll_secs:.2}s = {:.0} req/s, {:.0} input tok/s (checksum {checksum:.1})",
        ll_reqs.len(),
        ll_input_tokens,
        computed,
        ll_reqs.len() as f64 / ll_secs,
        ll_input_tokens as f64 / ll_secs
    );

    let mut result = json!({
        "device": device,
        "model": a.model.display().to_string(),
        "config": config,
        "weight_bytes": exec.weight_bytes(),
        "kv_cache_bytes": exec.kv_cache_bytes(),
        "load_seconds": {"host": load_host, "gpu": load_gpu},
        "assumed_peak": {"bandwidth_bytes_per_s": a.bandwidth, "bf16_flops": a.flops},
        "generate": {
            "seqs": a.seqs, "input_tokens": in_total, "output_tokens": out_total,
            "seconds": gen.seconds, "output_tok_s": tok_s,
            "total_tok_s": (in_total + out_total) as f64 / gen.seconds,
            "steps": gen.steps, "prefill_tokens": gen.prefill_tokens,
            "roofline_seconds": gen.roofline_seconds,
            "fraction_of_roofline": gen.roofline_seconds / gen.seconds,
        },
        "workload": {"input_lens": in_lens, "output_lens": out_lens, "seed": a.seed},
        "decode_step": {"batch": batch, "context": ctx, "median_ms": median, "memory_bound_ms": bound_ms, "ratio_to_bound": median / bound_ms},
        "loglikelihood": {
            "requests": ll_reqs.len(), "input_tokens": ll_input_tokens, "computed_tokens": computed,
            "continuation_tokens": ll_cont_tokens, "seconds": ll_secs,
            "requests_per_s": ll_reqs.len() as f64 / ll_secs,
            "input_tok_s": ll_input_tokens as f64 / ll_secs,
            "prefix_cache_hit_tokens": hits.hit_tokens,
        },
    });

    if a.engine_path {
        let mut eng =
            LlmEngine::with_executor(exec, config.clone(), &es).map_err(|e| e.to_string())?;
        let reqs: Vec<GenerateRequest> = prompts
            .iter()
            .zip(&out_lens)
            .map(|(p, &n)| GenerateRequest {
                prompt_tokens: p.clone(),
                max_tokens: n,
                ignore_eos: true,
                ..GenerateRequest::default()
            })
            .collect();
        let t = Instant::now();
        let outs = eng.generate(reqs).map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        let n: usize = outs.iter().map(|o| o.tokens.len()).sum();
        let t = Instant::now();
        eng.loglikelihood(ll_reqs.clone())
            .map_err(|e| e.to_string())?;
        let ll_engine_secs = t.elapsed().as_secs_f64();
        println!(
            "LlmEngine path (host sampling): {:.0} output tok/s; loglikelihood {:.0} req/s",
            n as f64 / secs,
            ll_reqs.len() as f64 / ll_engine_secs
        );
        result["engine_path"] = json!({
            "output_tokens": n, "seconds": secs, "output_tok_s": n as f64 / secs,
            "loglikelihood_seconds": ll_engine_secs,
            "loglikelihood_requests_per_s": ll_reqs.len() as f64 / ll_engine_secs,
        });
    }
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&a.out, text).map_err(|e| format!("{}: {e}", a.out.display()))?;
    Ok(())
}
