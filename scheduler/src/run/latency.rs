//! Latency Monkey's round: `tc netem` on chosen hosts (journaled, verified, with a dead-man switch on the
//! host, reverted after `duration` or at once on a signal), or userspace proxies for `duration`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use simian_config::{LatencyConfig, LatencyVia, MonkeyName};
use simian_monkeys::latency::{self as lat, Netem, Root};
use simian_monkeys::{Action, Actuator, Finding, Instance, Mode, Outcome, Severity, Undo};
use simian_proxy::{ProxySpec, RunningProxy};
use tracing::{info, warn};

use super::experiment::Go;
use super::gate::{Journal, Refusal};
use super::{Out, Round, RunError};

const DEFAULT_DURATION: Duration = Duration::from_secs(10 * 60);
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
const M: MonkeyName = MonkeyName::Latency;

fn details(interface: &str, n: &Netem, deadline: DateTime<Utc>) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("interface".to_string(), interface.to_string()),
        ("delay".to_string(), simian_config::Duration(n.delay).to_string()),
        ("jitter".to_string(), simian_config::Duration(n.jitter).to_string()),
        ("loss".to_string(), format!("{}%", n.loss)),
        ("deadline".to_string(), deadline.to_rfc3339()),
    ])
}

fn with_details(mut f: Finding, d: BTreeMap<String, String>) -> Finding {
    f.details = d;
    f
}

