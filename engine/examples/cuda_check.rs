//! Correctness check of the CUDA path against transformers on a GPU
//! machine (run by bench/gpu/check.sh, not by hand):
//!
//! ```text
//! cuda_check --model DIR --reference REF.json --out RESULT.json [--no-cpu]
//! ```
//!
//! REF.json (from bench/gpu/hf_ref.py) holds prompts as token ids, the
//! last-position logits of each prompt from transformers in fp32 (a raw f32
//! file beside it), transformers' greedy continuations (fp32 and bf16) and
//! log-likelihoods of continuations. This loads the same Hugging Face
//! directory into the CUDA executor (and the CPU executor unless
//! `--no-cpu`) and reports the differences; `--cpu-only` runs the CPU
//! path alone (to check the pipeline on a machine without a GPU).

use std::path::{Path, PathBuf};
use std::time::Instant;

use engine::cuda::{CudaExecutor, CudaSettings};
use engine::executor::{Executor, SeqSlice, StepInput};
use engine::{EngineSettings, GenerateRequest, LlmEngine, LoglikelihoodRequest};
use serde_json::{json, Value};

fn main() {
    if let Err(e) = run() {
        eprintln!("cuda_check: {e}");
        std::process::exit(1);
    }
}

struct Args {
    model: PathBuf,
    reference: PathBuf,
    out: PathBuf,
    cpu: bool,
    cpu_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut reference = None;
    let mut out = None;
    let mut cpu = true;
    let mut cpu_only = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model = it.next().map(PathBuf::from),
            "--reference" => reference = it.next().map(PathBuf::from),
            "--out" => out = it.next().map(PathBuf::from),
            "--no-cpu" => cpu = false,
            // Checks the CPU path and this tool's inputs where there is no GPU.
            "--cpu-only" => cpu_only = true,
            other => return Err(format!("unknown argument {other:?}; usage: cuda_check --model DIR --reference REF.json --out RESULT.json [--no-cpu | --cpu-only]")),
        }
    }
    Ok(Args {
        model: model.ok_or("--model DIR is required")?,
        reference: reference.ok_or("--reference REF.json is required")?,
        out: out.ok_or("--out RESULT.json is required")?,
        cpu: cpu || cpu_only,
        cpu_only,
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u32)
                .collect()
        })
        .unwrap_or_default()
}

fn read_f32(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Last-position logits of each prompt, one prompt per step.
fn last_logits(exec: &mut dyn Executor, prompts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, String> {
    let bs = exec.block_size();
    let mut out = Vec::new();
    for p in prompts {
        let blocks = p.len().div_ceil(bs);
        if blocks > exec.num_kv_blocks() {
            return Err(format!(
                "prompt of {} tokens does not fit the KV cache",
                p.len()
            ));
        }
        let batch = StepInput {
            token_ids: p.clone(),
            positions: (0..p.len()).collect(),
            slot_mapping: (0..p.len()).collect(),
            seqs: vec![SeqSlice {
                token_range: 0..p.len(),
                block_table: (0..blocks as u32).collect(),
            }],
            logits_indices: vec![p.len() - 1],
        };
        out.push(exec.forward(&batch).map_err(|e| e.to_string())?.logits);
    }
    Ok(out)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64) {
    let mut diff = 0.0f64;
    let mut scale = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            diff = diff.max((*p as f64 - *q as f64).abs());
            scale = scale.max((*p as f64).abs());
        }
    }
    (diff, scale)
}

fn argmax_agree(a: &[Vec<f32>], b: &[Vec<f32>]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| engine::sampling::argmax(x) == engine::sampling::argmax(y))
        .count()
}

