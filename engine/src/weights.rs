//! Model weights in memory, in f32, under Hugging Face tensor names. Every
//! loader (safetensors, GGUF) produces this, so the forward pass sees one
//! layout whatever the file format was.

use std::collections::HashMap;

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Tensor> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Tensors by Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`
/// (shape `[out_features, in_features]`, as `nn.Linear` stores it) or
/// `model.embed_tokens.weight` (`[vocab, hidden]`).
#[derive(Clone, Debug, Default)]
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
}
