//! The long-running daemon: fires each monkey at its cron times (never two rounds of one monkey at once),
//! posts the day's plan, retries the outbox, serves `/metrics` and `/healthz`, reloads the policy on
//! request, and on shutdown reverts every active fault and flushes the outbox.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use simian_config::{LoadedPolicy, MonkeyName};
use simian_monkeys::Report;
use simian_sinks::metrics::Metrics;
use simian_sinks::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::calendar::Calendar;
use crate::control::{Control, ControlRequest, RevertRefused};
use crate::engine::Engine;
use crate::http::HttpState;
use crate::run::RunOptions;
use crate::service;
use crate::store::{AgentId, AgentKind, OpenFault, Store, StoreError};

/// The longest the loop sleeps: wall-clock jumps, announcements and outbox retries are noticed this fast.
const TICK: Duration = Duration::from_secs(30);
/// On shutdown, rounds get this long to revert their faults before the journal-wide revert.
const ROUNDS_GRACE: Duration = Duration::from_secs(15);
/// On shutdown, the outbox flush gets this long.
const FLUSH_GRACE: Duration = Duration::from_secs(8);
/// How often the loop reads the store's halt (`simian halt` stops every agent within this long).
const HALT_POLL: Duration = Duration::from_secs(5);
/// While halted, how often faults that are still open (their holder gone, or a revert that failed) are
/// reverted again from the journal.
const HALT_RETRY: Duration = Duration::from_secs(30);

pub use crate::clock::{Clock, SystemClock, TokioClock};

/// Why the daemon could not start (once running, problems are logged and it carries on).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The metrics address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A policy being read after SIGHUP.
type Loading = tokio::task::JoinHandle<Result<LoadedPolicy, simian_config::PolicyErrors>>;

/// How the daemon is driven.
pub struct DaemonOptions {
    /// Serve `/metrics` and `/healthz` here; `None` = no HTTP server.
    pub listen: Option<SocketAddr>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// One message per SIGHUP: reload the policy.
    pub reload: mpsc::Receiver<()>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Every finished round's report, for tests and embedding.
    pub on_round: Option<mpsc::UnboundedSender<(MonkeyName, Report)>>,
    /// Called once the HTTP server is bound, with its address (port 0 picks a free one).
    pub on_listen: Option<Box<dyn FnOnce(SocketAddr) + Send>>,
}

/// Run until `opts.shutdown` is cancelled; then revert, flush, and return.
pub async fn run(policy: LoadedPolicy, opts: DaemonOptions) -> Result<(), DaemonError> {
    // Boxed: the loop's future is deep, and callers should not pay for its layout.
    tokio::task::LocalSet::new().run_until(Box::pin(main_loop(policy, opts))).await
}

/// The daemon's state between ticks.
struct Daemon {
    policy: LoadedPolicy,
    /// Built from `policy`; rebuilt on reload (rounds already running keep the one they started with).
    engine: Arc<Engine>,
    /// A `--store` override, kept across reloads.
    store: simian_store::StoreAt,
    metrics: Arc<Metrics>,
    next: BTreeMap<MonkeyName, DateTime<Utc>>,
    running: BTreeMap<MonkeyName, JoinHandle<()>>,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
    on_round: Option<mpsc::UnboundedSender<(MonkeyName, Report)>>,
    /// When this daemon first saw the halt that stands now.
    halt_seen: Option<tokio::time::Instant>,
    /// When it last reverted from the journal because of that halt.
    halt_reverted: Option<tokio::time::Instant>,
    /// This daemon as an agent (kept across reloads).
    agent: AgentId,
    /// Faults taken over from agents whose lease ran out, restored here at their planned end.
    adopted: Vec<OpenFault>,
    /// Whether the store answered the last lease renewal (for `/healthz` and `simian_store_up`).
    store_health: Arc<crate::http::StoreHealth>,
}

