//! A reader's whole policy: where it may read and how much.

use super::limits::ReadLimits;
use super::roots::DatasetRoots;

/// Where a job's data files may be read from and how much of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPolicy {
    pub roots: DatasetRoots,
    pub limits: ReadLimits,
}

impl ReadPolicy {
    /// Any readable file, within the default limits: for a user reading
    /// their own files on their own machine (`rescore` of a local spec,
    /// tests).
    pub fn unrestricted() -> Self {
        ReadPolicy {
            roots: DatasetRoots::Any,
            limits: ReadLimits::default(),
        }
    }

    /// Only files under `roots`, within `limits`.
    pub fn new(roots: DatasetRoots, limits: ReadLimits) -> Self {
        ReadPolicy { roots, limits }
    }
}
