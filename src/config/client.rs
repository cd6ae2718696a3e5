//! What the job commands (`submit`, `status`, `results`, `rescore`,
//! `cancel`) talk to.

use super::defaults;
use super::error::ConfigError;
use super::file::ConfigFile;
use super::layer::Given;
use super::secret::{secret, Env, Secret};

#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    pub coordinator: String,
    pub token: Secret,
}

#[derive(Debug, Clone)]
pub struct ClientFlags {
    pub coordinator: Given<String>,
    pub token_env: Given<String>,
}

impl Default for ClientFlags {
    fn default() -> Self {
        ClientFlags {
            coordinator: Given::default_value(defaults::COORDINATOR.to_string()),
            token_env: Given::default_value(defaults::ADMIN_TOKEN_ENV.to_string()),
        }
    }
}

pub fn resolve_client(
    flags: &ClientFlags,
    env: &Env,
    file: &ConfigFile,
) -> Result<ClientSettings, ConfigError> {
    let flags = flags.clone();
    let f = &file.client;
    let coordinator = flags.coordinator.layered(f.coordinator.clone());
    let token_env = flags.token_env.layered(f.token_env.clone());
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

#[cfg(test)]
mod tests {
    use super::super::test_env::{env_of, file};
    use super::*;

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
            token_env: Given::flag("--token-env", "OTHER".into()),
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
}
