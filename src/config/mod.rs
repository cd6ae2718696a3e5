//! Settings of the cluster commands (`serve`, `worker`, `submit`, `status`,
//! `results`, `rescore`, `cancel`), resolved once, in this precedence:
//! command-line flag > environment variable (both read by clap, which says
//! which one gave a value) > the TOML config file > the defaults table.
//!
//! Secrets never come from flags or the file: those only name the
//! environment variable that holds one.

mod client;
pub mod defaults;
mod error;
mod file;
mod layer;
mod s3;
mod secret;
mod serve;
mod worker;

pub use client::{resolve_client, ClientFlags};
pub use error::ConfigError;
pub use file::ConfigFile;
pub use layer::{Given, Origin};
pub use s3::S3Flags;
pub use secret::process_env;
pub use serve::{resolve_serve, ServeFlags};
pub use worker::{resolve_worker, WorkerFlags};

/// An environment and a file for the resolution tests.
#[cfg(test)]
mod test_env {
    use std::collections::HashMap;
    use std::path::Path;

    use super::ConfigFile;

    pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    pub fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("/etc/shardline.toml")).expect("valid config")
    }

    pub const TOKENS: [(&str, &str); 2] = [
        ("SHARDLINE_ADMIN_TOKEN", "admin-secret-value-1"),
        ("SHARDLINE_WORKER_TOKEN", "worker-secret-value-2"),
    ];
}
