//! The engine: one value (policy, fleet, sinks, clock, metrics) built once and used by `run`, `revert`,
//! `daemon` and `demo` alike. It opens the store, recovers what a crashed command left undelivered, runs
//! rounds through the one gate, and feeds the outbox.

use std::sync::Arc;

use simian_config::LoadedPolicy;
use simian_monkeys::{Instance, Report};
use simian_sinks::http::Poster;
use simian_sinks::metrics::Metrics;
use simian_sinks::{Message, Sink};
use simian_targets::{Fleet, TargetError};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::outbox::{self, DeliverySummary, Urgency};
use crate::run::{revert_faults, run_once, MetricsHandle, RunContext, RunError, RunOptions};
use crate::store::{AgentId, AgentKind, Halt, OpenFault, Store, StoreError};

/// How long a halt leaves each fault to the process holding it (which looks for a halt every second)
/// before reverting it from the journal: a holder that is gone reverts nothing.
pub const HALT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`Engine::halt`] did.
#[derive(Debug, serde::Serialize)]
pub struct Halted {
    /// The halt in force.
    pub halt: Halt,
    /// False when a halt already stood (it is kept, with its author and reason).
    pub new: bool,
    /// Faults open in the journal when the halt was recorded.
    pub open_at_halt: usize,
    /// Of those, how many their holders reverted within the grace.
    pub reverted_by_holders: usize,
    /// The revert of what was left, if anything was.
    pub revert: Option<Report>,
}

/// Why a round could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// Wrong credentials or an unreachable endpoint: a configuration problem (exit 2).
    #[error(transparent)]
    Config(TargetError),
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run itself failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Everything a round needs, built once from the policy.
pub struct Engine {
    policy: LoadedPolicy,
    fleet: Fleet,
    sinks: Vec<Sink>,
    poster: Option<Poster>,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
    /// The policy file as it is now, for the gate (re-read only when it changed).
    watch: crate::service::PolicyWatch,
    /// This process as an agent: the owner of the faults its rounds journal.
    agent: AgentId,
}

impl Engine {
    /// Build the engine: the fleet's targets, the runtime sinks and the one HTTP client (no I/O yet).
    /// The `hosts` targets' host lists move from the policy into the fleet (held once, not twice).
    pub fn new(mut policy: LoadedPolicy, clock: Arc<dyn Clock>) -> Engine {
        let fleet = Fleet::take_from_policy(&mut policy.policy);
        let sinks = Sink::all(&policy);
        let poster = Poster::new()
            .map_err(|e| error!(error = %e, "cannot build the HTTP client; messages stay in the outbox"))
            .ok();
        let watch = crate::service::PolicyWatch::new(&policy);
        let agent = AgentId::this_process(AgentKind::Command);
        Engine { policy, fleet, sinks, poster, clock, metrics: None, watch, agent }
    }

    /// The engine of a long-lived agent (`simian daemon`) with this identity: the daemon registers it and
    /// renews its lease; a one-shot command's engine registers itself around each round.
    pub fn with_agent(mut self, agent: AgentId) -> Engine {
        self.agent = agent;
        self
    }

    /// This process as an agent.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// A one-shot command is an agent while it works: registered before (`true`) and gone after (`false`).
    /// A daemon registers itself for its whole life, so this does nothing for it.
    fn one_shot_agent(&self, store: &Store, working: bool) {
        if self.agent.kind != AgentKind::Command {
            return;
        }
        let now = self.clock.now();
        let r = if working {
            store.register_agent(&self.agent, now)
        } else {
            store.agent_stopped(&self.agent, now)
        };
        if let Err(e) = r {
            warn!(error = %crate::chain(&e), "cannot record this command as an agent");
        }
    }

