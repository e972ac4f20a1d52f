//! `mydockerd`: parse flags, merge daemon.json, set up logging, run.

use clap::Parser;
use mydocker::config::{DaemonConfig, Flags};

fn main() -> std::process::ExitCode {
    // `mydockerd __monitor <bundle>` runs a container's monitor, not the daemon.
    mydocker::runtime::maybe_run_monitor_from_args();
    let flags = Flags::parse();
    let config = match DaemonConfig::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mydockerd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let level = if config.debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MYDOCKER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},hyper=info,reqwest=info,h2=info,rustls=info,netlink_packet_route=error"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Two workers: the daemon is mostly idle and its heavy work (unpacking,
    // SQLite) runs on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mydockerd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(mydocker::daemon::run(config));
    // Blocking work still running (a follower of a container's log) would
    // hold the exit; the containers outlive the daemon anyway.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mydockerd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
