//! The long-running commands: `simian daemon` (signals wired to the scheduler's daemon), `simian outbox`
//! and `simian announce`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use simian_scheduler::daemon::{DaemonOptions, SystemClock};
use simian_scheduler::outbox::{self};
use simian_sinks::Message;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::{BadInput, DaemonArgs, Format, OutboxArgs, PolicyArg};
use crate::commands::shutdown_on_signals;

/// `simian daemon`: runs until SIGTERM/SIGINT, reloading the policy on SIGHUP.
pub async fn daemon(a: DaemonArgs) -> Result<ExitCode> {
    let policy = a.policy.load()?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy");
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    let opts = DaemonOptions {
        listen: Some(a.listen),
        shutdown: shutdown_on_signals(),
        reload: rx,
        clock: Arc::new(SystemClock),
        on_round: None,
        on_listen: None,
    };
    eprintln!(
        "simian daemon: policy {} ({}), metrics on http://{}/metrics",
        policy.path.display(),
        policy.name,
        a.listen
    );
    match simian_scheduler::daemon::run(policy, opts).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ simian_scheduler::daemon::DaemonError::Listen { .. }) => Err(BadInput(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

/// `simian outbox`: what is still waiting for delivery, per sink; `--flush` tries now.
pub async fn outbox(a: OutboxArgs) -> Result<ExitCode> {
    let engine = crate::commands::engine(a.policy.load()?);
    let tz = engine.policy().tz;
    if a.flush {
        // Seals what a killed run left open, then delivers everything, ignoring backoff.
        let s = engine.recover(true).await?;
        eprintln!("delivered {}, failed sinks {}, pending {}", s.delivered, s.failed.len(), s.pending);
    }
    let store = engine.store().context("cannot open the store")?;
    let configured: Vec<&str> = outbox::queued_sinks(engine.sinks());
    let pending = store.pending(None)?;
    let rows: Vec<serde_json::Value> = pending
        .iter()
        .map(|d| {
            serde_json::json!({
                "outbox_id": d.outbox_id,
                "sink": d.sink,
                "created_at": d.created.with_timezone(&tz).to_rfc3339(),
                "message": d.label,
                "attempts": d.attempts,
                "parts_done": d.parts_done,
                "last_error": d.last_error,
                "sink_configured": configured.contains(&d.sink.as_str()),
            })
        })
        .collect();
    match a.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "pending": rows }))?)
        }
        Format::Text => {
            if pending.is_empty() {
                println!("outbox empty: every report has reached every sink");
            }
            for d in &pending {
                let gone = if configured.contains(&d.sink.as_str()) {
                    ""
                } else {
                    " (sink no longer in the policy)"
                };
                println!(
                    "{}  {:<12} {}  attempts {}{}{}",
                    d.created.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %:z"),
                    d.sink,
                    d.label,
                    d.attempts,
                    d.last_error.as_deref().map(|e| format!("  last error: {e}")).unwrap_or_default(),
                    gone
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `simian announce`: post today's remaining plan now to every sink with `announce` (for cron users).
pub async fn announce(a: PolicyArg) -> Result<ExitCode> {
    let p = a.load()?;
    let sinks: Vec<String> =
        p.policy.sinks.iter().filter(|s| s.announce().is_some()).map(|s| s.name().to_string()).collect();
    if sinks.is_empty() {
        return Err(BadInput(
            "no sink has `announce:`; add e.g. `announce: 30m` to a slack or webhook sink".into(),
        )
        .into());
    }
    let engine = crate::commands::engine(p);
    let p = engine.policy();
    let now = engine.clock().now();
    let inventory = engine.fleet().inventory().await.map_err(|e| BadInput(e.to_string()))?;
    let day = now.with_timezone(&p.tz).date_naive();
    let plan = simian_scheduler::announce::plan(p, &inventory, day, now);
    println!("{} action(s) planned for {day}", plan.actions.len());
    let msg = Message::Announcement(plan);
    let mut failed = 0;
    for sink in &sinks {
        let s = engine.publish(&msg, Some(sink)).await?;
        failed += s.failed.len();
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
