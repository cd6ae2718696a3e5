//! Rendering one row's templates: the context they see, the `choices`
//! expression, and errors that name the missing variable.

use minijinja::value::{Value as JinjaValue, ValueKind};
use minijinja::ErrorKind;
use serde_json::Value;

use crate::render::RenderError;
use crate::template::{compile_expression, describe_error};

use super::{Planner, Row, CHOICES};

impl Planner {
    /// The template context: row fields, `doc`, and `choices` when known.
    pub(super) fn context(&self, row: &Row<'_>, choices: Option<&[String]>) -> JinjaValue {
        let mut map = row.fields.clone();
        map.insert("doc".to_string(), Value::Object(row.fields.clone()));
        if let Some(choices) = choices {
            map.insert(
                "choices".to_string(),
                Value::Array(choices.iter().cloned().map(Value::String).collect()),
            );
        }
        JinjaValue::from_serialize(&map)
    }

    /// Evaluates the `choices` expression. For generate tasks it is optional
    /// context; for multiple choice it must give a non-empty list.
    pub(super) fn eval_choices(
        &self,
        row: &Row<'_>,
        required: bool,
    ) -> Result<Option<Vec<String>>, RenderError> {
        let Some(expr) = &self.choices_expr else {
            return Ok(None);
        };
        let ctx = self.context(row, None);
        let err = |reason: String| RenderError {
            template: CHOICES.to_string(),
            row: row.location.clone(),
            doc_id: row.id.clone(),
            reason,
        };
        let compiled = compile_expression(&self.env, expr).map_err(|e| err(describe_error(&e)))?;
        let value = compiled
            .eval(&ctx)
            .map_err(|e| err(self.explain(CHOICES, &e, row)))?;
        let not_a_list = || {
            err(format!(
                "must give a list of strings, got {} ({value})",
                value.kind()
            ))
        };
        // Strings and maps are iterable too, but a string of choices is
        // almost certainly a dataset mistake, not one choice per character.
        if !matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable) {
            return Err(not_a_list());
        }
        let items = value.try_iter().map_err(|_| not_a_list())?;
        let mut choices = Vec::new();
        for item in items {
            if let Some(s) = item.as_str() {
                choices.push(s.to_string());
            } else if item.is_number() {
                choices.push(item.to_string());
            } else {
                return Err(err(format!(
                    "must give a list of strings, but item {} is {} ({item})",
                    choices.len(),
                    item.kind()
                )));
            }
        }
        if required && choices.is_empty() {
            return Err(err("gave an empty list of choices".to_string()));
        }
        Ok(Some(choices))
    }

    pub(super) fn render(
        &self,
        name: &str,
        ctx: &JinjaValue,
        row: &Row<'_>,
    ) -> Result<String, RenderError> {
        let err = |reason: String| RenderError {
            template: name.to_string(),
            row: row.location.clone(),
            doc_id: row.id.clone(),
            reason,
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| err(describe_error(&e)))?;
        template
            .render(ctx)
            .map_err(|e| err(self.explain(name, &e, row)))
    }

    /// minijinja's reason, plus the variables the row lacks when a variable
    /// was undefined (minijinja does not name it).
    pub(super) fn explain(&self, name: &str, e: &minijinja::Error, row: &Row<'_>) -> String {
        let mut reason = describe_error(e);
        if e.kind() == ErrorKind::UndefinedError {
            let known = |v: &str| {
                row.fields.contains_key(v)
                    || matches!(v, "doc" | "choices" | "letters" | "loop" | "range")
            };
            let missing: Vec<&str> = self
                .variables
                .get(name)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(|v| !known(v))
                .collect();
            if !missing.is_empty() {
                let fields: Vec<&str> = row.fields.keys().map(String::as_str).collect();
                reason.push_str(&format!(
                    "; not in this row: {} (the row has: {})",
                    missing.join(", "),
                    fields.join(", ")
                ));
            }
        }
        reason
    }
}
