//! Runs and their findings: recording, history, and the totals behind the Prometheus counters.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use simian_monkeys::{Action, Finding, Mode, MonkeyName, Outcome, Severity};

use super::{from_ms, ms, Store, StoreError};

/// A stored finding with its run context (the `history` contract).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The run it belongs to.
    pub run_id: String,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The run's mode.
    pub mode: Mode,
    /// The finding.
    pub finding: Finding,
}

/// A run as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The run's id.
    pub run_id: String,
    /// Its RNG seed.
    pub seed: u64,
    /// The run's mode.
    pub mode: Mode,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it finished; `None` while it runs (or if it was killed).
    pub finished: Option<DateTime<Utc>>,
}

pub(super) fn run_row(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<RunRow>> {
    conn.query_row(
        "SELECT id, seed, mode, started_ms, finished_ms FROM runs WHERE id = ?1",
        params![run_id],
        |r| {
            Ok(RunRow {
                run_id: r.get(0)?,
                seed: r.get::<_, String>(1)?.parse().unwrap_or_default(),
                // An unknown mode (a newer simian) reads as dry-run: the safe side for anything shown.
                mode: r.get::<_, String>(2)?.parse().unwrap_or(Mode::DryRun),
                started: from_ms(r.get(3)?),
                finished: r.get::<_, Option<i64>>(4)?.map(from_ms),
            })
        },
    )
    .optional()
}

/// Cumulative count of findings per (monkey, action, outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCount {
    /// Monkey name.
    pub monkey: String,
    /// Action name.
    pub action: String,
    /// Outcome name.
    pub outcome: String,
    /// How many.
    pub count: u64,
}

impl Store {
    /// Record the start of a run.
    pub fn begin_run(
        &self,
        run_id: &str,
        seed: u64,
        mode: Mode,
        started: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (id, seed, mode, started_ms) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, seed.to_string(), mode.as_str(), ms(started)],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Record the end of a run.
    pub fn finish_run(&self, run_id: &str, finished: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE runs SET finished_ms = ?2 WHERE id = ?1", params![run_id, ms(finished)])
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Record one finding of a run and attach it, in the same transaction, to the run's open outbox
    /// message (created if there is none): a crash after this loses nothing, the next command that opens
    /// the store seals and delivers it.
    pub fn add_finding(
        &mut self,
        run_id: &str,
        at: DateTime<Utc>,
        mode: Mode,
        f: &Finding,
    ) -> Result<(), StoreError> {
        let details = if f.details.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&f.details).map_err(|e| self.encode(e))?)
        };
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(wrap)?;
        let open: Option<i64> = tx
            .query_row("SELECT id FROM outbox WHERE sealed = 0 AND run_id = ?1", params![run_id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(wrap)?;
        let outbox_id = match open {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO outbox (created_ms, label, payload, run_id, sealed) VALUES (?1, '', '', ?2, 0)",
                    params![ms(at), run_id],
                )
                .map_err(wrap)?;
                tx.last_insert_rowid()
            }
        };
        tx.execute(
            "INSERT INTO findings (run_id, at_ms, mode, dry_run, monkey, action, outcome, target, instance, grp, zone, severity, message, details, outbox_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                run_id,
                ms(at),
                mode.as_str(),
                mode == Mode::DryRun,
                f.monkey.as_str(),
                f.action.as_str(),
                f.outcome.as_str(),
                f.target,
                f.instance,
                f.group,
                f.zone,
                f.severity.as_str(),
                f.message,
                details,
                outbox_id
            ],
        )
        .map_err(wrap)?;
        tx.commit().map_err(wrap)
    }

    /// A run's header as recorded at its start (and end).
    pub fn run_row(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        run_row(&self.conn, run_id).map_err(|e| self.wrap(e))
    }

    /// Every finding ever recorded, counted by (monkey, action, outcome): the Prometheus counters' totals.
    pub fn action_counts(&self) -> Result<Vec<ActionCount>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT monkey, action, outcome, COUNT(*) FROM findings GROUP BY monkey, action, outcome",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ActionCount {
                    monkey: r.get(0)?,
                    action: r.get(1)?,
                    outcome: r.get(2)?,
                    count: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Findings recorded at or after `since`, newest first.
    pub fn history(&self, since: DateTime<Utc>) -> Result<Vec<HistoryEntry>, StoreError> {
        let sql = format!(
            "SELECT run_id, at_ms, mode, {FINDING_COLUMNS} FROM findings WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![ms(since)], |r| {
                let Some(finding) = row_finding(r, 3)? else { return Ok(None) };
                let mode = r.get::<_, String>(2)?.parse().unwrap_or(Mode::DryRun);
                Ok(Some(HistoryEntry { run_id: r.get(0)?, at: from_ms(r.get(1)?), mode, finding }))
            })
            .map_err(|e| self.wrap(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(|e| self.wrap(e))?);
        }
        Ok(out)
    }
}

/// The columns [`row_finding`] reads, in order.
pub(super) const FINDING_COLUMNS: &str =
    "monkey, action, outcome, target, instance, grp, zone, severity, message, details";

/// A finding from [`FINDING_COLUMNS`] starting at column `base`; `None` for a row written by a newer simian
/// with names this one does not know (skipped, never guessed at).
pub(super) fn row_finding(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<Option<Finding>> {
    let text = |i: usize| r.get::<_, String>(base + i);
    let Some((monkey, action, outcome, severity)) = decode(&text(0)?, &text(1)?, &text(2)?, &text(7)?) else {
        return Ok(None);
    };
    let details: Option<String> = r.get(base + 9)?;
    Ok(Some(Finding {
        monkey,
        action,
        outcome,
        target: r.get(base + 3)?,
        instance: r.get(base + 4)?,
        group: r.get(base + 5)?,
        zone: r.get(base + 6)?,
        severity,
        message: text(8)?,
        details: details.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default(),
    }))
}

fn decode(
    monkey: &str,
    action: &str,
    outcome: &str,
    severity: &str,
) -> Option<(MonkeyName, Action, Outcome, Severity)> {
    let monkey = monkey.parse().ok()?;
    let action = Action::ALL.into_iter().find(|a| a.as_str() == action)?;
    let outcome = [Outcome::Planned, Outcome::Done, Outcome::Failed, Outcome::Skipped]
        .into_iter()
        .find(|o| o.as_str() == outcome)?;
    let severity = [Severity::Info, Severity::Warning, Severity::Critical]
        .into_iter()
        .find(|s| s.as_str() == severity)?;
    Some((monkey, action, outcome, severity))
}
