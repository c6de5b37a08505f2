//! The fault journal: every reversible fault, written before it is applied, until it is reverted.

use chrono::{DateTime, Utc};
use simian_monkeys::{Instance, MonkeyName, Undo};

use super::sql::{vals, Row, Sql};
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
    /// When it was journaled (just before it was applied).
    pub created: DateTime<Utc>,
    /// When it is due to be reverted.
    pub expires: DateTime<Utc>,
    /// Last revert error, if a revert failed before.
    pub error: Option<String>,
    /// The agent that owns it (holds it, and reverts it); `None` for faults from before agents.
    pub owner: Option<String>,
}

impl Store {
    /// Journal a fault *before* applying it (state `intent`); returns its id, or `None` when a halt stands
    /// (checked in the same write transaction, so no fault is journaled once `simian halt` has committed).
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
        let tx = self.write_tx()?;
        if super::halt::current(&tx)?.is_some() {
            return Ok(None);
        }
        let id = tx
            .row(
                "INSERT INTO faults (run_id, monkey, kind, target, instance, grp, zone, undo, state, created_ms, expires_ms, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'intent', ?9, ?10, ?11) RETURNING id",
                vals![
                    run_id,
                    monkey.as_str(),
                    kind.as_str(),
                    &inst.target,
                    &inst.id,
                    &inst.group,
                    inst.zone.as_deref(),
                    undo,
                    ms(now),
                    ms(expires),
                    owner
                ],
            )?
            .map(|r| r.int(0))
            .transpose()?;
        tx.commit()?;
        Ok(id)
    }

    /// The fault is in place.
    pub fn fault_applied(&self, id: i64) -> Result<(), StoreError> {
        self.exec("UPDATE faults SET state = 'active' WHERE id = ?1 AND state = 'intent'", vals![id])
            .map(|_| ())
    }

    /// The fault was undone (or there is nothing left to undo).
    pub fn fault_reverted(&self, id: i64, now: DateTime<Utc>, note: Option<&str>) -> Result<(), StoreError> {
        self.exec(
            "UPDATE faults SET state = 'reverted', reverted_ms = ?2, error = ?3 WHERE id = ?1",
            vals![id, ms(now), note],
        )
        .map(|_| ())
    }

    /// A revert failed; the fault stays open so the next run or `simian revert` tries again.
    pub fn fault_revert_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.exec("UPDATE faults SET error = ?2 WHERE id = ?1", vals![id, error]).map(|_| ())
    }

    /// Faults not yet reverted; with `expired_at`, only those due by then. Oldest first.
    pub fn open_faults(&self, expired_at: Option<DateTime<Utc>>) -> Result<Vec<OpenFault>, StoreError> {
        let limit = expired_at.map(ms).unwrap_or(i64::MAX);
        let rows = self.rows(
            "SELECT id, run_id, monkey, kind, target, instance, grp, zone, undo, state, expires_ms, error, owner, created_ms
             FROM faults WHERE state IN ('intent', 'active') AND expires_ms <= ?1 ORDER BY id",
            vals![limit],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.extend(open_fault(r)?);
        }
        Ok(out)
    }

    /// Faults applied and not yet reverted, per monkey.
    pub fn active_faults_by_monkey(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.rows(
            "SELECT monkey, COUNT(*) FROM faults WHERE state IN ('intent', 'active') GROUP BY monkey",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?)))
        .collect()
    }
}

/// A journal row; `None` when this simian cannot read it (left for the simian that wrote it, never guessed at).
fn open_fault(r: &Row) -> Result<Option<OpenFault>, StoreError> {
    let (Ok(monkey), Ok(undo), Some(kind)) =
        (r.text(2)?.parse(), serde_json::from_str(&r.text(8)?), FaultKind::parse(&r.text(3)?))
    else {
        return Ok(None);
    };
    let state = match r.text(9)?.as_str() {
        "active" => FaultState::Active,
        _ => FaultState::Intent,
    };
    Ok(Some(OpenFault {
        id: r.int(0)?,
        run_id: r.text(1)?,
        monkey,
        kind,
        target: r.text(4)?,
        instance: r.text(5)?,
        group: r.opt_text(6)?,
        zone: r.opt_text(7)?,
        undo,
        state,
        created: from_ms(r.int(13)?),
        expires: from_ms(r.int(10)?),
        error: r.opt_text(11)?,
        owner: r.opt_text(12)?,
    }))
}
