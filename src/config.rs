//! Settings of the cluster commands (`serve`, `worker`, `submit`, `status`,
//! `results`, `rescore`, `cancel`), resolved once from command-line flags,
//! environment variables and a TOML config file, in that precedence.
//!
//! The config file is named by `--config FILE` or `SHARDLINE_CONFIG`; it has
//! one table per role (`[serve]`, `[worker]`, `[client]`) and `[s3]` for the
//! cache's S3 options. Secrets never appear in it: tokens are read from
//! environment variables, and the file (like the flags) may only say which
//! variable. Resolution takes the environment as a lookup function, so that
//! the precedence is tested without touching the process environment.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "SHARDLINE_CONFIG";

/// A secret read from the environment. It has no `Display`, and its
/// `Debug` says only where it came from, so it cannot reach a log line or
/// an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    from: String,
}

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted>, from ${})", self.from)
    }
}

/// Why the settings cannot be resolved; each message says where the bad
/// value came from and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; fix the path given by --config or ${CONFIG_ENV}"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{what}: environment variable {name} is not set; set it (or name another variable with {flag} or `{key}` in the config file)")]
    MissingSecret {
        what: &'static str,
        name: String,
        flag: &'static str,
        key: &'static str,
    },
    #[error("{source_name}: {value:?} is not valid: expected {expected}")]
    Invalid {
        source_name: String,
        value: String,
        expected: &'static str,
    },
}

/// The config file's tables. Every key is optional; unknown keys are
/// errors (a typo must not silently fall back to a default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub serve: ServeSection,
    #[serde(default)]
    pub worker: WorkerSection,
    #[serde(default)]
    pub client: ClientSection,
    #[serde(default)]
    pub s3: S3Section,
    /// Where it was read from (for messages); empty without a file.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub cache: Option<String>,
    pub home: Option<PathBuf>,
    pub admin_token_env: Option<String>,
    pub worker_token_env: Option<String>,
    pub lease_secs: Option<u64>,
    pub heartbeat_secs: Option<u64>,
    pub reaper_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    pub coordinator: Option<String>,
    pub token_env: Option<String>,
    pub cache: Option<String>,
    pub backends: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub shards: Option<usize>,
    pub id: Option<String>,
    pub poll_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub coordinator: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub region: Option<String>,
}

impl ConfigFile {
    /// Reads the file named by `flag`, else by `$SHARDLINE_CONFIG`; no file
    /// at all is an empty config.
    pub fn load(
        flag: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let path = match flag {
            Some(p) => Some(p.to_path_buf()),
            None => non_empty(env(CONFIG_ENV)).map(PathBuf::from),
        };
        let Some(path) = path else {
            return Ok(ConfigFile::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: toml_message(text, &e),
        })?;
        file.path = Some(path.to_path_buf());
        Ok(file)
    }

    /// `key in FILE`, for messages about a value from the file.
    fn origin(&self, key: &str) -> String {
        match &self.path {
            Some(p) => format!("`{key}` in {}", p.display()),
            None => format!("`{key}`"),
        }
    }
}

/// toml's error with the line number spelled out.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The first environment variable of `names` that is set and not empty.
fn first_env(env: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<(String, String)> {
    names
        .iter()
        .find_map(|n| non_empty(env(n)).map(|v| (n.to_string(), v)))
}

fn parse_env<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    match non_empty(env(name)) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                source_name: format!("environment variable {name}"),
                value: v,
                expected,
            }),
    }
}

fn parse_bool(source_name: String, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            source_name,
            value: value.to_string(),
            expected: "1, true, yes, 0, false or no",
        }),
    }
}

/// Reads the secret in the variable `name`.
fn secret(
    env: &dyn Fn(&str) -> Option<String>,
    name: String,
    what: &'static str,
    flag: &'static str,
    key: &'static str,
) -> Result<Secret, ConfigError> {
    match non_empty(env(&name)) {
        Some(value) => Ok(Secret { value, from: name }),
        None => Err(ConfigError::MissingSecret {
            what,
            name,
            flag,
            key,
        }),
    }
}

