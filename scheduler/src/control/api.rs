//! `/api/v1/…`: the JSON the dashboard shows, and the three things it can do (halt, resume, revert one
//! fault). Reads go to the store on a blocking thread; a bad request is a 4xx JSON error, never a panic.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use simian_config::{LoadedPolicy, MonkeyName};

use super::auth::{decide, Access};
use super::{asset, error, json as reply, ControlRequest, RevertRefused};
use crate::calendar::Calendar;
use crate::http::HttpState;
use crate::store::{FindingFilter, OpenFault, Store, StoreError};

/// The largest request body read (a halt's reason).
const MAX_BODY: usize = 16 * 1024;
/// The most findings one page holds.
const MAX_LIMIT: u32 = 1000;

/// One API call, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Status,
    Faults,
    Schedule,
    Findings,
    Outbox,
    Fleet,
    Experiments,
    OpenApi,
    Halt,
    Resume,
    Revert(i64),
}

/// The call a method and path name; otherwise the error status and message.
fn route(method: &Method, path: &str) -> Result<Call, (StatusCode, String)> {
    let rest = path.strip_prefix("/api/v1/").unwrap_or_default();
    let segs: Vec<&str> = rest.split('/').collect();
    let (want, call) = match segs.as_slice() {
        ["status"] => (Method::GET, Call::Status),
        ["faults"] => (Method::GET, Call::Faults),
        ["schedule"] => (Method::GET, Call::Schedule),
        ["findings"] => (Method::GET, Call::Findings),
        ["outbox"] => (Method::GET, Call::Outbox),
        ["fleet"] => (Method::GET, Call::Fleet),
        ["experiments"] => (Method::GET, Call::Experiments),
        ["openapi.json"] => (Method::GET, Call::OpenApi),
        ["halt"] => (Method::POST, Call::Halt),
        ["resume"] => (Method::POST, Call::Resume),
        ["faults", id, "revert"] => {
            let id = id.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("`{}` is not a fault id (a positive integer)", id.escape_debug()),
                )
            })?;
            (Method::POST, Call::Revert(id))
        }
        _ => return Err((StatusCode::NOT_FOUND, "no such endpoint; see /api/v1/openapi.json".into())),
    };
    if *method != want {
        return Err((StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes {want}")));
    }
    Ok(call)
}

/// The one method `path` takes, for a 405's `Allow` header.
fn allowed(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("halt" | "resume" | "revert") => "POST",
        _ => "GET",
    }
}

/// A 405 with the `Allow` header RFC 9110 asks for.
fn not_allowed(why: String, allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, why);
    r.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static(allow));
    r
}

