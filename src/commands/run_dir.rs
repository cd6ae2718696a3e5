//! One results folder per run under the home: `results/<job>/<run>/`,
//! named by the run's UTC start time, with `latest` pointing at the newest
//! and `results/<job>/samples.jsonl` and `metrics.json` pointing into it,
//! so a `--limit 10` run never replaces a full run's results and readers
//! of the older flat layout keep working.

use anyhow::Context;
use std::path::{Path, PathBuf};

use super::failure::Failure;

/// The files a run writes, linked from the job's folder.
const RESULT_FILES: [&str; 2] = ["samples.jsonl", "metrics.json"];
/// Every request without an output, written by a run only when some are.
pub const MISSING_FILE: &str = "missing.jsonl";
/// The link to the newest run's folder.
pub const LATEST: &str = "latest";

/// Where a run's results go.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultsDir {
    /// `--output DIR`: written there as they are.
    Given(PathBuf),
    /// A new folder per run under this job folder of the home.
    PerRun(PathBuf),
}

/// A run's own folder, not yet the `latest`.
#[derive(Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// `Some(job folder)` when `latest` should point here once written.
    job_dir: Option<PathBuf>,
}

impl ResultsDir {
    /// Creates this run's folder: the given one, or a new one named by the
    /// time (`2026-12-03T12-15-30Z`, then `…Z-2` within the same second).
    /// Results of the older flat layout are moved into a folder of their
    /// own first.
    pub fn create(&self) -> Result<RunFolder, Failure> {
        match self {
            ResultsDir::Given(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok(RunFolder {
                    dir: dir.clone(),
                    job_dir: None,
                })
            }
            ResultsDir::PerRun(job_dir) => {
                std::fs::create_dir_all(job_dir)
                    .with_context(|| format!("cannot create {}", job_dir.display()))?;
                keep_flat_results(job_dir)?;
                let name = chrono::Utc::now().format("%Y-%m-%dT%H-%M-%SZ").to_string();
                let dir = claim_new_dir(job_dir, &name)?;
                Ok(RunFolder {
                    dir,
                    job_dir: Some(job_dir.clone()),
                })
            }
        }
    }
}

impl RunFolder {
    /// Makes this run the `latest` of its job (nothing for `--output`).
    pub fn publish(&self) -> Result<(), Failure> {
        let Some(job_dir) = &self.job_dir else {
            return Ok(());
        };
        let name = self
            .dir
            .file_name()
            .context("a run folder has a name")?
            .to_owned();
        // Relative targets: the home can be moved or copied whole.
        replace_link(Path::new(&name), &job_dir.join(LATEST))?;
        for file in RESULT_FILES {
            replace_link(&Path::new(LATEST).join(file), &job_dir.join(file))?;
        }
        // The list of missing requests exists only when some are: linked
        // then, and an older run's link removed otherwise.
        let missing = job_dir.join(MISSING_FILE);
        if self.dir.join(MISSING_FILE).exists() {
            replace_link(&Path::new(LATEST).join(MISSING_FILE), &missing)?;
        } else if missing.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
            std::fs::remove_file(&missing)
                .with_context(|| format!("cannot remove the link {}", missing.display()))?;
        }
        Ok(())
    }
}

/// Creates `<parent>/<name>`, or `<name>-2`, `-3`… if taken.
fn claim_new_dir(parent: &Path, name: &str) -> Result<PathBuf, Failure> {
    for n in 1..1000 {
        let dir = match n {
            1 => parent.join(name),
            n => parent.join(format!("{name}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot create {}", dir.display()))
                    .into())
            }
        }
    }
    Err(anyhow::anyhow!(
        "{} has a thousand runs named {name}; remove some of them",
        parent.display()
    )
    .into())
}

/// Results written before runs had folders (`<job>/samples.jsonl` as a
/// file): moved into a folder named by their modification time.
fn keep_flat_results(job_dir: &Path) -> Result<(), Failure> {
    let flat: Vec<PathBuf> = RESULT_FILES
        .iter()
        .map(|f| job_dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
        .collect();
    let Some(first) = flat.first() else {
        return Ok(());
    };
    let modified = first
        .metadata()
        .and_then(|m| m.modified())
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_else(|_| chrono::Utc::now());
    let name = modified.format("%Y-%m-%dT%H-%M-%SZ").to_string();
    let dir = claim_new_dir(job_dir, &name)?;
    for path in &flat {
        let to = dir.join(path.file_name().context("a result file has a name")?);
        std::fs::rename(path, &to)
            .with_context(|| format!("cannot move {} to {}", path.display(), to.display()))?;
    }
    eprintln!(
        "moved the results of an earlier run into {}; each run now keeps its own folder",
        dir.display()
    );
    Ok(())
}

/// Points the link `at` to `target`, replacing an older link at once.
fn replace_link(target: &Path, at: &Path) -> Result<(), Failure> {
    let tmp = at.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).with_context(|| format!("cannot create the link {}", tmp.display()))?;
    std::fs::rename(&tmp, at).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace {}", at.display())
    })?;
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, at: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(windows)]
fn symlink(target: &Path, at: &Path) -> std::io::Result<()> {
    // `latest` is a folder link, the result files are file links.
    if target.extension().is_none() {
        std::os::windows::fs::symlink_dir(target, at)
    } else {
        std::os::windows::fs::symlink_file(target, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_keeps_its_folder_and_latest_follows_the_newest() {
        let home = tempfile::tempdir().unwrap();
        let job = home.path().join("results/qa");
        std::fs::create_dir_all(&job).unwrap();
        // The older flat layout: kept, in a folder of its own.
        std::fs::write(job.join("samples.jsonl"), "old\n").unwrap();
        std::fs::write(job.join("metrics.json"), "{}\n").unwrap();

        let dest = ResultsDir::PerRun(job.clone());
        let first = dest.create().map_err(|f| f.error).unwrap();
        std::fs::write(first.dir.join("samples.jsonl"), "full\n").unwrap();
        std::fs::write(first.dir.join("metrics.json"), "{\"n\": 100}\n").unwrap();
        first.publish().map_err(|f| f.error).unwrap();
        let second = dest.create().map_err(|f| f.error).unwrap();
        assert_ne!(first.dir, second.dir);
        std::fs::write(second.dir.join("samples.jsonl"), "limited\n").unwrap();
        std::fs::write(second.dir.join("metrics.json"), "{\"n\": 10}\n").unwrap();
        second.publish().map_err(|f| f.error).unwrap();

        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&job.join("latest/samples.jsonl")), "limited\n");
        assert_eq!(read(&job.join("samples.jsonl")), "limited\n");
        assert_eq!(read(&job.join("metrics.json")), "{\"n\": 10}\n");
        assert_eq!(read(&first.dir.join("samples.jsonl")), "full\n");
        let runs: Vec<String> = std::fs::read_dir(&job)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with('Z') || n.contains("Z-"))
            .collect();
        assert_eq!(runs.len(), 3, "{runs:?}");
        let old = runs
            .iter()
            .map(|r| job.join(r).join("samples.jsonl"))
            .find(|p| read(p) == "old\n");
        assert!(old.is_some(), "the flat results were not kept: {runs:?}");

        // `--output` writes where it is told, and moves no link.
        let given = home.path().join("elsewhere");
        let out = ResultsDir::Given(given.clone())
            .create()
            .map_err(|f| f.error)
            .unwrap();
        assert_eq!(out.dir, given);
        out.publish().map_err(|f| f.error).unwrap();
        assert_eq!(read(&job.join("samples.jsonl")), "limited\n");
    }
}