/// S3 options from flags, then the standard variables, then `[s3]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct S3Flags {
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub region: Option<String>,
}

pub fn resolve_s3(
    flags: &S3Flags,
    env: &dyn Fn(&str) -> Option<String>,
    file: &ConfigFile,
) -> Result<cache::S3Options, ConfigError> {
    let endpoint_url = flags
        .endpoint
        .clone()
        .or_else(|| {
            first_env(
                env,
                &[
                    "SHARDLINE_S3_ENDPOINT",
                    "AWS_ENDPOINT_URL_S3",
                    "AWS_ENDPOINT_URL",
                ],
            )
            .map(|(_, v)| v)
        })
        .or_else(|| file.s3.endpoint.clone());
    let force_path_style = if flags.force_path_style {
        true
    } else if let Some(v) = non_empty(env("SHARDLINE_S3_FORCE_PATH_STYLE")) {
        parse_bool(
            "environment variable SHARDLINE_S3_FORCE_PATH_STYLE".into(),
            &v,
        )?
    } else {
        file.s3.force_path_style.unwrap_or(false)
    };
    let region = flags
        .region
        .clone()
        .or_else(|| first_env(env, &["AWS_REGION", "AWS_DEFAULT_REGION"]).map(|(_, v)| v))
        .or_else(|| file.s3.region.clone());
    Ok(cache::S3Options {
        endpoint_url,
        force_path_style,
        region,
        credentials: None,
    })
}

/// What `shardline serve` runs with. `Debug` redacts the database URL's
/// password (the tokens redact themselves).
#[derive(Clone, PartialEq)]
pub struct ServeSettings {
    pub listen: String,
    /// `None`: the SQLite store under `home`.
    pub database_url: Option<String>,
    /// `None`: `<home>/cache`.
    pub cache: Option<String>,
    pub home: PathBuf,
    pub admin_token: Secret,
    pub worker_token: Secret,
    pub lease_secs: u64,
    pub heartbeat_secs: u64,
    pub reaper_interval_ms: u64,
    pub s3: cache::S3Options,
}

impl std::fmt::Debug for ServeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let database_url = self
            .database_url
            .as_deref()
            .map(coordinator::store::postgres::redact_url);
        f.debug_struct("ServeSettings")
            .field("listen", &self.listen)
            .field("database_url", &database_url)
            .field("cache", &self.cache)
            .field("home", &self.home)
            .field("admin_token", &self.admin_token)
            .field("worker_token", &self.worker_token)
            .field("lease_secs", &self.lease_secs)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("reaper_interval_ms", &self.reaper_interval_ms)
            .field("s3", &self.s3)
            .finish()
    }
}

