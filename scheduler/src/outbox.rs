//! The durable outbox: every message is written to the store before any sink sees it, then delivered
//! sink by sink; a sink that fails waits with backoff, and parts it acknowledged are never sent again.
//! A round's findings stream in as they are recorded and are sealed into messages at its flush points.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use simian_config::{LoadedPolicy, Mode};
use simian_monkeys::Report;
use simian_sinks::http::{DeliveryError, Poster};
use simian_sinks::{Message, Sink};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::store::{Backoff, PendingDelivery, Sealing, Store, StoreError};

/// First retry delay after a failure; doubles per failure.
const BACKOFF_BASE: TimeDelta = TimeDelta::seconds(30);
/// Longest wait between retries of a sink that is down.
const BACKOFF_MAX: TimeDelta = TimeDelta::minutes(30);
/// How long a deliverer's claim on a sink lasts without renewal (renewed after every message).
const CLAIM_LEASE: TimeDelta = TimeDelta::seconds(60);
/// How long a fresh message waits for another deliverer to release its sink before leaving it to them.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The names of the sinks whose deliveries go through the outbox.
pub fn queued_sinks(sinks: &[Sink]) -> Vec<&str> {
    sinks.iter().filter(|s| s.queued()).map(Sink::name).collect()
}

/// Write `msg` to the outbox for every queued sink (or only `only`); `None` when no sink wants it.
pub fn enqueue(
    store: &mut Store,
    sinks: &[Sink],
    msg: &Message,
    only: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let names: Vec<&str> = queued_sinks(sinks).into_iter().filter(|n| only.is_none_or(|o| o == *n)).collect();
    if names.is_empty() {
        return Ok(None);
    }
    let payload =
        serde_json::to_string(msg).map_err(|source| StoreError::Encode { at: store.at().clone(), source })?;
    store.enqueue(&msg.label(), &payload, &names, now).map(Some)
}

/// The report a sealed message carries: the run's header and the message's findings.
fn report_of(s: &Sealing, tz: chrono_tz::Tz, now: DateTime<Utc>, summary: Option<&Report>) -> Report {
    let local = |t: DateTime<Utc>| -> DateTime<FixedOffset> { t.with_timezone(&tz).fixed_offset() };
    let (run_id, seed, mode, started, finished) = match &s.run {
        Some(r) => (r.run_id.clone(), r.seed, r.mode, r.started, r.finished.unwrap_or(now)),
        None => (String::new(), 0, Mode::DryRun, now, now),
    };
    Report {
        run_id,
        mode,
        seed,
        started_at: local(started),
        finished_at: local(finished),
        api_calls: summary.map_or(0, |r| r.api_calls),
        summary: summary.map(|r| r.summary.clone()).unwrap_or_default(),
        findings: s.findings.clone(),
        experiment: summary.and_then(|r| r.experiment.clone()),
        experiments: summary.map(|r| r.experiments.clone()).unwrap_or_default(),
    }
}

