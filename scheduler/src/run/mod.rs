//! One round: revert what is due, guards, plan, re-checked guards, journaled actions, findings into the
//! store and the report. Each monkey's round lives in its own file; `revert` undoes journaled faults.

mod chaos;
mod doctor;
mod gorilla;
mod latency;
mod revert;
mod ten_eighteen;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simian_config::{LoadedPolicy, Mode, MonkeyName};
use simian_monkeys::eligibility::{eligibility, Eligibility, Exclusions};
use simian_monkeys::{Actuator, Finding, Instance, Report};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::calendar::Calendar;
use crate::store::{Store, StoreError};

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
    /// Cancelled on SIGINT/SIGTERM: stop acting, revert this run's faults at once.
    pub shutdown: CancellationToken,
    /// Where Doctor's probe latencies go (the Prometheus histogram), if anywhere.
    pub metrics: Option<MetricsHandle>,
}

/// Shared Prometheus metrics, as a run option.
#[derive(Clone)]
pub struct MetricsHandle(pub std::sync::Arc<simian_sinks::metrics::Metrics>);

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsHandle")
    }
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

pub(crate) fn effective_mode(policy: &LoadedPolicy, opts: &RunOptions) -> Mode {
    match (policy.policy.mode, opts.dry_run) {
        (Mode::Live, false) => Mode::Live,
        (Mode::Live, true) | (Mode::DryRun, _) => Mode::DryRun,
    }
}

/// Whether the policy configures `monkey` with `enabled: true`.
pub(crate) fn monkey_enabled(policy: &LoadedPolicy, monkey: MonkeyName) -> bool {
    let ms = &policy.policy.monkeys;
    match monkey {
        MonkeyName::Chaos => ms.chaos.as_ref().is_some_and(|c| c.enabled),
        MonkeyName::Gorilla => ms.gorilla.as_ref().is_some_and(|c| c.enabled),
        MonkeyName::Latency => ms.latency.as_ref().is_some_and(|c| c.enabled),
        MonkeyName::Doctor => ms.doctor.as_ref().is_some_and(|c| c.enabled),
        MonkeyName::TenEighteen => ms.ten_eighteen.as_ref().is_some_and(|c| c.enabled),
    }
}

