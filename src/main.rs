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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
