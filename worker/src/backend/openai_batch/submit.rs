//! Submitting a claimed shard: build its input files, upload them, create one batch per file
//! (as many as the model's enqueued-token cap allows; the rest wait for a poller), and record
//! the batch ids in the store step that moves the shard from `running` to `submitted`. The
//! shard's lease is heartbeated by the caller throughout.

use std::collections::HashMap;

use jobs::protocol::{FailKind, Lease};
use jobs::InferenceRequest;
use jobs::{
    protocol::BatchHolder, protocol::BatchRequestsRequest, protocol::BatchReserveRequest,
    protocol::BatchSubmitRequest, provider_batch::add_to_group, provider_batch::BatchPart,
    provider_batch::BatchShardState,
};
use uuid::Uuid;

use super::api::{BatchApiError, BatchObject};
use super::input::{build_files, BuiltFile, RoundId};
use super::{fault, OpenAiBatchBackend};
use crate::backend::context::ShardContext;
use crate::stats::WorkerStats;
use client::LeaseOutcome;

/// Who is creating a batch, for its metadata and file name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartOwner {
    pub job_id: Uuid,
    pub shard_id: Uuid,
    pub attempt: u32,
    pub round: u32,
}

/// Records what the provider says about a batch on its part.
pub(crate) fn adopt(part: &mut BatchPart, batch: &BatchObject) {
    part.batch_id = Some(batch.id.clone());
    part.status = Some(batch.status.clone());
    part.output_file_id = batch.output_file_id.clone();
    part.error_file_id = batch.error_file_id.clone();
    if let Some(counts) = &batch.request_counts {
        part.completed = counts.completed;
        part.failed = counts.failed;
    }
}

/// Creates the batch of one part, unless `known` (the shard's batches found
/// by listing, when an earlier try may have created some) holds it already.
pub(crate) async fn create_part(
    backend: &OpenAiBatchBackend,
    part: &mut BatchPart,
    file: &BuiltFile,
    owner: PartOwner,
    known: Option<&HashMap<String, BatchObject>>,
) -> Result<(), BatchApiError> {
    if let Some(found) = known.and_then(|k| k.get(&part.request_set)) {
        tracing::info!(batch_id = %found.id, part = part.index,
            "found the batch an earlier try created; adopting it instead of creating another");
        adopt(part, found);
        return Ok(());
    }
    let filename = format!(
        "shardline-{}-r{}-p{}.jsonl",
        owner.shard_id, owner.round, part.index
    );
    let uploaded = backend
        .api()
        .upload(&filename, file.content.clone())
        .await?;
    part.input_file_id = Some(uploaded.id.clone());
    tracing::debug!(file_id = %uploaded.id, part = part.index, bytes = file.content.len(), "input file uploaded");
    fault::point(fault::AFTER_UPLOAD);
    let metadata = OpenAiBatchBackend::metadata(
        owner.job_id,
        owner.shard_id,
        owner.attempt,
        owner.round,
        &part.request_set,
    );
    let batch = backend
        .create_once(
            &uploaded.id,
            file.endpoint,
            &metadata,
            owner.shard_id,
            &part.request_set,
        )
        .await?;
    tracing::info!(batch_id = %batch.id, part = part.index, requests = part.requests.len(),
        "batch created");
    adopt(part, &batch);
    fault::point(if owner.round == 0 {
        fault::AFTER_CREATE
    } else {
        fault::AFTER_RETRY_CREATE
    });
    Ok(())
}

/// Positions of `requests` (a lease's remaining requests) in the shard's
/// full list.
pub(crate) fn positions(full: &[InferenceRequest], requests: &[InferenceRequest]) -> Vec<u32> {
    let by_key: HashMap<&str, u32> = full
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.as_str(), i as u32))
        .collect();
    requests
        .iter()
        .filter_map(|r| by_key.get(r.key.as_str()).copied())
        .collect()
}

/// Runs the submission of a claimed shard; the lease is heartbeated by
/// `ctx` throughout.
impl OpenAiBatchBackend {
    /// Submits a claimed shard (see the module doc).
    pub(crate) async fn submit_shard(
        &self,
        lease: &Lease,
        requests: Vec<InferenceRequest>,
        ctx: &ShardContext,
    ) -> WorkerStats {
        submit_shard(self, lease, requests, ctx).await
    }
}

