//! The poller: claims poll leases on submitted shards that are due and
//! runs a pass on each, a few at once, backing off while nothing is due.

use std::sync::Arc;
use std::time::Duration;

use jobs::protocol::BatchClaimRequest;
use jobs::protocol::WorkerCapabilities;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::background::BackgroundContext;
use crate::stats::WorkerStats;
use jobs::spec::BackendKind;

use super::pass::{pass, Ctx};

/// Poll passes a worker runs at once.
const MAX_PASSES: usize = 8;
/// Shortest wait between two poll claims.
const MIN_IDLE: Duration = Duration::from_millis(100);

/// Starts the poller; it stops when `shutdown` is cancelled (passes in
/// progress get a few seconds to hand their shards back).
pub fn spawn_poller(
    bg: BackgroundContext,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<WorkerStats> {
    let capabilities = WorkerCapabilities {
        backends: vec![BackendKind::OpenaiBatch],
        models: bg.models.clone(),
    };
    let ctx = Arc::new(Ctx { bg, capabilities });
    tokio::spawn(async move { run(ctx, shutdown).await }.in_current_span())
}

async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut passes: JoinSet<WorkerStats> = JoinSet::new();
    let max = MAX_PASSES;
    let max_idle = ctx.bg.max_idle.max(MIN_IDLE);
    let mut idle = MIN_IDLE;
    while !shutdown.is_cancelled() {
        while let Some(done) = passes.try_join_next() {
            stats.add_joined(done, "batch poll pass");
        }
        let free = max.saturating_sub(passes.len());
        if free == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                done = passes.join_next() => if let Some(done) = done { stats.add_joined(done, "batch poll pass") },
            }
            continue;
        }
        let claim = BatchClaimRequest {
            worker_id: ctx.bg.worker_id.clone(),
            capabilities: ctx.capabilities.clone(),
            max: u32::try_from(free).unwrap_or(u32::MAX),
        };
        let answer = tokio::select! {
            _ = shutdown.cancelled() => break,
            answer = ctx.bg.client.batch_claim(&claim) => answer,
        };
        let wait = match answer {
            Ok(answer) if !answer.polls.is_empty() => {
                for poll in answer.polls {
                    let span = tracing::info_span!("batch_poll", shard_id = %poll.shard_id,
                        job_id = %poll.job_id, poll_seq = poll.poll_seq);
                    let ctx = Arc::clone(&ctx);
                    let stop = shutdown.child_token();
                    passes.spawn(async move { pass(&ctx, poll, stop).await }.instrument(span));
                }
                idle = MIN_IDLE;
                continue;
            }
            Ok(answer) => {
                let due = answer
                    .next_due_in_ms
                    .map(Duration::from_millis)
                    .unwrap_or(max_idle);
                idle = (idle * 2).min(max_idle);
                due.clamp(MIN_IDLE, idle.max(MIN_IDLE))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim batch polls");
                idle = (idle * 2).min(max_idle);
                idle
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            done = passes.join_next(), if !passes.is_empty() => if let Some(done) = done { stats.add_joined(done, "batch poll pass") },
        }
    }
    // Passes see the cancelled token and hand their shards back.
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                passes.abort_all();
                break;
            }
            done = passes.join_next() => match done {
                Some(done) => stats.add_joined(done, "batch poll pass"),
                None => break,
            },
        }
    }
    stats
}
