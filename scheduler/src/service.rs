//! One round as `simian run` and the daemon carry it out: inventory, the run, then the report into the
//! outbox and out to every sink; plus the metrics both publish.

use std::sync::Arc;

use chrono::Utc;
use simian_config::{LoadedPolicy, SinkConfig};
use simian_monkeys::{Instance, Report};
use simian_sinks::http::Poster;
use simian_sinks::metrics::{ActionTotal, Metrics};
use simian_sinks::Message;
use simian_targets::{Fleet, TargetError};
use tracing::{error, warn};

use crate::outbox::{self, DeliverySummary, Urgency};
use crate::run::{revert_all, run_once, RunContext, RunError, RunOptions};
use crate::store::{Store, StoreError};

/// Why a round could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// Wrong credentials or an unreachable endpoint: a configuration problem (exit 2).
    #[error(transparent)]
    Config(TargetError),
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run itself failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The policy re-read from its file, for the guard re-check right before each action.
pub fn reloader(policy: &LoadedPolicy) -> impl Fn() -> Result<LoadedPolicy, String> + Sync {
    let path = policy.path.clone();
    let store = policy.store_path.clone();
    move || match simian_config::load(&path) {
        Ok(mut p) => {
            // A `--store` override applies to the re-read policy too.
            p.store_path = store.clone();
            Ok(p)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The fleet's inventory; configuration problems are the caller's error, listing failures a finding.
async fn inventory(fleet: &Fleet) -> Result<Result<Vec<Instance>, String>, RoundError> {
    match fleet.inventory().await {
        Ok(inv) => Ok(Ok(inv)),
        Err(e @ (TargetError::Credentials { .. } | TargetError::Unreachable { .. })) => {
            Err(RoundError::Config(e))
        }
        Err(e @ TargetError::Inventory { .. }) => Ok(Err(e.to_string())),
    }
}

/// Run one round against the policy's fleet; every finding is in the store when this returns.
pub async fn round(policy: &LoadedPolicy, opts: &RunOptions) -> Result<Report, RoundError> {
    let fleet = Fleet::from_policy(&policy.policy);
    let mut store = Store::open(&policy.store_path)?;
    let inventory = inventory(&fleet).await?;
    let reload = reloader(policy);
    let ctx = RunContext { actuator: &fleet, inventory, reload: &reload };
    let mut report = run_once(policy, opts, ctx, &mut store).await?;
    report.api_calls = fleet.api_calls();
    Ok(report)
}

/// Restore every fault still open in the journal (`simian revert`, daemon shutdown).
pub async fn revert(policy: &LoadedPolicy, opts: &RunOptions) -> Result<Report, RoundError> {
    let fleet = Fleet::from_policy(&policy.policy);
    let mut store = Store::open(&policy.store_path)?;
    let reload = reloader(policy);
    // Reverting needs no inventory: the journal holds everything a restore needs.
    let ctx = RunContext { actuator: &fleet, inventory: Ok(Vec::new()), reload: &reload };
    let mut report = revert_all(policy, opts, ctx, &mut store).await?;
    report.api_calls = fleet.api_calls();
    Ok(report)
}

/// The `log` sinks in force: the configured ones, or one at `info` when no sink is configured.
fn log_levels(policy: &LoadedPolicy) -> Vec<simian_config::Severity> {
    if policy.policy.sinks.is_empty() {
        return vec![simian_config::Severity::Info];
    }
    policy
        .policy
        .sinks
        .iter()
        .filter_map(|s| match s {
            SinkConfig::Log(l) => Some(l.min_severity),
            SinkConfig::Jsonl(_)
            | SinkConfig::Slack(_)
            | SinkConfig::Webhook(_)
            | SinkConfig::Prometheus(_) => None,
        })
        .collect()
}

/// Send a message everywhere: `log` sinks at once, the others through the outbox (written first).
///
/// `only` restricts the outbox part to one sink (announcements go to the sinks that asked for them).
pub async fn publish(
    policy: &LoadedPolicy,
    msg: &Message,
    only: Option<&str>,
    poster: &Poster,
) -> Result<DeliverySummary, StoreError> {
    if only.is_none() {
        for min in log_levels(policy) {
            for line in simian_sinks::log::lines(msg, min) {
                eprintln!("{line}");
            }
        }
    }
    let mut store = Store::open(&policy.store_path)?;
    let fresh = outbox::enqueue(&mut store, policy, msg, only, Utc::now())?;
    let summary = outbox::deliver(&mut store, policy, poster, Urgency::Normal { fresh }).await?;
    // Fully delivered messages are kept a while for `simian outbox`, then dropped; findings stay.
    if let Err(e) = store.prune_outbox(Utc::now() - chrono::TimeDelta::days(30)) {
        warn!(error = %e, "cannot prune the outbox");
    }
    Ok(summary)
}

/// The HTTP client for the sinks; `None` (logged) when it cannot be built: reports then wait in the outbox.
pub fn poster() -> Option<Poster> {
    Poster::new()
        .map_err(|e| error!(error = %e, "cannot build the HTTP client; reports stay in the outbox"))
        .ok()
}

/// A report into the outbox and out to every sink; failures are logged, never fatal (the outbox keeps it).
pub async fn publish_report(policy: &LoadedPolicy, report: &Report, poster: Option<&Poster>) {
    let msg = Message::Report { policy: policy.name.clone(), report: report.clone() };
    let Some(poster) = poster else {
        // No HTTP client: still write the outbox so nothing is lost; the next run delivers.
        if let Err(e) = Store::open(&policy.store_path)
            .and_then(|mut s| outbox::enqueue(&mut s, policy, &msg, None, Utc::now()).map(|_| ()))
        {
            error!(error = %e, "cannot write the report to the outbox");
        }
        return;
    };
    match publish(policy, &msg, None, poster).await {
        Ok(s) if !s.failed.is_empty() => {
            warn!(
                pending = s.pending,
                failed = s.failed.len(),
                "some sinks are down; the outbox keeps their reports"
            )
        }
        Ok(_) => {}
        Err(e) => error!(error = %e, "cannot write the report to the outbox"),
    }
}

/// Metrics seeded with the store's totals, so counters survive restarts and pushes stay monotonic.
pub fn seeded_metrics(store: &Store) -> Result<Metrics, StoreError> {
    let m = Metrics::new();
    let totals: Vec<ActionTotal> = store
        .action_counts()?
        .into_iter()
        .map(|c| ActionTotal { monkey: c.monkey, action: c.action, outcome: c.outcome, count: c.count })
        .collect();
    m.seed_actions(&totals);
    Ok(m)
}

/// Gauges that describe the present (unhealthy instances, active faults, undelivered messages), read
/// from the store right before they are published: at each `/metrics` scrape, before each push.
pub fn refresh_gauges(m: &Metrics, store: &Store) -> Result<(), StoreError> {
    m.set_unhealthy(store.unhealthy_count()?);
    m.set_active_faults(&store.active_faults_by_monkey()?);
    m.set_outbox_pending(store.pending_count()?);
    Ok(())
}

/// The Pushgateway of the policy's `prometheus` sink, if one is set.
pub fn pushgateway(policy: &LoadedPolicy) -> Option<&str> {
    policy.policy.sinks.iter().find_map(|s| match s {
        SinkConfig::Prometheus(p) => p.pushgateway.as_deref(),
        SinkConfig::Log(_) | SinkConfig::Jsonl(_) | SinkConfig::Slack(_) | SinkConfig::Webhook(_) => None,
    })
}

/// After a one-shot run: push the metrics (seeded before the run, plus its report) to the Pushgateway.
pub async fn push_metrics(policy: &LoadedPolicy, metrics: &Arc<Metrics>, report: &Report) {
    let Some(gateway) = pushgateway(policy) else { return };
    metrics.record_report(report);
    match Store::open(&policy.store_path) {
        Ok(store) => {
            if let Err(e) = refresh_gauges(metrics, &store) {
                warn!(error = %e, "cannot read gauges from the store");
            }
        }
        Err(e) => warn!(error = %e, "cannot read gauges from the store"),
    }
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => return warn!(error = %e, "cannot build an HTTP client for the Pushgateway"),
    };
    // A failed push loses nothing: counters are cumulative, the next push carries everything.
    if let Err(e) = simian_sinks::metrics::push(&client, gateway, "simian", &policy.name, metrics).await {
        warn!(error = %e, "cannot push metrics to the Pushgateway");
    }
}
