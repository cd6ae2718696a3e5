//! Scores a job from the cache alone: re-plan the dataset (planning is
//! deterministic, so the keys are the same), look each output up through the
//! cache index, score, aggregate. Never calls a backend.
//!
//! Memory is bounded: documents come in chunks, only the outputs of the
//! current chunk are held, and decoded segments sit in a small LRU.

use bytes::Bytes;
use jobs::judge::{JudgeItem, JudgeRequest};
use jobs::results::MissingRecord;
use jobs::{
    InferenceOutput, JobSpec, MetricsReport, ModelText, ReadPolicy, RequestKey, SampleRecord,
    Scorer, Usage,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::coordinator::Coordinator;
use crate::docstream::{key_id, spawn_doc_stream, DocMsg, PlanFailure};
use crate::error::CoordinatorError;
use crate::segment_cache::SegmentCache;
use crate::store::Store;

/// Missing requests listed by name in the outcome.
const MISSING_EXAMPLES: usize = 20;
/// Seed of the bootstrap when the spec sets none, so reports are stable.
pub const DEFAULT_BOOTSTRAP_SEED: u64 = 1234;

/// A request whose output is not in the cache.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct MissingRequest {
    pub doc_id: String,
    pub key: RequestKey,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RescoreOutcome {
    pub report: MetricsReport,
    /// Distinct requests with no output in the cache.
    pub missing_requests: u64,
    /// The first few of them.
    pub missing_examples: Vec<MissingRequest>,
    /// Of the missing ones, those a worker recorded as failed.
    pub failed_requests: u64,
    /// Tokens the outputs scored used when they were made (their recorded
    /// usage), whichever job made them; judges' verdicts included.
    #[serde(default)]
    pub usage: Usage,
    /// Judge requests whose verdict is not in the cache (their documents
    /// have no score from that judge).
    #[serde(default)]
    pub missing_verdicts: u64,
}

/// Where sample lines go.
pub(crate) enum SampleSink<'a> {
    Discard,
    Writer(&'a mut (dyn Write + Send)),
    /// Streamed to an HTTP response; a closed channel stops the rescore.
    Channel(mpsc::Sender<Result<Bytes, std::io::Error>>),
}

impl SampleSink<'_> {
    fn wants_samples(&self) -> bool {
        !matches!(self, SampleSink::Discard)
    }

    async fn write(&mut self, buf: Vec<u8>) -> Result<(), CoordinatorError> {
        match self {
            SampleSink::Discard => Ok(()),
            SampleSink::Writer(w) => Ok(w.write_all(&buf)?),
            SampleSink::Channel(tx) => tx.send(Ok(Bytes::from(buf))).await.map_err(|_| {
                CoordinatorError::Io(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the samples reader went away",
                ))
            }),
        }
    }
}

/// Scores `spec` from the cache with zero inference. Sample lines (one JSON
/// [`SampleRecord`] per document) go to `samples_out` when given, with each
/// prompt as `model_text` renders it when given (see [`Scorer`]), and one
/// [`MissingRecord`] line per request without an output (all of them, not
/// only the outcome's examples) to `missing_out`. Works for a spec that was
/// never submitted. Its data files are read under `policy`.
pub async fn rescore_spec(
    store: &dyn Store,
    objects: &dyn cache::ObjectStore,
    spec: &JobSpec,
    policy: &ReadPolicy,
    samples_out: Option<&mut (dyn Write + Send)>,
    missing_out: Option<&mut (dyn Write + Send)>,
    model_text: Option<Arc<dyn ModelText>>,
) -> Result<RescoreOutcome, CoordinatorError> {
    let sink = match samples_out {
        Some(w) => SampleSink::Writer(w),
        None => SampleSink::Discard,
    };
    rescore_into(store, objects, spec, policy, sink, missing_out, model_text).await
}

