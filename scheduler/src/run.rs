//! One round: guards, plan, re-checked guards, journaled actions, findings into the store and the report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simian_config::{ChaosConfig, LoadedPolicy, Mode, MonkeyName};
use simian_monkeys::chaos::{self, ChaosParams, Decision};
use simian_monkeys::eligibility::{eligibility, Eligibility, Exclusions};
use simian_monkeys::{Action, Actuator, Finding, Instance, Outcome, Report, Severity};
use tracing::{info, warn};

use crate::calendar::Calendar;
use crate::store::{Claim, Store, StoreError};

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Monkeys to run; empty = every configured one.
    pub monkeys: Vec<MonkeyName>,
    /// Force dry-run whatever the policy says.
    pub dry_run: bool,
    /// RNG seed; random when absent.
    pub seed: Option<u64>,
    /// Act outside the calendar.
    pub ignore_calendar: bool,
}

/// Why a run could not happen at all (findings cover everything else).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-reads the policy right before an action so that edits (enabled: false, mode, exclusions) win.
pub type Reload<'a> = dyn Fn() -> Result<LoadedPolicy, String> + Sync + 'a;

/// The ports a run needs besides the policy.
pub struct RunContext<'a, A: Actuator> {
    /// Carries actions out.
    pub actuator: &'a A,
    /// The current inventory.
    pub inventory: Result<Vec<Instance>, String>,
    /// Re-reads the policy for the guard re-check.
    pub reload: &'a Reload<'a>,
}

fn effective_mode(policy: &LoadedPolicy, opts: &RunOptions) -> Mode {
    match (policy.policy.mode, opts.dry_run) {
        (Mode::Live, false) => Mode::Live,
        (Mode::Live, true) | (Mode::DryRun, _) => Mode::DryRun,
    }
}

/// Run-level guards; `Some(reason)` = nothing may happen.
fn run_guard(
    policy: &LoadedPolicy,
    monkey: MonkeyName,
    opts: &RunOptions,
    now: DateTime<Utc>,
) -> Option<String> {
    if !policy.policy.enabled {
        return Some("policy has `enabled: false`".into());
    }
    let monkey_enabled = match monkey {
        MonkeyName::Chaos => policy.policy.monkeys.chaos.as_ref().is_some_and(|c| c.enabled),
        MonkeyName::Gorilla => policy.policy.monkeys.gorilla.as_ref().is_some_and(|c| c.enabled),
    };
    if !monkey_enabled {
        return Some(format!("monkey `{monkey}` is not enabled in the policy"));
    }
    if let Some(ks) = &policy.kill_switch {
        if ks.exists() {
            return Some(format!("kill switch {} exists", ks.display()));
        }
    }
    if !opts.ignore_calendar {
        let cal = Calendar::new(policy.tz, policy.calendar.clone());
        if let Some(why) = cal.refusal(now) {
            return Some(why);
        }
    }
    None
}

fn exclusions(policy: &LoadedPolicy) -> Result<Exclusions, String> {
    Exclusions::new(&policy.policy.exclude).map_err(|e| format!("bad exclusion pattern: {e}"))
}

fn opt_in_for(policy: &LoadedPolicy, target: &str) -> simian_config::OptIn {
    policy
        .policy
        .targets
        .iter()
        .find(|t| t.name() == target)
        .map(|t| t.opt_in(&policy.policy.opt_in).clone())
        .unwrap_or_else(|| policy.policy.opt_in.clone())
}