/// Serve the page, its assets and the API.
pub async fn handle(req: Request<Incoming>, state: &HttpState) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if !path.starts_with("/api/v1/") {
        return match (req.method(), asset(&path)) {
            (&Method::GET | &Method::HEAD, Some(r)) => r,
            (_, Some(_)) => not_allowed("the page takes GET".into(), "GET, HEAD"),
            (_, None) => {
                error(StatusCode::NOT_FOUND, "not found; try /, /api/v1/status, /metrics or /healthz")
            }
        };
    }
    let call = match route(req.method(), &path) {
        Ok(c) => c,
        Err((StatusCode::METHOD_NOT_ALLOWED, why)) => return not_allowed(why, allowed(&path)),
        Err((status, why)) => return error(status, why),
    };
    let control = &state.control;
    let token = control.policy.borrow().policy.api.as_ref().and_then(|a| a.token.clone());
    let authorization = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let write = matches!(call, Call::Halt | Call::Resume | Call::Revert(_));
    if let Access::Denied(status, why) =
        decide(write, control.loopback, token.as_ref().map(|t| t.expose()), authorization)
    {
        let mut r = error(status, why);
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
        }
        return r;
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    match call {
        Call::OpenApi => asset(&path).unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no document")),
        Call::Status => read(state, status).await,
        Call::Faults => read(state, |store, p, _| faults(store, p)).await,
        Call::Schedule => match Count::parse(&query) {
            Ok(n) => {
                let p = state.control.policy.borrow().clone();
                reply(StatusCode::OK, &schedule(&p, state.clock.now(), n.0))
            }
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        },
        Call::Findings => match findings_filter(&query) {
            Ok(f) => read(state, move |store, p, _| findings(store, p, &f)).await,
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        },
        Call::Outbox => read(state, |store, p, _| outbox(store, p)).await,
        Call::Experiments => match Count::parse_as(&query, "limit", 10, 50) {
            Ok(n) => read(state, move |store, p, _| experiments(store, p, n.0)).await,
            Err(why) => error(StatusCode::BAD_REQUEST, why),
        },
        Call::Fleet => match (query.is_empty(), inventory(state).await) {
            (false, _) => error(StatusCode::BAD_REQUEST, "fleet takes no parameters"),
            (true, Ok(all)) => read(state, move |store, p, _| fleet(store, p, &all)).await,
            (true, Err(why)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot list the fleet: {why}"))
            }
        },
        Call::Halt => {
            let reason = match halt_reason(req).await {
                Ok(r) => r,
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
            };
            let by = control_room();
            read(state, move |store, p, now| {
                let (halt, new) = store.halt(&by, reason.as_deref(), now)?;
                tracing::warn!(%halt, "halt recorded from the control room");
                Ok(json!({ "halt": halt_json(&halt, p), "new": new }))
            })
            .await
        }
        Call::Resume => {
            let by = control_room();
            read(state, move |store, p, now| {
                let lifted = store.resume(&by, now)?;
                if let Some(h) = &lifted {
                    tracing::info!(halt = %h, "halt lifted from the control room");
                }
                Ok(json!({ "resumed": lifted.is_some(), "halt": lifted.as_ref().map(|h| halt_json(h, p)) }))
            })
            .await
        }
        Call::Revert(id) => revert(state, id).await,
    }
}

/// Runs `f` with the store on a blocking thread; a store failure is a 503 (the store, not the request).
async fn read<F>(state: &HttpState, f: F) -> Response<Full<Bytes>>
where
    F: FnOnce(&mut Store, &LoadedPolicy, DateTime<Utc>) -> Result<Value, StoreError> + Send + 'static,
{
    let at = state.store_at.clone();
    let policy = state.control.policy.borrow().clone();
    let now = state.clock.now();
    let mut slot = state.control.store.clone().lock_owned().await;
    let job = tokio::task::spawn_blocking(move || {
        let mut store = match slot.take() {
            Some(s) => s,
            None => Store::open(&at)?,
        };
        let r = f(&mut store, &policy, now);
        // A connection that failed is not kept: the next request opens a fresh one.
        if r.is_ok() {
            *slot = Some(store);
        }
        r
    });
    match job.await {
        Ok(Ok(v)) => reply(StatusCode::OK, &v),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("the store: {}", crate::chain(&e))),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the store's reader stopped"),
    }
}

/// Who halts or resumes through the control room, as the halt records it.
fn control_room() -> String {
    format!("control room ({})", crate::store::who())
}

