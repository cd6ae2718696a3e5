//! An S3 failure as a dataset read sees it: whether trying again could
//! help, and what to check, in words about the dataset's location rather
//! than the cache's.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use jobs::dataset::ObjectSourceError;

use super::super::sdk_error::{classify, describe_sdk_error};
use super::super::S3Store;
use crate::error::S3ErrorKind;

/// `op` (`list`, `read`) of a dataset object failed with `err` after the
/// SDK's retries.
pub(super) fn dataset_error<E>(store: &S3Store, op: &str, err: &SdkError<E>) -> ObjectSourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = classify(err);
    let detail = describe_sdk_error(err);
    let endpoint = store.endpoint_for_messages();
    let bucket = store.location().bucket();
    let hint = match kind {
        S3ErrorKind::Unreachable => format!(
            "check that the endpoint {endpoint} is right and reachable (--s3-endpoint, \
             SHARDLINE_S3_ENDPOINT or AWS_ENDPOINT_URL)"
        ),
        S3ErrorKind::Credentials => format!(
            "check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) \
             and that they may read bucket {bucket}"
        ),
        S3ErrorKind::NoSuchBucket => format!(
            "bucket {bucket} does not exist at {endpoint}: check the dataset's location and the \
             endpoint"
        ),
        S3ErrorKind::Server => format!("{endpoint} kept failing; try again later"),
        S3ErrorKind::BadResponse => format!(
            "{endpoint} did not answer like S3: check the endpoint, and try \
             SHARDLINE_S3_FORCE_PATH_STYLE=1 for S3-compatible servers"
        ),
        S3ErrorKind::Other => {
            format!("check the endpoint ({endpoint}), the credentials and bucket {bucket}")
        }
    };
    let text = format!("S3 {op} failed ({kind}): {detail}; {hint}");
    match kind {
        S3ErrorKind::Unreachable | S3ErrorKind::Server => ObjectSourceError::Unavailable(text),
        _ => ObjectSourceError::Refused(text),
    }
}

/// Whether a GetObject error means there is no such object: S3's
/// NoSuchKey, or the bare 404 some compatible servers answer (a missing
/// bucket says NoSuchBucket and is not this).
pub(super) fn is_missing_object(
    err: &SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> bool {
    if err.as_service_error().is_some_and(|s| s.is_no_such_key()) {
        return true;
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    status == Some(404) && err.code() != Some("NoSuchBucket")
}
