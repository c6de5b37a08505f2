//! The `simian` binary: parse the CLI, call the library, print, and exit 0 / 1 (an action failed) / 2 (bad input).
#![forbid(unsafe_code)]

mod args;
mod commands;
mod daemon;
mod demo;

use std::process::ExitCode;

use anyhow::Result;
use args::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let args = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if args.verbose { "info" } else { "warn" }));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(dispatch(args));
    // Once the command is done nothing left on the blocking pool matters (a policy reload the daemon no
    // longer needs, say): exit now instead of waiting for it.
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(args::exit_code_for(&e))
        }
    }
}

/// One subcommand, mapped onto the library.
async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(a) => commands::validate(&a),
        Command::Schedule(a) => commands::schedule(a),
        Command::Run(a) => commands::run(a, false).await,
        Command::Plan(a) => commands::run(a, true).await,
        Command::History(a) => commands::history(a),
        Command::Revert(a) => commands::revert(a).await,
        Command::Halt(a) => commands::halt(a).await,
        Command::Resume(a) => commands::resume(a),
        Command::Agents(a) => commands::agents(a),
        Command::Daemon(a) => daemon::daemon(a).await,
        Command::Outbox(a) => daemon::outbox(a).await,
        Command::Announce(a) => daemon::announce(a).await,
        Command::Probe(a) => commands::probe(a).await,
        Command::Demo(a) => demo::demo(a).await,
        Command::DemoInstance { id, address, service_time } => {
            demo::instance(&id, &address, service_time.std()).await
        }
    }
}
