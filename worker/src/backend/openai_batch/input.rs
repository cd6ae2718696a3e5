//! Batch input files: one JSONL line per request (`custom_id` = the request key, `method`,
//! `url`, `body` exactly as the synchronous backend would send it), split so that no file
//! passes the per-file request and byte limits and every file targets one endpoint.

use bytes::Bytes;
use jobs::InferenceRequest;
use jobs::{provider_batch::BatchPart, provider_batch::IndexRanges};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::backend::OpenAiBackend;

/// An input file ready to upload.
pub struct BuiltFile {
    /// `/v1/chat/completions` or `/v1/completions`.
    pub endpoint: &'static str,
    pub part: BatchPart,
    pub content: Bytes,
}

/// Splitting limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_requests: usize,
    pub max_bytes: u64,
}

/// Identifies the round the files belong to (part of each batch's identity).
#[derive(Clone, Copy, Debug)]
pub struct RoundId {
    pub job_id: Uuid,
    pub shard_id: Uuid,
    pub round: u32,
}

/// What could not go into a file: request index and why.
pub type Unbuildable = Vec<(u32, String)>;

/// The files of the requests at `indices` (positions in `all`), in order.
/// Requests whose body cannot be built, or whose line alone passes the byte
/// limit, are returned apart with the reason.
pub fn build_files(
    body_of: &OpenAiBackend,
    all: &[InferenceRequest],
    indices: impl IntoIterator<Item = u32>,
    limits: Limits,
    round: RoundId,
) -> (Vec<BuiltFile>, Unbuildable) {
    let mut files = Vec::new();
    let mut unbuildable = Vec::new();
    let mut current: Option<Pending> = None;
    for index in indices {
        let Some(req) = all.get(index as usize) else {
            unbuildable.push((index, "no such request in the shard".to_string()));
            continue;
        };
        let (path, body) = match body_of.build_body(req) {
            Ok(built) => built,
            Err(e) => {
                unbuildable.push((index, e.to_string()));
                continue;
            }
        };
        let endpoint: &'static str = if path == "/chat/completions" {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let mut line = json!({
            "custom_id": req.key.as_str(),
            "method": "POST",
            "url": endpoint,
            "body": body,
        })
        .to_string();
        line.push('\n');
        if line.len() as u64 > limits.max_bytes {
            unbuildable.push((
                index,
                format!(
                    "the request's batch line is {} bytes, more than an input file may hold \
                     ({} bytes, model.batch.max_file_bytes)",
                    line.len(),
                    limits.max_bytes
                ),
            ));
            continue;
        }
        let full = current.as_ref().is_some_and(|p| {
            p.endpoint != endpoint
                || p.indices.len() >= limits.max_requests
                || p.content.len() as u64 + line.len() as u64 > limits.max_bytes
        });
        if full {
            if let Some(done) = current.take() {
                files.push(done.finish(files.len() as u32, round));
            }
        }
        let pending = current.get_or_insert_with(|| Pending::new(endpoint));
        pending.content.push_str(&line);
        pending.indices.push(index);
        pending.keys.push(req.key.as_str().to_string());
        pending.tokens = pending
            .tokens
            .saturating_add(jobs::cost::estimate_input_tokens(req));
    }
    if let Some(done) = current.take() {
        files.push(done.finish(files.len() as u32, round));
    }
    (files, unbuildable)
}

struct Pending {
    endpoint: &'static str,
    content: String,
    indices: Vec<u32>,
    keys: Vec<String>,
    tokens: u64,
}

impl Pending {
    fn new(endpoint: &'static str) -> Self {
        Pending {
            endpoint,
            content: String::new(),
            indices: Vec::new(),
            keys: Vec::new(),
            tokens: 0,
        }
    }

    fn finish(self, index: u32, round: RoundId) -> BuiltFile {
        BuiltFile {
            endpoint: self.endpoint,
            part: BatchPart {
                index,
                request_set: request_set(round, &self.keys),
                requests: IndexRanges::from_indices(self.indices),
                tokens: self.tokens,
                create_started_ms: None,
                input_file_id: None,
                batch_id: None,
                status: None,
                output_file_id: None,
                error_file_id: None,
                completed: 0,
                failed: 0,
                done: false,
            },
            content: Bytes::from(self.content),
        }
    }
}

