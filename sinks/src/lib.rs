//! simian-sinks: where reports go — the terminal table, log lines, the jsonl audit trail, Slack, webhooks
//! and Prometheus; the outbox (in the scheduler's store) feeds them.
#![forbid(unsafe_code)]

pub mod digest;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod http;
pub mod jsonl;
pub mod log;
pub mod message;
pub mod metrics;
pub mod sink;
pub mod slack;
pub mod table;
pub mod text;
pub mod webhook;

pub use message::{Announcement, Message, PlannedAction};
pub use sink::Sink;
pub use table::{render_history, render_report, HistoryRow};