/// `serve`'s flags, as parsed (every one optional: a missing flag falls
/// through to the environment, then the file, then the default).
#[derive(Debug, Default, Clone)]
pub struct ServeFlags {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub cache: Option<String>,
    pub home: Option<PathBuf>,
    pub admin_token_env: Option<String>,
    pub worker_token_env: Option<String>,
    pub lease_secs: Option<u64>,
    pub heartbeat_secs: Option<u64>,
    pub reaper_interval_ms: Option<u64>,
    pub s3: S3Flags,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8700";
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:8700";
pub const DEFAULT_ADMIN_TOKEN_ENV: &str = "SHARDLINE_ADMIN_TOKEN";
pub const DEFAULT_WORKER_TOKEN_ENV: &str = "SHARDLINE_WORKER_TOKEN";
const DEFAULT_LEASE_SECS: u64 = 60;
const DEFAULT_REAPER_INTERVAL_MS: u64 = 2_000;

/// Picks a setting: the flag, else the first variable of `vars` that is
/// set (parsed), else the file's value, else `None`.
fn pick<T: std::str::FromStr + Clone>(
    flag: &Option<T>,
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    expected: &'static str,
    file: &Option<T>,
) -> Result<Option<T>, ConfigError> {
    if flag.is_some() {
        return Ok(flag.clone());
    }
    if let Some(v) = parse_env(env, var, expected)? {
        return Ok(Some(v));
    }
    Ok(file.clone())
}

pub fn resolve_serve(
    flags: &ServeFlags,
    env: &dyn Fn(&str) -> Option<String>,
    file: &ConfigFile,
) -> Result<ServeSettings, ConfigError> {
    let f = &file.serve;
    let text = "text";
    let listen = pick(&flags.listen, env, "SHARDLINE_LISTEN", text, &f.listen)?
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let database_url = pick(
        &flags.database_url,
        env,
        "SHARDLINE_DATABASE_URL",
        text,
        &f.database_url,
    )?;
    let cache = pick(&flags.cache, env, "SHARDLINE_CACHE", text, &f.cache)?;
    let home = pick(&flags.home, env, "SHARDLINE_HOME", "a path", &f.home)?
        .unwrap_or_else(|| PathBuf::from(".shardline"));
    let admin_env = pick(
        &flags.admin_token_env,
        env,
        "SHARDLINE_ADMIN_TOKEN_ENV",
        text,
        &f.admin_token_env,
    )?
    .unwrap_or_else(|| DEFAULT_ADMIN_TOKEN_ENV.to_string());
    let worker_env = pick(
        &flags.worker_token_env,
        env,
        "SHARDLINE_WORKER_TOKEN_ENV",
        text,
        &f.worker_token_env,
    )?
    .unwrap_or_else(|| DEFAULT_WORKER_TOKEN_ENV.to_string());
    let seconds = "a whole number of seconds";
    let lease_secs = pick(
        &flags.lease_secs,
        env,
        "SHARDLINE_LEASE_SECS",
        seconds,
        &f.lease_secs,
    )?
    .unwrap_or(DEFAULT_LEASE_SECS);
    if lease_secs < 2 {
        return Err(ConfigError::Invalid {
            source_name: "lease_secs".into(),
            value: lease_secs.to_string(),
            expected: "at least 2 seconds (workers heartbeat several times per lease)",
        });
    }
    let heartbeat_secs = pick(
        &flags.heartbeat_secs,
        env,
        "SHARDLINE_HEARTBEAT_SECS",
        seconds,
        &f.heartbeat_secs,
    )?
    .unwrap_or((lease_secs / 3).max(1));
    if heartbeat_secs == 0 || heartbeat_secs >= lease_secs {
        return Err(ConfigError::Invalid {
            source_name: if flags.heartbeat_secs.is_some() {
                "--heartbeat-secs".into()
            } else {
                file.origin("serve.heartbeat_secs")
            },
            value: heartbeat_secs.to_string(),
            expected: "at least 1 and below lease_secs (a third of it is usual)",
        });
    }
    let reaper_interval_ms = pick(
        &flags.reaper_interval_ms,
        env,
        "SHARDLINE_REAPER_INTERVAL_MS",
        "a whole number of milliseconds",
        &f.reaper_interval_ms,
    )?
    .unwrap_or(DEFAULT_REAPER_INTERVAL_MS)
    .max(50);
    Ok(ServeSettings {
        listen,
        database_url,
        cache,
        home,
        admin_token: secret(
            env,
            admin_env,
            "admin token",
            "--admin-token-env",
            "serve.admin_token_env",
        )?,
        worker_token: secret(
            env,
            worker_env,
            "worker token",
            "--worker-token-env",
            "serve.worker_token_env",
        )?,
        lease_secs,
        heartbeat_secs,
        reaper_interval_ms,
        s3: resolve_s3(&flags.s3, env, file)?,
    })
}

/// What `shardline worker` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    pub coordinator: String,
    pub token: Secret,
    pub cache: String,
    pub backends: Vec<jobs::spec::BackendKind>,
    pub models: Vec<String>,
    pub shards: usize,
    pub id: Option<String>,
    pub poll_ms: u64,
    pub s3: cache::S3Options,
}

