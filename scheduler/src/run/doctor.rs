//! Doctor Monkey's round: probe every instance (HTTP and /proc, bounded concurrency), carry health across
//! runs in the store, report only transitions, and optionally terminate the unhealthy (live, opted in,
//! within Chaos Monkey's kill limits).

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use simian_config::{MonkeyName, Remediation};
use simian_monkeys::doctor::{
    self, HealthState, HttpExpect, ProbeOutcome, ProcThresholds, SummaryBuilder, Transition,
};
use simian_monkeys::{Action, Actuator, Finding, Instance, Outcome, Severity};
use tracing::warn;

use super::gate::{Journal, Refusal};
use super::{exclusions, opt_in_for, summary_value, Out, Round, RunError};
use crate::store::HealthRow;
use simian_monkeys::eligibility::{eligibility, Eligibility};

const M: MonkeyName = MonkeyName::Doctor;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one probe found, about an instance of the round's inventory.
struct Probe<'i> {
    inst: &'i Instance,
    /// `Ok` = passed; `Err(reasons)` = failed.
    verdict: Result<(), String>,
    /// The probe could not be made at all (no URL and no /proc, executor failure).
    error: Option<String>,
    latency: Option<Duration>,
}

fn to_row(s: &HealthState) -> HealthRow {
    HealthRow { status: s.status, failures: s.consecutive_failures, passes: s.consecutive_passes }
}

fn from_row(r: &HealthRow) -> HealthState {
    HealthState { status: r.status, consecutive_failures: r.failures, consecutive_passes: r.passes }
}

impl<A: Actuator> Round<'_, '_, A> {
    /// Doctor Monkey. Observing needs no opt-in and is done in dry-run too; only remediation is gated.
    pub(crate) async fn doctor(&mut self, out: &mut Out<'_>) -> Result<(), RunError> {
        let policy = self.policy;
        let (cfg, inventory) = match self.observable(M, policy.policy.monkeys.doctor.as_ref()) {
            Ok(found) => found,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let timeout = cfg.timeout.map(|t| t.std()).unwrap_or(DEFAULT_TIMEOUT);
        let client =
            match reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).no_proxy().build() {
                Ok(c) => c,
                Err(e) => {
                    out.push(Finding::run_level(
                        M,
                        Outcome::Failed,
                        Severity::Critical,
                        format!("cannot build the HTTP client: {e}"),
                    ));
                    return Ok(());
                }
            };
        let expect = HttpExpect { statuses: cfg.expect_status.clone(), body: cfg.expect_body.clone() };
        let limits = ProcThresholds {
            max_load_per_cpu: cfg.max_load_per_cpu,
            min_mem_available_pct: cfg.min_mem_available.map(|p| p.0),
            max_disk_used_pct: cfg.max_disk_used.map(|p| p.0),
        };
        let actuator = self.ctx.actuator;
        let mut probes: Vec<Probe> = stream::iter(inventory.iter().map(|inst| {
            let (client, expect, limits) = (&client, &expect, &limits);
            async move { probe(actuator, client, cfg, expect, limits, inst).await }
        }))
        .buffer_unordered(cfg.concurrency.max(1) as usize)
        .collect()
        .await;
        probes.sort_by(|a, b| a.inst.inventory_order(b.inst));
        if let Some(m) = &self.opts.metrics {
            probes.iter().filter_map(|p| p.latency).for_each(|l| m.0.observe_probe(l.as_secs_f64()));
        }

        let threshold = cfg.failures_before_unhealthy.max(1);
        let mut health = self.store.health()?;
        let mut summary = SummaryBuilder::new();
        let mut newly_unhealthy = Vec::new();
        for p in &probes {
            if let Some(e) = &p.error {
                summary.record(ProbeOutcome::Error, p.latency);
                out.push(Finding::about(
                    M,
                    Action::ProbeError,
                    Outcome::Done,
                    Severity::Warning,
                    p.inst,
                    e.clone(),
                ));
                continue;
            }
            summary.record(
                if p.verdict.is_ok() { ProbeOutcome::Healthy } else { ProbeOutcome::Unhealthy },
                p.latency,
            );
            let key = (p.inst.target.clone(), p.inst.id.clone());
            let prev = health.remove(&key).map(|r| from_row(&r)).unwrap_or_default();
            let (next, transition) = doctor::step(&prev, p.verdict.is_ok(), threshold);
            self.store.set_health(&key.0, &key.1, &to_row(&next), self.clock().now())?;
            match transition {
                Some(Transition::BecameUnhealthy) => {
                    let why = p.verdict.as_ref().err().cloned().unwrap_or_default();
                    out.push(Finding::about(
                        M,
                        Action::Unhealthy,
                        Outcome::Done,
                        Severity::Critical,
                        p.inst,
                        format!("unhealthy after {threshold} failed check(s) in a row: {why}"),
                    ));
                    newly_unhealthy.push(p.inst);
                }
                Some(Transition::Recovered) => out.push(Finding::about(
                    M,
                    Action::Recovered,
                    Outcome::Done,
                    Severity::Info,
                    p.inst,
                    format!("recovered after {threshold} passed check(s) in a row"),
                )),
                None => {}
            }
        }
        let s = summary.build();
        self.summary.insert("doctor".into(), summary_value(&s));
        if cfg.remediate == Remediation::Terminate {
            for inst in newly_unhealthy {
                out.push(self.remediate(inst).await?);
            }
        }
        Ok(())
    }

