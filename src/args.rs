//! The command line: every subcommand's arguments (clap), how bad input is marked (exit 2), and policy
//! loading with `--store`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::DateTime;
use clap::{Args, Parser, Subcommand, ValueEnum};
use simian_config::{LoadedPolicy, MonkeyName, PolicyErrors};

/// simian — a chaos-engineering agent fleet driven by a YAML policy.
#[derive(Debug, Parser)]
#[command(name = "simian", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log progress to stderr (or set SIMIAN_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a policy; print every error with file:line:col.
    Validate(PolicyArg),
    /// Show the next fire times inside the calendar.
    Schedule(ScheduleArgs),
    /// Run one round now.
    Run(RunArgs),
    /// Plan one round: `run --dry-run`, never mutates.
    Plan(RunArgs),
    /// Past findings, newest first.
    History(HistoryArgs),
    /// Restore every fault still active in the journal, now.
    Revert(RevertArgs),
    /// Stop every simian sharing this store: no new action until `simian resume`; every active fault is
    /// reverted (by its holder within seconds, else from here).
    Halt(HaltArgs),
    /// Lift the halt: actions may start again at the next fire.
    Resume(RevertArgs),
    /// The simian processes on this store whose lease is live (daemons, and commands while they run).
    Agents(RevertArgs),
    /// Run continuously: fire monkeys at their cron times, serve /metrics and /healthz.
    Daemon(DaemonArgs),
    /// Reports and plans not yet delivered to every sink.
    Outbox(OutboxArgs),
    /// Post today's plan (upcoming actions) to the sinks with `announce` now.
    Announce(PolicyArg),
    /// Measure the steady state now (the policy's `steady_state` probes), no chaos.
    Probe(ProbeArgs),
    /// Start a local fleet of processes and let Chaos Monkey loose on it.
    Demo(DemoArgs),
    /// A tiny HTTP instance for the demo fleet (internal).
    #[command(hide = true)]
    DemoInstance {
        /// Name it answers with.
        #[arg(long)]
        id: String,
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
        /// Answer each request after this long (a service with real work to do).
        #[arg(long, default_value = "0s")]
        service_time: simian_config::Duration,
    },
}

#[derive(Debug, Args)]
pub struct PolicyArg {
    /// Policy file.
    #[arg(long, short, env = "SIMIAN_POLICY", default_value = "simian.yaml")]
    pub policy: PathBuf,
    /// Store, overriding the policy's `store`: a file (e.g. a state volume when the policy is read-only) or a
    /// postgres:// URL. Its value is never shown (a URL may hold a password).
    #[arg(long, env = "SIMIAN_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

impl PolicyArg {
    /// Load the policy and apply `--store`.
    pub fn load(&self) -> Result<LoadedPolicy> {
        let mut p = load_policy(&self.policy)?;
        if let Some(s) = &self.store {
            p.store = simian_config::StoreAt::parse(s, std::path::Path::new(""))
                .map_err(|why| BadInput(format!("--store (or SIMIAN_STORE): {why}")))?;
        }
        Ok(p)
    }
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Serve /metrics and /healthz here.
    #[arg(long, env = "SIMIAN_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Try to deliver everything pending now, ignoring backoff.
    #[arg(long)]
    pub flush: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Start from this instant (RFC 3339); default now.
    #[arg(long)]
    pub from: Option<DateTime<chrono::FixedOffset>>,
    /// How many fire times per monkey.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Only this monkey.
    #[arg(long)]
    pub monkey: Option<MonkeyName>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Run only these monkeys (repeatable); default all configured.
    #[arg(long = "monkey")]
    pub monkeys: Vec<MonkeyName>,
    /// Plan and report only, whatever the policy's mode.
    #[arg(long)]
    pub dry_run: bool,
    /// RNG seed: the same seed, inventory and history give the same decisions.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Act even outside the policy's calendar.
    #[arg(long)]
    pub ignore_calendar: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RevertArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct HaltArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// Why, for the findings and everyone else on the store (e.g. "customer impact on checkout").
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// How far back, e.g. 7d, 12h.
    #[arg(long, default_value = "7d")]
    pub since: simian_config::Duration,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub policy: PolicyArg,
    /// How long to measure; default the policy's `steady_state.baseline`.
    #[arg(long = "for")]
    pub window: Option<simian_config::Duration>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's folder (policy and store) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// RNG seed for the demo run.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Marks errors that mean "bad input" (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Exit code for an error that ended the command.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<BadInput>().is_some() || e.downcast_ref::<PolicyErrors>().is_some() {
        2
    } else {
        1
    }
}

/// Load a policy; errors keep their type so they exit 2.
pub fn load_policy(path: &Path) -> Result<LoadedPolicy> {
    simian_config::load(path).map_err(anyhow::Error::new)
}
