//! One file of a dataset as listing a folder or a glob finds it (locally
//! or in an object store), and the names such a listing leaves out.

use std::path::PathBuf;

/// Most files one dataset may name.
pub(super) const MAX_DATASET_FILES: usize = 100_000;

/// One file of a dataset.
#[derive(Clone, Debug)]
pub(super) struct Source {
    pub path: PathBuf,
    /// Its name relative to the folder or the glob's fixed part: the first
    /// part of its documents' ids. `None` for a dataset of one file named
    /// alone, whose ids are the rows' own.
    pub label: Option<String>,
}

/// Hidden files (`.name`) are not data, unless a glob part asks for them.
pub(super) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Files `datasets` writes beside the data (`save_to_disk`, the Hub's
/// repositories): JSON, but about the dataset, not rows of it. A folder
/// read whole skips them; a glob or a single path still reads them.
pub(super) const METADATA_FILES: [&str; 4] = [
    "dataset_info.json",
    "dataset_infos.json",
    "dataset_dict.json",
    "state.json",
];
