//! The one heartbeat loop: renews a lease (a shard's run lease, or a
//! submitted shard's poll lease) every interval until stopped, and marks it
//! lost, cancelling the work, when the coordinator says it is no longer ours.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::ClientError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A running heartbeat loop. Stops when [`Heartbeat::stop`] is called or
/// the handle is dropped.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    lost: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Calls `beat` every `every` until `stop` is cancelled. `beat` answers
    /// whether the lease is still ours; a refusal (`Ok(false)`, or a 409 or
    /// 404) marks the lease lost and cancels `stop`. Other errors are
    /// logged: the lease may still be ours, and the next beat (or the
    /// fencing of the final call) decides.
    pub(crate) fn start<F, Fut>(
        every: Duration,
        stop: CancellationToken,
        what: &'static str,
        mut beat: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<bool, ClientError>> + Send,
    {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&lost);
        let task = tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    let keep_going = match beat().await {
                        Ok(keep_going) => keep_going,
                        Err(ClientError::Fenced { .. }) | Err(ClientError::NotFound { .. }) => {
                            false
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "{what} heartbeat failed");
                            true
                        }
                    };
                    if !keep_going {
                        flag.store(true, Ordering::Relaxed);
                        stop.cancel();
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        Heartbeat { lost, task }
    }

    /// Whether the coordinator refused a beat: the lease expired and went to
    /// another attempt, or the job was cancelled.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops beating (idempotent).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
