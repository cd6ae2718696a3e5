//! Building the aws-sdk-s3 client: TLS, retries, timeouts, addressing and credentials.

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::Client;
use std::time::Duration;

use super::options::S3Options;

/// Attempts per request, counting the first; the SDK's standard mode retries
/// 5xx answers, throttling, timeouts and broken connections with jittered
/// exponential backoff.
pub(super) const MAX_ATTEMPTS: u32 = 5;
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a response to start once the request is sent.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// One attempt of one request, body included (a 16 MiB part on a slow link).
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// All attempts of one request together.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);
/// Region sent to S3-compatible servers when none is configured; most ignore
/// it, but SigV4 needs one.
pub(super) const FALLBACK_REGION: &str = "us-east-1";

pub(super) async fn build_client(options: &S3Options) -> Client {
    // rustls on `ring`: the crypto the workspace already builds for reqwest,
    // instead of the SDK's default aws-lc-rs C library.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let retry = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(retry)
        .timeout_config(timeouts);
    let region = options.region.clone().or_else(|| {
        // A custom endpoint rarely cares about the region, and asking the
        // AWS chain would probe EC2 instance metadata.
        options
            .endpoint_url
            .as_ref()
            .map(|_| FALLBACK_REGION.to_string())
    });
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = &options.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(keys) = &options.credentials {
        loader = loader.credentials_provider(Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            None,
            None,
            "shardline-s3-options",
        ));
    }
    let shared = loader.load().await;
    let mut config =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(options.path_style());
    if options.endpoint_url.is_some() {
        // Many S3-compatible servers reject the SDK's default
        // aws-chunked upload checksums; send and check them only when an
        // operation requires it. TLS and Content-Length still guard bodies.
        config = config
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(config.build())
}
