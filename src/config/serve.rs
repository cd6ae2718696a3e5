//! What `shardline serve` runs with.

use std::path::PathBuf;

use super::defaults;
use super::error::ConfigError;
use super::file::ConfigFile;
use super::layer::{layered_list, Given};
use super::s3::{resolve_s3, s3_json, S3Flags};
use super::secret::{secret, Env, Secret};

/// `serve`'s flags, each with where it came from (a flag not given holds
/// its default, which the file beats).
#[derive(Debug, Clone)]
pub struct ServeFlags {
    pub listen: Given<String>,
    pub database_url: Given<Option<String>>,
    pub cache: Given<Option<String>>,
    pub home: Given<PathBuf>,
    pub admin_token_env: Given<String>,
    pub worker_token_env: Given<String>,
    pub lease_secs: Given<u64>,
    /// No default of its own: a third of the lease.
    pub heartbeat_secs: Given<Option<u64>>,
    pub reaper_interval_ms: Given<u64>,
    pub max_samples_per_doc: Given<u32>,
    pub max_tokens: Given<u32>,
    pub max_shard_size: Given<u32>,
    pub dataset_roots: Given<Vec<String>>,
    pub max_docs_per_job: Given<u64>,
    pub max_dataset_bytes: Given<u64>,
    pub max_line_bytes: Given<u64>,
    pub max_spec_bytes: Given<u64>,
    pub s3: S3Flags,
}

impl Default for ServeFlags {
    fn default() -> Self {
        ServeFlags {
            listen: Given::default_value(defaults::LISTEN.to_string()),
            database_url: Given::default(),
            cache: Given::default(),
            home: Given::default_value(PathBuf::from(defaults::HOME)),
            admin_token_env: Given::default_value(defaults::ADMIN_TOKEN_ENV.to_string()),
            worker_token_env: Given::default_value(defaults::WORKER_TOKEN_ENV.to_string()),
            lease_secs: Given::default_value(defaults::LEASE_SECS),
            heartbeat_secs: Given::default(),
            reaper_interval_ms: Given::default_value(defaults::REAPER_INTERVAL_MS),
            max_samples_per_doc: Given::default_value(defaults::MAX_SAMPLES_PER_DOC),
            max_tokens: Given::default_value(defaults::MAX_TOKENS),
            max_shard_size: Given::default_value(defaults::MAX_SHARD_SIZE),
            dataset_roots: Given::default(),
            max_docs_per_job: Given::default_value(defaults::MAX_DOCS_PER_JOB),
            max_dataset_bytes: Given::default_value(defaults::MAX_DATASET_BYTES),
            max_line_bytes: Given::default_value(defaults::MAX_LINE_BYTES),
            max_spec_bytes: Given::default_value(defaults::MAX_SPEC_BYTES),
            s3: S3Flags::default(),
        }
    }
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
    /// What a submitted job may ask for.
    pub limits: coordinator::JobLimits,
    /// Where and how much a job's data files may be read.
    pub read: jobs::ReadPolicy,
    pub s3: cache::S3Options,
}

impl std::fmt::Debug for ServeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeSettings")
            .field("listen", &self.listen)
            .field("database_url", &self.shown_database_url())
            .field("cache", &self.cache)
            .field("home", &self.home)
            .field("admin_token", &self.admin_token)
            .field("worker_token", &self.worker_token)
            .field("lease_secs", &self.lease_secs)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("reaper_interval_ms", &self.reaper_interval_ms)
            .field("limits", &self.limits)
            .field("read", &self.read)
            .field("s3", &self.s3)
            .finish()
    }
}

impl ServeSettings {
    fn shown_database_url(&self) -> Option<String> {
        self.database_url
            .as_deref()
            .map(coordinator::store::postgres::redact_url)
    }

