//! One pass over a submitted shard: poll its batches, then collect,
//! create, retry or finish as its state says (see the sibling modules), and
//! hand the shard back with the time of its next poll.

use std::sync::Arc;
use std::time::Duration;

use jobs::protocol::{JobState, PartialOutputs, WorkerCapabilities};
use jobs::InferenceRequest;
use jobs::{
    protocol::BatchHeartbeatRequest, protocol::BatchPoll, protocol::BatchRequestsRequest,
    protocol::BatchUpdateRequest, provider_batch::BatchShardState, spec::RetryWith,
};
use tokio_util::sync::CancellationToken;

use crate::backend::background::BackgroundContext;
use crate::backend::openai_batch::submit::{adopt, PartOwner};
use crate::backend::openai_batch::{fault, OpenAiBatchBackend};
use crate::heartbeat::Heartbeat;
use crate::stats::WorkerStats;
use client::{ClientError, LeaseOutcome};

/// Delay before a shard is looked at again after an error this worker could
/// not get past (e.g. it lacks the model's API key).
const ERROR_DELAY_MS: u64 = 30_000;

/// The poller's surroundings.
pub(super) struct Ctx {
    pub(super) bg: BackgroundContext,
    /// Sent with every poll claim: this backend, the worker's models.
    pub(super) capabilities: WorkerCapabilities,
}

/// Why a pass stopped early.
pub(super) enum Stop {
    /// The poll lease is no longer ours.
    Lost,
    /// The worker is shutting down: hand the shard back as it is.
    Shutdown,
    /// A call failed; hand the shard back and try later.
    Error(String),
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Fenced { .. } => Stop::Lost,
            other => Stop::Error(other.to_string()),
        }
    }
}

pub(super) struct Pass<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) backend: OpenAiBatchBackend,
    pub(super) poll: BatchPoll,
    pub(super) state: BatchShardState,
    pub(super) requests: Option<Arc<Vec<InferenceRequest>>>,
    /// Something moved since the last pass (a status, a new batch, results).
    pub(super) changed: bool,
    /// The job stopped: cancel, keep what finished, start nothing.
    pub(super) stopping: bool,
    pub(super) heartbeat: Heartbeat,
    pub(super) stop: CancellationToken,
    pub(super) stats: WorkerStats,
}

pub(super) async fn pass(ctx: &Ctx, poll: BatchPoll, stop: CancellationToken) -> WorkerStats {
    let backend = match ctx.bg.backends.backend(&poll.model) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the Batch API backend for this shard; leaving it to other workers");
            hand_back(ctx, &poll, poll.state.clone(), ERROR_DELAY_MS).await;
            return WorkerStats::default();
        }
    };
    let any: Arc<dyn std::any::Any + Send + Sync> = backend;
    let Ok(backend) = any.downcast::<OpenAiBatchBackend>() else {
        tracing::error!(backend = ?poll.model.backend, "a submitted shard whose model is not a Batch API model");
        hand_back(ctx, &poll, poll.state.clone(), ERROR_DELAY_MS).await;
        return WorkerStats::default();
    };
    let backend = OpenAiBatchBackend::clone(&backend);
    let heartbeat = {
        let client = ctx.bg.client.clone();
        let beat = BatchHeartbeatRequest {
            worker_id: ctx.bg.worker_id.clone(),
            shard_id: poll.shard_id,
            poll_seq: poll.poll_seq,
        };
        Heartbeat::start(
            Duration::from_secs(poll.heartbeat_interval_secs.max(1)),
            stop.clone(),
            "batch poll",
            move || {
                let client = client.clone();
                let beat = beat.clone();
                async move { client.batch_heartbeat(&beat).await.map(|a| a.keep_going) }
            },
        )
    };
    let stopping = poll.job_state != JobState::Running;
    let mut pass = Pass {
        ctx,
        backend,
        state: poll.state.clone(),
        poll,
        requests: None,
        changed: false,
        stopping,
        heartbeat,
        stop,
        stats: WorkerStats::default(),
    };
    let outcome = pass.run().await;
    pass.heartbeat.stop();
    match outcome {
        Ok(()) => {}
        Err(Stop::Lost) => {
            pass.stats.fenced += 1;
            tracing::warn!("poll lease lost; another worker has the shard");
        }
        Err(Stop::Shutdown) => {
            let delay = 0;
            hand_back(ctx, &pass.poll, pass.state.clone(), delay).await;
        }
        Err(Stop::Error(error)) => {
            tracing::warn!(%error, "batch poll pass stopped early; trying again later");
            let delay = pass
                .next_delay()
                .max(pass.backend.spec().poll_interval_ms());
            hand_back(ctx, &pass.poll, pass.state.clone(), delay).await;
        }
    }
    pass.stats
}

