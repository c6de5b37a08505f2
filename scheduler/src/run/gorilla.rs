//! Chaos Gorilla's round: pick a zone, then terminate or isolate its eligible instances; isolation is
//! journaled before it is applied, held for `duration` (or until a signal), then restored.

use chrono::Utc;
use rand_chacha::ChaCha8Rng;
use simian_config::{GorillaAction, MonkeyName};
use simian_monkeys::gorilla::{self, GorillaPlan, ZoneChoice};
use simian_monkeys::{Action, Actuator, Finding, Instance, Mode, Outcome, Severity};
use tracing::{info, warn};

use super::{recheck, Round, RunError};
use crate::store::Claim;

/// Isolation lasts this long when the policy gives no `duration`.
const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl<A: Actuator> Round<'_, '_, A> {
    /// Chaos Gorilla: drop one zone.
    pub(crate) async fn gorilla(
        &mut self,
        rng: &mut ChaCha8Rng,
        out: &mut Vec<Finding>,
    ) -> Result<(), RunError> {
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
            GorillaAction::Terminate => self.gorilla_terminate(&victims, out).await,
            GorillaAction::Isolate => self.gorilla_isolate(&victims, duration, out).await,
        }
    }

    /// Re-check guards per instance; `Some(finding)` when refused or shutting down.
    fn gorilla_refusal(&self, v: &Instance, action: Action) -> Option<Finding> {
        let m = MonkeyName::Gorilla;
        if self.opts.shutdown.is_cancelled() {
            return Some(Finding::about(
                m,
                action,
                Outcome::Skipped,
                Severity::Info,
                v,
                "simian is shutting down (signal); not acting",
            ));
        }
        recheck(self.ctx.reload, m, self.opts, v).err().map(|why| {
            warn!(instance = %v.id, reason = %why, "guard refused action");
            Finding::about(
                m,
                action,
                Outcome::Skipped,
                Severity::Info,
                v,
                format!("guard re-check refused: {why}"),
            )
        })
    }

    async fn gorilla_terminate(
        &mut self,
        victims: &[Instance],
        out: &mut Vec<Finding>,
    ) -> Result<(), RunError> {
        let m = MonkeyName::Gorilla;
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for v in victims {
            if let Some(f) = self.gorilla_refusal(v, Action::Terminate) {
                out.push(f);
                continue;
            }
            // Journaled like every kill, so Chaos Monkey's spacing sees it too.
            if let Claim::Granted(id) = self.store.claim_kill(&self.run_id, v, Utc::now(), None)? {
                batch.push(v.clone());
                ids.push(id);
            }
        }
        let results = self.ctx.actuator.terminate_many(&batch).await;
        for ((v, id), r) in batch.iter().zip(ids).zip(results) {
            self.store.finish_kill(id, r.is_ok())?;
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
        Ok(())
    }

    async fn gorilla_isolate(
        &mut self,
        victims: &[Instance],
        duration: std::time::Duration,
        out: &mut Vec<Finding>,
    ) -> Result<(), RunError> {
        let m = MonkeyName::Gorilla;
        let expires = Utc::now() + chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX);
        let mut applied = 0usize;
        for v in victims {
            if let Some(f) = self.gorilla_refusal(v, Action::Isolate) {
                out.push(f);
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
            // Journal first: if simian dies between here and the restore, the next run or `simian revert` undoes it.
            let id = self.store.journal_fault(&self.run_id, m, "isolate", v, &undo, Utc::now(), expires)?;
            match self.ctx.actuator.isolate(v, &undo).await {
                Ok(note) => {
                    self.store.fault_applied(id)?;
                    applied += 1;
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
        if applied > 0 {
            self.hold(expires, "isolate").await;
        }
        let restored = self.revert_mine().await?;
        out.extend(restored);
        Ok(())
    }
}

fn action_of(a: GorillaAction) -> Action {
    match a {
        GorillaAction::Isolate => Action::Isolate,
        GorillaAction::Terminate => Action::Terminate,
    }
}