    /// Record Doctor's probe latencies and every report in these metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Engine {
        self.metrics = Some(metrics);
        self
    }

    /// The policy the engine was built from, less its `hosts` targets' host lists: those are the fleet's
    /// ([`Engine::fleet`]).
    pub fn policy(&self) -> &LoadedPolicy {
        &self.policy
    }

    /// The runtime sinks.
    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// A connection to the policy's store (migrated on first open).
    pub fn store(&self) -> Result<Store, StoreError> {
        Store::open(&self.policy.store)
    }

    /// Seal every message a crashed command left open and deliver what no sink has acknowledged yet
    /// (`Force` ignores backoff: `simian outbox --flush`, shutdown).
    pub async fn recover(&self, force: bool) -> Result<DeliverySummary, StoreError> {
        self.recover_with(&mut self.store()?, force).await
    }

    async fn recover_with(&self, store: &mut Store, force: bool) -> Result<DeliverySummary, StoreError> {
        let fresh = outbox::seal(store, &self.policy, &self.sinks, None, None, &*self.clock)?;
        let Some(poster) = &self.poster else {
            return Ok(DeliverySummary { pending: store.pending_count()? as usize, ..Default::default() });
        };
        let urgency = if force { Urgency::Force } else { Urgency::Normal { fresh } };
        outbox::deliver(store, &self.sinks, poster, urgency, &*self.clock).await
    }

    /// The fleet's inventory; configuration problems are the caller's error, listing failures a finding.
    async fn inventory(&self) -> Result<Result<Arc<[Instance]>, String>, RoundError> {
        match self.fleet.inventory().await {
            Ok(inv) => Ok(Ok(inv)),
            Err(e @ (TargetError::Credentials { .. } | TargetError::Unreachable { .. })) => {
                Err(RoundError::Config(e))
            }
            Err(e @ TargetError::Inventory { .. }) => Ok(Err(e.to_string())),
        }
    }

    fn options(&self, opts: &RunOptions) -> RunOptions {
        let mut opts = opts.clone();
        if opts.metrics.is_none() {
            opts.metrics = self.metrics.clone().map(MetricsHandle);
        }
        opts
    }

    /// One round: what earlier commands left undelivered first, then the monkeys through the gate; every
    /// finding is in the store (and on its way to the sinks) the moment it is made.
    pub async fn round(&self, opts: &RunOptions) -> Result<Report, RoundError> {
        let mut store = self.store()?;
        if let Err(e) = self.recover_with(&mut store, false).await {
            warn!(error = %crate::chain(&e), "cannot deliver what earlier runs left in the outbox");
        }
        let inventory = self.inventory().await?;
        let reload = || self.watch.current();
        let ctx = RunContext {
            actuator: &self.fleet,
            inventory,
            reload: &reload,
            clock: self.clock.clone(),
            poster: self.poster.as_ref(),
            agent: Some(&self.agent),
        };
        self.one_shot_agent(&store, true);
        let run = run_once(&self.policy, &self.options(opts), ctx, &mut store).await;
        self.one_shot_agent(&store, false);
        let mut report = run?;
        report.api_calls = self.fleet.api_calls();
        self.prune(&store);
        Ok(report)
    }

    /// Restore every fault still open in the journal (`simian revert`, daemon shutdown).
    pub async fn revert(&self, opts: &RunOptions) -> Result<Report, RoundError> {
        let mut store = self.store()?;
        if let Err(e) = self.recover_with(&mut store, false).await {
            warn!(error = %crate::chain(&e), "cannot deliver what earlier runs left in the outbox");
        }
        let open = store.open_faults(None)?;
        self.revert_these(open, opts, &mut store).await
    }

    /// Restore these faults (found orphaned and taken over, say), whoever owned them.
    pub async fn revert_faults(
        &self,
        faults: Vec<OpenFault>,
        opts: &RunOptions,
    ) -> Result<Report, RoundError> {
        self.revert_these(faults, opts, &mut self.store()?).await
    }

    async fn revert_these(
        &self,
        faults: Vec<OpenFault>,
        opts: &RunOptions,
        store: &mut Store,
    ) -> Result<Report, RoundError> {
        let reload = || self.watch.current();
        // Reverting needs no inventory: the journal holds everything a restore needs.
        let ctx = RunContext {
            actuator: &self.fleet,
            inventory: Ok(Arc::from([])),
            reload: &reload,
            clock: self.clock.clone(),
            poster: self.poster.as_ref(),
            agent: Some(&self.agent),
        };
        self.one_shot_agent(store, true);
        let reverted = revert_faults(&self.policy, &self.options(opts), ctx, store, faults).await;
        self.one_shot_agent(store, false);
        let mut report = reverted?;
        report.api_calls = self.fleet.api_calls();
        Ok(report)
    }

    /// Record a halt (`simian halt`): from now on nothing acts, anywhere this store is shared. Then every
    /// open fault is reverted — by its holder, which looks every second, or, if it is still open after
    /// `grace` (its holder is gone), from here through the journal.
    pub async fn halt(
        &self,
        by: &str,
        reason: Option<&str>,
        grace: std::time::Duration,
        opts: &RunOptions,
    ) -> Result<Halted, RoundError> {
        let mut store = self.store()?;
        let (halt, new) = store.halt(by, reason, self.clock.now())?;
        info!(%halt, "halt recorded: no new actions; reverting every active fault");
        let open_at_halt = store.open_faults(None)?.len();
        let deadline = tokio::time::Instant::now() + grace;
        let mut left = open_at_halt;
        while left > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            left = store.open_faults(None)?.len();
        }
        let revert = if left > 0 { Some(self.revert(opts).await?) } else { None };
        Ok(Halted { halt, new, open_at_halt, reverted_by_holders: open_at_halt.saturating_sub(left), revert })
    }

    /// Lift the halt (`simian resume`); the halt lifted, or `None` when none stood.
    pub fn resume(&self, by: &str) -> Result<Option<Halt>, StoreError> {
        let lifted = self.store()?.resume(by, self.clock.now())?;
        if let Some(h) = &lifted {
            info!(halt = %h, by, "halt lifted");
        }
        Ok(lifted)
    }

    /// Send a message (the day's plan) everywhere, or only to sink `only`: `log` sinks at once, the others
    /// through the outbox (written first).
    pub async fn publish(&self, msg: &Message, only: Option<&str>) -> Result<DeliverySummary, StoreError> {
        if only.is_none() {
            for sink in &self.sinks {
                sink.write_now(msg);
            }
        }
        let mut store = self.store()?;
        let fresh = outbox::enqueue(&mut store, &self.sinks, msg, only, self.clock.now())?;
        let Some(poster) = &self.poster else {
            return Ok(DeliverySummary { pending: store.pending_count()? as usize, ..Default::default() });
        };
        outbox::deliver(
            &mut store,
            &self.sinks,
            poster,
            Urgency::Normal { fresh: fresh.into_iter().collect() },
            &*self.clock,
        )
        .await
    }

    /// Deliver the outbox's backlog (sinks in backoff wait unless `force`).
    pub async fn deliver(&self, force: bool) -> Result<DeliverySummary, StoreError> {
        if force {
            return self.recover(true).await;
        }
        let mut store = self.store()?;
        let Some(poster) = &self.poster else {
            return Ok(DeliverySummary { pending: store.pending_count()? as usize, ..Default::default() });
        };
        outbox::deliver(&mut store, &self.sinks, poster, Urgency::Normal { fresh: Vec::new() }, &*self.clock)
            .await
    }

    /// Fully delivered messages are kept a while for `simian outbox`, then dropped; findings stay.
    /// Apply the policy's `retention` (runs, findings, delivered messages older than it leave the store).
    fn prune(&self, store: &Store) {
        let keep =
            chrono::TimeDelta::from_std(self.policy.policy.retention()).unwrap_or(chrono::TimeDelta::MAX);
        match store.prune(crate::clock::sub(self.clock.now(), keep)) {
            Ok(p) if p.findings + p.runs + p.messages > 0 => {
                info!(
                    findings = p.findings,
                    runs = p.runs,
                    messages = p.messages,
                    "pruned what is past retention"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %crate::chain(&e), "cannot prune the store"),
        }
    }
}
