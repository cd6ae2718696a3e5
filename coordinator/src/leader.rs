//! Leadership among coordinator replicas: one replica at a time holds the
//! leader row in the database and runs the leader-only duties (planning,
//! reaping); the others serve the API and wait to take over.

use chrono::Utc;
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::Store;

/// Shortest leader lease: a leader that stops renewing is replaced after at
/// most this long (or three reaper periods, if longer).
const MIN_LEADER_TTL: Duration = Duration::from_secs(10);

/// This replica's name and whether it led at its last tick.
#[derive(Debug)]
pub(crate) struct Leadership {
    /// This process's name in the leader row: unique per process, so a
    /// restarted replica never mistakes its previous life's row for its own.
    replica_id: String,
    leading: AtomicBool,
}

impl Leadership {
    pub(crate) fn new() -> Self {
        Leadership {
            replica_id: replica_id(),
            leading: AtomicBool::new(false),
        }
    }

    pub(crate) fn replica_id(&self) -> &str {
        &self.replica_id
    }

    pub(crate) fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Takes or renews the leader row for `ttl`. Returns whether this
    /// replica leads now and whether it led before. A store error steps
    /// down: the row may still be ours, but a replica that cannot renew it
    /// must not act as if it were.
    pub(crate) async fn renew(&self, store: &dyn Store, ttl: Duration) -> (bool, bool) {
        let id = &self.replica_id;
        let leads = match store.try_acquire_leadership(id, ttl, Utc::now()).await {
            Ok(leads) => leads,
            Err(e) => {
                tracing::error!(replica = %id, error = %e, "cannot renew the leader row; stepping down");
                false
            }
        };
        let was = self.leading.swap(leads, Ordering::AcqRel);
        if leads && !was {
            tracing::info!(replica = %id, "leading: this replica now plans jobs and reaps leases");
        } else if !leads && was {
            tracing::warn!(replica = %id, "no longer leading; planning and reaping stop here");
        }
        (leads, was)
    }

    /// Gives the leader row up, if held, so another replica takes over at
    /// once rather than after the row expires.
    pub(crate) async fn step_down(&self, store: &dyn Store) {
        if self.leading.swap(false, Ordering::AcqRel) {
            if let Err(e) = store.release_leadership(&self.replica_id).await {
                tracing::warn!(error = %e, "could not give the leader row up; it expires on its own");
            }
        }
    }
}

/// The leader row's lifetime for a reaper period: a leader that stops
/// renewing is replaced after at most this long.
pub(crate) fn leader_ttl(reaper_interval: Duration) -> Duration {
    (reaper_interval * 3).max(MIN_LEADER_TTL)
}

/// `host-pid-random`: readable in the leader row, unique per process.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coordinator".to_string());
    let nonce: u32 = rand::rng().random();
    format!("{host}-{}-{nonce:08x}", std::process::id())
}