pub(crate) async fn rescore_into(
    store: &dyn Store,
    objects: &dyn cache::ObjectStore,
    spec: &JobSpec,
    policy: &ReadPolicy,
    mut sink: SampleSink<'_>,
    mut missing_out: Option<&mut (dyn Write + Send)>,
    model_text: Option<Arc<dyn ModelText>>,
) -> Result<RescoreOutcome, CoordinatorError> {
    let scorer = Scorer::new(spec)?.with_model_text(model_text);
    let mut aggregator = jobs::Aggregator::new(spec);
    let mut segments = SegmentCache::default();
    let mut missing_seen: HashSet<u128> = HashSet::new();
    let mut missing_examples = Vec::new();
    let mut failed_requests = 0u64;
    let mut usage = Usage::default();
    let mut missing_verdicts = 0u64;
    let mut docs = spawn_doc_stream(spec.clone(), policy.clone());
    let bad_rows = loop {
        let msg = docs
            .recv()
            .await
            .unwrap_or_else(|| DocMsg::Failed(PlanFailure::reader_gone()));
        let chunk = match msg {
            DocMsg::Chunk(chunk) => chunk,
            DocMsg::Done { bad_rows, .. } => break bad_rows,
            DocMsg::Failed(failure) => return Err(failure.into()),
        };
        // Outputs of this chunk only.
        let mut keys: Vec<RequestKey> = chunk
            .iter()
            .flat_map(|(_, plan)| plan.requests.iter().map(|r| r.key.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let outputs = segments.read_outputs(store, objects, &keys).await?;
        // Per chunk: an output shared by documents of two chunks is counted
        // in each (rare: identical documents), which keeps memory bounded.
        for output in outputs.values() {
            usage.add(output.usage);
        }
        let missing_keys: Vec<RequestKey> = keys
            .iter()
            .filter(|k| !outputs.contains_key(*k))
            .cloned()
            .collect();
        let failures = if missing_keys.is_empty() {
            HashMap::new()
        } else {
            store.failures_for_keys(&missing_keys).await?
        };
        let mut lines = Vec::new();
        let mut missing_lines = Vec::new();
        let mut records: Vec<SampleRecord> = Vec::with_capacity(chunk.len());
        let mut items: Vec<JudgeItem> = Vec::with_capacity(chunk.len());
        for (doc, plan) in &chunk {
            let found: Vec<Option<&InferenceOutput>> =
                plan.requests.iter().map(|r| outputs.get(&r.key)).collect();
            for (i, (request, output)) in plan.requests.iter().zip(&found).enumerate() {
                if output.is_none() && missing_seen.insert(key_id(&request.key)) {
                    let error = failures.get(&request.key);
                    if error.is_some() {
                        failed_requests += 1;
                    }
                    if missing_examples.len() < MISSING_EXAMPLES {
                        missing_examples.push(MissingRequest {
                            doc_id: plan.doc_id.clone(),
                            key: request.key.clone(),
                        });
                    }
                    if missing_out.is_some() {
                        let record = MissingRecord {
                            doc_id: plan.doc_id.clone(),
                            doc_index: plan.doc_index,
                            line: doc.line,
                            key: request.key.clone(),
                            request_index: i,
                            error: error.cloned(),
                        };
                        encode_line(&mut missing_lines, &record)?;
                    }
                }
            }
            records.push(scorer.score_doc(plan, doc, &found));
            if !scorer.judges().is_empty() {
                items.push(JudgeItem::of(doc, plan));
            }
        }
        if !scorer.judges().is_empty() {
            missing_verdicts += add_verdicts(
                store,
                objects,
                &mut segments,
                &scorer,
                &items,
                &mut records,
                &mut usage,
            )
            .await?;
        }
        for sample in &records {
            aggregator.add(sample);
            if sink.wants_samples() {
                encode_line(&mut lines, sample)?;
            }
        }
        if !lines.is_empty() {
            sink.write(lines).await?;
        }
        if let Some(out) = missing_out.as_mut() {
            out.write_all(&missing_lines)?;
        }
    };
    let seed = spec.task.generation.seed.unwrap_or(DEFAULT_BOOTSTRAP_SEED);
    let mut report = aggregator.finish(seed);
    report.bad_rows = bad_rows;
    Ok(RescoreOutcome {
        report,
        missing_requests: missing_seen.len() as u64,
        missing_examples,
        failed_requests,
        usage,
        missing_verdicts,
    })
}

/// Completes the chunk's `records` with their judges' verdicts from the
/// cache, adding the verdicts' usage; returns how many judge requests have
/// no verdict in the cache.
async fn add_verdicts(
    store: &dyn Store,
    objects: &dyn cache::ObjectStore,
    segments: &mut SegmentCache,
    scorer: &Scorer,
    items: &[JudgeItem],
    records: &mut [SampleRecord],
    usage: &mut Usage,
) -> Result<u64, CoordinatorError> {
    let requests: Vec<Vec<JudgeRequest>> = items
        .iter()
        .zip(records.iter())
        .map(|(item, record)| scorer.judge_requests(item, record))
        .collect();
    let mut keys: Vec<RequestKey> = requests
        .iter()
        .flatten()
        .map(|r| r.request.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    let verdicts = segments.read_outputs(store, objects, &keys).await?;
    for output in verdicts.values() {
        usage.add(output.usage);
    }
    let mut missing = 0u64;
    for (record, requests) in records.iter_mut().zip(&requests) {
        let texts: Vec<Option<String>> = requests
            .iter()
            .map(|r| {
                verdicts
                    .get(&r.request.key)
                    .map(|o| o.text.clone().unwrap_or_default())
            })
            .collect();
        missing += texts.iter().filter(|t| t.is_none()).count() as u64;
        scorer.add_verdicts(record, requests, &texts);
    }
    Ok(missing)
}

/// Appends `value` to `buf` as one JSON line.
fn encode_line(buf: &mut Vec<u8>, value: &impl Serialize) -> Result<(), CoordinatorError> {
    serde_json::to_writer(&mut *buf, value)
        .map_err(|e| CoordinatorError::Internal(format!("cannot encode a result line: {e}")))?;
    buf.push(b'\n');
    Ok(())
}

impl Coordinator {
    /// Rescores a submitted job from the cache (see [`rescore_spec`]).
    pub async fn rescore(
        &self,
        job_id: Uuid,
        samples_out: Option<&mut (dyn Write + Send)>,
    ) -> Result<RescoreOutcome, CoordinatorError> {
        let spec = self.job_spec(job_id).await?;
        self.rescore_spec(&spec, samples_out).await
    }

    /// Rescores a spec that may never have been submitted: zero inference.
    pub async fn rescore_spec(
        &self,
        spec: &JobSpec,
        samples_out: Option<&mut (dyn Write + Send)>,
    ) -> Result<RescoreOutcome, CoordinatorError> {
        self.rescore_spec_with(spec, samples_out, None, None).await
    }

    /// [`Coordinator::rescore_spec`], writing every request without an
    /// output to `missing_out` as a [`MissingRecord`] line, and the
    /// samples' prompts as the model renders them (`model_text`, where the
    /// caller has the model).
    pub async fn rescore_spec_with(
        &self,
        spec: &JobSpec,
        samples_out: Option<&mut (dyn Write + Send)>,
        missing_out: Option<&mut (dyn Write + Send)>,
        model_text: Option<Arc<dyn ModelText>>,
    ) -> Result<RescoreOutcome, CoordinatorError> {
        self.check_data_access(spec)?;
        rescore_spec(
            self.store().as_ref(),
            self.objects().as_ref(),
            spec,
            &self.config().read,
            samples_out,
            missing_out,
            model_text,
        )
        .await
    }

    /// [`Coordinator::rescore`] (no samples) on a blocking thread: scoring
    /// and the bootstrap are CPU work that would otherwise hold one of the
    /// runtime's threads, delaying the lease calls of every worker (a
    /// missed heartbeat costs a lease).
    pub async fn rescore_job_blocking(
        &self,
        job_id: Uuid,
    ) -> Result<RescoreOutcome, CoordinatorError> {
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runtime.block_on(this.rescore(job_id, None)))
            .await
            .map_err(|e| CoordinatorError::Internal(format!("rescoring task failed: {e}")))?
    }

    /// [`Coordinator::rescore_spec`] (no samples) on a blocking thread, as
    /// [`Coordinator::rescore_job_blocking`].
    pub async fn rescore_spec_blocking(
        &self,
        spec: JobSpec,
    ) -> Result<RescoreOutcome, CoordinatorError> {
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runtime.block_on(this.rescore_spec(&spec, None)))
            .await
            .map_err(|e| CoordinatorError::Internal(format!("rescoring task failed: {e}")))?
    }

    /// Streams `samples.jsonl` of a spec through a channel (for HTTP),
    /// scoring on a blocking thread (see [`Coordinator::rescore_job_blocking`]).
    pub(crate) fn stream_samples(
        &self,
        spec: JobSpec,
    ) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                let sink = SampleSink::Channel(tx.clone());
                let result = match this.check_data_access(&spec) {
                    Ok(()) => {
                        rescore_into(
                            this.store().as_ref(),
                            this.objects().as_ref(),
                            &spec,
                            &this.config().read,
                            sink,
                            None,
                            None,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "samples stream stopped");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            })
        });
        rx
    }
}
