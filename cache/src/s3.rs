//! Object store on Amazon S3 or an S3-compatible server (MinIO, Ceph, R2,
//! s3s, moto…) through aws-sdk-s3: `s3://bucket/prefix`.

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::stream::{StreamExt, TryStreamExt};
use std::fmt;
use std::time::Duration;
use tokio::sync::OnceCell;

use crate::object_store::{check_path, ObjectMeta, ObjectStore, ObjectStoreError};

/// Objects larger than this are uploaded in parts, so one lost connection
/// costs a part, not the whole object.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each uploaded part but the last (S3 wants at least 5 MiB).
pub const MULTIPART_PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts of one object uploaded at once.
const PART_CONCURRENCY: usize = 4;
/// Attempts per request, counting the first; the SDK's standard mode retries
/// 5xx answers, throttling, timeouts and broken connections with jittered
/// exponential backoff.
const MAX_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a response to start once the request is sent.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// One attempt of one request, body included (a 16 MiB part on a slow link).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// All attempts of one request together.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);
/// Whole-download retries of `get` when the body breaks after the headers
/// arrived (the SDK only retries until the response starts).
const BODY_ATTEMPTS: u32 = 3;
/// Region sent to S3-compatible servers when none is configured; most ignore
/// it, but SigV4 needs one.
const FALLBACK_REGION: &str = "us-east-1";

