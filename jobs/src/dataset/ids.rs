//! Refusing a dataset's duplicate document ids while it streams, in bounded
//! memory: a set of 64-bit hashes of the ids seen so far and, when a hash
//! comes round again, a re-read of the file for the line that first held
//! that id. (Documents of a dataset of several files have ids that name
//! their file, so a duplicate is always within one file.)
//!
//! What it costs: 8 bytes per document, 10 to 21 with the hash table's
//! slack (buckets of 8 bytes and a control byte, at most 7/8 full, doubling
//! as they grow), so about 150 MB at the default cap of 10 million documents
//! (`--max-docs-per-job`): half what the planner already holds for the same
//! job's request keys (16 bytes each). Keeping the ids themselves would grow
//! with their length; a 64-bit hash does not. A hit costs one re-read of the
//! file up to the current line, and only a true duplicate (which ends the
//! read) or a collision of two hashes causes one: about one chance in
//! 370,000 for a whole 10-million-document dataset.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::path::Path;

use super::error::DatasetError;
use super::policy::ReadPolicy;
use super::row::RowFields;
use super::rows::Rows;
use crate::spec::DatasetFormat;

/// The ids of the documents read so far, as 64-bit hashes.
pub(super) struct SeenIds {
    /// Keyed at random for each reader: a job's author cannot pick ids whose
    /// hashes collide and so make every row cost a re-read of the file.
    hasher: RandomState,
    seen: HashSet<u64>,
}

impl SeenIds {
    pub(super) fn new() -> Self {
        SeenIds {
            hasher: RandomState::new(),
            seen: HashSet::new(),
        }
    }

    /// Records `id`; false when an id with the same hash came before (most
    /// likely the same id: [`first_line_with_id`] says for certain).
    pub(super) fn insert(&mut self, id: &str) -> bool {
        self.seen.insert(self.hasher.hash_one(id))
    }
}

/// The line of the first document among the first `before` rows of `path`
/// (read as `format`) whose id is `id`, read again under `policy`; `None` when
/// there is none (the two hashes collided, or the file changed while it was
/// read).
pub(super) fn first_line_with_id(
    path: &Path,
    format: Option<DatasetFormat>,
    policy: &ReadPolicy,
    fields: &RowFields,
    id: &str,
    before: u64,
) -> Result<Option<u64>, DatasetError> {
    let mut rows = Rows::open(path, format, policy, 0)?;
    // Rows, not lines: a JSON array's elements may share one line.
    let mut read = 0u64;
    while read < before {
        let Some(row) = rows.next_row() else { break };
        let row = row?;
        read += 1;
        // A bad row was skipped, not a document: its id does not count.
        if let Ok(row_fields) = row.fields {
            if let Ok(parsed) = fields.take(row_fields) {
                if parsed.id.as_deref() == Some(id) {
                    return Ok(Some(row.line));
                }
            }
        }
    }
    Ok(None)
}
