//! How to reach S3: endpoint, addressing style, region and credentials, from flags or the environment.

use std::fmt;

use crate::error::ObjectStoreError;

/// Static keys, for embedding and tests. Normal use leaves
/// [`S3Options::credentials`] empty and lets the standard AWS chain find them.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in debug output.
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// How to reach the bucket. Credentials come from the standard AWS chain
/// (environment, shared config and credentials files with `AWS_PROFILE`,
/// web identity, ECS and EC2 instance metadata) unless set here.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    /// `None` talks to AWS.
    pub endpoint_url: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of
    /// `bucket.endpoint/key`. Most S3-compatible servers need it; it is also
    /// turned on for endpoints whose host is an IP address or `localhost`,
    /// where the virtual-hosted style cannot work.
    pub force_path_style: bool,
    /// `None`: the AWS chain's region (`AWS_REGION`, profile), or
    /// `us-east-1` with a custom endpoint.
    pub region: Option<String>,
    /// `None`: the standard AWS credentials chain.
    pub credentials: Option<S3Credentials>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An endpoint URL may carry `user:password@`; debug output drops it.
        f.debug_struct("S3Options")
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_endpoint),
            )
            .field("force_path_style", &self.force_path_style)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl S3Options {
    /// Options from the environment: `SHARDLINE_S3_ENDPOINT`, else
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`;
    /// `SHARDLINE_S3_FORCE_PATH_STYLE` (`1`/`true`/`yes` or `0`/`false`/`no`);
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`. Credentials are left to the
    /// AWS chain.
    pub fn from_env() -> Result<Self, ObjectStoreError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`S3Options::from_env`] over any variable lookup (tests, config files).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ObjectStoreError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let endpoint_url = non_empty("SHARDLINE_S3_ENDPOINT")
            .or_else(|| non_empty("AWS_ENDPOINT_URL_S3"))
            .or_else(|| non_empty("AWS_ENDPOINT_URL"));
        let force_path_style = match non_empty("SHARDLINE_S3_FORCE_PATH_STYLE") {
            None => false,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(ObjectStoreError::InvalidOption {
                        name: "SHARDLINE_S3_FORCE_PATH_STYLE",
                        value,
                        expected: "1, true, yes, 0, false or no",
                    })
                }
            },
        };
        let region = non_empty("AWS_REGION").or_else(|| non_empty("AWS_DEFAULT_REGION"));
        Ok(S3Options {
            endpoint_url,
            force_path_style,
            region,
            credentials: None,
        })
    }

    pub(super) fn path_style(&self) -> bool {
        self.force_path_style
            || self
                .endpoint_url
                .as_deref()
                .is_some_and(endpoint_needs_path_style)
    }
}

/// Whether an endpoint's host cannot carry a bucket name as a subdomain.
fn endpoint_needs_path_style(endpoint: &str) -> bool {
    let host = endpoint_host(endpoint);
    host == "localhost" || host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The host of an endpoint URL, without scheme, credentials, port or path.
fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        return host_port
            .split_once(']')
            .map_or(host_port, |(h, _)| &host_port[..h.len() + 1]);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// An endpoint for messages: any `user:password@` part is dropped.
pub(super) fn redact_endpoint(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{tail}")
        }
        None => endpoint
            .rsplit_once('@')
            .map_or(endpoint, |(_, h)| h)
            .to_string(),
    }
}
