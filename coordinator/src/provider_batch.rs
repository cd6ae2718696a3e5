//! The coordinator's side of the `openai-batch` lifecycle (`jobs::protocol::provider_batch`): reservations under
//! a model's enqueued-token cap, the step that records a shard's batches and moves it to
//! `submitted`, poll leases on submitted shards, and their end. Poll leases last as long as
//! shard leases (`lease_secs`) and are renewed by the same heartbeat period.

use chrono::{DateTime, Utc};
use jobs::protocol::{JobStatus, PartialOutputs};
use jobs::{cost::job_cost, protocol::CostSummary};
use jobs::{
    protocol::BatchClaimRequest, protocol::BatchClaimResponse, protocol::BatchFinishRequest,
    protocol::BatchFinishResponse, protocol::BatchHeartbeatRequest,
    protocol::BatchHeartbeatResponse, protocol::BatchHolder, protocol::BatchOutcome,
    protocol::BatchPoll, protocol::BatchReserveRequest, protocol::BatchReserveResponse,
    protocol::BatchSubmitRequest, protocol::BatchUpdateRequest, provider_batch::BatchShardState,
};
use std::time::Duration;
use uuid::Uuid;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::shard_keys::check_keys;
use crate::store::{
    BatchEnd, BatchFence, BatchSubmission, BatchUpdate, Claimant, LeaseFence, ModelPattern,
    Partial, PollFence,
};

/// Most poll leases one claim hands out.
const MAX_POLLS_PER_CLAIM: u32 = 64;
/// Longest delay a poller may ask for before the next poll.
const MAX_POLL_DELAY: Duration = Duration::from_secs(24 * 3600);

fn after(now: DateTime<Utc>, ms: u64) -> DateTime<Utc> {
    let ms = Duration::from_millis(ms).min(MAX_POLL_DELAY);
    now + chrono::Duration::from_std(ms).unwrap_or(chrono::Duration::zero())
}

fn partial(p: &Option<PartialOutputs>) -> Option<Partial> {
    p.as_ref().map(|p| Partial {
        segment: p.segment.clone(),
        written: p.written.clone(),
        usage: p.usage,
    })
}

fn encode(state: &BatchShardState) -> Result<String, CoordinatorError> {
    serde_json::to_string(state)
        .map_err(|e| CoordinatorError::Internal(format!("cannot encode a batch state: {e}")))
}

impl Coordinator {
    /// Refuses keys that are not requests of the shard, as `complete` and
    /// `release` do, so a confused worker cannot index foreign outputs or
    /// record failures on the wrong job. `false` when the shard is gone.
    async fn batch_keys_belong(
        &self,
        shard_id: Uuid,
        partial: &Option<PartialOutputs>,
        failed: &[jobs::protocol::FailedRequest],
    ) -> Result<bool, CoordinatorError> {
        let written = partial.as_ref().map_or(&[][..], |p| &p.written[..]);
        if written.is_empty() && failed.is_empty() {
            return Ok(true);
        }
        let Some(known) = self.shard_keys(shard_id).await? else {
            return Ok(false);
        };
        check_keys(shard_id, &known.1, "written", written.iter())?;
        check_keys(shard_id, &known.1, "failed", failed.iter().map(|f| &f.key))?;
        Ok(true)
    }
}

fn check_partial(p: &Option<PartialOutputs>) -> Result<(), CoordinatorError> {
    if let Some(p) = p {
        if p.segment.is_empty() || !cache::is_segment_path(&p.segment) {
            return Err(CoordinatorError::BadRequest(format!(
                "{:?} is not a segment path",
                p.segment
            )));
        }
    }
    Ok(())
}

impl Coordinator {
    fn poll_lease(&self) -> Duration {
        self.config().lease_length()
    }

