//! The default way a backend runs a shard: its requests one by one (up to
//! the backend's concurrency at once), their outputs flushed as partial
//! segments while it runs (see `flush`), then the attempt's final segment
//! and the lease call that ends it (complete; release on shutdown with what
//! is done; fail when the endpoint is unusable or the segment cannot be
//! written, and fail the job when it cannot work with the endpoint at all).

use futures::stream::{self, StreamExt};
use jobs::protocol::{CompleteRequest, FailKind, FailedRequest, Lease, PartialOutputs};
use jobs::{InferenceOutput, InferenceRequest, RequestKey, SegmentRecord, Usage};
use std::future::Future;

use client::LeaseOutcome;

use super::context::ShardContext;
use super::error::{BackendError, ErrorReach};
use super::flush::Flusher;
use crate::stats::WorkerStats;

/// Runs `lease`'s requests with `run`, at most `concurrency` at once, and
/// ends the attempt. `run` gives each request back with its result.
pub(crate) async fn run_shard<F, Fut>(
    mut lease: Lease,
    mut ctx: ShardContext,
    concurrency: usize,
    run: F,
) -> WorkerStats
where
    F: Fn(InferenceRequest) -> Fut,
    Fut: Future<Output = (InferenceRequest, Result<InferenceOutput, BackendError>)>,
{
    let mut stats = WorkerStats::default();
    // Owned, so the request futures borrow nothing from the lease.
    let requests = std::mem::take(&mut lease.requests);
    let total = requests.len();
    let fingerprint = lease.model.fingerprint();
    let stop = ctx.stop.clone();
    let outcomes = stream::iter(requests)
        .map(run)
        .buffer_unordered(concurrency.max(1))
        .take_until(stop.cancelled());
    // Boxed so it can be dropped early: unpolled request futures may hold
    // permits of the backend's semaphore that other shards need.
    let mut outcomes = Box::pin(outcomes);
    // Successful outputs go to the flusher, which writes them as partial
    // segments while the shard runs; failures stay here for the final
    // segment (a next attempt retries them anyway).
    let mut flusher = Flusher::new(ctx.flush, ctx.flush_target(), &lease);
    let mut failures = Vec::new();
    let mut done = 0usize;
    let mut unusable = None;
    loop {
        let deadline = flusher.deadline();
        let flushing = flusher.is_flushing();
        tokio::select! {
            next = outcomes.next() => {
                let Some((req, result)) = next else { break };
                ctx.request_finished();
                if let Err(e) = &result {
                    let kind = match e.reach() {
                        ErrorReach::Request => None,
                        ErrorReach::Shard => Some(FailKind::Transient),
                        ErrorReach::Job => Some(FailKind::Configuration),
                    };
                    if let Some(kind) = kind {
                        // Every other request would fail the same way: stop
                        // and fail the shard once instead of recording each
                        // failure.
                        unusable = Some((e.to_string(), kind));
                        stop.cancel();
                        break;
                    }
                }
                let record = to_record(&req, &fingerprint, result);
                if record.is_success() {
                    flusher.push(record);
                } else {
                    failures.push(record);
                }
                done += 1;
                ctx.count_done();
            }
            _ = flusher.landed(), if flushing => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() => flusher.start(),
        }
    }
    drop(outcomes);
    ctx.end_load();
    let (mut records, flushed) = flusher.finish().await;
    ctx.heartbeat.stop();
    records.append(&mut failures);

    // `records` holds what no partial segment does: the final segment's.
    let summary = Summary::of(&records);
    stats.requests_ok = (summary.written.len() + flushed) as u64;
    stats.requests_failed = summary.failed.len() as u64;
    let path = cache::segment_path(lease.job_id, lease.shard_id, lease.attempt);
    let finished = done == total;

    if ctx.heartbeat.is_lost() {
        // The lease expired and went to another attempt, or the job was
        // cancelled: never complete. What was paid for is kept: written
        // to the cache and handed back, so the coordinator indexes it
        // (the hand-back itself is refused, as the lease is gone).
        tracing::warn!(
            done,
            "lease lost or job cancelled; stopped the shard without completing it"
        );
        if !summary.written.is_empty() {
            release_partial(&ctx, &lease, &path, &records, summary, &mut stats).await;
        }
        return stats;
    }

    if let Some((error, kind)) = unusable {
        // Keep what succeeded before the endpoint went bad in the cache
        // (a reindex finds it); the failures are the endpoint's, not the
        // requests'.
        let ok: Vec<SegmentRecord> = records.into_iter().filter(|r| r.is_success()).collect();
        if !ok.is_empty() {
            if let Err(e) = cache::write_segment(ctx.objects.as_ref(), &path, &ok).await {
                tracing::warn!(error = %e, segment = %path, "cannot write the partial segment");
            }
        }
        match kind {
            FailKind::Transient => tracing::error!(%error, "endpoint unusable; failing the shard"),
            FailKind::Configuration => {
                tracing::error!(%error, "the job cannot work with this endpoint; failing the job")
            }
        }
        ctx.fail_lease(&lease, error, kind, &mut stats).await;
        return stats;
    }

    if !finished {
        release_partial(&ctx, &lease, &path, &records, summary, &mut stats).await;
        return stats;
    }

    // Every output may already be in partial segments: then the
    // completion names no segment.
    let segment = if records.is_empty() {
        String::new()
    } else {
        if let Err(e) = cache::write_segment(ctx.objects.as_ref(), &path, &records).await {
            tracing::error!(error = %e, segment = %path, "cannot write the segment; failing the lease");
            ctx.fail_lease(
                &lease,
                format!("writing segment {path} failed: {e}"),
                FailKind::Transient,
                &mut stats,
            )
            .await;
            return stats;
        }
        path.clone()
    };
    let complete = CompleteRequest {
        worker_id: ctx.worker_id.clone(),
        shard_id: lease.shard_id,
        attempt: lease.attempt,
        segment,
        written: summary.written,
        failed: summary.failed,
        usage: summary.usage,
    };
    match ctx.client.complete(&complete).await {
        Ok(LeaseOutcome::Accepted(_)) => {
            stats.shards_completed = 1;
            tracing::info!(segment = %path, ok = stats.requests_ok, flushed,
                failed = stats.requests_failed, "shard completed");
        }
        Ok(LeaseOutcome::Fenced { message }) => {
            stats.fenced = 1;
            tracing::warn!(%message, "completion fenced: a newer attempt owns the shard");
        }
        Err(e) => {
            tracing::error!(error = %e, segment = %path,
                "cannot complete the lease; the segment stays in the cache for a reindex");
        }
    }
    stats
}

