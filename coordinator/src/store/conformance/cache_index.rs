//! Conformance of [`CacheIndexStore`](crate::store::CacheIndexStore).

use jobs::RequestKey;

use super::t0;
use crate::store::{SegmentEntry, Store};

pub async fn cache_index_first_writer_wins(store: &dyn Store) {
    let k = |c: char| RequestKey(c.to_string().repeat(64));
    let a = SegmentEntry {
        path: "segments/x/a".into(),
        job_id: None,
        shard_id: None,
        attempt: None,
        keys: vec![k('1'), k('2')],
    };
    let b = SegmentEntry {
        path: "segments/x/b".into(),
        keys: vec![k('2'), k('3')],
        ..a.clone()
    };
    assert_eq!(store.index_segment(&a, t0()).await.unwrap(), 2);
    assert_eq!(store.index_segment(&b, t0()).await.unwrap(), 1);
    // Re-indexing the same segment is harmless.
    assert_eq!(store.index_segment(&a, t0()).await.unwrap(), 0);
    let found = store
        .lookup_keys(&[k('1'), k('2'), k('3'), k('4')])
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[&k('2')], "segments/x/a");
    assert_eq!(found[&k('3')], "segments/x/b");
    assert_eq!(store.indexed_segments().await.unwrap().len(), 2);
    assert_eq!(store.metrics().await.unwrap().cache_index_keys, 3);
    store.clear_cache_index().await.unwrap();
    assert!(store.lookup_keys(&[k('1')]).await.unwrap().is_empty());
    assert!(store.indexed_segments().await.unwrap().is_empty());
}
