//! Chaos Monkey's round: plan one victim per eligible group, then terminate with guards and the journal.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use simian_config::MonkeyName;
use simian_monkeys::chaos::{self, ChaosParams, Decision};
use simian_monkeys::{Action, Actuator, Finding, Instance, Outcome, Severity};
use tracing::{info, warn};

use chrono::{DateTime, Utc};
use simian_config::{ChaosConfig, LoadedPolicy};

use super::experiment::Go;
use super::gate::{Journal, Permit, Refusal};
use super::{Out, Round, RunError};
use crate::calendar::Calendar;

impl<A: Actuator> Round<'_, '_, A> {
    /// Chaos Monkey: guards, plan, then act on each kill decision.
    pub(crate) async fn chaos(&mut self, rng: &mut ChaCha8Rng, out: &mut Out<'_>) -> Result<(), RunError> {
        let (policy, now) = (self.policy, self.now);
        let m = MonkeyName::Chaos;
        let skip = |why: String| Finding::run_level(m, Outcome::Skipped, Severity::Info, why);
        let cfg = match self.acting(m, policy.policy.monkeys.chaos.as_ref()) {
            Ok(cfg) => cfg,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let params = match chaos_params(policy, cfg, now) {
            Ok(p) => p,
            Err(why) => {
                out.push(Finding::run_level(m, Outcome::Failed, Severity::Critical, why));
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
        for (inst, why) in &part.excluded {
            out.push(Finding::about(
                m,
                Action::Terminate,
                Outcome::Skipped,
                Severity::Info,
                inst,
                why.clone(),
            ));
        }
        if part.eligible.is_empty() {
            out.push(skip("no eligible instances: none carries the opt-in tag without an exclusion".into()));
            return Ok(());
        }
        let history: BTreeMap<_, _> = self.store.last_live_kills()?;
        let mut victims: Vec<(Instance, usize)> = Vec::new();
        let decisions = chaos::plan(&part.eligible, &history, &params, now, rng);
        for d in decisions {
            let skipped = |group: &(String, String), why: String| group_skip(m, &part.eligible, group, why);
            match d {
                Decision::NotChosen { group, roll, probability } => out.push(skipped(
                    &group,
                    format!("group not chosen this run (roll {roll:.3} ≥ probability {probability:.3})"),
                )),
                Decision::TooRecent { group, last_kill } => out.push(skipped(
                    &group,
                    format!(
                        "last live kill in this group was at {}, younger than min_time_between_kills",
                        last_kill.with_timezone(&policy.tz).to_rfc3339()
                    ),
                )),
                Decision::LimitReached { group, limit } => {
                    out.push(skipped(&group, format!("max_kills_per_run ({limit}) reached")))
                }
                Decision::Kill { victim, eligible } => victims.push((victim, eligible)),
            }
        }
        if !victims.is_empty() && self.baseline(m, cfg.steady_state.as_ref(), out).await? == Go::Stop {
            return Ok(());
        }
        // Victims go in batches of what their target terminates in one call (a cloud API call; one host
        // at a time on `hosts`), and the gate sees every victim right before its batch: a kill switch or
        // SIGTERM during one kill stops the next.
        let mut rest = victims.as_slice();
        while let Some((first, _)) = rest.first() {
            let size = self.batch_size(first).max(1);
            let n = rest.iter().take(size).take_while(|(v, _)| v.target == first.target).count().max(1);
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let mut go: Vec<(&Instance, usize, Permit)> = Vec::new();
            for (victim, eligible) in batch {
                let about = |outcome, severity, msg: String| {
                    Finding::about(m, Action::Terminate, outcome, severity, victim, msg)
                };
                match self.gate(
                    m,
                    Some(victim),
                    Journal::Kill { min_between: params.min_time_between_kills, limited: true },
                )? {
                    Ok(permit) => go.push((victim, *eligible, permit)),
                    Err(Refusal::DryRun) => out.push(about(
                        Outcome::Planned,
                        Severity::Info,
                        format!("would terminate (1 of {eligible} eligible in group); dry-run"),
                    )),
                    Err(Refusal::Refused(why)) => out.push(about(
                        Outcome::Skipped,
                        Severity::Info,
                        format!("guard re-check refused: {why}"),
                    )),
                }
            }
            let Some((_, _, permit)) = go.first() else { continue };
            let insts: Vec<Instance> = go.iter().map(|(v, ..)| (*v).clone()).collect();
            let results = self.act(permit).terminate_many(&insts).await;
            for ((victim, eligible, permit), result) in go.iter().zip(results) {
                if let Some(id) = permit.journal_id() {
                    self.store.finish_kill(id, result.is_ok())?;
                }
                out.push(match result {
                    Ok(note) => {
                        info!(instance = %victim.id, group = %victim.group, "terminated instance");
                        Finding::about(
                            m,
                            Action::Terminate,
                            Outcome::Done,
                            Severity::Warning,
                            victim,
                            format!("terminated (1 of {eligible} eligible in group): {note}"),
                        )
                    }
                    Err(e) => {
                        warn!(instance = %victim.id, error = %e, "terminate failed");
                        Finding::about(
                            m,
                            Action::Terminate,
                            Outcome::Failed,
                            Severity::Critical,
                            victim,
                            format!("terminate failed: {e}"),
                        )
                    }
                });
            }
        }
        // The fault phase of the experiment: `observe` after the kills, then the recovery.
        self.observe(m, out).await?;
        self.conclude(m, out).await
    }
}

fn group_skip(
    m: MonkeyName,
    eligible: &simian_monkeys::chaos::Groups,
    key: &(String, String),
    why: String,
) -> Finding {
    Finding {
        monkey: m,
        action: Action::Terminate,
        outcome: Outcome::Skipped,
        target: Some(key.0.clone()),
        instance: None,
        group: Some(key.1.clone()),
        zone: None,
        severity: Severity::Info,
        message: format!("{why} ({} eligible)", eligible.get(key).map_or(0, Vec::len)),
        details: Default::default(),
    }
}

fn chaos_params(policy: &LoadedPolicy, cfg: &ChaosConfig, now: DateTime<Utc>) -> Result<ChaosParams, String> {
    let probability = match (cfg.probability, cfg.mean_time_between_kills) {
        (Some(p), _) => p,
        (None, Some(mtbk)) => {
            let cron =
                policy.schedules.get(&MonkeyName::Chaos).ok_or("mean_time_between_kills needs a schedule")?;
            let cal = Calendar::new(policy.tz, policy.calendar.clone());
            let gap = cal
                .mean_gap(cron, now)
                .ok_or("the schedule never fires inside the calendar, so mean_time_between_kills gives no probability")?;
            chaos::probability_from_mean(mtbk.chrono(), gap)
        }
        (None, None) => 1.0,
    };
    Ok(ChaosParams {
        probability,
        min_time_between_kills: cfg.min_time_between_kills.map(|d| d.chrono()),
        max_kills_per_run: cfg.max_kills_per_run,
    })
}
