//! A reader's whole policy: where it may read, how much, and through which
//! object store `s3://` datasets are read.

use std::fmt;
use std::sync::Arc;

use super::limits::ReadLimits;
use super::remote::ObjectSource;
use super::roots::DatasetRoots;

/// Where a job's data files may be read from and how much of them.
#[derive(Clone)]
pub struct ReadPolicy {
    pub roots: DatasetRoots,
    pub limits: ReadLimits,
    /// How `s3://` datasets are read; `None` refuses them (the roots
    /// decide which buckets and prefixes, this only whether any can be
    /// reached).
    pub objects: Option<Arc<dyn ObjectSource>>,
}

impl ReadPolicy {
    /// Any readable file, within the default limits: for a user reading
    /// their own files on their own machine (`rescore` of a local spec,
    /// tests). No object store: add one with [`ReadPolicy::with_objects`].
    pub fn unrestricted() -> Self {
        ReadPolicy {
            roots: DatasetRoots::Any,
            limits: ReadLimits::default(),
            objects: None,
        }
    }

    /// Only files under `roots`, within `limits`.
    pub fn new(roots: DatasetRoots, limits: ReadLimits) -> Self {
        ReadPolicy {
            roots,
            limits,
            objects: None,
        }
    }

    /// The same policy, reading `s3://` datasets through `objects`.
    pub fn with_objects(mut self, objects: Arc<dyn ObjectSource>) -> Self {
        self.objects = Some(objects);
        self
    }
}

impl fmt::Debug for ReadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPolicy")
            .field("roots", &self.roots)
            .field("limits", &self.limits)
            .field("objects", &self.objects.as_ref().map(|_| "an object store"))
            .finish()
    }
}

/// Equal roots and limits, and the same object store or none on both.
impl PartialEq for ReadPolicy {
    fn eq(&self, other: &Self) -> bool {
        let same_objects = match (&self.objects, &other.objects) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.roots == other.roots && self.limits == other.limits && same_objects
    }
}

impl Eq for ReadPolicy {}
