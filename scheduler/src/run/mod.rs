//! One round: revert what is due, guards, plan, re-checked guards, journaled actions, findings into the
//! store and the report. Each monkey's round lives in its own file; `revert` undoes journaled faults.

mod chaos;
mod doctor;
mod experiment;
mod gate;
mod gorilla;
mod latency;
mod revert;
mod stream;
mod ten_eighteen;

pub use stream::Out;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simian_config::{LoadedPolicy, Mode, MonkeyName};
use simian_monkeys::eligibility::Exclusions;
use simian_monkeys::{Actuator, Finding, Instance, Report};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::calendar::Calendar;
use crate::clock::{Clock, SystemClock};
use crate::store::{AgentId, OpenFault, Store, StoreError};

/// How often a held fault checks the store for a halt (`simian halt` promises every fault reverted within
/// 30 s; its holder reverts within about this long).
const HALT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

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
pub type Reload<'a> = dyn Fn() -> Result<std::sync::Arc<crate::service::Fresh>, String> + Sync + 'a;

/// The ports a run needs besides the policy.
pub struct RunContext<'a, A: Actuator> {
    /// Carries actions out.
    pub actuator: &'a A,
    /// The current inventory.
    pub inventory: Result<Arc<[Instance]>, String>,
    /// Re-reads the policy for the guard re-check.
    pub reload: &'a Reload<'a>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Delivers the findings at each flush; `None` = they wait in the outbox for the next delivery.
    pub poster: Option<&'a simian_sinks::http::Poster>,
    /// The agent this run belongs to: it owns the faults the run journals, and renews its lease while it
    /// holds them. `None` (tests): faults without an owner.
    pub agent: Option<&'a AgentId>,
}

impl<'a, A: Actuator> RunContext<'a, A> {
    /// A context on the system clock that leaves delivery to the outbox's next pass.
    pub fn new(actuator: &'a A, inventory: Result<Arc<[Instance]>, String>, reload: &'a Reload<'a>) -> Self {
        RunContext { actuator, inventory, reload, clock: Arc::new(SystemClock), poster: None, agent: None }
    }
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
    let mut out = round.out()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let result = async {
        let me = round.ctx.agent.map(|a| a.id.as_str());
        let due = round.store.faults_free_for(me, Some(round.now), round.now)?;
        match mode {
            Mode::Live => round.revert(due, &mut out).await?,
            // A dry run never mutates, not even to undo: it says what `simian revert` would restore.
            Mode::DryRun => out.extend(due.iter().map(revert::planned)),
        }
        out.flush().await?;

        let monkeys: Vec<MonkeyName> = if opts.monkeys.is_empty() {
            policy.schedules.keys().copied().collect()
        } else {
            opts.monkeys.clone()
        };
        for monkey in monkeys {
            round.next_monkey();
            match monkey {
                MonkeyName::Chaos => round.chaos(&mut rng, &mut out).await?,
                MonkeyName::Gorilla => round.gorilla(&mut rng, &mut out).await?,
                MonkeyName::Latency => round.latency(&mut rng, &mut out).await?,
                MonkeyName::Doctor => round.doctor(&mut out).await?,
                MonkeyName::TenEighteen => round.ten_eighteen(&mut out).await?,
            }
            out.flush().await?;
        }
        Ok::<(), RunError>(())
    }
    .await;
    // A round that failed midway (its store broke, say) still undoes the faults it put in place.
    if result.is_err() && !round.held.is_empty() {
        if let Err(e) = round.revert_mine(&mut out).await {
            tracing::error!(error = %crate::chain(&e), "cannot revert the faults of a failed round");
        }
    }
    round.finish(seed, out, result).await
}

