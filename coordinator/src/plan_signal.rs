//! What the planner loop waits on: a wake-up when a job is submitted (or
//! this replica becomes leader), and a gate so one planning pass runs at a
//! time in this process.

use tokio::sync::{Mutex, MutexGuard, Notify};

#[derive(Debug, Default)]
pub(crate) struct PlanSignal {
    wakeup: Notify,
    /// Two passes over the same job would delete each other's shards.
    one_pass: Mutex<()>,
}

impl PlanSignal {
    /// Wakes the planner loop (a wake-up while it plans is kept for later).
    pub(crate) fn wake(&self) {
        self.wakeup.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wakeup.notified().await
    }

    /// Held for the whole of one planning pass.
    pub(crate) async fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.one_pass.lock().await
    }
}
