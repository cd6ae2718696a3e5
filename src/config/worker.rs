//! What `shardline worker` runs with.

use super::defaults;
use super::error::ConfigError;
use super::file::ConfigFile;
use super::layer::{layered_list, Given};
use super::s3::{resolve_s3, s3_json, S3Flags};
use super::secret::{secret, Env, Secret};

/// `worker`'s flags, each with where it came from.
#[derive(Debug, Clone)]
pub struct WorkerFlags {
    pub coordinator: Given<String>,
    pub token_env: Given<String>,
    pub cache: Given<Option<String>>,
    /// From `SHARDLINE_BACKENDS` clap gives one comma-separated value.
    pub backends: Given<Vec<String>>,
    /// From `SHARDLINE_MODELS` clap gives one comma-separated value.
    pub models: Given<Vec<String>>,
    /// From `SHARDLINE_ALLOW_KEY_ENV` clap gives one comma-separated value.
    pub allow_key_env: Given<Vec<String>>,
    /// From `SHARDLINE_ALLOW_ENDPOINTS` clap gives one comma-separated value.
    pub allow_endpoints: Given<Vec<String>>,
    pub shards: Given<usize>,
    pub id: Given<Option<String>>,
    pub poll_ms: Given<u64>,
    pub flush_ms: Given<u64>,
    pub flush_outputs: Given<usize>,
    pub s3: S3Flags,
}

impl Default for WorkerFlags {
    fn default() -> Self {
        WorkerFlags {
            coordinator: Given::default_value(defaults::COORDINATOR.to_string()),
            token_env: Given::default_value(defaults::WORKER_TOKEN_ENV.to_string()),
            cache: Given::default(),
            backends: Given::default_value(vec![defaults::BACKEND.to_string()]),
            models: Given::default(),
            allow_key_env: Given::default(),
            allow_endpoints: Given::default(),
            shards: Given::default_value(defaults::WORKER_SHARDS),
            id: Given::default(),
            poll_ms: Given::default_value(defaults::POLL_MS),
            flush_ms: Given::default_value(defaults::FLUSH_MS),
            flush_outputs: Given::default_value(defaults::FLUSH_OUTPUTS),
            s3: S3Flags::default(),
        }
    }
}

/// What `shardline worker` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    pub coordinator: String,
    pub token: Secret,
    pub cache: String,
    pub backends: Vec<jobs::spec::BackendKind>,
    pub models: Vec<String>,
    /// Variables (or `PREFIX*`) a job may name as its API key.
    pub allow_key_env: Vec<String>,
    /// Base-URL prefixes a job's endpoint must lie under; `None`: any.
    pub allow_endpoints: Option<Vec<String>>,
    pub shards: usize,
    pub id: Option<String>,
    pub poll_ms: u64,
    /// When a running shard flushes its outputs (0: that trigger is off).
    pub flush_ms: u64,
    pub flush_outputs: usize,
    pub s3: cache::S3Options,
}

impl WorkerSettings {
    /// The settings as JSON for `worker --print-settings`: the token as
    /// the name of its variable.
    pub fn to_json(&self) -> serde_json::Value {
        let backends: Vec<&str> = self.backends.iter().map(|b| b.as_str()).collect();
        serde_json::json!({
            "coordinator": self.coordinator,
            "token_env": self.token.var(),
            "cache": self.cache,
            "backends": backends,
            "models": self.models,
            "allow_key_env": self.allow_key_env,
            "allow_endpoints": self.allow_endpoints,
            "shards": self.shards,
            "id": self.id,
            "poll_ms": self.poll_ms,
            "flush_ms": self.flush_ms,
            "flush_outputs": self.flush_outputs,
            "s3": s3_json(&self.s3),
        })
    }
}

/// A backend name as the job spec spells it (`openai`, …).
fn parse_backend(source_name: &str, name: &str) -> Result<jobs::spec::BackendKind, ConfigError> {
    let kind: jobs::spec::BackendKind = serde_json::from_value(serde_json::Value::String(
        name.trim().to_string(),
    ))
    .map_err(|_| ConfigError::Invalid {
        source_name: source_name.to_string(),
        value: name.to_string(),
        expected: "a backend name as in job specs, e.g. openai",
    })?;
    if kind == jobs::spec::BackendKind::None {
        return Err(ConfigError::Invalid {
            source_name: source_name.to_string(),
            value: name.to_string(),
            expected: "a backend that runs inference (`none` jobs never reach workers)",
        });
    }
    Ok(kind)
}

