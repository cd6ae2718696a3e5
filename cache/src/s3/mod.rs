//! Object store on Amazon S3 or an S3-compatible server (MinIO, Ceph, R2,
//! s3s, moto…) through aws-sdk-s3: `s3://bucket/prefix`.

mod client;
mod datasets;
mod location;
mod multipart;
mod options;
mod sdk_error;
#[cfg(test)]
mod tests;

pub use datasets::S3Datasets;
pub use location::S3Location;
pub use options::{S3Credentials, S3Options};

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::fmt;
use tokio::sync::OnceCell;

use crate::error::{ObjectStoreError, S3ErrorKind};
use crate::object_store::{check_path, ObjectMeta, ObjectStore};
use client::{build_client, FALLBACK_REGION, MAX_ATTEMPTS};
pub use multipart::MULTIPART_PART_SIZE;
use options::redact_endpoint;
use sdk_error::{classify, describe_sdk_error};

/// Objects larger than this are uploaded in parts, so one lost connection
/// costs a part, not the whole object.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Whole-download retries of `get` when the body breaks after the headers
/// arrived (the SDK only retries until the response starts).
const BODY_ATTEMPTS: u32 = 3;

///
/// The client is built on first use: loading the AWS configuration is async,
/// and building it lazily keeps [`crate::open_store`] synchronous. `put` is
/// atomic because S3 makes an object visible only once its upload completes;
/// a multipart upload that fails is aborted so no parts are left billed.
pub struct S3Store {
    location: S3Location,
    options: S3Options,
    client: OnceCell<Client>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location.to_string())
            .field(
                "endpoint",
                &self.options.endpoint_url.as_deref().map(redact_endpoint),
            )
            .field("path_style", &self.options.path_style())
            .finish()
    }
}

