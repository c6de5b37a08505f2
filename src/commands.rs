//! The one-shot commands (`validate`, `schedule`, `run`, `plan`, `history`, `revert`) and what they share
//! with the daemon and the demo: the engine on the system clock, signal handling, report printing.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use simian_config::LoadedPolicy;
use simian_scheduler::calendar::Calendar;
use simian_scheduler::clock::{Clock, SystemClock};
use simian_scheduler::engine::{Engine, RoundError};
use simian_scheduler::run::RunOptions;
use simian_scheduler::service;
use simian_scheduler::store::Store;
use simian_sinks::HistoryRow;
use tokio_util::sync::CancellationToken;

use crate::args::{BadInput, Format, HistoryArgs, PolicyArg, RevertArgs, RunArgs, ScheduleArgs};

fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn validate(a: &PolicyArg) -> Result<ExitCode> {
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

pub fn schedule(a: ScheduleArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let from = a.from.map(|f| f.with_timezone(&Utc)).unwrap_or_else(|| SystemClock.now());
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

pub async fn run(a: RunArgs, force_dry: bool) -> Result<ExitCode> {
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

pub async fn revert(a: RevertArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let report =
        engine(&p).revert(&RunOptions { shutdown: shutdown_on_signals(), ..RunOptions::default() }).await?;
    print_report(&report, a.format)
}

/// History rows for the policy's store since `since` ago.
pub fn history_rows(p: &LoadedPolicy, since: chrono::TimeDelta) -> Result<Vec<HistoryRow>> {
    let store = Store::open(&p.store_path).context("cannot open the store")?;
    let entries = store.history(simian_scheduler::clock::sub(SystemClock.now(), since))?;
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

pub fn history(a: HistoryArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let rows = history_rows(&p, a.since.chrono())?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Text => print!("{}", simian_sinks::render_history(&rows, colour())),
    }
    Ok(ExitCode::SUCCESS)
}
