//! The request keys of each shard, remembered from its claim so that a
//! completion can be checked without reading the shard back, and read from
//! the store when this replica did not hand the shard out.

use jobs::RequestKey;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

use crate::error::CoordinatorError;
use crate::store::Store;

/// Shards whose request keys are remembered. Past this the memory is
/// dropped and completions read the shard from the store.
const MAX_REMEMBERED_SHARDS: usize = 20_000;

/// A shard's job and the keys of its requests.
pub(crate) type ShardKeys = Arc<(Uuid, HashSet<RequestKey>)>;

/// Only the keys of a shard's stored requests.
#[derive(serde::Deserialize)]
struct KeyOnly {
    key: RequestKey,
}

/// Request keys of shards handed out by this replica.
#[derive(Debug, Default)]
pub(crate) struct ShardKeyMemory {
    by_shard: Mutex<HashMap<Uuid, ShardKeys>>,
}

impl ShardKeyMemory {
    pub(crate) fn remember(
        &self,
        shard_id: Uuid,
        job_id: Uuid,
        keys: impl Iterator<Item = RequestKey>,
    ) {
        let entry: ShardKeys = Arc::new((job_id, keys.collect()));
        if let Ok(mut map) = self.by_shard.lock() {
            if map.len() >= MAX_REMEMBERED_SHARDS && !map.contains_key(&shard_id) {
                // Shards whose workers died are never forgotten otherwise;
                // starting over only costs a read per completion.
                map.clear();
            }
            map.insert(shard_id, entry);
        }
    }

    pub(crate) fn forget(&self, shard_id: Uuid) {
        if let Ok(mut map) = self.by_shard.lock() {
            map.remove(&shard_id);
        }
    }

    fn get(&self, shard_id: Uuid) -> Option<ShardKeys> {
        self.by_shard.lock().ok()?.get(&shard_id).map(Arc::clone)
    }
}

/// Refuses a lease call that names a key outside its shard.
pub(crate) fn check_keys<'a>(
    shard_id: Uuid,
    known: &HashSet<RequestKey>,
    what: &str,
    mut keys: impl Iterator<Item = &'a RequestKey>,
) -> Result<(), CoordinatorError> {
    match keys.find(|k| !known.contains(*k)) {
        None => Ok(()),
        Some(key) => Err(CoordinatorError::BadRequest(format!(
            "{what} key {key} is not a request of shard {shard_id}"
        ))),
    }
}

impl ShardKeyMemory {
    /// The job and request keys of a shard: remembered from its claim, else
    /// read from the store. `None` when the shard does not exist.
    pub(crate) async fn lookup(
        &self,
        store: &dyn Store,
        shard_id: Uuid,
    ) -> Result<Option<ShardKeys>, CoordinatorError> {
        if let Some(known) = self.get(shard_id) {
            return Ok(Some(known));
        }
        let Some((job_id, json)) = store.shard_requests(shard_id).await? else {
            return Ok(None);
        };
        let requests: Vec<KeyOnly> = serde_json::from_str(&json).map_err(|e| {
            CoordinatorError::Internal(format!("shard {shard_id}: requests cannot be read: {e}"))
        })?;
        let known: ShardKeys = Arc::new((job_id, requests.into_iter().map(|r| r.key).collect()));
        Ok(Some(known))
    }
}
