//! Loading a job file for a command: parse, apply the command-line
//! overrides, fingerprint an engine model, validate; and what its data
//! files may be read from when it runs locally.

use std::path::Path;
use std::sync::Arc;

use jobs::dataset::ObjectSource;
use jobs::{DatasetRoots, JobSpec, ReadLimits, ReadPolicy};

use super::failure::Failure;

/// Loads and checks a job file. Runs on a blocking thread: an engine job's
/// first run hashes its model file, which may take a while for a large one.
pub async fn load_spec(
    path: &Path,
    model: Option<&str>,
    limit: Option<u64>,
) -> Result<JobSpec, Failure> {
    let path = path.to_path_buf();
    let model = model.map(str::to_string);
    tokio::task::spawn_blocking(move || load_spec_blocking(&path, model.as_deref(), limit))
        .await
        .map_err(|e| Failure::runtime(anyhow::anyhow!("loading the job spec stopped: {e}")))?
}

fn load_spec_blocking(
    path: &Path,
    model: Option<&str>,
    limit: Option<u64>,
) -> Result<JobSpec, Failure> {
    let mut spec = JobSpec::from_toml_file(path).map_err(Failure::usage)?;
    if let Some(m) = model {
        spec.model.model = m.to_string();
    }
    if let Some(l) = limit {
        spec.dataset.limit = Some(l);
    }
    // An engine job's outputs are keyed by its model's fingerprint: compute
    // it here (hashing runs once per model file; later runs read a cached
    // digest), so a wrong or broken model path fails before submitting.
    match worker::backend::engine::resolve_model(&mut spec.model) {
        Ok(Some(model)) => eprintln!(
            "model {} (fingerprint {}{})",
            model.path.display(),
            &model.fingerprint[..12],
            model
                .chat_template_sha256
                .as_ref()
                .map(|t| format!(", chat template {}", &t[..12]))
                .unwrap_or_default()
        ),
        Ok(None) => {}
        Err(e) => return Err(Failure::usage(anyhow::anyhow!("{}: {e}", path.display()))),
    }
    // An engine judge's verdicts are keyed by its own model's fingerprint.
    for (i, judge) in spec.judge_models_mut() {
        match worker::backend::engine::resolve_model(judge) {
            Ok(Some(model)) => eprintln!(
                "judge of metrics[{i}]: model {} (fingerprint {})",
                model.path.display(),
                &model.fingerprint[..12]
            ),
            Ok(None) => {}
            Err(e) => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "{}: the judge of metrics[{i}]: {e}",
                    path.display()
                )))
            }
        }
    }
    spec.validate().map_err(Failure::usage)?;
    // A chat job whose model has no chat template fails here, with the
    // ways out, rather than at every request.
    worker::backend::engine::check_chat_template(&spec)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
    // The same for an engine judge, which is sent chat messages.
    for (i, judge) in spec.judge_models() {
        let mut as_job = spec.clone();
        as_job.model = judge.clone();
        as_job.task.kind = jobs::spec::TaskKind::Generate;
        worker::backend::engine::check_chat_template(&as_job).map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "{}: the judge of metrics[{i}]: {e}",
                path.display()
            ))
        })?;
    }
    Ok(spec)
}

/// Checks the CA file of `model.ca_cert`, for `run`, whose workers read it
/// here: a wrong path or a file that holds no certificate is the job file's
/// error, found before anything is submitted. (`submit` leaves it to the
/// workers, whose paths may differ from the submitting machine's.)
pub(super) fn check_ca_cert(job: &Path, spec: &JobSpec) -> Result<(), Failure> {
    worker::backend::tls::check_ca_cert(&spec.model)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", job.display())))
}

/// What `run` may read: the job file's folder and the roots its user adds
/// (one user, their own files; the rule is the coordinator's all the same,
/// so a job that runs here is one a shared coordinator would accept), and
/// any `s3://` dataset, read with the user's own S3 settings and
/// credentials (those of an S3 cache), which decide what they may read.
pub(super) fn read_policy(job: &Path, roots: &[String]) -> Result<ReadPolicy, Failure> {
    let folder = match job.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let roots = DatasetRoots::only(roots)
        .and_then(|roots| roots.with_dir(folder))
        .map_err(Failure::usage)?
        .with_all_s3();
    Ok(ReadPolicy::new(roots, ReadLimits::default()).with_objects(s3_datasets()?))
}

/// Reads `s3://` datasets with the S3 settings of the environment, as an
/// S3 cache of `run` is reached (nothing is contacted until one is read).
pub(super) fn s3_datasets() -> Result<Arc<dyn ObjectSource>, Failure> {
    let options = cache::S3Options::from_env().map_err(Failure::usage)?;
    Ok(Arc::new(cache::S3Datasets::new(options)))
}
