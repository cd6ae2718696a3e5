//! Prints, as JSON, what the CPU engine computes for a list of prompts on a
//! GGUF model: its tokenization of each text, the log-probability of every
//! prompt token after the first, and the greedy continuation. Used by
//! bench/engine/compare_llamacpp.py to compare with llama.cpp.
//!
//! ```text
//! cargo run --release -p engine --example gguf_reference -- MODEL.gguf REQUESTS.json [--max-tokens 32]
//! ```
//!
//! REQUESTS.json is a list of `{"text": "...", "tokens": [ids]?}`. The text is
//! tokenized with the engine's tokenizer (BOS added as the GGUF says); when
//! `tokens` is given, those ids (e.g. llama.cpp's) are the ones scored and
//! continued, so both implementations see identical input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use engine::gguf::load_gguf;
use engine::tokenizer::Tokenizer;
use engine::{EngineSettings, GenerateRequest, LlmEngine, LoglikelihoodRequest};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    text: String,
    tokens: Option<Vec<u32>>,
}

#[derive(Serialize)]
struct Case {
    text: String,
    /// The engine's tokenization of `text`.
    our_tokens: Vec<u32>,
    /// The ids scored and continued (`tokens` of the request, or ours).
    tokens: Vec<u32>,
    /// `log P(tokens[i] | tokens[..i])` for `i >= 1`.
    prompt_logprobs: Vec<f64>,
    /// Greedy continuation (EOS not special), computed with all prompts in
    /// one batch.
    greedy: Vec<u32>,
    /// The same continuation computed with this prompt alone.
    greedy_alone: Vec<u32>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    threads: usize,
    load_seconds: f64,
    cases: Vec<Case>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gguf_reference: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut max_tokens = 32usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-tokens" => {
                max_tokens = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--max-tokens needs a number")?
            }
            "-h" | "--help" => {
                println!("usage: gguf_reference MODEL.gguf REQUESTS.json [--max-tokens N]");
                return Ok(());
            }
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [model_path, requests_path] = positional.as_slice() else {
        return Err("usage: gguf_reference MODEL.gguf REQUESTS.json [--max-tokens N]".into());
    };
    let text = std::fs::read_to_string(requests_path)
        .map_err(|e| format!("{}: {e}", requests_path.display()))?;
    let requests: Vec<Request> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", requests_path.display()))?;

    let t0 = Instant::now();
    let model = load_gguf(model_path).map_err(|e| e.to_string())?;
    let tokenizer = Tokenizer::from_gguf(&model.tokenizer).map_err(|e| e.to_string())?;
    let settings = EngineSettings {
        // No prefix caching: every prompt is computed from scratch.
        enable_prefix_caching: false,
        ..EngineSettings::default()
    };
    let mut engine =
        LlmEngine::new_cpu(model.config, model.weights, &settings).map_err(|e| e.to_string())?;
    let load_seconds = t0.elapsed().as_secs_f64();

    let mut cases = Vec::with_capacity(requests.len());
    for r in requests {
        let our_tokens = tokenizer.encode(&r.text, true).map_err(|e| e.to_string())?;
        let tokens = r.tokens.unwrap_or_else(|| our_tokens.clone());
        if tokens.len() < 2 {
            return Err(format!("prompt {:?} has fewer than 2 tokens", r.text));
        }
        cases.push(Case {
            text: r.text,
            our_tokens,
            tokens,
            prompt_logprobs: Vec::new(),
            greedy: Vec::new(),
            greedy_alone: Vec::new(),
        });
    }

    let scored = engine
        .loglikelihood(
            cases
                .iter()
                .map(|c| LoglikelihoodRequest {
                    context_tokens: c.tokens[..1].to_vec(),
                    continuation_tokens: c.tokens[1..].to_vec(),
                })
                .collect(),
        )
        .map_err(|e| e.to_string())?;
    let greedy = |tokens: &[u32]| GenerateRequest {
        prompt_tokens: tokens.to_vec(),
        max_tokens,
        ignore_eos: true,
        ..GenerateRequest::default()
    };
    let batched = engine
        .generate(cases.iter().map(|c| greedy(&c.tokens)).collect())
        .map_err(|e| e.to_string())?;
    for ((case, s), g) in cases.iter_mut().zip(scored).zip(batched) {
        case.prompt_logprobs = s.token_logprobs;
        case.greedy = g.tokens;
        let alone = engine
            .generate(vec![greedy(&case.tokens)])
            .map_err(|e| e.to_string())?;
        case.greedy_alone = alone
            .into_iter()
            .next()
            .map(|o| o.tokens)
            .unwrap_or_default();
    }

    let report = Report {
        model: model_path.display().to_string(),
        threads: rayon::current_num_threads(),
        load_seconds,
        cases,
    };
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}
