//! `[task]`: the prompt or chat turns, target, choices and few-shot
//! templates compile, and what the task kind needs is there.

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::model::{Endpoint, SystemRole};
use super::super::task::TaskKind;
use super::check_template;
use crate::template;

impl JobSpec {
    pub(super) fn validate_task(&self) -> Result<(), SpecError> {
        let t = &self.task;
        let env = template::template_env();
        match (&t.prompt, &t.messages) {
            (Some(_), Some(_)) => {
                return Err(SpecError::invalid(
                    "task.prompt",
                    "set either `prompt` or `messages`, not both",
                ))
            }
            (None, None) => {
                return Err(SpecError::invalid(
                    "task.prompt",
                    "set `prompt` (a template) or `messages` (chat turns)",
                ))
            }
            (Some(prompt), None) => check_template(&env, "task.prompt", prompt)?,
            (None, Some(messages)) => {
                if messages.is_empty() {
                    return Err(SpecError::invalid(
                        "task.messages",
                        "must have at least one turn",
                    ));
                }
                for (i, m) in messages.iter().enumerate() {
                    if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                        return Err(SpecError::invalid(
                            format!("task.messages[{i}].role"),
                            format!(
                                "unknown role {:?}, expected one of `system`, `user`, `assistant`",
                                m.role
                            ),
                        ));
                    }
                    check_template(&env, &format!("task.messages[{i}].content"), &m.content)?;
                }
                if !messages.iter().any(|m| m.role == "user") {
                    return Err(SpecError::invalid(
                        "task.messages",
                        "needs at least one turn with role = \"user\"",
                    ));
                }
                if self.model.system_role == SystemRole::Fold {
                    // Each system turn is folded into the next user turn;
                    // one with none after it has nowhere to go.
                    let last_user = messages.iter().rposition(|m| m.role == "user");
                    let stranded = messages
                        .iter()
                        .enumerate()
                        .find(|(i, m)| m.role == "system" && last_user.is_none_or(|u| u < *i));
                    if let Some((i, _)) = stranded {
                        return Err(SpecError::invalid(
                            format!("task.messages[{i}]"),
                            "is a system turn with no user turn after it: `system_role = \"fold\"` \
                             (in [model]) merges each system turn into the next user turn, for \
                             chat templates without a system role; move this turn before a user \
                             turn, or set `system_role = \"keep\"`",
                        ));
                    }
                }
                // `[model.prompt_format]` makes the one prompt that
                // `completions` sends out of the messages.
                if self.model.endpoint == Endpoint::Completions
                    && self.model.prompt_format.is_none()
                {
                    return Err(SpecError::invalid(
                        "task.messages",
                        "`endpoint = \"completions\"` sends a plain prompt: use `task.prompt` \
                         instead of `task.messages`, `endpoint = \"chat\"`, or \
                         `[model.prompt_format]` to join the messages into one prompt",
                    ));
                }
            }
        }
        if let Some(target) = &t.target {
            check_template(&env, "task.target", target)?;
        }
        if let Some(choices) = &t.choices {
            if let Err(e) = template::compile_expression(&env, choices) {
                return Err(SpecError::invalid(
                    "task.choices",
                    format!(
                        "is not a valid expression: {}",
                        template::describe_error(&e)
                    ),
                ));
            }
        }
        if let Some(fewshot) = &t.fewshot {
            if fewshot.path.as_os_str().is_empty() {
                return Err(SpecError::invalid("task.fewshot.path", "must not be empty"));
            }
            if fewshot.k > 0 && t.target.is_none() {
                return Err(SpecError::invalid(
                    "task.target",
                    "few-shot examples need a `target` template to render each example's answer",
                ));
            }
        }
        match t.kind {
            TaskKind::MultipleChoice => {
                if self.model.endpoint == Endpoint::Chat {
                    return Err(SpecError::invalid(
                        "model.endpoint",
                        "`kind = \"multiple_choice\"` is scored by log-likelihood, which needs the \
                         prompt's log-probabilities: set `endpoint = \"completions\"` (chat \
                         endpoints do not return them)",
                    ));
                }
                if t.choices.is_none() {
                    return Err(SpecError::invalid(
                        "task.choices",
                        "`kind = \"multiple_choice\"` needs `choices`, an expression giving the \
                         list of answer texts, e.g. \"choices\" or \"[A, B, C, D]\"",
                    ));
                }
                if t.target.is_none() {
                    return Err(SpecError::invalid(
                        "task.target",
                        "`kind = \"multiple_choice\"` needs `target`: the gold answer as an index \
                         (0-based), a letter (A, B, ...) or the choice text",
                    ));
                }
            }
            TaskKind::Generate => {
                let g = &t.generation;
                if g.max_tokens == 0 {
                    return Err(SpecError::invalid(
                        "task.generation.max_tokens",
                        "must be at least 1",
                    ));
                }
            }
        }
        self.validate_generation()
    }
}
