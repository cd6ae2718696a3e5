//! Segments: zstd-compressed JSONL files of [`SegmentRecord`]s, one per shard
//! attempt. Each line stands on its own, so the cache index can be rebuilt
//! from the segments alone.

use bytes::Bytes;
use jobs::SegmentRecord;
use std::io::{BufRead, BufReader, Write};
use uuid::Uuid;

use crate::error::ObjectStoreError;
use crate::object_store::ObjectStore;

/// Every segment lives under this prefix.
pub const SEGMENT_PREFIX: &str = "segments/";
const SEGMENT_SUFFIX: &str = ".jsonl.zst";
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Store(#[from] ObjectStoreError),
    #[error("segment {path}: {source}")]
    Compression {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("segment {path}, line {line}: {source}")]
    BadLine {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// The object path of the segment written by one attempt of one shard.
/// Attempts never share a path, so a late writer cannot clobber a newer one.
pub fn segment_path(job_id: Uuid, shard_id: Uuid, attempt: u32) -> String {
    format!("{SEGMENT_PREFIX}{job_id}/{shard_id}-{attempt}{SEGMENT_SUFFIX}")
}

/// The object path of the `part`-th partial segment (1-based) an attempt
/// flushed while it ran; the attempt's final segment is [`segment_path`].
pub fn partial_segment_path(job_id: Uuid, shard_id: Uuid, attempt: u32, part: u32) -> String {
    format!("{SEGMENT_PREFIX}{job_id}/{shard_id}-{attempt}.p{part}{SEGMENT_SUFFIX}")
}

/// What a segment's path says about who wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentName {
    pub job_id: Uuid,
    pub shard_id: Uuid,
    pub attempt: u32,
    /// The partial segment's number; `None` for an attempt's final one.
    pub part: Option<u32>,
}

/// Splits a path written by [`segment_path`] or [`partial_segment_path`];
/// `None` for segments named otherwise (they are still indexed, without an
/// owner).
pub fn parse_segment_path(path: &str) -> Option<SegmentName> {
    let rest = path
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    let (job, file) = rest.split_once('/')?;
    let (shard, tail) = file.rsplit_once('-')?;
    let (attempt, part) = match tail.split_once(".p") {
        Some((attempt, part)) => (attempt, Some(part.parse().ok()?)),
        None => (tail, None),
    };
    Some(SegmentName {
        job_id: Uuid::parse_str(job).ok()?,
        shard_id: Uuid::parse_str(shard).ok()?,
        attempt: attempt.parse().ok()?,
        part,
    })
}

/// Every segment one attempt of one shard wrote (its partial segments and,
/// if it got that far, its final one), sorted.
pub async fn attempt_segments(
    store: &dyn ObjectStore,
    job_id: Uuid,
    shard_id: Uuid,
    attempt: u32,
) -> Result<Vec<String>, SegmentError> {
    // The prefix also matches attempt 10 when looking for attempt 1: the
    // parsed name decides.
    let prefix = format!("{SEGMENT_PREFIX}{job_id}/{shard_id}-{attempt}");
    Ok(store
        .list(&prefix)
        .await?
        .into_iter()
        .map(|m| m.path)
        .filter(|p| {
            parse_segment_path(p)
                .is_some_and(|n| (n.job_id, n.shard_id, n.attempt) == (job_id, shard_id, attempt))
        })
        .collect())
}

/// Whether an object path names a segment (listing may find other files).
pub fn is_segment_path(path: &str) -> bool {
    path.starts_with(SEGMENT_PREFIX) && path.ends_with(SEGMENT_SUFFIX)
}

pub fn encode_segment(records: &[SegmentRecord]) -> Result<Vec<u8>, SegmentError> {
    let wrap = |source| SegmentError::Compression {
        path: "<new>".into(),
        source,
    };
    let mut encoder = zstd::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(wrap)?;
    for record in records {
        // Serialising plain data structs cannot fail; a failure here would be
        // a bug, reported rather than panicking.
        let line =
            serde_json::to_vec(record).map_err(|e| wrap(std::io::Error::other(e.to_string())))?;
        encoder.write_all(&line).map_err(wrap)?;
        encoder.write_all(b"\n").map_err(wrap)?;
    }
    encoder.finish().map_err(wrap)
}

/// Decodes a segment; `path` is only used in error messages.
pub fn decode_segment(path: &str, data: &[u8]) -> Result<Vec<SegmentRecord>, SegmentError> {
    let decoder = zstd::Decoder::new(data).map_err(|source| SegmentError::Compression {
        path: path.to_string(),
        source,
    })?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(decoder).lines().enumerate() {
        let line = line.map_err(|source| SegmentError::Compression {
            path: path.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| SegmentError::BadLine {
            path: path.to_string(),
            line: i + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

pub async fn write_segment(
    store: &dyn ObjectStore,
    path: &str,
    records: &[SegmentRecord],
) -> Result<(), SegmentError> {
    let data = encode_segment(records)?;
    store.put(path, Bytes::from(data)).await?;
    Ok(())
}

pub async fn read_segment(
    store: &dyn ObjectStore,
    path: &str,
) -> Result<Vec<SegmentRecord>, SegmentError> {
    let data = store.get(path).await?;
    decode_segment(path, &data)
}

/// The keys of a segment's successful outputs: what indexing it adds.
pub async fn read_segment_keys(
    store: &dyn ObjectStore,
    path: &str,
) -> Result<Vec<jobs::RequestKey>, SegmentError> {
    Ok(read_segment(store, path)
        .await?
        .into_iter()
        .filter(|r| r.is_success())
        .map(|r| r.key)
        .collect())
}

/// Paths of every segment in the store, sorted.
pub async fn list_segments(store: &dyn ObjectStore) -> Result<Vec<String>, SegmentError> {
    Ok(store
        .list(SEGMENT_PREFIX)
        .await?
        .into_iter()
        .map(|m| m.path)
        .filter(|p| is_segment_path(p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalDirStore;
    use jobs::{InferenceOutput, ModelFingerprint, RequestKey, RequestType, Usage};

    fn record(i: u32, ok: bool) -> SegmentRecord {
        SegmentRecord {
            key: RequestKey(format!("{i:064x}")),
            model: ModelFingerprint::api("openai", "m"),
            request_type: RequestType::Generate,
            sample_index: 0,
            output: ok.then(|| InferenceOutput {
                text: Some(format!("answer {i}")),
                finish_reason: Some("stop".into()),
                loglikelihood: None,
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                },
                latency_ms: 12,
                attempts: 1,
            }),
            error: (!ok).then(|| "HTTP 400: bad request".to_string()),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn round_trips_through_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().to_path_buf());
        let records: Vec<_> = (0..50).map(|i| record(i, i % 7 != 0)).collect();
        let path = segment_path(Uuid::nil(), Uuid::nil(), 2);
        assert!(is_segment_path(&path));
        write_segment(&store, &path, &records).await.unwrap();
        assert_eq!(read_segment(&store, &path).await.unwrap(), records);
        assert_eq!(list_segments(&store).await.unwrap(), vec![path]);
    }

    #[tokio::test]
    async fn partial_segments_are_named_and_listed_per_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().to_path_buf());
        let (job, shard) = (Uuid::new_v4(), Uuid::new_v4());
        let paths = [
            partial_segment_path(job, shard, 1, 1),
            partial_segment_path(job, shard, 1, 2),
            segment_path(job, shard, 1),
            // Same prefix, another attempt: not attempt 1's.
            partial_segment_path(job, shard, 10, 1),
            segment_path(job, shard, 10),
        ];
        for path in &paths {
            assert!(is_segment_path(path), "{path}");
            write_segment(&store, path, &[record(1, true)])
                .await
                .unwrap();
        }
        assert_eq!(
            parse_segment_path(&paths[1]),
            Some(SegmentName {
                job_id: job,
                shard_id: shard,
                attempt: 1,
                part: Some(2)
            })
        );
        assert_eq!(parse_segment_path(&paths[4]).unwrap().part, None);
        assert_eq!(parse_segment_path(&paths[4]).unwrap().attempt, 10);
        assert_eq!(parse_segment_path("segments/other.jsonl.zst"), None);
        let mut first: Vec<String> = paths[..3].to_vec();
        first.sort();
        assert_eq!(
            attempt_segments(&store, job, shard, 1).await.unwrap(),
            first
        );
        assert_eq!(
            attempt_segments(&store, job, shard, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(attempt_segments(&store, job, shard, 2)
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn corrupt_line_names_segment_and_line() {
        let mut raw = Vec::new();
        let mut enc = zstd::Encoder::new(&mut raw, 1).unwrap();
        enc.write_all(serde_json::to_string(&record(1, true)).unwrap().as_bytes())
            .unwrap();
        enc.write_all(b"\n{not json}\n").unwrap();
        enc.finish().unwrap();
        let err = decode_segment("segments/x.jsonl.zst", &raw).unwrap_err();
        assert!(
            err.to_string().contains("segments/x.jsonl.zst, line 2"),
            "{err}"
        );
        assert!(decode_segment("p", b"not zstd").is_err());
    }
}