    /// Terminate one unhealthy instance, counted against Chaos Monkey's limits; every guard applies.
    async fn remediate(&mut self, inst: &Instance) -> Result<Finding, RunError> {
        let about = |outcome, severity, msg: String| {
            Finding::about(M, Action::Terminate, outcome, severity, inst, msg)
        };
        let eligible = exclusions(self.policy)
            .map(|excl| eligibility(inst, &opt_in_for(self.policy, &inst.target), &excl))
            .unwrap_or(Eligibility::NotOptedIn);
        match eligible {
            Eligibility::Eligible => {}
            Eligibility::NotOptedIn => {
                return Ok(about(
                    Outcome::Skipped,
                    Severity::Info,
                    "not remediated: the instance is not opted in".into(),
                ))
            }
            Eligibility::Excluded(why) => {
                return Ok(about(Outcome::Skipped, Severity::Info, format!("not remediated: {why}")))
            }
        }
        // The one gate: dry-run, shutdown, the re-read policy, the run's kill budget shared with Chaos
        // Monkey (one shared outage must never let Doctor take a whole service down), and the spacing.
        let min = self
            .policy
            .policy
            .monkeys
            .chaos
            .as_ref()
            .and_then(|c| c.min_time_between_kills)
            .map(|d| d.chrono());
        let permit = match self.gate(M, Some(inst), Journal::Kill { min_between: min, limited: true })? {
            Ok(p) => p,
            Err(Refusal::DryRun) => {
                return Ok(about(
                    Outcome::Planned,
                    Severity::Info,
                    "would terminate the unhealthy instance; dry-run".into(),
                ))
            }
            Err(Refusal::Refused(why)) => {
                return Ok(about(Outcome::Skipped, Severity::Info, format!("not remediated: {why}")))
            }
        };
        let result = self.act(&permit).terminate(inst).await;
        if let Some(id) = permit.journal_id() {
            self.store.finish_kill(id, result.is_ok())?;
        }
        Ok(match result {
            Ok(note) => about(
                Outcome::Done,
                Severity::Warning,
                format!("terminated the unhealthy instance so its group replaces it: {note}"),
            ),
            Err(e) => {
                warn!(instance = %inst.id, error = %e, "remediation failed");
                about(Outcome::Failed, Severity::Critical, format!("terminate failed: {e}"))
            }
        })
    }
}

/// Probe one instance: its HTTP endpoint (if it has a URL) and /proc (if asked).
async fn probe<'i, A: Actuator>(
    actuator: &A,
    client: &reqwest::Client,
    cfg: &simian_config::DoctorConfig,
    expect: &HttpExpect,
    limits: &ProcThresholds,
    inst: &'i Instance,
) -> Probe<'i> {
    let template = inst.url.clone().or_else(|| cfg.url.clone());
    if template.is_none() && !cfg.proc {
        return Probe {
            error: Some("no health URL for this instance and `proc` is off".into()),
            verdict: Ok(()),
            latency: None,
            inst,
        };
    }
    let mut reasons = Vec::new();
    let mut latency = None;
    if let Some(t) = template {
        let url = match simian_targets::template::render(&[t], inst) {
            Ok(v) => v.into_iter().next().unwrap_or_default(),
            Err(e) => {
                return Probe {
                    error: Some(format!("cannot build the health URL: {e}")),
                    verdict: Ok(()),
                    latency: None,
                    inst,
                }
            }
        };
        let started = tokio::time::Instant::now();
        let (status, body, error) = match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(b) => (Some(status), b, None),
                    Err(e) => (Some(status), String::new(), Some(e.to_string())),
                }
            }
            Err(e) if e.is_timeout() => (
                None,
                String::new(),
                Some(format!(
                    "no answer within {}",
                    simian_config::Duration(cfg.timeout.map(|t| t.std()).unwrap_or(DEFAULT_TIMEOUT))
                )),
            ),
            Err(e) => (None, String::new(), Some(format!("{}", e.without_url()))),
        };
        latency = Some(started.elapsed());
        if let Err(why) = doctor::evaluate_http(status, &body, error.as_deref(), expect) {
            reasons.push(format!("GET {url}: {why}"));
        }
    }
    if cfg.proc {
        let argv = ["sh".to_string(), "-c".to_string(), doctor::proc_script().to_string()];
        // Boxed: the executors' futures (ssh, wrap) are far larger than an HTTP probe's, and every one of the
        // `concurrency` probes in flight would otherwise reserve room for them (18 KiB each, measured).
        match Box::pin(actuator.run_on(inst, &argv)).await {
            Ok(o) if o.status == 0 => {
                let (facts, errors) = doctor::parse_proc_output(&o.stdout);
                reasons.extend(errors);
                reasons.extend(doctor::evaluate_proc(&facts, limits));
            }
            Ok(o) => {
                return Probe {
                    error: Some(format!("reading /proc failed ({}): {}", o.status, o.stderr.trim())),
                    verdict: Ok(()),
                    latency,
                    inst,
                }
            }
            Err(e) => {
                return Probe {
                    error: Some(format!("reading /proc failed: {e}")),
                    verdict: Ok(()),
                    latency,
                    inst,
                }
            }
        }
    }
    let verdict = if reasons.is_empty() { Ok(()) } else { Err(reasons.join("; ")) };
    Probe { inst, verdict, error: None, latency }
}
