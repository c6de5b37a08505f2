//! Agents: every simian process that may hold a fault registers here and renews its lease (a heartbeat);
//! each journaled fault names its owning agent, and a live agent takes over the faults of one whose lease
//! has run out, so no fault outlives the process that made it.

use super::sql::{vals, Sql};
use super::{from_ms, ms, OpenFault, Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};

/// How often an agent renews its lease.
pub const LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);
/// A lease not renewed for this long has run out: its agent is taken for dead.
pub const LEASE_TTL: TimeDelta = TimeDelta::seconds(30);

/// What an agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// `simian daemon`: fires monkeys, takes over orphaned faults.
    Daemon,
    /// A one-shot command (`simian run`, `revert`, `halt`).
    Command,
}

impl AgentKind {
    /// Its name in the store and in `simian agents`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Daemon => "daemon",
            AgentKind::Command => "command",
        }
    }

    fn parse(s: &str) -> AgentKind {
        match s {
            "daemon" => AgentKind::Daemon,
            _ => AgentKind::Command,
        }
    }
}

/// This process as an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentId {
    /// `host:pid:nonce`, unique per process start.
    pub id: String,
    /// The machine.
    pub host: String,
    /// The process.
    pub pid: u32,
    /// What it is.
    pub kind: AgentKind,
}

impl AgentId {
    /// This process, as an agent of `kind`.
    pub fn this_process(kind: AgentKind) -> AgentId {
        AgentId { id: super::owner_id(), host: super::host_name(), pid: std::process::id(), kind }
    }
}

/// One agent as `simian agents` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentRow {
    /// Its id.
    pub agent: String,
    /// Its machine.
    pub host: String,
    /// Its process.
    pub pid: u32,
    /// The simian version it runs.
    pub version: String,
    /// `daemon` or `command`.
    pub kind: AgentKind,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last lease renewal.
    pub heartbeat_at: DateTime<Utc>,
    /// Faults it owns that are not reverted yet.
    pub active_faults: i64,
}

