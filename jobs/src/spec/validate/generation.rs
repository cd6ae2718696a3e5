//! `[task.generation]`: samples, temperature and top-p in range, and no
//! `extra_body` key that Shardline sets itself.

use super::super::error::SpecError;
use super::super::job::JobSpec;
use super::super::task::TaskKind;

/// Body keys the backend sets itself; `extra_body` may not override them.
const RESERVED_BODY_KEYS: &[&str] = &["model", "messages", "prompt", "stream", "n"];

impl JobSpec {
    pub(super) fn validate_generation(&self) -> Result<(), SpecError> {
        let t = &self.task;
        let g = &t.generation;
        if g.n == 0 {
            return Err(SpecError::invalid(
                "task.generation.n",
                "must be at least 1",
            ));
        }
        if t.kind == TaskKind::MultipleChoice && g.n != 1 {
            return Err(SpecError::invalid(
                "task.generation.n",
                "must be 1 for multiple_choice (log-likelihoods are deterministic)",
            ));
        }
        if !(g.temperature.is_finite() && (0.0..=2.0).contains(&g.temperature)) {
            return Err(SpecError::invalid(
                "task.generation.temperature",
                format!(
                    "{} is out of range: accepted values are 0.0 to 2.0",
                    g.temperature
                ),
            ));
        }
        if let Some(top_p) = g.top_p {
            if !(top_p.is_finite() && top_p > 0.0 && top_p <= 1.0) {
                return Err(SpecError::invalid(
                    "task.generation.top_p",
                    format!(
                        "{top_p} is out of range: accepted values are greater than 0 and at most 1"
                    ),
                ));
            }
        }
        for key in g.extra_body.keys() {
            if RESERVED_BODY_KEYS.contains(&key.as_str()) {
                return Err(SpecError::invalid(
                    format!("task.generation.extra_body.{key}"),
                    format!(
                        "`{key}` is set by Shardline itself and cannot be overridden; reserved keys: {}",
                        RESERVED_BODY_KEYS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}
