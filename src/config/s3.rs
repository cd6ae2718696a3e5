//! The cache's S3 options: flags (`--s3-*`), then their variables and the
//! standard AWS ones, then `[s3]`.

use super::file::ConfigFile;
use super::layer::Given;
use super::secret::{first_env, Env};

/// The `--s3-*` flags, with `SHARDLINE_S3_ENDPOINT`,
/// `SHARDLINE_S3_FORCE_PATH_STYLE` and `AWS_REGION` read by clap.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct S3Flags {
    pub endpoint: Given<Option<String>>,
    pub force_path_style: Given<bool>,
    pub region: Given<Option<String>>,
}

/// The AWS chain's own endpoint variables, after `SHARDLINE_S3_ENDPOINT`.
const AWS_ENDPOINT_VARS: [&str; 2] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];
/// The AWS chain's fallback region variable, after `AWS_REGION`.
const AWS_REGION_FALLBACK: &str = "AWS_DEFAULT_REGION";

pub fn resolve_s3(flags: &S3Flags, env: &Env, file: &ConfigFile) -> cache::S3Options {
    let endpoint_url = explicit(&flags.endpoint)
        .or_else(|| first_env(env, &AWS_ENDPOINT_VARS).map(|(_, v)| v))
        .or_else(|| file.s3.endpoint.clone());
    let force_path_style = flags
        .force_path_style
        .clone()
        .layered(file.s3.force_path_style);
    let region = explicit(&flags.region)
        .or_else(|| first_env(env, &[AWS_REGION_FALLBACK]).map(|(_, v)| v))
        .or_else(|| file.s3.region.clone());
    cache::S3Options {
        endpoint_url,
        force_path_style,
        region,
        credentials: None,
    }
}

/// The S3 options as `--print-settings` shows them (no credentials).
pub(super) fn s3_json(s3: &cache::S3Options) -> serde_json::Value {
    serde_json::json!({
        "endpoint": s3.endpoint_url,
        "force_path_style": s3.force_path_style,
        "region": s3.region,
    })
}

fn explicit(given: &Given<Option<String>>) -> Option<String> {
    given.value.clone().filter(|_| given.is_explicit())
}

#[cfg(test)]
mod tests {
    use super::super::test_env::env_of;
    use super::*;
    use std::path::Path;

    #[test]
    fn flags_then_variables_then_the_file() {
        let cfg = ConfigFile::parse(
            "[s3]\nendpoint = \"http://file:9000\"\nregion = \"eu-west-1\"\nforce_path_style = true\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let env = env_of(&[
            ("AWS_ENDPOINT_URL", "http://aws:1"),
            ("AWS_DEFAULT_REGION", "ap-1"),
        ]);
        let bare = resolve_s3(&S3Flags::default(), &env, &cfg);
        assert_eq!(bare.endpoint_url.as_deref(), Some("http://aws:1"));
        assert_eq!(bare.region.as_deref(), Some("ap-1"));
        assert!(bare.force_path_style, "the file's, over the default");
        let flags = S3Flags {
            endpoint: Given::env("SHARDLINE_S3_ENDPOINT", Some("http://env:2".into())),
            force_path_style: Given::env("SHARDLINE_S3_FORCE_PATH_STYLE", false),
            region: Given::flag("--s3-region", Some("us-east-2".into())),
        };
        let s = resolve_s3(&flags, &env, &cfg);
        assert_eq!(s.endpoint_url.as_deref(), Some("http://env:2"));
        assert_eq!(s.region.as_deref(), Some("us-east-2"));
        assert!(!s.force_path_style, "a variable's 0 beats the file");
        let nothing = resolve_s3(&S3Flags::default(), &env_of(&[]), &ConfigFile::default());
        assert_eq!(nothing.endpoint_url, None);
        assert!(!nothing.force_path_style);
    }
}