fn at(t: DateTime<Utc>, p: &LoadedPolicy) -> String {
    t.with_timezone(&p.tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn halt_json(h: &crate::store::Halt, p: &LoadedPolicy) -> Value {
    json!({ "by": h.by, "reason": h.reason, "at": at(h.at, p) })
}

fn status(store: &mut Store, p: &LoadedPolicy, now: DateTime<Utc>) -> Result<Value, StoreError> {
    let halt = store.current_halt()?;
    let active = store.open_faults(None)?.len();
    let cal = Calendar::new(p.tz, p.calendar.clone());
    let kill_switch =
        p.kill_switch.as_ref().map(|k| json!({ "path": k.display().to_string(), "engaged": k.exists() }));
    Ok(json!({
        "policy": p.name,
        "mode": p.policy.mode.to_string(),
        "timezone": p.tz.name(),
        "now": at(now, p),
        "halt": halt.as_ref().map(|h| halt_json(h, p)),
        "kill_switch": kill_switch,
        "calendar": { "configured": p.calendar.is_some(), "open": cal.allows(now), "refusal": cal.refusal(now) },
        "active_faults": active,
    }))
}

fn fault_json(f: &OpenFault, p: &LoadedPolicy) -> Value {
    json!({
        "id": f.id,
        "monkey": f.monkey.as_str(),
        "kind": f.kind.as_str(),
        "target": f.target,
        "instance": f.instance,
        "group": f.group,
        "zone": f.zone,
        "state": match f.state { crate::store::FaultState::Intent => "intent", crate::store::FaultState::Active => "active" },
        "started_at": at(f.created, p),
        "restore_at": at(f.expires, p),
        "restore_at_unix_ms": f.expires.timestamp_millis(),
        "owner": f.owner,
        "error": f.error,
    })
}

fn faults(store: &mut Store, p: &LoadedPolicy) -> Result<Value, StoreError> {
    Ok(Value::Array(store.open_faults(None)?.iter().map(|f| fault_json(f, p)).collect()))
}

/// One count parameter: `?count=N` (1–20, default 3) for the schedule, `?limit=N` for experiments.
struct Count(usize);

impl Count {
    fn parse(query: &str) -> Result<Count, String> {
        Count::parse_as(query, "count", 3, 20)
    }

    /// `?name=N`, 1 to `max`, `default` when absent; any other parameter is refused.
    fn parse_as(query: &str, name: &str, default: usize, max: usize) -> Result<Count, String> {
        let mut n = default;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k != name {
                return Err(format!("unknown parameter `{}`; this takes {name}", k.escape_debug()));
            }
            n = v
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(format!("{name} must be 1 to {max}"))?;
        }
        Ok(Count(n))
    }
}

/// What a monkey's fire would touch, from the policy (the same plan `simian schedule` shows the times of).
fn touches(p: &LoadedPolicy, m: MonkeyName) -> String {
    let c = &p.policy.monkeys;
    match m {
        MonkeyName::Chaos => "one instance in each opted-in group".into(),
        MonkeyName::Gorilla => c.gorilla.as_ref().map_or_else(String::new, |g| match g.action {
            simian_config::GorillaAction::Terminate => format!("zone {}: terminate", g.zone),
            simian_config::GorillaAction::Isolate => format!("zone {}: isolate", g.zone),
        }),
        MonkeyName::Latency => "delay on opted-in instances".into(),
        MonkeyName::Doctor => "health probes (reports only)".into(),
        MonkeyName::TenEighteen => "timezone, locale and clock checks (reports only)".into(),
    }
}

/// Each monkey's next `n` cron times, flagged inside or outside the calendar (outside ones do not fire).
fn schedule(p: &LoadedPolicy, now: DateTime<Utc>, n: usize) -> Value {
    let cal = Calendar::new(p.tz, p.calendar.clone());
    let raw = Calendar::new(p.tz, None);
    let fire = |m: MonkeyName, t: DateTime<chrono_tz::Tz>, in_calendar: bool| {
        let utc = t.with_timezone(&Utc);
        let v = json!({
            "monkey": m.as_str(),
            "at": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "at_utc": utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "in_calendar": in_calendar,
            "touches": touches(p, m),
        });
        (utc, v)
    };
    let mut rows = Vec::new();
    for (m, cron) in &p.schedules {
        for t in raw.next_fires(cron, now, n) {
            let in_calendar = cal.allows(t.with_timezone(&Utc));
            rows.push(fire(*m, t, in_calendar));
        }
        // The next one that really fires, when the raw ones above all fall outside the calendar.
        if let Some(t) = cal.next_fires(cron, now, 1).first() {
            let utc = t.with_timezone(&Utc);
            if !rows.iter().any(|(u, v)| *u == utc && v["monkey"] == m.as_str()) {
                rows.push(fire(*m, *t, true));
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    Value::Array(rows.into_iter().map(|(_, v)| v).collect())
}

/// `?monkey=&severity=&outcome=&limit=&before=`, each checked.
fn findings_filter(query: &str) -> Result<FindingFilter, String> {
    let mut f = FindingFilter { limit: 100, ..FindingFilter::default() };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "monkey" => {
                let m: MonkeyName =
                    v.parse().map_err(|_| format!("unknown monkey `{}`", v.escape_debug()))?;
                f.monkey = Some(m.as_str().to_string());
            }
            "severity" if ["info", "warning", "critical"].contains(&v.as_str()) => f.severity = Some(v),
            "severity" => return Err("severity is info, warning or critical".into()),
            "outcome" if ["planned", "done", "failed", "skipped"].contains(&v.as_str()) => {
                f.outcome = Some(v)
            }
            "outcome" => return Err("outcome is planned, done, failed or skipped".into()),
            "limit" => {
                f.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or(format!("limit must be 1 to {MAX_LIMIT}"))?;
            }
            "after" => {
                let after = v.parse().ok().filter(|n: &i64| *n >= 0);
                f.after = Some(after.ok_or("after must be a finding id (an integer, 0 or more)")?);
            }
            "before" => {
                f.before = Some(
                    v.parse()
                        .ok()
                        .filter(|n: &i64| *n > 0)
                        .ok_or("before must be a finding id (a positive integer)")?,
                );
            }
            other => {
                return Err(format!(
                "unknown parameter `{}`; findings takes monkey, severity, outcome, limit, before and after",
                other.escape_debug()
            ))
            }
        }
    }
    Ok(f)
}

fn findings(store: &mut Store, p: &LoadedPolicy, f: &FindingFilter) -> Result<Value, StoreError> {
    let page = store.findings(f)?;
    let next = (page.len() == f.limit as usize).then(|| page.last().map(|x| x.id)).flatten();
    let rows: Vec<Value> = page
        .into_iter()
        .map(|x| {
            let mut v = serde_json::to_value(&x.entry.finding).unwrap_or_else(|_| json!({}));
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), json!(x.id));
                o.insert("run_id".into(), json!(x.entry.run_id));
                o.insert("at".into(), json!(at(x.entry.at, p)));
                o.insert("mode".into(), json!(x.entry.mode.to_string()));
            }
            v
        })
        .collect();
    Ok(json!({ "findings": rows, "next_before": next }))
}

