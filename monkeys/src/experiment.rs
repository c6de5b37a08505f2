//! A steady-state experiment as reports show it: per probe, the baseline → during → recovery figures, the
//! capacity during the fault, the breaches, and the verdict.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use simian_config::Metric;

use crate::MonkeyName;

/// How the experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every tolerance held throughout.
    Held,
    /// A tolerance broke, but not `abort_after` times in a row.
    Deviated,
    /// `abort_after` consecutive breaches: the round stopped and reverted.
    Aborted,
    /// The round did not act: the steady state did not hold before it, or it was a dry run.
    NotStarted,
}

impl Verdict {
    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Held => "held",
            Verdict::Deviated => "deviated",
            Verdict::Aborted => "aborted",
            Verdict::NotStarted => "not_started",
        }
    }

    /// Which of two verdicts a run reports as its own: the one that went worst.
    pub fn rank(self) -> u8 {
        match self {
            Verdict::Aborted => 3,
            Verdict::Deviated => 2,
            Verdict::Held => 1,
            Verdict::NotStarted => 0,
        }
    }
}

/// One experiment (one monkey's round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// The monkey whose fault was measured.
    #[serde(serialize_with = "crate::model::monkey_ser", deserialize_with = "crate::model::monkey_de")]
    pub monkey: MonkeyName,
    /// How it ended.
    pub verdict: Verdict,
    /// Seconds from the revert (or the end of Chaos Monkey's observe window) until every tolerance held
    /// again; `null` when it did not recover within `recovery` or never got there.
    pub recovered_after_s: Option<f64>,
    /// Per probe.
    pub probes: Vec<ProbeResult>,
}

/// One probe's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe's name.
    pub name: String,
    /// `http` or `prometheus`.
    pub kind: String,
    /// Before the first action.
    pub baseline: Option<PhaseStats>,
    /// The fault (the hold, or Chaos Monkey's observe window).
    pub during: Option<PhaseStats>,
    /// After the revert.
    pub recovery: Option<PhaseStats>,
    /// HTTP: throughput during the fault / throughput at baseline.
    pub capacity: Option<f64>,
    /// Every check that broke a tolerance.
    pub breaches: Vec<Breach>,
}

/// A phase's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PhaseStats {
    /// An HTTP probe.
    Http(HttpStats),
    /// A Prometheus probe.
    Value(ValueStats),
}

/// An HTTP probe's phase: throughput counts successful responses; latencies cover every request (a timeout
/// counts as the timeout).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HttpStats {
    /// Successful responses per second.
    pub throughput_rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th-percentile latency, ms.
    pub p99_ms: f64,
    /// Failed requests / all requests.
    pub error_rate: f64,
    /// Requests measured.
    pub samples: u64,
}

/// A Prometheus probe's phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    /// Mean of the values read; `null` when no query answered.
    pub value: Option<f64>,
    /// Lowest value read.
    pub min: Option<f64>,
    /// Highest value read.
    pub max: Option<f64>,
    /// Queries answered with a value.
    pub samples: u64,
}

/// A tolerance that did not hold at one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// When, in the policy's timezone.
    pub at: DateTime<FixedOffset>,
    /// `baseline`, `during` or `recovery`.
    pub phase: String,
    /// The probe.
    pub probe: String,
    /// `error_rate`, `p50`, `p99`, `throughput` or `value`.
    pub metric: String,
    /// What was measured (`null`: nothing could be measured — no responses, or the query failed).
    pub value: Option<f64>,
    /// The tolerance as written.
    pub tolerance: String,
    /// The same in words, e.g. `checkout p99 136ms breaks "<= 2x baseline" (baseline 75ms)`.
    pub message: String,
}

impl PhaseStats {
    /// The value of `metric` in these figures (NaN when it has none).
    pub fn metric(&self, metric: Metric) -> f64 {
        match (self, metric) {
            (PhaseStats::Http(h), Metric::ErrorRate) => h.error_rate,
            (PhaseStats::Http(h), Metric::P50) => h.p50_ms,
            (PhaseStats::Http(h), Metric::P99) => h.p99_ms,
            (PhaseStats::Http(h), Metric::Throughput) => h.throughput_rps,
            (PhaseStats::Value(v), Metric::Value) => v.value.unwrap_or(f64::NAN),
            (PhaseStats::Http(_), Metric::Value)
            | (PhaseStats::Value(_), Metric::ErrorRate | Metric::P50 | Metric::P99 | Metric::Throughput) => {
                f64::NAN
            }
        }
    }
}

impl ProbeResult {
    /// One line for people: baseline → during → recovery for each figure, e.g.
    /// `checkout (baseline → during → recovery): throughput 55.4/s → 30/s → 55.1/s; p50 …`.
    pub fn line(&self) -> String {
        let s = [self.baseline.as_ref(), self.during.as_ref(), self.recovery.as_ref()];
        let metrics: &[(&str, Metric)] = match self.kind.as_str() {
            "http" => &[
                ("throughput", Metric::Throughput),
                ("p50", Metric::P50),
                ("p99", Metric::P99),
                ("errors", Metric::ErrorRate),
            ],
            _ => &[("value", Metric::Value)],
        };
        let figures: Vec<String> = metrics
            .iter()
            .map(|(n, m)| {
                let phases: Vec<String> = s
                    .iter()
                    .map(|p| match p.map(|p| p.metric(*m)) {
                        Some(v) if !v.is_nan() => m.show(v),
                        _ => "–".to_string(),
                    })
                    .collect();
                format!("{n} {}", phases.join(" → "))
            })
            .collect();
        format!("{} (baseline → during → recovery): {}", self.name, figures.join("; "))
    }
}

/// "capacity during the fault: 54 % of baseline".
pub fn capacity_line(c: f64) -> String {
    format!("capacity during the fault: {:.0} % of baseline", c * 100.0)
}
