//! Multipart uploads of large objects, aborted when they fail so no parts are left billed.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::sdk_error::describe_sdk_error;
use super::S3Store;
use crate::error::{ObjectStoreError, S3ErrorKind};
use crate::object_store::ObjectStore;
use futures::stream::{StreamExt, TryStreamExt};

/// Size of each uploaded part but the last (S3 wants at least 5 MiB).
pub const MULTIPART_PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts of one object uploaded at once.
const PART_CONCURRENCY: usize = 4;

impl S3Store {
    pub(super) async fn put_multipart(
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