/// A parsed `s3://bucket/prefix` location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    bucket: String,
    /// Key prefix of every object: empty, or ending in `/`.
    prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix` (a trailing `/` is
    /// optional).
    pub fn parse(location: &str) -> Result<Self, ObjectStoreError> {
        let invalid = |reason| Err(ObjectStoreError::Unsupported(location.to_string(), reason));
        let Some(rest) = location.strip_prefix("s3://") else {
            return invalid("an S3 location starts with s3://");
        };
        let (bucket, prefix) = match rest.split_once('/') {
            Some((bucket, prefix)) => (bucket, prefix.trim_end_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return invalid("no bucket: write s3://BUCKET or s3://BUCKET/PREFIX");
        }
        // S3 bucket names: 3-63 characters of lowercase letters, digits, '.'
        // and '-'. Checking here turns a confusing signature or DNS error
        // later into a plain message now.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return invalid(
                "bucket names are 3 to 63 characters of lowercase letters, digits, '.' and '-'",
            );
        }
        if !prefix.is_empty() {
            if let Err(ObjectStoreError::InvalidPath { .. }) = check_path(prefix) {
                return invalid(
                    "the prefix has an empty, '.' or '..' component, a backslash or NUL",
                );
            }
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Key prefix of every object: empty, or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            return write!(f, "s3://{}", self.bucket);
        }
        write!(
            f,
            "s3://{}/{}",
            self.bucket,
            self.prefix.trim_end_matches('/')
        )
    }
}

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

    fn path_style(&self) -> bool {
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
fn redact_endpoint(endpoint: &str) -> String {
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

/// What most likely went wrong with an S3 request, so the message can say
/// what to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3ErrorKind {
    /// No connection, or no answer in time.
    Unreachable,
    /// Credentials missing, unknown, or not allowed to do this.
    Credentials,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The server kept failing (5xx, throttling) after every retry.
    Server,
    /// The server answered something that is not a valid S3 response.
    BadResponse,
    /// Anything else the server refused.
    Other,
}

impl fmt::Display for S3ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            S3ErrorKind::Unreachable => "endpoint unreachable",
            S3ErrorKind::Credentials => "credentials",
            S3ErrorKind::NoSuchBucket => "no such bucket",
            S3ErrorKind::Server => "server error",
            S3ErrorKind::BadResponse => "not an S3 response",
            S3ErrorKind::Other => "request refused",
        })
    }
}

/// A cache in an S3 bucket under a key prefix.
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

    async fn put_multipart(
        &self,
        path: &str,
        key: &str,
        data: Bytes,
    ) -> Result<(), ObjectStoreError> {
        let client = self.client().await;
        let bucket = self.location.bucket();
        let created = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("start multipart upload of", path, e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(ObjectStoreError::S3 {
                op: "start multipart upload of",
                store: self.describe(),
                path: path.to_string(),
                kind: S3ErrorKind::BadResponse,
                detail: "the answer has no upload id".to_string(),
                hint: format!(
                    "{} did not answer like S3: check the endpoint",
                    self.endpoint_for_messages()
                ),
            });
        };
        // Aborts the upload if this future is dropped (cancelled) before it
        // completes or is aborted below.
        let mut guard = AbortOnDrop {
            client: Some(client.clone()),
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.clone(),
        };
        let result = self.upload_parts(path, key, &upload_id, data).await;
        let outcome = match result {
            Ok(parts) => client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("complete multipart upload of", path, e)),
            Err(e) => Err(e),
        };
        if outcome.is_ok() {
            guard.client = None;
            return Ok(());
        }
        guard.client = None;
        if let Err(abort) = client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await
        {
            tracing::warn!(
                store = %self.describe(),
                path,
                error = %describe_sdk_error(&abort),
                "could not abort a failed multipart upload; a bucket lifecycle rule \
                 (AbortIncompleteMultipartUpload) removes such leftovers"
            );
        }
        outcome
    }

    async fn upload_parts(
        &self,
        path: &str,
        key: &str,
        upload_id: &str,
        data: Bytes,
    ) -> Result<Vec<CompletedPart>, ObjectStoreError> {
        let client = self.client().await;
        let part_size = MULTIPART_PART_SIZE;
        let chunks: Vec<(i32, Bytes)> = (0..data.len())
            .step_by(part_size)
            .enumerate()
            .map(|(i, start)| {
                let end = (start + part_size).min(data.len());
                // S3 allows at most 10,000 parts; 16 MiB parts reach that at
                // 156 GiB, far above any segment.
                (i as i32 + 1, data.slice(start..end))
            })
            .collect();
        let mut parts: Vec<CompletedPart> = futures::stream::iter(chunks)
            .map(|(number, chunk)| async move {
                let uploaded = client
                    .upload_part()
                    .bucket(self.location.bucket())
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| self.error("upload a part of", path, e))?;
                Ok::<_, ObjectStoreError>(
                    CompletedPart::builder()
                        .set_e_tag(uploaded.e_tag().map(str::to_string))
                        .part_number(number)
                        .build(),
                )
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }
}

/// Aborts a multipart upload from a spawned task when dropped armed.
struct AbortOnDrop {
    client: Option<Client>,
    bucket: String,
    key: String,
    upload_id: String,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (bucket, key, upload_id) = (
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        runtime.spawn(async move {
            if let Err(e) = client
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(bucket, key, error = %describe_sdk_error(&e),
                    "could not abort a cancelled multipart upload");
            }
        });
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

/// Maps an SDK error to what the user should check.
fn classify<E>(err: &SdkError<E>) -> S3ErrorKind
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
fn describe_sdk_error<E>(err: &SdkError<E>) -> String
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
fn is_credentials_failure<E>(err: &SdkError<E>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = describe_sdk_error(err).to_ascii_lowercase();
    text.contains("credentials") || text.contains("identity")
}

async fn build_client(options: &S3Options) -> Client {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let l = S3Location::parse("s3://my-bucket/a/b/").unwrap();
        assert_eq!((l.bucket(), l.prefix()), ("my-bucket", "a/b/"));
        assert_eq!(l.to_string(), "s3://my-bucket/a/b");
        assert_eq!(l.key("segments/x"), "a/b/segments/x");
        let l = S3Location::parse("s3://my-bucket").unwrap();
        assert_eq!((l.bucket(), l.prefix()), ("my-bucket", ""));
        assert_eq!(l.to_string(), "s3://my-bucket");
        assert_eq!(S3Location::parse("s3://my-bucket/").unwrap().prefix(), "");
        for bad in [
            "s3://",
            "s3:///x",
            "s3://UPPER/x",
            "s3://b/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "bucket/x",
        ] {
            assert!(
                matches!(
                    S3Location::parse(bad),
                    Err(ObjectStoreError::Unsupported(..))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn options_from_env_lookup() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let o = S3Options::from_lookup(env(&[
            ("AWS_ENDPOINT_URL", "http://aws-env:1"),
            ("SHARDLINE_S3_ENDPOINT", "http://shardline:2"),
            ("SHARDLINE_S3_FORCE_PATH_STYLE", "true"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(o.endpoint_url.as_deref(), Some("http://shardline:2"));
        assert!(o.force_path_style);
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        let o = S3Options::from_lookup(env(&[
            ("AWS_ENDPOINT_URL", "http://aws-env:1"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(o.endpoint_url.as_deref(), Some("http://aws-env:1"));
        assert!(!o.force_path_style);
        assert_eq!(o.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            S3Options::from_lookup(env(&[])).unwrap(),
            S3Options::default()
        );
        let err =
            S3Options::from_lookup(env(&[("SHARDLINE_S3_FORCE_PATH_STYLE", "maybe")])).unwrap_err();
        assert!(
            err.to_string().contains("SHARDLINE_S3_FORCE_PATH_STYLE"),
            "{err}"
        );
    }

    #[test]
    fn path_style_for_ip_and_localhost_endpoints() {
        let with = |endpoint: &str| S3Options {
            endpoint_url: Some(endpoint.to_string()),
            ..S3Options::default()
        };
        assert!(with("http://127.0.0.1:9000").path_style());
        assert!(with("http://localhost:9000/").path_style());
        assert!(with("http://[::1]:9000").path_style());
        assert!(with("http://user:pw@10.0.0.1").path_style());
        assert!(!with("https://s3.eu-west-1.amazonaws.com").path_style());
        assert!(!S3Options::default().path_style());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_describe() {
        let store = S3Store::new(
            "s3://bucket/p",
            S3Options {
                endpoint_url: Some("http://user:hunter2@127.0.0.1:9000/x".into()),
                credentials: Some(S3Credentials {
                    access_key_id: "AKIDEXAMPLE".into(),
                    secret_access_key: "wJalrXUtnFEMI-secret".into(),
                }),
                ..S3Options::default()
            },
        )
        .unwrap();
        let shown = format!("{store:?} {} {:?}", store.describe(), store.options);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI-secret"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:9000/x"), "{shown}");
        assert_eq!(store.describe(), "s3://bucket/p");
    }
}
