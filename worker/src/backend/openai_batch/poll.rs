//! Polling submitted shards. A worker offering `openai-batch` runs one poller: it takes short
//! poll leases on submitted shards that are due (`POST /v1/batches/claim`), and for each one
//! makes a *pass*: poll its batches, download and index the finished ones, create batches that
//! were waiting (for room under the enqueued-token cap, or a retry round), cancel them when the
//! job stopped, and finally complete, fail or cancel the shard, or hand it back with the time of
//! its next poll (the interval doubles while nothing changes).
//!
//! Every step that changes what exists at the provider is recorded before the next one: a
//! poller records its intent before creating a batch and the batch id right after, and indexes
//! each downloaded batch's segment before moving on, so a poller killed anywhere leaves a state
//! the next one continues from without a second batch for the same requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use jobs::batch::{
    add_to_group, BatchClaimRequest, BatchFinishRequest, BatchHeartbeatRequest, BatchHolder,
    BatchOutcome, BatchPoll, BatchRequestsRequest, BatchReserveRequest, BatchShardState,
    BatchUpdateRequest, ErrorGroup, RetryWith,
};
use jobs::protocol::{FailedRequest, JobState, PartialOutputs, WorkerCapabilities};
use jobs::{InferenceRequest, SegmentRecord, Usage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::api::BatchObject;
use super::input::{build_files, RoundId};
use super::output::{read_results, LineResult};
use super::submit::{adopt, create_part, PartOwner};
use super::{batch_segment_path, fault, now_unix_ms, OpenAiBatchBackend};
use crate::backend::background::BackgroundContext;
use crate::backend::Backend;
use crate::heartbeat::Heartbeat;
use crate::stats::WorkerStats;
use client::{ClientError, LeaseOutcome};
use jobs::spec::BackendKind;

/// Poll passes a worker runs at once.
const MAX_PASSES: usize = 8;
/// Shortest wait between two poll claims.
const MIN_IDLE: Duration = Duration::from_millis(100);
/// Delay before a shard is looked at again after an error this worker could
/// not get past (e.g. it lacks the model's API key).
const ERROR_DELAY_MS: u64 = 30_000;

/// The poller's surroundings.
struct Ctx {
    bg: BackgroundContext,
    /// Sent with every poll claim: this backend, the worker's models.
    capabilities: WorkerCapabilities,
}

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

/// Why a pass stopped early.
enum Stop {
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

struct Pass<'a> {
    ctx: &'a Ctx,
    backend: OpenAiBatchBackend,
    poll: BatchPoll,
    state: BatchShardState,
    requests: Option<Arc<Vec<InferenceRequest>>>,
    /// Something moved since the last pass (a status, a new batch, results).
    changed: bool,
    /// The job stopped: cancel, keep what finished, start nothing.
    stopping: bool,
    heartbeat: Heartbeat,
    stop: CancellationToken,
    stats: WorkerStats,
}

async fn pass(ctx: &Ctx, poll: BatchPoll, stop: CancellationToken) -> WorkerStats {
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
    fn owner(&self) -> PartOwner {
        PartOwner {
            job_id: self.poll.job_id,
            shard_id: self.poll.shard_id,
            attempt: self.state.attempt,
            round: self.state.round,
        }
    }

    fn check(&self) -> Result<(), Stop> {
        if self.heartbeat.is_lost() {
            return Err(Stop::Lost);
        }
        if self.stop.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), Stop> {
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
    async fn refresh(&mut self) -> Result<(), Stop> {
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

    async fn requests(&mut self) -> Result<Arc<Vec<InferenceRequest>>, Stop> {
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

    /// Downloads each finished batch not yet read, writes its outputs as a
    /// segment and indexes them, one batch per store step.
    async fn collect_finished(&mut self) -> Result<(), Stop> {
        for i in 0..self.state.parts.len() {
            let part = &self.state.parts[i];
            if part.done || !part.is_terminal() || part.status.as_deref() == Some("failed") {
                continue;
            }
            self.check()?;
            let requests = self.requests().await?;
            let part = self.state.parts[i].clone();
            if !part.requests.fits(requests.len()) {
                return Err(Stop::Error(format!(
                    "the recorded requests of batch part {} do not fit the shard's {} requests",
                    part.index,
                    requests.len()
                )));
            }
            let batch_id = part.batch_id.clone().unwrap_or_default();
            let status = part.status.clone().unwrap_or_default();
            let mut files = Vec::new();
            for file_id in [&part.output_file_id, &part.error_file_id]
                .into_iter()
                .flatten()
            {
                let bytes = self
                    .backend
                    .api()
                    .content(file_id)
                    .await
                    .map_err(|e| Stop::Error(e.to_string()))?;
                fault::point(fault::DURING_DOWNLOAD);
                files.push(bytes);
            }
            let slices: Vec<&[u8]> = files.iter().map(|b| b.as_ref()).collect();
            let indices: Vec<u32> = part.requests.iter().collect();
            let (results, strangers) =
                read_results(self.backend.sync(), &requests, &indices, &slices, &batch_id);
            if strangers > 0 {
                tracing::warn!(batch_id = %batch_id, strangers, "result lines naming requests outside the batch were ignored");
            }
            let mut records = Vec::new();
            let mut written = Vec::new();
            let mut usage = Usage::default();
            let mut retry: Vec<(String, u32)> = Vec::new();
            let mut failed: Vec<(String, u32)> = Vec::new();
            for &index in &indices {
                let req = &requests[index as usize];
                match results.get(&index) {
                    Some(LineResult::Ok(output)) => {
                        usage.add(output.usage);
                        written.push(req.key.clone());
                        records.push(record(req, &self.poll, Some(output.clone()), None));
                    }
                    Some(LineResult::Failed(error)) => {
                        records.push(record(req, &self.poll, None, Some(error.clone())));
                        failed.push((error.clone(), index));
                    }
                    Some(LineResult::Retry(error)) => retry.push((error.clone(), index)),
                    None => retry.push(("no result".to_string(), index)),
                }
            }
            let partial = if records.is_empty() {
                None
            } else {
                let path = batch_segment_path(
                    self.poll.job_id,
                    self.poll.shard_id,
                    self.state.attempt,
                    self.state.round,
                    &format!("p{}", part.index),
                );
                cache::write_segment(self.ctx.bg.objects.as_ref(), &path, &records)
                    .await
                    .map_err(|e| Stop::Error(format!("cannot write segment {path}: {e}")))?;
                Some(PartialOutputs {
                    segment: path,
                    written,
                    usage,
                })
            };
            let ok = partial.as_ref().map_or(0, |p| p.written.len());
            tracing::info!(batch_id = %batch_id, %status, ok,
                failed = failed.len(), retry = retry.len(), "batch results collected");
            // Applied only once the store has the outputs: a pass that
            // cannot record them leaves the part to be read again.
            let mut next = self.state.clone();
            for (error, index) in failed {
                add_to_group(&mut next.failed, &error, vec![index]);
            }
            for (error, index) in retry {
                let target = if self.stopping {
                    &mut next.failed
                } else {
                    &mut next.retry
                };
                add_to_group(target, &error, vec![index]);
            }
            next.parts[i].done = true;
            self.update_state(next, true, 0, partial).await?;
            self.stats.requests_ok += ok as u64;
            self.changed = true;
        }
        Ok(())
    }

    /// Creates the batches of the current round that wait for one, as many
    /// as the enqueued-token cap allows.
    async fn create_pending(&mut self) -> Result<(), Stop> {
        let pending: Vec<usize> = (0..self.state.parts.len())
            .filter(|&i| self.state.parts[i].batch_id.is_none() && !self.state.parts[i].done)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        self.check()?;
        let granted = match self.backend.spec().max_enqueued_tokens {
            None => pending.len(),
            Some(cap) => {
                let reserve = BatchReserveRequest {
                    worker_id: self.ctx.bg.worker_id.clone(),
                    shard_id: self.poll.shard_id,
                    holder: BatchHolder::Poll {
                        poll_seq: self.poll.poll_seq,
                    },
                    model_key: self.backend.model_key().to_string(),
                    cap,
                    base_tokens: self.state.enqueued_tokens(),
                    wanted: pending
                        .iter()
                        .map(|&i| self.state.parts[i].tokens)
                        .collect(),
                };
                match self.ctx.bg.client.batch_reserve(&reserve).await? {
                    LeaseOutcome::Accepted(answer) => answer.granted as usize,
                    LeaseOutcome::Fenced { .. } => return Err(Stop::Lost),
                }
            }
        };
        if granted == 0 {
            return Ok(());
        }
        let requests = self.requests().await?;
        let owner = self.owner();
        // Batches an earlier poller may have created without recording
        // them: looked up once for the pass, when some part needs it.
        let mut known: Option<HashMap<String, BatchObject>> = None;
        for &i in pending.iter().take(granted) {
            self.check()?;
            let look_first = self.state.parts[i].create_started_ms.is_some();
            if look_first && known.is_none() {
                let since = self.state.parts[i].create_started_ms.unwrap_or(0) / 1000 - 600;
                let found = self
                    .backend
                    .find_shard_batches(owner.shard_id, since)
                    .await
                    .map_err(|e| Stop::Error(e.to_string()))?;
                known = Some(found);
            }
            if !look_first {
                // Recorded before creating: a poller that dies between the
                // create and the record leaves a trace that makes the next
                // one look the batch up first.
                self.state.parts[i].create_started_ms = Some(now_unix_ms());
                self.update(true, 0, None).await?;
            }
            let part = self.state.parts[i].clone();
            if !part.requests.fits(requests.len()) {
                return Err(Stop::Error(format!(
                    "the recorded requests of batch part {} do not fit the shard",
                    part.index
                )));
            }
            let round = RoundId {
                job_id: owner.job_id,
                shard_id: owner.shard_id,
                round: owner.round,
            };
            let (mut files, unbuildable) = build_files(
                self.backend.sync(),
                &requests,
                part.requests.iter(),
                self.backend.limits(),
                round,
            );
            if files.len() != 1 || !unbuildable.is_empty() {
                return Err(Stop::Error(format!(
                    "batch part {} no longer builds into one input file",
                    part.index
                )));
            }
            let mut file = files.remove(0);
            // Same requests, same index: the identity must match.
            file.part.index = part.index;
            if file.part.request_set != part.request_set {
                return Err(Stop::Error(format!(
                    "batch part {} rebuilt with a different request set",
                    part.index
                )));
            }
            match create_part(
                &self.backend,
                &mut self.state.parts[i],
                &file,
                owner,
                if look_first { known.as_ref() } else { None },
            )
            .await
            {
                Ok(()) => {
                    self.changed = true;
                    self.update(true, 0, None).await?;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "cannot create a batch now; trying again at the next poll");
                    return Ok(());
                }
                Err(e) => {
                    let reason = format!("cannot create a batch: {e}");
                    self.state.fatal.get_or_insert(reason);
                    self.state.parts[i].done = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every part of the round is read (or will never run).
    fn round_complete(&self) -> bool {
        let giving_up = self.stopping || self.state.fatal.is_some();
        self.state
            .parts
            .iter()
            .all(|p| p.done || (giving_up && p.batch_id.is_none()))
    }

    /// Starts a retry round with the requests that failed or went missing.
    async fn next_round(&mut self) -> Result<(), Stop> {
        let requests = self.requests().await?;
        let mut indices: Vec<u32> = self
            .state
            .retry
            .iter()
            .flat_map(|g| g.requests.iter().collect::<Vec<_>>())
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let round = self.state.round + 1;
        let (files, unbuildable) = build_files(
            self.backend.sync(),
            &requests,
            indices.iter().copied(),
            self.backend.limits(),
            RoundId {
                job_id: self.poll.job_id,
                shard_id: self.poll.shard_id,
                round,
            },
        );
        tracing::info!(
            round,
            requests = indices.len(),
            files = files.len(),
            "retrying failed and missing requests in a new batch"
        );
        self.state.round = round;
        self.state.retry.clear();
        self.state.parts = files.into_iter().map(|f| f.part).collect();
        for (index, error) in unbuildable {
            add_to_group(&mut self.state.failed, &error, vec![index]);
        }
        self.changed = true;
        // Recorded before any batch of the round exists.
        self.update(true, 0, None).await
    }

    /// Sends the retry requests through the synchronous endpoint and
    /// records their outputs.
    async fn retry_synchronously(&mut self) -> Result<(), Stop> {
        let requests = self.requests().await?;
        let indices: Vec<u32> = self
            .state
            .retry
            .iter()
            .flat_map(|g| g.requests.iter().collect::<Vec<_>>())
            .collect();
        // The state comes back from the coordinator's database: never trust
        // its indices to fit this shard's requests.
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= requests.len()) {
            return Err(Stop::Error(format!(
                "batch state names request {bad} but the shard has {} requests",
                requests.len()
            )));
        }
        tracing::info!(
            requests = indices.len(),
            "retrying failed and missing requests synchronously"
        );
        let sync = self.backend.clone();
        let concurrency = self.backend.sync().concurrency().max(1);
        let outcomes: Vec<(
            u32,
            Result<jobs::InferenceOutput, crate::backend::BackendError>,
        )> = stream::iter(indices.iter().copied())
            .map(|i| {
                let sync = sync.clone();
                let requests = Arc::clone(&requests);
                async move {
                    let result = sync.sync().run(&requests[i as usize]).await;
                    (i, result)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        self.check()?;
        let mut records = Vec::new();
        let mut written = Vec::new();
        let mut usage = Usage::default();
        let mut next = self.state.clone();
        for (index, result) in outcomes {
            let req = &requests[index as usize];
            match result {
                Ok(output) => {
                    usage.add(output.usage);
                    written.push(req.key.clone());
                    records.push(record(req, &self.poll, Some(output), None));
                }
                Err(e) => {
                    let error = e.to_string();
                    records.push(record(req, &self.poll, None, Some(error.clone())));
                    add_to_group(&mut next.failed, &error, vec![index]);
                }
            }
        }
        next.retry.clear();
        let partial = if records.is_empty() {
            None
        } else {
            let path = batch_segment_path(
                self.poll.job_id,
                self.poll.shard_id,
                self.state.attempt,
                self.state.round,
                "sync",
            );
            cache::write_segment(self.ctx.bg.objects.as_ref(), &path, &records)
                .await
                .map_err(|e| Stop::Error(format!("cannot write segment {path}: {e}")))?;
            Some(PartialOutputs {
                segment: path,
                written,
                usage,
            })
        };
        let ok = partial.as_ref().map_or(0, |p| p.written.len());
        // Indexed before the shard completes, in their own step.
        self.update_state(next, true, 0, partial).await?;
        self.stats.requests_ok += ok as u64;
        Ok(())
    }

    async fn failures(
        &mut self,
        groups: &[ErrorGroup],
        note: &str,
    ) -> Result<Vec<FailedRequest>, Stop> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let requests = self.requests().await?;
        let mut out = Vec::new();
        for group in groups {
            for index in group.requests.iter() {
                if let Some(req) = requests.get(index as usize) {
                    out.push(FailedRequest {
                        key: req.key.clone(),
                        error: format!("{note}{}", group.error),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn finish_completed(&mut self, partial: Option<PartialOutputs>) -> Result<(), Stop> {
        let mut failed = self.failures(&self.state.failed.clone(), "").await?;
        let leftover = self.state.retry.clone();
        let note = format!("still failing after {} retry round(s): ", self.state.round);
        failed.extend(self.failures(&leftover, &note).await?);
        self.stats.requests_failed += failed.len() as u64;
        let outcome = BatchOutcome::Completed { failed };
        self.finish(outcome, partial).await
    }

    async fn finish_stopped(&mut self) -> Result<(), Stop> {
        let outcome = match &self.state.fatal {
            Some(error) if !self.stopping => BatchOutcome::Failed {
                error: error.clone(),
            },
            _ => BatchOutcome::Cancelled,
        };
        self.finish(outcome, None).await
    }

    async fn finish(
        &mut self,
        outcome: BatchOutcome,
        partial: Option<PartialOutputs>,
    ) -> Result<(), Stop> {
        self.check()?;
        let completed = matches!(outcome, BatchOutcome::Completed { .. });
        let finish = BatchFinishRequest {
            worker_id: self.ctx.bg.worker_id.clone(),
            shard_id: self.poll.shard_id,
            poll_seq: self.poll.poll_seq,
            outcome,
            partial,
        };
        match self.ctx.bg.client.batch_finish(&finish).await? {
            LeaseOutcome::Accepted(answer) => {
                if completed {
                    self.stats.shards_completed += 1;
                }
                tracing::info!(state = ?answer.state, "submitted shard finished");
                Ok(())
            }
            LeaseOutcome::Fenced { .. } => Err(Stop::Lost),
        }
    }

    /// Delay before the next pass: the base interval after a change, then
    /// doubling up to the maximum.
    fn next_delay(&mut self) -> u64 {
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

    async fn update(
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
    async fn update_state(
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

fn record(
    req: &InferenceRequest,
    poll: &BatchPoll,
    output: Option<jobs::InferenceOutput>,
    error: Option<String>,
) -> SegmentRecord {
    SegmentRecord {
        key: req.key.clone(),
        model: poll.model.fingerprint(),
        request_type: req.request_type,
        sample_index: req.sample_index,
        output,
        error,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}