async fn main_loop(policy: LoadedPolicy, mut opts: DaemonOptions) -> Result<(), DaemonError> {
    let store = Store::open(&policy.store)?;
    let metrics = Arc::new(service::seeded_metrics(&store)?);
    drop(store);
    let heartbeat = Arc::new(AtomicI64::new(opts.clock.now().timestamp()));
    let store_health = Arc::new(crate::http::StoreHealth::default());
    let agent = AgentId::this_process(AgentKind::Daemon);
    // The control room sees the policy the loop runs (updated on reload) and asks the loop to revert.
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(Arc::new(policy.clone()));
    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(16);
    if let Some(addr) = opts.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        info!(addr = %bound, "serving /metrics and /healthz");
        if let Some(f) = opts.on_listen.take() {
            f(bound);
        }
        let control = Control {
            policy: policy_rx,
            requests: control_tx,
            loopback: bound.ip().is_loopback(),
            agent: agent.id.clone(),
            store: Default::default(),
            inventory: Default::default(),
        };
        let state = HttpState::new(
            metrics.clone(),
            heartbeat.clone(),
            opts.clock.clone(),
            policy.store.clone(),
            store_health.clone(),
            control,
        );
        let cap = crate::http::connection_cap();
        tokio::spawn(crate::http::serve(listener, Arc::new(state), cap, opts.shutdown.clone()));
    }
    Store::open(&policy.store)?.register_agent(&agent, opts.clock.now())?;
    info!(agent = %agent.id, "registered as an agent");
    let engine = Arc::new(
        Engine::new(policy.clone(), opts.clock.clone())
            .with_metrics(metrics.clone())
            .with_agent(agent.clone()),
    );
    // What a killed predecessor left undelivered goes out first.
    if let Err(e) = engine.recover(false).await {
        warn!(error = %crate::chain(&e), "cannot deliver what earlier runs left in the outbox");
    }
    let mut d = Daemon {
        store: policy.store.clone(),
        policy,
        engine,
        metrics,
        next: BTreeMap::new(),
        running: BTreeMap::new(),
        shutdown: opts.shutdown.clone(),
        clock: opts.clock.clone(),
        on_round: opts.on_round.take(),
        halt_seen: None,
        halt_reverted: None,
        agent,
        adopted: Vec::new(),
        store_health,
    };
    d.plan_next(d.clock.now());
    info!(policy = %d.policy.name, monkeys = d.next.len(), "daemon started");
    // A reload reads and validates the file on a blocking thread: a huge or hostile policy must never hold up
    // the loop (fires, SIGTERM). A SIGHUP during a reload asks for one more once it is done.
    let mut loading: Option<Loading> = None;
    let mut again = false;
    let mut halt_tick = tokio::time::interval(HALT_POLL);
    halt_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = d.clock.now();
        heartbeat.store(now.timestamp(), Ordering::Relaxed);
        d.fire_due(now);
        d.announce(now).await;
        d.retry_outbox().await;
        let wait = d
            .next
            .values()
            .min()
            .and_then(|at| (*at - d.clock.now()).to_std().ok())
            .unwrap_or_default()
            .min(TICK)
            // Never spin: the earliest fire is at least a millisecond away once fired.
            .max(Duration::from_millis(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = opts.shutdown.cancelled() => break,
            _ = halt_tick.tick() => d.tick_store().await,
            Some(req) = control_rx.recv() => d.control(req).await,
            Some(()) = opts.reload.recv() => match loading {
                Some(_) => again = true,
                None => loading = Some(d.start_reload()),
            },
            done = async {
                match loading.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            }, if loading.is_some() => {
                loading = None;
                match done {
                    Ok(loaded) => {
                        d.reloaded(loaded);
                        policy_tx.send_replace(Arc::new(d.policy.clone()));
                    }
                    Err(e) => error!(error = %e, "policy reload failed, keeping the previous policy"),
                }
                if std::mem::take(&mut again) {
                    loading = Some(d.start_reload());
                }
            }
        }
    }
    d.stop().await;
    Ok(())
}

impl Daemon {
    /// Each monkey's next fire strictly after `after`, inside the calendar.
    fn plan_next(&mut self, after: DateTime<Utc>) {
        let cal = Calendar::new(self.policy.tz, self.policy.calendar.clone());
        self.next = self
            .policy
            .schedules
            .iter()
            .filter_map(|(m, cron)| {
                cal.next_fires(cron, after, 1).first().map(|at| (*m, at.with_timezone(&Utc)))
            })
            .collect();
    }