    /// Room under the model's enqueued-token cap; `None` when fenced.
    pub async fn batch_reserve(
        &self,
        req: &BatchReserveRequest,
    ) -> Result<Option<BatchReserveResponse>, CoordinatorError> {
        let holder = match req.holder {
            BatchHolder::Lease { attempt } => BatchFence::Lease(LeaseFence {
                shard_id: req.shard_id,
                attempt,
                worker_id: req.worker_id.clone(),
            }),
            BatchHolder::Poll { poll_seq } => BatchFence::Poll(PollFence {
                shard_id: req.shard_id,
                poll_seq,
                worker_id: req.worker_id.clone(),
            }),
        };
        let answer = self
            .store()
            .reserve(
                &holder,
                &req.model_key,
                req.cap,
                req.base_tokens,
                &req.wanted,
                Utc::now(),
            )
            .await?;
        Ok(
            answer.map(|(granted, enqueued_elsewhere)| BatchReserveResponse {
                granted,
                enqueued_elsewhere,
            }),
        )
    }

    /// Records a shard's batches and moves it to `submitted`; false when
    /// fenced.
    pub async fn batch_submit(&self, req: &BatchSubmitRequest) -> Result<bool, CoordinatorError> {
        let fence = LeaseFence {
            shard_id: req.shard_id,
            attempt: req.attempt,
            worker_id: req.worker_id.clone(),
        };
        let now = Utc::now();
        let submission = BatchSubmission {
            state_json: encode(&req.state)?,
            model_key: req.model_key.clone(),
            enqueued_tokens: req.state.enqueued_tokens(),
            next_poll_at: after(now, req.next_poll_in_ms),
        };
        let accepted = self.store().submit(&fence, &submission, now).await?;
        if accepted {
            let batches: Vec<&str> = req
                .state
                .parts
                .iter()
                .filter_map(|p| p.batch_id.as_deref())
                .collect();
            tracing::info!(shard_id = %req.shard_id, attempt = req.attempt, ?batches,
                "shard submitted as provider batches");
        }
        Ok(accepted)
    }

    /// The shard's requests as stored (JSON), for the worker building or
    /// reading its batches.
    pub async fn batch_requests_json(&self, shard_id: Uuid) -> Result<String, CoordinatorError> {
        match self.store().shard_requests(shard_id).await? {
            Some((_, json)) => Ok(json),
            None => Err(CoordinatorError::BadRequest(format!("no shard {shard_id}"))),
        }
    }

    /// Poll leases on submitted shards that are due.
    pub async fn batch_claim(
        &self,
        req: &BatchClaimRequest,
    ) -> Result<BatchClaimResponse, CoordinatorError> {
        let models = req
            .capabilities
            .models
            .iter()
            .map(|g| ModelPattern::new(g).map_err(CoordinatorError::BadRequest))
            .collect::<Result<Vec<_>, _>>()?;
        let now = Utc::now();
        let claim = self
            .store()
            .claim_polls(
                &Claimant {
                    worker_id: &req.worker_id,
                    backends: &req.capabilities.backends,
                    models: &models,
                    max: req.max.clamp(1, MAX_POLLS_PER_CLAIM),
                    lease: self.poll_lease(),
                },
                now,
            )
            .await?;
        let mut polls = Vec::with_capacity(claim.polls.len());
        for poll in claim.polls {
            let state: BatchShardState = serde_json::from_str(&poll.state_json).map_err(|e| {
                CoordinatorError::Internal(format!(
                    "batch state of shard {} cannot be read: {e}",
                    poll.shard_id
                ))
            })?;
            polls.push(BatchPoll {
                shard_id: poll.shard_id,
                job_id: poll.job_id,
                poll_seq: poll.poll_seq,
                lease_expires_at: poll.poll_expires_at.to_rfc3339(),
                heartbeat_interval_secs: self.config().heartbeat_interval_secs,
                job_state: poll.job_state,
                model: self.model_of(poll.job_id).await?,
                state,
            });
        }
        self.counters().claims.inc();
        let next_due_in_ms = claim
            .next_due_at
            .map(|t| u64::try_from((t - now).num_milliseconds().max(0)).unwrap_or(0));
        Ok(BatchClaimResponse {
            polls,
            next_due_in_ms,
        })
    }

