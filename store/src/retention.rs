//! Retention: what is older than the policy's `retention` leaves the store, in small batches so that a
//! first prune of a large store never holds the write lock for long. Kept whatever their age: messages a
//! sink has not acknowledged (and the findings they carry), open faults, and each group's last kill (Chaos
//! Monkey's spacing reads it).

use super::sql::{vals, Sql};
use super::{ms, Store, StoreError};
use chrono::{DateTime, Utc};

/// Rows deleted per statement.
const BATCH: usize = 5_000;

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Findings.
    pub findings: usize,
    /// Runs.
    pub runs: usize,
    /// Delivered messages.
    pub messages: usize,
}

/// What a statement's deletions count as.
#[derive(Clone, Copy)]
enum Counted {
    Findings,
    Runs,
    Not,
}

/// Each statement deletes at most [`BATCH`] rows older than `?1`; each runs until it deletes fewer.
const STATEMENTS: &[(Counted, &str)] = &[
    (
        Counted::Findings,
        "DELETE FROM findings WHERE id IN (
            SELECT f.id FROM findings f WHERE f.at_ms < ?1
            AND (f.outbox_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM outbox o WHERE o.id = f.outbox_id AND (o.sealed = 0 OR EXISTS (
                    SELECT 1 FROM deliveries d WHERE d.outbox_id = o.id AND d.delivered_ms IS NULL))))
            LIMIT ?2)",
    ),
    (
        Counted::Not,
        "DELETE FROM kills WHERE id IN (
            SELECT k.id FROM kills k WHERE k.at_ms < ?1 AND k.status != 'pending'
            AND EXISTS (SELECT 1 FROM kills n WHERE n.target = k.target AND n.grp = k.grp AND n.at_ms > k.at_ms)
            LIMIT ?2)",
    ),
    (
        Counted::Not,
        "DELETE FROM faults WHERE id IN (
            SELECT id FROM faults WHERE state = 'reverted' AND created_ms < ?1 LIMIT ?2)",
    ),
    (
        Counted::Not,
        "DELETE FROM health WHERE (target, instance) IN (
            SELECT target, instance FROM health WHERE updated_ms < ?1 LIMIT ?2)",
    ),
    (
        Counted::Not,
        "DELETE FROM fires WHERE (policy, monkey, at_ms) IN (
            SELECT policy, monkey, at_ms FROM fires WHERE at_ms < ?1 LIMIT ?2)",
    ),
    (
        Counted::Not,
        "DELETE FROM agents WHERE id IN (
            SELECT a.id FROM agents a WHERE a.heartbeat_ms < ?1
            AND NOT EXISTS (SELECT 1 FROM faults f WHERE f.owner = a.id AND f.state IN ('intent', 'active'))
            LIMIT ?2)",
    ),
    (
        Counted::Runs,
        "DELETE FROM runs WHERE id IN (
            SELECT r.id FROM runs r WHERE r.started_ms < ?1 AND r.finished_ms IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.run_id = r.id)
            AND NOT EXISTS (SELECT 1 FROM kills k WHERE k.run_id = r.id)
            AND NOT EXISTS (SELECT 1 FROM faults t WHERE t.run_id = r.id)
            AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.id AND o.sealed = 0)
            LIMIT ?2)",
    ),
];

impl Store {
    /// Remove what is older than `before` (see the module's rules); delivered messages go too.
    pub fn prune(&self, before: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        for (counted, sql) in STATEMENTS {
            loop {
                let n = self.exec(sql, vals![ms(before), BATCH as i64])? as usize;
                match counted {
                    Counted::Findings => pruned.findings += n,
                    Counted::Runs => pruned.runs += n,
                    Counted::Not => {}
                }
                if n < BATCH {
                    break;
                }
            }
        }
        pruned.messages = self.prune_outbox(before)?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::inst;
    use crate::Claim;
    use chrono::TimeDelta;
    use simian_monkeys::{Action, Finding, Mode, MonkeyName, Outcome, Severity};

    /// The database's size in bytes, free pages included (SQLite reuses them; the file does not shrink).
    fn size(s: &Store) -> i64 {
        let pages = s.scalar("PRAGMA page_count", &[]).unwrap();
        let page = s.scalar("PRAGMA page_size", &[]).unwrap();
        pages * page
    }

    /// A simulated year of daily runs (100 findings each, delivered): with 90 days of retention the store
    /// stops growing once the first 90 days are full, and what must stay stays.
    #[test]
    fn a_year_of_runs_stays_bounded_by_retention_and_keeps_what_must_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path().join("s.db")).unwrap();
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let retention = TimeDelta::days(90);
        let f = |i: usize| {
            let mut f = Finding::about(
                MonkeyName::Doctor,
                Action::Unhealthy,
                Outcome::Done,
                Severity::Info,
                &inst(&format!("g{}", i % 20)),
                format!("probe {i} healthy"),
            );
            f.details.insert("latency_ms".into(), i.to_string());
            f
        };
        // Day 0: a kill in group `old` (its group's last, kept) and a message no sink acknowledged (kept).
        s.begin_run("undelivered", 1, Mode::Live, start).unwrap();
        s.add_finding("undelivered", start, Mode::Live, &f(0)).unwrap();
        let open = s.open_messages(Some("undelivered")).unwrap()[0].outbox_id;
        s.seal(open, &["chat"], start, |_| Ok(("l".into(), "{}".into()))).unwrap();
        s.finish_run("undelivered", start).unwrap();
        let Claim::Granted(k) = s.claim_kill("undelivered", &inst("old"), start, None).unwrap() else {
            panic!()
        };
        s.finish_kill(k, true).unwrap();
        let mut sizes = Vec::new();
        for day in 1..=365 {
            let now = start + TimeDelta::days(day);
            let run = format!("r{day}");
            s.begin_run(&run, 1, Mode::Live, now).unwrap();
            for i in 0..100 {
                s.add_finding(&run, now, Mode::Live, &f(i)).unwrap();
            }
            let id = s.open_messages(Some(&run)).unwrap()[0].outbox_id;
            s.seal(id, &["jsonl"], now, |_| Ok(("l".into(), "{\"payload\": true}".into()))).unwrap();
            s.delivered(id, "jsonl", now).unwrap();
            s.finish_run(&run, now).unwrap();
            s.prune(now - retention).unwrap();
            sizes.push(size(&s));
        }
        let (at_120, at_365) = (sizes[119], sizes[364]);
        assert!(
            at_365 <= at_120 + at_120 / 10,
            "grew past retention: {at_120} bytes at day 120, {at_365} at 365"
        );
        let count = |sql: &str| s.scalar(sql, &[]).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM runs WHERE id LIKE 'r%'"), 91, "90 days and today");
        assert_eq!(count("SELECT COUNT(*) FROM findings WHERE run_id = 'undelivered'"), 1);
        assert!(s.last_live_kills().unwrap().contains_key(&("lab".to_string(), "old".to_string())));
        assert_eq!(s.pending(Some("chat")).unwrap().len(), 1, "the unacknowledged message is still there");
        let last_day = start + TimeDelta::days(365);
        assert_eq!(s.history(last_day - TimeDelta::hours(1)).unwrap().len(), 100);
    }
}