    /// Start a round for every monkey whose time has come, unless its previous round still runs.
    fn fire_due(&mut self, now: DateTime<Utc>) {
        let due: Vec<MonkeyName> = self.next.iter().filter(|(_, at)| **at <= now).map(|(m, _)| *m).collect();
        let cal = Calendar::new(self.policy.tz, self.policy.calendar.clone());
        for m in due {
            // Fires missed while the machine slept are skipped, not caught up.
            let scheduled = match self
                .policy
                .schedules
                .get(&m)
                .and_then(|c| cal.next_fires(c, now, 1).first().copied())
            {
                Some(at) => self.next.insert(m, at.with_timezone(&Utc)),
                None => self.next.remove(&m),
            };
            if self.running.get(&m).is_some_and(|h| !h.is_finished()) {
                warn!(monkey = %m, "previous round still running; skipping this fire");
                continue;
            }
            // Each fire runs on one agent of those sharing the store; nothing runs if the claim cannot be made.
            let Some(at) = scheduled else { continue };
            let claim = self
                .engine
                .store()
                .and_then(|s| s.claim_fire(&self.policy.name, m.as_str(), at, &self.agent, self.clock.now()));
            match claim {
                Ok(None) => {}
                Ok(Some(other)) => {
                    info!(monkey = %m, at = %at, agent = %other, "this fire was taken by another agent");
                    continue;
                }
                Err(e) => {
                    error!(monkey = %m, error = %crate::chain(&e), "cannot claim this fire in the store; not firing");
                    continue;
                }
            }
            info!(monkey = %m, "firing");
            let task = self.round(m);
            self.running.insert(m, tokio::task::spawn_local(task));
        }
    }

