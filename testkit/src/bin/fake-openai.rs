//! `fake-openai`: runs the test kit's fake OpenAI-compatible server as a process, for benchmarks
//! and end-to-end tests. Prints `listening on http://127.0.0.1:PORT/v1`, serves until Ctrl-C or
//! SIGTERM, then prints the final stats as JSON on stderr.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use testkit::{FakeConfig, FakeOpenAi};

const USAGE: &str = "\
usage: fake-openai [options]
  --port N                  port on 127.0.0.1 (default 0: let the OS pick)
  --api-key KEY             require `Authorization: Bearer KEY`
  --api-key-env VAR         same, reading the key from environment variable VAR
  --latency-ms MS           delay added to every inference request
  --rate-limit-every N      every Nth request answers 429
  --retry-after SECS        Retry-After for 429 answers (default 1)
  --fail-first N            the first N requests answer 500
  --server-error-every N    every Nth request answers 500/503
  --fail-prompt TEXT        prompts containing TEXT answer 400 (repeatable)
  --slow-prompt TEXT=MS     prompts containing TEXT wait MS more (repeatable)
  --answers-file PATH       JSON object mapping prompt text to completion text
  --favour TEXT             tokens of TEXT are the argmax with logprob -0.01 (repeatable)
  --model NAME              model listed by /v1/models (repeatable; default fake-model)
  --max-tokens-limit N      max_tokens above N answers 400 (default 4096)
  --no-record               do not keep request bodies in memory (long benchmarks)
  --no-completions          no /v1/completions route (404, as a chat-only server)
  --ignore-echo             /v1/completions ignores `echo`
  --drop-logprobs           /v1/completions answers \"logprobs\": null";

struct Args {
    port: u16,
    config: FakeConfig,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut port = 0u16;
    let mut config = FakeConfig::default();
    let mut models = Vec::new();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        match flag.as_str() {
            "--no-record" => {
                config.record_requests = false;
                continue;
            }
            "--no-completions" => {
                config.serve_completions = false;
                continue;
            }
            "--ignore-echo" => {
                config.ignore_echo = true;
                continue;
            }
            "--drop-logprobs" => {
                config.drop_logprobs = true;
                continue;
            }
            _ => {}
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; see --help"))?;
        match flag.as_str() {
            "--port" => port = number(&flag, &value)?,
            "--api-key" => config.api_key = Some(value),
            "--api-key-env" => {
                let key = std::env::var(&value).map_err(|_| {
                    format!("--api-key-env: environment variable {value} is not set")
                })?;
                config.api_key = Some(key);
            }
            "--latency-ms" => config.latency = Duration::from_millis(number(&flag, &value)?),
            "--rate-limit-every" => config.rate_limit_every = Some(number(&flag, &value)?),
            "--retry-after" => config.retry_after_secs = number(&flag, &value)?,
            "--fail-first" => config.fail_first = number(&flag, &value)?,
            "--server-error-every" => config.server_error_every = Some(number(&flag, &value)?),
            "--fail-prompt" => config.fail_prompts_containing.push(value),
            "--slow-prompt" => {
                let (needle, ms) = value
                    .rsplit_once('=')
                    .ok_or_else(|| format!("--slow-prompt {value:?}: expected TEXT=MS"))?;
                let delay = Duration::from_millis(number(&flag, ms)?);
                config
                    .slow_prompts_containing
                    .push((needle.to_string(), delay));
            }
            "--answers-file" => config.answers = read_answers(&value)?,
            "--favour" => config.favoured_continuations.push(value),
            "--model" => models.push(value),
            "--max-tokens-limit" => config.max_tokens_limit = number(&flag, &value)?,
            other => return Err(format!("unknown option {other:?}; see --help")),
        }
    }
    if !models.is_empty() {
        config.served_models = models;
    }
    Ok(Some(Args { port, config }))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: expected a non-negative number"))
}

fn read_answers(path: &str) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("--answers-file {path}: cannot read: {err}"))?;
    serde_json::from_str(&text).map_err(|err| {
        format!("--answers-file {path}: expected a JSON object of prompt → answer strings: {err}")
    })
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
            eprintln!("fake-openai: {message}");
            return ExitCode::from(2);
        }
    };
    let server = match FakeOpenAi::start_on_port(args.config, args.port).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!(
                "fake-openai: cannot listen on 127.0.0.1:{}: {err}",
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", server.base_url());
    // Parents read this line from a pipe, where stdout is block-buffered.
    let _ = std::io::stdout().flush();
    wait_for_stop_signal().await;
    let stats = server.stats();
    server.shutdown().await;
    match serde_json::to_string(&stats) {
        Ok(json) => eprintln!("{json}"),
        Err(err) => eprintln!("fake-openai: cannot encode stats: {err}"),
    }
    ExitCode::SUCCESS
}
