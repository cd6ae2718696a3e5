//! Datasets in an object store: `s3://BUCKET/KEY` for one object, a
//! folder-like prefix or a glob, read in every format local files are, and
//! named by their `s3://` location in ids and errors. The store itself is
//! an [`ObjectSource`] the process puts in the read policy (`jobs` reaches
//! no network); the dataset roots hold `s3://BUCKET/PREFIX` entries for it.

mod listing;
mod open;
mod source;
mod url;

pub(in crate::dataset) use listing::list;
pub(in crate::dataset) use open::{download, open_object};
pub use source::{ObjectSource, ObjectSourceError, RemoteObject};
pub(crate) use url::is_remote;
#[cfg(test)]
mod tests;
