//! The fault journal: every reversible fault, written before it is applied, until it is reverted.

use chrono::{DateTime, Utc};
use rusqlite::params;
use simian_monkeys::{Instance, MonkeyName, Undo};

use super::halt::NOT_HALTED;
use super::{from_ms, ms, Store, StoreError};

/// What kind of fault a journal row undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Chaos Gorilla cut an instance off the network.
    Isolate,
    /// Latency Monkey put a netem qdisc on an interface.
    Netem,
}

impl FaultKind {
    /// The name in the store and in findings.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Isolate => "isolate",
            FaultKind::Netem => "netem",
        }
    }

    fn parse(s: &str) -> Option<FaultKind> {
        [FaultKind::Isolate, FaultKind::Netem].into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an open fault stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultState {
    /// Journaled, maybe applied, maybe not (simian may have died in between): revert it anyway.
    Intent,
    /// Applied.
    Active,
}

/// A reversible fault from the journal that has not been reverted yet.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFault {
    /// Journal row id.
    pub id: i64,
    /// Run that applied it.
    pub run_id: String,
    /// Monkey that applied it.
    pub monkey: MonkeyName,
    /// Kind of fault, e.g. `isolate`.
    pub kind: FaultKind,
    /// Target of the instance.
    pub target: String,
    /// Instance id.
    pub instance: String,
    /// Group, if known.
    pub group: Option<String>,
    /// Zone, if known.
    pub zone: Option<String>,
    /// How to undo it.
    pub undo: Undo,
    /// `intent` (maybe applied, maybe not) or `active`.
    pub state: FaultState,
    /// When it is due to be reverted.
    pub expires: DateTime<Utc>,
    /// Last revert error, if a revert failed before.
    pub error: Option<String>,
    /// The agent that owns it (holds it, and reverts it); `None` for faults from before agents.
    pub owner: Option<String>,
}

impl Store {
    /// Journal a fault *before* applying it (state `intent`); returns its id, or `None` when a halt stands
    /// (checked in the same statement, so no fault is journaled once `simian halt` has committed).
    #[allow(clippy::too_many_arguments)]
    pub fn journal_fault(
        &self,
        owner: Option<&str>,
        run_id: &str,
        monkey: MonkeyName,
        kind: FaultKind,
        inst: &Instance,
        undo: &Undo,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let undo = serde_json::to_string(undo).map_err(|e| self.encode(e))?;
        let sql = format!(
            "INSERT INTO faults (run_id, monkey, kind, target, instance, grp, zone, undo, state, created_ms, expires_ms, owner)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'intent', ?9, ?10, ?11 WHERE {NOT_HALTED}"
        );
        let inserted = self
            .conn
            .execute(
                &sql,
                params![
                    run_id,
                    monkey.as_str(),
                    kind.as_str(),
                    inst.target,
                    inst.id,
                    inst.group,
                    inst.zone,
                    undo,
                    ms(now),
                    ms(expires),
                    owner
                ],
            )
            .map_err(|e| self.wrap(e))?;
        Ok((inserted == 1).then(|| self.conn.last_insert_rowid()))
    }

    /// The fault is in place.
    pub fn fault_applied(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE faults SET state = 'active' WHERE id = ?1 AND state = 'intent'", params![id])
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// The fault was undone (or there is nothing left to undo).
    pub fn fault_reverted(&self, id: i64, now: DateTime<Utc>, note: Option<&str>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE faults SET state = 'reverted', reverted_ms = ?2, error = ?3 WHERE id = ?1",
                params![id, ms(now), note],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// A revert failed; the fault stays open so the next run or `simian revert` tries again.
    pub fn fault_revert_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE faults SET error = ?2 WHERE id = ?1", params![id, error])
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Faults not yet reverted; with `expired_at`, only those due by then. Oldest first.
    pub fn open_faults(&self, expired_at: Option<DateTime<Utc>>) -> Result<Vec<OpenFault>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, run_id, monkey, kind, target, instance, grp, zone, undo, state, expires_ms, error, owner
                 FROM faults WHERE state IN ('intent', 'active') AND expires_ms <= ?1 ORDER BY id",
            )
            .map_err(|e| self.wrap(e))?;
        let limit = expired_at.map(ms).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![limit], |r| {
                // A row this simian cannot read is left for the simian that wrote it, never guessed at.
                let (Ok(monkey), Ok(undo), Some(kind)) = (
                    r.get::<_, String>(2)?.parse(),
                    serde_json::from_str(&r.get::<_, String>(8)?),
                    FaultKind::parse(&r.get::<_, String>(3)?),
                ) else {
                    return Ok(None);
                };
                let state = match r.get::<_, String>(9)?.as_str() {
                    "active" => FaultState::Active,
                    _ => FaultState::Intent,
                };
                Ok(Some(OpenFault {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    monkey,
                    kind,
                    target: r.get(4)?,
                    instance: r.get(5)?,
                    group: r.get(6)?,
                    zone: r.get(7)?,
                    undo,
                    state,
                    expires: from_ms(r.get(10)?),
                    error: r.get(11)?,
                    owner: r.get(12)?,
                }))
            })
            .map_err(|e| self.wrap(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(|e| self.wrap(e))?);
        }
        Ok(out)
    }

    /// Faults applied and not yet reverted, per monkey.
    pub fn active_faults_by_monkey(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT monkey, COUNT(*) FROM faults WHERE state IN ('intent', 'active') GROUP BY monkey",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }
}