/// Run-level guards; `Some(reason)` = nothing may happen.
pub(crate) fn run_guard(
    policy: &LoadedPolicy,
    monkey: MonkeyName,
    opts: &RunOptions,
    now: DateTime<Utc>,
) -> Option<String> {
    if !policy.policy.enabled {
        return Some("policy has `enabled: false`".into());
    }
    if !monkey_enabled(policy, monkey) {
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

pub(crate) fn exclusions(policy: &LoadedPolicy) -> Result<Exclusions, String> {
    Exclusions::new(&policy.policy.exclude).map_err(|e| format!("bad exclusion pattern: {e}"))
}

pub(crate) fn opt_in_for(policy: &LoadedPolicy, target: &str) -> simian_config::OptIn {
    policy
        .policy
        .targets
        .iter()
        .find(|t| t.name() == target)
        .map(|t| t.opt_in(&policy.policy.opt_in).clone())
        .unwrap_or_else(|| policy.policy.opt_in.clone())
}

/// A run-level `skipped` finding of `m`.
fn skipped(m: MonkeyName, why: String) -> Finding {
    Finding::run_level(m, simian_monkeys::Outcome::Skipped, simian_monkeys::Severity::Info, why)
}

/// A monkey's settings, or the finding that it is not configured.
#[allow(clippy::result_large_err)]
fn configured<T>(m: MonkeyName, cfg: Option<&T>) -> Result<&T, Finding> {
    cfg.ok_or_else(|| skipped(m, format!("monkey `{m}` is not configured in the policy")))
}

/// Every guard again, on a freshly read policy, right before touching `inst`.
pub(crate) fn recheck(
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

/// Run the asked monkeys once and return the report; every finding is also in the store.
///
/// Before anything else, faults from earlier runs whose time is up (say, simian was killed while
/// they were active) are reverted.
pub async fn run_once<A: Actuator>(
    policy: &LoadedPolicy,
    opts: &RunOptions,
    ctx: RunContext<'_, A>,
    store: &mut Store,
) -> Result<Report, RunError> {
    let seed = opts.seed.unwrap_or_else(|| rand::rng().random());
    let mode = effective_mode(policy, opts);
    let mut round = Round::begin(policy, opts, &ctx, store, seed, mode)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let due = round.store.open_faults(Some(round.now))?;
    let out = match mode {
        Mode::Live => round.revert(due).await?,
        // A dry run never mutates, not even to undo: it says what `simian revert` would restore.
        Mode::DryRun => due.iter().map(revert::planned).collect(),
    };
    round.record(out)?;

    let monkeys: Vec<MonkeyName> = if opts.monkeys.is_empty() {
        policy.schedules.keys().copied().collect()
    } else {
        opts.monkeys.clone()
    };
    for monkey in monkeys {
        let mut out = Vec::new();
        match monkey {
            MonkeyName::Chaos => round.chaos(&mut rng, &mut out).await?,
            MonkeyName::Gorilla => round.gorilla(&mut rng, &mut out).await?,
            MonkeyName::Latency => round.latency(&mut rng, &mut out).await?,
            MonkeyName::Doctor => round.doctor(&mut out).await?,
            MonkeyName::TenEighteen => round.ten_eighteen(&mut out).await?,
        }
        round.record(out)?;
    }
    round.finish(seed)
}

/// Revert every fault still open in the journal, now (`simian revert`).
pub async fn revert_all<A: Actuator>(
    policy: &LoadedPolicy,
    opts: &RunOptions,
    ctx: RunContext<'_, A>,
    store: &mut Store,
) -> Result<Report, RunError> {
    let seed = opts.seed.unwrap_or(0);
    let mut round = Round::begin(policy, opts, &ctx, store, seed, Mode::Live)?;
    let open = round.store.open_faults(None)?;
    let out = round.revert(open).await?;
    round.record(out)?;
    round.finish(seed)
}

/// One run's shared state, handed to each monkey's round.
pub(crate) struct Round<'a, 'c, A: Actuator> {
    policy: &'a LoadedPolicy,
    opts: &'a RunOptions,
    ctx: &'a RunContext<'c, A>,
    store: &'a mut Store,
    run_id: String,
    mode: Mode,
    now: DateTime<Utc>,
    findings: Vec<Finding>,
    summary: std::collections::BTreeMap<String, serde_json::Value>,
}

impl<'a, 'c, A: Actuator> Round<'a, 'c, A> {
    fn begin(
        policy: &'a LoadedPolicy,
        opts: &'a RunOptions,
        ctx: &'a RunContext<'c, A>,
        store: &'a mut Store,
        seed: u64,
        mode: Mode,
    ) -> Result<Self, RunError> {
        let now = Utc::now();
        let run_id = uuid::Uuid::new_v4().to_string();
        store.begin_run(&run_id, seed, mode.as_str(), now)?;
        info!(run_id = %run_id, seed, mode = mode.as_str(), "run started");
        Ok(Round {
            policy,
            opts,
            ctx,
            store,
            run_id,
            mode,
            now,
            findings: Vec::new(),
            summary: Default::default(),
        })
    }

    /// Store findings as soon as a monkey is done, so a crash later loses none of them.
    fn record(&mut self, out: Vec<Finding>) -> Result<(), RunError> {
        for f in &out {
            self.store.add_finding(&self.run_id, Utc::now(), self.mode.as_str(), f)?;
        }
        self.findings.extend(out);
        Ok(())
    }

    /// For monkeys that act: their settings, unless they are missing or a run-level guard (enabled, kill
    /// switch, calendar) refuses — then the `skipped` finding that says why.
    #[allow(clippy::result_large_err)]
    fn acting<'p, T>(&self, m: MonkeyName, cfg: Option<&'p T>) -> Result<&'p T, Finding> {
        let cfg = configured(m, cfg)?;
        match run_guard(self.policy, m, self.opts, self.now) {
            Some(why) => Err(skipped(m, why)),
            None => Ok(cfg),
        }
    }

    /// For monkeys that only observe (no opt-in needed): their settings and the whole inventory, unless the
    /// policy or the monkey is disabled or the inventory failed — then the finding that says so.
    #[allow(clippy::result_large_err)]
    fn observable<'p, T>(
        &self,
        m: MonkeyName,
        cfg: Option<&'p T>,
    ) -> Result<(&'p T, Vec<Instance>), Finding> {
        use simian_monkeys::{Outcome, Severity};
        let cfg = configured(m, cfg)?;
        if !self.policy.policy.enabled || !monkey_enabled(self.policy, m) {
            return Err(skipped(m, format!("monkey `{m}` is disabled in the policy")));
        }
        let inventory = self.ctx.inventory.clone().map_err(|e| {
            Finding::run_level(m, Outcome::Failed, Severity::Critical, format!("cannot list instances: {e}"))
        })?;
        Ok((cfg, inventory))
    }

    /// The eligible instances, split by group, or the run-level finding saying why there are none to have.
    #[allow(clippy::result_large_err)]
    fn eligible(&self, m: MonkeyName) -> Result<simian_monkeys::eligibility::Partition, Finding> {
        let failed = |why: String| {
            Finding::run_level(m, simian_monkeys::Outcome::Failed, simian_monkeys::Severity::Critical, why)
        };
        let inventory =
            self.ctx.inventory.as_ref().map_err(|e| failed(format!("cannot list instances: {e}")))?;
        let excl = exclusions(self.policy).map_err(failed)?;
        Ok(simian_monkeys::eligibility::partition(inventory, &|t| opt_in_for(self.policy, t), &excl))
    }

    /// Hold a fault until `deadline`, or less if a signal arrives; then the caller reverts.
    async fn hold(&self, deadline: DateTime<Utc>, what: &str) {
        let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
        info!(seconds = wait.as_secs(), fault = what, "holding fault");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.opts.shutdown.cancelled() => tracing::warn!(fault = what, "signal received: reverting now"),
        }
    }

    /// Revert every fault this run journaled that is still open.
    async fn revert_mine(&mut self) -> Result<Vec<Finding>, RunError> {
        let mine: Vec<_> =
            self.store.open_faults(None)?.into_iter().filter(|f| f.run_id == self.run_id).collect();
        self.revert(mine).await
    }

    fn finish(self, seed: u64) -> Result<Report, RunError> {
        let finished = Utc::now();
        self.store.finish_run(&self.run_id, finished)?;
        info!(run_id = %self.run_id, findings = self.findings.len(), "run finished");
        Ok(Report {
            run_id: self.run_id,
            mode: self.mode.as_str().to_string(),
            seed,
            started_at: self.now.with_timezone(&self.policy.tz).fixed_offset(),
            finished_at: finished.with_timezone(&self.policy.tz).fixed_offset(),
            api_calls: 0,
            summary: self.summary,
            findings: self.findings,
        })
    }
}
