//! State the batch handlers share with the [`super::FakeBatchApi`] handle.

use std::sync::{Arc, Mutex};

use super::engine::Engine;
use crate::{server, FakeConfig};

/// State shared by the batch handlers and the [`FakeBatchApi`] handle.
pub(crate) struct BatchShared {
    pub sync: Arc<server::Shared>,
    pub engine: Mutex<Engine>,
}

impl BatchShared {
    pub fn sync_config(&self) -> Arc<FakeConfig> {
        self.sync
            .config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Poisoning is ignored: a panicking handler has already failed its test.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
