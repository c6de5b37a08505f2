//! The durable outbox: every message is written to the store before any sink sees it, then delivered
//! sink by sink; a sink that fails waits with backoff, and parts it acknowledged are never sent again.

use chrono::{DateTime, TimeDelta, Utc};
use simian_config::{LoadedPolicy, SinkConfig};
use simian_sinks::http::{DeliveryError, Poster};
use simian_sinks::{jsonl, slack, webhook, Message};
use tracing::{info, warn};

use crate::store::{Backoff, PendingDelivery, Store, StoreError};

/// First retry delay after a failure; doubles per failure.
const BACKOFF_BASE: TimeDelta = TimeDelta::seconds(30);
/// Longest wait between retries of a sink that is down.
const BACKOFF_MAX: TimeDelta = TimeDelta::minutes(30);

/// The sinks whose deliveries go through the outbox (the rest are immediate: `log` writes to stderr,
/// `prometheus` publishes state, which the next push carries in full).
pub fn outbox_sinks(policy: &LoadedPolicy) -> impl Iterator<Item = &SinkConfig> {
    policy.policy.sinks.iter().filter(|s| match s {
        SinkConfig::Jsonl(_) | SinkConfig::Slack(_) | SinkConfig::Webhook(_) => true,
        SinkConfig::Log(_) | SinkConfig::Prometheus(_) => false,
    })
}

/// Write `msg` to the outbox for every outbox sink (or only `only`); `None` when no sink wants it.
pub fn enqueue(
    store: &mut Store,
    policy: &LoadedPolicy,
    msg: &Message,
    only: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let sinks: Vec<&str> =
        outbox_sinks(policy).map(SinkConfig::name).filter(|n| only.is_none_or(|o| o == *n)).collect();
    if sinks.is_empty() {
        return Ok(None);
    }
    let payload = serde_json::to_string(msg).unwrap_or_default();
    store.enqueue(&msg.label(), &payload, &sinks, now).map(Some)
}

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Deliveries completed in this pass.
    pub delivered: usize,
    /// Sinks that failed in this pass, with why (never a URL or secret).
    pub failed: Vec<(String, String)>,
    /// Deliveries still pending afterwards.
    pub pending: usize,
}

/// When to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Sinks in backoff wait, unless `fresh` (a message just written) is queued for them.
    Normal {
        /// Outbox id written by this run.
        fresh: Option<i64>,
    },
    /// Ignore backoff (shutdown flush, `simian outbox --flush`).
    Force,
}

/// Deliver pending messages, oldest first, to every outbox sink of the policy.
pub async fn deliver(
    store: &mut Store,
    policy: &LoadedPolicy,
    poster: &Poster,
    urgency: Urgency,
) -> Result<DeliverySummary, StoreError> {
    let mut summary = DeliverySummary::default();
    let now = Utc::now();
    for sink in outbox_sinks(policy) {
        let name = sink.name();
        let pending = store.pending(Some(name))?;
        if pending.is_empty() {
            continue;
        }
        let backoff = store.backoff(name)?;
        let due = match urgency {
            Urgency::Force => true,
            Urgency::Normal { fresh } => {
                fresh.is_some_and(|id| pending.iter().any(|p| p.outbox_id == id))
                    || backoff.as_ref().is_none_or(|b| b.next_attempt <= now)
            }
        };
        if !due {
            continue;
        }
        let mut sink_ok = true;
        for p in &pending {
            match send(store, policy, sink, poster, p).await? {
                Ok(()) => {
                    store.delivered(p.outbox_id, name, Utc::now())?;
                    summary.delivered += 1;
                }
                Err(e) => {
                    let error = e.to_string();
                    store.delivery_failed(p.outbox_id, name, &error)?;
                    let failures = backoff.as_ref().map_or(0, |b| b.failures) + 1;
                    let next = Backoff { failures, next_attempt: Utc::now() + retry_delay(failures, &e) };
                    store.set_backoff(name, Some((&next, &error)))?;
                    warn!(sink = name, failures, retry_at = %next.next_attempt, error = %error, "delivery failed; kept in the outbox");
                    summary.failed.push((name.to_string(), error));
                    sink_ok = false;
                    // Order matters in chat: later messages wait for the first undelivered one.
                    break;
                }
            }
        }
        if sink_ok && backoff.is_some() {
            info!(sink = name, "sink is back; backlog delivered");
            store.set_backoff(name, None)?;
        }
    }
    summary.pending = store.pending_count()? as usize;
    Ok(summary)
}

/// How long a sink waits after its `failures`-th consecutive failure.
fn retry_delay(failures: u32, e: &DeliveryError) -> TimeDelta {
    let doubled = BACKOFF_BASE * 2i32.saturating_pow(failures.saturating_sub(1).min(10));
    let delay = doubled.min(BACKOFF_MAX);
    match e {
        DeliveryError::Status { retry_after: Some(ra), .. } => {
            delay.max(TimeDelta::from_std(*ra).unwrap_or(BACKOFF_MAX).min(TimeDelta::hours(1)))
        }
        DeliveryError::Status { retry_after: None, .. }
        | DeliveryError::Transport(_)
        | DeliveryError::Client(_) => delay,
    }
}

/// Send one pending message to one sink, resuming after the parts it already acknowledged.
/// The outer error is the store's; the inner one the sink's.
async fn send(
    store: &Store,
    policy: &LoadedPolicy,
    sink: &SinkConfig,
    poster: &Poster,
    p: &PendingDelivery,
) -> Result<Result<(), DeliveryError>, StoreError> {
    let msg: Message = match serde_json::from_str(&p.payload) {
        Ok(m) => m,
        // Written by a newer simian: leave it for that one rather than guess.
        Err(e) => return Ok(Err(DeliveryError::Client(format!("cannot read outbox entry: {e}")))),
    };
    let name = sink.name();
    match sink {
        SinkConfig::Jsonl(j) => {
            let path = policy.resolve(&j.path);
            let min = j.min_severity;
            let written = tokio::task::spawn_blocking(move || jsonl::append(&path, &msg, min)).await;
            Ok(match written {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(DeliveryError::Client(format!("cannot append to {}: {e}", j.path))),
                Err(e) => Err(DeliveryError::Client(format!("jsonl writer stopped: {e}"))),
            })
        }
        SinkConfig::Slack(s) => {
            let parts = slack::payloads(&msg, s);
            for (i, part) in parts.iter().enumerate().skip(p.parts_done as usize) {
                let body = serde_json::to_vec(part).unwrap_or_default();
                if let Err(e) = poster.post_json(&s.webhook_url, &[], &[], body).await {
                    return Ok(Err(e));
                }
                store.delivery_progress(p.outbox_id, name, i as u32 + 1)?;
            }
            Ok(Ok(()))
        }
        SinkConfig::Webhook(w) => {
            let body = webhook::body(&msg, w.min_severity);
            let event = match msg {
                Message::Report { .. } => "report",
                Message::Announcement(_) => "announcement",
            };
            let mut headers = vec![
                ("X-Simian-Event".to_string(), event.to_string()),
                // Lets a receiver drop a repeat after a lost acknowledgement.
                ("X-Simian-Delivery".to_string(), p.outbox_id.to_string()),
            ];
            if let Some(secret) = &w.secret {
                headers.push((
                    "X-Simian-Signature".to_string(),
                    webhook::sign(secret.expose().as_bytes(), &body),
                ));
            }
            let extra: Vec<_> = w.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(poster.post_json(&w.url, &headers, &extra, body).await)
        }
        SinkConfig::Log(_) | SinkConfig::Prometheus(_) => Ok(Ok(())),
    }
}
