//! The lease protocol: claim (with claim-time cache filtering), heartbeat,
//! flush, complete, fail and release, every call but flush fenced on the
//! attempt number.

use chrono::{DateTime, Utc};
use jobs::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, FailRequest, FailResponse,
    FlushRequest, FlushResponse, HeartbeatRequest, HeartbeatResponse, Lease, ReleaseRequest,
    ReleaseResponse,
};
use jobs::protocol::{FailKind, FailedRequest};
use jobs::redact::scrub;
use jobs::{Backoff, InferenceRequest, RequestKey};
use std::time::Duration;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::shard_keys::{check_keys, ShardKeys};
use crate::store::{Claimant, Completion, LeaseFence, ModelPattern, Partial, SegmentEntry};

/// Most shards one claim hands out, whatever the worker asks for.
const MAX_SHARDS_PER_CLAIM: u32 = 64;
/// Claim rounds when every claimed shard turns out to be cached already.
const MAX_CLAIM_ROUNDS: usize = 8;
/// The retry curve of a failed shard: 1 s, doubling per attempt up to
/// 2 min, with up to half of each delay taken off at random so that many
/// shards failing together do not retry in lockstep. The reaper gives
/// shards whose lease expired the same curve.
pub(crate) const RETRY_BACKOFF: Backoff =
    Backoff::new(Duration::from_secs(1), Duration::from_secs(120), 0.5);

/// The wait before a shard whose attempt number `attempt` failed (1-based)
/// may be claimed again.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    RETRY_BACKOFF.delay(attempt.saturating_sub(1))
}

/// Errors as a worker reported them, with anything shaped like a key
/// scrubbed before they are stored or logged (the worker scrubs the keys it
/// knows; this catches what slipped through, e.g. an older worker).
fn scrubbed(failed: &[FailedRequest]) -> Vec<FailedRequest> {
    failed
        .iter()
        .map(|f| FailedRequest {
            key: f.key.clone(),
            error: scrub(&f.error, &[]).into_owned(),
        })
        .collect()
}

fn chrono_after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn fence(shard_id: uuid::Uuid, attempt: u32, worker_id: &str) -> LeaseFence {
    LeaseFence {
        shard_id,
        attempt,
        worker_id: worker_id.to_string(),
    }
}

impl Coordinator {
    /// The job and request keys of a shard (see [`ShardKeyMemory::lookup`]).
    ///
    /// [`ShardKeyMemory::lookup`]: crate::shard_keys::ShardKeyMemory::lookup
    pub(crate) async fn shard_keys(
        &self,
        shard_id: uuid::Uuid,
    ) -> Result<Option<ShardKeys>, CoordinatorError> {
        self.shard_key_memory()
            .lookup(self.store().as_ref(), shard_id)
            .await
    }

