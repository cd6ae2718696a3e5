//! `[sharding]`: how a job's requests are cut into shards.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardingSpec {
    /// Requests per shard.
    #[serde(default = "default_shard_size")]
    pub shard_size: u32,
    /// Attempts per shard before it is marked dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for ShardingSpec {
    fn default() -> Self {
        ShardingSpec {
            shard_size: default_shard_size(),
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_shard_size() -> u32 {
    100
}
fn default_max_attempts() -> u32 {
    3
}
