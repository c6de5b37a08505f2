//! What the engine's callers share besides the engine: the policy re-reader for the gate, the metrics
//! (seeded from the store, refreshed where they are published, pushed after one-shot runs).

use std::sync::Arc;

use simian_config::{LoadedPolicy, SinkConfig};
use simian_monkeys::Report;
use simian_sinks::metrics::{ActionTotal, Metrics};
use tracing::warn;

use crate::store::{Store, StoreError};

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
                warn!(error = %crate::chain(&e), "cannot read gauges from the store");
            }
        }
        Err(e) => warn!(error = %crate::chain(&e), "cannot read gauges from the store"),
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
