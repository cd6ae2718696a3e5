//! Which environment variables a job may name as its API key on this
//! worker, and which endpoints it may send requests to. A job is untrusted
//! input and its key is sent to the job's own `base_url`, so a worker reads
//! only the variables its operator allows, never the coordinator tokens,
//! and (when its operator lists them) talks only to the endpoints allowed.

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
    /// `None`: any endpoint. Otherwise base-URL prefixes (`--allow-endpoint`).
    endpoints: Option<Vec<String>>,
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
            endpoints: None,
        }
    }

    /// Only variables matching `allowed` (a name, or a prefix ending in
    /// `*`), never the tokens or `forbidden`.
    pub fn only(allowed: Vec<String>, forbidden: Vec<String>) -> Self {
        KeyPolicy {
            allowed: Some(allowed),
            forbidden: with_tokens(forbidden),
            endpoints: None,
        }
    }

    /// Allows only endpoints whose base URL is one of `prefixes` or lies
    /// under one (`https://api.openai.com/v1` allows itself and
    /// `https://api.openai.com/v1/…`, not `https://api.openai.com/v1x`).
    pub fn with_endpoints(mut self, prefixes: Vec<String>) -> Self {
        let normal = prefixes
            .iter()
            .map(|p| p.trim().trim_end_matches('/').to_string())
            .collect();
        self.endpoints = Some(normal);
        self
    }

    /// Whether a job may send requests to `base_url` (trimmed, without a
    /// trailing `/`); `shown` is how the error names it.
    pub fn check_endpoint(&self, base_url: &str, shown: &str) -> Result<(), BackendError> {
        let Some(allowed) = &self.endpoints else {
            return Ok(());
        };
        let under = |prefix: &String| {
            base_url
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if allowed.iter().any(under) {
            return Ok(());
        }
        Err(BackendError::Config(format!(
            "model base URL {shown} is not an endpoint this worker may send requests to \
             (allowed: {}); its operator can add it with --allow-endpoint URL",
            allowed.join(", ")
        )))
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

    /// The variables of this process a job may name as its key and that
    /// hold one (set, not blank), sorted: what a worker reports at start.
    pub fn available(&self) -> Vec<String> {
        let mut names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                let set = !value.to_string_lossy().trim().is_empty();
                (set && self.check(&name).is_ok()).then_some(name)
            })
            .collect();
        names.sort();
        names
    }

    /// The patterns allowed, for messages; `None`: any variable.
    pub fn allowed(&self) -> Option<&[String]> {
        self.allowed.as_deref()
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
    fn endpoints_are_allowed_by_prefix_on_a_path_boundary() {
        let any = KeyPolicy::default();
        assert!(any.check_endpoint("http://10.0.0.1:1/v1", "x").is_ok());
        let policy = KeyPolicy::default().with_endpoints(vec![
            "https://api.openai.com/v1/".into(),
            "http://vllm.internal:8000".into(),
        ]);
        for ok in [
            "https://api.openai.com/v1",
            "https://api.openai.com/v1/deployments/x",
            "http://vllm.internal:8000/v1",
        ] {
            assert!(policy.check_endpoint(ok, ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://api.openai.com/v1x",
            "https://api.openai.com.evil.example/v1",
            "http://vllm.internal:80001/v1",
            "http://127.0.0.1:9/v1",
        ] {
            let err = policy.check_endpoint(refused, refused).unwrap_err();
            assert!(err.to_string().contains("--allow-endpoint"), "{err}");
        }
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