    /// Renews a poll lease; `None` when fenced.
    pub async fn batch_heartbeat(
        &self,
        req: &BatchHeartbeatRequest,
    ) -> Result<Option<BatchHeartbeatResponse>, CoordinatorError> {
        let fence = PollFence {
            shard_id: req.shard_id,
            poll_seq: req.poll_seq,
            worker_id: req.worker_id.clone(),
        };
        let state = self
            .store()
            .renew_poll(&fence, self.poll_lease(), Utc::now())
            .await?;
        Ok(state.map(|job_state| BatchHeartbeatResponse {
            keep_going: true,
            job_state: Some(job_state),
        }))
    }

    /// Records a poll pass; false when fenced.
    pub async fn batch_update(&self, req: &BatchUpdateRequest) -> Result<bool, CoordinatorError> {
        check_partial(&req.partial)?;
        if !self
            .batch_keys_belong(req.shard_id, &req.partial, &[])
            .await?
        {
            return Ok(false);
        }
        let fence = PollFence {
            shard_id: req.shard_id,
            poll_seq: req.poll_seq,
            worker_id: req.worker_id.clone(),
        };
        let now = Utc::now();
        let update = BatchUpdate {
            state_json: encode(&req.state)?,
            enqueued_tokens: req.state.enqueued_tokens(),
            keep_lease: req.keep_lease,
            next_poll_at: after(now, req.next_poll_in_ms),
            partial: partial(&req.partial),
        };
        Ok(self
            .store()
            .record_poll(&fence, &update, self.poll_lease(), now)
            .await?)
    }

    /// Ends a submitted shard; `None` when fenced.
    pub async fn batch_finish(
        &self,
        req: &BatchFinishRequest,
    ) -> Result<Option<BatchFinishResponse>, CoordinatorError> {
        check_partial(&req.partial)?;
        let failed = match &req.outcome {
            BatchOutcome::Completed { failed } => &failed[..],
            _ => &[][..],
        };
        if !self
            .batch_keys_belong(req.shard_id, &req.partial, failed)
            .await?
        {
            return Ok(None);
        }
        let fence = PollFence {
            shard_id: req.shard_id,
            poll_seq: req.poll_seq,
            worker_id: req.worker_id.clone(),
        };
        let end = match &req.outcome {
            BatchOutcome::Completed { failed } => BatchEnd::Completed {
                failed: failed.clone(),
            },
            BatchOutcome::Failed { error } => BatchEnd::Failed {
                error: error.clone(),
            },
            BatchOutcome::Cancelled => BatchEnd::Cancelled,
        };
        let state = self
            .store()
            .finish(&fence, &end, partial(&req.partial).as_ref(), Utc::now())
            .await?;
        if let Some(state) = state {
            let counters = self.counters();
            match &end {
                BatchEnd::Completed { failed } => {
                    counters.completions.inc();
                    tracing::info!(shard_id = %req.shard_id, failed = failed.len(), "submitted shard completed");
                }
                BatchEnd::Failed { error } => {
                    counters.shard_failures.inc();
                    tracing::warn!(shard_id = %req.shard_id, %error, "submitted shard failed");
                }
                BatchEnd::Cancelled => {
                    tracing::info!(shard_id = %req.shard_id, "submitted shard cancelled");
                }
            }
            return Ok(Some(BatchFinishResponse {
                accepted: true,
                state: Some(state),
            }));
        }
        Ok(None)
    }

    /// The cost of a job's recorded tokens under its spec's price table
    /// (beside the synchronous price); `None` without a price table.
    pub async fn job_cost(
        &self,
        status: &JobStatus,
    ) -> Result<Option<CostSummary>, CoordinatorError> {
        let model = self.model_of(status.id).await?;
        Ok(job_cost(&model, status.counts.usage))
    }

    /// `status` with its cost filled in (left out when the spec cannot be
    /// read: a status never fails for want of a price).
    pub(crate) async fn priced(&self, mut status: JobStatus) -> JobStatus {
        match self.job_cost(&status).await {
            Ok(cost) => status.cost = cost,
            Err(e) => tracing::debug!(job_id = %status.id, error = %e, "no cost for the job"),
        }
        status
    }
}
