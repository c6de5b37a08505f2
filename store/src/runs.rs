//! Runs and their findings: recording, history, and the totals behind the Prometheus counters.

use chrono::{DateTime, Utc};
use simian_monkeys::{Action, Finding, Mode, MonkeyName, Outcome, Severity};

use super::sql::{vals, Row, Sql};
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

pub(super) fn run_row(sql: &impl Sql, run_id: &str) -> Result<Option<RunRow>, StoreError> {
    let row =
        sql.row("SELECT id, seed, mode, started_ms, finished_ms FROM runs WHERE id = ?1", vals![run_id])?;
    row.map(|r| {
        Ok(RunRow {
            run_id: r.text(0)?,
            seed: r.text(1)?.parse().unwrap_or_default(),
            // An unknown mode (a newer simian) reads as dry-run: the safe side for anything shown.
            mode: r.text(2)?.parse().unwrap_or(Mode::DryRun),
            started: from_ms(r.int(3)?),
            finished: r.opt_int(4)?.map(from_ms),
        })
    })
    .transpose()
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
        self.exec(
            "INSERT INTO runs (id, seed, mode, started_ms) VALUES (?1, ?2, ?3, ?4)",
            vals![run_id, seed.to_string(), mode.as_str(), ms(started)],
        )
        .map(|_| ())
    }

    /// Record the end of a run.
    pub fn finish_run(&self, run_id: &str, finished: DateTime<Utc>) -> Result<(), StoreError> {
        self.exec("UPDATE runs SET finished_ms = ?2 WHERE id = ?1", vals![run_id, ms(finished)]).map(|_| ())
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
        let tx = self.write_tx()?;
        let open = tx.row("SELECT id FROM outbox WHERE sealed = 0 AND run_id = ?1", vals![run_id])?;
        let outbox_id = match open {
            Some(r) => r.int(0)?,
            None => tx.scalar(
                "INSERT INTO outbox (created_ms, label, payload, run_id, sealed) VALUES (?1, '', '', ?2, 0)
                 RETURNING id",
                vals![ms(at), run_id],
            )?,
        };
        tx.exec(
            "INSERT INTO findings (run_id, at_ms, mode, dry_run, monkey, action, outcome, target, instance, grp, zone, severity, message, details, outbox_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            vals![
                run_id,
                ms(at),
                mode.as_str(),
                mode == Mode::DryRun,
                f.monkey.as_str(),
                f.action.as_str(),
                f.outcome.as_str(),
                f.target.as_deref(),
                f.instance.as_deref(),
                f.group.as_deref(),
                f.zone.as_deref(),
                f.severity.as_str(),
                &f.message,
                details,
                outbox_id
            ],
        )?;
        tx.commit()
    }

    /// A run's header as recorded at its start (and end).
    pub fn run_row(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        run_row(self, run_id)
    }

    /// Every finding ever recorded, counted by (monkey, action, outcome): the Prometheus counters' totals.
    pub fn action_counts(&self) -> Result<Vec<ActionCount>, StoreError> {
        self.rows(
            "SELECT monkey, action, outcome, COUNT(*) FROM findings GROUP BY monkey, action, outcome",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(ActionCount {
                monkey: r.text(0)?,
                action: r.text(1)?,
                outcome: r.text(2)?,
                count: r.int(3)?.max(0) as u64,
            })
        })
        .collect()
    }

    /// Findings recorded at or after `since`, newest first.
    pub fn history(&self, since: DateTime<Utc>) -> Result<Vec<HistoryEntry>, StoreError> {
        let sql = format!(
            "SELECT run_id, at_ms, mode, {FINDING_COLUMNS} FROM findings WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC"
        );
        let rows = self.rows(&sql, vals![ms(since)])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(finding) = row_finding(r, 3)? else { continue };
            let mode = r.text(2)?.parse().unwrap_or(Mode::DryRun);
            out.push(HistoryEntry { run_id: r.text(0)?, at: from_ms(r.int(1)?), mode, finding });
        }
        Ok(out)
    }
}

/// Which findings [`Store::findings`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingFilter {
    /// Only this monkey's (its name in the store, e.g. `gorilla`).
    pub monkey: Option<String>,
    /// Only this severity (`info`, `warning`, `critical`).
    pub severity: Option<String>,
    /// Only this outcome (`planned`, `done`, `failed`, `skipped`).
    pub outcome: Option<String>,
    /// Only this action (`terminate`, `isolate`, `experiment`, …).
    pub action: Option<String>,
    /// Only those recorded before the finding with this id (the next page).
    pub before: Option<i64>,
    /// Only those recorded after the finding with this id (what is new since the last look).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// A stored finding with its id (a page's cursor) and run context.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    /// Its id in the store: newer findings have larger ids.
    pub id: i64,
    /// The finding with its run context.
    pub entry: HistoryEntry,
}

impl Store {
    /// The newest findings that pass `filter`, newest first: one indexed scan, however large the store.
    pub fn findings(&self, filter: &FindingFilter) -> Result<Vec<StoredFinding>, StoreError> {
        let sql = format!(
            "SELECT id, run_id, at_ms, mode, {FINDING_COLUMNS} FROM findings
             WHERE (CAST(?1 AS TEXT) IS NULL OR monkey = ?1) AND (CAST(?2 AS TEXT) IS NULL OR severity = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR outcome = ?3) AND id < ?4
               AND (CAST(?6 AS TEXT) IS NULL OR action = ?6) AND id > ?7
             ORDER BY id DESC LIMIT ?5"
        );
        let f = filter;
        let before = f.before.unwrap_or(i64::MAX);
        let rows = self.rows(
            &sql,
            vals![
                f.monkey.as_deref(),
                f.severity.as_deref(),
                f.outcome.as_deref(),
                before,
                f.limit,
                f.action.as_deref(),
                f.after.unwrap_or(0)
            ],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(finding) = row_finding(r, 4)? else { continue };
            let mode = r.text(3)?.parse().unwrap_or(Mode::DryRun);
            let entry = HistoryEntry { run_id: r.text(1)?, at: from_ms(r.int(2)?), mode, finding };
            out.push(StoredFinding { id: r.int(0)?, entry });
        }
        Ok(out)
    }
}

/// The columns [`row_finding`] reads, in order.
pub(super) const FINDING_COLUMNS: &str =
    "monkey, action, outcome, target, instance, grp, zone, severity, message, details";

/// A finding from [`FINDING_COLUMNS`] starting at column `base`; `None` for a row written by a newer simian
/// with names this one does not know (skipped, never guessed at).
pub(super) fn row_finding(r: &Row, base: usize) -> Result<Option<Finding>, StoreError> {
    let text = |i: usize| r.text(base + i);
    let Some((monkey, action, outcome, severity)) = decode(&text(0)?, &text(1)?, &text(2)?, &text(7)?) else {
        return Ok(None);
    };
    let details = r.opt_text(base + 9)?;
    Ok(Some(Finding {
        monkey,
        action,
        outcome,
        target: r.opt_text(base + 3)?,
        instance: r.opt_text(base + 4)?,
        group: r.opt_text(base + 5)?,
        zone: r.opt_text(base + 6)?,
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
