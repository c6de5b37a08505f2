//! The durable outbox: messages written before any sink sees them, delivery marks and backoff per sink,
//! and the day's announcement claims.

use chrono::{DateTime, Utc};
use simian_monkeys::Finding;

use super::runs::RunRow;
use super::sql::{vals, Sql};
use super::{from_ms, ms, Store, StoreError};

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

impl Store {
    /// Write a message to the outbox with one pending delivery per sink, atomically; returns its id.
    pub fn enqueue(
        &mut self,
        label: &str,
        payload: &str,
        sinks: &[&str],
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let tx = self.write_tx()?;
        let id = tx.scalar(
            "INSERT INTO outbox (created_ms, label, payload) VALUES (?1, ?2, ?3) RETURNING id",
            vals![ms(now), label, payload],
        )?;
        for sink in sinks {
            tx.exec("INSERT INTO deliveries (outbox_id, sink) VALUES (?1, ?2)", vals![id, *sink])?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Undelivered messages, oldest first; only `sink`'s when given.
    pub fn pending(&self, sink: Option<&str>) -> Result<Vec<PendingDelivery>, StoreError> {
        self.rows(
            "SELECT d.outbox_id, d.sink, o.created_ms, o.label, o.payload, d.parts_done, d.attempts, d.last_error
             FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
             WHERE d.delivered_ms IS NULL AND (CAST(?1 AS TEXT) IS NULL OR d.sink = ?1)
             ORDER BY d.outbox_id, d.sink",
            vals![sink],
        )?
        .iter()
        .map(|r| {
            Ok(PendingDelivery {
                outbox_id: r.int(0)?,
                sink: r.text(1)?,
                created: from_ms(r.int(2)?),
                label: r.text(3)?,
                payload: r.text(4)?,
                parts_done: r.count(5)?,
                attempts: r.count(6)?,
                last_error: r.opt_text(7)?,
            })
        })
        .collect()
    }

    /// How many deliveries are still pending.
    pub fn pending_count(&self) -> Result<i64, StoreError> {
        self.scalar("SELECT COUNT(*) FROM deliveries WHERE delivered_ms IS NULL", &[])
    }

    /// The sink acknowledged `parts_done` parts of the message (a split chat report); kept so a retry
    /// resumes after them instead of posting them twice.
    pub fn delivery_progress(&self, outbox_id: i64, sink: &str, parts_done: u32) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET parts_done = ?3 WHERE outbox_id = ?1 AND sink = ?2",
            vals![outbox_id, sink, parts_done],
        )
        .map(|_| ())
    }

    /// The sink has the whole message.
    pub fn delivered(&self, outbox_id: i64, sink: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET delivered_ms = ?3, last_error = NULL WHERE outbox_id = ?1 AND sink = ?2",
            vals![outbox_id, sink, ms(now)],
        )
        .map(|_| ())
    }

    /// An attempt failed; the delivery stays pending.
    pub fn delivery_failed(&self, outbox_id: i64, sink: &str, error: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?3 WHERE outbox_id = ?1 AND sink = ?2",
            vals![outbox_id, sink, error],
        )
        .map(|_| ())
    }

    /// The sink's retry state; `None` = healthy.
    pub fn backoff(&self, sink: &str) -> Result<Option<Backoff>, StoreError> {
        self.row("SELECT failures, next_attempt_ms FROM sink_backoff WHERE sink = ?1", vals![sink])?
            .map(|r| Ok(Backoff { failures: r.count(0)?, next_attempt: from_ms(r.int(1)?) }))
            .transpose()
    }

    /// Set (`Some`) or clear (`None`) the sink's retry state.
    pub fn set_backoff(&self, sink: &str, state: Option<(&Backoff, &str)>) -> Result<(), StoreError> {
        match state {
            Some((b, error)) => self.exec(
                "INSERT INTO sink_backoff (sink, failures, next_attempt_ms, last_error) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sink) DO UPDATE SET failures = ?2, next_attempt_ms = ?3, last_error = ?4",
                vals![sink, b.failures, ms(b.next_attempt), error],
            ),
            None => self.exec("DELETE FROM sink_backoff WHERE sink = ?1", vals![sink]),
        }
        .map(|_| ())
    }

    /// Drop fully delivered messages older than `before` (their findings stay in `findings`).
    pub fn prune_outbox(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM deliveries WHERE outbox_id IN (
                SELECT o.id FROM outbox o WHERE o.created_ms < ?1 AND o.sealed = 1
                AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.outbox_id = o.id AND d.delivered_ms IS NULL))",
            vals![ms(before)],
        )?;
        self.exec(
            "DELETE FROM outbox WHERE created_ms < ?1 AND sealed = 1
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.outbox_id = outbox.id)",
            vals![ms(before)],
        )
        .map(|n| n as usize)
    }

    /// Claim the day's announcement for a sink; false = already made (by this or another process).
    pub fn claim_announcement(&self, day: &str, sink: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.exec(
            "INSERT INTO announcements (day, sink, at_ms) VALUES (?1, ?2, ?3) ON CONFLICT (day, sink) DO NOTHING",
            vals![day, sink, ms(now)],
        )
        .map(|n| n == 1)
    }
}

