//! The folders (and `s3://` prefixes) a job's data files may come from.
//!
//! A path is judged by where it really leads: symlinks and `..` are
//! resolved before the check, and a file is checked again after it is
//! opened (by the path the kernel reports for the open descriptor), so a
//! symlink swapped in between the check and the open gains nothing.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// Most characters of a job's path quoted in an error.
const MAX_QUOTED_CHARS: usize = 300;

/// Where a job's data files may be read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetRoots {
    /// Anywhere this process can read: a user's own files on their own
    /// machine.
    Any,
    /// Only under these folders (canonical) or `s3://` prefixes; none at
    /// all refuses every file.
    Only {
        dirs: Vec<PathBuf>,
        prefixes: Vec<String>,
    },
}

/// A root that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("dataset root {}: {source}; give an existing folder", .root.display())]
    Missing {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset root {}: not a folder; give the folder that holds the datasets", .root.display())]
    NotAFolder { root: PathBuf },
    #[error("dataset root {0}: an s3:// root needs a bucket (s3://BUCKET or s3://BUCKET/PREFIX)")]
    BadPrefix(String),
}

/// A file a job named that lies outside every root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path}: outside the dataset roots of this coordinator ({allowed}); \
         move the file under a root, or have the operator add one with `--dataset-root DIR`"
)]
pub struct OutsideRoots {
    /// The path as the job gave it, capped.
    pub path: String,
    /// The roots, listed, or why there are none.
    pub allowed: String,
}

impl DatasetRoots {
    /// No root: every file is refused.
    pub fn none() -> Self {
        DatasetRoots::Only {
            dirs: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    /// Roots from an operator's list: existing folders (resolved to their
    /// real paths) and `s3://BUCKET[/PREFIX]` prefixes.
    pub fn only<I, S>(entries: I) -> Result<Self, RootError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut dirs = Vec::new();
        let mut prefixes = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            if let Some(rest) = entry.strip_prefix("s3://") {
                let bucket = rest.split('/').next().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(RootError::BadPrefix(entry.to_string()));
                }
                // A prefix covers what lies below it, not siblings that
                // share its first letters.
                let mut prefix = entry.trim_end_matches('/').to_string();
                prefix.push('/');
                prefixes.push(prefix);
                continue;
            }
            let root = PathBuf::from(entry);
            let real = std::fs::canonicalize(&root).map_err(|source| RootError::Missing {
                root: root.clone(),
                source,
            })?;
            if !real.is_dir() {
                return Err(RootError::NotAFolder { root });
            }
            dirs.push(real);
        }
        Ok(DatasetRoots::Only { dirs, prefixes })
    }

    /// Adds a folder (a job file's own, for `shardline run`).
    pub fn with_dir(self, dir: &Path) -> Result<Self, RootError> {
        let real = std::fs::canonicalize(dir).map_err(|source| RootError::Missing {
            root: dir.to_path_buf(),
            source,
        })?;
        Ok(match self {
            DatasetRoots::Any => DatasetRoots::Any,
            DatasetRoots::Only { mut dirs, prefixes } => {
                if !dirs.contains(&real) {
                    dirs.push(real);
                }
                DatasetRoots::Only { dirs, prefixes }
            }
        })
    }

    /// Adds every `s3://` location (`shardline run`: its user reads with
    /// their own credentials, which decide what they can read).
    pub fn with_all_s3(self) -> Self {
        match self {
            DatasetRoots::Any => DatasetRoots::Any,
            DatasetRoots::Only { dirs, mut prefixes } => {
                if !prefixes.iter().any(|p| p == "s3://") {
                    prefixes.push("s3://".to_string());
                }
                DatasetRoots::Only { dirs, prefixes }
            }
        }
    }

    /// Whether a job may name `path`. A path that exists is judged by its
    /// real location; one that does not is judged by its lexical form, so
    /// the answer never tells whether a file outside the roots exists.
    pub fn check(&self, path: &Path) -> Result<(), OutsideRoots> {
        let DatasetRoots::Only { dirs, prefixes } = self else {
            return Ok(());
        };
        let text = path.to_string_lossy();
        let allowed = if text.starts_with("s3://") {
            // `..` in a key is refused rather than interpreted.
            prefixes.iter().any(|p| text.starts_with(p.as_str()))
                && !text.split('/').any(|seg| seg == ".." || seg == ".")
        } else {
            let real = std::fs::canonicalize(path).or_else(|_| lexical_absolute(path));
            real.is_ok_and(|real| dirs.iter().any(|d| real.starts_with(d)))
        };
        if allowed {
            Ok(())
        } else {
            Err(self.outside(path))
        }
    }

    /// Checks an opened file where it really is: the kernel's path for its
    /// descriptor, so a symlink changed after [`DatasetRoots::check`] is
    /// caught.
    pub(super) fn check_opened(&self, path: &Path, file: &File) -> Result<(), OutsideRoots> {
        let DatasetRoots::Only { dirs, .. } = self else {
            return Ok(());
        };
        let real = opened_path(file).or_else(|| std::fs::canonicalize(path).ok());
        match real {
            Some(real) if dirs.iter().any(|d| real.starts_with(d)) => Ok(()),
            _ => Err(self.outside(path)),
        }
    }

    fn outside(&self, path: &Path) -> OutsideRoots {
        let allowed = match self {
            DatasetRoots::Any => "any file".to_string(),
            DatasetRoots::Only { dirs, prefixes } if dirs.is_empty() && prefixes.is_empty() => {
                "none: it was started without `--dataset-root`".to_string()
            }
            DatasetRoots::Only { dirs, prefixes } => dirs
                .iter()
                .map(|d| d.display().to_string())
                .chain(prefixes.iter().cloned())
                .collect::<Vec<_>>()
                .join(", "),
        };
        OutsideRoots {
            path: capped(&path.to_string_lossy()),
            allowed,
        }
    }
}

