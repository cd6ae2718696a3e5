//! The tokenizer a GGUF file describes (`tokenizer.ggml.*`) and its chat
//! template, read without decoding any tensor.

use std::path::Path;

use super::error::GgufError;
use super::meta::Meta;
use super::reader::GgufFile;

/// ggml token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The tokenizer as GGUF metadata describes it (`tokenizer.ggml.*`); turned
/// into a runnable tokenizer by [`crate::tokenizer::Tokenizer::from_gguf`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufTokenizerData {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), ...
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer flavour, e.g. `smollm`, `llama-bpe`.
    pub pre: Option<String>,
    /// Token strings by id (byte-level encoded for `gpt2`).
    pub tokens: Vec<String>,
    /// [`token_type`] by id; empty when the file has none.
    pub token_types: Vec<i32>,
    /// SentencePiece scores by id; empty when the file has none.
    pub scores: Vec<f32>,
    /// BPE merges, `"left right"`, highest priority first.
    pub merges: Vec<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub unknown_token_id: Option<u32>,
    pub padding_token_id: Option<u32>,
    /// End of turn (e.g. `<|eot_id|>`), when it differs from EOS.
    pub eot_token_id: Option<u32>,
    /// End of message (Llama 3.1 `<|eom_id|>`).
    pub eom_token_id: Option<u32>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub add_space_prefix: Option<bool>,
}

impl GgufTokenizerData {
    /// The token string of `id`, if in range.
    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }
}

/// Reads only the tokenizer metadata and chat template of a GGUF file: no
/// tensor is decoded, so this is cheap even for large models.
pub fn load_gguf_tokenizer(path: &Path) -> Result<(GgufTokenizerData, Option<String>), GgufError> {
    let file = GgufFile::open(path)?;
    let meta = Meta { file: &file };
    let tokenizer = tokenizer_data(&meta)?;
    let chat_template = meta.str_opt("tokenizer.chat_template")?.map(str::to_string);
    Ok((tokenizer, chat_template))
}

/// The tokenizer's metadata (`tokenizer.ggml.*`), checked.
pub(super) fn tokenizer_data(meta: &Meta<'_>) -> Result<GgufTokenizerData, GgufError> {
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let token_types = match meta.array_opt("tokenizer.ggml.token_type")? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .and_then(|t| i32::try_from(t).ok())
                    .ok_or_else(|| meta.bad("tokenizer.ggml.token_type", "an array of i32", v))
            })
            .collect::<Result<_, _>>()?,
    };
    let scores = match meta.array_opt("tokenizer.ggml.scores")? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|s| s as f32)
                    .ok_or_else(|| meta.bad("tokenizer.ggml.scores", "an array of f32", v))
            })
            .collect::<Result<_, _>>()?,
    };
    let data = GgufTokenizerData {
        model: meta
            .str_opt("tokenizer.ggml.model")?
            .unwrap_or_default()
            .to_string(),
        pre: meta.str_opt("tokenizer.ggml.pre")?.map(str::to_string),
        merges: meta.strings("tokenizer.ggml.merges")?,
        bos_token_id: meta.u32_opt("tokenizer.ggml.bos_token_id")?,
        eos_token_id: meta.u32_opt("tokenizer.ggml.eos_token_id")?,
        unknown_token_id: meta.u32_opt("tokenizer.ggml.unknown_token_id")?,
        padding_token_id: meta.u32_opt("tokenizer.ggml.padding_token_id")?,
        eot_token_id: meta.u32_opt("tokenizer.ggml.eot_token_id")?,
        eom_token_id: meta.u32_opt("tokenizer.ggml.eom_token_id")?,
        add_bos_token: meta.bool_opt("tokenizer.ggml.add_bos_token")?,
        add_eos_token: meta.bool_opt("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: meta.bool_opt("tokenizer.ggml.add_space_prefix")?,
        tokens,
        token_types,
        scores,
    };
    if !data.token_types.is_empty() && data.token_types.len() != data.tokens.len() {
        return Err(GgufError::BadMetadata {
            path: meta.path(),
            key: "tokenizer.ggml.token_type".into(),
            expected: "one entry per token",
            found: format!(
                "{} entries for {} tokens",
                data.token_types.len(),
                data.tokens.len()
            ),
        });
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", data.bos_token_id),
        ("tokenizer.ggml.eos_token_id", data.eos_token_id),
        ("tokenizer.ggml.eot_token_id", data.eot_token_id),
        ("tokenizer.ggml.eom_token_id", data.eom_token_id),
    ] {
        if let Some(id) = id {
            if !data.tokens.is_empty() && id as usize >= data.tokens.len() {
                return Err(GgufError::BadMetadata {
                    path: meta.path(),
                    key: key.into(),
                    expected: "a token id below the vocabulary size",
                    found: format!("{id} with {} tokens", data.tokens.len()),
                });
            }
        }
    }
    Ok(data)
}