/// The batch identity: the job, shard, round and the keys in file order.
/// Deliberately not the lease attempt: a later attempt of the same shard
/// must recognise a batch an earlier one created.
pub fn request_set(round: RoundId, keys: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(round.job_id.as_bytes());
    hasher.update(round.shard_id.as_bytes());
    hasher.update(round.round.to_le_bytes());
    for key in keys {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KeyPolicy;
    use jobs::{GenerationParams, ModelFingerprint, RenderedInput, RequestType};

    fn backend() -> OpenAiBackend {
        let model = serde_json::from_value(serde_json::json!({
            "backend": "openai-batch", "model": "m", "base_url": "http://127.0.0.1:9/v1"
        }))
        .unwrap();
        OpenAiBackend::from_spec(&model, &KeyPolicy::any_except(Vec::new())).unwrap()
    }

    fn requests(n: u64, type_every: Option<u64>) -> Vec<InferenceRequest> {
        (0..n)
            .map(|i| {
                let loglikelihood = type_every.is_some_and(|k| i % k == 0);
                InferenceRequest::new(
                    &ModelFingerprint::api("openai", "m"),
                    i,
                    if loglikelihood {
                        RequestType::Loglikelihood
                    } else {
                        RequestType::Generate
                    },
                    RenderedInput::Prompt {
                        prompt: format!("question number {i}"),
                    },
                    loglikelihood.then(|| " yes".to_string()),
                    GenerationParams {
                        max_tokens: 4,
                        temperature: 0.0,
                        top_p: None,
                        stop: vec![],
                        seed: None,
                        extra_body: Default::default(),
                    },
                    0,
                )
            })
            .collect()
    }

    const ROUND: RoundId = RoundId {
        job_id: Uuid::nil(),
        shard_id: Uuid::nil(),
        round: 0,
    };

    #[test]
    fn files_split_by_count_and_bytes_and_keep_every_line_whole() {
        let all = requests(25, None);
        let limits = Limits {
            max_requests: 10,
            max_bytes: u64::MAX,
        };
        let (files, bad) = build_files(&backend(), &all, 0..25, limits, ROUND);
        assert!(bad.is_empty());
        let sizes: Vec<usize> = files.iter().map(|f| f.part.requests.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert_eq!(files[1].part.requests.0, vec![(10, 20)]);
        let text = std::str::from_utf8(&files[0].content).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["custom_id"], all[0].key.as_str());
        assert_eq!(first["method"], "POST");
        assert_eq!(first["url"], "/v1/chat/completions");
        assert_eq!(first["body"]["messages"][0]["content"], "question number 0");

        let line = text.lines().next().unwrap().len() as u64 + 1;
        let limits = Limits {
            max_requests: 100,
            max_bytes: line * 3 + 5,
        };
        let (files, bad) = build_files(&backend(), &all, 0..7, limits, ROUND);
        assert!(bad.is_empty());
        assert!(files
            .iter()
            .all(|f| f.content.len() as u64 <= limits.max_bytes));
        assert_eq!(
            files.iter().map(|f| f.part.requests.len()).sum::<usize>(),
            7
        );
        assert_eq!(files.len(), 3);

        // A line larger than a file can hold is refused on its own.
        let limits = Limits {
            max_requests: 100,
            max_bytes: 50,
        };
        let (files, bad) = build_files(&backend(), &all, 0..2, limits, ROUND);
        assert!(files.is_empty());
        assert_eq!(bad.len(), 2);
        assert!(bad[0].1.contains("max_file_bytes"), "{}", bad[0].1);
    }

    #[test]
    fn the_request_set_names_the_round_and_the_keys() {
        let all = requests(4, None);
        let limits = Limits {
            max_requests: 10,
            max_bytes: u64::MAX,
        };
        let (a, _) = build_files(&backend(), &all, 0..4, limits, ROUND);
        let (b, _) = build_files(&backend(), &all, 0..4, limits, ROUND);
        assert_eq!(a[0].part.request_set, b[0].part.request_set);
        let next = RoundId { round: 1, ..ROUND };
        let (c, _) = build_files(&backend(), &all, 0..4, limits, next);
        assert_ne!(a[0].part.request_set, c[0].part.request_set);
        let (d, _) = build_files(&backend(), &all, 0..3, limits, ROUND);
        assert_ne!(a[0].part.request_set, d[0].part.request_set);
    }

    #[test]
    fn requests_the_endpoint_refuses_are_set_apart() {
        // Log-likelihood needs `/completions`; this model is on chat.
        let all = requests(6, Some(3));
        let limits = Limits {
            max_requests: 10,
            max_bytes: u64::MAX,
        };
        let (files, bad) = build_files(&backend(), &all, 0..6, limits, ROUND);
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].part.requests.0, vec![(1, 3), (4, 6)]);
    }
}
