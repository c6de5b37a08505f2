//! The store: one SQLite file (WAL) with versioned migrations, holding runs, findings and the kill journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use simian_monkeys::{Action, Finding, Instance, MonkeyName, Outcome, Severity, Undo};

/// Store failures; the path is always named.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer simian.
    #[error("store {path}: schema version {found} is newer than this simian understands ({known}); upgrade simian")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version known here.
        known: i64,
    },
}

/// Schema migrations, applied in order; `PRAGMA user_version` = how many have run. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: runs, findings, and the kill journal.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        seed TEXT NOT NULL,
        mode TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER
     );
     CREATE TABLE findings (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        at_ms INTEGER NOT NULL,
        mode TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        monkey TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        target TEXT,
        instance TEXT,
        grp TEXT,
        zone TEXT,
        severity TEXT NOT NULL,
        message TEXT NOT NULL
     );
     CREATE INDEX findings_at ON findings(at_ms);
     CREATE TABLE kills (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        target TEXT NOT NULL,
        grp TEXT NOT NULL,
        instance TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed'))
     );
     CREATE INDEX kills_group ON kills(target, grp, at_ms);",
    // 2: the fault journal — every reversible fault, written before it is applied.
    "CREATE TABLE faults (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        monkey TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        instance TEXT NOT NULL,
        grp TEXT,
        zone TEXT,
        undo TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('intent', 'active', 'reverted')),
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        reverted_ms INTEGER,
        error TEXT
     );
     CREATE INDEX faults_open ON faults(state, expires_ms);",
    // 3: structured details of a finding (JSON object), e.g. Latency Monkey's delay and deadline.
    "ALTER TABLE findings ADD COLUMN details TEXT;",
    // 4: Doctor Monkey's health state per instance, carried across runs.
    "CREATE TABLE health (
        target TEXT NOT NULL,
        instance TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('unknown', 'healthy', 'unhealthy')),
        failures INTEGER NOT NULL,
        passes INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (target, instance)
     );",
    // 5: the durable outbox — messages written before any sink sees them, delivery marks per sink.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created_ms INTEGER NOT NULL,
        label TEXT NOT NULL,
        payload TEXT NOT NULL
     );
     CREATE TABLE deliveries (
        outbox_id INTEGER NOT NULL REFERENCES outbox(id),
        sink TEXT NOT NULL,
        parts_done INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_ms INTEGER,
        PRIMARY KEY (outbox_id, sink)
     );
     CREATE INDEX deliveries_pending ON deliveries(sink, delivered_ms, outbox_id);
     CREATE TABLE sink_backoff (
        sink TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT
     );
     CREATE TABLE announcements (
        day TEXT NOT NULL,
        sink TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (day, sink)
     );",
];

/// Doctor's stored view of one instance: status and the current streaks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthRow {
    /// `unknown`, `healthy` or `unhealthy`.
    pub status: String,
    /// Consecutive failed checks.
    pub failures: u32,
    /// Consecutive passed checks.
    pub passes: u32,
}

/// Result of asking to kill in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Journaled as pending; carry it out, then call [`Store::finish_kill`].
    Granted(i64),
    /// Another kill in the group (maybe by a concurrent run) is younger than the minimum.
    TooRecent(DateTime<Utc>),
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
    pub kind: String,
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
    pub state: String,
    /// When it is due to be reverted.
    pub expires: DateTime<Utc>,
    /// Last revert error, if a revert failed before.
    pub error: Option<String>,
}

/// A stored finding with its run context (the `history` contract).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The run it belongs to.
    pub run_id: String,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The run's mode.
    pub mode: String,
    /// The finding.
    pub finding: Finding,
}