/// Seal the open messages (of `run` only, or all of them after a crash) into report messages for the
/// queued sinks, writing them to `log` sinks at once; returns the sealed outbox ids. `last` (the round's
/// own report) lends its summary and API-call count to the final message.
pub fn seal(
    store: &mut Store,
    policy: &LoadedPolicy,
    sinks: &[Sink],
    run: Option<&str>,
    last: Option<&Report>,
    clock: &dyn Clock,
) -> Result<Vec<i64>, StoreError> {
    let names = queued_sinks(sinks);
    let mut sealed = Vec::new();
    for open in store.open_messages(run)? {
        let now = clock.now();
        let mut msg = None;
        let done = store.seal(open.outbox_id, &names, now, |s| {
            let m =
                Message::Report { policy: policy.name.clone(), report: report_of(s, policy.tz, now, last) };
            let payload = serde_json::to_string(&m)?;
            let label = m.label();
            msg = Some(m);
            Ok((label, payload))
        })?;
        if let (Some(_), Some(m)) = (done, msg) {
            for sink in sinks {
                sink.write_now(&m);
            }
            sealed.push(open.outbox_id);
        }
    }
    Ok(sealed)
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urgency {
    /// Sinks in backoff wait, unless one of `fresh` (messages just written) is queued for them.
    Normal {
        /// Outbox ids written by the caller just now.
        fresh: Vec<i64>,
    },
    /// Ignore backoff (shutdown flush, `simian outbox --flush`, recovery after a crash).
    Force,
}

/// Deliver pending messages, oldest first, to every queued sink. Each sink is claimed in the store first,
/// so two deliverers (a round and the daemon loop, or two processes) never send the same message twice.
pub async fn deliver(
    store: &mut Store,
    sinks: &[Sink],
    poster: &Poster,
    urgency: Urgency,
    clock: &dyn Clock,
) -> Result<DeliverySummary, StoreError> {
    let mut summary = DeliverySummary::default();
    let owner = crate::store::owner_id();
    for sink in sinks.iter().filter(|s| s.queued()) {
        let name = sink.name();
        let pending = store.pending(Some(name))?;
        if pending.is_empty() {
            continue;
        }
        let backoff = store.backoff(name)?;
        let fresh = match &urgency {
            Urgency::Force => true,
            Urgency::Normal { fresh } => fresh.iter().any(|id| pending.iter().any(|p| p.outbox_id == *id)),
        };
        if !fresh && backoff.as_ref().is_some_and(|b| b.next_attempt > clock.now()) {
            continue;
        }
        if !claim(store, name, &owner, fresh, clock).await? {
            info!(sink = name, "another deliverer holds this sink; leaving the backlog to it");
            continue;
        }
        let result = deliver_sink(store, sink, poster, &owner, backoff, clock, &mut summary).await;
        store.release_sink(name, &owner)?;
        result?;
    }
    summary.pending = store.pending_count()? as usize;
    Ok(summary)
}

/// Claim `sink`; a caller with fresh messages waits a little for another holder to finish.
async fn claim(
    store: &mut Store,
    sink: &str,
    owner: &str,
    wait: bool,
    clock: &dyn Clock,
) -> Result<bool, StoreError> {
    let deadline = tokio::time::Instant::now() + if wait { CLAIM_WAIT } else { std::time::Duration::ZERO };
    loop {
        let now = clock.now();
        if store.claim_sink(sink, owner, now, now + CLAIM_LEASE)? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Deliver everything pending for one claimed sink, in order, until nothing new arrives.
async fn deliver_sink(
    store: &mut Store,
    sink: &Sink,
    poster: &Poster,
    owner: &str,
    backoff: Option<Backoff>,
    clock: &dyn Clock,
    summary: &mut DeliverySummary,
) -> Result<(), StoreError> {
    let name = sink.name();
    // Messages sealed while this pass runs are picked up by the next read (bounded, so a flood cannot pin
    // the deliverer here forever).
    for _ in 0..8 {
        let pending = store.pending(Some(name))?;
        if pending.is_empty() {
            break;
        }
        for p in &pending {
            match send(store, sink, poster, p).await? {
                Ok(()) => {
                    store.delivered(p.outbox_id, name, clock.now())?;
                    summary.delivered += 1;
                    let now = clock.now();
                    store.claim_sink(name, owner, now, now + CLAIM_LEASE)?;
                }
                Err(e) => {
                    let error = e.to_string();
                    store.delivery_failed(p.outbox_id, name, &error)?;
                    let failures = backoff.as_ref().map_or(0, |b| b.failures) + 1;
                    let next = Backoff { failures, next_attempt: clock.now() + retry_delay(failures, &e) };
                    store.set_backoff(name, Some((&next, &error)))?;
                    warn!(sink = name, failures, retry_at = %next.next_attempt, error = %error, "delivery failed; kept in the outbox");
                    summary.failed.push((name.to_string(), error));
                    // Order matters in chat: later messages wait for the first undelivered one.
                    return Ok(());
                }
            }
        }
    }
    if backoff.is_some() {
        info!(sink = name, "sink is back; backlog delivered");
        store.set_backoff(name, None)?;
    }
    Ok(())
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
    sink: &Sink,
    poster: &Poster,
    p: &PendingDelivery,
) -> Result<Result<(), DeliveryError>, StoreError> {
    let msg: Message = match serde_json::from_str(&p.payload) {
        Ok(m) => m,
        // Written by a newer simian: leave it for that one rather than guess.
        Err(e) => return Ok(Err(DeliveryError::Client(format!("cannot read outbox entry: {e}")))),
    };
    // Each acknowledged part is recorded at once, so a retry — even after a crash — resumes after it.
    let mut recorded: Result<(), StoreError> = Ok(());
    let mut on_part = |n: u32| {
        if recorded.is_ok() {
            recorded = store.delivery_progress(p.outbox_id, sink.name(), n);
        }
    };
    let result = sink.deliver(msg, p.outbox_id, p.parts_done, poster, &mut on_part).await;
    recorded?;
    Ok(result)
}