    /// Leases shards to a worker. Requests whose output is already in the
    /// cache index (written by another job, or by an attempt that crashed
    /// after writing its segment) are dropped from the lease; a shard left
    /// with nothing to do is completed on the spot and another is claimed.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, CoordinatorError> {
        let counters = self.counters();
        counters.claims.inc();
        let models = req
            .capabilities
            .models
            .iter()
            .map(|glob| {
                ModelPattern::new(glob)
                    .map_err(|e| CoordinatorError::BadRequest(format!("capabilities.models: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = req.max_shards.clamp(1, MAX_SHARDS_PER_CLAIM) as usize;
        let mut leases = Vec::new();
        for _ in 0..MAX_CLAIM_ROUNDS {
            if leases.len() >= wanted {
                break;
            }
            let now = Utc::now();
            let claimed = self
                .store()
                .claim_matching(
                    &Claimant {
                        worker_id: &req.worker_id,
                        backends: &req.capabilities.backends,
                        models: &models,
                        max: (wanted - leases.len()) as u32,
                        lease: self.config().lease_length(),
                    },
                    now,
                )
                .await?;
            if claimed.is_empty() {
                break;
            }
            for shard in claimed {
                let fence = shard.fence(&req.worker_id);
                let requests: Vec<InferenceRequest> =
                    match serde_json::from_str(&shard.requests_json) {
                        Ok(r) => r,
                        Err(e) => {
                            // Cannot happen unless the row was edited; fail the
                            // shard rather than hand out garbage.
                            let error = format!("shard requests cannot be read: {e}");
                            tracing::error!(shard_id = %shard.shard_id, %error);
                            self.store()
                                .fail(&fence, &error, FailKind::Transient, now, now)
                                .await?;
                            continue;
                        }
                    };
                let keys: Vec<RequestKey> = requests.iter().map(|r| r.key.clone()).collect();
                self.shard_key_memory().remember(
                    shard.shard_id,
                    shard.job_id,
                    keys.iter().cloned(),
                );
                let cached = self.store().lookup_keys(&keys).await?;
                let before = requests.len();
                let remaining: Vec<InferenceRequest> = requests
                    .into_iter()
                    .filter(|r| !cached.contains_key(&r.key))
                    .collect();
                let skipped = (before - remaining.len()) as u64;
                counters.requests_cached_at_claim.inc_by(skipped);
                if remaining.is_empty() {
                    tracing::info!(shard_id = %shard.shard_id, attempt = shard.attempt,
                        "every request of the shard is cached; completing it without a worker");
                    self.store()
                        .complete(&fence, &Completion::default(), Utc::now())
                        .await?;
                    self.shard_key_memory().forget(shard.shard_id);
                    counters.completions.inc();
                    continue;
                }
                let model = self.model_of(shard.job_id).await?;
                tracing::debug!(shard_id = %shard.shard_id, attempt = shard.attempt,
                    worker_id = %req.worker_id, requests = remaining.len(), skipped, "lease granted");
                leases.push(Lease {
                    shard_id: shard.shard_id,
                    job_id: shard.job_id,
                    attempt: shard.attempt,
                    lease_expires_at: shard.lease_expires_at.to_rfc3339(),
                    heartbeat_interval_secs: self.config().heartbeat_interval_secs,
                    model,
                    requests: remaining,
                });
            }
        }
        counters.leases_granted.inc_by(leases.len() as u64);
        Ok(ClaimResponse { leases })
    }

    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        let fence = fence(req.shard_id, req.attempt, &req.worker_id);
        let outcome = self
            .store()
            .heartbeat(&fence, req.done, self.config().lease_length(), Utc::now())
            .await?;
        Ok(HeartbeatResponse {
            keep_going: outcome.keep_going,
            lease_expires_at: outcome.lease_expires_at.map(|t| t.to_rfc3339()),
            cancelled: outcome.cancelled,
        })
    }

    /// Indexes the outputs a running shard has written so far (a partial
    /// segment), so that a worker killed mid-shard loses only what came
    /// after its last flush: the next attempt's claim drops every indexed
    /// request. Not fenced: the outputs of a lost attempt are as good as
    /// any (their keys say what was asked) and were paid for. Usage counts
    /// once: a repeated flush adds no key, and adds no usage. (Indexing and
    /// usage are two store calls: a crash between them loses that flush's
    /// token count, never its outputs.)
    pub async fn flush(&self, req: &FlushRequest) -> Result<FlushResponse, CoordinatorError> {
        let partial = &req.partial;
        if partial.written.is_empty() {
            return Ok(FlushResponse { indexed: 0 });
        }
        let Some(known) = self.shard_keys(req.shard_id).await? else {
            return Err(CoordinatorError::BadRequest(format!(
                "flush names shard {}, which does not exist",
                req.shard_id
            )));
        };
        check_keys(req.shard_id, &known.1, "written", partial.written.iter())?;
        let job_id = known.0;
        // Only this attempt's own partial segment may hold these outputs.
        let own = cache::parse_segment_path(&partial.segment).is_some_and(|n| {
            (n.job_id, n.shard_id, n.attempt) == (job_id, req.shard_id, req.attempt)
                && n.part.is_some()
        });
        if !own {
            return Err(CoordinatorError::BadRequest(format!(
                "flush names {:?}, which is not a partial segment of attempt {} of shard {}",
                partial.segment, req.attempt, req.shard_id
            )));
        }
        let entry = SegmentEntry {
            path: partial.segment.clone(),
            job_id: Some(job_id),
            shard_id: Some(req.shard_id),
            attempt: Some(req.attempt),
            keys: partial.written.clone(),
        };
        let now = Utc::now();
        let indexed = self.store().index_segment(&entry, now).await?;
        if indexed > 0 {
            self.store()
                .add_usage(job_id, req.shard_id, partial.usage, now)
                .await?;
        }
        let counters = self.counters();
        counters.flushes.inc();
        counters.outputs_flushed.inc_by(indexed);
        tracing::debug!(shard_id = %req.shard_id, attempt = req.attempt, indexed,
            segment = %partial.segment, "partial segment indexed");
        Ok(FlushResponse { indexed })
    }

    /// Fenced completion. `accepted: false` means the lease was no longer the
    /// caller's and nothing changed (the HTTP layer answers 409).
    pub async fn complete(
        &self,
        req: &CompleteRequest,
    ) -> Result<CompleteResponse, CoordinatorError> {
        let fence = fence(req.shard_id, req.attempt, &req.worker_id);
        let segment = if req.segment.is_empty() {
            if !req.written.is_empty() {
                return Err(CoordinatorError::BadRequest(
                    "completion lists written keys but names no segment".into(),
                ));
            }
            None
        } else {
            Some(req.segment.clone())
        };
        // A worker reports only requests of its shard: anything else would
        // put foreign outputs in the index or failures on the wrong job.
        let mut job_id = None;
        if !req.written.is_empty() || !req.failed.is_empty() {
            let Some(known) = self.shard_keys(req.shard_id).await? else {
                self.counters().completions_fenced.inc();
                return Ok(CompleteResponse { accepted: false });
            };
            check_keys(req.shard_id, &known.1, "written", req.written.iter())?;
            check_keys(
                req.shard_id,
                &known.1,
                "failed",
                req.failed.iter().map(|f| &f.key),
            )?;
            job_id = Some(known.0);
        }
        let completion = Completion {
            segment,
            written: req.written.clone(),
            failed: scrubbed(&req.failed),
            usage: req.usage,
        };
        let accepted = self
            .store()
            .complete(&fence, &completion, Utc::now())
            .await?;
        if accepted {
            self.counters().completions.inc();
            self.shard_key_memory().forget(req.shard_id);
            tracing::info!(shard_id = %req.shard_id, attempt = req.attempt, worker_id = %req.worker_id,
                written = req.written.len(), failed = req.failed.len(), "shard completed");
        } else {
            self.counters().completions_fenced.inc();
            tracing::warn!(shard_id = %req.shard_id, attempt = req.attempt, worker_id = %req.worker_id,
                "late completion refused (lease no longer held)");
            if let (Some(segment), Some(job_id)) = (&completion.segment, job_id) {
                let added = self
                    .index_refused(job_id, req.shard_id, req.attempt, segment, &req.written)
                    .await;
                // Its tokens were paid for: usage and cost count them, once.
                // A repeat of a completion already accepted (or already
                // counted) adds no key to the index and counts nothing.
                if added == 0 {
                    return Ok(CompleteResponse { accepted });
                }
                if let Err(e) = self
                    .store()
                    .add_usage(job_id, req.shard_id, req.usage, Utc::now())
                    .await
                {
                    tracing::warn!(shard_id = %req.shard_id, error = %e,
                        "cannot count the usage of a refused completion");
                }
            }
        }
        Ok(CompleteResponse { accepted })
    }

    /// Fenced failure of a whole shard attempt; `None` when fenced.
    pub async fn fail(&self, req: &FailRequest) -> Result<Option<FailResponse>, CoordinatorError> {
        let fence = fence(req.shard_id, req.attempt, &req.worker_id);
        let now = Utc::now();
        let retry_at = chrono_after(now, retry_delay(req.attempt));
        let error = scrub(&req.error, &[]);
        let state = self
            .store()
            .fail(&fence, &error, req.kind, retry_at, now)
            .await?;
        if let Some(state) = state {
            self.counters().shard_failures.inc();
            tracing::warn!(shard_id = %req.shard_id, attempt = req.attempt, ?state,
                kind = req.kind.as_str(), error = %error, "shard attempt failed");
        }
        Ok(state.map(|state| FailResponse { state }))
    }

    /// Fenced hand-back of an unfinished shard (worker shutting down).
    pub async fn release(&self, req: &ReleaseRequest) -> Result<ReleaseResponse, CoordinatorError> {
        let fence = fence(req.shard_id, req.attempt, &req.worker_id);
        let partial = req.partial.as_ref().map(|p| Partial {
            segment: p.segment.clone(),
            written: p.written.clone(),
            usage: p.usage,
        });
        let mut job_id = None;
        if let Some(partial) = partial.as_ref().filter(|p| !p.written.is_empty()) {
            if partial.segment.is_empty() {
                return Err(CoordinatorError::BadRequest(
                    "release lists written keys but names no segment".into(),
                ));
            }
            let Some(known) = self.shard_keys(req.shard_id).await? else {
                return Ok(ReleaseResponse { accepted: false });
            };
            check_keys(req.shard_id, &known.1, "written", partial.written.iter())?;
            job_id = Some(known.0);
        }
        let accepted = self
            .store()
            .release(&fence, partial.as_ref(), Utc::now())
            .await?;
        if accepted {
            self.counters().releases.inc();
        } else if let (Some(partial), Some(job_id)) = (&partial, job_id) {
            // A worker that lost its lease (expired, or the job was
            // cancelled) hands back what it paid for: index it, so that no
            // attempt requests it again.
            self.index_refused(
                job_id,
                req.shard_id,
                req.attempt,
                &partial.segment,
                &partial.written,
            )
            .await;
        }
        Ok(ReleaseResponse { accepted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let base = RETRY_BACKOFF.base;
        let d1 = retry_delay(1);
        assert!(d1 >= base / 2 && d1 <= base, "{d1:?}");
        let d4 = retry_delay(4);
        assert!(d4 >= base * 4 && d4 <= base * 8, "{d4:?}");
        assert!(retry_delay(60) <= RETRY_BACKOFF.cap);
    }
}
