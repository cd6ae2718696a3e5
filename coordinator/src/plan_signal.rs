//! What the planner loop waits on: a wake-up when a job is submitted (or
//! this replica becomes leader), and a gate so one planning pass runs at a
//! time in this process.

use tokio::sync::{Mutex, MutexGuard, Notify};
use uuid::Uuid;

#[derive(Debug, Default)]
pub(crate) struct PlanSignal {
    wakeup: Notify,
    /// Two passes over the same job would delete each other's shards.
    one_pass: Mutex<()>,
    /// The job whose counted planning pass is under way: a pass stopped by
    /// a shutdown gives its count back.
    current: std::sync::Mutex<Option<Uuid>>,
}

impl PlanSignal {
    /// Wakes the planner loop (a wake-up while it plans is kept for later).
    pub(crate) fn wake(&self) {
        self.wakeup.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wakeup.notified().await
    }

    /// Records the job a counted pass is planning (`None`: the pass ended).
    pub(crate) fn set_current(&self, job: Option<Uuid>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = job;
    }

    /// The job of a pass that was stopped before it ended, if any.
    pub(crate) fn take_current(&self) -> Option<Uuid> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Held for the whole of one planning pass.
    pub(crate) async fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.one_pass.lock().await
    }
}
