//! Where `status`, `results` and `cancel` find jobs: a coordinator over
//! HTTP, or a local home (`shardline run`'s folder) read directly; and the
//! rule that picks one when the user named neither.

use anyhow::Context;
use std::path::{Path, PathBuf};
use uuid::Uuid;

use jobs::protocol::JobStatus;

use super::failure::{client_failure, Failure};
use super::home::Home;
use crate::cli::{LocalHomeArgs, RemoteArgs};
use crate::config::{defaults, ConfigFile};

/// Jobs on a coordinator or in a local home.
pub enum JobSource {
    Coordinator(client::CoordinatorClient),
    /// The home's store and cache, read in this process.
    Home {
        home: Home,
        coordinator: coordinator::Coordinator,
    },
}

/// Which one the flags name. A home typed on the command line wins; then a
/// coordinator named anywhere (flag, variable, config file); then a home
/// named by `SHARDLINE_HOME`; then the default home when it exists, with a
/// note saying so; else the default coordinator.
pub fn local_home(remote: &RemoteArgs, local: &LocalHomeArgs) -> Result<Option<PathBuf>, Failure> {
    let given = &remote.given;
    if given.on_command_line("home") && given.on_command_line("coordinator") {
        return Err(Failure::usage(anyhow::anyhow!(
            "--home reads a local home and --coordinator asks a coordinator: give one of them"
        )));
    }
    if given.on_command_line("home") {
        return Ok(local.home.clone());
    }
    if given.is_set("coordinator") {
        return Ok(None);
    }
    let file = ConfigFile::load(remote.config.path.as_deref()).map_err(Failure::usage)?;
    if file.client.coordinator.is_some() {
        return Ok(None);
    }
    if let Some(home) = &local.home {
        return Ok(Some(home.clone()));
    }
    let default = Path::new(defaults::HOME);
    if default.join("shardline.db").is_file() {
        eprintln!(
            "note: no coordinator named (--coordinator, SHARDLINE_COORDINATOR or [client] in the \
             config file): showing the jobs `shardline run` keeps in {}; pass --coordinator URL \
             for a cluster",
            defaults::HOME
        );
        return Ok(Some(default.to_path_buf()));
    }
    Ok(None)
}

impl JobSource {
    /// The local home at `root`, read without taking its lock.
    pub async fn home(root: &Path, local: &LocalHomeArgs) -> Result<JobSource, Failure> {
        let home = Home::existing(root, local.cache.as_deref())?;
        let coordinator = home.offline_coordinator().await?;
        Ok(JobSource::Home { home, coordinator })
    }

    pub async fn job(&self, id: Uuid) -> Result<JobStatus, Failure> {
        match self {
            JobSource::Coordinator(c) => c
                .job(id)
                .await
                .map_err(|e| client_failure(e, "cannot read the job")),
            JobSource::Home { coordinator, .. } => Ok(coordinator
                .job_status(id)
                .await
                .map_err(|e| self.not_found(id, e))?),
        }
    }

    /// Every job, newest first.
    pub async fn list(&self) -> Result<Vec<JobStatus>, Failure> {
        match self {
            JobSource::Coordinator(c) => c
                .list_jobs()
                .await
                .map_err(|e| client_failure(e, "cannot list jobs")),
            JobSource::Home { coordinator, .. } => Ok(coordinator
                .list_jobs()
                .await
                .context("cannot list the home's jobs")?),
        }
    }

    pub async fn cancel(&self, id: Uuid) -> Result<JobStatus, Failure> {
        match self {
            JobSource::Coordinator(c) => c
                .cancel(id)
                .await
                .map_err(|e| client_failure(e, "cannot cancel the job")),
            JobSource::Home { coordinator, .. } => Ok(coordinator
                .cancel(id)
                .await
                .map_err(|e| self.not_found(id, e))?),
        }
    }

    /// A store error about job `id`, naming the home when the job is not
    /// in it (bad input: exit 2).
    fn not_found(&self, id: Uuid, e: coordinator::CoordinatorError) -> Failure {
        let JobSource::Home { home, .. } = self else {
            return Failure::runtime(e);
        };
        if matches!(e, coordinator::CoordinatorError::JobNotFound(_)) {
            return Failure::usage(anyhow::anyhow!(
                "no job {id} in the home {}; `shardline status --home {}` lists its jobs",
                home.root.display(),
                home.root.display()
            ));
        }
        Failure::runtime(anyhow::Error::new(e).context(format!("cannot read job {id}")))
    }
}
