//! The fake server's deterministic "language model": tokenizer, answers, stop/length handling and
//! log-probabilities. Everything here is a pure function so tests can predict every response.

use sha2::{Digest, Sha256};

/// Splits text into tokens: optional leading whitespace followed by a run of non-whitespace, so
/// `" Paris"` is one token and concatenating the tokens gives the text back exactly. Trailing
/// whitespace becomes a token of its own.
pub fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                tokens.push(&text[start..i]);
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        tokens.push(&text[start..]);
    }
    tokens
}

/// Number of tokens the fake server reports in `usage` for `text`.
pub fn token_count(text: &str) -> u64 {
    tokenize(text).len() as u64
}

/// The answer the fake model gives when `FakeConfig::answers` has none for the prompt: a function
/// of the prompt and, when sampling (temperature > 0), of the temperature and seed. Greedy decoding
/// ignores the seed, as a real model does.
pub fn default_answer(prompt: &str, seed: Option<i64>, temperature: f64) -> String {
    let sampling = if temperature > 0.0 {
        match seed {
            Some(seed) => format!("t={temperature};seed={seed}"),
            None => format!("t={temperature};unseeded"),
        }
    } else {
        "greedy".to_string()
    };
    let hash = hex::encode(digest(&[prompt, &sampling]));
    format!("answer-{} (fake reply)", &hash[..8])
}

/// Generated text after applying stop sequences and the token budget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generation {
    pub text: String,
    /// `"stop"` (natural end or stop sequence) or `"length"` (cut at `max_tokens`).
    pub finish_reason: &'static str,
}

/// Cuts `answer` at the first stop sequence (the stop text itself is not returned, as with
/// OpenAI), then at `max_tokens` tokens.
pub(crate) fn generate(answer: &str, stop: &[String], max_tokens: Option<u32>) -> Generation {
    let cut = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| answer.find(s.as_str()))
        .min()
        .unwrap_or(answer.len());
    let text = &answer[..cut];
    let tokens = tokenize(text);
    match max_tokens {
        Some(max) if tokens.len() > max as usize => Generation {
            text: tokens[..max as usize].concat(),
            finish_reason: "length",
        },
        _ => Generation {
            text: text.to_string(),
            finish_reason: "stop",
        },
    }
}

/// Log-probability of one token and the top alternatives at its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenScore {
    pub logprob: f64,
    /// Best first; always contains the token itself.
    pub top: Vec<(String, f64)>,
}

/// Fillers used as the alternatives a real model would have ranked at a position.
const ALTERNATIVES: [&str; 6] = [" the", " a", " of", " and", " to", " is"];

/// Scores `token` after `prev`. Favoured continuations (see `FakeConfig::favoured_continuations`)
/// and generated tokens are the argmax; any other prompt token gets a lower log-probability than
/// an alternative, so it is not greedy. All values are deterministic and <= 0.
pub(crate) fn score_token(
    prev: &str,
    token: &str,
    favoured: &[String],
    generated: bool,
    top_n: usize,
) -> TokenScore {
    let u = unit(prev, token, "lp");
    let favoured_here = is_favoured(prev, token, favoured);
    let is_argmax = generated || favoured_here;
    let logprob = if favoured_here {
        -0.01
    } else if generated {
        -(0.02 + 0.5 * u)
    } else {
        -(1.0 + 7.0 * u)
    };
    // The best alternative sits just above (not argmax case) or well below the token.
    let best_alt = if is_argmax {
        logprob - 1.0
    } else {
        -(0.05 + 0.45 * unit(prev, token, "alt"))
    };
    let mut top: Vec<(String, f64)> = vec![(token.to_string(), logprob)];
    let offset = (unit(prev, token, "pick") * ALTERNATIVES.len() as f64) as usize;
    let alternatives = (0..ALTERNATIVES.len())
        .map(|k| ALTERNATIVES[(offset + k) % ALTERNATIVES.len()])
        .filter(|alt| *alt != token);
    for (rank, alt) in alternatives.enumerate() {
        top.push((alt.to_string(), best_alt - 0.75 * rank as f64));
    }
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(top_n);
    // Like vLLM: the sampled token is always listed, even when it is outside the top N.
    if !top.iter().any(|(t, _)| t == token) {
        top.push((token.to_string(), logprob));
    }
    TokenScore { logprob, top }
}

/// True when `token` continues one of the favoured texts inside `prev + token`. Leading
/// whitespace is ignored so `"Paris"` and `" Paris"` favour the same token.
fn is_favoured(prev: &str, token: &str, favoured: &[String]) -> bool {
    let word = token.trim_start();
    if word.is_empty() {
        return false;
    }
    let text = format!("{prev}{token}");
    favoured.iter().any(|fav| {
        let mut end = 0;
        tokenize(fav).iter().any(|piece| {
            end += piece.len();
            piece.trim_start() == word && text.ends_with(fav[..end].trim_start())
        })
    })
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        // A separator keeps ("ab", "c") and ("a", "bc") apart.
        hasher.update([0x1f]);
    }
    hasher.finalize().into()
}

/// A deterministic number in [0, 1) derived from the context.
fn unit(prev: &str, token: &str, salt: &str) -> f64 {
    let d = digest(&[salt, prev, token]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_round_trips_and_keeps_leading_space() {
        let text = "The capital of France is Paris.\n";
        let tokens = tokenize(text);
        assert_eq!(
            tokens,
            ["The", " capital", " of", " France", " is", " Paris.", "\n"]
        );
        assert_eq!(tokens.concat(), text);
        assert_eq!(tokenize("  a"), ["  a"]);
        assert!(tokenize("").is_empty());
    }

    #[test]
    fn answers_depend_on_seed_only_when_sampling() {
        assert_eq!(
            default_answer("q", Some(1), 0.0),
            default_answer("q", Some(2), 0.0)
        );
        assert_ne!(
            default_answer("q", Some(1), 0.7),
            default_answer("q", Some(2), 0.7)
        );
        assert_ne!(
            default_answer("q", None, 0.0),
            default_answer("r", None, 0.0)
        );
    }

    #[test]
    fn generate_applies_stop_then_length() {
        let g = generate("one two\nthree four", &["\n".to_string()], Some(10));
        assert_eq!(
            g,
            Generation {
                text: "one two".into(),
                finish_reason: "stop"
            }
        );
        let g = generate("one two three", &[], Some(2));
        assert_eq!(
            g,
            Generation {
                text: "one two".into(),
                finish_reason: "length"
            }
        );
        let g = generate("one two", &[], Some(0));
        assert_eq!(g.text, "");
    }

    #[test]
    fn favoured_tokens_are_argmax_and_others_are_not() {
        let fav = vec![" New York".to_string()];
        let s = score_token("City: New", " York", &fav, false, 1);
        assert_eq!(s.logprob, -0.01);
        assert_eq!(s.top[0].0, " York");
        let s = score_token("City:", " Boston", &fav, false, 2);
        assert!(s.logprob < 0.0 && s.top[0].0 != " Boston");
        assert!(s.top.iter().any(|(t, _)| t == " Boston"));
        assert!(s.top.iter().all(|(_, lp)| *lp <= 0.0));
    }
}