/// Every guard again, on a freshly read policy, right before touching `inst`.
fn recheck(
    ctx_reload: &Reload<'_>,
    monkey: MonkeyName,
    opts: &RunOptions,
    inst: &Instance,
) -> Result<(), String> {
    let fresh = ctx_reload().map_err(|e| format!("policy no longer loads, refusing to act: {e}"))?;
    if effective_mode(&fresh, opts) != Mode::Live {
        return Err("policy is no longer in live mode".into());
    }
    if let Some(why) = run_guard(&fresh, monkey, opts, Utc::now()) {
        return Err(why);
    }
    let excl = exclusions(&fresh)?;
    match eligibility(inst, &opt_in_for(&fresh, &inst.target), &excl) {
        Eligibility::Eligible => Ok(()),
        Eligibility::NotOptedIn => Err("instance is no longer opted in".into()),
        Eligibility::Excluded(why) => Err(why),
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

/// Run the asked monkeys once and return the report; every finding is also in the store.
pub async fn run_once<A: Actuator>(
    policy: &LoadedPolicy,
    opts: &RunOptions,
    ctx: RunContext<'_, A>,
    store: &mut Store,
) -> Result<Report, RunError> {
    let started = Utc::now();
    let seed = opts.seed.unwrap_or_else(|| rand::rng().random());
    let mode = effective_mode(policy, opts);
    let run_id = uuid::Uuid::new_v4().to_string();
    store.begin_run(&run_id, seed, mode.as_str(), started)?;
    info!(run_id = %run_id, seed, mode = mode.as_str(), "run started");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut findings = Vec::new();
    let mut round = Round { policy, opts, ctx: &ctx, store, run_id: run_id.clone(), mode, now: started };

    let monkeys: Vec<MonkeyName> = if opts.monkeys.is_empty() {
        policy.schedules.keys().copied().collect()
    } else {
        opts.monkeys.clone()
    };
    for monkey in monkeys {
        let mut out = Vec::new();
        match monkey {
            MonkeyName::Chaos => round.chaos(&mut rng, &mut out).await?,
            MonkeyName::Gorilla => {}
        }
        for f in &out {
            round.store.add_finding(&run_id, Utc::now(), mode.as_str(), f)?;
        }
        findings.extend(out);
    }
    let finished = Utc::now();
    round.store.finish_run(&run_id, finished)?;
    info!(run_id = %run_id, findings = findings.len(), "run finished");
    Ok(Report {
        run_id,
        mode: mode.as_str().to_string(),
        seed,
        started_at: started.with_timezone(&policy.tz).fixed_offset(),
        finished_at: finished.with_timezone(&policy.tz).fixed_offset(),
        findings,
    })
}

/// One run's shared state, handed to each monkey's round.
struct Round<'a, 'c, A: Actuator> {
    policy: &'a LoadedPolicy,
    opts: &'a RunOptions,
    ctx: &'a RunContext<'c, A>,
    store: &'a mut Store,
    run_id: String,
    mode: Mode,
    now: DateTime<Utc>,
}

impl<A: Actuator> Round<'_, '_, A> {
    /// Chaos Monkey: guards, plan, then act on each kill decision.
    async fn chaos(&mut self, rng: &mut ChaCha8Rng, out: &mut Vec<Finding>) -> Result<(), RunError> {
        let (policy, opts, now) = (self.policy, self.opts, self.now);
        let m = MonkeyName::Chaos;
        let skip = |why: String| Finding::run_level(m, Outcome::Skipped, Severity::Info, why);
        let Some(cfg) = policy.policy.monkeys.chaos.as_ref() else {
            out.push(skip("monkey `chaos` is not configured in the policy".into()));
            return Ok(());
        };
        if let Some(why) = run_guard(policy, m, opts, now) {
            out.push(skip(why));
            return Ok(());
        }
        let inventory = match &self.ctx.inventory {
            Ok(inv) => inv,
            Err(e) => {
                out.push(Finding::run_level(
                    m,
                    Outcome::Failed,
                    Severity::Critical,
                    format!("cannot list instances: {e}"),
                ));
                return Ok(());
            }
        };
        let (excl, params) = match (exclusions(policy), chaos_params(policy, cfg, now)) {
            (Ok(e), Ok(p)) => (e, p),
            (Err(why), _) | (_, Err(why)) => {
                out.push(Finding::run_level(m, Outcome::Failed, Severity::Critical, why));
                return Ok(());
            }
        };
        let part = chaos::partition(inventory, &|t| opt_in_for(policy, t), &excl);
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
                Decision::Kill { victim, eligible } => {
                    out.push(self.terminate(&params, &victim, eligible).await?)
                }
            }
        }
        Ok(())
    }

    /// Terminate one chosen victim: dry-run stops here; live re-checks guards, journals, acts.
    async fn terminate(
        &mut self,
        params: &ChaosParams,
        victim: &Instance,
        eligible: usize,
    ) -> Result<Finding, RunError> {
        let m = MonkeyName::Chaos;
        let about = |outcome, severity, msg: String| {
            Finding::about(m, Action::Terminate, outcome, severity, victim, msg)
        };
        if self.mode == Mode::DryRun {
            return Ok(about(
                Outcome::Planned,
                Severity::Info,
                format!("would terminate (1 of {eligible} eligible in group); dry-run"),
            ));
        }
        if let Err(why) = recheck(self.ctx.reload, m, self.opts, victim) {
            warn!(instance = %victim.id, reason = %why, "guard refused action");
            return Ok(about(Outcome::Skipped, Severity::Info, format!("guard re-check refused: {why}")));
        }
        let claim = self.store.claim_kill(&self.run_id, victim, Utc::now(), params.min_time_between_kills)?;
        let kill_id = match claim {
            Claim::Granted(id) => id,
            Claim::TooRecent(last) => {
                return Ok(about(
                    Outcome::Skipped,
                    Severity::Info,
                    format!(
                        "another run killed in this group at {}, younger than min_time_between_kills",
                        last.with_timezone(&self.policy.tz).to_rfc3339()
                    ),
                ))
            }
        };
        let result = self.ctx.actuator.terminate(victim).await;
        self.store.finish_kill(kill_id, result.is_ok())?;
        Ok(match result {
            Ok(note) => {
                info!(instance = %victim.id, group = %victim.group, "terminated instance");
                about(
                    Outcome::Done,
                    Severity::Warning,
                    format!("terminated (1 of {eligible} eligible in group): {note}"),
                )
            }
            Err(e) => {
                warn!(instance = %victim.id, error = %e, "terminate failed");
                about(Outcome::Failed, Severity::Critical, format!("terminate failed: {e}"))
            }
        })
    }
}

fn group_skip(
    m: MonkeyName,
    eligible: &BTreeMap<(String, String), Vec<Instance>>,
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
    }
}
