//! The HTTP client the endpoint backends (`openai`, and `openai-batch` for
//! the Files and Batches API) build from `[model]`: its timeouts and whom
//! it trusts over TLS, set in one place so that both backends reach the
//! same servers.

use jobs::spec::ModelSpec;
use std::time::Duration;

use super::error::BackendError;
use super::tls;

/// A client builder for `model`'s endpoint: `timeout_secs` per request,
/// at most 10 s to connect, and TLS as `ssl_verify` and `ca_cert` say
/// (plus `SSL_CERT_FILE` and `SSL_CERT_DIR`). Callers add what is theirs
/// (the pool size) and build it.
pub(crate) fn client_builder(model: &ModelSpec) -> Result<reqwest::ClientBuilder, BackendError> {
    let timeout = Duration::from_secs(model.timeout_secs.max(1));
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)));
    if !model.ssl_verify {
        // Nothing is verified, so there is nothing to add either; a broken
        // SSL_CERT_FILE must not stop a job that asked for no checks.
        return Ok(builder.danger_accept_invalid_certs(true));
    }
    for der in tls::extra_roots(model)? {
        let cert = reqwest::Certificate::from_der(&der).map_err(|e| {
            BackendError::Config(format!("cannot use a CA certificate to trust: {e}"))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}

/// Builds `builder`, naming what failed.
pub(crate) fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, BackendError> {
    builder
        .build()
        .map_err(|e| BackendError::Config(format!("cannot build the HTTP client: {e}")))
}
