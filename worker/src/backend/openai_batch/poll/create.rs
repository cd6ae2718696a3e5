//! Creating batches: the parts of the current round that wait for room
//! under the enqueued-token cap, and new retry rounds.

use std::collections::HashMap;

use jobs::{protocol::BatchHolder, protocol::BatchReserveRequest, provider_batch::add_to_group};

use crate::backend::openai_batch::api::BatchObject;
use crate::backend::openai_batch::input::{build_files, RoundId};
use crate::backend::openai_batch::now_unix_ms;
use crate::backend::openai_batch::submit::create_part;
use client::LeaseOutcome;

use super::pass::{Pass, Stop};

impl Pass<'_> {
    /// Creates the batches of the current round that wait for one, as many
    /// as the enqueued-token cap allows.
    pub(super) async fn create_pending(&mut self) -> Result<(), Stop> {
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

    /// Starts a retry round with the requests that failed or went missing.
    pub(super) async fn next_round(&mut self) -> Result<(), Stop> {
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
}
