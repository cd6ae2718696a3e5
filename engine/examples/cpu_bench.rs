//! CPU engine throughput on a GGUF model: prefill tokens/s (one prompt at a
//! time), single-sequence decode tokens/s, and batched decode tokens/s for
//! each requested batch size. Prints a human summary on stderr and one JSON
//! object on stdout (with the prompt token ids, so bench/engine/bench_llamacpp.py
//! runs llama.cpp on exactly the same input).
//!
//! ```text
//! cargo run --release -p engine --example cpu_bench -- MODEL.gguf TEXT_FILE \
//!     [--prompt-len 128] [--prefill-prompts 4] [--decode-tokens 64] [--batch 16,32]
//! ```
//!
//! Prompts are BOS followed by consecutive tokens of TEXT_FILE's tokenization,
//! each starting at a different offset, so no two share a prefix; prefix
//! caching is off anyway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use engine::gguf::load_gguf;
use engine::tokenizer::Tokenizer;
use engine::{EngineSettings, GenerateRequest, LlmEngine, TokenAction};
use serde::Serialize;

struct Args {
    model: PathBuf,
    text: PathBuf,
    prompt_len: usize,
    prefill_prompts: usize,
    decode_tokens: usize,
    batches: Vec<usize>,
}

#[derive(Serialize)]
struct BatchFigure {
    batch: usize,
    /// Generated tokens per second once every sequence is decoding.
    decode_tokens_per_s: f64,
    /// All generated tokens over the whole call, prefill included.
    end_to_end_tokens_per_s: f64,
    seconds: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: usize,
    load_seconds: f64,
    prompt_len: usize,
    decode_tokens: usize,
    prefill_tokens_per_s: f64,
    prefill_seconds: Vec<f64>,
    decode_tokens_per_s: f64,
    batched: Vec<BatchFigure>,
    /// `prefill_prompts[i]` were prefilled one at a time; `prompts[0]` is
    /// the single-sequence decode prompt.
    prompts: Vec<Vec<u32>>,
    prefill_prompts: usize,
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cpu_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cpu_bench MODEL.gguf TEXT_FILE [--prompt-len N] [--prefill-prompts N] [--decode-tokens N] [--batch B1,B2,..]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut a = Args {
        model: PathBuf::new(),
        text: PathBuf::new(),
        prompt_len: 128,
        prefill_prompts: 4,
        decode_tokens: 64,
        batches: vec![16],
    };
    let num = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or(format!("{flag} needs a positive number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--prompt-len" => a.prompt_len = num(it.next(), "--prompt-len")?,
            "--prefill-prompts" => a.prefill_prompts = num(it.next(), "--prefill-prompts")?,
            "--decode-tokens" => a.decode_tokens = num(it.next(), "--decode-tokens")?,
            "--batch" => {
                let v = it.next().ok_or("--batch needs a list like 16,32")?;
                a.batches = v
                    .split(',')
                    .map(|s| s.trim().parse().ok().filter(|&n: &usize| n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!(
                        "--batch {v:?}: expected positive numbers like 16,32"
                    ))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    match <[PathBuf; 2]>::try_from(positional) {
        Ok([model, text]) => {
            a.model = model;
            a.text = text;
            Ok(a)
        }
        Err(_) => Err(USAGE.into()),
    }
}

fn run(a: Args) -> Result<(), String> {
    let t0 = Instant::now();
    let model = load_gguf(&a.model).map_err(|e| e.to_string())?;
    let tokenizer = Tokenizer::from_gguf(&model.tokenizer).map_err(|e| e.to_string())?;
    let bos = model.config.bos_token_id;
    let text =
        std::fs::read_to_string(&a.text).map_err(|e| format!("{}: {e}", a.text.display()))?;
    let stream = tokenizer.encode(&text, false).map_err(|e| e.to_string())?;
    let body = a.prompt_len - usize::from(bos.is_some());
    if stream.len() < body + 1 {
        return Err(format!(
            "{} gives {} tokens; need at least {}",
            a.text.display(),
            stream.len(),
            body + 1
        ));
    }
    let max_batch = a.batches.iter().copied().max().unwrap_or(1);
    let n_prompts = a.prefill_prompts.max(max_batch);
    // Offsets spread over the stream (wrapping), so prompts differ from
    // their first token on.
    let prompts: Vec<Vec<u32>> = (0..n_prompts)
        .map(|i| {
            let start = (i * 37) % stream.len();
            bos.into_iter()
                .chain((0..body).map(|j| stream[(start + j) % stream.len()]))
                .collect()
        })
        .collect();

    let tokens_per_seq = a.prompt_len + a.decode_tokens + 2;
    let settings = EngineSettings {
        max_num_seqs: max_batch.max(1),
        max_num_batched_tokens: 2048.max(a.prompt_len),
        block_size: 16,
        num_kv_blocks: Some(max_batch * tokens_per_seq.div_ceil(16) + 8),
        enable_prefix_caching: false,
        ..EngineSettings::default()
    };
    let mut engine =
        LlmEngine::new_cpu(model.config, model.weights, &settings).map_err(|e| e.to_string())?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let req = |p: &[u32], max_tokens: usize| GenerateRequest {
        prompt_tokens: p.to_vec(),
        max_tokens,
        ignore_eos: true,
        ..GenerateRequest::default()
    };

    // Warm-up: thread pool, page faults of the weights, scratch buffers.
    engine
        .generate(vec![req(&prompts[0], 4)])
        .map_err(|e| e.to_string())?;

    // Prefill: one prompt at a time, one generated token (the LM head of
    // the last position, as llama.cpp computes it).
    let mut prefill_seconds = Vec::new();
    for p in &prompts[..a.prefill_prompts] {
        let t = Instant::now();
        engine
            .generate(vec![req(p, 1)])
            .map_err(|e| e.to_string())?;
        prefill_seconds.push(t.elapsed().as_secs_f64());
    }
    let prefill_tokens_per_s =
        (a.prefill_prompts * a.prompt_len) as f64 / prefill_seconds.iter().sum::<f64>();
    eprintln!(
        "prefill: {prefill_tokens_per_s:.1} tokens/s ({} prompts of {} tokens, one at a time)",
        a.prefill_prompts, a.prompt_len
    );

    let single = decode(&mut engine, &prompts[..1], a.decode_tokens, &req)?;
    eprintln!(
        "decode, 1 sequence: {:.1} tokens/s ({} tokens after a {}-token prompt)",
        single.decode_tokens_per_s, a.decode_tokens, a.prompt_len
    );
    let mut batched = Vec::new();
    for &b in &a.batches {
        let f = decode(&mut engine, &prompts[..b], a.decode_tokens, &req)?;
        eprintln!(
            "decode, {b} sequences: {:.1} tokens/s ({:.1} tokens/s end to end, prefill included)",
            f.decode_tokens_per_s, f.end_to_end_tokens_per_s
        );
        batched.push(f);
    }

    let report = Report {
        model: a.model.display().to_string(),
        threads: rayon::current_num_threads(),
        load_seconds,
        prompt_len: a.prompt_len,
        decode_tokens: a.decode_tokens,
        prefill_tokens_per_s,
        prefill_seconds,
        decode_tokens_per_s: single.decode_tokens_per_s,
        batched,
        prompts: prompts[..a.prefill_prompts.max(1)].to_vec(),
        prefill_prompts: a.prefill_prompts,
    };
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Generates `decode_tokens + 1` tokens for every prompt at once. The decode
/// rate counts the tokens produced after the moment every sequence had its
/// first token (i.e. all prefills were done) over the time since then.
fn decode(
    engine: &mut LlmEngine,
    prompts: &[Vec<u32>],
    decode_tokens: usize,
    req: &impl Fn(&[u32], usize) -> GenerateRequest,
) -> Result<BatchFigure, String> {
    let n = prompts.len();
    let t = Instant::now();
    let mut events: Vec<(f64, usize)> = Vec::with_capacity(n * (decode_tokens + 1));
    engine
        .generate_with(
            prompts.iter().map(|p| req(p, decode_tokens + 1)).collect(),
            |i, _| {
                events.push((t.elapsed().as_secs_f64(), i));
                TokenAction::Continue
            },
        )
        .map_err(|e| e.to_string())?;
    let total = t.elapsed().as_secs_f64();
    let mut first = vec![f64::NAN; n];
    for &(at, i) in &events {
        if first[i].is_nan() {
            first[i] = at;
        }
    }
    let ready = first.iter().copied().fold(0.0, f64::max);
    let end = events.last().map_or(total, |e| e.0);
    let after = events.iter().filter(|e| e.0 > ready).count();
    Ok(BatchFigure {
        batch: n,
        decode_tokens_per_s: after as f64 / (end - ready),
        end_to_end_tokens_per_s: events.len() as f64 / total,
        seconds: total,
    })
}