impl<A: Actuator> Round<'_, '_, A> {
    /// Latency Monkey.
    pub(crate) async fn latency(&mut self, rng: &mut ChaCha8Rng, out: &mut Out<'_>) -> Result<(), RunError> {
        let policy = self.policy;
        let cfg = match self.acting(M, policy.policy.monkeys.latency.as_ref()) {
            Ok(cfg) => cfg,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let netem = Netem {
            delay: cfg.delay.map(|d| d.std()).unwrap_or_default(),
            jitter: cfg.jitter.map(|d| d.std()).unwrap_or_default(),
            loss: cfg.loss.map(|p| p.0).unwrap_or(0.0),
        };
        let duration = cfg.duration.map(|d| d.std()).unwrap_or(DEFAULT_DURATION);
        match cfg.via {
            LatencyVia::Proxy => self.latency_proxies(cfg, &netem, duration, rng, out).await,
            LatencyVia::Tc => self.latency_tc(cfg, &netem, duration, rng, out).await,
        }
    }

    async fn latency_proxies(
        &mut self,
        cfg: &LatencyConfig,
        netem: &Netem,
        duration: Duration,
        rng: &mut ChaCha8Rng,
        out: &mut Out<'_>,
    ) -> Result<(), RunError> {
        let about = |outcome, severity, listen: &str, upstream: &str, msg: String, deadline| {
            let mut f = Finding::run_level(M, outcome, severity, msg);
            f.action = Action::InjectLatency;
            f.instance = Some(listen.to_string());
            f.target = Some(format!("proxy → {upstream}"));
            with_details(f, details("proxy", netem, deadline))
        };
        // Under a steady-state experiment the proxies listen, without delay, from the start of the baseline to
        // the end of the recovery, so a probe pointed at them sees all three phases.
        let watched =
            self.policy.steady_state.as_ref().and_then(|s| s.for_monkey(cfg.steady_state.as_ref())).is_some();
        let mut idle = Vec::new();
        if watched {
            for p in &cfg.proxies {
                match RunningProxy::start_idle(self.proxy_spec(p, netem, rng)).await {
                    Ok(proxy) => idle.push((p, proxy)),
                    Err(e) => {
                        let at = self.clock().now();
                        out.push(about(
                            Outcome::Failed,
                            Severity::Critical,
                            &p.listen,
                            &p.upstream,
                            format!("cannot start proxy: {e}"),
                            at,
                        ))
                    }
                }
            }
        }
        if self.baseline(M, cfg.steady_state.as_ref(), out).await? == Go::Stop {
            for (_, proxy) in idle {
                proxy.stop().await;
            }
            return Ok(());
        }
        let deadline = crate::clock::add(self.clock().now(), duration);
        if self.mode == Mode::DryRun {
            for p in &cfg.proxies {
                out.push(about(
                    Outcome::Planned,
                    Severity::Info,
                    &p.listen,
                    &p.upstream,
                    format!(
                        "would proxy {} → {} with added delay for {}; dry-run",
                        p.listen,
                        p.upstream,
                        simian_config::Duration(duration)
                    ),
                    deadline,
                ));
            }
            for (_, proxy) in idle {
                proxy.stop().await;
            }
            return Ok(());
        }
        let mut candidates: Vec<(&simian_config::ProxyConfig, Option<RunningProxy>)> = if watched {
            idle.into_iter().map(|(p, proxy)| (p, Some(proxy))).collect()
        } else {
            cfg.proxies.iter().map(|p| (p, None)).collect()
        };
        let mut running = Vec::new();
        for (p, proxy) in candidates.drain(..) {
            // A proxy lives and dies with this process: nothing to journal, but the gate still decides.
            if let Err(why) = self.gate(M, None, Journal::Nothing)? {
                let why = match why {
                    Refusal::DryRun => "dry-run".to_string(),
                    Refusal::Refused(why) => why,
                };
                out.push(about(
                    Outcome::Skipped,
                    Severity::Info,
                    &p.listen,
                    &p.upstream,
                    format!("guard re-check refused: {why}"),
                    deadline,
                ));
                if let Some(proxy) = proxy {
                    proxy.stop().await;
                }
                continue;
            }
            let started = match proxy {
                Some(proxy) => {
                    proxy.set_delaying(true);
                    Ok(proxy)
                }
                None => RunningProxy::start(self.proxy_spec(p, netem, rng)).await,
            };
            match started {
                Ok(proxy) => {
                    info!(listen = %p.listen, upstream = %p.upstream, "latency proxy delaying");
                    out.push(about(
                        Outcome::Done,
                        Severity::Warning,
                        &p.listen,
                        &p.upstream,
                        format!(
                            "proxying {} → {} with added delay until {}",
                            p.listen,
                            p.upstream,
                            deadline.with_timezone(&self.policy.tz).to_rfc3339()
                        ),
                        deadline,
                    ));
                    running.push((p, proxy));
                }
                Err(e) => out.push(about(
                    Outcome::Failed,
                    Severity::Critical,
                    &p.listen,
                    &p.upstream,
                    format!("cannot start proxy: {e}"),
                    deadline,
                )),
            }
        }
        if !running.is_empty() {
            self.hold(deadline, "latency", out).await?;
        }
        self.report_abort(M, out);
        if watched {
            for (p, proxy) in &running {
                proxy.set_delaying(false);
                let mut f = about(
                    Outcome::Done,
                    Severity::Info,
                    &p.listen,
                    &p.upstream,
                    format!(
                        "delay removed; proxy {} → {} keeps listening for the recovery",
                        p.listen, p.upstream
                    ),
                    deadline,
                );
                f.action = Action::RevertLatency;
                out.push(f);
            }
            self.conclude(M, out).await?;
        }
        for (p, proxy) in running {
            let stats = proxy.stop().await;
            let mut f = about(
                Outcome::Done,
                Severity::Info,
                &p.listen,
                &p.upstream,
                format!(
                    "proxy stopped and listener released ({} connection(s), {} bytes up, {} bytes down)",
                    stats.connections, stats.bytes_up, stats.bytes_down
                ),
                deadline,
            );
            // Under an experiment the delay was already removed (and reported) before the recovery.
            f.action = if watched { Action::Run } else { Action::RevertLatency };
            out.push(f);
        }
        Ok(())
    }

    fn proxy_spec(&self, p: &simian_config::ProxyConfig, netem: &Netem, rng: &mut ChaCha8Rng) -> ProxySpec {
        ProxySpec {
            listen: p.listen.clone(),
            upstream: p.upstream.clone(),
            delay: netem.delay,
            jitter: netem.jitter,
            seed: rng.random(),
        }
    }

    async fn latency_tc(
        &mut self,
        cfg: &LatencyConfig,
        netem: &Netem,
        duration: Duration,
        rng: &mut ChaCha8Rng,
        out: &mut Out<'_>,
    ) -> Result<(), RunError> {
        let part = match self.eligible(M) {
            Ok(p) => p,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let chosen = lat::choose(&part.eligible, cfg.hosts_per_group, rng);
        if chosen.is_empty() {
            out.push(Finding::run_level(M, Outcome::Skipped, Severity::Info, "no eligible instances"));
            return Ok(());
        }
        if self.baseline(M, cfg.steady_state.as_ref(), out).await? == Go::Stop {
            return Ok(());
        }
        let deadline = crate::clock::add(self.clock().now(), duration);
        if self.mode == Mode::DryRun {
            for v in &chosen {
                let f = Finding::about(
                    M,
                    Action::InjectLatency,
                    Outcome::Planned,
                    Severity::Info,
                    v,
                    format!(
                        "would add {} ± {} delay on {} for {}; dry-run",
                        simian_config::Duration(netem.delay),
                        simian_config::Duration(netem.jitter),
                        cfg.interface,
                        simian_config::Duration(duration)
                    ),
                );
                out.push(with_details(f, details(&cfg.interface, netem, deadline)));
            }
            return Ok(());
        }
        let grace = cfg.grace.map(|d| d.std()).unwrap_or(DEFAULT_GRACE);
        let mut applied = 0;
        for v in &chosen {
            let handle = lat::new_handle(rng);
            match self.inject(cfg, netem, v, &handle, deadline, duration + grace).await? {
                Ok(f) => {
                    applied += 1;
                    out.push(f);
                }
                Err(f) => out.push(f),
            }
        }
        if applied > 0 {
            self.hold(deadline, "latency", out).await?;
        }
        self.report_abort(M, out);
        self.revert_mine(out).await?;
        self.conclude(M, out).await
    }

    /// Run a read-only argv on `v` (checks and read-backs); a spawn/ssh failure or a non-zero exit becomes
    /// the error text.
    async fn on(&self, v: &Instance, argv: &[String]) -> Result<String, String> {
        match self.ctx.actuator.run_on(v, argv).await {
            Ok(o) if o.status == 0 => Ok(o.stdout),
            Ok(o) => Err(failed_argv(argv, &o)),
            Err(e) => Err(e.0),
        }
    }

    /// Inject on one host. Ok(finding) = applied and journaled; Err(finding) = not applied (skipped/failed).
    async fn inject(
        &mut self,
        cfg: &LatencyConfig,
        netem: &Netem,
        v: &Instance,
        handle: &str,
        deadline: DateTime<Utc>,
        deadman_after: Duration,
    ) -> Result<Result<Finding, Finding>, RunError> {
        let handle = handle.to_string();
        let fail = |why: String| {
            Finding::about(M, Action::InjectLatency, Outcome::Failed, Severity::Critical, v, why)
        };
        if let Err(why) = self.on(v, &lat::precheck_argv()).await {
            return Ok(Err(fail(why)));
        }
        let interface = if cfg.interface == "auto" {
            let route = ["ip", "-o", "route", "show", "default"].map(String::from);
            match self.on(v, &route).await.map(|o| lat::default_interface(&o)) {
                Ok(Some(i)) => i,
                Ok(None) => {
                    return Ok(Err(fail(
                        "no default route, so `interface: auto` finds no interface; name one".into(),
                    )))
                }
                Err(why) => return Ok(Err(fail(why))),
            }
        } else {
            cfg.interface.clone()
        };
        let root = match self.on(v, &lat::show_argv(&interface)).await {
            Ok(show) => lat::root_qdisc(&show),
            Err(why) => return Ok(Err(fail(why))),
        };
        let replace = match &root {
            Root::Default(_) => false,
            // A leftover of an earlier run (its journal entry is reverted at the start of a run): replace it.
            Root::Simians(_) => true,
            Root::Foreign(kind, handle) if cfg.replace_existing => {
                warn!(instance = %v.id, kind = %kind, handle = %handle, "replacing a root qdisc simian does not own");
                true
            }
            Root::Foreign(kind, handle) => {
                return Ok(Err(Finding::about(M, Action::InjectLatency, Outcome::Skipped, Severity::Info, v, format!(
                    "{interface} has a root qdisc simian does not own ({kind} {handle}); left alone (set replace_existing: true to replace it)"
                ))))
            }
        };
        let undo = Undo::Netem { instance: v.clone(), interface: interface.clone(), handle: handle.clone() };
        // The gate journals first, so a crash from here on is undone by the next run or `simian revert`.
        let permit = match self.gate(
            M,
            Some(v),
            Journal::Fault { kind: crate::store::FaultKind::Netem, undo: &undo, expires: deadline },
        )? {
            Ok(p) => p,
            Err(why) => {
                let why = match why {
                    Refusal::DryRun => "dry-run".to_string(),
                    Refusal::Refused(why) => why,
                };
                return Ok(Err(Finding::about(
                    M,
                    Action::InjectLatency,
                    Outcome::Skipped,
                    Severity::Info,
                    v,
                    format!("guard re-check refused: {why}"),
                )));
            }
        };
        let d = details(&interface, netem, deadline);
        let actuator = self.act(&permit);
        let applied = async {
            let add = lat::netem_argv(&interface, &handle, netem, replace);
            match actuator.run_on(v, &add).await {
                Ok(o) if o.status == 0 => {}
                Ok(o) => return Err(failed_argv(&add, &o)),
                Err(e) => return Err(e.0),
            }
            let show = self.on(v, &lat::show_argv(&interface)).await?;
            if lat::root_qdisc(&show) != Root::Simians(handle.clone()) {
                return Err(format!(
                    "netem was added but `tc qdisc show dev {interface}` does not show it: {}",
                    show.trim()
                ));
            }
            // The dead-man switch: the host removes the qdisc by itself if simian never comes back.
            self.on(v, &lat::deadman_argv(&interface, &handle, deadman_after)).await?;
            Ok(())
        }
        .await;
        match applied {
            Ok(()) => {
                if let Some(id) = permit.journal_id() {
                    self.store.fault_applied(id)?;
                }
                info!(instance = %v.id, interface = %interface, "latency injected");
                let f = Finding::about(M, Action::InjectLatency, Outcome::Done, Severity::Warning, v, format!(
                    "added {} ± {} delay{} on {interface} until {} (host removes it by itself {}s later if simian is gone)",
                    simian_config::Duration(netem.delay),
                    simian_config::Duration(netem.jitter),
                    if netem.loss > 0.0 { format!(" and {}% loss", netem.loss) } else { String::new() },
                    deadline.with_timezone(&self.policy.tz).to_rfc3339(),
                    (deadman_after.saturating_sub((deadline - self.clock().now()).to_std().unwrap_or_default())).as_secs()
                ));
                Ok(Ok(with_details(f, d)))
            }
            // The journal entry stays open (intent): the revert after the hold removes whatever got applied.
            Err(why) => Ok(Err(with_details(fail(format!("inject failed: {why}")), d))),
        }
    }
}

/// The error text of a command that exited non-zero.
fn failed_argv(argv: &[String], o: &simian_monkeys::CommandOutput) -> String {
    format!(
        "`{}` exited with {}: {}",
        argv.join(" "),
        o.status,
        if o.stdout.trim().is_empty() { o.stderr.trim() } else { o.stdout.trim() }
    )
}
