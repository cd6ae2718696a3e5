//! Reading results: downloads finished batches, and runs retries through
//! the synchronous endpoint, writing each as a segment indexed in its own
//! store step.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use jobs::protocol::PartialOutputs;
use jobs::{protocol::BatchPoll, provider_batch::add_to_group};
use jobs::{InferenceRequest, SegmentRecord, Usage};

use crate::backend::openai_batch::output::{read_results, LineResult};
use crate::backend::openai_batch::{batch_segment_path, fault};
use crate::backend::Backend;

use super::pass::{Pass, Stop};

impl Pass<'_> {
    /// Downloads each finished batch not yet read, writes its outputs as a
    /// segment and indexes them, one batch per store step.
    pub(super) async fn collect_finished(&mut self) -> Result<(), Stop> {
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

    /// Sends the retry requests through the synchronous endpoint and
    /// records their outputs.
    pub(super) async fn retry_synchronously(&mut self) -> Result<(), Stop> {
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