/// One undelivered (message, sink) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// Outbox entry.
    pub outbox_id: i64,
    /// Sink name.
    pub sink: String,
    /// When the message was written.
    pub created: DateTime<Utc>,
    /// Short description (never a secret).
    pub label: String,
    /// The message, JSON.
    pub payload: String,
    /// Parts (chat messages) already acknowledged by the sink.
    pub parts_done: u32,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A sink's retry state after failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Not before this.
    pub next_attempt: DateTime<Utc>,
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

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl Store {
    /// Open (creating if needed) and migrate the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let wrap = |source| StoreError::Sqlite { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing folder gives SQLite's opaque "unable to open"; create it instead.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(wrap)?;
        let mut store = Store { conn, path: path.to_path_buf() };
        store.migrate()?;
        Ok(store)
    }

    fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        // IMMEDIATE: two processes opening a fresh file must not both migrate.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::Sqlite { path: self.path.clone(), source: e })?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| StoreError::Sqlite { path: self.path.clone(), source: e })?;
        if found > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), source: e })?;
        }
        tx.commit().map_err(|e| StoreError::Sqlite { path: self.path.clone(), source: e })
    }

    /// Schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.wrap(e))
    }

    /// Record the start of a run.
    pub fn begin_run(
        &self,
        run_id: &str,
        seed: u64,
        mode: &str,
        started: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (id, seed, mode, started_ms) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, seed.to_string(), mode, ms(started)],
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

    /// Record one finding of a run.
    pub fn add_finding(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        mode: &str,
        f: &Finding,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO findings (run_id, at_ms, mode, dry_run, monkey, action, outcome, target, instance, grp, zone, severity, message, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    run_id,
                    ms(at),
                    mode,
                    mode != "live",
                    f.monkey.as_str(),
                    f.action.as_str(),
                    f.outcome.as_str(),
                    f.target,
                    f.instance,
                    f.group,
                    f.zone,
                    f.severity.as_str(),
                    f.message,
                    (!f.details.is_empty()).then(|| serde_json::to_string(&f.details).unwrap_or_default())
                ],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

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

    /// Journal a fault *before* applying it (state `intent`); returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn journal_fault(
        &self,
        run_id: &str,
        monkey: MonkeyName,
        kind: &str,
        inst: &Instance,
        undo: &Undo,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let undo = serde_json::to_string(undo).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO faults (run_id, monkey, kind, target, instance, grp, zone, undo, state, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'intent', ?9, ?10)",
                params![
                    run_id,
                    monkey.as_str(),
                    kind,
                    inst.target,
                    inst.id,
                    inst.group,
                    inst.zone,
                    undo,
                    ms(now),
                    ms(expires)
                ],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(self.conn.last_insert_rowid())
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
                "SELECT id, run_id, monkey, kind, target, instance, grp, zone, undo, state, expires_ms, error
                 FROM faults WHERE state IN ('intent', 'active') AND expires_ms <= ?1 ORDER BY id",
            )
            .map_err(|e| self.wrap(e))?;
        let limit = expired_at.map(ms).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![limit], |r| {
                // A row this simian cannot read is left for the simian that wrote it, never guessed at.
                let (Ok(monkey), Ok(undo)) =
                    (r.get::<_, String>(2)?.parse(), serde_json::from_str(&r.get::<_, String>(8)?))
                else {
                    return Ok(None);
                };
                Ok(Some(OpenFault {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    monkey,
                    kind: r.get(3)?,
                    target: r.get(4)?,
                    instance: r.get(5)?,
                    group: r.get(6)?,
                    zone: r.get(7)?,
                    undo,
                    state: r.get(9)?,
                    expires: from_ms(r.get(10)?),
                    error: r.get(11)?,
                }))
            })
            .map_err(|e| self.wrap(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(|e| self.wrap(e))?);
        }
        Ok(out)
    }

    /// Doctor's stored health of every instance seen so far, by (target, instance).
    pub fn health(&self) -> Result<BTreeMap<(String, String), HealthRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT target, instance, status, failures, passes FROM health")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    HealthRow { status: r.get(2)?, failures: r.get(3)?, passes: r.get(4)? },
                ))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Save Doctor's view of one instance.
    pub fn set_health(
        &self,
        target: &str,
        instance: &str,
        row: &HealthRow,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO health (target, instance, status, failures, passes, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (target, instance) DO UPDATE SET status = ?3, failures = ?4, passes = ?5, updated_ms = ?6",
                params![target, instance, row.status, row.failures, row.passes, ms(now)],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Write a message to the outbox with one pending delivery per sink, atomically; returns its id.
    pub fn enqueue(
        &mut self,
        label: &str,
        payload: &str,
        sinks: &[&str],
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(wrap)?;
        tx.execute(
            "INSERT INTO outbox (created_ms, label, payload) VALUES (?1, ?2, ?3)",
            params![ms(now), label, payload],
        )
        .map_err(wrap)?;
        let id = tx.last_insert_rowid();
        for sink in sinks {
            tx.execute("INSERT INTO deliveries (outbox_id, sink) VALUES (?1, ?2)", params![id, sink])
                .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Ok(id)
    }

    /// Undelivered messages, oldest first; only `sink`'s when given.
    pub fn pending(&self, sink: Option<&str>) -> Result<Vec<PendingDelivery>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.outbox_id, d.sink, o.created_ms, o.label, o.payload, d.parts_done, d.attempts, d.last_error
                 FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
                 WHERE d.delivered_ms IS NULL AND (?1 IS NULL OR d.sink = ?1)
                 ORDER BY d.outbox_id, d.sink",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![sink], |r| {
                Ok(PendingDelivery {
                    outbox_id: r.get(0)?,
                    sink: r.get(1)?,
                    created: from_ms(r.get(2)?),
                    label: r.get(3)?,
                    payload: r.get(4)?,
                    parts_done: r.get(5)?,
                    attempts: r.get(6)?,
                    last_error: r.get(7)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// How many deliveries are still pending.
    pub fn pending_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM deliveries WHERE delivered_ms IS NULL", [], |r| r.get(0))
            .map_err(|e| self.wrap(e))
    }

    /// The sink acknowledged `parts_done` parts of the message (a split chat report); kept so a retry
    /// resumes after them instead of posting them twice.
    pub fn delivery_progress(&self, outbox_id: i64, sink: &str, parts_done: u32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET parts_done = ?3 WHERE outbox_id = ?1 AND sink = ?2",
                params![outbox_id, sink, parts_done],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// The sink has the whole message.
    pub fn delivered(&self, outbox_id: i64, sink: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET delivered_ms = ?3, last_error = NULL WHERE outbox_id = ?1 AND sink = ?2",
                params![outbox_id, sink, ms(now)],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// An attempt failed; the delivery stays pending.
    pub fn delivery_failed(&self, outbox_id: i64, sink: &str, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?3 WHERE outbox_id = ?1 AND sink = ?2",
                params![outbox_id, sink, error],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// The sink's retry state; `None` = healthy.
    pub fn backoff(&self, sink: &str) -> Result<Option<Backoff>, StoreError> {
        self.conn
            .query_row(
                "SELECT failures, next_attempt_ms FROM sink_backoff WHERE sink = ?1",
                params![sink],
                |r| Ok(Backoff { failures: r.get(0)?, next_attempt: from_ms(r.get(1)?) }),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Set (`Some`) or clear (`None`) the sink's retry state.
    pub fn set_backoff(&self, sink: &str, state: Option<(&Backoff, &str)>) -> Result<(), StoreError> {
        let r = match state {
            Some((b, error)) => self.conn.execute(
                "INSERT INTO sink_backoff (sink, failures, next_attempt_ms, last_error) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sink) DO UPDATE SET failures = ?2, next_attempt_ms = ?3, last_error = ?4",
                params![sink, b.failures, ms(b.next_attempt), error],
            ),
            None => self.conn.execute("DELETE FROM sink_backoff WHERE sink = ?1", params![sink]),
        };
        r.map(|_| ()).map_err(|e| self.wrap(e))
    }

    /// Drop fully delivered messages older than `before` (their findings stay in `findings`).
    pub fn prune_outbox(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM deliveries WHERE outbox_id IN (
                    SELECT o.id FROM outbox o WHERE o.created_ms < ?1
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.outbox_id = o.id AND d.delivered_ms IS NULL));
                 ",
                params![ms(before)],
            )
            .and_then(|_| {
                self.conn.execute(
                    "DELETE FROM outbox WHERE created_ms < ?1
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.outbox_id = outbox.id)",
                    params![ms(before)],
                )
            })
            .map_err(|e| self.wrap(e))
    }

    /// Claim the day's announcement for a sink; false = already made (by this or another process).
    pub fn claim_announcement(&self, day: &str, sink: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO announcements (day, sink, at_ms) VALUES (?1, ?2, ?3)",
                params![day, sink, ms(now)],
            )
            .map(|n| n == 1)
            .map_err(|e| self.wrap(e))
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

    /// Instances Doctor currently holds unhealthy.
    pub fn unhealthy_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM health WHERE status = 'unhealthy'", [], |r| r.get(0))
            .map_err(|e| self.wrap(e))
    }

    /// Findings recorded at or after `since`, newest first.
    pub fn history(&self, since: DateTime<Utc>) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, at_ms, mode, monkey, action, outcome, target, instance, grp, zone, severity, message, details
                 FROM findings WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![ms(since)], |r| {
                let text = |i: usize| r.get::<_, String>(i);
                // Rows from a newer simian with names this one does not know are skipped, not fatal.
                let Some((monkey, action, outcome, severity)) =
                    decode(&text(3)?, &text(4)?, &text(5)?, &text(10)?)
                else {
                    return Ok(None);
                };
                let details: Option<String> = r.get(12)?;
                let finding = Finding {
                    monkey,
                    action,
                    outcome,
                    target: r.get(6)?,
                    instance: r.get(7)?,
                    group: r.get(8)?,
                    zone: r.get(9)?,
                    severity,
                    message: text(11)?,
                    details: details
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok())
                        .unwrap_or_default(),
                };
                Ok(Some(HistoryEntry { run_id: text(0)?, at: from_ms(r.get(1)?), mode: text(2)?, finding }))
            })
            .map_err(|e| self.wrap(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(|e| self.wrap(e))?);
        }
        Ok(out)
    }
}

fn decode(
    monkey: &str,
    action: &str,
    outcome: &str,
    severity: &str,
) -> Option<(MonkeyName, Action, Outcome, Severity)> {
    let monkey = monkey.parse().ok()?;
    let action = [
        Action::Terminate,
        Action::Isolate,
        Action::Restore,
        Action::InjectLatency,
        Action::RevertLatency,
        Action::Unhealthy,
        Action::Recovered,
        Action::ProbeError,
        Action::TimezoneDrift,
        Action::LocaleDrift,
        Action::ClockSkew,
        Action::Run,
    ]
    .into_iter()
    .find(|a| a.as_str() == action)?;
    let outcome = [Outcome::Planned, Outcome::Done, Outcome::Failed, Outcome::Skipped]
        .into_iter()
        .find(|o| o.as_str() == outcome)?;
    let severity = [Severity::Info, Severity::Warning, Severity::Critical]
        .into_iter()
        .find(|s| s.as_str() == severity)?;
    Some((monkey, action, outcome, severity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(group: &str) -> Instance {
        Instance {
            target: "lab".into(),
            id: "web-1".into(),
            address: None,
            group: group.into(),
            zone: None,
            region: None,
            url: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/simian.db");
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mode: String = s.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        Store::open(&p).unwrap().conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(&p), Err(StoreError::TooNew { found: 99, .. })));
    }

    #[test]
    fn claim_enforces_min_spacing_and_failed_kills_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let now = Utc::now();
        s.begin_run("r1", 1, "live", now).unwrap();
        let day = Some(TimeDelta::days(1));
        let Claim::Granted(id) = s.claim_kill("r1", &inst("web"), now, day).unwrap() else {
            panic!("first claim refused")
        };
        assert!(matches!(s.claim_kill("r1", &inst("web"), now, day).unwrap(), Claim::TooRecent(_)));
        assert!(matches!(s.claim_kill("r1", &inst("api"), now, day).unwrap(), Claim::Granted(_)));
        s.finish_kill(id, false).unwrap();
        assert!(matches!(s.claim_kill("r1", &inst("web"), now, day).unwrap(), Claim::Granted(_)));
        assert_eq!(s.last_live_kills().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_claims_grant_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        Store::open(&p).unwrap().begin_run("r", 1, "live", Utc::now()).unwrap();
        let granted: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        let mut s = Store::open(&p).unwrap();
                        matches!(
                            s.claim_kill("r", &inst("web"), Utc::now(), Some(TimeDelta::hours(1))).unwrap(),
                            Claim::Granted(_)
                        ) as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 1);
    }

    #[test]
    fn fault_journal_tracks_intent_active_reverted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let now = Utc::now();
        s.begin_run("r", 1, "live", now).unwrap();
        let undo = Undo::HostsCommand { instance: inst("web") };
        let a = s
            .journal_fault(
                "r",
                MonkeyName::Gorilla,
                "isolate",
                &inst("web"),
                &undo,
                now,
                now + TimeDelta::minutes(30),
            )
            .unwrap();
        let b = s
            .journal_fault(
                "r",
                MonkeyName::Gorilla,
                "isolate",
                &inst("api"),
                &undo,
                now,
                now - TimeDelta::minutes(1),
            )
            .unwrap();
        s.fault_applied(a).unwrap();
        let all = s.open_faults(None).unwrap();
        assert_eq!(
            all.iter().map(|f| (f.id, f.state.as_str())).collect::<Vec<_>>(),
            [(a, "active"), (b, "intent")]
        );
        assert_eq!(all[0].undo, undo);
        let due = s.open_faults(Some(now)).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, b);
        s.fault_revert_failed(b, "boom").unwrap();
        assert_eq!(s.open_faults(Some(now)).unwrap()[0].error.as_deref(), Some("boom"));
        s.fault_reverted(b, now, None).unwrap();
        s.fault_reverted(a, now, None).unwrap();
        assert!(s.open_faults(None).unwrap().is_empty());
    }

    #[test]
    fn history_round_trips_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let t0 = Utc::now();
        s.begin_run("r", 9, "dry-run", t0).unwrap();
        let f1 = Finding::run_level(MonkeyName::Chaos, Outcome::Skipped, Severity::Info, "first");
        let f2 = Finding::about(
            MonkeyName::Chaos,
            Action::Terminate,
            Outcome::Planned,
            Severity::Warning,
            &inst("web"),
            "second",
        );
        s.add_finding("r", t0, "dry-run", &f1).unwrap();
        s.add_finding("r", t0 + TimeDelta::seconds(1), "dry-run", &f2).unwrap();
        let h = s.history(t0 - TimeDelta::days(1)).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].finding, f2);
        assert_eq!(h[1].finding, f1);
        assert_eq!(h[0].mode, "dry-run");
        assert!(s.history(t0 + TimeDelta::days(1)).unwrap().is_empty());
    }
}
