//! Command-line interface: the subcommands and how each maps onto the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use simian_config::{LoadedPolicy, MonkeyName, PolicyErrors};
use simian_scheduler::calendar::Calendar;
use simian_scheduler::clock::SystemClock;
use simian_scheduler::engine::{Engine, RoundError};
use simian_scheduler::run::RunOptions;
use simian_scheduler::service;
use simian_scheduler::store::Store;
use simian_sinks::HistoryRow;
use tokio_util::sync::CancellationToken;

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
    /// Run continuously: fire monkeys at their cron times, serve /metrics and /healthz.
    Daemon(DaemonArgs),
    /// Reports and plans not yet delivered to every sink.
    Outbox(OutboxArgs),
    /// Post today's plan (upcoming actions) to the sinks with `announce` now.
    Announce(PolicyArg),
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
    },
}

#[derive(Debug, Args)]
pub struct PolicyArg {
    /// Policy file.
    #[arg(long, short, env = "SIMIAN_POLICY", default_value = "simian.yaml")]
    pub policy: PathBuf,
    /// Store file, overriding the policy's `store` (e.g. a state volume when the policy is read-only).
    #[arg(long, env = "SIMIAN_STORE")]
    pub store: Option<PathBuf>,
}

impl PolicyArg {
    /// Load the policy and apply `--store`.
    pub fn load(&self) -> Result<LoadedPolicy> {
        let mut p = load_policy(&self.policy)?;
        if let Some(s) = &self.store {
            p.store_path = s.clone();
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

fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Load a policy; errors keep their type so they exit 2.
pub fn load_policy(path: &Path) -> Result<LoadedPolicy> {
    simian_config::load(path).map_err(anyhow::Error::new)
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(a) => validate(&a),
        Command::Schedule(a) => schedule(a),
        Command::Run(a) => run(a, false).await,
        Command::Plan(a) => run(a, true).await,
        Command::History(a) => history(a),
        Command::Revert(a) => revert(a).await,
        Command::Daemon(a) => crate::daemon::daemon(a).await,
        Command::Outbox(a) => crate::daemon::outbox(a).await,
        Command::Announce(a) => crate::daemon::announce(a).await,
        Command::Demo(a) => crate::demo::demo(a).await,
        Command::DemoInstance { id, address } => crate::demo::instance(&id, &address).await,
    }
}

fn validate(a: &PolicyArg) -> Result<ExitCode> {
    let path = &a.policy;
    let p = a.load()?;
    let hosts: usize = p
        .policy
        .targets
        .iter()
        .map(|t| match t {
            simian_config::TargetConfig::Hosts(h) => h.hosts.len(),
            // Cloud targets are listed at run time, not in the policy.
            simian_config::TargetConfig::AwsEc2(_) => 0,
        })
        .sum();
    let monkeys: Vec<_> = p.schedules.keys().map(|m| m.as_str()).collect();
    println!(
        "{}: ok — {} target(s), {} host(s), monkeys [{}], mode {}, timezone {}",
        path.display(),
        p.policy.targets.len(),
        hosts,
        monkeys.join(", "),
        p.policy.mode.as_str(),
        p.tz
    );
    Ok(ExitCode::SUCCESS)
}

fn schedule(a: ScheduleArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let from = a.from.map(|f| f.with_timezone(&Utc)).unwrap_or_else(Utc::now);
    let cal = Calendar::new(p.tz, p.calendar.clone());
    let mut rows = Vec::new();
    for (monkey, cron) in &p.schedules {
        if a.monkey.is_some_and(|m| m != *monkey) {
            continue;
        }
        for at in cal.next_fires(cron, from, a.count) {
            rows.push((*monkey, at.fixed_offset()));
        }
    }
    rows.sort_by_key(|(m, at)| (*at, *m));
    match a.format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|(m, at)| serde_json::json!({"monkey": m.as_str(), "at": at.to_rfc3339()}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            if rows.is_empty() {
                println!("no fire times inside the calendar");
            }
            for (m, at) in rows {
                println!("{}  {}", at.format("%Y-%m-%d %H:%M %:z (%a)"), m);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token cancelled on SIGINT or SIGTERM, so a run stops acting and reverts its faults at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("signal received: stopping new actions and reverting active faults");
        t.cancel();
    });
    token
}

/// The engine for a one-shot command, on the system clock.
pub fn engine(policy: &LoadedPolicy) -> Engine {
    Engine::new(policy.clone(), Arc::new(SystemClock))
}

/// Run one round against the policy's fleet (its findings stream to every sink as they are made); shared
/// by `run`, `plan` and `demo`.
pub async fn run_round(policy: &LoadedPolicy, opts: &RunOptions) -> Result<simian_monkeys::Report> {
    // Seeded before the run so a Pushgateway push carries cumulative totals.
    let metrics = match service::pushgateway(policy) {
        Some(_) => {
            let store = Store::open(&policy.store_path).context("cannot open the store")?;
            Some(Arc::new(service::seeded_metrics(&store)?))
        }
        None => None,
    };
    let mut engine = engine(policy);
    if let Some(m) = &metrics {
        engine = engine.with_metrics(m.clone());
    }
    let report = match engine.round(opts).await {
        Ok(r) => r,
        // Wrong credentials or endpoint: a configuration problem, reported once, exit 2.
        Err(RoundError::Config(e)) => return Err(anyhow::Error::new(BadInput(e.to_string()))),
        Err(e) => return Err(anyhow::Error::new(e)),
    };
    if let Some(m) = &metrics {
        service::push_metrics(policy, m, &report).await;
    }
    Ok(report)
}

fn print_report(report: &simian_monkeys::Report, format: Format) -> Result<ExitCode> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Format::Text => print!("{}", simian_sinks::render_report(report, colour())),
    }
    Ok(if report.any_failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn run(a: RunArgs, force_dry: bool) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let opts = RunOptions {
        monkeys: a.monkeys,
        dry_run: a.dry_run || force_dry,
        seed: a.seed,
        ignore_calendar: a.ignore_calendar,
        shutdown: shutdown_on_signals(),
        metrics: None,
    };
    let report = run_round(&p, &opts).await?;
    print_report(&report, a.format)
}

async fn revert(a: RevertArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let report =
        engine(&p).revert(&RunOptions { shutdown: shutdown_on_signals(), ..RunOptions::default() }).await?;
    print_report(&report, a.format)
}

/// History rows for the policy's store since `since` ago.
pub fn history_rows(p: &LoadedPolicy, since: chrono::TimeDelta) -> Result<Vec<HistoryRow>> {
    let store = Store::open(&p.store_path).context("cannot open the store")?;
    let entries = store.history(Utc::now() - since)?;
    Ok(entries
        .into_iter()
        .map(|e| HistoryRow {
            run_id: e.run_id,
            at: e.at.with_timezone(&p.tz).fixed_offset(),
            mode: e.mode,
            finding: e.finding,
        })
        .collect())
}

fn history(a: HistoryArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let rows = history_rows(&p, a.since.chrono())?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Text => print!("{}", simian_sinks::render_history(&rows, colour())),
    }
    Ok(ExitCode::SUCCESS)
}
