//! The kill journal: every live kill is claimed (atomically with the group's spacing) before it is made.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use simian_monkeys::Instance;

use super::sql::{vals, Sql};
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
        self.rows(
            "SELECT target, grp, MAX(at_ms) FROM kills WHERE status IN ('pending','done') GROUP BY target, grp",
            &[],
        )?
        .iter()
        .map(|r| Ok(((r.text(0)?, r.text(1)?), from_ms(r.int(2)?))))
        .collect()
    }

    /// Atomically check the group's minimum spacing and journal a pending kill.
    ///
    /// The write transaction is exclusive before it reads, so of two runs racing for the same group the
    /// second waits, then sees the first one's pending kill.
    pub fn claim_kill(
        &mut self,
        run_id: &str,
        inst: &Instance,
        now: DateTime<Utc>,
        min_between: Option<TimeDelta>,
    ) -> Result<Claim, StoreError> {
        let tx = self.write_tx()?;
        // Under the same write lock as the insert: once `simian halt` has committed, no kill is journaled.
        if let Some(h) = super::halt::current(&tx)? {
            return Ok(Claim::Halted(h));
        }
        if let Some(min) = min_between {
            let last = tx.row(
                "SELECT MAX(at_ms) FROM kills WHERE target = ?1 AND grp = ?2 AND status IN ('pending','done')",
                vals![&inst.target, &inst.group],
            )?;
            if let Some(last) = last.map(|r| r.opt_int(0)).transpose()?.flatten().map(from_ms) {
                if now.signed_duration_since(last) < min {
                    return Ok(Claim::TooRecent(last));
                }
            }
        }
        let id = tx.scalar(
            "INSERT INTO kills (run_id, target, grp, instance, at_ms, status) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')
             RETURNING id",
            vals![run_id, &inst.target, &inst.group, &inst.id, ms(now)],
        )?;
        tx.commit()?;
        Ok(Claim::Granted(id))
    }

    /// Mark a journaled kill as done or failed.
    pub fn finish_kill(&self, kill_id: i64, ok: bool) -> Result<(), StoreError> {
        self.exec(
            "UPDATE kills SET status = ?2 WHERE id = ?1",
            vals![kill_id, if ok { "done" } else { "failed" }],
        )
        .map(|_| ())
    }
}
