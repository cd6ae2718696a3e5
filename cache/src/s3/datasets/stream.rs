//! One dataset object's bytes as a blocking `Read`, a body chunk at a time
//! (memory: the chunk the SDK hands over, not the object). A download that
//! breaks off partway is resumed from the byte it reached with a range
//! request pinned to the object's ETag, so a multi-GB object survives a
//! lost connection without starting over, and an object replaced while it
//! is read is an error rather than a mix of two versions.

use std::io::Read;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use jobs::dataset::ObjectSourceError;

use super::super::S3Store;
use super::bridge::Bridge;
use super::errors::{dataset_error, is_missing_object};

/// Resumes of one object's download after it broke off.
const MAX_RESUMES: u32 = 5;

/// A GetObject answer: the body and what a resume needs.
pub(super) struct Body {
    stream: ByteStream,
    etag: Option<String>,
}

/// Asks for `key` from byte `offset` on (the whole object at 0), the same
/// version as `etag` when one is given.
pub(super) async fn get_from(
    store: Arc<S3Store>,
    key: String,
    offset: u64,
    etag: Option<String>,
) -> Result<Body, ObjectSourceError> {
    let client = store.client().await;
    let mut request = client
        .get_object()
        .bucket(store.location().bucket())
        .key(&key);
    if offset > 0 {
        request = request.range(format!("bytes={offset}-")).set_if_match(etag);
    }
    match request.send().await {
        // A server or proxy that ignores the range answers with the whole
        // object: appended after the bytes already read, its rows would be
        // read twice.
        Ok(output)
            if offset > 0
                && !output
                    .content_range()
                    .is_some_and(|r| r.starts_with(&format!("bytes {offset}-"))) =>
        {
            Err(ObjectSourceError::Refused(format!(
                "the download broke off at byte {offset}, and the server did not resume it \
                 there (it ignored the byte range; Content-Range {:?}); run again",
                output.content_range().unwrap_or("absent")
            )))
        }
        Ok(output) => Ok(Body {
            etag: output.e_tag().map(str::to_string),
            stream: output.body,
        }),
        Err(e) if is_missing_object(&e) => Err(ObjectSourceError::NotFound),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
            Err(ObjectSourceError::Refused(
                "the object was replaced while it was read; run again to read the new one"
                    .to_string(),
            ))
        }
        Err(e) => Err(dataset_error(&store, "read", &e)),
    }
}

/// The object's bytes, read as they arrive.
pub(super) struct ObjectStream {
    bridge: Arc<Bridge>,
    store: Arc<S3Store>,
    key: String,
    etag: Option<String>,
    /// `None` once the object has been read to its end.
    body: Option<ByteStream>,
    /// What is left of the last chunk.
    chunk: Bytes,
    /// Bytes handed out so far: where a resume starts.
    offset: u64,
    resumes: u32,
}

impl ObjectStream {
    pub(super) fn new(bridge: Arc<Bridge>, store: Arc<S3Store>, key: String, body: Body) -> Self {
        ObjectStream {
            bridge,
            store,
            key,
            etag: body.etag,
            body: Some(body.stream),
            chunk: Bytes::new(),
            offset: 0,
            resumes: 0,
        }
    }

    /// Asks again from where the download broke off.
    fn resume(&mut self, why: String) -> std::io::Result<()> {
        if self.resumes >= MAX_RESUMES || self.etag.is_none() {
            return Err(std::io::Error::other(format!(
                "the download broke off at byte {} ({why}) {} times",
                self.offset,
                self.resumes + 1
            )));
        }
        self.resumes += 1;
        tracing::warn!(object = %self.key, offset = self.offset, error = %why,
            "dataset download broke off; resuming from where it stopped");
        let request = get_from(
            self.store.clone(),
            self.key.clone(),
            self.offset,
            self.etag.clone(),
        );
        let body = self
            .bridge
            .run(request)
            .and_then(|answer| answer)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.body = Some(body.stream);
        Ok(())
    }
}

impl Read for ObjectStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk.split_to(n));
                self.offset += n as u64;
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let Some(mut body) = self.body.take() else {
                return Ok(0);
            };
            let next = self
                .bridge
                .run(async move {
                    let next = body.next().await;
                    (body, next)
                })
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            match next {
                (_, None) => return Ok(0),
                (body, Some(Ok(bytes))) => {
                    self.body = Some(body);
                    self.chunk = bytes;
                }
                (_, Some(Err(e))) => self.resume(e.to_string())?,
            }
        }
    }
}
