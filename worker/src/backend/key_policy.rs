//! Which environment variables a job may name as its API key on this
//! worker. A job is untrusted input and its key is sent to the job's own
//! `base_url`, so a worker reads only the variables its operator allows,
//! and never the coordinator tokens.

use super::error::BackendError;

/// What a worker allows when its operator says nothing: the providers'
/// usual variables and a prefix for any other key.
pub const DEFAULT_ALLOWED_KEY_ENVS: &[&str] =
    &["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SHARDLINE_KEY_*"];

/// The coordinator's tokens: never sent to an endpoint, whatever is allowed.
const ALWAYS_FORBIDDEN: &[&str] = &["SHARDLINE_ADMIN_TOKEN", "SHARDLINE_WORKER_TOKEN"];

/// The variables a job may name in `model.api_key_env`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// `None`: any variable (one user running their own job). Otherwise
    /// names, or prefixes ending in `*`.
    allowed: Option<Vec<String>>,
    /// Never allowed: the coordinator tokens, and the variable this worker
    /// reads its own token from.
    forbidden: Vec<String>,
}

impl Default for KeyPolicy {
    /// [`DEFAULT_ALLOWED_KEY_ENVS`], nothing more forbidden.
    fn default() -> Self {
        let allowed = DEFAULT_ALLOWED_KEY_ENVS.iter().map(|s| s.to_string());
        KeyPolicy::only(allowed.collect(), Vec::new())
    }
}

impl KeyPolicy {
    /// Any variable but the tokens and `forbidden`: for `shardline run`,
    /// where the job's author runs the process.
    pub fn any_except(forbidden: Vec<String>) -> Self {
        KeyPolicy {
            allowed: None,
            forbidden: with_tokens(forbidden),
        }
    }

    /// Only variables matching `allowed` (a name, or a prefix ending in
    /// `*`), never the tokens or `forbidden`.
    pub fn only(allowed: Vec<String>, forbidden: Vec<String>) -> Self {
        KeyPolicy {
            allowed: Some(allowed),
            forbidden: with_tokens(forbidden),
        }
    }

    /// Whether a job may name `var` in any `model.*_env` field (`field`):
    /// never the variables holding the coordinator tokens.
    pub fn check_not_token(&self, var: &str, field: &str) -> Result<(), BackendError> {
        if self.forbidden.iter().any(|f| f == var) {
            return Err(BackendError::Config(format!(
                "model.{field} names {var}, which holds a coordinator token; a job may never \
                 read it"
            )));
        }
        Ok(())
    }

    /// Whether a job may name `var` as its key here; the error says which
    /// rule refused it and how the operator allows it.
    pub fn check(&self, var: &str) -> Result<(), BackendError> {
        self.check_not_token(var, "api_key_env")?;
        match &self.allowed {
            None => Ok(()),
            Some(allowed) if allowed.iter().any(|p| matches(p, var)) => Ok(()),
            Some(allowed) => Err(BackendError::Config(format!(
                "model.api_key_env names {var}, which this worker does not allow as a key \
                 (allowed: {}); its operator can add it with --allow-key-env {var}",
                allowed.join(", ")
            ))),
        }
    }

    /// The key in `var`, trimmed, if a job may name it and it is set.
    pub fn read(&self, var: &str, base_url: &str) -> Result<String, BackendError> {
        self.check(var)?;
        match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => Ok(key.trim().to_string()),
            Ok(_) => Err(BackendError::Config(format!(
                "environment variable {var} (named by model.api_key_env) is empty; set it to \
                 the API key of {base_url}"
            ))),
            Err(_) => Err(BackendError::Config(format!(
                "environment variable {var} (named by model.api_key_env) is not set; export it \
                 with the API key of {base_url} on every worker"
            ))),
        }
    }
}

fn with_tokens(mut forbidden: Vec<String>) -> Vec<String> {
    forbidden.extend(ALWAYS_FORBIDDEN.iter().map(|s| s.to_string()));
    forbidden
}

/// `NAME` matches itself; `PREFIX*` matches every name starting with PREFIX.
fn matches(pattern: &str, var: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => var.starts_with(prefix),
        None => pattern == var,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_allows_the_usual_keys_and_a_prefix() {
        let policy = KeyPolicy::default();
        assert!(policy.check("OPENAI_API_KEY").is_ok());
        assert!(policy.check("SHARDLINE_KEY_VLLM").is_ok());
        let refused = policy
            .check("AWS_SECRET_ACCESS_KEY")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("--allow-key-env AWS_SECRET_ACCESS_KEY"),
            "{refused}"
        );
    }

    #[test]
    fn tokens_are_never_allowed() {
        for policy in [
            KeyPolicy::any_except(vec!["MY_WORKER_TOKEN".into()]),
            KeyPolicy::only(vec!["*".into()], vec!["MY_WORKER_TOKEN".into()]),
        ] {
            for var in [
                "SHARDLINE_WORKER_TOKEN",
                "SHARDLINE_ADMIN_TOKEN",
                "MY_WORKER_TOKEN",
            ] {
                let refused = policy.check(var).unwrap_err().to_string();
                assert!(refused.contains("coordinator token"), "{refused}");
            }
            assert!(policy.check("ANY_OTHER_KEY").is_ok());
        }
    }
}
