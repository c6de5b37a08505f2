//! What the outbox holds and sinks deliver: a run's report, or the day's plan (announcement).

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use simian_monkeys::{Finding, Report, Severity};

/// One unit of delivery; stored as JSON in the outbox before any sink sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// What one run found and did.
    Report {
        /// The policy's name.
        policy: String,
        /// The report, unfiltered (each sink applies its own `min_severity`).
        report: Report,
    },
    /// The day's upcoming actions, sent `announce` before the first of them.
    Announcement(Announcement),
}

impl Message {
    /// A short label for logs and `simian outbox` (never contains a secret).
    pub fn label(&self) -> String {
        match self {
            Message::Report { report, .. } => {
                format!("report {} ({} findings)", report.run_id, report.findings.len())
            }
            Message::Announcement(a) => format!("plan for {} ({} actions)", a.date, a.actions.len()),
        }
    }
}

/// The day's plan for chat, so owners can object (kill switch) in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The policy's name.
    pub policy: String,
    /// The local date planned.
    pub date: NaiveDate,
    /// The policy's timezone (IANA name).
    pub timezone: String,
    /// `dry-run` or `live`.
    pub mode: simian_monkeys::Mode,
    /// Kill-switch file that stops everything, when the policy has one.
    #[serde(default)]
    pub kill_switch: Option<String>,
    /// The upcoming actions, in time order.
    pub actions: Vec<PlannedAction>,
}

/// One upcoming action of the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// Monkey name (`chaos`, `gorilla`, `latency`).
    pub monkey: String,
    /// When it fires (policy timezone).
    pub at: DateTime<FixedOffset>,
    /// Target the group belongs to, when known.
    #[serde(default)]
    pub target: Option<String>,
    /// Group that may be hit; `None` = every eligible group.
    #[serde(default)]
    pub group: Option<String>,
    /// Zone that may be hit; `None` = any / not zone-scoped.
    #[serde(default)]
    pub zone: Option<String>,
    /// What will happen, in a phrase (e.g. "terminate one instance", "isolate a random zone for 10m").
    pub what: String,
}

/// The findings of `report` at or above `min`, in report order.
pub fn at_least(report: &Report, min: Severity) -> impl Iterator<Item = &Finding> {
    report.findings.iter().filter(move |f| f.severity >= min)
}