    /// The settings as JSON for `serve --print-settings`: the tokens as
    /// the names of their variables, the database password redacted.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "listen": self.listen,
            "database_url": self.shown_database_url(),
            "cache": self.cache,
            "home": self.home,
            "admin_token_env": self.admin_token.var(),
            "worker_token_env": self.worker_token.var(),
            "lease_secs": self.lease_secs,
            "heartbeat_secs": self.heartbeat_secs,
            "reaper_interval_ms": self.reaper_interval_ms,
            "max_samples_per_doc": self.limits.max_samples_per_doc,
            "max_tokens": self.limits.max_tokens,
            "max_spec_bytes": self.limits.max_spec_bytes,
            "max_shard_size": self.limits.max_shard_size,
            "dataset_roots": roots_json(&self.read.roots),
            "max_docs_per_job": self.read.limits.max_docs,
            "max_dataset_bytes": self.read.limits.max_bytes,
            "max_line_bytes": self.read.limits.max_line_bytes,
            "s3": s3_json(&self.s3),
        })
    }
}

pub fn resolve_serve(
    flags: &ServeFlags,
    env: &Env,
    file: &ConfigFile,
) -> Result<ServeSettings, ConfigError> {
    let flags = flags.clone();
    let f = &file.serve;
    let listen = flags.listen.layered(f.listen.clone());
    let database_url = flags.database_url.layered_opt(f.database_url.clone());
    let cache = flags.cache.layered_opt(f.cache.clone());
    let home = flags.home.layered(f.home.clone());
    let admin_env = flags.admin_token_env.layered(f.admin_token_env.clone());
    let worker_env = flags.worker_token_env.layered(f.worker_token_env.clone());
    let lease_secs = flags.lease_secs.layered(f.lease_secs);
    if lease_secs < 2 {
        return Err(ConfigError::Invalid {
            source_name: "lease_secs".into(),
            value: lease_secs.to_string(),
            expected: "at least 2 seconds (workers heartbeat several times per lease)",
        });
    }
    let heartbeat_source = flags
        .heartbeat_secs
        .source_name(|| file.origin("serve.heartbeat_secs"));
    let heartbeat_secs = flags
        .heartbeat_secs
        .layered_opt(f.heartbeat_secs)
        .unwrap_or_else(|| defaults::default_heartbeat_secs(lease_secs));
    if heartbeat_secs == 0 || heartbeat_secs >= lease_secs {
        return Err(ConfigError::Invalid {
            source_name: heartbeat_source,
            value: heartbeat_secs.to_string(),
            expected: "at least 1 and below lease_secs (a third of it is usual)",
        });
    }
    let reaper_interval_ms = flags
        .reaper_interval_ms
        .layered(f.reaper_interval_ms)
        .max(defaults::MIN_REAPER_INTERVAL_MS);
    let limits = coordinator::JobLimits {
        max_samples_per_doc: flags.max_samples_per_doc.layered(f.max_samples_per_doc),
        max_tokens: flags.max_tokens.layered(f.max_tokens),
        max_spec_bytes: flags.max_spec_bytes.layered(f.max_spec_bytes),
        max_shard_size: flags.max_shard_size.layered(f.max_shard_size),
    };
    let read_limits = jobs::ReadLimits {
        max_docs: flags.max_docs_per_job.layered(f.max_docs_per_job),
        max_bytes: flags.max_dataset_bytes.layered(f.max_dataset_bytes),
        max_line_bytes: flags.max_line_bytes.layered(f.max_line_bytes),
    };
    for (key, value) in [
        ("max_samples_per_doc", u64::from(limits.max_samples_per_doc)),
        ("max_tokens", u64::from(limits.max_tokens)),
        ("max_spec_bytes", limits.max_spec_bytes),
        ("max_shard_size", u64::from(limits.max_shard_size)),
        ("max_docs_per_job", read_limits.max_docs),
        ("max_dataset_bytes", read_limits.max_bytes),
        ("max_line_bytes", read_limits.max_line_bytes),
    ] {
        if value == 0 {
            return Err(ConfigError::Invalid {
                source_name: file.origin(&format!("serve.{key}")),
                value: value.to_string(),
                expected: "a whole number of at least 1",
            });
        }
    }
    let roots = match layered_list(
        &flags.dataset_roots,
        f.dataset_roots.as_ref(),
        file.origin("serve.dataset_roots"),
    ) {
        Some((list, source_name)) => jobs::DatasetRoots::only(&list)
            .map_err(|error| ConfigError::DatasetRoot { source_name, error })?,
        None => jobs::DatasetRoots::none(),
    };
    let admin_token = secret(
        env,
        admin_env,
        "admin token",
        "--admin-token-env",
        "serve.admin_token_env",
    )?;
    let worker_token = secret(
        env,
        worker_env,
        "worker token",
        "--worker-token-env",
        "serve.worker_token_env",
    )?;
    if let Err((role, rule)) =
        coordinator::check_tokens(admin_token.expose(), worker_token.expose())
    {
        let (what, token) = match role {
            coordinator::TokenRole::Admin => ("admin token", &admin_token),
            coordinator::TokenRole::Worker => ("worker token", &worker_token),
        };
        return Err(ConfigError::WeakToken {
            what,
            name: token.var().to_string(),
            rule,
        });
    }
    Ok(ServeSettings {
        listen,
        database_url,
        cache,
        home,
        admin_token,
        worker_token,
        lease_secs,
        heartbeat_secs,
        reaper_interval_ms,
        limits,
        read: jobs::ReadPolicy::new(roots, read_limits),
        s3: resolve_s3(&flags.s3, env, file),
    })
}

