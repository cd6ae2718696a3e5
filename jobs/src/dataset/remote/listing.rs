//! The objects an `s3://` dataset location names, as the local folder and
//! glob rules have it: a prefix ending in `/` is a folder (its data
//! objects directly under it, hidden and metadata files left out); a key
//! with glob characters is its matches part by part (`data/test-*.parquet`,
//! `shards/*/test.csv`); any other key is one object, but for a key whose
//! name says no format (and no `format` is set), which is a folder when
//! objects lie under `KEY/`. Listing pages through the store and keeps
//! only the matches, so memory follows the dataset's files, not the
//! bucket's.

use std::path::Path;

use super::super::error::DatasetError;
use super::super::glob;
use super::super::policy::ReadPolicy;
use super::super::source::{is_hidden, Source, MAX_DATASET_FILES, METADATA_FILES};
use super::open::{source_of, store_error};
use super::url::S3Url;
use crate::spec::DatasetFormat;

/// Most objects a glob's listing looks at, matching or not: a glob over a
/// bucket of millions of keys is refused rather than listed for minutes.
const MAX_LISTED: u64 = 1_000_000;

/// The objects `path` (an `s3://` location) names, checked against the
/// roots of `policy`.
pub(in crate::dataset) fn list(
    path: &Path,
    format: Option<DatasetFormat>,
    policy: &ReadPolicy,
) -> Result<Vec<Source>, DatasetError> {
    let url = S3Url::parse(path)?;
    if url.is_folder() {
        return list_folder(path, &url, &url.key, format, policy);
    }
    if glob::is_pattern(&url.key) {
        return list_glob(path, &url, policy);
    }
    let one = vec![Source {
        path: path.to_path_buf(),
        label: None,
    }];
    if format.is_some() || DatasetFormat::from_path(path).is_some() {
        return Ok(one);
    }
    // `s3://bucket/data`: a folder when objects lie under `data/`. The
    // folder is checked against the roots before anything is listed.
    let folder = format!("{}/", url.key);
    if policy.roots.check(&url.object_path(&folder)).is_err() {
        return Ok(one);
    }
    let mut any = false;
    source_of(path, policy)?
        .list(&url.bucket, &folder, true, &mut |_| {
            any = true;
            false
        })
        .map_err(|e| store_error(path, e))?;
    if any {
        return list_folder(path, &url, &folder, format, policy);
    }
    Ok(one)
}

fn too_many(path: &Path) -> DatasetError {
    DatasetError::TooManyFiles {
        path: path.to_path_buf(),
        limit: MAX_DATASET_FILES,
    }
}

fn list_folder(
    path: &Path,
    url: &S3Url,
    prefix: &str,
    format: Option<DatasetFormat>,
    policy: &ReadPolicy,
) -> Result<Vec<Source>, DatasetError> {
    let mut found = Vec::new();
    let mut too_many_files = false;
    source_of(path, policy)?
        .list(&url.bucket, prefix, true, &mut |object| {
            let Some(name) = object.key.strip_prefix(prefix) else {
                return true;
            };
            let object_path = url.object_path(&object.key);
            let its_format = DatasetFormat::from_path(&object_path);
            // An empty name is the folder's own marker object.
            if name.is_empty()
                || name.contains('/')
                || is_hidden(name)
                || METADATA_FILES.contains(&name)
                || its_format.is_none()
                || format.is_some_and(|f| Some(f) != its_format)
            {
                return true;
            }
            if found.len() >= MAX_DATASET_FILES {
                too_many_files = true;
                return false;
            }
            found.push(Source {
                path: object_path,
                label: Some(name.to_string()),
            });
            true
        })
        .map_err(|e| store_error(path, e))?;
    if too_many_files {
        return Err(too_many(path));
    }
    if found.is_empty() {
        return Err(DatasetError::NoFiles {
            path: path.to_path_buf(),
            what: match format {
                Some(f) => format!(
                    "no .{} object directly under this prefix (hidden and metadata files are \
                     left out)",
                    f.name()
                ),
                None => format!(
                    "no data object directly under this prefix (hidden and metadata files are \
                     left out; known formats: {})",
                    DatasetFormat::known()
                ),
            },
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The glob's matches: every key under the glob's fixed folders whose
/// parts match the pattern's parts one for one.
fn list_glob(path: &Path, url: &S3Url, policy: &ReadPolicy) -> Result<Vec<Source>, DatasetError> {
    let parts: Vec<&str> = url.key.split('/').collect();
    let fixed_len = parts
        .iter()
        .position(|p| glob::is_pattern(p))
        .unwrap_or(parts.len());
    let base: String = parts[..fixed_len].iter().map(|p| format!("{p}/")).collect();
    let pattern = &parts[fixed_len..];
    policy.roots.check(&url.object_path(&base))?;
    // S3 prefixes are text, not folders: the first wildcard part's literal
    // start narrows the listing too (`test-` of `test-*.parquet`).
    let first = pattern[0];
    let literal = &first[..first.find(['*', '?', '[']).unwrap_or(first.len())];
    let prefix = format!("{base}{literal}");
    let mut found = Vec::new();
    let mut listed = 0u64;
    let mut stopped: Option<DatasetError> = None;
    source_of(path, policy)?
        .list(&url.bucket, &prefix, pattern.len() == 1, &mut |object| {
            listed += 1;
            if listed > MAX_LISTED {
                stopped = Some(DatasetError::NoFiles {
                    path: path.to_path_buf(),
                    what: format!(
                        "more than {MAX_LISTED} objects lie under s3://{}/{prefix}; \
                         narrow the glob's fixed part",
                        url.bucket
                    ),
                });
                return false;
            }
            let Some(rest) = object.key.strip_prefix(&base) else {
                return true;
            };
            let names: Vec<&str> = rest.split('/').collect();
            let matched = names.len() == pattern.len()
                && names.iter().zip(pattern).all(|(name, part)| {
                    let hidden_ok = !is_hidden(name) || part.starts_with('.');
                    !name.is_empty() && hidden_ok && glob::matches(part, name)
                });
            if !matched {
                return true;
            }
            if found.len() >= MAX_DATASET_FILES {
                stopped = Some(too_many(path));
                return false;
            }
            found.push(Source {
                path: url.object_path(&object.key),
                label: Some(rest.to_string()),
            });
            true
        })
        .map_err(|e| store_error(path, e))?;
    if let Some(error) = stopped {
        return Err(error);
    }
    if found.is_empty() {
        return Err(DatasetError::NoFiles {
            path: path.to_path_buf(),
            what: "no object matches this glob".to_string(),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}
