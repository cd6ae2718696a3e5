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
            location: format!("{}:{}", self.dataset_path.display(), doc.line),
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
                Endpoint::Chat => RenderedInput::Messages {
                    messages: self.fold(vec![ChatMessage {
                        role: "user".to_string(),
                        content: prompt,
                    }]),
                },
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
        Ok(RenderedInput::Messages {
            messages: self.fold(rendered),
        })
    }

    /// With `system_role = "fold"`, merges the leading system turns into the
    /// first user turn, for chat templates that have no system role.
    pub(super) fn fold(&self, mut messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
        if self.system_role != SystemRole::Fold {
            return messages;
        }
        let leading = messages.iter().take_while(|m| m.role == "system").count();
        if leading == 0 {
            return messages;
        }
        let rest = messages.split_off(leading);
        let system = messages
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut out = rest;
        match out.first_mut() {
            Some(first) if first.role == "user" => {
                first.content = format!("{system}\n\n{}", first.content);
            }
            _ => out.insert(
                0,
                ChatMessage {
                    role: "user".to_string(),
                    content: system,
                },
            ),
        }
        out
    }
}