#[derive(Debug, Default, Clone)]
pub struct WorkerFlags {
    pub coordinator: Option<String>,
    pub token_env: Option<String>,
    pub cache: Option<String>,
    pub backends: Vec<String>,
    pub models: Vec<String>,
    pub shards: Option<usize>,
    pub id: Option<String>,
    pub poll_ms: Option<u64>,
    pub s3: S3Flags,
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

/// A comma-separated list from an environment variable.
fn env_list(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Vec<String>> {
    non_empty(env(name)).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

pub fn resolve_worker(
    flags: &WorkerFlags,
    env: &dyn Fn(&str) -> Option<String>,
    file: &ConfigFile,
) -> Result<WorkerSettings, ConfigError> {
    let f = &file.worker;
    let text = "text";
    let coordinator = pick(
        &flags.coordinator,
        env,
        "SHARDLINE_COORDINATOR",
        text,
        &f.coordinator,
    )?
    .unwrap_or_else(|| DEFAULT_COORDINATOR.to_string());
    let token_env = pick(
        &flags.token_env,
        env,
        "SHARDLINE_WORKER_TOKEN_ENV",
        text,
        &f.token_env,
    )?
    .unwrap_or_else(|| DEFAULT_WORKER_TOKEN_ENV.to_string());
    let cache = pick(&flags.cache, env, "SHARDLINE_CACHE", text, &f.cache)?.ok_or_else(|| {
        ConfigError::Invalid {
            source_name: "the worker's cache".into(),
            value: String::new(),
            expected: "a location: --cache s3://BUCKET/PREFIX or a directory \
                       (or SHARDLINE_CACHE, or `worker.cache` in the config file), \
                       the same one the coordinator serves",
        }
    })?;
    let (backend_names, backend_source) = if !flags.backends.is_empty() {
        (flags.backends.clone(), "--backend".to_string())
    } else if let Some(list) = env_list(env, "SHARDLINE_BACKENDS") {
        (list, "environment variable SHARDLINE_BACKENDS".to_string())
    } else if let Some(list) = &f.backends {
        (list.clone(), file.origin("worker.backends"))
    } else {
        (vec!["openai".to_string()], "the default".to_string())
    };
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
    let (models, model_source) = if !flags.models.is_empty() {
        (flags.models.clone(), "--model".to_string())
    } else if let Some(list) = env_list(env, "SHARDLINE_MODELS") {
        (list, "environment variable SHARDLINE_MODELS".to_string())
    } else {
        (
            f.models.clone().unwrap_or_default(),
            file.origin("worker.models"),
        )
    };
    if let Some(bad) = models.iter().find(|m| m.trim().is_empty()) {
        return Err(ConfigError::Invalid {
            source_name: model_source,
            value: bad.clone(),
            expected: "a model name or glob (`*` any characters, `?` one); `*` serves any model",
        });
    }
    let shards = pick(
        &flags.shards,
        env,
        "SHARDLINE_WORKER_SHARDS",
        "a whole number",
        &f.shards,
    )?
    .unwrap_or(0);
    let id = pick(&flags.id, env, "SHARDLINE_WORKER_ID", text, &f.id)?;
    let poll_ms = pick(
        &flags.poll_ms,
        env,
        "SHARDLINE_POLL_MS",
        "a whole number of milliseconds",
        &f.poll_ms,
    )?
    .unwrap_or(2_000);
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
        shards,
        id,
        poll_ms,
        s3: resolve_s3(&flags.s3, env, file)?,
    })
}

/// What the job commands (`submit`, `status`, …) talk to.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    pub coordinator: String,
    pub token: Secret,
}

#[derive(Debug, Default, Clone)]
pub struct ClientFlags {
    pub coordinator: Option<String>,
    pub token_env: Option<String>,
}

