//! Text ↔ token ids, over the `tokenizers` crate: loaded from a Hugging Face
//! `tokenizer.json`, or built from a GGUF file's `tokenizer.ggml.*` metadata
//! as a byte-level BPE with the pre-tokenizer llama.cpp uses for the file's
//! `tokenizer.ggml.pre` type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::{token_type, GgufTokenizerData};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error(
        "GGUF tokenizer model {model:?} is not supported (only \"gpt2\" byte-level BPE); \
         use the model's Hugging Face directory with its tokenizer.json instead"
    )]
    UnsupportedModel { model: String },
    #[error(
        "GGUF pre-tokenizer {pre:?} is not supported (supported: {supported}); use the model's \
         Hugging Face directory with its tokenizer.json instead"
    )]
    UnsupportedPreTokenizer { pre: String, supported: String },
    #[error("GGUF tokenizer metadata is invalid: {detail}")]
    BadGgufData { detail: String },
    #[error("building the tokenizer failed: {detail}")]
    Build { detail: String },
    #[error("encoding failed: {detail}")]
    Encode { detail: String },
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownId { id: u32, vocab_size: usize },
    #[error("decoding failed: {detail}")]
    Decode { detail: String },
}

/// A ready tokenizer. Cheap to share across threads (`Send + Sync`).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Added tokens marked special, by id.
    special: BTreeMap<u32, String>,
    /// One past the largest id, added tokens included (computed once: the
    /// `tokenizers` accessors copy maps).
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special_tokens", &self.special.len())
            .finish()
    }
}

