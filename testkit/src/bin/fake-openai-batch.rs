//! `fake-openai-batch`: runs the test kit's fake Batch API (Files + Batches, plus the fake
//! synchronous endpoints) as a process, for benchmarks and end-to-end tests. Prints
//! `listening on http://127.0.0.1:PORT/v1`, serves until Ctrl-C or SIGTERM, then prints the final
//! batch stats as JSON on stderr. `GET /_fake/batch/stats` serves them while it runs.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use testkit::{FakeBatchApi, FakeBatchConfig, FakeConfig, LineError};

const USAGE: &str = "\
usage: fake-openai-batch [options]
  --port N                    port on 127.0.0.1 (default 0: let the OS pick)
  --api-key-env VAR           require `Authorization: Bearer KEY`, the key read from VAR
  --validating-ms MS          time in `validating` (default 100)
  --in-progress-ms MS         time in `in_progress`; lines finish evenly over it (default 300)
  --finalizing-ms MS          time in `finalizing` (default 100)
  --cancelling-ms MS          time in `cancelling` (default 100)
  --fail-validation TEXT      batches with a line containing TEXT fail validation (repeatable)
  --expire-first N            the first N batches expire ...
  --expire-after-ms MS        ... this long into `in_progress` (default 150)
  --line-error TEXT=STATUS:N  lines containing TEXT answer STATUS the first N times (repeatable)
  --drop-line TEXT=N          lines containing TEXT are missing from both files N times (repeatable)
  --enqueued-token-limit N    input tokens a model may have in progress at once
  --no-record                 do not keep synchronous request bodies in memory";

struct Args {
    port: u16,
    config: FakeConfig,
    batch: FakeBatchConfig,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: expected a non-negative number"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut port = 0u16;
    let mut config = FakeConfig::default();
    let mut batch = FakeBatchConfig::default();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--no-record" => {
                config.record_requests = false;
                continue;
            }
            _ => {}
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; see --help"))?;
        let ms = |v: &str| number::<u64>(&flag, v).map(Duration::from_millis);
        match flag.as_str() {
            "--port" => port = number(&flag, &value)?,
            "--api-key-env" => {
                let key = std::env::var(&value).map_err(|_| {
                    format!("--api-key-env: environment variable {value} is not set")
                })?;
                config.api_key = Some(key);
            }
            "--validating-ms" => batch.validating = ms(&value)?,
            "--in-progress-ms" => batch.in_progress = ms(&value)?,
            "--finalizing-ms" => batch.finalizing = ms(&value)?,
            "--cancelling-ms" => batch.cancelling = ms(&value)?,
            "--fail-validation" => batch.fail_validation_containing.push(value),
            "--expire-first" => batch.expire_first_batches = number(&flag, &value)?,
            "--expire-after-ms" => batch.expire_after = ms(&value)?,
            "--line-error" => {
                let (needle, spec) = value
                    .rsplit_once('=')
                    .ok_or_else(|| format!("--line-error {value:?}: expected TEXT=STATUS:N"))?;
                let (status, times) = spec
                    .split_once(':')
                    .ok_or_else(|| format!("--line-error {value:?}: expected TEXT=STATUS:N"))?;
                batch.line_errors.push(LineError {
                    needle: needle.to_string(),
                    status: number(&flag, status)?,
                    times: number(&flag, times)?,
                });
            }
            "--drop-line" => {
                let (needle, times) = value
                    .rsplit_once('=')
                    .ok_or_else(|| format!("--drop-line {value:?}: expected TEXT=N"))?;
                batch
                    .drop_lines
                    .push((needle.to_string(), number(&flag, times)?));
            }
            "--enqueued-token-limit" => batch.enqueued_token_limit = Some(number(&flag, &value)?),
            other => return Err(format!("unknown option {other:?}; see --help")),
        }
    }
    Ok(Some(Args {
        port,
        config,
        batch,
    }))
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("fake-openai-batch: {message}");
            return ExitCode::from(2);
        }
    };
    let server = match FakeBatchApi::start_on_port(args.config, args.batch, args.port).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!(
                "fake-openai-batch: cannot listen on 127.0.0.1:{}: {err}",
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", server.base_url());
    let _ = std::io::stdout().flush();
    wait_for_stop_signal().await;
    let stats = server.batch_stats().summary();
    server.shutdown().await;
    match serde_json::to_string(&stats) {
        Ok(json) => eprintln!("{json}"),
        Err(err) => eprintln!("fake-openai-batch: cannot encode stats: {err}"),
    }
    ExitCode::SUCCESS
}