/// The roots for `--print-settings`: the folders as resolved.
fn roots_json(roots: &jobs::DatasetRoots) -> serde_json::Value {
    match roots {
        jobs::DatasetRoots::Any => serde_json::json!("any"),
        jobs::DatasetRoots::Only { dirs, prefixes } => serde_json::json!(dirs
            .iter()
            .map(|d| d.display().to_string())
            .chain(prefixes.iter().cloned())
            .collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_env::{env_of, file, TOKENS};
    use super::*;

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
        let env = env_of(&TOKENS);
        let flags = ServeFlags {
            lease_secs: Given::flag("--lease-secs", 9),
            database_url: Given::env("SHARDLINE_DATABASE_URL", Some("postgres://env/db".into())),
            s3: S3Flags {
                endpoint: Given::flag("--s3-endpoint", Some("http://flag:9000".into())),
                region: Given::env("AWS_REGION", Some("us-west-2".into())),
                ..S3Flags::default()
            },
            ..ServeFlags::default()
        };
        let s = resolve_serve(&flags, &env, &cfg).unwrap();
        assert_eq!(s.lease_secs, 9, "flag over file");
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
        assert_eq!(s.admin_token.expose(), "admin-secret-value-1");

        let bare = resolve_serve(
            &ServeFlags::default(),
            &env_of(&TOKENS),
            &ConfigFile::default(),
        )
        .unwrap();
        assert_eq!(bare.listen, defaults::LISTEN);
        assert_eq!(bare.lease_secs, 60);
        assert_eq!(bare.reaper_interval_ms, 2_000, "the coordinator's default");
        assert_eq!(bare.database_url, None, "SQLite under the home by default");
        assert!(!bare.s3.force_path_style);

        let with_password = ServeFlags {
            database_url: Given::flag("--database-url", Some("postgres://u:db-pa55@h/db".into())),
            ..ServeFlags::default()
        };
        let s = resolve_serve(&with_password, &env_of(&TOKENS), &ConfigFile::default()).unwrap();
        for shown in [format!("{s:?}"), s.to_json().to_string()] {
            assert!(!shown.contains("db-pa55"), "{shown}");
            assert!(!shown.contains("admin-secret-value-1"), "{shown}");
            assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
        }
        assert!(s.to_json().to_string().contains("SHARDLINE_ADMIN_TOKEN"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let cfg = file("[serve]\nlease_secs = 6\nheartbeat_secs = 6\n");
        let err = resolve_serve(&ServeFlags::default(), &env_of(&TOKENS), &cfg).unwrap_err();
        assert!(err.to_string().contains("serve.heartbeat_secs"), "{err}");
        let flags = ServeFlags {
            heartbeat_secs: Given::env("SHARDLINE_HEARTBEAT_SECS", Some(0)),
            ..ServeFlags::default()
        };
        let err = resolve_serve(&flags, &env_of(&TOKENS), &cfg).unwrap_err();
        assert!(
            err.to_string().contains("SHARDLINE_HEARTBEAT_SECS"),
            "{err}"
        );
        let flags = ServeFlags {
            lease_secs: Given::flag("--lease-secs", 1),
            ..ServeFlags::default()
        };
        let err = resolve_serve(&flags, &env_of(&TOKENS), &cfg).unwrap_err();
        assert!(err.to_string().contains("at least 2 seconds"), "{err}");
    }
}
