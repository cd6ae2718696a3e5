//! Few-shot examples: read once per job and rendered into chat turns or
//! a prompt prefix.

use std::path::Path;

use crate::dataset::{read_jsonl_examples, ReadPolicy};
use crate::render::{resolve_gold, RenderError};
use crate::request::ChatMessage;
use crate::spec::SpecError;
use crate::spec::TaskKind;

use super::{gold_error, Planner, Row, PROMPT, TARGET};

impl Planner {
    pub(super) fn load_fewshot(
        &mut self,
        path: &Path,
        k: usize,
        separator: &str,
        policy: &ReadPolicy,
    ) -> Result<(), SpecError> {
        let examples = read_jsonl_examples(path, k, policy)
            .map_err(|e| SpecError::invalid("task.fewshot.path", e.to_string()))?;
        if examples.len() < k {
            return Err(SpecError::invalid(
                "task.fewshot.k",
                format!(
                    "asks for {k} examples but {} has only {}",
                    path.display(),
                    examples.len()
                ),
            ));
        }
        let mut prompt_parts = Vec::new();
        for (i, fields) in examples.iter().take(k).enumerate() {
            let row = Row {
                fields,
                location: format!("{} (few-shot example {})", path.display(), i + 1),
                id: format!("fewshot-{i}"),
            };
            let to_spec = |e: RenderError| SpecError::invalid("task.fewshot", e.to_string());
            let choices = self.eval_choices(&row, false).map_err(to_spec)?;
            let ctx = self.context(&row, choices.as_deref());
            let target = self.render(TARGET, &ctx, &row).map_err(to_spec)?;
            if self.turns.is_empty() {
                let prompt = self.render(PROMPT, &ctx, &row).map_err(to_spec)?;
                let answer = match (&self.kind, &choices) {
                    (TaskKind::MultipleChoice, Some(choices)) => {
                        let gold = resolve_gold(&target, choices, self.target_kind)
                            .map_err(|reason| to_spec(gold_error(&row, reason)))?;
                        format!("{}{}", self.target_delimiter, choices[gold])
                    }
                    _ => format!("{}{target}", self.target_delimiter),
                };
                prompt_parts.push(format!("{prompt}{answer}"));
            } else {
                for (role, name) in self.turns.iter().filter(|(role, _)| role != "system") {
                    let content = self.render(name, &ctx, &row).map_err(to_spec)?;
                    self.fewshot_turns.push(ChatMessage {
                        role: role.clone(),
                        content,
                    });
                }
                self.fewshot_turns.push(ChatMessage {
                    role: "assistant".to_string(),
                    content: target,
                });
            }
        }
        if !prompt_parts.is_empty() {
            self.fewshot_prefix = prompt_parts.join(separator);
            self.fewshot_prefix.push_str(separator);
        }
        Ok(())
    }
}