/// Revert these journaled faults now, whatever the mode (`simian revert`, a halt, a takeover).
pub async fn revert_faults<A: Actuator>(
    policy: &LoadedPolicy,
    opts: &RunOptions,
    ctx: RunContext<'_, A>,
    store: &mut Store,
    faults: Vec<OpenFault>,
) -> Result<Report, RunError> {
    let seed = opts.seed.unwrap_or(0);
    let mut round = Round::begin(policy, opts, &ctx, store, seed, Mode::Live)?;
    let mut out = round.out()?;
    let result = round.revert(faults, &mut out).await;
    round.finish(seed, out, result).await
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
    /// Kills granted so far in this run, against `max_kills_per_run` (Chaos and Doctor share it).
    kills: u32,
    summary: std::collections::BTreeMap<String, serde_json::Value>,
    /// Cancelled when the current monkey's steady-state experiment aborts its round.
    abort: CancellationToken,
    /// Whether the abort finding of the current round is out.
    abort_reported: bool,
    /// The current monkey's running experiment.
    experiment: Option<simian_probes::Experiment>,
    /// Every experiment of this run, for the report.
    experiments: Vec<simian_monkeys::experiment::Experiment>,
    /// The faults this run journaled and has not reverted: held in memory too, so they are restored at
    /// their end even when the store stops answering meanwhile.
    held: Vec<OpenFault>,
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
        let now = ctx.clock.now();
        let run_id = uuid::Uuid::new_v4().to_string();
        store.begin_run(&run_id, seed, mode, now)?;
        info!(run_id = %run_id, seed, mode = mode.as_str(), "run started");
        Ok(Round {
            policy,
            opts,
            ctx,
            store,
            run_id,
            mode,
            now,
            kills: 0,
            summary: Default::default(),
            abort: CancellationToken::new(),
            abort_reported: false,
            experiment: None,
            experiments: Vec::new(),
            held: Vec::new(),
        })
    }

    /// Where this run's findings go: a connection of its own, so findings are recorded the moment they
    /// are made while the round holds its journal connection.
    fn out(&self) -> Result<Out<'a>, RunError> {
        let store = Store::open(self.store.at())?;
        Ok(Out::new(store, self.run_id.clone(), self.mode, self.policy, self.ctx.poster, &*self.ctx.clock))
    }

    /// How many kills of `inst`'s target go in one call: a cloud API batch, or one host at a time.
    fn batch_size(&self, inst: &Instance) -> usize {
        match self.policy.policy.targets.iter().find(|t| t.name() == inst.target) {
            Some(simian_config::TargetConfig::AwsEc2(a)) => a.terminate_batch as usize,
            Some(simian_config::TargetConfig::Hosts(_)) | None => 1,
        }
    }

    /// Where "now" comes from.
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.ctx.clock
    }

    /// For monkeys that act: their settings, unless they are missing or a run-level guard (enabled, kill
    /// switch, calendar) refuses — then the `skipped` finding that says why.
    #[allow(clippy::result_large_err)]
    fn acting<'p, T>(&self, m: MonkeyName, cfg: Option<&'p T>) -> Result<&'p T, Finding> {
        let cfg = configured(m, cfg)?;
        match run_guard(self.policy, m, self.opts, self.now).or_else(|| self.halt_refusal()) {
            Some(why) => Err(skipped(m, why)),
            None => Ok(cfg),
        }
    }

    /// Why nothing may act because of the store's halt: the halt itself, or — failing closed — that its
    /// state cannot be read.
    pub(crate) fn halt_refusal(&self) -> Option<String> {
        match self.store.current_halt() {
            Ok(halt) => halt.map(|h| h.to_string()),
            Err(e) => Some(format!("cannot read the halt state, refusing to act: {}", crate::chain(&e))),
        }
    }

    /// Resolves once a halt stands (polled every second); store errors are not a halt (the deadline still
    /// ends the hold). The agent's lease is renewed here too ([`crate::store::LEASE_RENEW`]): a one-shot run holding a fault
    /// for an hour must not look dead to a daemon.
    async fn halted(&self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(HALT_POLL).await;
            if let Ok(Some(h)) = self.store.current_halt() {
                tracing::warn!(halt = %h, "halt: reverting now");
                return;
            }
            if let Some(me) = self.ctx.agent.filter(|_| renewed.elapsed() >= crate::store::LEASE_RENEW) {
                renewed = tokio::time::Instant::now();
                if let Err(e) = self.store.heartbeat(me, self.clock().now()) {
                    tracing::warn!(error = %crate::chain(&e), "cannot renew the agent's lease");
                }
            }
        }
    }

    /// For monkeys that only observe (no opt-in needed): their settings and the whole inventory, unless the
    /// policy or the monkey is disabled or the inventory failed — then the finding that says so.
    #[allow(clippy::result_large_err)]
    fn observable<'p, T>(
        &self,
        m: MonkeyName,
        cfg: Option<&'p T>,
    ) -> Result<(&'p T, &'a [Instance]), Finding> {
        use simian_monkeys::{Outcome, Severity};
        let cfg = configured(m, cfg)?;
        if !self.policy.policy.enabled || !monkey_enabled(self.policy, m) {
            return Err(skipped(m, format!("monkey `{m}` is disabled in the policy")));
        }
        // Borrowed, not copied: a sweep of 10,000 endpoints holds one inventory, not two.
        let ctx: &'a RunContext<'c, A> = self.ctx;
        let inventory = ctx.inventory.as_deref().map_err(|e| {
            Finding::run_level(m, Outcome::Failed, Severity::Critical, format!("cannot list instances: {e}"))
        })?;
        Ok((cfg, inventory))
    }

    /// The eligible instances, split by group, or the run-level finding saying why there are none to have.
    #[allow(clippy::result_large_err)]
    fn eligible(&self, m: MonkeyName) -> Result<simian_monkeys::eligibility::Partition<'a>, Finding> {
        let failed = |why: String| {
            Finding::run_level(m, simian_monkeys::Outcome::Failed, simian_monkeys::Severity::Critical, why)
        };
        // Borrowed for the round's lifetime, not this call's: the round acts while it holds the partition.
        let ctx: &'a RunContext<'c, A> = self.ctx;
        let inventory = ctx.inventory.as_ref().map_err(|e| failed(format!("cannot list instances: {e}")))?;
        let excl = exclusions(self.policy).map_err(failed)?;
        Ok(simian_monkeys::eligibility::partition(inventory, &|t| opt_in_for(self.policy, t), &excl))
    }

    /// Hold a fault until `deadline`, or less if a signal arrives or the steady-state experiment aborts;
    /// then the caller reverts. What was found so far is delivered first: chat hears of the fault when it
    /// starts, not when it ends.
    async fn hold(&self, deadline: DateTime<Utc>, what: &str, out: &mut Out<'_>) -> Result<(), RunError> {
        out.flush().await?;
        let wait = (deadline - self.clock().now()).to_std().unwrap_or_default();
        info!(seconds = wait.as_secs(), fault = what, "holding fault");
        // The experiment's "during" figures cover the hold itself: the fault fully in place.
        if let Some(e) = &self.experiment {
            e.fault_in_place();
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.opts.shutdown.cancelled() => tracing::warn!(fault = what, "signal received: reverting now"),
            _ = self.abort.cancelled() => tracing::warn!(fault = what, "steady state broke: reverting now"),
            _ = self.halted() => {}
        }
        if let Some(e) = &self.experiment {
            e.pause();
        }
        Ok(())
    }

    /// A new monkey's round: an experiment's abort ends the round it happened in, not the rest of the run.
    fn next_monkey(&mut self) {
        self.abort = CancellationToken::new();
        self.abort_reported = false;
        self.experiment = None;
    }

    /// Revert every fault this run journaled that is still open: from the journal, and from memory when the
    /// store does not answer (fail closed: nothing new acts, but what was done is undone).
    async fn revert_mine(&mut self, out: &mut Out<'_>) -> Result<(), RunError> {
        let held = std::mem::take(&mut self.held);
        let mine: Vec<OpenFault> = match self.store.open_faults(None) {
            Ok(open) => open.into_iter().filter(|f| f.run_id == self.run_id).collect(),
            Err(e) => {
                tracing::warn!(error = %crate::chain(&e), "the store does not answer: reverting the faults held in memory");
                held
            }
        };
        self.revert(mine, out).await
    }

    /// End the run: mark it finished, seal and deliver the last findings (with the summary), and build
    /// the report. A round that failed midway still seals what it recorded before returning the error.
    async fn finish(
        self,
        seed: u64,
        mut out: Out<'_>,
        result: Result<(), RunError>,
    ) -> Result<Report, RunError> {
        let finished = self.clock().now();
        self.store.finish_run(&self.run_id, finished)?;
        let local = |t: DateTime<Utc>| t.with_timezone(&self.policy.tz).fixed_offset();
        let mut report = Report {
            run_id: self.run_id.clone(),
            mode: self.mode,
            seed,
            started_at: local(self.now),
            finished_at: local(finished),
            api_calls: 0,
            summary: self.summary,
            findings: Vec::new(),
            experiment: experiment::worst(&self.experiments),
            experiments: self.experiments,
        };
        let flushed = out.flush_with(Some(&report)).await;
        result?;
        flushed?;
        let (_, findings) = out.into_parts();
        info!(run_id = %self.run_id, findings = findings.len(), "run finished");
        report.findings = findings;
        Ok(report)
    }
}

/// A monkey's summary for the report; should encoding ever fail, the report says so instead of hiding it.
pub(crate) fn summary_value(s: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(s)
        .unwrap_or_else(|e| serde_json::json!({ "error": format!("cannot encode the summary: {e}") }))
}
