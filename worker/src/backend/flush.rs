//! Partial segments: while a shard runs, its outputs are written to the
//! cache every few seconds or every N outputs and handed to the
//! coordinator, which indexes them at once, so that a worker killed
//! mid-shard loses only the requests in flight and those since its last
//! flush. The next attempt's claim drops every indexed request.

use std::time::Duration;

use client::CoordinatorClient;
use jobs::protocol::{FlushRequest, Lease, PartialOutputs};
use jobs::{SegmentRecord, Usage};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// `worker --flush-ms` is this many seconds by default: a running shard's
/// outputs are flushed at least this often (when there are new ones).
pub const DEFAULT_FLUSH_SECS: u64 = 10;
/// `worker --flush-outputs`: or as soon as this many new outputs wait.
pub const DEFAULT_FLUSH_OUTPUTS: usize = 500;

/// When a running shard writes what it has so far. Each flush is one
/// object in the cache and one call to the coordinator; a shard that ends
/// before the first flush writes one segment, as without flushing. A kill
/// loses at most the requests in flight plus one interval's (or
/// `outputs`') worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Longest time new outputs wait; zero turns the clock off.
    pub every: Duration,
    /// Most new outputs that wait; zero turns the count off.
    pub outputs: usize,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            every: Duration::from_secs(DEFAULT_FLUSH_SECS),
            outputs: DEFAULT_FLUSH_OUTPUTS,
        }
    }
}

impl FlushPolicy {
    /// No partial segments: a shard's outputs are written when it ends.
    pub fn never() -> Self {
        FlushPolicy {
            every: Duration::ZERO,
            outputs: 0,
        }
    }
}

/// Where a shard's partial segments go.
#[derive(Clone)]
pub(crate) struct FlushTarget {
    pub(crate) client: CoordinatorClient,
    pub(crate) objects: Arc<dyn cache::ObjectStore>,
    pub(crate) worker_id: String,
}

/// One flush in flight, and the records it carries: kept here too, so that
/// a flush that did not land (or whose task died) loses nothing; they are
/// written again, later or in the final segment.
type InFlight = (JoinHandle<bool>, Arc<Vec<SegmentRecord>>);

/// The successful outputs of one running shard attempt that no segment
/// holds yet, and the flush of those that do, at most one at a time.
pub(crate) struct Flusher {
    policy: FlushPolicy,
    target: FlushTarget,
    job_id: Uuid,
    shard_id: Uuid,
    attempt: u32,
    pending: Vec<SegmentRecord>,
    /// When the last flush started (or the shard did).
    last: Instant,
    parts: u32,
    in_flight: Option<InFlight>,
    /// Outputs the coordinator has taken in.
    flushed: usize,
}

impl Flusher {
    pub(crate) fn new(policy: FlushPolicy, target: FlushTarget, lease: &Lease) -> Self {
        Flusher {
            policy,
            target,
            job_id: lease.job_id,
            shard_id: lease.shard_id,
            attempt: lease.attempt,
            pending: Vec::new(),
            last: Instant::now(),
            parts: 0,
            in_flight: None,
            flushed: 0,
        }
    }

    /// Takes a successful output; starts a flush when enough wait.
    pub(crate) fn push(&mut self, record: SegmentRecord) {
        self.pending.push(record);
        if self.policy.outputs > 0 && self.pending.len() >= self.policy.outputs {
            self.start();
        }
    }

    /// When the clock asks for the next flush; `None` while nothing waits,
    /// a flush is in flight, or the clock is off.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.pending.is_empty() || self.in_flight.is_some() || self.policy.every.is_zero() {
            return None;
        }
        Some(self.last + self.policy.every)
    }

    /// Whether a flush is in flight (see [`Flusher::landed`]).
    pub(crate) fn is_flushing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts writing what waits, unless a flush is already in flight.
    pub(crate) fn start(&mut self) {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        self.parts += 1;
        self.last = Instant::now();
        let records = Arc::new(std::mem::take(&mut self.pending));
        let path =
            cache::partial_segment_path(self.job_id, self.shard_id, self.attempt, self.parts);
        let target = self.target.clone();
        let (shard_id, attempt) = (self.shard_id, self.attempt);
        let carried = Arc::clone(&records);
        let task =
            tokio::spawn(async move { flush(target, shard_id, attempt, path, &carried).await });
        self.in_flight = Some((task, records));
    }

    /// Waits for the flush in flight to end (forever when there is none,
    /// so that it can sit in a `select!`); records that did not land wait
    /// again.
    pub(crate) async fn landed(&mut self) {
        let Some((task, _)) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let joined = task.await;
        let Some((_, records)) = self.in_flight.take() else {
            return;
        };
        match joined {
            Ok(true) => self.flushed += records.len(),
            Ok(false) => self.take_back(records),
            Err(e) => {
                tracing::warn!(error = %e, "a flush task ended abnormally; its outputs wait for the next one");
                self.take_back(records);
            }
        }
    }

    /// Puts the records of a flush that did not land before those waiting.
    fn take_back(&mut self, records: Arc<Vec<SegmentRecord>>) {
        let mut records = Arc::try_unwrap(records).unwrap_or_else(|shared| (*shared).clone());
        records.append(&mut self.pending);
        self.pending = records;
    }

    /// Ends flushing: waits for the flush in flight and gives back the
    /// outputs no landed flush holds (for the attempt's final segment).
    pub(crate) async fn finish(mut self) -> (Vec<SegmentRecord>, usize) {
        if self.in_flight.is_some() {
            self.landed().await;
        }
        (self.pending, self.flushed)
    }
}

/// Writes one partial segment and hands it to the coordinator; whether it
/// landed. One that did not is written again: a segment written but not
/// indexed is harmless (a later segment holds the same outputs; the index
/// keeps one). Usage is counted once unless a flush was indexed but its
/// answer lost through every retry of the client: then the next segment
/// that holds its outputs counts their usage again (rare, and only an
/// over-count of tokens, never a lost output).
async fn flush(
    target: FlushTarget,
    shard_id: Uuid,
    attempt: u32,
    path: String,
    records: &[SegmentRecord],
) -> bool {
    if let Err(e) = cache::write_segment(target.objects.as_ref(), &path, records).await {
        tracing::warn!(segment = %path, error = %e,
            "cannot write a partial segment; its outputs wait for the next one");
        return false;
    }
    let mut usage = Usage::default();
    for record in records {
        if let Some(output) = &record.output {
            usage.add(output.usage);
        }
    }
    let req = FlushRequest {
        worker_id: target.worker_id.clone(),
        shard_id,
        attempt,
        partial: PartialOutputs {
            segment: path.clone(),
            written: records.iter().map(|r| r.key.clone()).collect(),
            usage,
        },
    };
    match target.client.flush(&req).await {
        Ok(answer) => {
            tracing::debug!(segment = %path, outputs = records.len(), indexed = answer.indexed,
                "partial segment flushed");
            true
        }
        Err(e) => {
            tracing::warn!(segment = %path, error = %e,
                "cannot hand a partial segment to the coordinator; its outputs wait for the next one");
            false
        }
    }
}
