//! The TOML config file (`--config FILE` or `$SHARDLINE_CONFIG`): one table
//! per role (`[serve]`, `[worker]`, `[client]`) and `[s3]` for the cache's
//! S3 options. Secrets never appear in it: it may only name the variable
//! that holds one.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::error::ConfigError;

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
    pub max_samples_per_doc: Option<u32>,
    pub max_tokens: Option<u32>,
    pub max_shard_size: Option<u32>,
    pub dataset_roots: Option<Vec<String>>,
    pub max_docs_per_job: Option<u64>,
    pub max_dataset_bytes: Option<u64>,
    pub max_line_bytes: Option<u64>,
    pub max_spec_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    pub coordinator: Option<String>,
    pub token_env: Option<String>,
    pub cache: Option<String>,
    pub backends: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub allow_key_env: Option<Vec<String>>,
    pub allow_endpoints: Option<Vec<String>>,
    pub shards: Option<usize>,
    pub id: Option<String>,
    pub poll_ms: Option<u64>,
    pub flush_ms: Option<u64>,
    pub flush_outputs: Option<usize>,
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
    /// Reads the file named by `--config` (or, through clap, by
    /// `$SHARDLINE_CONFIG`); no file at all is an empty config.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(ConfigFile::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
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
    pub(super) fn origin(&self, key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_their_path_and_line() {
        let err = ConfigFile::parse("[serve]\nlease_sec = 3\n", Path::new("c.toml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("c.toml") && text.contains("line 2"), "{text}");
        assert!(text.contains("lease_sec"), "{text}");
        let missing = ConfigFile::load(Some(Path::new("/nonexistent/x.toml")));
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x.toml"));
    }

    #[test]
    fn a_named_file_is_read_and_none_is_empty() {
        // That `$SHARDLINE_CONFIG` names the file, and that --config wins
        // over it, is clap's part: tests/cli_config.rs runs the binary.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[client]\ncoordinator = \"http://cfg:1\"\n").unwrap();
        let cfg = ConfigFile::load(Some(&path)).unwrap();
        assert_eq!(cfg.client.coordinator.as_deref(), Some("http://cfg:1"));
        assert_eq!(cfg.path.as_deref(), Some(path.as_path()));
        let none = ConfigFile::load(None).unwrap();
        assert_eq!(none.client.coordinator, None);
    }
}