fn outbox(store: &mut Store, p: &LoadedPolicy) -> Result<Value, StoreError> {
    /// One sink's backlog.
    #[derive(Default)]
    struct Backlog {
        pending: usize,
        oldest: Option<DateTime<Utc>>,
        attempts: u32,
        last_error: Option<String>,
    }
    let mut per: std::collections::BTreeMap<String, Backlog> = Default::default();
    for d in store.pending(None)? {
        let e = per.entry(d.sink.clone()).or_default();
        e.pending += 1;
        e.oldest = Some(e.oldest.map_or(d.created, |t| t.min(d.created)));
        e.attempts = e.attempts.max(d.attempts);
        if d.last_error.is_some() {
            e.last_error = d.last_error;
        }
    }
    let mut sinks = Vec::new();
    for (sink, b) in per {
        let next = store.backoff(&sink)?.map(|b| at(b.next_attempt, p));
        sinks.push(json!({
            "sink": sink,
            "pending": b.pending,
            "oldest_at": b.oldest.map(|t| at(t, p)),
            "attempts": b.attempts,
            "last_error": b.last_error,
            "next_attempt_at": next,
        }));
    }
    Ok(json!({ "sinks": sinks }))
}

/// The inventory, at most 15 s old (the daemon's loop lists it; EC2 is not called at every poll).
async fn inventory(state: &HttpState) -> Result<std::sync::Arc<[simian_monkeys::Instance]>, String> {
    let mut cache = state.control.inventory.lock().await;
    if let Some((_, all)) = cache.as_ref().filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(15))
    {
        return Ok(all.clone());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ask = ControlRequest::Inventory { reply: tx };
    state.control.requests.send(ask).await.map_err(|_| "the daemon is stopping".to_string())?;
    let all = tokio::time::timeout(std::time::Duration::from_secs(60), rx)
        .await
        .map_err(|_| "no inventory within 60 s".to_string())?
        .map_err(|_| "the daemon is stopping".to_string())??;
    *cache = Some((tokio::time::Instant::now(), all.clone()));
    Ok(all)
}

/// The most members listed per group (the counts cover them all).
const MEMBERS_SHOWN: usize = 200;

/// One group's counts: instances, eligible ones, unhealthy ones.
type GroupCounts = (usize, usize, usize);