/// A run's message that still collects findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMessage {
    /// Outbox entry.
    pub outbox_id: i64,
    /// The run whose findings it collects.
    pub run_id: String,
}

/// What sealing a message needs to build its payload: the run and the message's findings, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealing {
    /// Outbox entry.
    pub outbox_id: i64,
    /// The run, as recorded (`None` if its row is missing).
    pub run: Option<RunRow>,
    /// The findings attached to the message, in the order they were recorded.
    pub findings: Vec<Finding>,
}

impl Store {
    /// Open messages, oldest first; only `run`'s when given.
    pub fn open_messages(&self, run: Option<&str>) -> Result<Vec<OpenMessage>, StoreError> {
        self.rows(
            "SELECT id, run_id FROM outbox WHERE sealed = 0 AND (CAST(?1 AS TEXT) IS NULL OR run_id = ?1) ORDER BY id",
            vals![run],
        )?
        .iter()
        .map(|r| Ok(OpenMessage { outbox_id: r.int(0)?, run_id: r.opt_text(1)?.unwrap_or_default() }))
        .collect()
    }

    /// Seal an open message in one transaction: `build` turns its findings into (label, payload), and one
    /// pending delivery per sink is written. Returns what was sealed, or `None` when someone else sealed it
    /// first (then nothing changes). No finding can slip in between: the read and the seal share the lock.
    pub fn seal(
        &mut self,
        outbox_id: i64,
        sinks: &[&str],
        now: DateTime<Utc>,
        build: impl FnOnce(&Sealing) -> Result<(String, String), serde_json::Error>,
    ) -> Result<Option<Sealing>, StoreError> {
        let tx = self.write_tx()?;
        let Some(open) =
            tx.row("SELECT run_id FROM outbox WHERE id = ?1 AND sealed = 0", vals![outbox_id])?
        else {
            return Ok(None);
        };
        let run = match open.opt_text(0)? {
            Some(id) => super::runs::run_row(&tx, &id)?,
            None => None,
        };
        let sql =
            format!("SELECT {} FROM findings WHERE outbox_id = ?1 ORDER BY id", super::runs::FINDING_COLUMNS);
        let mut findings = Vec::new();
        for r in &tx.rows(&sql, vals![outbox_id])? {
            findings.extend(super::runs::row_finding(r, 0)?);
        }
        let sealing = Sealing { outbox_id, run, findings };
        let (label, payload) = build(&sealing).map_err(|e| self.encode(e))?;
        tx.exec(
            "UPDATE outbox SET sealed = 1, label = ?2, payload = ?3, created_ms = ?4 WHERE id = ?1",
            vals![outbox_id, label, payload, ms(now)],
        )?;
        for sink in sinks {
            tx.exec("INSERT INTO deliveries (outbox_id, sink) VALUES (?1, ?2)", vals![outbox_id, *sink])?;
        }
        tx.commit()?;
        Ok(Some(sealing))
    }

    /// Take (or renew) the right to deliver to `sink` until `until`; false = another live deliverer holds
    /// it. A holder on this host whose process is gone (killed mid-delivery) loses its claim at once.
    pub fn claim_sink(
        &mut self,
        sink: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let tx = self.write_tx()?;
        if let Some(r) = tx.row("SELECT owner, until_ms FROM sink_claims WHERE sink = ?1", vals![sink])? {
            let (other, until_ms) = (r.text(0)?, r.int(1)?);
            if other != owner && until_ms > ms(now) && owner_alive(&other) {
                return Ok(false);
            }
        }
        tx.exec(
            "INSERT INTO sink_claims (sink, owner, until_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (sink) DO UPDATE SET owner = ?2, until_ms = ?3",
            vals![sink, owner, ms(until)],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Give the claim on `sink` back (only if `owner` holds it).
    pub fn release_sink(&self, sink: &str, owner: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM sink_claims WHERE sink = ?1 AND owner = ?2", vals![sink, owner]).map(|_| ())
    }
}

/// This process's name as a deliverer: `host:pid:nonce`.
pub fn owner_id() -> String {
    format!("{}:{}:{}", host_name(), std::process::id(), uuid::Uuid::new_v4().simple())
}

/// The machine's host name (for owner ids and, later, agent rows).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the owner of a claim may still be delivering: always, unless it ran on this host and its
/// process is gone.
fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else { return true };
    if host != host_name() {
        return true;
    }
    match pid.parse::<u32>() {
        Ok(pid) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}
