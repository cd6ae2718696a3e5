//! Job requests in the engine's terms: the job spec's device, system-role
//! rule, chat messages and generation parameters mapped onto the engine's
//! own request types, so that the engine knows nothing of jobs.

use engine::{ChatMessage, Device, Prompt, SystemRole, TextError, TextParams};
use jobs::spec::{DeviceSpec, Endpoint, ENGINE_EXTRA_BODY_KEYS};
use jobs::{GenerationParams, RenderedInput};

use crate::backend::BackendError;

pub(super) fn device(spec: DeviceSpec) -> Device {
    match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda { ordinal } => Device::Cuda {
            ordinal: ordinal as usize,
        },
    }
}

pub(super) fn system_role(role: jobs::spec::SystemRole) -> SystemRole {
    match role {
        jobs::spec::SystemRole::Keep => SystemRole::Keep,
        jobs::spec::SystemRole::Fold => SystemRole::Fold,
    }
}

fn chat_messages(messages: &[jobs::ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
        .collect()
}

/// What a generation request asks the model, given the model's endpoint.
/// With `formatted` (`[model.prompt_format]` set), the planner has already
/// made the prompt the model reads out of the chat turns: it goes to the
/// model as is on either endpoint, never through a chat template.
pub(super) fn prompt(
    endpoint: Endpoint,
    formatted: bool,
    input: &RenderedInput,
) -> Result<Prompt, BackendError> {
    match (endpoint, input) {
        (_, RenderedInput::Prompt { prompt }) if formatted => Ok(Prompt::Raw(prompt.clone())),
        (Endpoint::Chat, RenderedInput::Messages { messages }) => {
            Ok(Prompt::Chat(chat_messages(messages)))
        }
        // As an OpenAI chat endpoint does with a plain prompt.
        (Endpoint::Chat, RenderedInput::Prompt { prompt }) => {
            Ok(Prompt::Chat(vec![ChatMessage::new("user", prompt.clone())]))
        }
        (Endpoint::Completions, RenderedInput::Prompt { prompt }) => {
            Ok(Prompt::Raw(prompt.clone()))
        }
        (Endpoint::Completions, RenderedInput::Messages { .. }) => Err(BackendError::Unsupported(
            "endpoint = \"completions\" gives the model a plain prompt, but this task renders \
             chat messages; use a `prompt` template in [task] or set endpoint = \"chat\" in \
             [model]"
                .into(),
        )),
    }
}

/// A job's generation parameters for sample `sample_index`: `top_k`,
/// `ignore_eos` and `stop_token_ids` may come from `extra_body` (vLLM's
/// names; any other key is refused rather than silently ignored); the
/// sample index selects the random stream of the (default 0) seed.
pub(super) fn text_params(
    params: &GenerationParams,
    sample_index: u32,
) -> Result<TextParams, TextError> {
    let bad = |key: &str, want: &str| {
        TextError::Params(format!(
            "extra_body.{key} must be {want} for the engine backend"
        ))
    };
    let mut out = TextParams {
        max_tokens: params.max_tokens as usize,
        temperature: params.temperature as f32,
        top_p: params.top_p.unwrap_or(1.0) as f32,
        seed: params.seed.unwrap_or(0),
        sample_index: u64::from(sample_index),
        stop: params.stop.clone(),
        ..TextParams::default()
    };
    for (key, value) in &params.extra_body {
        match key.as_str() {
            "top_k" => {
                // vLLM's -1 (and 0) mean "no top-k".
                out.top_k = match value.as_i64() {
                    Some(k) if k <= 0 => 0,
                    Some(k) => k as usize,
                    None => return Err(bad(key, "an integer (-1 or 0 for none)")),
                }
            }
            "ignore_eos" => {
                out.ignore_eos = value.as_bool().ok_or_else(|| bad(key, "true or false"))?
            }
            "stop_token_ids" => {
                out.stop_token_ids = value
                    .as_array()
                    .and_then(|ids| {
                        ids.iter()
                            .map(|id| id.as_u64().and_then(|n| u32::try_from(n).ok()))
                            .collect::<Option<Vec<u32>>>()
                    })
                    .ok_or_else(|| bad(key, "a list of token ids"))?
            }
            other => {
                return Err(TextError::Params(format!(
                    "extra_body.{other} is not supported by the engine backend (supported: {})",
                    ENGINE_EXTRA_BODY_KEYS.join(", ")
                )))
            }
        }
    }
    out.validate()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_from_job_read_extra_body_and_refuse_unknown_keys() {
        let mut p = GenerationParams {
            max_tokens: 7,
            temperature: 0.5,
            top_p: Some(0.9),
            stop: vec!["\n".to_string()],
            seed: Some(3),
            extra_body: serde_json::Map::new(),
        };
        p.extra_body.insert("top_k".into(), json!(-1));
        p.extra_body.insert("ignore_eos".into(), json!(true));
        p.extra_body.insert("stop_token_ids".into(), json!([5, 6]));
        let t = text_params(&p, 2).unwrap();
        assert_eq!(
            (t.max_tokens, t.top_k, t.seed, t.sample_index, t.ignore_eos),
            (7, 0, 3, 2, true)
        );
        assert_eq!(t.stop_token_ids, vec![5, 6]);
        assert!((t.top_p - 0.9).abs() < 1e-6);
        p.extra_body.insert("top_k".into(), json!(40));
        assert_eq!(text_params(&p, 0).unwrap().top_k, 40);
        p.extra_body.insert("top_k".into(), json!("many"));
        assert!(text_params(&p, 0).is_err());
        p.extra_body.remove("top_k");
        p.extra_body.insert("repetition_penalty".into(), json!(1.1));
        let e = text_params(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("repetition_penalty") && e.contains("top_k, ignore_eos"),
            "{e}"
        );
    }

    #[test]
    fn prompts_follow_the_endpoint() {
        let chat = RenderedInput::Messages {
            messages: vec![jobs::ChatMessage {
                role: "system".into(),
                content: "s".into(),
            }],
        };
        let raw = RenderedInput::Prompt { prompt: "p".into() };
        assert_eq!(
            prompt(Endpoint::Chat, false, &chat).unwrap(),
            Prompt::Chat(vec![ChatMessage::new("system", "s")])
        );
        assert_eq!(
            prompt(Endpoint::Chat, false, &raw).unwrap(),
            Prompt::Chat(vec![ChatMessage::new("user", "p")])
        );
        assert_eq!(
            prompt(Endpoint::Completions, false, &raw).unwrap(),
            Prompt::Raw("p".into())
        );
        assert!(prompt(Endpoint::Completions, false, &chat).is_err());
        // A prompt_format's prompt is the model's text on either endpoint.
        for endpoint in [Endpoint::Chat, Endpoint::Completions] {
            assert_eq!(
                prompt(endpoint, true, &raw).unwrap(),
                Prompt::Raw("p".into())
            );
        }
        assert_eq!(
            device(DeviceSpec::Cuda { ordinal: 1 }),
            Device::Cuda { ordinal: 1 }
        );
        assert_eq!(system_role(jobs::spec::SystemRole::Fold), SystemRole::Fold);
    }
}