/// Whether process `pid` exists on this machine.
fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Store {
    /// Registers (or re-registers) this process as an agent, its lease starting now.
    pub fn register_agent(&self, me: &AgentId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO agents (id, host, pid, version, kind, started_ms, heartbeat_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = ?6, stopped_ms = NULL",
            vals![&me.id, &me.host, me.pid, env!("CARGO_PKG_VERSION"), me.kind.as_str(), ms(now)],
        )
        .map(|_| ())
    }

    /// Renews this agent's lease.
    pub fn heartbeat(&self, me: &AgentId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.register_agent(me, now)
    }

    /// This agent stops: its lease ends now (its faults, if any are left, go to another agent at once).
    pub fn agent_stopped(&self, me: &AgentId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.exec("UPDATE agents SET stopped_ms = ?2 WHERE id = ?1", vals![&me.id, ms(now)]).map(|_| ())
    }

    /// The agents whose lease is live at `now`, oldest first, with the faults each owns.
    pub fn agents(&self, now: DateTime<Utc>) -> Result<Vec<AgentRow>, StoreError> {
        let rows = self.rows(
            "SELECT a.id, a.host, a.pid, a.version, a.kind, a.started_ms, a.heartbeat_ms,
                    (SELECT COUNT(*) FROM faults f WHERE f.owner = a.id AND f.state IN ('intent', 'active'))
             FROM agents a WHERE a.stopped_ms IS NULL AND a.heartbeat_ms >= ?1 ORDER BY a.started_ms, a.id",
            vals![ms(now - LEASE_TTL)],
        )?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(AgentRow {
                    agent: r.text(0)?,
                    host: r.text(1)?,
                    pid: r.count(2)?,
                    version: r.text(3)?,
                    kind: AgentKind::parse(&r.text(4)?),
                    started_at: from_ms(r.int(5)?),
                    heartbeat_at: from_ms(r.int(6)?),
                    active_faults: r.int(7)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // An agent on this machine whose process is gone (SIGKILL, OOM) is dead now, not in 30 s.
        let here = super::host_name();
        Ok(rows.into_iter().filter(|a| a.host != here || process_exists(a.pid)).collect())
    }

    /// Open faults whose owner's lease has run out (or that never had an owner, from before agents), for a
    /// live agent to take over.
    pub fn orphaned_faults(&self, now: DateTime<Utc>) -> Result<Vec<OpenFault>, StoreError> {
        self.faults_free_for(None, None, now)
    }

    /// Open faults (due by `due_by`, if given) that no *other* agent with a live lease holds: this agent's
    /// own (`me`), those without an owner, and those whose owner's lease ran out. What a round, a stopping
    /// daemon or a revert may restore without pulling a fault from under its live holder.
    pub fn faults_free_for(
        &self,
        me: Option<&str>,
        due_by: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<OpenFault>, StoreError> {
        let live: std::collections::BTreeSet<String> =
            self.agents(now)?.into_iter().map(|a| a.agent).collect();
        Ok(self
            .open_faults(due_by)?
            .into_iter()
            .filter(|f| match f.owner.as_deref() {
                None => true,
                Some(owner) => Some(owner) == me || !live.contains(owner),
            })
            .collect())
    }

    /// Claims the cron fire of `monkey` at `at` for policy `policy`: `None` when this agent runs it,
    /// else the agent that claimed it first (every agent computes the same fire times from the same policy).
    pub fn claim_fire(
        &self,
        policy: &str,
        monkey: &str,
        at: DateTime<Utc>,
        me: &AgentId,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let inserted = self.exec(
            "INSERT INTO fires (policy, monkey, at_ms, agent, claimed_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (policy, monkey, at_ms) DO NOTHING",
            vals![policy, monkey, ms(at), &me.id, ms(now)],
        )?;
        if inserted == 1 {
            return Ok(None);
        }
        let row = self.row(
            "SELECT agent FROM fires WHERE policy = ?1 AND monkey = ?2 AND at_ms = ?3",
            vals![policy, monkey, ms(at)],
        )?;
        // Pruned between the two statements (a fire older than retention): nobody runs it again.
        Ok(Some(match row {
            Some(r) => r.text(0)?,
            None => "an agent (its claim was pruned)".into(),
        }))
    }

    /// Takes fault `id` over from `from` (its owner when it was found orphaned): true when this agent now
    /// owns it — false when another agent was quicker, or it was reverted meanwhile.
    pub fn take_over(&self, id: i64, from: Option<&str>, me: &AgentId) -> Result<bool, StoreError> {
        self.exec(
            "UPDATE faults SET owner = ?3 WHERE id = ?1 AND owner IS NOT DISTINCT FROM ?2 AND state IN ('intent', 'active')",
            vals![id, from, &me.id],
        )
        .map(|n| n == 1)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use crate::tests::isolation;
    use simian_monkeys::Mode;

    fn agent(id: &str, kind: AgentKind) -> AgentId {
        AgentId { id: id.into(), host: "lab".into(), pid: 1, kind }
    }

    crate::tests::on_both_backends! {
        fn a_lease_runs_out_and_another_agent_takes_the_faults_over_once(at) {
            let s = Store::open(&at).unwrap();
            let t0 = Utc::now();
            let (a, b, c) =
                (agent("a", AgentKind::Daemon), agent("b", AgentKind::Daemon), agent("c", AgentKind::Command));
            for x in [&a, &b, &c] {
                s.register_agent(x, t0).unwrap();
            }
            s.begin_run("r", 1, Mode::Live, t0).unwrap();
            let end = t0 + TimeDelta::minutes(5);
            let fa = isolation(&s, Some("a"), "web", t0, end).unwrap();
            let legacy = isolation(&s, None, "api", t0, end);
            let rows = s.agents(t0).unwrap();
            assert_eq!(
                rows.iter().map(|r| (r.agent.as_str(), r.active_faults)).collect::<Vec<_>>(),
                [("a", 1), ("b", 0), ("c", 0)]
            );
            assert_eq!(rows[2].kind, AgentKind::Command);
            // Live: only the ownerless fault is anyone's to take; a's is a's.
            assert_eq!(
                s.orphaned_faults(t0).unwrap().iter().map(|f| f.id).collect::<Vec<_>>(),
                [legacy.unwrap()]
            );
            assert_eq!(s.faults_free_for(Some("b"), None, t0).unwrap().len(), 1);
            assert_eq!(s.faults_free_for(Some("a"), None, t0).unwrap().len(), 2);

            // c stops; b renews; a goes silent for longer than the lease.
            s.agent_stopped(&c, t0).unwrap();
            let later = t0 + LEASE_TTL + TimeDelta::seconds(1);
            s.heartbeat(&b, later).unwrap();
            assert_eq!(s.agents(later).unwrap().iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(), ["b"]);
            let orphans = s.orphaned_faults(later).unwrap();
            let of_a = orphans.iter().find(|f| f.id == fa).expect("a's fault is orphaned");
            assert_eq!(of_a.owner.as_deref(), Some("a"));
            assert_eq!(of_a.expires, from_ms(ms(end)), "the planned end comes with it");
            // Two agents race for it: one wins.
            assert!(s.take_over(fa, Some("a"), &b).unwrap());
            assert!(!s.take_over(fa, Some("a"), &c).unwrap(), "taken twice");
            assert_eq!(s.agents(later).unwrap()[0].active_faults, 1);
            assert!(s.orphaned_faults(later).unwrap().iter().all(|f| f.id != fa));
            // Reverted meanwhile: nothing to take.
            s.fault_reverted(fa, later, None).unwrap();
            assert!(!s.take_over(fa, Some("b"), &c).unwrap());
            // a comes back (a restart with the same id would re-register): its lease is live again.
            s.register_agent(&a, later).unwrap();
            assert_eq!(s.agents(later).unwrap().len(), 2);
        }

        fn an_agent_of_this_machine_whose_process_is_gone_is_dead_at_once(at) {
            let s = Store::open(&at).unwrap();
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let gone = child.id();
            child.wait().unwrap();
            let now = Utc::now();
            let dead =
                AgentId { id: "dead".into(), host: crate::host_name(), pid: gone, kind: AgentKind::Command };
            let me = AgentId::this_process(AgentKind::Command);
            s.register_agent(&dead, now).unwrap();
            s.register_agent(&me, now).unwrap();
            let ids: Vec<String> = s.agents(now).unwrap().into_iter().map(|a| a.agent).collect();
            assert_eq!(ids, std::slice::from_ref(&me.id));
        }

        fn one_agent_wins_each_fire(at) {
            let p = at.clone();
            let at = Utc::now();
            let winners: Vec<String> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..6)
                    .map(|i| {
                        let p = &p;
                        sc.spawn(move || {
                            let me = agent(&format!("agent-{i}"), AgentKind::Daemon);
                            let s = Store::open(p).unwrap();
                            match s.claim_fire("lab", "chaos", at, &me, at).unwrap() {
                                None => me.id,
                                Some(other) => other,
                            }
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            // Everyone agrees on the one winner.
            assert!(winners.iter().all(|w| w == &winners[0]), "{winners:?}");
            let s = Store::open(&p).unwrap();
            let late = agent("late", AgentKind::Daemon);
            assert_eq!(s.claim_fire("lab", "chaos", at, &late, at).unwrap(), Some(winners[0].clone()));
            // Another monkey, time or policy is another fire.
            assert_eq!(s.claim_fire("lab", "gorilla", at, &late, at).unwrap(), None);
            assert_eq!(s.claim_fire("lab", "chaos", at + TimeDelta::minutes(1), &late, at).unwrap(), None);
            assert_eq!(s.claim_fire("other", "chaos", at, &late, at).unwrap(), None);
        }

        fn retention_drops_old_fire_claims_and_dead_agents_without_faults(at) {
            let s = Store::open(&at).unwrap();
            let t0 = Utc::now() - TimeDelta::days(100);
            let (old, holder) = (agent("old", AgentKind::Daemon), agent("holder", AgentKind::Daemon));
            s.register_agent(&old, t0).unwrap();
            s.register_agent(&holder, t0).unwrap();
            s.begin_run("r", 1, Mode::Live, t0).unwrap();
            isolation(&s, Some("holder"), "web", t0, t0).unwrap();
            s.claim_fire("lab", "chaos", t0, &old, t0).unwrap();
            s.prune(t0 + TimeDelta::days(10)).unwrap();
            let count = |sql: &str| -> i64 { crate::sql::Sql::scalar(&s, sql, &[]).unwrap() };
            assert_eq!(count("SELECT COUNT(*) FROM fires"), 0);
            // The agent owning an open fault stays: its fault still needs an owner to take it from.
            assert_eq!(count("SELECT COUNT(*) FROM agents WHERE id = 'holder'"), 1);
            assert_eq!(count("SELECT COUNT(*) FROM agents WHERE id = 'old'"), 0);
        }
    }
}
