//! The kill journal: every live kill is claimed (atomically with the group's spacing) before it is made.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use simian_monkeys::Instance;

use super::{from_ms, ms, Halt, Store, StoreError};

/// Result of asking to kill in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Journaled as pending; carry it out, then call [`Store::finish_kill`].
    Granted(i64),
    /// Another kill in the group (maybe by a concurrent run) is younger than the minimum.
    TooRecent(DateTime<Utc>),
    /// A halt stands (`simian halt`): nothing is journaled.
    Halted(Halt),
}

impl Store {
    /// The newest live kill (pending or done) per (target, group).
    pub fn last_live_kills(&self) -> Result<BTreeMap<(String, String), DateTime<Utc>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT target, grp, MAX(at_ms) FROM kills WHERE status IN ('pending','done') GROUP BY target, grp")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |r| Ok(((r.get::<_, String>(0)?, r.get::<_, String>(1)?), from_ms(r.get(2)?))))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Atomically check the group's minimum spacing and journal a pending kill.
    ///
    /// `BEGIN IMMEDIATE` takes the write lock before reading, so of two runs racing for the same
    /// group the second waits, then sees the first one's pending kill.
    pub fn claim_kill(
        &mut self,
        run_id: &str,
        inst: &Instance,
        now: DateTime<Utc>,
        min_between: Option<TimeDelta>,
    ) -> Result<Claim, StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(wrap)?;
        // Under the same write lock as the insert: once `simian halt` has committed, no kill is journaled.
        if let Some(h) = super::halt::current(&tx).map_err(wrap)? {
            return Ok(Claim::Halted(h));
        }
        if let Some(min) = min_between {
            let last: Option<i64> = tx
                .query_row(
                    "SELECT MAX(at_ms) FROM kills WHERE target = ?1 AND grp = ?2 AND status IN ('pending','done')",
                    params![inst.target, inst.group],
                    |r| r.get(0),
                )
                .optional()
                .map_err(wrap)?
                .flatten();
            if let Some(last) = last.map(from_ms) {
                if now.signed_duration_since(last) < min {
                    return Ok(Claim::TooRecent(last));
                }
            }
        }
        tx.execute(
            "INSERT INTO kills (run_id, target, grp, instance, at_ms, status) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
            params![run_id, inst.target, inst.group, inst.id, ms(now)],
        )
        .map_err(wrap)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(wrap)?;
        Ok(Claim::Granted(id))
    }

    /// Mark a journaled kill as done or failed.
    pub fn finish_kill(&self, kill_id: i64, ok: bool) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE kills SET status = ?2 WHERE id = ?1",
                params![kill_id, if ok { "done" } else { "failed" }],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }
}