/// The GPT-2 split regex (as llama.cpp writes it; the `tokenizers` ByteLevel
/// pre-tokenizer applies the same one).
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's split regex (`llama-bpe`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (digits one at a time).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer families of llama.cpp's `llama_vocab` this builds, with
/// the `tokenizer.ggml.pre` names that select them.
const PRE_FAMILIES: &[(&[&str], PreFamily)] = &[
    (
        &["default", "gpt-2", "gpt2", "mpt", "olmo", "jais"],
        PreFamily::Gpt2,
    ),
    (
        &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        PreFamily::DigitsThenGpt2,
    ),
    (
        &["llama-bpe", "llama3", "dbrx", "smaug-bpe"],
        PreFamily::Llama3,
    ),
    (
        &[
            "qwen2",
            "qwen2.5",
            "qwen-2.5",
            "deepseek-r1-qwen",
            "stablelm2",
        ],
        PreFamily::Qwen2,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum PreFamily {
    /// The GPT-2 regex.
    Gpt2,
    /// Every digit on its own, then the GPT-2 regex (StarCoder/SmolLM).
    DigitsThenGpt2,
    /// The Llama 3 regex; whole words in the vocabulary skip the merges.
    Llama3,
    Qwen2,
}

fn pre_family(pre: Option<&str>) -> Result<PreFamily, TokenizerError> {
    let name = pre.unwrap_or("default");
    PRE_FAMILIES
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, f)| *f)
        .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer {
            pre: name.to_string(),
            supported: PRE_FAMILIES
                .iter()
                .flat_map(|(names, _)| names.iter().copied())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn build_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build {
        detail: e.to_string(),
    }
}

fn split(regex: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    Ok(Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(build_err)?
    .into())
}

fn pre_tokenizer(family: PreFamily) -> Result<PreTokenizerWrapper, TokenizerError> {
    // ByteLevel without its own regex maps bytes to the printable alphabet
    // of the vocabulary; the splitting is done by the explicit regex.
    let bytes_only: PreTokenizerWrapper = ByteLevel::new(false, true, false).into();
    Ok(match family {
        PreFamily::Gpt2 => Sequence::new(vec![split(GPT2_REGEX)?, bytes_only]).into(),
        PreFamily::DigitsThenGpt2 => Sequence::new(vec![
            Digits::new(true).into(),
            split(GPT2_REGEX)?,
            bytes_only,
        ])
        .into(),
        PreFamily::Llama3 => Sequence::new(vec![split(LLAMA3_REGEX)?, bytes_only]).into(),
        PreFamily::Qwen2 => Sequence::new(vec![split(QWEN2_REGEX)?, bytes_only]).into(),
    })
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(Tokenizer::wrap(inner))
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_json(json: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| TokenizerError::Load {
            path: PathBuf::from("<tokenizer.json bytes>"),
            detail: e.to_string(),
        })?;
        Ok(Tokenizer::wrap(inner))
    }

    fn wrap(inner: tokenizers::Tokenizer) -> Tokenizer {
        let added = inner.get_added_tokens_decoder();
        let vocab_size = added
            .keys()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0)
            .max(inner.get_vocab_size(false));
        let special = added
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (id, t.content))
            .collect();
        Tokenizer {
            inner,
            special,
            vocab_size,
        }
    }

    /// Builds the byte-level BPE tokenizer a `gpt2`-model GGUF file
    /// describes, as llama.cpp runs it: vocabulary and merges from the
    /// metadata, the regex split of the `tokenizer.ggml.pre` type, control
    /// and user-defined tokens matched whole in the text, BOS/EOS added when
    /// the metadata says so, byte-level decoding.
    pub fn from_gguf(data: &GgufTokenizerData) -> Result<Tokenizer, TokenizerError> {
        if data.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel {
                model: data.model.clone(),
            });
        }
        let family = pre_family(data.pre.as_deref())?;
        if data.tokens.is_empty() {
            return Err(TokenizerError::BadGgufData {
                detail: "tokenizer.ggml.tokens is missing or empty".into(),
            });
        }
        let vocab: Vocab = data
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut merges = Vec::with_capacity(data.merges.len());
        for (i, m) in data.merges.iter().enumerate() {
            // As llama.cpp: the separator is the first space after the first
            // character (a merge may start with a literal space).
            let split_at = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(at, _)| at);
            match split_at {
                Some(at) => merges.push((m[..at].to_string(), m[at + 1..].to_string())),
                None => {
                    return Err(TokenizerError::BadGgufData {
                        detail: format!(
                            "tokenizer.ggml.merges[{i}] = {m:?} has no separating space"
                        ),
                    })
                }
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(family == PreFamily::Llama3)
            .build()
            .map_err(build_err)?;

        let mut tk = tokenizers::Tokenizer::new(bpe);
        tk.with_pre_tokenizer(Some(pre_tokenizer(family)?));
        tk.with_decoder(Some(ByteLevelDecoder::default()));

        // Control tokens are special (skipped by `decode(.., true)`);
        // user-defined ones are ordinary text that is matched whole.
        let mut specials = Vec::new();
        let mut user = Vec::new();
        for (id, &ty) in data.token_types.iter().enumerate() {
            let content = &data.tokens[id];
            match ty {
                token_type::CONTROL => specials.push(AddedToken::from(content.clone(), true)),
                token_type::USER_DEFINED => {
                    user.push(AddedToken::from(content.clone(), false).normalized(false))
                }
                _ => {}
            }
        }
        tk.add_special_tokens(&specials);
        tk.add_tokens(&user);

        let bos = data
            .add_bos_token
            .unwrap_or(false)
            .then_some(data.bos_token_id)
            .flatten();
        let eos = data
            .add_eos_token
            .unwrap_or(false)
            .then_some(data.eos_token_id)
            .flatten();
        if bos.is_some() || eos.is_some() {
            let mut single = Vec::new();
            let mut special_tokens = Vec::new();
            for id in [bos, eos].into_iter().flatten() {
                let token = data
                    .token(Some(id))
                    .ok_or_else(|| TokenizerError::BadGgufData {
                        detail: format!("BOS/EOS id {id} is not in tokenizer.ggml.tokens"),
                    })?;
                special_tokens.push((token.to_string(), id));
            }
            if let Some(id) = bos {
                single.push(data.tokens[id as usize].clone());
            }
            single.push("$A".to_string());
            if let Some(id) = eos {
                single.push(data.tokens[id as usize].clone());
            }
            let mut pair = single.clone();
            pair.push("$B:1".to_string());
            let post = TemplateProcessing::builder()
                .try_single(single)
                .map_err(build_err)?
                .try_pair(pair)
                .map_err(build_err)?
                .special_tokens(special_tokens)
                .build()
                .map_err(build_err)?;
            tk.with_post_processor(Some(post));
        }
        Ok(Tokenizer::wrap(tk))
    }

    /// Token ids of `text`. Special tokens written in the text (e.g.
    /// `<|im_start|>`) become their single id; `add_special_tokens` adds the
    /// BOS/EOS the tokenizer is configured to add around the text.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode {
                detail: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`. With `skip_special_tokens`, special tokens are
    /// left out; otherwise they appear as written (`<|im_end|>`).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let vocab_size = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(TokenizerError::UnknownId { id, vocab_size });
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                detail: e.to_string(),
            })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token's string as the vocabulary stores it (byte-level encoded
    /// for byte-level BPE, e.g. `Ġthe`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included (one past the largest id).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Special (control) tokens by id.
    pub fn special_tokens(&self) -> &BTreeMap<u32, String> {
        &self.special
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains_key(&id)
    }

    /// The tokenizer as canonical `tokenizer.json` text: what a model
    /// fingerprint hashes.
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.inner.to_string(false).map_err(build_err)
    }

    /// The underlying `tokenizers` tokenizer, for features not wrapped here.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy byte-level vocabulary: single bytes `a b c d 0 1 Ġ` and merges
    /// `a b`, `ab c`, `Ġ a`, plus control tokens.
    fn toy(pre: &str, add_bos: bool) -> GgufTokenizerData {
        let tokens: Vec<String> = [
            "<s>",
            "</s>",
            "<|im_start|>",
            "a",
            "b",
            "c",
            "d",
            "0",
            "1",
            "Ġ",
            "ab",
            "abc",
            "Ġa",
            "Ċ",
            "<tool>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut token_types = vec![token_type::NORMAL; tokens.len()];
        token_types[0] = token_type::CONTROL;
        token_types[1] = token_type::CONTROL;
        token_types[2] = token_type::CONTROL;
        token_types[14] = token_type::USER_DEFINED;
        GgufTokenizerData {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            token_types,
            merges: vec!["a b".into(), "ab c".into(), "Ġ a".into()],
            bos_token_id: Some(0),
            eos_token_id: Some(1),
            add_bos_token: Some(add_bos),
            ..Default::default()
        }
    }

    #[test]
    fn toy_bpe_merges_and_specials() {
        let t = Tokenizer::from_gguf(&toy("smollm", false)).unwrap();
        assert_eq!(t.encode("abc", false).unwrap(), vec![11]);
        assert_eq!(t.encode("abc a", false).unwrap(), vec![11, 12]);
        assert_eq!(t.encode("<|im_start|>abd", false).unwrap(), vec![2, 10, 6]);
        assert_eq!(t.encode("a<tool>b", false).unwrap(), vec![3, 14, 4]);
        assert_eq!(t.encode("a\n", false).unwrap(), vec![3, 13]);
        // smollm splits digits one by one.
        assert_eq!(t.encode("10", false).unwrap(), vec![8, 7]);
        assert_eq!(t.decode(&[2, 11, 12], false).unwrap(), "<|im_start|>abc a");
        assert_eq!(t.decode(&[2, 11, 12], true).unwrap(), "abc a");
        assert!(t.is_special(2) && !t.is_special(14));
        assert_eq!(t.special_tokens().len(), 3);
        assert_eq!(t.vocab_size(), 15);
        assert_eq!(t.token_to_id("Ġa"), Some(12));
        assert_eq!(t.id_to_token(11).as_deref(), Some("abc"));
        assert!(matches!(
            t.decode(&[15], false),
            Err(TokenizerError::UnknownId { id: 15, .. })
        ));
    }

    #[test]
    fn bos_is_added_only_when_asked() {
        let t = Tokenizer::from_gguf(&toy("gpt-2", true)).unwrap();
        assert_eq!(t.encode("ab", true).unwrap(), vec![0, 10]);
        assert_eq!(t.encode("ab", false).unwrap(), vec![10]);
        let t = Tokenizer::from_gguf(&toy("gpt-2", false)).unwrap();
        assert_eq!(t.encode("ab", true).unwrap(), vec![10]);
    }

    #[test]
    fn json_round_trip_keeps_behaviour() {
        let t = Tokenizer::from_gguf(&toy("smollm", false)).unwrap();
        let json = t.to_json().unwrap();
        let back = Tokenizer::from_json(json.as_bytes()).unwrap();
        for text in ["abc a", "<|im_start|>abd\n", "10 a"] {
            assert_eq!(
                t.encode(text, true).unwrap(),
                back.encode(text, true).unwrap()
            );
        }
        assert_eq!(back.special_tokens(), t.special_tokens());
    }

    #[test]
    fn unsupported_and_bad_metadata() {
        let mut d = toy("smollm", false);
        d.model = "llama".into();
        assert!(matches!(
            Tokenizer::from_gguf(&d),
            Err(TokenizerError::UnsupportedModel { .. })
        ));
        let d = toy("made-up-pre", false);
        let e = Tokenizer::from_gguf(&d).unwrap_err();
        assert!(
            e.to_string().contains("made-up-pre") && e.to_string().contains("smollm"),
            "{e}"
        );
        let mut d = toy("smollm", false);
        d.merges.push("nospace".into());
        assert!(matches!(
            Tokenizer::from_gguf(&d),
            Err(TokenizerError::BadGgufData { .. })
        ));
        let mut d = toy("smollm", false);
        d.merges.push("x y".into());
        assert!(matches!(
            Tokenizer::from_gguf(&d),
            Err(TokenizerError::Build { .. })
        ));
        let e = Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tokenizer.json"), "{e}");
    }

    fn smollm2() -> Option<Tokenizer> {
        let path = crate::gguf::tests::smollm2_path()?;
        let (data, _) = crate::gguf::load_gguf_tokenizer(&path).unwrap();
        Some(Tokenizer::from_gguf(&data).unwrap())
    }

    #[test]
    fn smollm2_round_trips_and_specials() {
        let Some(t) = smollm2() else { return };
        assert_eq!(t.vocab_size(), 49152);
        for text in [
            "Hello, world!",
            "  leading and trailing spaces  ",
            "Numbers: 3.14159, 2024-11-22, 1,000,000 and 42%.",
            "Ünïcödé — ñ, 中文字符, 日本語, emoji 🎉🚀, Ελληνικά",
            "line one\nline two\r\n\ttabbed\n\n\nthree blank",
            "def f(x):\n    return x ** 2  # comment",
            "",
        ] {
            let ids = t.encode(text, false).unwrap();
            assert_eq!(
                t.decode(&ids, false).unwrap(),
                text,
                "round trip of {text:?} via {ids:?}"
            );
        }
        let im_start = t.token_to_id("<|im_start|>").unwrap();
        assert_eq!(im_start, 1);
        assert_eq!(t.encode("<|im_start|>", false).unwrap(), vec![1]);
        let ids = t.encode("<|im_start|>user\nHi<|im_end|>\n", false).unwrap();
        assert_eq!(ids.first(), Some(&1));
        assert!(ids.contains(&2));
        assert_eq!(t.decode(&ids, true).unwrap(), "user\nHi\n");
        // No BOS for SmolLM2 (tokenizer.ggml.add_bos_token = false).
        assert_eq!(
            t.encode("Hi", true).unwrap(),
            t.encode("Hi", false).unwrap()
        );
    }

    /// Token ids of SmolLM2's GGUF from two independent references, which
    /// agree on every string: llama.cpp (llama-cpp-python 0.3.36,
    /// `tokenize(text, add_bos=False, special=True)`), and the Python
    /// `tokenizers` package (0.23) given the file's vocabulary and merges
    /// and configured the way SmolLM2's tokenizer.json is (`Digits`, then
    /// `ByteLevel` with its built-in regex). The Rust side builds the split
    /// from an explicit regex, so agreement checks the pre-tokenizer mapping.
    #[test]
    fn smollm2_matches_reference_ids() {
        let Some(t) = smollm2() else { return };
        for (text, expected) in REFERENCE_IDS {
            assert_eq!(&t.encode(text, false).unwrap(), expected, "{text:?}");
        }
    }

    const REFERENCE_IDS: &[(&str, &[u32])] = &[
        ("Hello, world!", &[19556, 28, 905, 17]),
        (
            "  leading and trailing spaces  ",
            &[216, 2899, 284, 35079, 5600, 256],
        ),
        (
            "Numbers: 3.14159, 2024-11-22, 1,000,000 and 42%.",
            &[
                39006, 42, 216, 35, 30, 33, 36, 33, 37, 41, 28, 216, 34, 32, 34, 36, 29, 33, 33,
                29, 34, 34, 28, 216, 33, 28, 32, 32, 32, 28, 32, 32, 32, 284, 216, 36, 34, 8006,
            ],
        ),
        (
            "Ünïcödé — ñ, 中文字符, 日本語, emoji 🎉🚀, Ελληνικά",
            &[
                142, 246, 94, 25972, 83, 7466, 84, 2756, 1841, 5549, 126, 28, 216, 28589, 29184,
                36518, 40562, 116, 28, 17097, 241, 115, 40993, 179, 120, 248, 28, 649, 33777,
                15107, 232, 227, 10813, 244, 218, 28, 5664, 239, 17162, 17162, 25723, 11517, 12001,
                21118, 26112,
            ],
        ),
        (
            "line one\nline two\r\n\ttabbed\n\n\nthree blank",
            &[
                1311, 582, 198, 1311, 827, 2738, 197, 15999, 5776, 1116, 198, 16347, 8884,
            ],
        ),
        (
            "def f(x):\n    return x ** 2  # comment",
            &[
                1604, 275, 24, 104, 727, 472, 1003, 1792, 1903, 216, 34, 216, 907, 5189,
            ],
        ),
        (
            "<|im_start|>user\nWhat's the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            &[
                1, 4093, 198, 1780, 506, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
            ],
        ),
        (
            "I'm sure they'll say we've done it",
            &[57, 5248, 2090, 502, 3060, 1643, 392, 3543, 2294, 357],
        ),
        ("a  b   c    d", &[81, 216, 278, 256, 265, 333, 287]),
    ];
}
