//! The tensors a model of a given config must have, under Hugging Face names,
//! with their shapes: the single place loaders and the forward pass agree on.

use std::path::Path;

use crate::config::{Architecture, ModelConfig};
use crate::error::EngineError;
use crate::weights::Weights;

/// One tensor the model reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Optional tensors (e.g. a Llama checkpoint's `attention_bias`) are used
    /// when present.
    pub required: bool,
}

/// Every tensor the forward pass reads for `config`.
pub fn expected_tensors(config: &ModelConfig) -> Vec<TensorSpec> {
    let h = config.hidden_size;
    let (qd, kvd) = (config.q_dim(), config.kv_dim());
    let i = config.intermediate_size;
    let spec = |name: String, shape: Vec<usize>, required: bool| TensorSpec {
        name,
        shape,
        required,
    };
    let mut out = vec![
        spec(
            "model.embed_tokens.weight".into(),
            vec![config.vocab_size, h],
            true,
        ),
        spec("model.norm.weight".into(), vec![h], true),
    ];
    if !config.tie_word_embeddings {
        out.push(spec(
            "lm_head.weight".into(),
            vec![config.vocab_size, h],
            true,
        ));
    }
    let qkv_bias_required = config.architecture == Architecture::Qwen2;
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push(spec(format!("{p}.input_layernorm.weight"), vec![h], true));
        out.push(spec(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            true,
        ));
        for (proj, rows) in [("q_proj", qd), ("k_proj", kvd), ("v_proj", kvd)] {
            out.push(spec(
                format!("{p}.self_attn.{proj}.weight"),
                vec![rows, h],
                true,
            ));
            out.push(spec(
                format!("{p}.self_attn.{proj}.bias"),
                vec![rows],
                qkv_bias_required,
            ));
        }
        out.push(spec(
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, qd],
            true,
        ));
        if config.architecture == Architecture::Qwen3 {
            for norm in ["q_norm", "k_norm"] {
                out.push(spec(
                    format!("{p}.self_attn.{norm}.weight"),
                    vec![config.head_dim],
                    true,
                ));
            }
        }
        out.push(spec(format!("{p}.mlp.gate_proj.weight"), vec![i, h], true));
        out.push(spec(format!("{p}.mlp.up_proj.weight"), vec![i, h], true));
        out.push(spec(format!("{p}.mlp.down_proj.weight"), vec![h, i], true));
    }
    out
}

/// Checks that `weights` hold every required tensor of `config` with the
/// right shape (and optional ones, when present, with the right shape).
/// `file` names the source in errors.
pub fn check_weights(
    config: &ModelConfig,
    weights: &Weights,
    file: Option<&Path>,
) -> Result<(), EngineError> {
    for spec in expected_tensors(config) {
        match weights.tensors.get(&spec.name) {
            None if spec.required => {
                return Err(EngineError::MissingTensor {
                    tensor: spec.name.clone(),
                    file: file.map(Path::to_path_buf),
                    hint: missing_hint(&spec.name),
                })
            }
            None => {}
            Some(t) if t.shape != spec.shape => {
                return Err(EngineError::ShapeMismatch {
                    tensor: spec.name,
                    file: file.map(Path::to_path_buf),
                    expected: spec.shape,
                    found: t.shape.clone(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn missing_hint(name: &str) -> String {
    if name == "lm_head.weight" {
        "the config says tie_word_embeddings = false; set it to true if the model shares its embedding matrix with the output layer".into()
    } else {
        "the checkpoint is incomplete or of a different architecture than config.json says".into()
    }
}
