//! The embedded home folder: SQLite store, local cache and results, guarded
//! by a lock so that two `shardline run`s never share one home.

use anyhow::Context;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::failure::Failure;
use super::run_dir::ResultsDir;
use crate::cli::HomeArgs;

pub struct Home {
    pub root: PathBuf,
    pub cache_location: String,
    // Held for the life of the process; the OS releases it if we are
    // killed. `None` for a home only read (`status` beside a running `run`).
    _lock: Option<File>,
}

impl Home {
    pub fn open(args: &HomeArgs) -> Result<Home, Failure> {
        let root = args.home.clone();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create home folder {}", root.display()))?;
        let lock_path = root.join("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            return Err(Failure::usage(anyhow::anyhow!(
                "another shardline process is using {}; wait for it to finish or pass a different --home",
                root.display()
            )));
        }
        let cache_location = match &args.cache {
            Some(c) => c.clone(),
            None => root.join("cache").display().to_string(),
        };
        Ok(Home {
            root,
            cache_location,
            _lock: Some(lock),
        })
    }

    /// An existing home, opened without its lock so that `status`,
    /// `results` and `cancel` work beside a `run` using it (SQLite keeps
    /// the two consistent). Creates nothing.
    pub fn existing(root: &Path, cache: Option<&str>) -> Result<Home, Failure> {
        let home = Home {
            root: root.to_path_buf(),
            cache_location: match cache {
                Some(c) => c.to_string(),
                None => root.join("cache").display().to_string(),
            },
            _lock: None,
        };
        if !home.db_path().is_file() {
            return Err(Failure::usage(anyhow::anyhow!(
                "{} is not a Shardline home (it has no shardline.db); `shardline run JOB --home {}` \
                 makes one, and the default home is {}",
                root.display(),
                root.display(),
                crate::config::defaults::HOME
            )));
        }
        Ok(home)
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("shardline.db")
    }

    /// Where a job's results go: `output` (`--output`) as given, else a
    /// new folder per run under `results/<job name>/` (see `run_dir`).
    pub fn results_for(&self, job_name: &str, output: Option<&Path>) -> ResultsDir {
        match output {
            Some(dir) => ResultsDir::Given(dir.to_path_buf()),
            None => ResultsDir::PerRun(self.root.join("results").join(job_name)),
        }
    }

    pub async fn store(&self) -> Result<Arc<dyn coordinator::Store>, Failure> {
        let store = coordinator::SqliteStore::open(&self.db_path())
            .await
            .with_context(|| format!("cannot open the store {}", self.db_path().display()))?;
        Ok(Arc::new(store))
    }

    pub fn objects(&self) -> Result<Arc<dyn cache::ObjectStore>, Failure> {
        cache::open_store(&self.cache_location).map_err(Failure::usage)
    }

    /// A coordinator over this home that serves nothing: for commands that
    /// only read or rebuild state (`rescore`, `cache reindex`).
    pub async fn offline_coordinator(&self) -> Result<coordinator::Coordinator, Failure> {
        // No HTTP server is started, so the tokens are never checked.
        let mut config = coordinator::CoordinatorConfig::with_tokens(String::new(), String::new());
        // The user's own files on their own machine, and S3 datasets
        // with their own credentials.
        config.read =
            jobs::ReadPolicy::unrestricted().with_objects(super::job_file::s3_datasets()?);
        Ok(coordinator::Coordinator::new(
            self.store().await?,
            self.objects()?,
            config,
        ))
    }
}

/// Writes `metrics.json` next to the samples and prints nothing.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