impl S3Store {
    /// A store for `s3://bucket/prefix`. Nothing is contacted yet; call
    /// [`ObjectStore::check_access`] to fail early on a wrong endpoint,
    /// bucket or credentials.
    pub fn new(location: &str, options: S3Options) -> Result<Self, ObjectStoreError> {
        Ok(S3Store {
            location: S3Location::parse(location)?,
            options,
            client: OnceCell::new(),
        })
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| build_client(&self.options))
            .await
    }

    fn endpoint_for_messages(&self) -> String {
        self.options
            .endpoint_url
            .as_deref()
            .map(redact_endpoint)
            .unwrap_or_else(|| "AWS S3".to_string())
    }

    /// Turns an SDK error into a [`ObjectStoreError::S3`] that says what to check.
    fn error<E>(&self, op: &'static str, path: &str, err: SdkError<E>) -> ObjectStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let kind = classify(&err);
        let detail = describe_sdk_error(&err);
        let endpoint = self.endpoint_for_messages();
        let bucket = self.location.bucket();
        let hint = match kind {
            S3ErrorKind::Unreachable => format!(
                "check that the endpoint {endpoint} is right and reachable \
                 (SHARDLINE_S3_ENDPOINT or AWS_ENDPOINT_URL)"
            ),
            S3ErrorKind::Credentials => format!(
                "check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 AWS_PROFILE) and that they may use bucket {bucket} at {endpoint}"
            ),
            S3ErrorKind::NoSuchBucket => format!(
                "bucket {bucket} does not exist at {endpoint}: create it, or fix the cache \
                 location or the endpoint"
            ),
            S3ErrorKind::Server => {
                format!("{endpoint} kept failing after {MAX_ATTEMPTS} attempts; try again later")
            }
            S3ErrorKind::BadResponse => format!(
                "{endpoint} did not answer like S3: check the endpoint, and try \
                 SHARDLINE_S3_FORCE_PATH_STYLE=1 for S3-compatible servers"
            ),
            S3ErrorKind::Other => {
                format!("check the endpoint ({endpoint}), the credentials and bucket {bucket}")
            }
        };
        ObjectStoreError::S3 {
            op,
            store: self.describe(),
            path: path.to_string(),
            kind,
            detail,
            hint,
        }
    }

    /// Creates the bucket when it does not exist yet, for development
    /// setups and tests (production buckets belong to infrastructure code).
    /// Returns whether it was created.
    pub async fn create_bucket_if_missing(&self) -> Result<bool, ObjectStoreError> {
        let client = self.client().await;
        let bucket = self.location.bucket();
        match client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(self.error("look up bucket for", "", e)),
        }
        let mut request = client.create_bucket().bucket(bucket);
        // Outside us-east-1, S3 wants the region named again in the body.
        if let Some(region) = client.config().region().map(|r| r.as_ref().to_string()) {
            if region != FALLBACK_REGION {
                request = request.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region.as_str()))
                        .build(),
                );
            }
        }
        match request.send().await {
            Ok(_) => Ok(true),
            // Another process created it between the two requests.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("create bucket for", "", e)),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), ObjectStoreError> {
        check_path(path)?;
        let key = self.location.key(path);
        if data.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(path, &key, data).await;
        }
        self.client()
            .await
            .put_object()
            .bucket(self.location.bucket())
            .key(&key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("write", path, e))?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes, ObjectStoreError> {
        check_path(path)?;
        let key = self.location.key(path);
        let client = self.client().await;
        let mut attempt = 1;
        loop {
            let response = client
                .get_object()
                .bucket(self.location.bucket())
                .key(&key)
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Err(ObjectStoreError::NotFound {
                        store: self.describe(),
                        path: path.to_string(),
                    })
                }
                Err(e) => {
                    // Some S3-compatible servers answer a bare 404 without
                    // the NoSuchKey code; the bucket check below keeps a
                    // missing bucket from reading as a missing object.
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    if status == Some(404) && e.code() != Some("NoSuchBucket") {
                        return Err(ObjectStoreError::NotFound {
                            store: self.describe(),
                            path: path.to_string(),
                        });
                    }
                    return Err(self.error("read", path, e));
                }
            };
            match output.body.collect().await {
                Ok(body) => return Ok(body.into_bytes()),
                Err(e) if attempt < BODY_ATTEMPTS => {
                    tracing::warn!(store = %self.describe(), path, attempt, error = %e,
                        "object download broke off; downloading it again");
                    attempt += 1;
                }
                Err(e) => {
                    return Err(ObjectStoreError::S3 {
                        op: "read",
                        store: self.describe(),
                        path: path.to_string(),
                        kind: S3ErrorKind::Unreachable,
                        detail: format!("the download broke off {BODY_ATTEMPTS} times: {e}"),
                        hint: format!("check the network to {}", self.endpoint_for_messages()),
                    })
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectStoreError> {
        let client = self.client().await;
        let full_prefix = self.location.key(prefix);
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(self.location.bucket())
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("list", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(path) = key.strip_prefix(self.location.prefix()) else {
                    continue;
                };
                objects.push(ObjectMeta {
                    path: path.to_string(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(next)) if !next.is_empty() => token = Some(next.to_string()),
                (Some(true), _) => {
                    // A truncated page without a token would loop forever.
                    return Err(ObjectStoreError::S3 {
                        op: "list",
                        store: self.describe(),
                        path: prefix.to_string(),
                        kind: S3ErrorKind::BadResponse,
                        detail: "a truncated listing came without a continuation token".to_string(),
                        hint: format!(
                            "{} did not page like S3; check the endpoint",
                            self.endpoint_for_messages()
                        ),
                    });
                }
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    async fn delete(&self, path: &str) -> Result<(), ObjectStoreError> {
        check_path(path)?;
        // S3 answers a delete of a missing key with success, as the trait
        // wants.
        self.client()
            .await
            .delete_object()
            .bucket(self.location.bucket())
            .key(self.location.key(path))
            .send()
            .await
            .map_err(|e| self.error("delete", path, e))?;
        Ok(())
    }

    async fn check_access(&self) -> Result<(), ObjectStoreError> {
        let client = self.client().await;
        // Listing one key proves endpoint, credentials, bucket and the read
        // permission the cache needs, where HeadBucket's bare 403/404 says
        // less.
        client
            .list_objects_v2()
            .bucket(self.location.bucket())
            .prefix(self.location.prefix())
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.error("list", self.location.prefix(), e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.location.to_string()
    }
}
