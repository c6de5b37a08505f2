//! Every acting round as an experiment: the steady state is measured for `baseline` right before the first
//! action (a breach of an absolute tolerance means the round does not act), watched during the fault (an
//! abort cancels the round's abort token: the gate refuses, the hold ends, the revert runs at once), and
//! after the revert until it holds again or `recovery` runs out.

use std::collections::BTreeMap;
use std::sync::Arc;

use simian_config::{Metric, MonkeyName, ProbeChoice};
use simian_monkeys::experiment::{Breach, Experiment as ExperimentReport, PhaseStats, ProbeResult};
use simian_monkeys::{Action, Actuator, Finding, Mode, Outcome, Severity};
use simian_probes::{Experiment, Now};
use tracing::{info, warn};

use super::{Out, Round, RunError};

/// Whether the round may go on to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Go {
    /// Act (in dry-run: report what would be done).
    Ahead,
    /// Do not act; the finding saying why is out.
    Stop,
}

fn finding(m: MonkeyName, action: Action, outcome: Outcome, severity: Severity, msg: String) -> Finding {
    let mut f = Finding::run_level(m, outcome, severity, msg);
    f.action = action;
    f
}

fn breach_details(b: &Breach) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("probe".to_string(), b.probe.clone()),
        ("metric".to_string(), b.metric.clone()),
        ("value".to_string(), b.value.map_or("none".to_string(), |v| v.to_string())),
        ("tolerance".to_string(), b.tolerance.clone()),
    ])
}

impl<A: Actuator> Round<'_, '_, A> {
    /// Right before monkey `m`'s first action: measure the baseline under the probes `choice` selects. Live
    /// and holding → the fault phase starts, watched; otherwise the experiment ends here.
    pub(crate) async fn baseline(
        &mut self,
        m: MonkeyName,
        choice: Option<&ProbeChoice>,
        out: &mut Out<'_>,
    ) -> Result<Go, RunError> {
        let Some(ss) = self.policy.steady_state.as_ref().and_then(|s| s.for_monkey(choice)) else {
            return Ok(Go::Ahead);
        };
        let clock = self.ctx.clock.clone();
        let now: Now = Arc::new(move || clock.now());
        let mut exp = match Experiment::start(m, &ss, now, self.policy.tz) {
            Ok(e) => e,
            Err(e) => {
                // Fail closed: a round that cannot measure does not act.
                out.push(finding(
                    m,
                    Action::Experiment,
                    Outcome::Failed,
                    Severity::Critical,
                    format!("cannot measure the steady state, so not acting: {e}"),
                ));
                return Ok(Go::Stop);
            }
        };
        // A wait of `baseline` begins: what was found so far goes out first.
        out.flush().await?;
        info!(monkey = %m, seconds = ss.baseline.as_secs_f64(), "measuring the steady-state baseline");
        // The first requests open connections; the baseline's figures start once the loop runs steadily.
        let warm = async {
            tokio::time::sleep(simian_probes::WARM_UP).await;
            exp.enter(simian_probes::Phase::Baseline);
            tokio::time::sleep(ss.baseline).await;
        };
        tokio::select! {
            _ = warm => {}
            _ = self.opts.shutdown.cancelled() => {
                exp.not_started();
                self.experiments.push(exp.finish().await);
                out.push(finding(m, Action::Experiment, Outcome::Skipped, Severity::Info,
                    "simian is shutting down (signal) during the baseline; not acting".into()));
                return Ok(Go::Stop);
            }
        }
        let breaches = exp.baseline_breaches();
        if !breaches.is_empty() {
            exp.not_started();
            let report = exp.finish().await;
            let why: Vec<&str> = breaches.iter().map(|b| b.message.as_str()).collect();
            let mut f = finding(
                m,
                Action::Experiment,
                Outcome::Skipped,
                Severity::Warning,
                format!("steady state does not hold before acting, so not acting: {}", why.join("; ")),
            );
            f.details = breach_details(&breaches[0]);
            out.push(f);
            self.experiments.push(report);
            return Ok(Go::Stop);
        }
        if self.mode == Mode::DryRun {
            exp.not_started();
            let report = exp.finish().await;
            let lines: Vec<String> = report.probes.iter().map(baseline_line).collect();
            out.push(finding(
                m,
                Action::Experiment,
                Outcome::Planned,
                Severity::Info,
                format!("would act; steady state holds now: {}", lines.join("; ")),
            ));
            self.experiments.push(report);
            return Ok(Go::Ahead);
        }
        out.push(finding(
            m,
            Action::Experiment,
            Outcome::Done,
            Severity::Info,
            format!(
                "steady state holds before acting (baseline {}); watching it every {}",
                simian_config::Duration(ss.baseline),
                simian_config::Duration(ss.check_every)
            ),
        ));
        exp.during(self.abort.clone());
        self.experiment = Some(exp);
        Ok(Go::Ahead)
    }

