//! `[sharding]`: at least one request per shard and one attempt.

use super::super::error::SpecError;
use super::super::job::JobSpec;

impl JobSpec {
    pub(super) fn validate_sharding(&self) -> Result<(), SpecError> {
        if self.sharding.shard_size == 0 {
            return Err(SpecError::invalid(
                "sharding.shard_size",
                "must be at least 1",
            ));
        }
        if self.sharding.max_attempts == 0 {
            return Err(SpecError::invalid(
                "sharding.max_attempts",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
