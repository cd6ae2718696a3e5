//! The leader row: which coordinator replica runs the background duties.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

use super::StoreError;

/// Name of the leader row that guards the coordinator's background duties
/// (planning and reaping).
pub const LEADER_DUTIES: &str = "coordinator";

/// The leader rows. Every method is atomic.
#[async_trait]
pub trait LeadershipStore: Send + Sync {
    /// Takes or renews the [`LEADER_DUTIES`] row for `holder` until
    /// `now + ttl`. True when `holder` leads: it already held the row, or the
    /// row was free or expired. Several coordinator replicas call this every
    /// tick; exactly one gets true while it keeps renewing.
    async fn try_acquire_leadership(
        &self,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives the leader row up if `holder` has it (graceful shutdown), so
    /// another replica takes over at its next tick instead of after the TTL.
    async fn release_leadership(&self, holder: &str) -> Result<(), StoreError>;
}
