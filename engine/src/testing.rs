//! Test support shared by this crate's tests and other executors' tests:
//! tiny random-initialised models and a naive reference forward pass (plain
//! loops, no cache, no batching) to check optimised paths against.

use crate::config::{Architecture, ModelConfig, RopeStyle};
use crate::cpu::ops::rope_inv_freq;
use crate::layout::expected_tensors;
use crate::sampling::SeqRng;
use crate::weights::{Tensor, Weights};

/// A 2-layer model config of the given architecture with GQA (4 query heads,
/// 2 KV heads) and a small vocabulary.
pub fn tiny_config(architecture: Architecture) -> ModelConfig {
    ModelConfig {
        architecture,
        vocab_size: 97,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: if architecture == Architecture::Qwen3 {
            16
        } else {
            8
        },
        rms_norm_eps: 1e-6,
        rope_theta: 10000.0,
        rope_scaling: None,
        rope_style: RopeStyle::Neox,
        max_position_embeddings: 512,
        tie_word_embeddings: architecture == Architecture::Qwen3,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

/// Random weights for every tensor `config` uses (biases included), scaled
/// so activations stay O(1) and logits are well spread.
pub fn random_weights(config: &ModelConfig, seed: u64) -> Weights {
    let mut rng = SeqRng::new(seed, 0);
    let mut w = Weights::default();
    for spec in expected_tensors(config) {
        let n: usize = spec.shape.iter().product();
        let is_norm = spec.name.ends_with("norm.weight");
        let fan_in = *spec.shape.last().unwrap_or(&1) as f64;
        let scale = if spec.name.contains("embed_tokens") || spec.name.ends_with(".bias") {
            1.0
        } else {
            1.5 / fan_in.sqrt()
        };
        let data = (0..n)
            .map(|_| {
                let u = rng.next_f64() * 2.0 - 1.0;
                if is_norm {
                    (1.0 + 0.2 * u) as f32
                } else {
                    (u * scale) as f32
                }
            })
            .collect();
        if let Some(t) = Tensor::new(spec.shape, data) {
            w.tensors.insert(spec.name, t);
        }
    }
    w
}

fn get<'a>(w: &'a Weights, name: &str) -> &'a [f32] {
    match w.tensors.get(name) {
        Some(t) => &t.data,
        None => panic!("reference forward: missing tensor {name}"),
    }
}

fn linear(x: &[f32], w: &[f32], out_dim: usize) -> Vec<f32> {
    let k = x.len();
    (0..out_dim)
        .map(|j| {
            let mut acc = 0.0f64;
            for i in 0..k {
                acc += x[i] as f64 * w[j * k + i] as f64;
            }
            acc as f32
        })
        .collect()
}

fn rms(x: &[f32], w: &[f32], eps: f64) -> Vec<f32> {
    let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &g)| (v as f64 * s) as f32 * g)
        .collect()
}

fn rope(x: &mut [f32], pos: usize, inv_freq: &[f32], style: RopeStyle) {
    let half = inv_freq.len();
    for (i, &f) in inv_freq.iter().enumerate() {
        let angle = pos as f32 * f;
        let (s, c) = (angle.sin(), angle.cos());
        let (a, b) = match style {
            RopeStyle::Neox => (i, i + half),
            RopeStyle::Interleaved => (2 * i, 2 * i + 1),
        };
        let (xa, xb) = (x[a], x[b]);
        x[a] = xa * c - xb * s;
        x[b] = xb * c + xa * s;
    }
}

/// Logits at every position of `tokens`, computed from scratch with plain
/// loops straight from the Hugging Face tensors. Panics on missing tensors
/// (test-only code).
pub fn naive_forward(config: &ModelConfig, w: &Weights, tokens: &[u32]) -> Vec<Vec<f32>> {
    let c = config;
    let (h, hd) = (c.hidden_size, c.head_dim);
    let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
    let inv_freq = rope_inv_freq(c);
    let embed = get(w, "model.embed_tokens.weight");
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| embed[t as usize * h..(t as usize + 1) * h].to_vec())
        .collect();
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let t = |n: &str| get(w, &format!("{p}.{n}"));
        let opt = |n: &str| {
            w.tensors
                .get(&format!("{p}.{n}"))
                .map(|t| t.data.as_slice())
        };
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let hn = rms(x, t("input_layernorm.weight"), c.rms_norm_eps);
            let mut q = linear(&hn, t("self_attn.q_proj.weight"), nh * hd);
            let mut k = linear(&hn, t("self_attn.k_proj.weight"), nkv * hd);
            let mut v = linear(&hn, t("self_attn.v_proj.weight"), nkv * hd);
            for (vec, name) in [(&mut q, "q_proj"), (&mut k, "k_proj"), (&mut v, "v_proj")] {
                if let Some(b) = opt(&format!("self_attn.{name}.bias")) {
                    for (a, bb) in vec.iter_mut().zip(b) {
                        *a += bb;
                    }
                }
            }
            for (vec, norm) in [(&mut q, "q_norm"), (&mut k, "k_norm")] {
                for head in vec.chunks_mut(hd) {
                    if let Some(g) = opt(&format!("self_attn.{norm}.weight")) {
                        let n = rms(head, g, c.rms_norm_eps);
                        head.copy_from_slice(&n);
                    }
                    rope(head, pos, &inv_freq, c.rope_style);
                }
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for (pos, x) in xs.iter_mut().enumerate() {
            let mut attn = vec![0.0f32; nh * hd];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let q = &qs[pos][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=pos)
                    .map(|j| {
                        let k = &ks[j][kvh * hd..(kvh + 1) * hd];
                        q.iter()
                            .zip(k)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let p = (s - max).exp() / z;
                    for d in 0..hd {
                        attn[head * hd + d] += (p * vs[j][kvh * hd + d] as f64) as f32;
                    }
                }
            }
            let o = linear(&attn, t("self_attn.o_proj.weight"), h);
            for (a, b) in x.iter_mut().zip(&o) {
                *a += b;
            }
            let hn = rms(x, t("post_attention_layernorm.weight"), c.rms_norm_eps);
            let g = linear(&hn, t("mlp.gate_proj.weight"), c.intermediate_size);
            let u = linear(&hn, t("mlp.up_proj.weight"), c.intermediate_size);
            let act: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| (g as f64 / (1.0 + (-g as f64).exp()) * u as f64) as f32)
                .collect();
            let d = linear(&act, t("mlp.down_proj.weight"), h);
            for (a, b) in x.iter_mut().zip(&d) {
                *a += b;
            }
        }
    }
    let head = if c.tie_word_embeddings {
        embed
    } else {
        get(w, "lm_head.weight")
    };
    xs.iter()
        .map(|x| {
            linear(
                &rms(x, get(w, "model.norm.weight"), c.rms_norm_eps),
                head,
                c.vocab_size,
            )
        })
        .collect()
}