/// The absolute form of `path` with `.` and `..` resolved by text alone.
fn lexical_absolute(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Where an open file really is, as the kernel tracks it.
#[cfg(target_os = "linux")]
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn opened_path(_file: &File) -> Option<PathBuf> {
    None
}

fn capped(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dot_dots_are_judged_by_where_they_lead() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("data");
        let outside = base.path().join("secret");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("ok.jsonl"), "{}\n").unwrap();
        std::fs::write(outside.join("key.jsonl"), "{}\n").unwrap();
        std::os::unix::fs::symlink(outside.join("key.jsonl"), root.join("link.jsonl")).unwrap();
        let roots = DatasetRoots::only([root.to_str().unwrap()]).unwrap();

        assert_eq!(roots.check(&root.join("ok.jsonl")), Ok(()));
        assert_eq!(roots.check(&root.join("sub/../ok.jsonl")), Ok(()));
        // Inside by text, outside in fact.
        assert!(roots.check(&root.join("link.jsonl")).is_err());
        assert!(roots.check(&root.join("../secret/key.jsonl")).is_err());
        assert!(roots.check(Path::new("/etc/shadow")).is_err());
        // A missing file is judged by its text: no existence oracle.
        assert_eq!(roots.check(&root.join("missing.jsonl")), Ok(()));
        let err = roots
            .check(&outside.join("missing.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the dataset roots"), "{err}");
        assert!(err.contains("--dataset-root"), "{err}");
        // A sibling folder sharing the root's name as a prefix is outside.
        let sibling = base.path().join("data2");
        std::fs::create_dir_all(&sibling).unwrap();
        std::fs::write(sibling.join("x.jsonl"), "{}\n").unwrap();
        assert!(roots.check(&sibling.join("x.jsonl")).is_err());

        // The opened file is checked where it really is.
        let file = File::open(root.join("link.jsonl")).unwrap();
        assert!(roots.check_opened(&root.join("link.jsonl"), &file).is_err());
        let file = File::open(root.join("ok.jsonl")).unwrap();
        assert_eq!(roots.check_opened(&root.join("ok.jsonl"), &file), Ok(()));
    }

    #[test]
    fn no_roots_refuse_everything_and_any_allows_everything() {
        let err = DatasetRoots::none()
            .check(Path::new("/etc/passwd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("started without `--dataset-root`"), "{err}");
        assert_eq!(DatasetRoots::Any.check(Path::new("/etc/passwd")), Ok(()));
    }

    #[test]
    fn s3_prefixes_cover_what_lies_below_them() {
        let roots = DatasetRoots::only(["s3://evals/data"]).unwrap();
        assert_eq!(roots.check(Path::new("s3://evals/data/mmlu.jsonl")), Ok(()));
        assert!(roots.check(Path::new("s3://evals/data-private/x")).is_err());
        assert!(roots.check(Path::new("s3://other/data/x")).is_err());
        assert!(roots
            .check(Path::new("s3://evals/data/../private/x"))
            .is_err());
        assert!(matches!(
            DatasetRoots::only(["s3://"]),
            Err(RootError::BadPrefix(_))
        ));
        assert!(matches!(
            DatasetRoots::only(["/nonexistent/shardline-root"]),
            Err(RootError::Missing { .. })
        ));
    }

    #[test]
    fn long_paths_are_quoted_capped() {
        let long = format!("/{}", "a".repeat(5000));
        let err = DatasetRoots::none().check(Path::new(&long)).unwrap_err();
        assert!(err.path.chars().count() <= MAX_QUOTED_CHARS + 1);
    }
}
