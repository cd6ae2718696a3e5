//! Planning one document: its input, its requests (one per sample or per
//! choice) and its gold answer.

use minijinja::value::Value as JinjaValue;

use crate::dataset::Doc;
use crate::render::{resolve_gold, RenderError};
use crate::request::{ChatMessage, InferenceRequest, RenderedInput, RequestType};
use crate::spec::{Endpoint, SystemRole, TaskKind};
use crate::template::letter_index;

use super::{gold_error, DocPlan, Planner, Row, PROMPT, TARGET};

impl Planner {
    /// Renders one document into its requests.
    pub fn plan_doc(&self, doc: &Doc) -> Result<DocPlan, RenderError> {
        let row = Row {
            fields: &doc.fields,
            location: doc.location(),
            id: doc.id.clone(),
        };
        let choices = self.eval_choices(&row, self.kind == TaskKind::MultipleChoice)?;
        let ctx = self.context(&row, choices.as_deref());
        let target = if self.has_target {
            Some(self.render(TARGET, &ctx, &row)?)
        } else {
            None
        };
        let gold: Result<usize, String> = match (&target, &choices) {
            (Some(t), Some(c)) => resolve_gold(t, c, self.target_kind),
            (Some(t), None) => t
                .trim()
                .parse::<usize>()
                .ok()
                .or_else(|| letter_index(t.trim()))
                .ok_or_else(|| format!("gold answer {t:?} is not a choice index or letter")),
            (None, _) => Err("the task has no `target` template".to_string()),
        };
        let gold_required = self.kind == TaskKind::MultipleChoice || self.needs_gold;
        let gold_index = match gold {
            Ok(i) => Some(i),
            Err(reason) if gold_required => return Err(gold_error(&row, reason)),
            Err(_) => None,
        };

        let (prompt, requests) = match self.kind {
            TaskKind::Generate => {
                let input = self.generate_input(&ctx, &row)?;
                let requests = (0..self.n)
                    .map(|sample| {
                        InferenceRequest::new(
                            &self.fingerprint,
                            doc.index,
                            RequestType::Generate,
                            input.clone(),
                            None,
                            self.params.clone(),
                            sample,
                        )
                    })
                    .collect();
                (input, requests)
            }
            TaskKind::MultipleChoice => {
                let context = format!(
                    "{}{}",
                    self.fewshot_prefix,
                    self.render(PROMPT, &ctx, &row)?
                );
                let requests = choices
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|choice| {
                        InferenceRequest::new(
                            &self.fingerprint,
                            doc.index,
                            RequestType::Loglikelihood,
                            RenderedInput::Prompt {
                                prompt: context.clone(),
                            },
                            Some(format!("{}{choice}", self.target_delimiter)),
                            self.params.clone(),
                            0,
                        )
                    })
                    .collect();
                (RenderedInput::Prompt { prompt: context }, requests)
            }
        };
        Ok(DocPlan {
            doc_index: doc.index,
            doc_id: doc.id.clone(),
            subset: doc.subset.clone(),
            prompt,
            target,
            choices,
            gold_index,
            requests,
        })
    }

    pub(super) fn generate_input(
        &self,
        ctx: &JinjaValue,
        row: &Row<'_>,
    ) -> Result<RenderedInput, RenderError> {
        if self.turns.is_empty() {
            let prompt = format!("{}{}", self.fewshot_prefix, self.render(PROMPT, ctx, row)?);
            return Ok(match self.endpoint {
                Endpoint::Completions => RenderedInput::Prompt { prompt },
                Endpoint::Chat => self.chat_input(self.fold(
                    vec![ChatMessage {
                        role: "user".to_string(),
                        content: prompt,
                    }],
                    row,
                )?),
            });
        }
        let mut rendered = Vec::with_capacity(self.turns.len());
        for (role, name) in &self.turns {
            rendered.push(ChatMessage {
                role: role.clone(),
                content: self.render(name, ctx, row)?,
            });
        }
        let leading_system = rendered.iter().take_while(|m| m.role == "system").count();
        let rest = rendered.split_off(leading_system);
        rendered.extend(self.fewshot_turns.iter().cloned());
        rendered.extend(rest);
        Ok(self.chat_input(self.fold(rendered, row)?))
    }

    /// Chat turns as a request carries them: the messages, or with
    /// `[model.prompt_format]` the one prompt they make. The format is
    /// applied here, when requests are planned, not by a backend: the
    /// request key then hashes the exact text the model reads (a changed
    /// format changes the keys, and two formats that make the same text
    /// share outputs), and backends, samples and dry runs all see that text
    /// without knowing the format.
    fn chat_input(&self, messages: Vec<ChatMessage>) -> RenderedInput {
        match &self.prompt_format {
            Some(format) => RenderedInput::Prompt {
                prompt: format.apply(&messages),
            },
            None => RenderedInput::Messages { messages },
        }
    }

    /// With `system_role = "fold"`, merges every system turn into the next
    /// user turn, for chat templates that have no system role (Gemma's
    /// rejects a system turn wherever it stands, not only at the start).
    pub(super) fn fold(
        &self,
        messages: Vec<ChatMessage>,
        row: &Row<'_>,
    ) -> Result<Vec<ChatMessage>, RenderError> {
        if self.system_role != SystemRole::Fold {
            return Ok(messages);
        }
        fold_system_turns(messages).map_err(|position| RenderError {
            template: "task.messages".to_string(),
            row: row.location.clone(),
            doc_id: row.id.clone(),
            reason: format!(
                "turn {} of the conversation is a system turn with no user turn after it, so \
                 `system_role = \"fold\"` has nothing to fold it into; move it before a user \
                 turn or set `system_role = \"keep\"`",
                position + 1
            ),
        })
    }
}

/// Folds each run of system turns into the user turn that follows it (the
/// system text first, then a blank line). `Err(position)` names the first
/// system turn (0-based) that no user turn follows.
pub(crate) fn fold_system_turns(messages: Vec<ChatMessage>) -> Result<Vec<ChatMessage>, usize> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    // System texts waiting for the next user turn, and where the first stood.
    let mut pending: Vec<String> = Vec::new();
    let mut pending_at = 0;
    for (position, message) in messages.into_iter().enumerate() {
        match message.role.as_str() {
            "system" => {
                if pending.is_empty() {
                    pending_at = position;
                }
                pending.push(message.content);
            }
            "user" if !pending.is_empty() => {
                pending.push(message.content);
                out.push(ChatMessage {
                    role: message.role,
                    content: std::mem::take(&mut pending).join("\n\n"),
                });
            }
            _ => out.push(message),
        }
    }
    if pending.is_empty() {
        Ok(out)
    } else {
        Err(pending_at)
    }
}
