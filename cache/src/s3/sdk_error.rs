//! What an aws-sdk-s3 error most likely means, for messages that say what to check.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::S3ErrorKind;

/// Maps an SDK error to what the user should check.
pub(super) fn classify<E>(err: &SdkError<E>) -> S3ErrorKind
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) => S3ErrorKind::Unreachable,
        SdkError::DispatchFailure(failure) => {
            if failure.is_io() || failure.is_timeout() {
                S3ErrorKind::Unreachable
            } else if is_credentials_failure(err) {
                S3ErrorKind::Credentials
            } else {
                S3ErrorKind::Other
            }
        }
        SdkError::ResponseError(_) => S3ErrorKind::BadResponse,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match err.code() {
                Some("NoSuchBucket") => S3ErrorKind::NoSuchBucket,
                Some(
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired",
                ) => S3ErrorKind::Credentials,
                _ if status == 401 || status == 403 => S3ErrorKind::Credentials,
                _ if status >= 500 || status == 429 => S3ErrorKind::Server,
                _ => S3ErrorKind::Other,
            }
        }
        _ if is_credentials_failure(err) => S3ErrorKind::Credentials,
        _ => S3ErrorKind::Other,
    }
}

/// One line on what failed: the service's status, code and message, or the
/// chain of causes for failures before an answer. (The SDK's own context
/// display dumps whole responses.)
pub(super) fn describe_sdk_error<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = err {
        let status = service.raw().status().as_u16();
        let code = err.code().unwrap_or("no error code");
        return match err.message() {
            Some(message) => format!("HTTP {status} {code}: {message}"),
            None => format!("HTTP {status} {code}"),
        };
    }
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Whether the request failed before sending because no credentials could be
/// found; the SDK reports that only in its message.
pub(super) fn is_credentials_failure<E>(err: &SdkError<E>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = describe_sdk_error(err).to_ascii_lowercase();
    text.contains("credentials") || text.contains("identity")
}
