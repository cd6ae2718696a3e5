//! `shardline rescore JOB.toml`: metrics from the cache alone, zero inference.

use super::failure::CmdResult;
use super::home::Home;
use super::job_file::load_spec;
use super::results::write_results;
use crate::cli::RescoreArgs;

pub async fn rescore(args: RescoreArgs) -> CmdResult {
    let spec = load_spec(&args.job, args.model.as_deref(), args.limit).await?;
    let home = Home::open(&args.home)?;
    let coordinator = home.offline_coordinator().await?;
    let out_dir = args
        .output
        .clone()
        .unwrap_or_else(|| home.results_dir(&spec.name));
    write_results(
        &coordinator,
        &spec,
        &out_dir,
        "`shardline run` the job to send only those",
    )
    .await
}
