//! Chaos Gorilla's round: pick a zone, then terminate or isolate its eligible instances; isolation is
//! journaled before it is applied, held for `duration` (or until a signal), then restored.

use rand_chacha::ChaCha8Rng;
use simian_config::{GorillaAction, MonkeyName};
use simian_monkeys::gorilla::{self, GorillaPlan, ZoneChoice};
use simian_monkeys::{Action, Actuator, Finding, Instance, Mode, Outcome, Severity};
use tracing::info;

use super::experiment::Go;
use super::gate::{Journal, Refusal};
use super::{Out, Round, RunError};

/// Isolation lasts this long when the policy gives no `duration`.
const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl<A: Actuator> Round<'_, '_, A> {
    /// Chaos Gorilla: drop one zone.
    pub(crate) async fn gorilla(&mut self, rng: &mut ChaCha8Rng, out: &mut Out<'_>) -> Result<(), RunError> {
        let policy = self.policy;
        let m = MonkeyName::Gorilla;
        let skip = |why: String| Finding::run_level(m, Outcome::Skipped, Severity::Info, why);
        let cfg = match self.acting(m, policy.policy.monkeys.gorilla.as_ref()) {
            Ok(cfg) => cfg,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let part = match self.eligible(m) {
            Ok(p) => p,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let plan =
            gorilla::plan(&part.eligible, &ZoneChoice::from_policy(&cfg.zone), cfg.allow_total_loss, rng);
        let (zone, victims, spared) = match plan {
            GorillaPlan::NoZone(why) => {
                out.push(skip(why));
                return Ok(());
            }
            GorillaPlan::Zone { zone, victims, spared } => (zone, victims, spared),
        };
        let duration = cfg.duration.map(|d| d.std()).unwrap_or(DEFAULT_DURATION);
        let what = match cfg.action {
            GorillaAction::Terminate => "terminate".to_string(),
            GorillaAction::Isolate => format!("isolate for {}", simian_config::Duration(duration)),
        };
        let groups: std::collections::BTreeSet<_> = victims.iter().map(|v| (&v.target, &v.group)).collect();
        let mut headline = Finding::run_level(
            m,
            if self.mode == Mode::Live { Outcome::Done } else { Outcome::Planned },
            Severity::Warning,
            format!(
                "zone {zone} chosen: {what} {} instance(s) in {} group(s); {} group(s) spared",
                victims.len(),
                groups.len(),
                spared.len()
            ),
        );
        headline.zone = Some(zone.clone());
        out.push(headline);
        for ((target, group), members) in &spared {
            out.push(Finding {
                monkey: m,
                action: action_of(cfg.action),
                outcome: Outcome::Skipped,
                target: Some(target.clone()),
                instance: None,
                group: Some(group.clone()),
                zone: Some(zone.clone()),
                severity: Severity::Info,
                message: format!(
                    "zone {zone} holds all {} eligible instance(s) of this group; refusing a total loss (set allow_total_loss: true to allow)",
                    members.len()
                ),
                details: Default::default(),
            });
        }
        if self.baseline(m, cfg.steady_state.as_ref(), out).await? == Go::Stop {
            return Ok(());
        }
        if self.mode == Mode::DryRun {
            for v in &victims {
                out.push(Finding::about(
                    m,
                    action_of(cfg.action),
                    Outcome::Planned,
                    Severity::Info,
                    v,
                    format!("would {what}; dry-run"),
                ));
            }
            return Ok(());
        }
        match cfg.action {
            GorillaAction::Terminate => {
                self.gorilla_terminate(&victims, out).await?;
                self.observe(m, out).await?;
            }
            GorillaAction::Isolate => self.gorilla_isolate(&zone, &victims, duration, out).await?,
        }
        self.conclude(m, out).await
    }

    /// The gate's refusal as a finding.
    fn gorilla_refused(v: &Instance, action: Action, why: Refusal) -> Finding {
        let why = match why {
            Refusal::DryRun => "dry-run".to_string(),
            Refusal::Refused(why) => why,
        };
        Finding::about(
            MonkeyName::Gorilla,
            action,
            Outcome::Skipped,
            Severity::Info,
            v,
            format!("guard re-check refused: {why}"),
        )
    }

    async fn gorilla_terminate(&mut self, victims: &[&Instance], out: &mut Out<'_>) -> Result<(), RunError> {
        let m = MonkeyName::Gorilla;
        let mut rest = victims;
        while let Some(first) = rest.first() {
            let size = self.batch_size(first).max(1);
            let n = rest.iter().take(size).take_while(|v| v.target == first.target).count().max(1);
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            // Journaled like every kill, so Chaos Monkey's spacing sees it too; a zone drop is not
            // counted against max_kills_per_run.
            let mut go = Vec::new();
            for &v in batch {
                match self.gate(m, Some(v), Journal::Kill { min_between: None, limited: false })? {
                    Ok(permit) => go.push((v, permit)),
                    Err(why) => out.push(Self::gorilla_refused(v, Action::Terminate, why)),
                }
            }
            let Some((_, permit)) = go.first() else { continue };
            let insts: Vec<Instance> = go.iter().map(|(v, _)| (*v).clone()).collect();
            let results = self.act(permit).terminate_many(&insts).await;
            for ((v, permit), r) in go.iter().zip(results) {
                if let Some(id) = permit.journal_id() {
                    self.store.finish_kill(id, r.is_ok())?;
                }
                out.push(match r {
                    Ok(note) => Finding::about(
                        m,
                        Action::Terminate,
                        Outcome::Done,
                        Severity::Warning,
                        v,
                        format!("terminated: {note}"),
                    ),
                    Err(e) => Finding::about(
                        m,
                        Action::Terminate,
                        Outcome::Failed,
                        Severity::Critical,
                        v,
                        format!("terminate failed: {e}"),
                    ),
                });
            }
        }
        Ok(())
    }

    async fn gorilla_isolate(
        &mut self,
        zone: &str,
        victims: &[&Instance],
        duration: std::time::Duration,
        out: &mut Out<'_>,
    ) -> Result<(), RunError> {
        let m = MonkeyName::Gorilla;
        // Each instance is held `duration` from its own isolation, so a slow isolate of the last host does
        // not shorten its hold; the round holds until the latest end.
        let mut until = None;
        for &v in victims {
            if self.opts.shutdown.is_cancelled() {
                out.push(Self::gorilla_refused(
                    v,
                    Action::Isolate,
                    Refusal::Refused("simian is shutting down (signal); not acting".into()),
                ));
                continue;
            }
            let undo = match self.ctx.actuator.prepare_isolation(v).await {
                Ok(u) => u,
                Err(e) => {
                    out.push(Finding::about(
                        m,
                        Action::Isolate,
                        Outcome::Failed,
                        Severity::Critical,
                        v,
                        format!("isolate failed before any change: {e}"),
                    ));
                    continue;
                }
            };
            let expires = crate::clock::add(self.clock().now(), duration);
            // Journal first (in the gate): if simian dies between here and the restore, the next run or
            // `simian revert` undoes it.
            let permit = match self.gate(
                m,
                Some(v),
                Journal::Fault { kind: crate::store::FaultKind::Isolate, undo: &undo, expires },
            )? {
                Ok(p) => p,
                Err(why) => {
                    out.push(Self::gorilla_refused(v, Action::Isolate, why));
                    continue;
                }
            };
            match self.act(&permit).isolate(v, &undo).await {
                Ok(note) => {
                    if let Some(id) = permit.journal_id() {
                        self.store.fault_applied(id)?;
                    }
                    until = until.max(Some(expires));
                    info!(instance = %v.id, zone = ?v.zone, "isolated instance");
                    out.push(Finding::about(
                        m,
                        Action::Isolate,
                        Outcome::Done,
                        Severity::Warning,
                        v,
                        format!(
                            "isolated until {}: {note}",
                            expires.with_timezone(&self.policy.tz).to_rfc3339()
                        ),
                    ));
                }
                Err(e) => {
                    // The fault stays journaled (intent) and is restored below with the rest: a failed
                    // isolate may still have changed part of the instance.
                    out.push(Finding::about(
                        m,
                        Action::Isolate,
                        Outcome::Failed,
                        Severity::Critical,
                        v,
                        format!("isolate failed: {e}"),
                    ));
                }
            }
        }
        if let Some(until) = until {
            // The line chat shows first: the zone is cut, how much of it, and until when.
            let isolated = out
                .findings()
                .iter()
                .filter(|f| f.action == Action::Isolate && f.outcome == Outcome::Done)
                .count();
            let mut cut = Finding::run_level(
                m,
                Outcome::Done,
                Severity::Warning,
                format!(
                    "isolated zone {zone}: {isolated} instance(s) until {}",
                    until.with_timezone(&self.policy.tz).to_rfc3339()
                ),
            );
            cut.zone = Some(zone.to_string());
            out.push(cut);
            self.hold(until, "isolate", out).await?;
        }
        self.report_abort(m, out);
        self.revert_mine(out).await
    }
}

fn action_of(a: GorillaAction) -> Action {
    match a {
        GorillaAction::Isolate => Action::Isolate,
        GorillaAction::Terminate => Action::Terminate,
    }
}