/// Targets → groups → instances, each with its eligibility and Doctor's health.
fn fleet(store: &mut Store, p: &LoadedPolicy, all: &[simian_monkeys::Instance]) -> Result<Value, StoreError> {
    use simian_monkeys::eligibility::{eligibility, Eligibility};
    use std::collections::BTreeMap;
    let health = store.health()?;
    let excl = crate::run::exclusions(p);
    let mut targets: BTreeMap<&str, BTreeMap<&str, Vec<Value>>> = BTreeMap::new();
    let mut counts: BTreeMap<(&str, &str), GroupCounts> = BTreeMap::new();
    for inst in all {
        let opt_in = crate::run::opt_in_for(p, &inst.target);
        let (state, why) = match excl.as_ref().map(|e| eligibility(inst, &opt_in, e)) {
            Ok(Eligibility::Eligible) => ("eligible", None),
            Ok(Eligibility::NotOptedIn) => ("not opted in", None),
            Ok(Eligibility::Excluded(why)) if inst.group.is_empty() => ("no group", Some(why)),
            Ok(Eligibility::Excluded(why)) => ("excluded", Some(why)),
            Err(why) => ("excluded", Some(why.clone())),
        };
        let h = health.get(&(inst.target.clone(), inst.id.clone())).map_or("unknown", |h| h.status.as_str());
        let c = counts.entry((inst.target.as_str(), inst.group.as_str())).or_default();
        c.0 += 1;
        c.1 += usize::from(state == "eligible");
        c.2 += usize::from(h == "unhealthy");
        let members = targets.entry(&inst.target).or_default().entry(&inst.group).or_default();
        if members.len() < MEMBERS_SHOWN {
            members.push(
                json!({ "id": inst.id, "zone": inst.zone, "eligibility": state, "why": why, "health": h }),
            );
        }
    }
    let targets: Vec<Value> = targets
        .into_iter()
        .map(|(t, groups)| {
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, members)| {
                    let (n, eligible, unhealthy) = counts.get(&(t, g)).copied().unwrap_or_default();
                    json!({ "name": g, "instances": n, "eligible": eligible, "unhealthy": unhealthy,
                            "members_shown": members.len(), "members": members })
                })
                .collect();
            json!({ "name": t, "groups": groups })
        })
        .collect();
    Ok(json!({ "instances": all.len(), "targets": targets }))
}

/// The last `n` probes' steady-state results: baseline → during → recovery, capacity, verdict.
fn experiments(store: &mut Store, p: &LoadedPolicy, n: usize) -> Result<Value, StoreError> {
    let filter = FindingFilter { action: Some("experiment".into()), limit: 500, ..FindingFilter::default() };
    let phase = |d: &std::collections::BTreeMap<String, String>, k: &str| {
        d.get(k).and_then(|j| serde_json::from_str::<Value>(j).ok()).unwrap_or(Value::Null)
    };
    let rows: Vec<Value> = store
        .findings(&filter)?
        .into_iter()
        .filter(|x| x.entry.finding.details.contains_key("probe"))
        .take(n)
        .map(|x| {
            let d = &x.entry.finding.details;
            json!({
                "id": x.id,
                "run_id": x.entry.run_id,
                "at": at(x.entry.at, p),
                "monkey": x.entry.finding.monkey.as_str(),
                "probe": d.get("probe"),
                "kind": d.get("kind"),
                "verdict": d.get("verdict"),
                "capacity": d.get("capacity").and_then(|c| c.parse::<f64>().ok()),
                "baseline": phase(d, "baseline"),
                "during": phase(d, "during"),
                "recovery": phase(d, "recovery"),
            })
        })
        .collect();
    Ok(Value::Array(rows))
}

/// A halt's optional body: `{"reason": "…"}` (one line, at most 500 characters).
async fn halt_reason(req: Request<Incoming>) -> Result<Option<String>, String> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| format!("the body must be JSON of at most {MAX_BODY} bytes"))?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("the body must be a JSON object: {\"reason\": \"…\"}".into());
    };
    if let Some(k) = obj.keys().find(|k| *k != "reason") {
        return Err(format!("unknown field `{}`; a halt takes reason", k.escape_debug()));
    }
    match obj.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) => match crate::store::halt_reason_problem(r) {
            Some(why) => Err(format!("the reason {why}")),
            None => Ok(Some(r.clone()).filter(|r| !r.trim().is_empty())),
        },
        Some(_) => Err("reason must be a string".into()),
    }
}