/// `NAME` or `PREFIX*`, where the name part is letters, digits and `_`.
fn is_key_env_pattern(pattern: &str) -> bool {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn resolve_worker(
    flags: &WorkerFlags,
    env: &Env,
    file: &ConfigFile,
) -> Result<WorkerSettings, ConfigError> {
    let flags = flags.clone();
    let f = &file.worker;
    let (backend_names, backend_source) = layered_list(
        &flags.backends,
        f.backends.as_ref(),
        file.origin("worker.backends"),
    )
    .unwrap_or_else(|| (flags.backends.value.clone(), "the default".to_string()));
    let (models, model_source) = layered_list(
        &flags.models,
        f.models.as_ref(),
        file.origin("worker.models"),
    )
    .unwrap_or_else(|| (Vec::new(), file.origin("worker.models")));
    let named_keys = layered_list(
        &flags.allow_key_env,
        f.allow_key_env.as_ref(),
        file.origin("worker.allow_key_env"),
    );
    let keys_named = named_keys.is_some();
    let (allow_key_env, allow_source) =
        named_keys.unwrap_or_else(|| (defaults::allowed_key_envs(), "the default".to_string()));
    if let Some(bad) = allow_key_env.iter().find(|p| !is_key_env_pattern(p)) {
        return Err(ConfigError::Invalid {
            source_name: allow_source,
            value: bad.clone(),
            expected: "an environment variable name (letters, digits, `_`), or a prefix of one \
                       ending in `*`",
        });
    }
    // Names the operator gave (not the defaults, which a worker without
    // HTTP backends never needs) must be set here: a job naming one would
    // otherwise fail on this worker, shard after shard.
    if keys_named {
        let unset: Vec<String> = allow_key_env
            .iter()
            .filter(|p| !p.ends_with('*'))
            .filter(|name| env(name).is_none_or(|v| v.trim().is_empty()))
            .cloned()
            .collect();
        if !unset.is_empty() {
            return Err(ConfigError::UnsetKeyEnv {
                source_name: allow_source,
                names: unset,
            });
        }
    }
    let allow_endpoints = match layered_list(
        &flags.allow_endpoints,
        f.allow_endpoints.as_ref(),
        file.origin("worker.allow_endpoints"),
    ) {
        Some((list, source_name)) => {
            let parses = |u: &String| {
                reqwest::Url::parse(u.trim()).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            };
            if let Some(bad) = list.iter().find(|u| !parses(u)) {
                return Err(ConfigError::Invalid {
                    source_name,
                    value: bad.clone(),
                    expected: "an http:// or https:// base URL (or a prefix of one)",
                });
            }
            Some(list)
        }
        None => None,
    };
    let coordinator = flags.coordinator.layered(f.coordinator.clone());
    let token_env = flags.token_env.layered(f.token_env.clone());
    let cache = flags
        .cache
        .layered_opt(f.cache.clone())
        .ok_or_else(|| ConfigError::Invalid {
            source_name: "the worker's cache".into(),
            value: String::new(),
            expected: "a location: --cache s3://BUCKET/PREFIX or a directory \
                       (or SHARDLINE_CACHE, or `worker.cache` in the config file), \
                       the same one the coordinator serves",
        })?;
    let backends = backend_names
        .iter()
        .map(|n| parse_backend(&backend_source, n))
        .collect::<Result<Vec<_>, _>>()?;
    if backends.is_empty() {
        return Err(ConfigError::Invalid {
            source_name: backend_source,
            value: String::new(),
            expected: "at least one backend",
        });
    }
    if let Some(bad) = models.iter().find(|m| m.trim().is_empty()) {
        return Err(ConfigError::Invalid {
            source_name: model_source,
            value: bad.clone(),
            expected: "a model name or glob (`*` any characters, `?` one); `*` serves any model",
        });
    }
    Ok(WorkerSettings {
        coordinator,
        token: secret(
            env,
            token_env,
            "worker token",
            "--token-env",
            "worker.token_env",
        )?,
        cache,
        backends,
        models: models.into_iter().map(|m| m.trim().to_string()).collect(),
        allow_key_env,
        allow_endpoints,
        shards: flags.shards.layered(f.shards),
        id: flags.id.layered_opt(f.id.clone()),
        poll_ms: flags.poll_ms.layered(f.poll_ms),
        flush_ms: flags.flush_ms.layered(f.flush_ms),
        flush_outputs: flags.flush_outputs.layered(f.flush_outputs),
        s3: resolve_s3(&flags.s3, env, file),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_env::{env_of, file, TOKENS};
    use super::*;

    #[test]
    fn worker_settings_and_their_errors() {
        let cfg = file(
            "[worker]\ncache = \"s3://b/p\"\nbackends = [\"openai\"]\nmodels = [\"llama-*\"]\n",
        );
        let env = env_of(&TOKENS);
        let s = resolve_worker(&WorkerFlags::default(), &env, &cfg).unwrap();
        assert_eq!(s.models, vec!["llama-*"]);
        assert_eq!(s.backends, vec![jobs::spec::BackendKind::Openai]);
        assert_eq!(s.token.expose(), "worker-secret-value-2");
        assert_eq!(s.poll_ms, 2_000);
        let flags = WorkerFlags {
            models: Given::flag("--model", vec!["gpt-*".into(), "m".into()]),
            ..WorkerFlags::default()
        };
        assert_eq!(
            resolve_worker(&flags, &env, &cfg).unwrap().models,
            vec!["gpt-*", "m"]
        );
        let env_models = WorkerFlags {
            models: Given::env("SHARDLINE_MODELS", vec!["a, b".into()]),
            ..WorkerFlags::default()
        };
        assert_eq!(
            resolve_worker(&env_models, &env, &cfg).unwrap().models,
            vec!["a", "b"]
        );
        let bad = WorkerFlags {
            backends: Given::flag("--backend", vec!["nope".into()]),
            ..WorkerFlags::default()
        };
        let text = resolve_worker(&bad, &env, &cfg).unwrap_err().to_string();
        assert!(
            text.contains("--backend") && text.contains("nope"),
            "{text}"
        );
        let bad_env = WorkerFlags {
            backends: Given::env("SHARDLINE_BACKENDS", vec!["openai,nope".into()]),
            ..WorkerFlags::default()
        };
        let text = resolve_worker(&bad_env, &env, &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("SHARDLINE_BACKENDS") && text.contains("nope"),
            "{text}"
        );
        let none = WorkerFlags {
            backends: Given::flag("--backend", vec!["none".into()]),
            ..WorkerFlags::default()
        };
        assert!(resolve_worker(&none, &env, &cfg).is_err());
        let no_cache =
            resolve_worker(&WorkerFlags::default(), &env, &ConfigFile::default()).unwrap_err();
        assert!(no_cache.to_string().contains("--cache"), "{no_cache}");
    }
}
