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
    let dest = home.results_for(&spec.name, args.output.as_deref());
    write_results(
        &coordinator,
        &spec,
        &dest,
        args.format,
        "`shardline run` the job to send only those",
    )
    .await
}
