//! `shardline cache …`: cache maintenance.

use anyhow::Context;

use super::failure::CmdResult;
use super::home::Home;
use crate::cli::CacheCommand;
use crate::exit;

pub async fn cache(cmd: CacheCommand) -> CmdResult {
    match cmd {
        CacheCommand::Reindex(args) => {
            let home = Home::open(&args.home)?;
            let coordinator = home.offline_coordinator().await?;
            let stats = coordinator
                .reindex()
                .await
                .context("cannot rebuild the cache index")?;
            println!(
                "reindexed {} segments: {} records, {} keys indexed",
                stats.segments, stats.records, stats.keys_indexed
            );
            for (path, error) in &stats.bad_segments {
                eprintln!("warning: skipped {path}: {error}");
            }
            Ok(exit::OK)
        }
    }
}
