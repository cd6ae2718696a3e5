//! The CPU engine against transformers: tiny random-initialised Llama, Qwen2
//! and Qwen3 checkpoints (engine/fixtures/transformers, made by
//! engine/fixtures/make_fixtures.py) are loaded through the Hugging Face
//! loader and must reproduce the logits, log-probabilities and greedy tokens
//! transformers computed for them.
//!
//! Tolerance: both sides compute in f32 from identical weights, so the only
//! differences are summation order (gemm blocking, softmax, RMSNorm). Logits
//! must agree within `LOGIT_TOL` absolute, log-probabilities within
//! `LOGPROB_TOL`; greedy tokens must be identical (every reference step has a
//! top-1/top-2 margin far above the tolerance, which is checked too).
//! Observed with fixtures from transformers 5.23.0 / torch 2.15.0: at most
//! 3.4e-5 on logits (whose range is about ±25) and 1.7e-5 on
//! log-probabilities, so the tolerances leave a margin of about 6x.

use std::path::{Path, PathBuf};

use engine::cpu::{CpuExecutor, CpuModel};
use engine::executor::{Executor, SeqSlice, StepInput};
use engine::hf::load_hf_model;
use engine::{EngineSettings, GenerateRequest, LlmEngine, LoglikelihoodRequest};
use serde::Deserialize;

const LOGIT_TOL: f32 = 2e-4;
const LOGPROB_TOL: f64 = 2e-4;

const FIXTURES: [&str; 4] = [
    "llama3_gqa_untied",
    "llama_mha_tied_legacy_config",
    "qwen2_gqa_tied",
    "qwen3_qknorm_untied",
];

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    tokens: Vec<u32>,
    last_logits: Vec<f32>,
    next_token_logprobs: Vec<f64>,
    argmax: Vec<u32>,
    greedy: Vec<u32>,
    greedy_margins: Vec<f32>,
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/transformers")
        .join(name)
}

fn expected(dir: &Path) -> Expected {
    let path = dir.join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run engine/fixtures/make_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn settings() -> EngineSettings {
    EngineSettings {
        max_num_seqs: 8,
        max_num_batched_tokens: 64,
        block_size: 4,
        num_kv_blocks: Some(256),
        ..EngineSettings::default()
    }
}

/// Logits at every position of `tokens`, straight from the executor.
fn all_logits(exec: &mut CpuExecutor, tokens: &[u32]) -> Vec<Vec<f32>> {
    let bs = exec.block_size();
    let n = tokens.len();
    let batch = StepInput {
        token_ids: tokens.to_vec(),
        positions: (0..n).collect(),
        slot_mapping: (0..n).collect(),
        seqs: vec![SeqSlice {
            token_range: 0..n,
            block_table: (0..n.div_ceil(bs) as u32).collect(),
        }],
        logits_indices: (0..n).collect(),
    };
    let out = exec.forward(&batch).expect("forward");
    (0..n).map(|i| out.row(i).to_vec()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn check_fixture(name: &str) {
    let dir = fixture_dir(name);
    let exp = expected(&dir);
    let (config, weights) =
        load_hf_model(&dir).unwrap_or_else(|e| panic!("{name}: loading failed: {e}"));

    // Executor level: full logits at every position.
    let model = CpuModel::new(config.clone(), weights.clone()).expect("model");
    let mut exec = CpuExecutor::new(model, 64, 4).expect("executor");
    let mut worst_logit = 0.0f32;
    for case in &exp.cases {
        let logits = all_logits(&mut exec, &case.tokens);
        let d = max_abs_diff(logits.last().unwrap(), &case.last_logits);
        worst_logit = worst_logit.max(d);
        assert!(
            d <= LOGIT_TOL,
            "{name}, prompt of {} tokens: last-position logits differ by {d} (> {LOGIT_TOL})",
            case.tokens.len()
        );
        let ours: Vec<u32> = logits.iter().map(|r| argmax(r)).collect();
        assert_eq!(ours, case.argmax, "{name}: per-position argmax differs");
    }

    // Engine level: log-likelihood of each prompt's tokens after the first.
    let mut eng = LlmEngine::new_cpu(config, weights, &settings()).expect("engine");
    let reqs: Vec<LoglikelihoodRequest> = exp
        .cases
        .iter()
        .filter(|c| c.tokens.len() > 1)
        .map(|c| LoglikelihoodRequest {
            context_tokens: c.tokens[..1].to_vec(),
            continuation_tokens: c.tokens[1..].to_vec(),
        })
        .collect();
    let outs = eng.loglikelihood(reqs).expect("loglikelihood");
    let mut worst_lp = 0.0f64;
    for (case, out) in exp.cases.iter().filter(|c| c.tokens.len() > 1).zip(&outs) {
        assert_eq!(out.token_logprobs.len(), case.next_token_logprobs.len());
        for (a, b) in out.token_logprobs.iter().zip(&case.next_token_logprobs) {
            worst_lp = worst_lp.max((a - b).abs());
        }
    }
    assert!(
        worst_lp <= LOGPROB_TOL,
        "{name}: token log-probabilities differ by up to {worst_lp} (> {LOGPROB_TOL})"
    );

    // Greedy continuation, all prompts batched together, and each alone:
    // the same tokens as transformers, and independent of the batch.
    let greedy = |prompt: &[u32]| GenerateRequest {
        prompt_tokens: prompt.to_vec(),
        max_tokens: 8,
        ignore_eos: true,
        ..GenerateRequest::default()
    };
    let batched = eng
        .generate(exp.cases.iter().map(|c| greedy(&c.tokens)).collect())
        .expect("generate");
    for (case, out) in exp.cases.iter().zip(&batched) {
        let margin = case.greedy_margins.iter().cloned().fold(f32::MAX, f32::min);
        assert!(
            margin > 10.0 * LOGIT_TOL,
            "{name}: reference greedy margin {margin} is too small to compare tokens"
        );
        assert_eq!(out.tokens, case.greedy, "{name}: greedy tokens differ");
        let alone = eng.generate(vec![greedy(&case.tokens)]).expect("generate");
        assert_eq!(
            alone[0].tokens, out.tokens,
            "{name}: greedy output depends on the batch"
        );
    }
    eprintln!(
        "{name}: max |logit diff| {worst_logit:.3e}, max |logprob diff| {worst_lp:.3e}, {} prompts",
        exp.cases.len()
    );
}

#[test]
fn llama3_gqa_untied_matches_transformers() {
    check_fixture(FIXTURES[0]);
}

#[test]
fn llama_mha_tied_with_legacy_config_matches_transformers() {
    check_fixture(FIXTURES[1]);
}

#[test]
fn qwen2_gqa_tied_matches_transformers() {
    check_fixture(FIXTURES[2]);
}

#[test]
fn qwen3_qknorm_untied_matches_transformers() {
    check_fixture(FIXTURES[3]);
}
