//! The daemon's HTTP face: `/metrics`, `/healthz` and the control room (`crate::control`), hardened for a
//! shared host — a cap on connections
//! derived from the descriptor limit (so the store, executors and reverts always have descriptors left),
//! a header-read timeout and a bound on each connection's life, and no store work on the async workers:
//! `/healthz` reads only the loop's heartbeat, `/metrics` refreshes its gauges on a blocking thread with a
//! short deadline.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use simian_sinks::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::store::Store;

/// `/healthz` fails when the loop has not ticked for this long.
const STALE_AFTER_SECS: i64 = 150;
/// Descriptors kept free for the store, executors, sinks and reverts, whatever the HTTP load.
const FD_RESERVE: u64 = 256;
/// Never more connections than this, however high the descriptor limit.
const MAX_CONNECTIONS: u64 = 512;
/// A client must send its request headers within this long (also the wait for the next keep-alive request).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this (a scrape takes milliseconds).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// `/metrics` waits this long for the store's gauges, then serves the last values.
const GAUGE_DEADLINE: Duration = Duration::from_secs(2);

/// What the handlers read.
pub struct HttpState {
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// The loop's last tick (unix seconds).
    pub heartbeat: Arc<AtomicI64>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Gauges are read from the store at scrape time: a fault held by a running round counts at once.
    pub store_at: simian_store::StoreAt,
    /// A gauge refresh is running (others serve the last values instead of queueing on the store).
    refreshing: Arc<AtomicBool>,
    /// Whether the loop's last use of the store succeeded (`/healthz` says so without touching the store).
    store: Arc<StoreHealth>,
    /// The control room's view of the daemon.
    pub control: crate::control::Control,
}

/// Whether the store answers, as the daemon's loop last found it.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Since when, and why, it does not (`None`: it does).
    down: std::sync::Mutex<Option<(chrono::DateTime<chrono::Utc>, String)>>,
}

impl StoreHealth {
    /// The store answered.
    pub fn up(&self) {
        if let Ok(mut d) = self.down.lock() {
            if d.take().is_some() {
                info!("the store answers again");
            }
        }
    }

    /// The store failed at `now` with `error` (the first failure's time is kept while it lasts).
    pub fn down(&self, now: chrono::DateTime<chrono::Utc>, error: String) {
        if let Ok(mut d) = self.down.lock() {
            if d.is_none() {
                warn!(error = %error, "the store is unreachable: no new actions until it is back");
            }
            let since = d.as_ref().map_or(now, |(t, _)| *t);
            *d = Some((since, error));
        }
    }

    /// `store: up`, or `store: down since …: error`.
    pub fn describe(&self) -> String {
        match self.down.lock().ok().and_then(|d| d.clone()) {
            None => "store: up".into(),
            Some((since, e)) => format!("store: down since {}: {e}", since.to_rfc3339()),
        }
    }

    /// Whether the store answers.
    pub fn is_up(&self) -> bool {
        self.down.lock().map(|d| d.is_none()).unwrap_or(false)
    }
}

impl HttpState {
    /// The state for a daemon.
    pub fn new(
        metrics: Arc<Metrics>,
        heartbeat: Arc<AtomicI64>,
        clock: Arc<dyn Clock>,
        store_at: simian_store::StoreAt,
        store: Arc<StoreHealth>,
        control: crate::control::Control,
    ) -> Self {
        HttpState {
            metrics,
            heartbeat,
            clock,
            store_at,
            refreshing: Arc::new(AtomicBool::new(false)),
            store,
            control,
        }
    }
}

/// Raise the soft descriptor limit to the hard one and derive the connection cap from it.
pub fn connection_cap() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the descriptor limit; assuming 1024");
            1024
        }
    };
    let cap = limit.saturating_sub(FD_RESERVE).div_ceil(2).clamp(1, MAX_CONNECTIONS);
    info!(nofile = limit, max_connections = cap, reserve = FD_RESERVE, "HTTP connection cap");
    cap as usize
}

/// Serve until `shutdown`; at most `cap` connections at once (more are accepted and closed at once, so
/// they never wait holding a descriptor).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    cap: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(cap));
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the reserve keeps reverts working.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("connection cap reached; closing a new connection");
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, svc);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
                Err(_) => debug!("metrics connection outlived its bound; closed"),
            }
        });
    }
}

/// Refresh the store-backed gauges off the async workers, at most one refresh at a time, within a deadline.
async fn refresh_gauges(state: &HttpState) {
    if state.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let (metrics, path, flag) = (state.metrics.clone(), state.store_at.clone(), state.refreshing.clone());
    let job = tokio::task::spawn_blocking(move || {
        let r = Store::open(&path).and_then(|s| crate::service::refresh_gauges(&metrics, &s));
        flag.store(false, Ordering::Release);
        r
    });
    match tokio::time::timeout(GAUGE_DEADLINE, job).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %crate::chain(&e), "cannot refresh gauges from the store"),
        Ok(Err(e)) => warn!(error = %e, "gauge refresh stopped"),
        Err(_) => warn!("the store is busy; serving the last gauge values"),
    }
}

async fn handle(req: Request<hyper::body::Incoming>, state: &HttpState) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = ctype.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            refresh_gauges(state).await;
            state.metrics.set_store_up(state.store.is_up());
            reply(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, state.metrics.encode())
        }
        (&hyper::Method::GET, "/healthz") => {
            let age = state.clock.now().timestamp() - state.heartbeat.load(Ordering::Relaxed);
            // The store's state is reported, not failed on: a daemon whose store is down still reverts what
            // it holds, and restarting it (a failing liveness probe) would only lose that.
            let store = state.store.describe();
            if age <= STALE_AFTER_SECS {
                reply(StatusCode::OK, "text/plain", format!("ok\n{store}\n"))
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("scheduler loop stalled for {age}s\n{store}\n"),
                )
            }
        }
        _ => crate::control::handle(req, state).await,
    }
}