pub fn resolve_client(
    flags: &ClientFlags,
    env: &dyn Fn(&str) -> Option<String>,
    file: &ConfigFile,
) -> Result<ClientSettings, ConfigError> {
    let f = &file.client;
    let coordinator = pick(
        &flags.coordinator,
        env,
        "SHARDLINE_COORDINATOR",
        "text",
        &f.coordinator,
    )?
    .unwrap_or_else(|| DEFAULT_COORDINATOR.to_string());
    let token_env = pick(
        &flags.token_env,
        env,
        "SHARDLINE_ADMIN_TOKEN_ENV",
        "text",
        &f.token_env,
    )?
    .unwrap_or_else(|| DEFAULT_ADMIN_TOKEN_ENV.to_string());
    Ok(ClientSettings {
        coordinator,
        token: secret(
            env,
            token_env,
            "admin token",
            "--token-env",
            "client.token_env",
        )?,
    })
}

/// The process environment, as resolution reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("/etc/shardline.toml")).expect("valid config")
    }

    const TOKENS: [(&str, &str); 2] = [
        ("SHARDLINE_ADMIN_TOKEN", "admin-secret-1"),
        ("SHARDLINE_WORKER_TOKEN", "worker-secret-2"),
    ];

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let cfg = file(
            r#"
[serve]
listen = "10.0.0.1:1"
database_url = "postgres://file/db"
lease_secs = 30
reaper_interval_ms = 700
cache = "s3://file-bucket/p"
[s3]
endpoint = "http://file:9000"
region = "eu-west-1"
force_path_style = true
"#,
        );
        let mut pairs = TOKENS.to_vec();
        pairs.push(("SHARDLINE_DATABASE_URL", "postgres://env/db"));
        pairs.push(("SHARDLINE_LEASE_SECS", "20"));
        pairs.push(("AWS_REGION", "us-west-2"));
        let env = env_of(&pairs);
        let flags = ServeFlags {
            lease_secs: Some(9),
            s3: S3Flags {
                endpoint: Some("http://flag:9000".into()),
                ..S3Flags::default()
            },
            ..ServeFlags::default()
        };
        let s = resolve_serve(&flags, &env, &cfg).unwrap();
        assert_eq!(s.lease_secs, 9, "flag over env and file");
        assert_eq!(s.heartbeat_secs, 3, "a third of the lease by default");
        assert_eq!(
            s.database_url.as_deref(),
            Some("postgres://env/db"),
            "env over file"
        );
        assert_eq!(s.listen, "10.0.0.1:1", "file over default");
        assert_eq!(s.reaper_interval_ms, 700);
        assert_eq!(s.cache.as_deref(), Some("s3://file-bucket/p"));
        assert_eq!(s.s3.endpoint_url.as_deref(), Some("http://flag:9000"));
        assert_eq!(s.s3.region.as_deref(), Some("us-west-2"));
        assert!(s.s3.force_path_style);
        assert_eq!(s.admin_token.expose(), "admin-secret-1");

        let bare = resolve_serve(
            &ServeFlags::default(),
            &env_of(&TOKENS),
            &ConfigFile::default(),
        )
        .unwrap();
        assert_eq!(bare.listen, DEFAULT_LISTEN);
        assert_eq!(bare.lease_secs, 60);
        assert_eq!(bare.database_url, None, "SQLite under the home by default");
        assert!(!bare.s3.force_path_style);

        let with_password = ServeFlags {
            database_url: Some("postgres://u:db-pa55@h/db".into()),
            ..ServeFlags::default()
        };
        let s = resolve_serve(&with_password, &env_of(&TOKENS), &ConfigFile::default()).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("db-pa55"), "{shown}");
        assert!(!shown.contains("admin-secret-1"), "{shown}");
        assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
    }

    #[test]
    fn tokens_come_from_the_named_variable_and_never_show() {
        let cfg = file("[client]\ntoken_env = \"MY_TOKEN\"\n");
        let env = env_of(&[("MY_TOKEN", "s3cr3t-value"), ("OTHER", "other-value")]);
        let s = resolve_client(&ClientFlags::default(), &env, &cfg).unwrap();
        assert_eq!(s.token.expose(), "s3cr3t-value");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("MY_TOKEN"), "{shown}");
        let flags = ClientFlags {
            token_env: Some("OTHER".into()),
            ..ClientFlags::default()
        };
        assert_eq!(
            resolve_client(&flags, &env, &cfg).unwrap().token.expose(),
            "other-value"
        );
        let err = resolve_client(&ClientFlags::default(), &env_of(&[]), &cfg).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("MY_TOKEN") && text.contains("not set"),
            "{text}"
        );
    }

    #[test]
    fn worker_settings_and_their_errors() {
        let cfg = file(
            "[worker]\ncache = \"s3://b/p\"\nbackends = [\"openai\"]\nmodels = [\"llama-*\"]\n",
        );
        let env = env_of(&TOKENS);
        let s = resolve_worker(&WorkerFlags::default(), &env, &cfg).unwrap();
        assert_eq!(s.models, vec!["llama-*"]);
        assert_eq!(s.backends, vec![jobs::spec::BackendKind::Openai]);
        assert_eq!(s.token.expose(), "worker-secret-2");
        let flags = WorkerFlags {
            models: vec!["gpt-*".into(), "m".into()],
            ..WorkerFlags::default()
        };
        assert_eq!(
            resolve_worker(&flags, &env, &cfg).unwrap().models,
            vec!["gpt-*", "m"]
        );
        let env_models = env_of(&[TOKENS[1], ("SHARDLINE_MODELS", "a, b")]);
        assert_eq!(
            resolve_worker(&WorkerFlags::default(), &env_models, &cfg)
                .unwrap()
                .models,
            vec!["a", "b"]
        );
        let bad = WorkerFlags {
            backends: vec!["nope".into()],
            ..WorkerFlags::default()
        };
        let text = resolve_worker(&bad, &env, &cfg).unwrap_err().to_string();
        assert!(
            text.contains("--backend") && text.contains("nope"),
            "{text}"
        );
        let none = WorkerFlags {
            backends: vec!["none".into()],
            ..WorkerFlags::default()
        };
        assert!(resolve_worker(&none, &env, &cfg).is_err());
        let no_cache =
            resolve_worker(&WorkerFlags::default(), &env, &ConfigFile::default()).unwrap_err();
        assert!(no_cache.to_string().contains("--cache"), "{no_cache}");
    }

    #[test]
    fn bad_files_and_values_name_their_source() {
        let err = ConfigFile::parse("[serve]\nlease_sec = 3\n", Path::new("c.toml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("c.toml") && text.contains("line 2"), "{text}");
        assert!(text.contains("lease_sec"), "{text}");
        let mut pairs = TOKENS.to_vec();
        pairs.push(("SHARDLINE_LEASE_SECS", "soon"));
        let err = resolve_serve(
            &ServeFlags::default(),
            &env_of(&pairs),
            &ConfigFile::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("SHARDLINE_LEASE_SECS"), "{err}");
        let cfg = file("[serve]\nlease_secs = 6\nheartbeat_secs = 6\n");
        let err = resolve_serve(&ServeFlags::default(), &env_of(&TOKENS), &cfg).unwrap_err();
        assert!(err.to_string().contains("serve.heartbeat_secs"), "{err}");
        let missing = ConfigFile::load(Some(Path::new("/nonexistent/x.toml")), &env_of(&[]));
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x.toml"));
    }

    #[test]
    fn the_config_file_may_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[client]\ncoordinator = \"http://cfg:1\"\n").unwrap();
        let env = env_of(&[(CONFIG_ENV, path.to_str().unwrap())]);
        let cfg = ConfigFile::load(None, &env).unwrap();
        assert_eq!(cfg.client.coordinator.as_deref(), Some("http://cfg:1"));
        // A --config flag wins over the variable.
        let other = dir.path().join("o.toml");
        std::fs::write(&other, "").unwrap();
        let cfg = ConfigFile::load(Some(&other), &env).unwrap();
        assert_eq!(cfg.client.coordinator, None);
    }
}
