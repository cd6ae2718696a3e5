//! Ending a submitted shard: completed (with its failed requests), failed,
//! or cancelled.

use jobs::protocol::{FailedRequest, PartialOutputs};
use jobs::{protocol::BatchFinishRequest, protocol::BatchOutcome, provider_batch::ErrorGroup};

use client::LeaseOutcome;

use super::pass::{Pass, Stop};

impl Pass<'_> {
    pub(super) async fn failures(
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

    pub(super) async fn finish_completed(
        &mut self,
        partial: Option<PartialOutputs>,
    ) -> Result<(), Stop> {
        let mut failed = self.failures(&self.state.failed.clone(), "").await?;
        let leftover = self.state.retry.clone();
        let note = format!("still failing after {} retry round(s): ", self.state.round);
        failed.extend(self.failures(&leftover, &note).await?);
        self.stats.requests_failed += failed.len() as u64;
        let outcome = BatchOutcome::Completed { failed };
        self.finish(outcome, partial).await
    }

    pub(super) async fn finish_stopped(&mut self) -> Result<(), Stop> {
        let outcome = match &self.state.fatal {
            Some(error) if !self.stopping => BatchOutcome::Failed {
                error: error.clone(),
            },
            _ => BatchOutcome::Cancelled,
        };
        self.finish(outcome, None).await
    }

    pub(super) async fn finish(
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
}