/// Ends the poll lease without other changes.
async fn hand_back(ctx: &Ctx, poll: &BatchPoll, state: BatchShardState, delay_ms: u64) {
    let update = BatchUpdateRequest {
        worker_id: ctx.bg.worker_id.clone(),
        shard_id: poll.shard_id,
        poll_seq: poll.poll_seq,
        state,
        keep_lease: false,
        next_poll_in_ms: delay_ms,
        partial: None,
    };
    if let Err(e) = ctx.bg.client.batch_update(&update).await {
        tracing::warn!(error = %e, "cannot hand the shard back; its poll lease expires");
    }
}
impl Pass<'_> {
    pub(super) fn owner(&self) -> PartOwner {
        PartOwner {
            job_id: self.poll.job_id,
            shard_id: self.poll.shard_id,
            attempt: self.state.attempt,
            round: self.state.round,
        }
    }

    pub(super) fn check(&self) -> Result<(), Stop> {
        if self.heartbeat.is_lost() {
            return Err(Stop::Lost);
        }
        if self.stop.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        Ok(())
    }

    pub(super) async fn run(&mut self) -> Result<(), Stop> {
        self.refresh().await?;
        self.collect_finished().await?;
        loop {
            if !self.stopping && self.state.fatal.is_none() {
                self.create_pending().await?;
            }
            if !self.round_complete() {
                break;
            }
            if self.state.fatal.is_some() || self.stopping {
                return self.finish_stopped().await;
            }
            let retries_left = self.state.round < self.backend.spec().max_request_retries;
            if self.state.retry.is_empty() || !retries_left {
                return self.finish_completed(None).await;
            }
            match self.backend.spec().retry_with {
                RetryWith::Sync => {
                    self.retry_synchronously().await?;
                    return self.finish_completed(None).await;
                }
                RetryWith::Batch => self.next_round().await?,
            }
        }
        let delay = self.next_delay();
        self.update(false, delay, None).await
    }

    /// Polls every created, unfinished batch; cancels them when the job
    /// stopped.
    pub(super) async fn refresh(&mut self) -> Result<(), Stop> {
        for i in 0..self.state.parts.len() {
            self.check()?;
            let part = &self.state.parts[i];
            let Some(id) = part.batch_id.clone() else {
                continue;
            };
            if part.is_terminal() {
                continue;
            }
            let mut batch = self
                .backend
                .api()
                .retrieve(&id)
                .await
                .map_err(|e| Stop::Error(e.to_string()))?;
            fault::point(fault::DURING_POLL);
            if self.stopping
                && matches!(
                    batch.status.as_str(),
                    "validating" | "in_progress" | "finalizing"
                )
            {
                tracing::info!(batch_id = %id, "job stopped; cancelling its batch");
                batch = match self.backend.api().cancel(&id).await {
                    Ok(b) => b,
                    // It finished meanwhile: read it again.
                    Err(_) => self
                        .backend
                        .api()
                        .retrieve(&id)
                        .await
                        .map_err(|e| Stop::Error(e.to_string()))?,
                };
            }
            let part = &mut self.state.parts[i];
            let before = part.status.clone();
            adopt(part, &batch);
            // Only a new status resets the backoff: request counts move all
            // through `in_progress`, and polling every interval for hours
            // would cost requests for nothing.
            if before != part.status {
                self.changed = true;
                tracing::debug!(batch_id = %id, status = %batch.status,
                    completed = part.completed, failed = part.failed, "batch status");
            }
            if batch.failed_for_quota() {
                // Nothing ran: the batch is sent again when there is room.
                tracing::warn!(batch_id = %id, "batch refused for the enqueued-token quota; it waits for room");
                let part = &mut self.state.parts[i];
                part.batch_id = None;
                part.status = None;
                part.input_file_id = None;
                part.output_file_id = None;
                part.error_file_id = None;
                part.create_started_ms = None;
            } else if batch.status == "failed" {
                let reason = format!("batch {id} failed: {}", batch.error_summary());
                tracing::error!(%reason, "batch failed");
                self.state.fatal.get_or_insert(reason);
                self.state.parts[i].done = true;
            }
        }
        Ok(())
    }

    pub(super) async fn requests(&mut self) -> Result<Arc<Vec<InferenceRequest>>, Stop> {
        if let Some(r) = &self.requests {
            return Ok(Arc::clone(r));
        }
        let list = self
            .ctx
            .bg
            .client
            .batch_requests(&BatchRequestsRequest {
                worker_id: self.ctx.bg.worker_id.clone(),
                shard_id: self.poll.shard_id,
            })
            .await?;
        let list = Arc::new(list);
        self.requests = Some(Arc::clone(&list));
        Ok(list)
    }

    /// Every part of the round is read (or will never run).
    pub(super) fn round_complete(&self) -> bool {
        let giving_up = self.stopping || self.state.fatal.is_some();
        self.state
            .parts
            .iter()
            .all(|p| p.done || (giving_up && p.batch_id.is_none()))
    }

    /// Delay before the next pass: the base interval after a change, then
    /// doubling up to the maximum.
    pub(super) fn next_delay(&mut self) -> u64 {
        let spec = self.backend.spec();
        let base = spec.poll_interval_ms();
        let max = spec.max_poll_interval_ms();
        let delay = if self.changed || self.state.poll_delay_ms == 0 || self.stopping {
            base
        } else {
            self.state.poll_delay_ms.saturating_mul(2).min(max)
        };
        self.state.poll_delay_ms = delay;
        delay
    }

    pub(super) async fn update(
        &mut self,
        keep_lease: bool,
        next_poll_in_ms: u64,
        partial: Option<PartialOutputs>,
    ) -> Result<(), Stop> {
        self.update_state(self.state.clone(), keep_lease, next_poll_in_ms, partial)
            .await
    }

    /// Records `next` (with `partial` indexed); it becomes the pass's state
    /// only once the store has it.
    pub(super) async fn update_state(
        &mut self,
        next: BatchShardState,
        keep_lease: bool,
        next_poll_in_ms: u64,
        partial: Option<PartialOutputs>,
    ) -> Result<(), Stop> {
        let update = BatchUpdateRequest {
            worker_id: self.ctx.bg.worker_id.clone(),
            shard_id: self.poll.shard_id,
            poll_seq: self.poll.poll_seq,
            state: next,
            keep_lease,
            next_poll_in_ms,
            partial,
        };
        match self.ctx.bg.client.batch_update(&update).await? {
            LeaseOutcome::Accepted(_) => {
                self.state = update.state;
                Ok(())
            }
            LeaseOutcome::Fenced { .. } => Err(Stop::Lost),
        }
    }
}
