//! Conformance of [`LeadershipStore`](crate::store::LeadershipStore).

use std::time::Duration;

use super::{at, t0};
use crate::store::Store;

pub async fn leadership_is_exclusive_until_it_expires(store: &dyn Store) {
    let ttl = Duration::from_secs(10);
    assert!(store.try_acquire_leadership("a", ttl, t0()).await.unwrap());
    assert!(!store.try_acquire_leadership("b", ttl, at(1)).await.unwrap());
    // Renewing pushes the expiry out.
    assert!(store.try_acquire_leadership("a", ttl, at(8)).await.unwrap());
    assert!(!store
        .try_acquire_leadership("b", ttl, at(12))
        .await
        .unwrap());
    // A stopped leader is replaced once its row expires.
    assert!(store
        .try_acquire_leadership("b", ttl, at(18))
        .await
        .unwrap());
    assert!(!store
        .try_acquire_leadership("a", ttl, at(19))
        .await
        .unwrap());
    // Only the holder can give it up; then anyone takes it at once.
    store.release_leadership("a").await.unwrap();
    assert!(!store
        .try_acquire_leadership("a", ttl, at(20))
        .await
        .unwrap());
    store.release_leadership("b").await.unwrap();
    assert!(store
        .try_acquire_leadership("a", ttl, at(21))
        .await
        .unwrap());
    // A restarted single process clears the row of its previous life.
    store.recover_orphaned(at(22)).await.unwrap();
    assert!(store
        .try_acquire_leadership("c", ttl, at(22))
        .await
        .unwrap());
}
