//! The files a dataset's `path` names: one file; a folder's data files
//! (those whose extension names a format, or the spec's `format`), in name
//! order, hidden files and Hugging Face's metadata files left out; or a
//! glob's matches (`data/test-*.jsonl`, `shards/*/test.csv`), in path order.
//! A folder or glob is judged against the dataset roots before it is
//! listed, and a folder below it that leads outside them is not listed;
//! every file is checked again when it is opened. An `s3://` location is
//! listed by the same rules through the policy's object store (`remote`).

use std::path::{Component, Path, PathBuf};

use super::error::DatasetError;
use super::glob;
use super::policy::ReadPolicy;
use super::remote;
use super::source::{is_hidden, Source, MAX_DATASET_FILES, METADATA_FILES};
use crate::spec::DatasetFormat;

/// The files `path` names, checked against the roots of `policy`.
pub(super) fn list(
    path: &Path,
    format: Option<DatasetFormat>,
    policy: &ReadPolicy,
) -> Result<Vec<Source>, DatasetError> {
    policy.roots.check(path)?;
    if remote::is_remote(path) {
        return remote::list(path, format, policy);
    }
    if path.is_dir() {
        return list_folder(path, format);
    }
    if glob::is_pattern(&path.to_string_lossy()) && !path.exists() {
        return list_glob(path, policy);
    }
    Ok(vec![Source {
        path: path.to_path_buf(),
        label: None,
    }])
}

fn too_many(path: &Path) -> DatasetError {
    DatasetError::TooManyFiles {
        path: path.to_path_buf(),
        limit: MAX_DATASET_FILES,
    }
}

fn list_folder(dir: &Path, format: Option<DatasetFormat>) -> Result<Vec<Source>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatasetError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DatasetError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = entry.path();
        let Some(its_format) = DatasetFormat::from_path(&path) else {
            continue;
        };
        if is_hidden(&name)
            || METADATA_FILES.contains(&name.as_str())
            || format.is_some_and(|f| f != its_format)
            || !path.is_file()
        {
            continue;
        }
        if found.len() >= MAX_DATASET_FILES {
            return Err(too_many(dir));
        }
        found.push(Source {
            path,
            label: Some(name),
        });
    }
    if found.is_empty() {
        return Err(DatasetError::NoFiles {
            path: dir.to_path_buf(),
            what: match format {
                Some(f) => format!(
                    "a folder without a .{} file (hidden and metadata files are left out)",
                    f.name()
                ),
                None => format!(
                    "a folder without a data file (hidden and metadata files are left out; \
                     known formats: {})",
                    DatasetFormat::known()
                ),
            },
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The glob's matches, component by component from its fixed part.
fn list_glob(pattern: &Path, policy: &ReadPolicy) -> Result<Vec<Source>, DatasetError> {
    let parts: Vec<Component> = pattern.components().collect();
    let fixed_len = parts
        .iter()
        .position(|c| glob::is_pattern(&c.as_os_str().to_string_lossy()))
        .unwrap_or(parts.len());
    // `data/*/../x` would list `x` once per folder, and past a wildcard the
    // roots check cannot see where `..` leads: only names there (`.` never
    // reaches here: `components` drops it). Before the wildcard, the fixed
    // part is resolved and checked as a whole.
    if parts[fixed_len..]
        .iter()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(DatasetError::NoFiles {
            path: pattern.to_path_buf(),
            what: "a glob with `..` after its first wildcard; write that part without it"
                .to_string(),
        });
    }
    let base: PathBuf = parts[..fixed_len].iter().collect();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    policy.roots.check(&base)?;
    // (path, label) of each candidate so far.
    let mut candidates: Vec<(PathBuf, String)> = vec![(base.clone(), String::new())];
    for part in &parts[fixed_len..] {
        let part = part.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for (dir, label) in &candidates {
            let join = |name: &str| {
                let label = if label.is_empty() {
                    name.to_string()
                } else {
                    format!("{label}/{name}")
                };
                (dir.join(name), label)
            };
            if !glob::is_pattern(&part) {
                next.push(join(&part));
                continue;
            }
            if !dir.is_dir() || policy.roots.check(dir).is_err() {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if is_hidden(&name) && !part.starts_with('.') {
                    continue;
                }
                if !glob::matches(&part, &name) {
                    continue;
                }
                let (path, label) = join(&name);
                // A folder that leads outside the roots is not listed; a
                // file that does is refused when it is opened.
                if path.is_dir() && policy.roots.check(&path).is_err() {
                    continue;
                }
                if next.len() >= MAX_DATASET_FILES {
                    return Err(too_many(pattern));
                }
                next.push((path, label));
            }
        }
        candidates = next;
    }
    let mut found: Vec<Source> = candidates
        .into_iter()
        .filter(|(path, _)| path.is_file())
        .map(|(path, label)| Source {
            path,
            label: Some(label),
        })
        .collect();
    if found.is_empty() {
        return Err(DatasetError::NoFiles {
            path: pattern.to_path_buf(),
            what: "no file matches this glob".to_string(),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}
