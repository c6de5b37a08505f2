//! The control room: the dashboard (`/`, its script and styles, embedded) and the JSON API behind it
//! (`/api/v1/…`, described by `/api/v1/openapi.json`), served by the daemon's HTTP face. It reads the store
//! and the policy, records halts, and asks the daemon's loop to revert a fault; it never acts on the fleet
//! by itself. Every response carries a restrictive Content-Security-Policy; there are no cookies.

mod api;
pub mod auth;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use simian_config::LoadedPolicy;
use simian_monkeys::Report;
use tokio::sync::{mpsc, oneshot, watch};

pub use api::handle;

/// What the control room may ask of the daemon's loop (the one place faults are reverted).
#[derive(Debug)]
pub enum ControlRequest {
    /// Revert open fault `id` now; the report of the revert, or why not.
    Revert {
        /// The fault's journal id.
        id: i64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Report, RevertRefused>>,
    },
    /// List every target's instances now (EC2 calls for `aws_ec2` targets).
    Inventory {
        /// Where the answer goes.
        reply: oneshot::Sender<Inventory>,
    },
}

/// The inventory, for the fleet view: every target's instances, or why they could not be listed.
pub type Inventory = Result<Arc<[simian_monkeys::Instance]>, String>;

/// Why a revert asked for by the control room did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertRefused {
    /// No open fault has that id (reverted already, or never existed).
    NotOpen,
    /// The store or the revert failed.
    Failed(String),
}

/// The control room's view of its daemon.
pub struct Control {
    /// The policy as the daemon runs it now (updated on reload).
    pub policy: watch::Receiver<Arc<LoadedPolicy>>,
    /// Requests to the daemon's loop.
    pub requests: mpsc::Sender<ControlRequest>,
    /// The daemon listens on loopback only: reads need no token.
    pub loopback: bool,
    /// This daemon as an agent.
    pub agent: String,
    /// The API's one store connection, kept between requests (opened again after a failure), used by one
    /// request at a time: a poll every 3 s from each open page neither opens and fills a connection each
    /// time nor spreads over many blocking threads (each would grow an allocator arena of its own).
    pub store: Arc<tokio::sync::Mutex<Option<simian_store::Store>>>,
    /// The last inventory and when it was taken: the fleet view lists it again at most every 15 s.
    pub inventory: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<[simian_monkeys::Instance]>)>>,
}

/// The page and its assets, built into the binary: nothing is fetched at run time.
const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");
const OPENAPI: &str = include_str!("openapi.json");

/// Only this origin's own script, styles and API; no frames, no forms elsewhere, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A response with the control room's headers.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (name, value) in [
        ("content-type", content_type),
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        if let (Ok(n), Ok(v)) = (hyper::header::HeaderName::try_from(name), value.parse()) {
            h.insert(n, v);
        }
    }
    r
}

/// A JSON body.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

/// A JSON error: `{"error": "…"}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// The static assets, by path.
pub(crate) fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (ctype, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", PAGE),
        "/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/app.css" => ("text/css; charset=utf-8", STYLE),
        "/api/v1/openapi.json" => ("application/json", OPENAPI),
        _ => return None,
    };
    Some(respond(StatusCode::OK, ctype, body))
}
