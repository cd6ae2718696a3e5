//! The `shardline` command line: parses arguments, wires the crates together,
//! prints, and decides exit codes. No domain logic lives here.

mod cli;
mod commands;
mod config;
mod exit;
mod progress;
mod terminal;

fn main() {
    let cli = cli::parse();
    init_tracing(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::RUNTIME);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli.command));
    // Background tasks (HTTP server, workers) are already stopped; do not
    // wait for stray blocking reads.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only for a person at a terminal: in a log file, a pipe
    // or CI they are noise around every line. NO_COLOR (no-color.org)
    // turns them off at a terminal too.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
