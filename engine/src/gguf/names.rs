//! llama.cpp tensor names ↔ Hugging Face names, and the Q/K row order
//! llama.cpp's converter permutes.

/// The Hugging Face name of a llama.cpp tensor name, or `None` for a tensor
/// outside the supported architectures.
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf_part = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}.{kind}"))
}

pub(super) fn is_q_or_k(hf: &str) -> bool {
    hf.contains(".self_attn.q_proj.") || hf.contains(".self_attn.k_proj.")
}

/// Undoes llama.cpp's `permute` of q/k rows: within each head of `head_dim`
/// rows, GGUF row `2i + s` is Hugging Face row `s * head_dim/2 + i`. Works on
/// weights (`[rows, cols]`) and biases (`[rows]`). `None` when the row count
/// is not a whole number of heads.
pub fn unpermute_rows(data: &mut [f32], shape: &[usize], head_dim: usize) -> Option<()> {
    let rows = *shape.first()?;
    let cols: usize = shape[1..].iter().product();
    if head_dim == 0
        || !head_dim.is_multiple_of(2)
        || !rows.is_multiple_of(head_dim)
        || rows * cols != data.len()
    {
        return None;
    }
    let half = head_dim / 2;
    let mut head = vec![0f32; head_dim * cols];
    for h in 0..rows / head_dim {
        let block = &mut data[h * head_dim * cols..(h + 1) * head_dim * cols];
        for i in 0..half {
            for s in 0..2 {
                let src = (2 * i + s) * cols;
                let dst = (s * half + i) * cols;
                head[dst..dst + cols].copy_from_slice(&block[src..src + cols]);
            }
        }
        block.copy_from_slice(&head);
    }
    Some(())
}

/// The llama.cpp name of a Hugging Face tensor name (inverse of [`hf_name`]),
/// so that errors use the names the file holds.
pub fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.to_string();
    };
    let Some((layer, rest)) = rest.split_once('.') else {
        return hf.to_string();
    };
    let Some((part, kind)) = rest.rsplit_once('.') else {
        return hf.to_string();
    };
    let g = match part {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return hf.to_string(),
    };
    format!("blk.{layer}.{g}.{kind}")
}
