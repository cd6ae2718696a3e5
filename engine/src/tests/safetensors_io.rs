//! Hugging Face directory loading: config.json + safetensors written with the
//! `safetensors` crate into a temp dir (single file and sharded, bf16 and
//! f32), loaded back and compared; broken directories give named errors.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{serialize, Dtype};

use crate::config::{Architecture, ModelConfig};
use crate::engine::{EngineSettings, LlmEngine, LoglikelihoodRequest};
use crate::error::EngineError;
use crate::hf::load_hf_model;
use crate::testing::{random_weights, tiny_config};
use crate::weights::Weights;

fn config_json(c: &ModelConfig) -> String {
    let arch = match c.architecture {
        Architecture::Llama => "LlamaForCausalLM",
        Architecture::Qwen2 => "Qwen2ForCausalLM",
        Architecture::Qwen3 => "Qwen3ForCausalLM",
    };
    serde_json::json!({
        "architectures": [arch],
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_ids,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16"
    })
    .to_string()
}

/// Serialises `names` of `w` into one safetensors file: norms in f32, the
/// rest in bf16 (as checkpoints usually are).
fn write_file(path: &Path, w: &Weights, names: &[&String]) {
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let t = &w.tensors[*name];
        if name.contains("norm") {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            bufs.push(((*name).clone(), Dtype::F32, t.shape.clone(), bytes));
        } else {
            let bytes = t
                .data
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
                .collect();
            bufs.push(((*name).clone(), Dtype::BF16, t.shape.clone(), bytes));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = bufs
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, serialize(views, &None).unwrap()).unwrap();
}

fn expected_value(name: &str, v: f32) -> f32 {
    if name.contains("norm") {
        v
    } else {
        half::bf16::from_f32(v).to_f32()
    }
}

fn check_round_trip(original: &Weights, loaded: &Weights) {
    assert_eq!(original.tensors.len(), loaded.tensors.len());
    for (name, t) in &original.tensors {
        let l = &loaded.tensors[name];
        assert_eq!(l.shape, t.shape, "{name}");
        for (a, b) in t.data.iter().zip(&l.data) {
            assert_eq!(expected_value(name, *a), *b, "{name}");
        }
    }
}

#[test]
fn single_file_round_trip_and_runs() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = tiny_config(arch);
        let w = random_weights(&c, 21);
        std::fs::write(dir.path().join("config.json"), config_json(&c)).unwrap();
        let names: Vec<&String> = w.tensors.keys().collect();
        write_file(&dir.path().join("model.safetensors"), &w, &names);
        let (lc, lw) = load_hf_model(dir.path()).unwrap();
        assert_eq!(lc, c);
        check_round_trip(&w, &lw);
        let mut e = LlmEngine::new_cpu(lc, lw, &EngineSettings::default()).unwrap();
        let out = e
            .loglikelihood(vec![LoglikelihoodRequest {
                context_tokens: vec![1, 5, 9],
                continuation_tokens: vec![3, 4],
            }])
            .unwrap();
        assert!(out[0].logprob.is_finite() && out[0].logprob < 0.0);
    }
}

#[test]
fn sharded_round_trip_via_index() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny_config(Architecture::Llama);
    let w = random_weights(&c, 22);
    std::fs::write(dir.path().join("config.json"), config_json(&c)).unwrap();
    let mut names: Vec<&String> = w.tensors.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    write_file(&dir.path().join("model-00001-of-00002.safetensors"), &w, a);
    write_file(&dir.path().join("model-00002-of-00002.safetensors"), &w, b);
    let mut map = HashMap::new();
    for n in a {
        map.insert((*n).clone(), "model-00001-of-00002.safetensors");
    }
    for n in b {
        map.insert((*n).clone(), "model-00002-of-00002.safetensors");
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let (_, lw) = load_hf_model(dir.path()).unwrap();
    check_round_trip(&w, &lw);
}

#[test]
fn broken_directories_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny_config(Architecture::Llama);
    let w = random_weights(&c, 23);
    // No config.json.
    let e = load_hf_model(dir.path()).unwrap_err();
    assert!(matches!(e, EngineError::Io { .. }), "{e}");
    assert!(e.to_string().contains("config.json"));

    std::fs::write(dir.path().join("config.json"), config_json(&c)).unwrap();
    let e = load_hf_model(dir.path()).unwrap_err();
    assert!(e.to_string().contains("no model.safetensors"), "{e}");

    // A tensor missing.
    let names: Vec<&String> = w
        .tensors
        .keys()
        .filter(|n| *n != "model.layers.1.mlp.up_proj.weight")
        .collect();
    write_file(&dir.path().join("model.safetensors"), &w, &names);
    let e = load_hf_model(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("model.layers.1.mlp.up_proj.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );

    // A config that does not match the weights.
    let mut wrong = c.clone();
    wrong.intermediate_size = 40;
    std::fs::write(dir.path().join("config.json"), config_json(&wrong)).unwrap();
    let names: Vec<&String> = w.tensors.keys().collect();
    write_file(&dir.path().join("model.safetensors"), &w, &names);
    let e = load_hf_model(dir.path()).unwrap_err();
    assert!(matches!(e, EngineError::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("mlp"), "{e}");

    // Corrupt file.
    std::fs::write(dir.path().join("config.json"), config_json(&c)).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let e = load_hf_model(dir.path()).unwrap_err();
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}
