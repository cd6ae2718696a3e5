//! `[model.prompt_format]`: how chat messages become one prompt for a model
//! that has no chat template (a base model on the engine, or an API that
//! only offers `/v1/completions`), after LiteLLM's prompt templates.
//!
//! - Without role strings, the messages' contents are joined with a space,
//!   as LiteLLM's default for base models does.
//! - With role strings (LiteLLM's `register_prompt_template`), each message
//!   is its role's `pre`, its content, its role's `post` (a role left out
//!   adds nothing around its content); the prompt starts with `bos` and
//!   `initial`, each assistant turn is followed by `eos`, a system or user
//!   turn after an assistant turn opens with `bos` again, and `final` ends
//!   the prompt. LiteLLM writes that last rule for the role `human`, which
//!   OpenAI-style messages never have, so its `bos` only reopens before a
//!   system turn; here it reopens before a user turn too, which is what
//!   its comment says and what Llama 2's format (`<s>[INST] … [/INST] …
//!   </s><s>[INST] …`) needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::request::ChatMessage;

/// `[model.prompt_format]`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct PromptFormat {
    /// Around each system turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<RoleStrings>,
    /// Around each user turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<RoleStrings>,
    /// Around each assistant turn (few-shot answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<RoleStrings>,
    /// Text at the very start, and again before a system or user turn that
    /// follows an assistant turn. Text, not a token id: leave it out where
    /// the tokenizer adds its own BOS (the engine, most servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos: Option<String>,
    /// Text after each assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos: Option<String>,
    /// Text after `bos` at the start (LiteLLM's `initial_prompt_value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Text at the end, e.g. the assistant's cue (LiteLLM's
    /// `final_prompt_value`).
    #[serde(default, rename = "final", skip_serializing_if = "Option::is_none")]
    pub final_text: Option<String>,
}

/// A role's strings: `pre` goes before each of its turns' content, `post`
/// after it.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleStrings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<String>,
}

impl PromptFormat {
    /// Whether any role has strings; without them the contents are joined.
    pub fn has_roles(&self) -> bool {
        self.system.is_some() || self.user.is_some() || self.assistant.is_some()
    }

    /// The fields that only role strings use, with their names, for
    /// validation.
    pub(crate) fn framing(&self) -> [(&'static str, Option<&String>); 4] {
        [
            ("bos", self.bos.as_ref()),
            ("eos", self.eos.as_ref()),
            ("initial", self.initial.as_ref()),
            ("final", self.final_text.as_ref()),
        ]
    }

    fn role(&self, role: &str) -> Option<&RoleStrings> {
        match role {
            "system" => self.system.as_ref(),
            "user" => self.user.as_ref(),
            "assistant" => self.assistant.as_ref(),
            _ => None,
        }
    }

    /// The prompt `messages` become.
    pub fn apply(&self, messages: &[ChatMessage]) -> String {
        if !self.has_roles() {
            return messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join(" ");
        }
        let bos = text(&self.bos);
        let mut prompt = format!("{bos}{}", text(&self.initial));
        let mut bos_open = true;
        for message in messages {
            let role = message.role.as_str();
            if matches!(role, "system" | "user") && !bos_open {
                prompt.push_str(bos);
                bos_open = true;
            }
            let strings = self.role(role);
            prompt.push_str(strings.map(|s| text(&s.pre)).unwrap_or_default());
            prompt.push_str(&message.content);
            prompt.push_str(strings.map(|s| text(&s.post)).unwrap_or_default());
            if role == "assistant" {
                prompt.push_str(text(&self.eos));
                bos_open = false;
            }
        }
        prompt.push_str(text(&self.final_text));
        prompt
    }
}

/// An optional string of the format, empty when unset.
fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(list: &[(&str, &str)]) -> Vec<ChatMessage> {
        list.iter()
            .map(|(role, content)| ChatMessage {
                role: role.to_string(),
                content: content.to_string(),
            })
            .collect()
    }

    fn strings(pre: &str, post: &str) -> Option<RoleStrings> {
        Some(RoleStrings {
            pre: Some(pre.into()),
            post: Some(post.into()),
        })
    }

    #[test]
    fn without_roles_the_contents_are_joined_with_a_space() {
        let messages = turns(&[("system", "Be brief."), ("user", "Hi"), ("user", "there")]);
        assert_eq!(
            PromptFormat::default().apply(&messages),
            "Be brief. Hi there"
        );
        assert_eq!(PromptFormat::default().apply(&[]), "");
    }

    #[test]
    fn llama2_role_strings_reopen_bos_after_each_answer() {
        let format = PromptFormat {
            system: strings("[INST] <<SYS>>\n", "\n<</SYS>>\n [/INST]\n"),
            user: strings("[INST] ", " [/INST]\n"),
            assistant: Some(RoleStrings {
                pre: None,
                post: Some("\n".into()),
            }),
            bos: Some("<s>".into()),
            eos: Some("</s>".into()),
            ..PromptFormat::default()
        };
        let messages = turns(&[
            ("system", "Be brief."),
            ("user", "2+2?"),
            ("assistant", "4"),
            ("user", "3+3?"),
        ]);
        assert_eq!(
            format.apply(&messages),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n [/INST]\n[INST] 2+2? [/INST]\n4\n</s>\
             <s>[INST] 3+3? [/INST]\n"
        );
    }

    #[test]
    fn a_role_left_out_adds_nothing_and_initial_and_final_frame_the_prompt() {
        let format = PromptFormat {
            user: strings("Q: ", "\n"),
            initial: Some("Answer briefly.\n".into()),
            final_text: Some("A:".into()),
            ..PromptFormat::default()
        };
        let messages = turns(&[("system", "S "), ("user", "2+2?"), ("assistant", "4\n")]);
        assert_eq!(format.apply(&messages), "Answer briefly.\nS Q: 2+2?\n4\nA:");
    }

    #[test]
    fn a_wrong_type_or_unknown_key_is_named_by_its_field() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Wrapper {
            prompt_format: PromptFormat,
        }
        let parse = |text: &str| {
            let de = toml::Deserializer::new(text);
            serde_path_to_error::deserialize::<_, Wrapper>(de)
                .unwrap_err()
                .path()
                .to_string()
        };
        assert_eq!(
            parse("[prompt_format]\nuser = { pre = 3 }"),
            "prompt_format.user.pre"
        );
        assert_eq!(
            parse("[prompt_format]\nuser = { before = \"x\" }"),
            "prompt_format.user.before"
        );
    }
}