    /// The abort finding, once, as soon as the round learns of the abort.
    pub(crate) fn report_abort(&mut self, m: MonkeyName, out: &mut Out<'_>) {
        if self.abort_reported || !self.abort.is_cancelled() {
            return;
        }
        let Some(b) = self.experiment.as_ref().and_then(|e| e.abort_reason()) else { return };
        self.abort_reported = true;
        let after = self.experiment.as_ref().map_or(0, |e| e.settings().abort_after);
        warn!(monkey = %m, breach = %b.message, "steady state broke: aborting the round");
        let mut f = finding(
            m,
            Action::Abort,
            Outcome::Done,
            Severity::Critical,
            format!(
                "aborted: {} at {after} consecutive check(s); no further action, reverting every fault of this round now",
                b.message
            ),
        );
        f.details = breach_details(&b);
        out.push(f);
    }

    /// Why the gate refuses once the experiment aborted.
    pub(crate) fn abort_refusal(&self) -> Option<String> {
        if !self.abort.is_cancelled() {
            return None;
        }
        let why = self.experiment.as_ref().and_then(|e| e.abort_reason()).map(|b| b.message);
        Some(format!("the steady-state experiment aborted the round ({})", why.unwrap_or_default()))
    }

    /// Chaos Monkey's (and Gorilla terminate's) fault phase: `observe` after the kills, watched.
    pub(crate) async fn observe(&mut self, m: MonkeyName, out: &mut Out<'_>) -> Result<(), RunError> {
        let Some(observe) = self.experiment.as_ref().map(|e| e.settings().observe) else { return Ok(()) };
        let until = crate::clock::add(self.clock().now(), observe);
        self.hold(until, "observe", out).await?;
        self.report_abort(m, out);
        Ok(())
    }

    /// After the revert: measure the recovery, then report the experiment.
    pub(crate) async fn conclude(&mut self, m: MonkeyName, out: &mut Out<'_>) -> Result<(), RunError> {
        self.report_abort(m, out);
        let Some(mut exp) = self.experiment.take() else { return Ok(()) };
        let recovery = exp.settings().recovery;
        // A wait of up to `recovery` begins.
        out.flush().await?;
        let recovered = exp.recover(&self.opts.shutdown).await;
        let report = exp.finish().await;
        for p in &report.probes {
            let mut f = finding(m, Action::Experiment, Outcome::Done, Severity::Info, p.line());
            f.details = probe_details(p, report.verdict.as_str());
            out.push(f);
            if let Some(c) = p.capacity {
                out.push(finding(
                    m,
                    Action::Experiment,
                    Outcome::Done,
                    Severity::Info,
                    format!("{}: {}", p.name, simian_monkeys::experiment::capacity_line(c)),
                ));
            }
        }
        match recovered {
            Some(s) => out.push(finding(
                m,
                Action::Experiment,
                Outcome::Done,
                Severity::Info,
                format!(
                    "steady state recovered {s:.1}s after the fault ended (verdict: {})",
                    report.verdict.as_str()
                ),
            )),
            None => out.push(finding(
                m,
                Action::Experiment,
                Outcome::Done,
                Severity::Critical,
                format!(
                    "not recovered within {}: the steady state still breaks its tolerances (verdict: {})",
                    simian_config::Duration(recovery),
                    report.verdict.as_str()
                ),
            )),
        }
        self.experiments.push(report);
        Ok(())
    }
}

/// A probe's figures per phase, kept with its finding (the control room draws them): `probe`, `kind`,
/// `verdict`, `capacity`, and `baseline` / `during` / `recovery` as JSON objects.
fn probe_details(p: &ProbeResult, verdict: &str) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    d.insert("probe".into(), p.name.clone());
    d.insert("kind".into(), p.kind.clone());
    d.insert("verdict".into(), verdict.to_string());
    if let Some(c) = p.capacity {
        d.insert("capacity".into(), format!("{c:.4}"));
    }
    for (phase, stats) in [("baseline", &p.baseline), ("during", &p.during), ("recovery", &p.recovery)] {
        if let Some(json) = stats.as_ref().and_then(|s| serde_json::to_string(s).ok()) {
            d.insert(phase.into(), json);
        }
    }
    d
}

/// A dry run's baseline, e.g. `checkout 55.4/s, p50 72.3ms, p99 75ms, errors 0%`.
fn baseline_line(p: &ProbeResult) -> String {
    match &p.baseline {
        Some(PhaseStats::Http(h)) => format!(
            "{} {}, p50 {}, p99 {}, errors {}",
            p.name,
            Metric::Throughput.show(h.throughput_rps),
            Metric::P50.show(h.p50_ms),
            Metric::P99.show(h.p99_ms),
            Metric::ErrorRate.show(h.error_rate)
        ),
        Some(PhaseStats::Value(v)) => {
            format!("{} {}", p.name, v.value.map_or("no value".to_string(), |x| Metric::Value.show(x)))
        }
        None => format!("{} not measured", p.name),
    }
}

/// The run's `experiment`: the one that went worst.
pub(crate) fn worst(all: &[ExperimentReport]) -> Option<ExperimentReport> {
    all.iter().max_by_key(|e| e.verdict.rank()).cloned()
}
