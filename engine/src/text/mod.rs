//! The text layer over the token engine: chat messages or a raw prompt in,
//! text out, with the conventions evaluation tools expect.
//!
//! - Chat messages are rendered with the model's chat template (generation
//!   prompt added) and encoded without adding special tokens, as
//!   `apply_chat_template` does; a raw prompt is encoded with the tokenizer's
//!   own special tokens, as an OpenAI-compatible `/completions` server does.
//! - Stop strings are watched while tokens are generated (incremental
//!   detokenization, so each check decodes only a few tokens), and the
//!   returned text ends before the first stop string, as OpenAI returns it.
//! - Log-likelihood follows lm-evaluation-harness: the context's trailing
//!   whitespace moves to the continuation, context and context+continuation
//!   are encoded separately and the continuation's tokens are
//!   `whole[len(context):]`; an empty context becomes the prefix token (BOS,
//!   else EOS); too long inputs lose context tokens from the left.

mod stop;

pub use stop::{StopChecker, StopCheckers};

use crate::chat::{ChatMessage, SystemRole};
use crate::chat_template::{ChatTemplate, ChatTemplateError};
use crate::engine::{
    FinishReason, GenerateOutput, GenerateRequest, LlmEngine, LoglikelihoodRequest,
    LoglikelihoodScore,
};
use crate::error::EngineError;
use crate::executor::Executor;
use crate::tokenizer::{Tokenizer, TokenizerError};

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Template(#[from] ChatTemplateError),
    #[error(
        "the model has no chat template, so chat messages cannot be turned into a prompt; use \
         endpoint = \"completions\" with a `prompt` template in the job, or a model that ships a \
         chat template"
    )]
    NoChatTemplate,
    /// Parameters the engine cannot honour.
    #[error("{0}")]
    Params(String),
    /// An input that cannot be scored or generated as asked.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What the model is asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Chat turns, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Text given to the model as is.
    Raw(String),
}

/// Generation parameters in text terms.
#[derive(Clone, Debug, PartialEq)]
pub struct TextParams {
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// `0` disables top-k.
    pub top_k: usize,
    pub seed: u64,
    pub sample_index: u64,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
}

impl Default for TextParams {
    fn default() -> Self {
        TextParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            sample_index: 0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl TextParams {
    /// Checks the values the samplers cannot honour.
    pub fn validate(&self) -> Result<(), TextError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(TextError::Params("temperature must be at least 0".into()));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(TextError::Params(
                "top_p must be greater than 0 and at most 1".into(),
            ));
        }
        Ok(())
    }
}

/// A generation request ready for the engine, with its stop-string watcher.
#[derive(Clone, Debug)]
pub struct PreparedGeneration {
    pub request: GenerateRequest,
    pub stop: StopChecker,
}

/// A finished generation, in text.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedText {
    /// Decoded without special tokens, cut before the first stop string.
    pub text: String,
    /// `"stop"` (stop string, stop token or EOS) or `"length"`, as OpenAI.
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    /// Tokens the model produced, the stop token included.
    pub completion_tokens: usize,
    pub cached_prompt_tokens: usize,
}

/// The token form of a log-likelihood request.
#[derive(Clone, Debug, PartialEq)]
pub struct LoglikelihoodTokens {
    pub request: LoglikelihoodRequest,
    /// Context tokens dropped from the left to fit the model.
    pub truncated: usize,
}

/// A scored continuation.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredContinuation {
    pub output: LoglikelihoodScore,
    pub context_tokens: usize,
    pub continuation_tokens: usize,
    pub truncated: usize,
}

/// A model's text side: tokenizer, chat template and special ids.
#[derive(Debug)]
pub struct TextModel {
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    /// What an empty log-likelihood context becomes (lm-eval's
    /// `prefix_token_id`): BOS, else the first end-of-generation id.
    prefix_token_id: Option<u32>,
    eos_token_ids: Vec<u32>,
}

