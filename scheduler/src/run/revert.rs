//! Undo journaled faults: restore each through its target, mark the journal, report each as a finding.

use chrono::{DateTime, Utc};
use simian_monkeys::{Action, Actuator, Finding, Outcome, Severity, Undo};
use tracing::{info, warn};

use super::{Out, Round, RunError};
use crate::store::OpenFault;

/// The action a revert of this fault is reported as.
fn revert_action(undo: &Undo) -> Action {
    match undo {
        Undo::Ec2Groups { .. } | Undo::HostsCommand { .. } => Action::Restore,
        Undo::Netem { .. } => Action::RevertLatency,
    }
}

/// An error that means there is nothing left to restore (the instance is gone).
fn instance_gone(message: &str) -> bool {
    message.contains("InvalidInstanceID.NotFound") || message.contains("IncorrectInstanceState")
}

/// The finding of a revert that is due but not done (dry-run).
pub(crate) fn planned(fault: &OpenFault) -> Finding {
    Finding {
        monkey: fault.monkey,
        action: revert_action(&fault.undo),
        outcome: Outcome::Planned,
        target: Some(fault.target.clone()),
        instance: Some(fault.instance.clone()),
        group: fault.group.clone(),
        zone: fault.zone.clone(),
        severity: Severity::Warning,
        message: format!(
            "{} is past its time and would be reverted; dry-run (run `simian revert`)",
            fault.kind
        ),
        details: Default::default(),
    }
}

impl<A: Actuator> Round<'_, '_, A> {
    /// When this run's agent reverts a fault another agent owned: ` by agent X (taken over from Y)`.
    fn on_behalf(&self, fault: &OpenFault) -> String {
        match (self.ctx.agent, fault.owner.as_deref()) {
            (Some(me), Some(owner)) if owner != me.id => {
                format!(" by agent {} (taken over from {owner})", me.id)
            }
            (Some(me), None) => format!(" by agent {}", me.id),
            _ => String::new(),
        }
    }

    /// Restore each fault; failures stay open in the journal for the next run or `simian revert`.
    ///
    /// Reverting always runs, whatever the mode, kill switch or calendar say: undoing a fault is
    /// never the risky direction.
    pub(crate) async fn revert(&mut self, faults: Vec<OpenFault>, out: &mut Out<'_>) -> Result<(), RunError> {
        for fault in faults {
            let finding = |outcome, severity, message: String| Finding {
                monkey: fault.monkey,
                action: revert_action(&fault.undo),
                outcome,
                target: Some(fault.target.clone()),
                instance: Some(fault.instance.clone()),
                group: fault.group.clone(),
                zone: fault.zone.clone(),
                severity,
                message,
                details: Default::default(),
            };
            // A journal write that fails never stops the next restore. A revert is kept to be recorded when
            // the store is back (a daemon does so); until then the fault stays open in the journal, and a
            // later revert restores it again (restores are idempotent).
            let at = self.store.at().clone();
            let unrecorded = |r: Result<(), crate::store::StoreError>,
                              reverted: Option<(DateTime<Utc>, Option<&str>)>| {
                match r {
                    Ok(()) => String::new(),
                    Err(e) => {
                        warn!(instance = %fault.instance, error = %crate::chain(&e), "cannot record the revert in the journal");
                        if let Some((when, note)) = reverted {
                            crate::store::defer_reverted(&at, fault.id, when, note);
                        }
                        format!(
                            " (not recorded in the journal yet: {}; recorded when the store is back)",
                            crate::chain(&e)
                        )
                    }
                }
            };
            match self.ctx.actuator.restore(&fault.target, &fault.undo).await {
                Ok(note) => {
                    let now = self.clock().now();
                    let unrecorded =
                        unrecorded(self.store.fault_reverted(fault.id, now, None), Some((now, None)));
                    info!(instance = %fault.instance, kind = %fault.kind, "fault reverted");
                    out.push(finding(
                        Outcome::Done,
                        Severity::Info,
                        format!("{} reverted{}: {note}{unrecorded}", fault.kind, self.on_behalf(&fault)),
                    ));
                }
                Err(e) if instance_gone(&e.0) => {
                    let now = self.clock().now();
                    let _ = unrecorded(
                        self.store.fault_reverted(fault.id, now, Some(&e.0)),
                        Some((now, Some(&e.0))),
                    );
                    out.push(finding(
                        Outcome::Skipped,
                        Severity::Info,
                        format!("{} not reverted: the instance no longer exists ({e})", fault.kind),
                    ));
                }
                Err(e) => {
                    let _ = unrecorded(self.store.fault_revert_failed(fault.id, &e.0), None);
                    warn!(instance = %fault.instance, error = %e, "revert failed; the fault stays in the journal");
                    out.push(finding(
                        Outcome::Failed,
                        Severity::Critical,
                        format!(
                            "{} revert failed, will retry on the next run or `simian revert`: {e}",
                            fault.kind
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
