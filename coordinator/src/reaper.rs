//! The reaper, a leader-only duty: expired leases go back to the pool
//! (spending the attempt) or die, and segments their workers wrote before
//! dying are indexed; after a crash of the embedded process, every lease it
//! held is returned.

use chrono::Utc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::coordinator::Coordinator;
use crate::error::CoordinatorError;
use crate::index::IndexStats;
use crate::leader::leader_ttl;
use crate::lease::RETRY_BACKOFF;
use crate::store::{ExpiredLease, ReapOutcome};

/// What [`Coordinator::recover_after_crash`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Running leases of the previous process made available again.
    pub leases_returned: u64,
    /// Segments written before the crash and indexed now.
    pub index: IndexStats,
}

impl Coordinator {
    /// One tick of the leader-only duties: takes or renews the leader row,
    /// and while this replica leads, reaps expired leases and fires the due
    /// schedules. Returns whether it leads.
    pub async fn leader_tick(&self) -> bool {
        let ttl = leader_ttl(self.config().reaper_interval);
        let (leads, was) = self.leadership().renew(self.store().as_ref(), ttl).await;
        if leads && !was {
            // Jobs submitted to other replicas wait for a planner.
            self.plan_signal().wake();
        }
        if leads {
            if let Err(e) = self.reap_expired().await {
                tracing::error!(error = %e, "reaper pass failed");
            }
            if let Err(e) = self.fire_due_schedules(Utc::now()).await {
                tracing::error!(error = %e, "schedule pass failed");
            }
        }
        leads
    }

    /// Background loop of the leader-only duties, one [`leader_tick`] per
    /// `reaper_interval` until `stop`; then gives the leader row up so that
    /// another replica takes over at once.
    ///
    /// [`leader_tick`]: Coordinator::leader_tick
    pub async fn run_leader_duties(&self, stop: CancellationToken) {
        let period = self.config().reaper_interval.max(Duration::from_millis(50));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {
                    self.leader_tick().await;
                }
            }
        }
        self.leadership().step_down(self.store().as_ref()).await;
    }

    /// One reaper pass: expired leases go back to `available` (spending the
    /// attempt) or die.
    pub async fn reap_expired(&self) -> Result<ReapOutcome, CoordinatorError> {
        let outcome = self
            .store()
            .reap_expired(Utc::now(), &RETRY_BACKOFF)
            .await?;
        if outcome.jobs_completed > 0 {
            tracing::info!(
                jobs = outcome.jobs_completed,
                "finished jobs left running were completed"
            );
        }
        for lease in &outcome.expired {
            self.index_expired(lease).await;
        }
        let total = outcome.returned + outcome.dead + outcome.cancelled;
        if total > 0 {
            self.counters().leases_reaped.inc_by(total);
            tracing::warn!(
                returned = outcome.returned,
                dead = outcome.dead,
                cancelled = outcome.cancelled,
                "expired leases reaped"
            );
        }
        Ok(outcome)
    }

    /// After the reaper took a lease back: index every segment its worker
    /// wrote before it died (partial segments whose flush call never got
    /// through, or the final one before its completion did), so the next
    /// attempt skips those requests.
    async fn index_expired(&self, lease: &ExpiredLease) {
        let objects = self.objects();
        let paths = match cache::attempt_segments(
            objects.as_ref(),
            lease.job_id,
            lease.shard_id,
            lease.attempt,
        )
        .await
        {
            Ok(paths) => paths,
            Err(e) => {
                tracing::warn!(shard_id = %lease.shard_id, attempt = lease.attempt, error = %e,
                    "cannot list the segments of an expired lease");
                return;
            }
        };
        for path in paths {
            let keys = match cache::read_segment_keys(objects.as_ref(), &path).await {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e,
                        "cannot read a segment of an expired lease");
                    continue;
                }
            };
            self.index_refused(lease.job_id, lease.shard_id, lease.attempt, &path, &keys)
                .await;
        }
    }

    /// For the embedded single-process mode after a restart: no worker of the
    /// previous process survives, so every running lease is returned without
    /// spending an attempt, and segments written just before the crash are
    /// indexed so that their requests are not sent again.
    pub async fn recover_after_crash(&self) -> Result<RecoveryStats, CoordinatorError> {
        let leases_returned = self.store().recover_orphaned(Utc::now()).await?;
        // Poll leases of submitted Batch API shards died with the process too.
        self.store().recover_polls(Utc::now()).await?;
        if leases_returned > 0 {
            tracing::info!(leases_returned, "leases of the previous process returned");
        }
        let index = self.index_new_segments().await?;
        Ok(RecoveryStats {
            leases_returned,
            index,
        })
    }
}
