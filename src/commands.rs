//! The one-shot commands (`validate`, `schedule`, `run`, `plan`, `history`, `revert`, `probe`) and what they share
//! with the daemon and the demo: the engine on the system clock, signal handling, report printing.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use simian_config::LoadedPolicy;
use simian_scheduler::calendar::Calendar;
use simian_scheduler::clock::{Clock, SystemClock};
use simian_scheduler::engine::{Engine, RoundError, HALT_GRACE};
use simian_scheduler::run::RunOptions;
use simian_scheduler::service;
use simian_scheduler::store::{self, Store};
use simian_sinks::HistoryRow;
use tokio_util::sync::CancellationToken;

use crate::args::{
    BadInput, Format, HaltArgs, HistoryArgs, PolicyArg, ProbeArgs, RevertArgs, RunArgs, ScheduleArgs,
};

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

/// The engine for a one-shot command, on the system clock. It keeps the policy (a 100,000-host policy is
/// held once, not copied): read it back with [`Engine::policy`].
pub fn engine(policy: LoadedPolicy) -> Engine {
    Engine::new(policy, Arc::new(SystemClock))
}

/// Run one round against the policy's fleet (its findings stream to every sink as they are made); shared
/// by `run`, `plan` and `demo`.
pub async fn run_round(policy: LoadedPolicy, opts: &RunOptions) -> Result<simian_monkeys::Report> {
    // Seeded before the run so a Pushgateway push carries cumulative totals.
    let metrics = match service::pushgateway(&policy) {
        Some(_) => {
            let store = Store::open(&policy.store).context("cannot open the store")?;
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
        service::push_metrics(engine.policy(), m, &report).await;
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
    let report = run_round(p, &opts).await?;
    print_report(&report, a.format)
}

pub async fn revert(a: RevertArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let report =
        engine(p).revert(&RunOptions { shutdown: shutdown_on_signals(), ..RunOptions::default() }).await?;
    print_report(&report, a.format)
}

/// `simian halt`: record the halt, then see every active fault reverted. Exit 1 if a revert failed.
pub async fn halt(a: HaltArgs) -> Result<ExitCode> {
    // The reason goes into every refused action's finding and chat message: one line, bounded.
    if let Some(why) = a.reason.as_deref().and_then(store::halt_reason_problem) {
        return Err(anyhow::Error::new(BadInput(format!("--reason {why}"))));
    }
    let p = a.policy.load()?;
    let opts = RunOptions { shutdown: shutdown_on_signals(), ..RunOptions::default() };
    let done = engine(p).halt(&store::who(), a.reason.as_deref(), HALT_GRACE, &opts).await?;
    let failed = done.revert.as_ref().is_some_and(|r| r.any_failed());
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&done)?),
        Format::Text => {
            let state = if done.new { "HALTED" } else { "already halted" };
            println!("{state}: {}", done.halt);
            println!("no simian on this store starts an action until `simian resume`");
            println!(
                "{} active fault(s) at the halt; {} reverted by the simian holding them",
                done.open_at_halt, done.reverted_by_holders
            );
            if let Some(report) = &done.revert {
                println!("reverted here (their holder was gone):");
                print!("{}", simian_sinks::render_report(report, colour()));
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `simian resume`: lift the halt.
pub fn resume(a: RevertArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let lifted = engine(p).resume(&store::who())?;
    match a.format {
        Format::Json => {
            println!("{}", serde_json::json!({ "resumed": lifted.is_some(), "halt": lifted }))
        }
        Format::Text => match lifted {
            Some(h) => println!("resumed: lifted the halt ({h}); actions start again at the next fire"),
            None => println!("not halted: nothing to resume"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `simian agents`: one row per agent with a live lease.
pub fn agents(a: RevertArgs) -> Result<ExitCode> {
    let p = a.policy.load()?;
    let rows = Store::open(&p.store).context("cannot open the store")?.agents(SystemClock.now())?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Text => {
            println!(
                "{:<44} {:<16} {:>7}  {:<7}  {:<8} {:<20} {:<20} FAULTS",
                "AGENT", "HOST", "PID", "KIND", "VERSION", "STARTED", "HEARTBEAT"
            );
            let t =
                |at: chrono::DateTime<Utc>| at.with_timezone(&p.tz).format("%Y-%m-%d %H:%M:%S").to_string();
            for r in &rows {
                println!(
                    "{:<44} {:<16} {:>7}  {:<7}  {:<8} {:<20} {:<20} {}",
                    r.agent,
                    r.host,
                    r.pid,
                    r.kind.as_str(),
                    r.version,
                    t(r.started_at),
                    t(r.heartbeat_at),
                    r.active_faults
                );
            }
            println!("{} agent(s)", rows.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// History rows for the policy's store since `since` ago.
pub fn history_rows(p: &LoadedPolicy, since: chrono::TimeDelta) -> Result<Vec<HistoryRow>> {
    let store = Store::open(&p.store).context("cannot open the store")?;
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

/// `simian probe`: the steady state now, no chaos. Exit 1 when an absolute tolerance breaks.
pub async fn probe(a: ProbeArgs) -> Result<ExitCode> {
    use simian_config::Metric;
    use simian_monkeys::experiment::PhaseStats;
    let p = a.policy.load()?;
    let Some(ss) = p.steady_state.as_ref() else {
        return Err(anyhow::Error::new(BadInput(format!(
            "{} has no `steady_state:`; add `steady_state: {{ probes: [...] }}` to measure",
            a.policy.policy.display()
        ))));
    };
    let window = a.window.map_or(ss.baseline, |d| d.std());
    if window.is_zero() {
        return Err(anyhow::Error::new(BadInput(
            "`--for 0s` measures nothing; give e.g. `--for 30s`".into(),
        )));
    }
    let now: simian_probes::Now = Arc::new(|| SystemClock.now());
    let measured =
        simian_probes::measure(ss, window, now, p.tz).await.map_err(|e| BadInput(e.to_string()))?;
    let holds = measured.iter().all(|m| m.tolerances.iter().all(|t| t.status != "breaks"));
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "window_s": window.as_secs_f64(),
                "holds": holds,
                "probes": measured,
            }))?
        ),
        Format::Text => {
            println!(
                "steady state over {}: {}",
                simian_config::Duration(window),
                if holds { "holds" } else { "BREAKS a tolerance" }
            );
            for m in &measured {
                let figures = match &m.stats {
                    Some(PhaseStats::Http(h)) => format!(
                        "throughput {}, p50 {}, p99 {}, errors {}, {} request(s)",
                        Metric::Throughput.show(h.throughput_rps),
                        Metric::P50.show(h.p50_ms),
                        Metric::P99.show(h.p99_ms),
                        Metric::ErrorRate.show(h.error_rate),
                        h.samples
                    ),
                    Some(PhaseStats::Value(v)) => format!(
                        "value {}, min {}, max {}, {} sample(s)",
                        v.value.map_or("–".into(), |x| Metric::Value.show(x)),
                        v.min.map_or("–".into(), |x| Metric::Value.show(x)),
                        v.max.map_or("–".into(), |x| Metric::Value.show(x)),
                        v.samples
                    ),
                    None => "not measured".into(),
                };
                println!("{} ({}): {figures}", simian_sinks::text::printable(&m.name), m.kind);
                for t in &m.tolerances {
                    let value = t.value.map_or("no value".to_string(), |v| t.metric.show(v));
                    let verdict = match t.status {
                        "relative" => format!("judged against a round's baseline (now {value})"),
                        s => format!("{s} ({value})"),
                    };
                    println!("  {} {}: {verdict}", t.metric, t.tolerance);
                }
            }
        }
    }
    Ok(if holds { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
