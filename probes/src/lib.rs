//! simian-probes: how simian measures a service — closed-loop HTTP load with HDR histograms and PromQL
//! instant queries — and the experiment that moves them through baseline, fault and recovery.
#![forbid(unsafe_code)]

pub mod experiment;
mod http;
mod prometheus;
pub mod stats;

pub use experiment::{Experiment, Now, Phase};

use serde::Serialize;
use simian_config::steady::SteadyState;
use simian_config::MonkeyName;
use simian_monkeys::experiment::{PhaseStats, ProbeResult};

/// How long probes run before their figures count (connections opened, the closed loop steady).
pub const WARM_UP: std::time::Duration = std::time::Duration::from_millis(500);

/// A probe that cannot even start (its settings do not make a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The probe's settings cannot be used.
    #[error("probe `{probe}`: {why}")]
    Setup {
        /// The probe.
        probe: String,
        /// Why.
        why: String,
    },
}

/// `simian probe`: one probe's figures over the window and what its tolerances say about them now.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// The probe.
    pub name: String,
    /// `http` or `prometheus`.
    pub kind: String,
    /// The figures.
    pub stats: Option<PhaseStats>,
    /// Each tolerance: `holds`, `breaks` (with the value), or `relative` (judged against a round's baseline).
    pub tolerances: Vec<Judged>,
}

/// A tolerance judged on a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    /// The metric.
    pub metric: simian_config::Metric,
    /// As written.
    pub tolerance: String,
    /// `holds`, `breaks` or `relative`.
    pub status: &'static str,
    /// The measured value (`null` when none could be measured).
    pub value: Option<f64>,
}

/// Measure the steady state for `window` without any fault; judge the absolute tolerances.
pub async fn measure(
    ss: &SteadyState,
    window: std::time::Duration,
    now: Now,
    tz: chrono_tz::Tz,
) -> Result<Vec<Measured>, ProbeError> {
    let exp = Experiment::start(MonkeyName::Chaos, ss, now, tz)?;
    // As before a round's baseline: figures start once the connections are open.
    tokio::time::sleep(WARM_UP).await;
    exp.enter(Phase::Baseline);
    tokio::time::sleep(window).await;
    exp.enter(Phase::During);
    let report = exp.finish().await;
    Ok(ss
        .probes
        .iter()
        .zip(report.probes)
        .map(|(p, r): (_, ProbeResult)| {
            let tolerances = p
                .tolerances
                .iter()
                .map(|(m, t)| {
                    let v = r.baseline.as_ref().map_or(f64::NAN, |s| s.metric(*m));
                    Judged {
                        metric: *m,
                        tolerance: t.text.clone(),
                        status: if t.is_relative() {
                            "relative"
                        } else if t.holds(v, None) {
                            "holds"
                        } else {
                            "breaks"
                        },
                        value: (!v.is_nan()).then_some(v),
                    }
                })
                .collect();
            Measured { name: r.name, kind: r.kind, stats: r.baseline, tolerances }
        })
        .collect())
}