async fn submit_shard(
    backend: &OpenAiBatchBackend,
    lease: &Lease,
    requests: Vec<InferenceRequest>,
    ctx: &ShardContext,
) -> WorkerStats {
    let client = &ctx.client;
    let worker_id = ctx.worker_id.as_str();
    let stop = &ctx.stop;
    let mut stats = WorkerStats::default();
    let full = match client
        .batch_requests(&BatchRequestsRequest {
            worker_id: worker_id.to_string(),
            shard_id: lease.shard_id,
        })
        .await
    {
        Ok(full) => full,
        Err(e) => {
            fail_lease(
                ctx,
                lease,
                format!("cannot read the shard's requests: {e}"),
                &mut stats,
            )
            .await;
            return stats;
        }
    };
    let indices = positions(&full, &requests);
    let round = RoundId {
        job_id: lease.job_id,
        shard_id: lease.shard_id,
        round: 0,
    };
    let (files, unbuildable) = build_files(backend.sync(), &full, indices, backend.limits(), round);
    let spec = backend.spec();
    let mut state = BatchShardState {
        attempt: lease.attempt,
        round: 0,
        parts: files.iter().map(|f| f.part.clone()).collect(),
        poll_delay_ms: spec.poll_interval_ms(),
        ..BatchShardState::default()
    };
    for (index, error) in unbuildable {
        add_to_group(&mut state.failed, &error, vec![index]);
    }
    tracing::info!(
        requests = requests.len(),
        files = files.len(),
        "submitting the shard as batches"
    );

    let granted = match spec.max_enqueued_tokens {
        None => files.len(),
        Some(cap) => {
            let reserve = BatchReserveRequest {
                worker_id: worker_id.to_string(),
                shard_id: lease.shard_id,
                holder: BatchHolder::Lease {
                    attempt: lease.attempt,
                },
                model_key: backend.model_key().to_string(),
                cap,
                base_tokens: 0,
                wanted: files.iter().map(|f| f.part.tokens).collect(),
            };
            match client.batch_reserve(&reserve).await {
                Ok(LeaseOutcome::Accepted(answer)) => {
                    if (answer.granted as usize) < files.len() {
                        tracing::info!(
                            granted = answer.granted,
                            files = files.len(),
                            enqueued_elsewhere = answer.enqueued_elsewhere,
                            "enqueued-token cap reached; the other batches wait for room"
                        );
                    }
                    answer.granted as usize
                }
                Ok(LeaseOutcome::Fenced { message }) => {
                    stats.fenced += 1;
                    tracing::warn!(%message, "lease lost before any batch was created");
                    return stats;
                }
                Err(e) => {
                    fail_lease(
                        ctx,
                        lease,
                        format!("cannot reserve room under the enqueued-token cap: {e}"),
                        &mut stats,
                    )
                    .await;
                    return stats;
                }
            }
        }
    };

    let owner = PartOwner {
        job_id: lease.job_id,
        shard_id: lease.shard_id,
        attempt: lease.attempt,
        round: 0,
    };
    let mut error: Option<BatchApiError> = None;
    // An earlier attempt may have created batches before dying: look them
    // up once, before creating any.
    let mut known = None;
    if lease.attempt > 1 && granted > 0 {
        match backend.find_recent_shard_batches(lease.shard_id).await {
            Ok(found) => known = Some(found),
            Err(e) => error = Some(e),
        }
    }
    for (i, file) in files.iter().enumerate().take(granted) {
        if error.is_some() || stop.is_cancelled() || ctx.heartbeat.is_lost() {
            break;
        }
        if let Err(e) = create_part(backend, &mut state.parts[i], file, owner, known.as_ref()).await
        {
            tracing::warn!(error = %e, part = i, "cannot create the batch");
            error = Some(e);
            break;
        }
    }
    let created = state.parts.iter().any(|p| p.batch_id.is_some());
    if !created && ctx.heartbeat.is_lost() {
        tracing::warn!(
            "lease lost (expired, or the job was cancelled) before any batch was created"
        );
        return stats;
    }
    if !created && !state.parts.is_empty() {
        if let Some(e) = error {
            if let BatchApiError::Untrusted { message, .. } = &e {
                // No attempt gets past a refused certificate: fail the job.
                tracing::error!(error = %message, "the endpoint's certificate was refused");
                ctx.fail_lease(lease, message.clone(), FailKind::Configuration, &mut stats)
                    .await;
                return stats;
            }
            fail_lease(
                ctx,
                lease,
                format!("cannot create a batch: {e}"),
                &mut stats,
            )
            .await;
            return stats;
        }
        if stop.is_cancelled() {
            ctx.release(lease, None, 0, &mut stats).await;
            return stats;
        }
    }
    // Nothing to wait for (every request unbuildable) or only pending
    // parts: the first poll acts at once or when there is room.
    let next_poll_in_ms = if created { spec.poll_interval_ms() } else { 0 };
    let submit = BatchSubmitRequest {
        worker_id: worker_id.to_string(),
        shard_id: lease.shard_id,
        attempt: lease.attempt,
        state,
        model_key: backend.model_key().to_string(),
        next_poll_in_ms,
    };
    match client.batch_submit(&submit).await {
        Ok(LeaseOutcome::Accepted(_)) => {
            tracing::info!(
                batches = submit
                    .state
                    .parts
                    .iter()
                    .filter(|p| p.batch_id.is_some())
                    .count(),
                "shard submitted; its lease is released and pollers take over"
            );
        }
        Ok(LeaseOutcome::Fenced { message }) => {
            // The lease was lost while the batches were being created: the
            // job was cancelled (its shard with it), or the lease expired
            // and a newer attempt took the shard. Either way nobody will
            // record these batches, so they are cancelled; a newer attempt
            // that adopted one meanwhile keeps its finished part.
            stats.fenced += 1;
            tracing::warn!(%message, "submission fenced; cancelling the batches of this attempt");
            for id in submit
                .state
                .parts
                .iter()
                .filter_map(|p| p.batch_id.as_deref())
            {
                if let Err(e) = backend.api().cancel(id).await {
                    tracing::warn!(batch_id = id, error = %e, "cannot cancel an unrecorded batch");
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e,
                "cannot record the submission; the lease expires and the next attempt adopts the batches");
        }
    }
    stats
}

async fn fail_lease(ctx: &ShardContext, lease: &Lease, error: String, stats: &mut WorkerStats) {
    tracing::error!(%error, "failing the shard's attempt");
    ctx.fail_lease(lease, error, FailKind::Transient, stats)
        .await;
}
