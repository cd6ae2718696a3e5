//! Who asks for work and what they serve: the filter of a shard claim and of
//! a provider-batch poll claim, shared by both databases.

use jobs::spec::BackendKind;
use std::time::Duration;

use super::model_pattern::ModelPattern;

/// A claim's asker: a worker, the backends it offers, the models it serves
/// (empty: any), how many shards it takes and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Claimant<'a> {
    pub worker_id: &'a str,
    pub backends: &'a [BackendKind],
    pub models: &'a [ModelPattern],
    /// Most shards (or poll leases) handed out by this claim.
    pub max: u32,
    /// Length of each lease handed out.
    pub lease: Duration,
}

impl<'a> Claimant<'a> {
    /// A claimant that serves any model.
    pub fn any_model(
        worker_id: &'a str,
        backends: &'a [BackendKind],
        max: u32,
        lease: Duration,
    ) -> Self {
        Claimant {
            worker_id,
            backends,
            models: &[],
            max,
            lease,
        }
    }

    /// Whether the claim can match nothing: no room, or no backend offered.
    pub fn wants_nothing(&self) -> bool {
        self.max == 0 || self.backends.is_empty()
    }

    /// The offered backends as stored in `jobs.backend`.
    pub fn backend_names(&self) -> Vec<&'static str> {
        self.backends.iter().map(|b| b.as_str()).collect()
    }

    /// The model patterns as SQL `LIKE` patterns (Postgres).
    pub fn like_patterns(&self) -> Vec<String> {
        self.models.iter().map(ModelPattern::like).collect()
    }

    /// The model patterns as `GLOB` patterns (SQLite).
    pub fn glob_patterns(&self) -> Vec<String> {
        self.models.iter().map(ModelPattern::sqlite_glob).collect()
    }
}