/// Asks the daemon's loop to revert fault `id` and waits for it (a restore takes seconds at most).
async fn revert(state: &HttpState, id: i64) -> Response<Full<Bytes>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state.control.requests.send(ControlRequest::Revert { id, reply: tx }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match tokio::time::timeout(std::time::Duration::from_secs(120), rx).await {
        Ok(Ok(Ok(report))) => {
            let findings: Vec<Value> =
                report.findings.iter().map(|f| serde_json::to_value(f).unwrap_or_default()).collect();
            let ok = report.findings.iter().all(|f| f.outcome != simian_monkeys::Outcome::Failed);
            reply(StatusCode::OK, &json!({ "id": id, "reverted": ok, "findings": findings }))
        }
        Ok(Ok(Err(RevertRefused::NotOpen))) => error(
            StatusCode::NOT_FOUND,
            format!("fault {id} is not open (reverted already, or no such fault)"),
        ),
        Ok(Ok(Err(RevertRefused::Failed(why)))) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Ok(Err(_)) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the revert did not finish within 120 s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every API route: the router below and the OpenAPI document must agree (a test checks).
    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/faults"),
        ("GET", "/api/v1/schedule"),
        ("GET", "/api/v1/findings"),
        ("GET", "/api/v1/outbox"),
        ("GET", "/api/v1/fleet"),
        ("GET", "/api/v1/experiments"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/halt"),
        ("POST", "/api/v1/resume"),
        ("POST", "/api/v1/faults/{id}/revert"),
    ];

    #[test]
    fn every_route_is_in_the_openapi_document_and_routes_as_named() {
        let doc: Value = serde_json::from_str(super::super::OPENAPI).expect("the OpenAPI document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for (method, path) in ROUTES {
            let op = &paths.get(*path).unwrap_or_else(|| panic!("{path} is not documented"))
                [method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} is not documented");
            let concrete = path.replace("{id}", "7");
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(route(&m, &concrete).is_ok(), "{method} {concrete} does not route");
        }
        let documented: usize = paths
            .values()
            .map(|v| v.as_object().map_or(0, |o| o.keys().filter(|k| *k != "parameters").count()))
            .sum();
        assert_eq!(documented, ROUTES.len(), "the document names an operation the router does not serve");
    }

    #[test]
    fn bad_paths_methods_and_queries_are_4xx_with_a_reason() {
        assert_eq!(route(&Method::GET, "/api/v1/nope").unwrap_err().0, StatusCode::NOT_FOUND);
        assert_eq!(route(&Method::POST, "/api/v1/status").unwrap_err().0, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(route(&Method::GET, "/api/v1/halt").unwrap_err().0, StatusCode::METHOD_NOT_ALLOWED);
        for id in ["x", "-1", "0", "99999999999999999999"] {
            let path = format!("/api/v1/faults/{id}/revert");
            assert_eq!(route(&Method::POST, &path).unwrap_err().0, StatusCode::BAD_REQUEST, "{id}");
        }
        assert_eq!(route(&Method::POST, "/api/v1/faults/12/revert"), Ok(Call::Revert(12)));
        for q in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "before=0",
            "monkey=kong",
            "severity=loud",
            "outcome=maybe",
            "x=1",
        ] {
            assert!(findings_filter(q).is_err(), "{q}");
        }
        let f = findings_filter("monkey=gorilla&severity=warning&outcome=done&limit=500&before=42").unwrap();
        assert_eq!(
            f,
            FindingFilter {
                monkey: Some("gorilla".into()),
                severity: Some("warning".into()),
                outcome: Some("done".into()),
                before: Some(42),
                limit: 500,
                action: None,
                after: None
            }
        );
        assert!(Count::parse("count=0").is_err() && Count::parse("count=3").is_ok());
    }
}