/// Sequences equal token for token, and the mean length of the common prefix.
fn greedy_matches(a: &[Vec<u32>], b: &[Vec<u32>]) -> (usize, f64) {
    let full = a.iter().zip(b).filter(|(x, y)| x == y).count();
    let prefix: usize = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).take_while(|(p, q)| p == q).count())
        .sum();
    (full, prefix as f64 / a.len().max(1) as f64)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.reference)
        .map_err(|e| format!("{}: {e}", args.reference.display()))?;
    let r: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.reference.display()))?;
    let prompts: Vec<Vec<u32>> = r["prompts"]
        .as_array()
        .ok_or("reference lacks prompts")?
        .iter()
        .map(ids)
        .collect();
    let vocab = r["vocab_size"]
        .as_u64()
        .ok_or("reference lacks vocab_size")? as usize;
    let ref_dir = args.reference.parent().unwrap_or(Path::new("."));
    let ref_logits_flat = read_f32(
        &ref_dir.join(
            r["last_logits_file"]
                .as_str()
                .ok_or("reference lacks last_logits_file")?,
        ),
    )?;
    let ref_logits: Vec<Vec<f32>> = ref_logits_flat.chunks(vocab).map(|c| c.to_vec()).collect();
    let ref_greedy32: Vec<Vec<u32>> = r["greedy_fp32"]
        .as_array()
        .ok_or("reference lacks greedy_fp32")?
        .iter()
        .map(ids)
        .collect();
    let ref_greedy16: Vec<Vec<u32>> = r["greedy_bf16"]
        .as_array()
        .map(|a| a.iter().map(ids).collect())
        .unwrap_or_default();
    let new_tokens = r["new_tokens"].as_u64().unwrap_or(32) as usize;
    let ll = r["loglik"].as_array().ok_or("reference lacks loglik")?;
    let ll_reqs: Vec<LoglikelihoodRequest> = ll
        .iter()
        .map(|x| LoglikelihoodRequest {
            context_tokens: ids(&x["context"]),
            continuation_tokens: ids(&x["continuation"]),
        })
        .collect();
    let ll_fp32: Vec<f64> = ll
        .iter()
        .map(|x| x["logprob_fp32"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let ll_bf16: Vec<f64> = ll
        .iter()
        .map(|x| x["logprob_bf16"].as_f64().unwrap_or(f64::NAN))
        .collect();

    let t0 = Instant::now();
    let (config, weights) = engine::hf::load_hf_model(&args.model).map_err(|e| e.to_string())?;
    println!(
        "loaded {} in {:.1}s",
        args.model.display(),
        t0.elapsed().as_secs_f64()
    );
    let max_len = prompts
        .iter()
        .map(|p| p.len() + new_tokens)
        .max()
        .unwrap_or(1);
    let es = EngineSettings {
        max_num_seqs: 64,
        max_num_batched_tokens: 4096,
        block_size: 16,
        max_model_len: Some(max_len + 1),
        ..EngineSettings::default()
    };
    let gen_reqs: Vec<GenerateRequest> = prompts
        .iter()
        .map(|p| GenerateRequest {
            prompt_tokens: p.clone(),
            max_tokens: new_tokens,
            ignore_eos: true,
            ..GenerateRequest::default()
        })
        .collect();
    // Teacher-forced greedy: transformers' fp32 continuation scored as a
    // continuation; `is_greedy` says whether every one of its tokens is
    // also our argmax given the same prefix. Unlike free-running greedy
    // decoding, one near-tie does not derail the rest of the sequence.
    let tf_reqs: Vec<LoglikelihoodRequest> = prompts
        .iter()
        .zip(&ref_greedy32)
        .map(|(p, g)| LoglikelihoodRequest {
            context_tokens: p.clone(),
            continuation_tokens: g.clone(),
        })
        .collect();
    let ll_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f64, f64::max)
    };
    let ll_tokens: Vec<usize> = ll_reqs
        .iter()
        .map(|q| q.continuation_tokens.len())
        .collect();
    let per_token = |a: &[f64]| {
        a.iter()
            .zip(&ll_fp32)
            .zip(&ll_tokens)
            .map(|((x, y), n)| (x - y).abs() / *n as f64)
            .fold(0.0f64, f64::max)
    };
    let (hf16_vs_32, _) = if ref_greedy16.is_empty() {
        (0, 0.0)
    } else {
        greedy_matches(&ref_greedy32, &ref_greedy16)
    };
    let mut result = json!({
        "model": r["name"],
        "prompts": prompts.len(),
        "new_tokens": new_tokens,
        "hf_bf16_vs_hf_fp32_greedy_identical": hf16_vs_32,
        "hf_bf16_loglik_vs_fp32_max_abs_diff": ll_diff(&ll_bf16, &ll_fp32),
    });

    // The CUDA path against transformers.
    let mut cuda_out = None;
    if !args.cpu_only {
        let cs = CudaSettings {
            gpu_memory_utilization: 0.8,
            ..CudaSettings::from_engine(&es)
        };
        let mut gpu =
            CudaExecutor::new(&config, weights.clone(), &cs, 0).map_err(|e| e.to_string())?;
        let device = gpu.device_name().to_string();
        println!("{device}: {} KV blocks", gpu.num_kv_blocks());
        let cuda_logits = last_logits(&mut gpu, &prompts)?;
        let (d_hf, scale) = max_abs_diff(&ref_logits, &cuda_logits);
        let agree_hf = argmax_agree(&ref_logits, &cuda_logits);
        let mut eng =
            LlmEngine::with_executor(gpu, config.clone(), &es).map_err(|e| e.to_string())?;
        let cuda_greedy: Vec<Vec<u32>> = eng
            .generate(gen_reqs.clone())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| o.tokens)
            .collect();
        let cuda_ll: Vec<f64> = eng
            .loglikelihood(ll_reqs.clone())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| o.logprob)
            .collect();
        let cuda_tf = eng
            .loglikelihood(tf_reqs.clone())
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|o| o.is_greedy)
            .count();
        drop(eng);
        let (g32, g32_prefix) = greedy_matches(&ref_greedy32, &cuda_greedy);
        let (g16, g16_prefix) = if ref_greedy16.is_empty() {
            (0, 0.0)
        } else {
            greedy_matches(&ref_greedy16, &cuda_greedy)
        };
        result["device"] = json!(device);
        result["logits_vs_hf_fp32"] =
            json!({"max_abs_diff": d_hf, "max_abs_logit": scale, "argmax_agree": agree_hf});
        result["greedy_vs_hf_fp32"] =
            json!({"identical": g32, "of": prompts.len(), "mean_common_prefix": g32_prefix});
        result["teacher_forced_greedy_vs_hf_fp32"] =
            json!({"all_tokens_argmax": cuda_tf, "of": prompts.len()});
        result["greedy_vs_hf_bf16"] =
            json!({"identical": g16, "of": ref_greedy16.len(), "mean_common_prefix": g16_prefix});
        result["loglik_vs_hf_fp32"] = json!({"max_abs_diff": ll_diff(&cuda_ll, &ll_fp32), "max_abs_diff_per_token": per_token(&cuda_ll), "requests": ll_reqs.len()});
        println!(
            "CUDA vs transformers fp32: logits max |diff| {d_hf:.4} (max |logit| {scale:.2}, argmax {agree_hf}/{n}), greedy {g32}/{n} identical over {new_tokens} tokens (teacher-forced {cuda_tf}/{n}; vs bf16: {g16}; transformers bf16 vs fp32: {hf16_vs_32}), loglik max |diff| {:.4} nats ({:.4}/token)",
            ll_diff(&cuda_ll, &ll_fp32),
            per_token(&cuda_ll),
            n = prompts.len(),
        );
        cuda_out = Some((cuda_logits, cuda_greedy, cuda_ll));
    }

    // The CPU path against transformers and against the CUDA path.
    if args.cpu {
        let t = Instant::now();
        let blocks = max_len.div_ceil(16) * 4 + 64;
        let mut cpu_exec = engine::cpu::CpuExecutor::new(
            engine::cpu::CpuModel::new(config.clone(), weights).map_err(|e| e.to_string())?,
            blocks,
            16,
        )
        .map_err(|e| e.to_string())?;
        let cpu_logits = last_logits(&mut cpu_exec, &prompts)?;
        let mut cpu_eng =
            LlmEngine::with_executor(cpu_exec, config.clone(), &es).map_err(|e| e.to_string())?;
        let cpu_greedy: Vec<Vec<u32>> = cpu_eng
            .generate(gen_reqs)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| o.tokens)
            .collect();
        let cpu_ll: Vec<f64> = cpu_eng
            .loglikelihood(ll_reqs)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| o.logprob)
            .collect();
        let cpu_tf = cpu_eng
            .loglikelihood(tf_reqs)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|o| o.is_greedy)
            .count();
        drop(cpu_eng);
        let (d_cpu_hf, scale) = max_abs_diff(&ref_logits, &cpu_logits);
        let (gch, _) = greedy_matches(&ref_greedy32, &cpu_greedy);
        let mut cpu = json!({
            "seconds": t.elapsed().as_secs_f64(),
            "logits_cpu_vs_hf_fp32_max_abs_diff": d_cpu_hf,
            "argmax_cpu_vs_hf_fp32_agree": argmax_agree(&ref_logits, &cpu_logits),
            "greedy_cpu_vs_hf_fp32_identical": gch,
            "teacher_forced_greedy_cpu_vs_hf_fp32": cpu_tf,
            "loglik_cpu_vs_hf_fp32_max_abs_diff": ll_diff(&cpu_ll, &ll_fp32),
        });
        println!(
            "CPU vs transformers fp32: logits max |diff| {d_cpu_hf:.5} (max |logit| {scale:.2}), greedy {gch}/{n} identical (teacher-forced {cpu_tf}/{n}), loglik max |diff| {:.5}",
            ll_diff(&cpu_ll, &ll_fp32),
            n = prompts.len(),
        );
        if let Some((cuda_logits, cuda_greedy, cuda_ll)) = &cuda_out {
            let (d, _) = max_abs_diff(&cpu_logits, cuda_logits);
            let (gc, gc_prefix) = greedy_matches(&cpu_greedy, cuda_greedy);
            cpu["logits_cuda_vs_cpu_max_abs_diff"] = json!(d);
            cpu["argmax_cuda_vs_cpu_agree"] = json!(argmax_agree(&cpu_logits, cuda_logits));
            cpu["greedy_cuda_vs_cpu_identical"] = json!(gc);
            cpu["greedy_cuda_vs_cpu_mean_common_prefix"] = json!(gc_prefix);
            cpu["loglik_cuda_vs_cpu_max_abs_diff"] = json!(ll_diff(cuda_ll, &cpu_ll));
            println!(
                "CUDA vs CPU: logits max |diff| {d:.4}, greedy {gc}/{} identical, loglik max |diff| {:.4}",
                prompts.len(),
                ll_diff(cuda_ll, &cpu_ll)
            );
        }
        result["cpu"] = cpu;
    }
    let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(())
}