/// Shutdown: index what was done (if anything) and hand the shard back.
async fn release_partial(
    ctx: &ShardContext,
    lease: &Lease,
    path: &str,
    records: &[SegmentRecord],
    summary: Summary,
    stats: &mut WorkerStats,
) {
    let partial = if records.is_empty() {
        None
    } else {
        match cache::write_segment(ctx.objects.as_ref(), path, records).await {
            Ok(()) => Some(PartialOutputs {
                segment: path.to_string(),
                written: summary.written,
                usage: summary.usage,
            }),
            Err(e) => {
                tracing::warn!(error = %e, segment = %path,
                    "cannot write the partial segment; releasing without it");
                None
            }
        }
    };
    ctx.release(lease, partial, records.len(), stats).await;
}

fn to_record(
    req: &InferenceRequest,
    fingerprint: &jobs::ModelFingerprint,
    result: Result<InferenceOutput, BackendError>,
) -> SegmentRecord {
    let (output, error) = match result {
        Ok(output) => (Some(output), None),
        Err(e) => {
            tracing::debug!(key = %req.key, error = %e, "request failed");
            (None, Some(e.to_string()))
        }
    };
    SegmentRecord {
        key: req.key.clone(),
        model: fingerprint.clone(),
        request_type: req.request_type,
        sample_index: req.sample_index,
        output,
        error,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// What a shard's records add up to, for the lease calls.
struct Summary {
    written: Vec<RequestKey>,
    failed: Vec<FailedRequest>,
    usage: Usage,
}

impl Summary {
    fn of(records: &[SegmentRecord]) -> Self {
        let mut summary = Summary {
            written: Vec::new(),
            failed: Vec::new(),
            usage: Usage::default(),
        };
        for record in records {
            match (&record.output, &record.error) {
                (Some(output), None) => {
                    summary.written.push(record.key.clone());
                    summary.usage.add(output.usage);
                }
                (_, error) => summary.failed.push(FailedRequest {
                    key: record.key.clone(),
                    error: error.clone().unwrap_or_else(|| "no output".into()),
                }),
            }
        }
        summary
    }
}