impl TextModel {
    pub fn new(
        tokenizer: Tokenizer,
        chat_template: Option<ChatTemplate>,
        bos_token_id: Option<u32>,
        eos_token_ids: Vec<u32>,
    ) -> TextModel {
        TextModel {
            prefix_token_id: bos_token_id.or_else(|| eos_token_ids.first().copied()),
            tokenizer,
            chat_template,
            eos_token_ids,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// The prompt as the model reads it.
    pub fn render(&self, prompt: &Prompt, system_role: SystemRole) -> Result<String, TextError> {
        match prompt {
            Prompt::Raw(text) => Ok(text.clone()),
            Prompt::Chat(messages) => {
                let template = self
                    .chat_template
                    .as_ref()
                    .ok_or(TextError::NoChatTemplate)?;
                Ok(template.render(messages, true, system_role)?)
            }
        }
    }

    /// The prompt's token ids (see the module notes on special tokens).
    pub fn encode_prompt(
        &self,
        prompt: &Prompt,
        system_role: SystemRole,
    ) -> Result<Vec<u32>, TextError> {
        let text = self.render(prompt, system_role)?;
        let add_special = matches!(prompt, Prompt::Raw(_));
        Ok(self.tokenizer.encode(&text, add_special)?)
    }

    /// Encodes the prompt and sets up the request and its stop strings.
    pub fn prepare_generation(
        &self,
        prompt: &Prompt,
        params: &TextParams,
        system_role: SystemRole,
    ) -> Result<PreparedGeneration, TextError> {
        let prompt_tokens = self.encode_prompt(prompt, system_role)?;
        if prompt_tokens.is_empty() {
            return Err(TextError::Input("the prompt encodes to no tokens".into()));
        }
        Ok(PreparedGeneration {
            request: GenerateRequest {
                prompt_tokens,
                max_tokens: params.max_tokens,
                temperature: params.temperature,
                top_p: params.top_p,
                top_k: params.top_k,
                seed: params.seed,
                sample_index: params.sample_index,
                stop_token_ids: params.stop_token_ids.clone(),
                ignore_eos: params.ignore_eos,
            },
            stop: StopChecker::new(&params.stop),
        })
    }

    /// The text of a finished generation.
    pub fn complete(
        &self,
        stop: &StopChecker,
        output: &GenerateOutput,
    ) -> Result<GeneratedText, TextError> {
        let full = self.tokenizer.decode(&output.tokens, true)?;
        let (text, hit) = stop.truncate(full);
        let stopped = hit
            || matches!(
                output.finish_reason,
                FinishReason::StopToken(_) | FinishReason::Stopped
            );
        let stop_token = usize::from(matches!(output.finish_reason, FinishReason::StopToken(_)));
        Ok(GeneratedText {
            text,
            finish_reason: if stopped { "stop" } else { "length" },
            prompt_tokens: output.prompt_tokens,
            completion_tokens: output.tokens.len() + stop_token,
            cached_prompt_tokens: output.cached_prompt_tokens,
        })
    }

    /// The token ids lm-evaluation-harness would score for `continuation`
    /// after `context`, fitted into `max_model_len` positions.
    pub fn loglikelihood_tokens(
        &self,
        context: &str,
        continuation: &str,
        max_model_len: usize,
    ) -> Result<LoglikelihoodTokens, TextError> {
        let (mut context_tokens, continuation_tokens) = if context.is_empty() {
            let prefix = self.prefix_token_id.ok_or_else(|| {
                TextError::Input(
                    "an empty context needs a BOS or EOS token to stand for it, and this model's \
                     tokenizer has neither"
                        .into(),
                )
            })?;
            (vec![prefix], self.tokenizer.encode(continuation, false)?)
        } else {
            let kept = context.trim_end();
            let (context, moved) = context.split_at(kept.len());
            let continuation = format!("{moved}{continuation}");
            let whole = self
                .tokenizer
                .encode(&format!("{context}{continuation}"), true)?;
            let context_tokens = self.tokenizer.encode(context, true)?;
            let split = context_tokens.len().min(whole.len());
            (context_tokens, whole[split..].to_vec())
        };
        if continuation_tokens.is_empty() {
            return Err(TextError::Input(format!(
                "the continuation {continuation:?} adds no token after the context, so there is \
                 nothing to score"
            )));
        }
        if context_tokens.is_empty() {
            context_tokens.extend(self.prefix_token_id);
            if context_tokens.is_empty() {
                return Err(TextError::Input(
                    "the context encodes to no tokens and the tokenizer has no BOS or EOS to \
                     stand for it"
                        .into(),
                ));
            }
        }
        // The model reads all but the last token: context + continuation - 1
        // positions must fit.
        let room = max_model_len + 1;
        let total = context_tokens.len() + continuation_tokens.len();
        let mut truncated = 0;
        if total > room {
            let excess = total - room;
            if excess >= context_tokens.len() {
                return Err(TextError::Input(format!(
                    "the continuation alone is {} tokens, more than the model's {max_model_len} \
                     positions leave for it",
                    continuation_tokens.len()
                )));
            }
            context_tokens.drain(..excess);
            truncated = excess;
        }
        Ok(LoglikelihoodTokens {
            request: LoglikelihoodRequest {
                context_tokens,
                continuation_tokens,
            },
            truncated,
        })
    }

    /// Runs prepared generations to the end on `engine` (batched), stopping
    /// each at its stop strings.
    pub fn generate<E: Executor>(
        &self,
        engine: &mut LlmEngine<E>,
        prepared: Vec<PreparedGeneration>,
    ) -> Result<Vec<GeneratedText>, TextError> {
        let (requests, mut stops): (Vec<_>, Vec<_>) =
            prepared.into_iter().map(|p| (p.request, p.stop)).unzip();
        let outputs =
            engine.generate_with(requests, |i, tokens| stops[i].push(&self.tokenizer, tokens))?;
        outputs
            .iter()
            .zip(&stops)
            .map(|(out, stop)| self.complete(stop, out))
            .collect()
    }

    /// Scores `(context, continuation)` pairs on `engine` (batched).
    pub fn loglikelihood<E: Executor>(
        &self,
        engine: &mut LlmEngine<E>,
        pairs: &[(String, String)],
    ) -> Result<Vec<ScoredContinuation>, TextError> {
        let max_len = engine.max_model_len();
        let prepared = pairs
            .iter()
            .map(|(c, x)| self.loglikelihood_tokens(c, x, max_len))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = engine.loglikelihood(prepared.iter().map(|p| p.request.clone()).collect())?;
        Ok(outputs
            .into_iter()
            .zip(prepared)
            .map(|(output, p)| ScoredContinuation {
                output,
                context_tokens: p.request.context_tokens.len(),
                continuation_tokens: p.request.continuation_tokens.len(),
                truncated: p.truncated,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;
    use crate::engine::EngineSettings;
    use crate::engine::TokenAction;
    use crate::gguf::{token_type, GgufTokenizerData};
    use crate::testing::{random_weights, tiny_config};

    /// GPT-2's byte → printable character map.
    fn byte_chars() -> Vec<char> {
        let printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
        let mut out = vec!['\0'; 256];
        let mut extra = 0;
        for b in 0..256u32 {
            let c = if printable.contains(&b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            out[b as usize] = char::from_u32(c).unwrap();
        }
        out
    }

    /// Every byte as a token, a few merges (`Ġa`, `ab`, `Ġab`, `\n\n`...),
    /// and BOS/EOS: any text can be encoded and decoded.
    fn toy_tokenizer(add_bos: bool) -> (Tokenizer, u32, u32) {
        let chars = byte_chars();
        let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        let g = chars[b' ' as usize];
        let nl = chars[b'\n' as usize];
        let merges = [
            (format!("{g}"), "a".to_string()),
            ("a".into(), "b".into()),
            (format!("{g}a"), "b".into()),
            (format!("{nl}"), format!("{nl}")),
            ("A".into(), ":".into()),
        ];
        for (l, r) in &merges {
            tokens.push(format!("{l}{r}"));
        }
        let bos = tokens.len() as u32;
        tokens.push("<s>".into());
        let eos = tokens.len() as u32;
        tokens.push("</s>".into());
        let mut token_types = vec![token_type::NORMAL; tokens.len()];
        token_types[bos as usize] = token_type::CONTROL;
        token_types[eos as usize] = token_type::CONTROL;
        let data = GgufTokenizerData {
            model: "gpt2".into(),
            pre: Some("gpt-2".into()),
            tokens,
            token_types,
            merges: merges.iter().map(|(l, r)| format!("{l} {r}")).collect(),
            bos_token_id: Some(bos),
            eos_token_id: Some(eos),
            add_bos_token: Some(add_bos),
            ..Default::default()
        };
        (Tokenizer::from_gguf(&data).unwrap(), bos, eos)
    }

    fn text_model(add_bos: bool, template: Option<&str>) -> TextModel {
        let (tk, bos, eos) = toy_tokenizer(add_bos);
        let template = template.map(|t| ChatTemplate::new(t, Some("<s>"), Some("</s>")).unwrap());
        TextModel::new(tk, template, Some(bos), vec![eos])
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn continuation_split_follows_lm_eval() {
        let tm = text_model(false, None);
        let tk = tm.tokenizer();
        // The trailing space moves to the continuation, where the tokenizer
        // merges it with the word (`Ġab` is one token).
        let t = tm.loglikelihood_tokens("Q: x\nA: ", "ab", 100).unwrap();
        assert_eq!(
            t.request.context_tokens,
            tk.encode("Q: x\nA:", true).unwrap()
        );
        assert_eq!(
            t.request.continuation_tokens,
            tk.encode(" ab", false).unwrap()
        );
        assert_eq!(t.request.continuation_tokens.len(), 1);
        assert_eq!(t.truncated, 0);
        // Same tokens whether the delimiter is on the context or the
        // continuation side.
        let u = tm.loglikelihood_tokens("Q: x\nA:", " ab", 100).unwrap();
        assert_eq!(t, u);
        // The continuation is whole[len(context):] even when a merge
        // crosses the boundary: " a" + "bc" encodes as `Ġab c`, so the
        // context's last token (`Ġa`) is not a prefix of the whole and the
        // slice is taken anyway, as lm-eval does.
        let v = tm.loglikelihood_tokens("x a", "bc", 100).unwrap();
        let whole = tk.encode("x abc", true).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(v.request.continuation_tokens, whole[2..].to_vec());
        let e = tm.loglikelihood_tokens("x a", "b", 100).unwrap_err();
        assert!(e.to_string().contains("nothing to score"), "{e}");
        // With BOS added by the tokenizer, both encodings start with it.
        let tb = text_model(true, None);
        let w = tb.loglikelihood_tokens("Q: x\nA: ", "ab", 100).unwrap();
        assert_eq!(w.request.context_tokens[0], tb.prefix_token_id.unwrap());
        assert_eq!(w.request.continuation_tokens, t.request.continuation_tokens);
    }

    #[test]
    fn empty_context_long_inputs_and_empty_continuations() {
        let tm = text_model(false, None);
        let bos = tm.prefix_token_id.unwrap();
        let t = tm.loglikelihood_tokens("", "ab ab", 100).unwrap();
        assert_eq!(t.request.context_tokens, vec![bos]);
        assert_eq!(
            t.request.continuation_tokens,
            tm.tokenizer().encode("ab ab", false).unwrap()
        );
        // 10 context tokens + 1 continuation token into 6 positions: the
        // model reads 7 - 1, so 4 context tokens go, from the left.
        let t = tm.loglikelihood_tokens("0123456789", "x", 6).unwrap();
        assert_eq!(t.truncated, 4);
        assert_eq!(
            t.request.context_tokens,
            tm.tokenizer().encode("456789", true).unwrap()
        );
        let e = tm.loglikelihood_tokens("01", "xyzxyzxyz", 4).unwrap_err();
        assert!(e.to_string().contains("continuation alone"), "{e}");
        let e = tm.loglikelihood_tokens("abc", "", 100).unwrap_err();
        assert!(e.to_string().contains("nothing to score"), "{e}");
    }

    #[test]
    fn stop_strings_are_found_across_tokens_and_cut_from_the_text() {
        let tm = text_model(false, None);
        let tk = tm.tokenizer();
        let ids = tk
            .encode("The answer: Paris\n\nQuestion: next", false)
            .unwrap();
        let mut stop = StopChecker::new(&strings(&["\n\nQuestion", "never"]));
        let mut stopped_at = None;
        for n in 1..=ids.len() {
            if stop.push(tk, &ids[..n]) == TokenAction::Stop {
                stopped_at = Some(n);
                break;
            }
        }
        let n = stopped_at.expect("the stop string is in the text");
        // It stops on the token that completes "\n\nQuestion", not before.
        let partial = tk.decode(&ids[..n], true).unwrap();
        assert!(partial.contains("\n\nQuestion"), "{partial:?}");
        assert!(!tk
            .decode(&ids[..n - 1], true)
            .unwrap()
            .contains("\n\nQuestion"));
        assert_eq!(
            stop.truncate(partial),
            ("The answer: Paris".to_string(), true)
        );
        // No stop strings: nothing is decoded, nothing cut.
        let mut none = StopChecker::new(&strings(&[""]));
        assert!(none.is_empty());
        assert_eq!(none.push(tk, &ids), TokenAction::Continue);
        assert_eq!(none.truncate("a b".into()), ("a b".to_string(), false));
        // The earliest of several stop strings wins.
        let two = StopChecker::new(&strings(&["b", "a"]));
        assert_eq!(two.truncate("xxbxa".into()), ("xx".to_string(), true));
    }

    #[test]
    fn multibyte_text_is_not_split_inside_a_character() {
        let tm = text_model(false, None);
        let tk = tm.tokenizer();
        // "é" and "→" are two and three byte tokens here.
        let ids = tk.encode("café → end", false).unwrap();
        let mut stop = StopChecker::new(&strings(&["→"]));
        let mut hit = None;
        for n in 1..=ids.len() {
            if stop.push(tk, &ids[..n]) == TokenAction::Stop {
                hit = Some(n);
                break;
            }
        }
        let n = hit.unwrap();
        assert_eq!(tk.decode(&ids[..n], true).unwrap(), "café →");
        assert_eq!(stop.text, "café →");
    }

    #[test]
    fn chat_prompts_use_the_template_and_raw_prompts_the_tokenizer() {
        let template = "{% for m in messages %}<s>{{ m.role }}: {{ m.content }}\n{% endfor %}\
                        {% if add_generation_prompt %}assistant:{% endif %}";
        let tm = text_model(true, Some(template));
        let chat = Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            },
        ]);
        let text = tm.render(&chat, SystemRole::Keep).unwrap();
        assert_eq!(text, "<s>system: Be brief.\n<s>user: Hi\nassistant:");
        let folded = tm.render(&chat, SystemRole::Fold).unwrap();
        assert_eq!(folded, "<s>user: Be brief.\n\nHi\nassistant:");
        // The template writes BOS itself: no second one from the tokenizer.
        let ids = tm.encode_prompt(&chat, SystemRole::Keep).unwrap();
        assert_eq!(ids, tm.tokenizer().encode(&text, false).unwrap());
        let raw = tm
            .encode_prompt(&Prompt::Raw("Hi".into()), SystemRole::Keep)
            .unwrap();
        assert_eq!(raw[0], tm.prefix_token_id.unwrap());
        let none = text_model(false, None);
        assert!(matches!(
            none.render(&chat, SystemRole::Keep),
            Err(TextError::NoChatTemplate)
        ));
    }

    #[test]
    fn generation_stops_at_a_stop_string_on_a_real_model() {
        let tm = text_model(false, None);
        let mut config = tiny_config(Architecture::Llama);
        config.vocab_size = tm.tokenizer().vocab_size();
        config.eos_token_ids = tm.eos_token_ids().to_vec();
        let settings = EngineSettings {
            num_kv_blocks: Some(64),
            ..EngineSettings::default()
        };
        let mut engine =
            LlmEngine::new_cpu(config.clone(), random_weights(&config, 5), &settings).unwrap();
        let params = TextParams {
            max_tokens: 24,
            ignore_eos: true,
            ..TextParams::default()
        };
        let prompt = Prompt::Raw("Once upon a time".into());
        let free = tm
            .generate(
                &mut engine,
                vec![tm
                    .prepare_generation(&prompt, &params, SystemRole::Keep)
                    .unwrap()],
            )
            .unwrap()
            .remove(0);
        assert_eq!(free.finish_reason, "length");
        assert_eq!(free.completion_tokens, 24);
        // A stop string taken from the middle of the free text: the output
        // must end right before its first occurrence, and generation must
        // stop early.
        // Two characters from the middle (not U+FFFD, which random bytes
        // decode to and which is never a complete character to wait for).
        let chars: Vec<char> = free.text.chars().collect();
        let at = (chars.len() / 3..chars.len() - 1)
            .find(|&i| !chars[i..i + 2].contains(&'\u{FFFD}'))
            .expect("two decodable characters");
        let stop_text: String = chars[at..at + 2].iter().collect();
        let first = free.text.find(&stop_text).unwrap();
        let with_stop = TextParams {
            stop: vec![stop_text.clone()],
            ..params.clone()
        };
        let out = tm
            .generate(
                &mut engine,
                vec![tm
                    .prepare_generation(&prompt, &with_stop, SystemRole::Keep)
                    .unwrap()],
            )
            .unwrap()
            .remove(0);
        assert_eq!(out.text, free.text[..first], "stop {stop_text:?}");
        assert_eq!(out.finish_reason, "stop");
        assert!(out.completion_tokens < 24);
    }
}
