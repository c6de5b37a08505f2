//! The one gate every action of every monkey passes, right before it is applied: dry-run, shutdown, the
//! re-read policy (enabled, monkey enabled, mode, kill switch, calendar, opt-in and exclusions on the
//! instance as the fresh policy describes it), the kill budget, and the journal claim. An action needs
//! the [`Permit`] only this gate hands out.

use chrono::TimeDelta;
use simian_config::{Mode, MonkeyName, TargetConfig};
use simian_monkeys::eligibility::{eligibility, Eligibility};
use simian_monkeys::{Actuator, Instance, Undo};
use tracing::warn;

use super::{effective_mode, opt_in_for, run_guard, Round, RunError};
use crate::service::Fresh;
use crate::store::{Claim, FaultKind, FaultState, OpenFault};

/// What the action will journal, claimed by the gate in the store.
pub(crate) enum Journal<'u> {
    /// A kill: spacing checked atomically in the store; `limited` kills count against `max_kills_per_run`.
    Kill {
        /// The group's minimum spacing.
        min_between: Option<TimeDelta>,
        /// Counted against the run's kill budget (Chaos and Doctor; a Gorilla zone drop is not).
        limited: bool,
    },
    /// A reversible fault, with what undoes it and when it is due.
    Fault {
        /// What it is.
        kind: FaultKind,
        /// How to undo it.
        undo: &'u Undo,
        /// When it is due to be reverted.
        expires: chrono::DateTime<chrono::Utc>,
    },
    /// Nothing to journal (a userspace proxy that lives and dies with this process).
    Nothing,
}

/// Leave to act, with the journal row to mark when done. Only [`Round::gate`] makes one.
#[derive(Debug)]
pub(crate) struct Permit {
    journal: Option<i64>,
}

impl Permit {
    /// The kill or fault journal row claimed for this action.
    pub(crate) fn journal_id(&self) -> Option<i64> {
        self.journal
    }
}

/// Why the gate said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Dry-run: the caller reports what it would have done.
    DryRun,
    /// A guard refused; the reason goes into a `skipped` finding.
    Refused(String),
}

/// `inst` as the fresh policy describes it: a `hosts` target's tags come from the file, so an edit during
/// the round (a new exemption tag, a removed host) counts; cloud instances keep their listed tags.
fn current(fresh: &Fresh, inst: &Instance) -> Option<Instance> {
    let target = fresh.policy.policy.targets.iter().find(|t| t.name() == inst.target)?;
    match target {
        TargetConfig::Hosts(_) => {
            let host = fresh.host(&inst.target, &inst.id)?;
            Some(Instance { tags: host.tags.clone(), group: host.group.clone(), ..inst.clone() })
        }
        TargetConfig::AwsEc2(_) => Some(inst.clone()),
    }
}

impl<A: Actuator> Round<'_, '_, A> {
    /// The gate. `Ok(Err(refusal))` = do not act; `Err` = the store failed.
    pub(crate) fn gate(
        &mut self,
        m: MonkeyName,
        inst: Option<&Instance>,
        journal: Journal<'_>,
    ) -> Result<Result<Permit, Refusal>, RunError> {
        let refused = |why: String| {
            warn!(monkey = %m, instance = inst.map_or("-", |i| i.id.as_str()), reason = %why, "gate refused action");
            Ok(Err(Refusal::Refused(why)))
        };
        if self.mode == Mode::DryRun {
            return Ok(Err(Refusal::DryRun));
        }
        if self.opts.shutdown.is_cancelled() {
            return refused("simian is shutting down (signal); not acting".into());
        }
        if let Some(why) = self.abort_refusal() {
            return refused(why);
        }
        let watched = match (self.ctx.reload)() {
            Ok(p) => p,
            Err(e) => return refused(format!("policy no longer loads, refusing to act: {e}")),
        };
        let fresh = &watched.policy;
        if effective_mode(fresh, self.opts) != Mode::Live {
            return refused("policy is no longer in live mode".into());
        }
        // The kill switch is a file of its own: checked here before every action, whatever the fingerprint says.
        if let Some(why) = run_guard(fresh, m, self.opts, self.clock().now()) {
            return refused(why);
        }
        // The halt is in the store: read before every action (and again, atomically, by the journal claim).
        if let Some(why) = self.halt_refusal() {
            return refused(why);
        }
        if let Some(inst) = inst {
            let Some(cur) = current(&watched, inst) else {
                return refused("instance is no longer in the policy".into());
            };
            let excl = match &watched.exclusions {
                Ok(e) => e,
                Err(why) => return refused(why.clone()),
            };
            match eligibility(&cur, &opt_in_for(fresh, &cur.target), excl) {
                Eligibility::Eligible => {}
                Eligibility::NotOptedIn => return refused("instance is no longer opted in".into()),
                Eligibility::Excluded(why) => return refused(why),
            }
        }
        let id = match journal {
            Journal::Nothing => None,
            Journal::Kill { min_between, limited } => {
                let Some(inst) = inst else { return refused("a kill needs an instance".into()) };
                let limit = fresh.policy.monkeys.chaos.as_ref().and_then(|c| c.max_kills_per_run);
                if let Some(limit) = limit.filter(|_| limited) {
                    if self.kills >= limit {
                        return refused(format!("max_kills_per_run ({limit}) reached"));
                    }
                }
                match self.store.claim_kill(&self.run_id, inst, self.clock().now(), min_between)? {
                    Claim::Granted(id) => {
                        if limited {
                            self.kills += 1;
                        }
                        Some(id)
                    }
                    Claim::TooRecent(last) => {
                        return refused(format!(
                            "another run killed in this group at {}, younger than min_time_between_kills",
                            last.with_timezone(&self.policy.tz).to_rfc3339()
                        ))
                    }
                    Claim::Halted(halt) => return refused(halt.to_string()),
                }
            }
            Journal::Fault { kind, undo, expires } => {
                let Some(inst) = inst else { return refused("a fault needs an instance".into()) };
                let now = self.clock().now();
                let owner = self.ctx.agent.map(|a| a.id.as_str());
                match self.store.journal_fault(owner, &self.run_id, m, kind, inst, undo, now, expires)? {
                    Some(id) => {
                        self.held.push(OpenFault {
                            id,
                            run_id: self.run_id.clone(),
                            monkey: m,
                            kind,
                            target: inst.target.clone(),
                            instance: inst.id.clone(),
                            group: Some(inst.group.clone()),
                            zone: inst.zone.clone(),
                            undo: undo.clone(),
                            state: FaultState::Intent,
                            created: now,
                            expires,
                            error: None,
                            owner: owner.map(str::to_string),
                        });
                        Some(id)
                    }
                    None => return refused(self.halt_refusal().unwrap_or_else(|| "halted".into())),
                }
            }
        };
        Ok(Ok(Permit { journal: id }))
    }

    /// The actuator, for an action the gate allowed.
    pub(crate) fn act(&self, _permit: &Permit) -> &A {
        self.ctx.actuator
    }
}