    /// One monkey's round: its findings stream to the sinks as they happen; the report feeds the metrics.
    fn round(&self, m: MonkeyName) -> impl std::future::Future<Output = ()> + 'static {
        let engine = self.engine.clone();
        let metrics = self.metrics.clone();
        let on_round = self.on_round.clone();
        let opts = RunOptions { monkeys: vec![m], shutdown: self.shutdown.clone(), ..RunOptions::default() };
        async move {
            match engine.round(&opts).await {
                Ok(report) => {
                    metrics.record_round(&report, m);
                    if let Some(tx) = on_round {
                        let _ = tx.send((m, report));
                    }
                }
                Err(e) => error!(monkey = %m, error = %crate::chain(&e), "round failed"),
            }
        }
    }

    /// Post the day's plan to each sink with `announce`, once per local day.
    async fn announce(&mut self, now: DateTime<Utc>) {
        let leads: Vec<(String, TimeDelta)> = self
            .policy
            .policy
            .sinks
            .iter()
            .filter_map(|s| s.announce().map(|a| (s.name().to_string(), a.chrono())))
            .collect();
        for (sink, lead) in leads {
            let Some((day, _first)) = crate::announce::due(&self.policy, lead, now) else { continue };
            let claimed = self
                .engine
                .store()
                .and_then(|s| s.claim_announcement(&day.to_string(), &sink, self.clock.now()));
            match claimed {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    warn!(error = %crate::chain(&e), "cannot record the announcement");
                    continue;
                }
            }
            let inventory = self.engine.fleet().inventory().await.unwrap_or_else(|e| {
                warn!(error = %e, "cannot list instances for the day's plan; announcing times only");
                Arc::from([])
            });
            let msg = Message::Announcement(crate::announce::plan(&self.policy, &inventory, day, now));
            info!(sink = %sink, day = %day, "announcing the day's plan");
            if let Err(e) = self.engine.publish(&msg, Some(&sink)).await {
                error!(error = %crate::chain(&e), "cannot write the day's plan to the outbox");
            }
        }
    }

    /// Deliver what earlier failures left in the outbox, for sinks whose backoff is over.
    async fn retry_outbox(&self) {
        if let Err(e) = self.engine.deliver(false).await {
            warn!(error = %crate::chain(&e), "cannot read the outbox");
        }
    }

    /// SIGHUP: read the policy file again on the blocking pool, off the loop (the binary does not wait for
    /// the pool at exit, so SIGTERM never waits for a slow read).
    fn start_reload(&self) -> Loading {
        let path = self.policy.path.clone();
        tokio::task::spawn_blocking(move || simian_config::load(&path))
    }

    /// Take the new policy if it loaded; otherwise say why and keep the old one.
    fn reloaded(&mut self, loaded: Result<LoadedPolicy, simian_config::PolicyErrors>) {
        match loaded {
            Ok(mut p) => {
                p.store = self.store.clone();
                info!(policy = %p.path.display(), monkeys = p.schedules.len(), "policy reloaded");
                self.engine = Arc::new(
                    Engine::new(p.clone(), self.clock.clone())
                        .with_metrics(self.metrics.clone())
                        .with_agent(self.agent.clone()),
                );
                self.policy = p;
                self.plan_next(self.clock.now());
            }
            Err(e) => error!("policy reload failed, keeping the previous policy:\n{e}"),
        }
    }

    /// The store's halt. While one stands, rounds refuse every action (the gate reads it too) and their
    /// holds end within a second; whatever is still open [`HALT_GRACE`] after this daemon saw the halt
    /// (its holder is gone) is reverted from the journal, and again every [`HALT_RETRY`] while it stays open.
    async fn check_halt(&mut self, store: &Store) {
        let halt = match store.current_halt() {
            Ok(h) => h,
            Err(e) => return warn!(error = %crate::chain(&e), "cannot read the halt state"),
        };
        self.metrics.set_halted(halt.is_some());
        let Some(halt) = halt else {
            if self.halt_seen.take().is_some() {
                info!("halt lifted: actions start again at the next fire");
            }
            self.halt_reverted = None;
            return;
        };
        let now = tokio::time::Instant::now();
        let seen = *self.halt_seen.get_or_insert_with(|| {
            warn!(%halt, "halted: no new actions; active faults are being reverted");
            now
        });
        let retry_due = self.halt_reverted.is_none_or(|t| now.duration_since(t) >= HALT_RETRY);
        if now.duration_since(seen) < crate::engine::HALT_GRACE || !retry_due {
            return;
        }
        let open = match store.open_faults(None) {
            Ok(open) if !open.is_empty() => open.len(),
            Ok(_) => return,
            Err(e) => return warn!(error = %crate::chain(&e), "cannot read the open faults"),
        };
        self.halt_reverted = Some(now);
        warn!(open, "halted: reverting the faults still open from the journal");
        match self
            .engine
            .revert(&RunOptions { shutdown: self.shutdown.clone(), ..RunOptions::default() })
            .await
        {
            Ok(report) => self.metrics.record_report(&report),
            Err(e) => error!(error = %crate::chain(&e), "cannot revert the faults still open"),
        }
    }

    /// Every [`HALT_POLL`], on one connection: renew this agent's lease (which is also how the loop learns
    /// whether the store answers, for `/healthz` and `simian_store_up`), then the halt, then the leases.
    async fn tick_store(&mut self) {
        let now = self.clock.now();
        let store = match self.engine.store().and_then(|s| s.heartbeat(&self.agent, now).map(|()| s)) {
            Ok(s) => s,
            Err(e) => return self.store_health.down(now, crate::chain(&e)),
        };
        self.store_health.up();
        let mut store = store;
        match store.record_deferred() {
            Ok(0) => {}
            Ok(n) => info!(writes = n, "recorded what was done while the store was down"),
            Err(e) => {
                warn!(error = %crate::chain(&e), "cannot yet record what was done while the store was down")
            }
        }
        self.check_halt(&store).await;
        self.tend_leases(&store, now).await;
    }

    /// Take over the open faults of agents whose lease ran out; restore the adopted faults whose planned end
    /// has come (at once if it has passed). A fault reverted meanwhile (by a halt, say) is dropped from the
    /// list.
    async fn tend_leases(&mut self, store: &Store, now: DateTime<Utc>) {
        match store.orphaned_faults(now) {
            Ok(orphans) => {
                for f in orphans {
                    match store.take_over(f.id, f.owner.as_deref(), &self.agent) {
                        Ok(true) => {
                            warn!(
                                fault = f.id, instance = %f.instance, from = f.owner.as_deref().unwrap_or("-"),
                                restore_at = %f.expires, "took over a fault whose agent's lease ran out"
                            );
                            self.adopted.push(f);
                        }
                        Ok(false) => {}
                        Err(e) => warn!(error = %crate::chain(&e), "cannot take over a fault"),
                    }
                }
            }
            Err(e) => warn!(error = %crate::chain(&e), "cannot look for orphaned faults"),
        }
        let still_open: std::collections::BTreeSet<i64> = match store.open_faults(None) {
            Ok(open) => open.into_iter().map(|f| f.id).collect(),
            Err(_) => return,
        };
        self.adopted.retain(|f| still_open.contains(&f.id));
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.adopted).into_iter().partition(|f| f.expires <= now);
        self.adopted = later;
        if due.is_empty() {
            return;
        }
        let opts = RunOptions { shutdown: self.shutdown.clone(), ..RunOptions::default() };
        match self.engine.revert_faults(due, &opts).await {
            Ok(report) => self.metrics.record_report(&report),
            Err(e) => error!(error = %crate::chain(&e), "cannot restore the faults taken over"),
        }
    }

    /// A request from the control room: revert one open fault now, whoever holds it (an operator's
    /// command, as `simian revert` is).
    async fn control(&mut self, req: ControlRequest) {
        match req {
            ControlRequest::Revert { id, reply } => {
                let open = self.engine.store().and_then(|s| s.open_faults(None));
                let answer = match open {
                    Err(e) => Err(RevertRefused::Failed(format!("the store: {}", crate::chain(&e)))),
                    Ok(open) => match open.into_iter().find(|f| f.id == id) {
                        None => Err(RevertRefused::NotOpen),
                        Some(f) => {
                            warn!(fault = id, instance = %f.instance, "reverting a fault from the control room");
                            let opts =
                                RunOptions { shutdown: self.shutdown.clone(), ..RunOptions::default() };
                            match self.engine.revert_faults(vec![f], &opts).await {
                                Ok(report) => {
                                    self.metrics.record_report(&report);
                                    Ok(report)
                                }
                                Err(e) => Err(RevertRefused::Failed(crate::chain(&e))),
                            }
                        }
                    },
                };
                let _ = reply.send(answer);
            }
            ControlRequest::Inventory { reply } => {
                // Listing may take a while (EC2 pages): off the loop, on its own local task.
                let engine = self.engine.clone();
                tokio::task::spawn_local(async move {
                    let listed = engine.fleet().inventory().await.map_err(|e| crate::chain(&e));
                    let _ = reply.send(listed);
                });
            }
        }
    }

    /// Stop: let rounds revert their faults, revert anything left in the journal, flush the outbox.
    async fn stop(&mut self) {
        info!(rounds = self.running.values().filter(|h| !h.is_finished()).count(), "stopping");
        let rounds = futures_util::future::join_all(std::mem::take(&mut self.running).into_values());
        if tokio::time::timeout(ROUNDS_GRACE, rounds).await.is_err() {
            warn!("rounds did not finish in time; reverting from the journal");
        }
        // This daemon's faults (and orphans): another live agent's holds are that agent's to revert.
        let mine =
            self.engine.store().and_then(|s| s.faults_free_for(Some(&self.agent.id), None, self.clock.now()));
        let reverted = match mine {
            Ok(faults) => self.engine.revert_faults(faults, &RunOptions::default()).await,
            Err(e) => Err(e.into()),
        };
        match reverted {
            Ok(report) if !report.findings.is_empty() => {
                info!(reverted = report.findings.len(), "active faults reverted");
                self.metrics.record_report(&report);
            }
            Ok(_) => {}
            Err(e) => error!(error = %crate::chain(&e), "cannot revert active faults"),
        }
        match tokio::time::timeout(FLUSH_GRACE, self.engine.deliver(true)).await {
            Ok(Ok(s)) if s.pending > 0 => {
                warn!(pending = s.pending, "outbox not empty at exit; the next start delivers it")
            }
            Ok(Ok(_)) => info!("outbox flushed"),
            Ok(Err(e)) => warn!(error = %crate::chain(&e), "cannot flush the outbox"),
            Err(_) => warn!("outbox flush timed out; the next start delivers the rest"),
        }
        if let Err(e) = self.engine.store().and_then(|s| s.agent_stopped(&self.agent, self.clock.now())) {
            warn!(error = %crate::chain(&e), "cannot record the agent's end");
        }
    }
}
