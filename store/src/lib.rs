//! simian-store: what simian remembers — runs, findings, the kill and fault journals (with owners and
//! leases), Doctor's health, the outbox, the halt and the agents. Two backends behind one interface: a
//! SQLite file (WAL; one machine) or a PostgreSQL database (a fleet of agents), both with versioned
//! migrations; one file per table group below, each written once against [`sql::Sql`].
#![forbid(unsafe_code)]

mod agents;
mod deferred;
mod faults;
mod halt;
mod health;
mod kills;
mod outbox;
mod pg;
mod retention;
mod runs;
mod sql;

pub use agents::{AgentId, AgentKind, AgentRow, LEASE_RENEW, LEASE_TTL};
pub use deferred::{defer_finding, defer_reverted, deferred_count};
pub use faults::{FaultKind, FaultState, OpenFault};
pub use halt::{halt_reason_problem, who, Halt, MAX_HALT_REASON};
pub use health::HealthRow;
pub use kills::Claim;
pub use outbox::{host_name, owner_id, Backoff, OpenMessage, PendingDelivery, Sealing};
pub use pg::PgFailure;
pub use retention::Pruned;
pub use runs::{ActionCount, FindingFilter, HistoryEntry, RunRow, StoredFinding};
pub use simian_config::StoreAt;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, TransactionBehavior};
use simian_config::PostgresUrl;

/// Store failures; the store is always named (a PostgreSQL URL without its password).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store {}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL said no, or could not be reached.
    #[error("store {at}")]
    Postgres {
        /// The database.
        at: PostgresUrl,
        /// The cause.
        #[source]
        source: PgFailure,
    },
    /// A value could not be encoded for the store (it is never stored half-written).
    #[error("store {at}: cannot encode a value")]
    Encode {
        /// The store.
        at: StoreAt,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A column does not hold what this simian wrote there (a hand-edited or foreign table).
    #[error("store: column {column} of a row is not {want}")]
    Decode {
        /// Column index in the query.
        column: usize,
        /// What was expected.
        want: &'static str,
    },
    /// The store was written by a newer simian.
    #[error(
        "store {at}: schema version {found} is newer than this simian understands ({known}); upgrade simian"
    )]
    TooNew {
        /// The store.
        at: StoreAt,
        /// Version in the store.
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
    // 6: findings stream into the outbox as they are recorded: a run's open message collects them until it
    // is sealed (at the end of an action phase, before a long wait, at the end of the round, or by the
    // next command after a crash); sink claims keep two deliverers from sending the same message twice.
    "ALTER TABLE outbox ADD COLUMN run_id TEXT;
     ALTER TABLE outbox ADD COLUMN sealed INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE findings ADD COLUMN outbox_id INTEGER;
     CREATE INDEX outbox_open ON outbox(sealed, run_id);
     CREATE INDEX findings_outbox ON findings(outbox_id);
     CREATE TABLE sink_claims (
        sink TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until_ms INTEGER NOT NULL
     );",
    // 7: the halt (`simian halt` / `simian resume`): while a row has no `resumed_ms`, nothing acts. Kept
    // after it is lifted, as the record of who stopped the fleet and why.
    "CREATE TABLE halts (
        id INTEGER PRIMARY KEY,
        by TEXT NOT NULL,
        reason TEXT,
        at_ms INTEGER NOT NULL,
        resumed_by TEXT,
        resumed_ms INTEGER
     );
     CREATE INDEX halts_standing ON halts(resumed_ms);",
    // 8: agents and fault ownership: every simian process that may hold a fault renews a lease here, each
    // fault names its owner, and a live agent takes over the faults of one whose lease ran out.
    "CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        stopped_ms INTEGER
     );
     ALTER TABLE faults ADD COLUMN owner TEXT;",
    // 9: cron fires claimed across agents: the first agent to claim (policy, monkey, scheduled time) runs it.
    "CREATE TABLE fires (
        policy TEXT NOT NULL,
        monkey TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        agent TEXT NOT NULL,
        claimed_ms INTEGER NOT NULL,
        PRIMARY KEY (policy, monkey, at_ms)
     );",
];

/// The PostgreSQL form of each migration: the same tables, in PostgreSQL's types (`BIGINT` ids drawn from
/// an identity, `"by"` quoted as the keyword it is there).
fn pg_migrations() -> Vec<String> {
    MIGRATIONS
        .iter()
        .map(|sql| {
            sql.replace("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                .replace("INTEGER", "BIGINT")
                .replace("\n        by TEXT", "\n        \"by\" TEXT")
        })
        .collect()
}

/// The backend of an open store.
enum Db {
    Sqlite(Connection),
    Postgres(pg::Pg),
}

/// An open store.
pub struct Store {
    db: Db,
    at: StoreAt,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl Store {
    /// Open (creating if needed) and migrate the store: a SQLite file (a `&Path` converts) or a PostgreSQL
    /// database. PostgreSQL connections are pooled per process and opened when first used.
    pub fn open(at: impl Into<StoreAt>) -> Result<Store, StoreError> {
        match at.into() {
            StoreAt::File(path) => Store::open_file(&path),
            StoreAt::Postgres(url) => {
                let pg = pg::Pg::open(&url)?;
                pg.migrate(&pg_migrations())?;
                Ok(Store { db: Db::Postgres(pg), at: StoreAt::Postgres(url) })
            }
        }
    }

    fn open_file(path: &Path) -> Result<Store, StoreError> {
        let wrap = |source| StoreError::Sqlite { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing folder gives SQLite's opaque "unable to open"; create it instead.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(wrap)?;
        // Every statement simian runs stays prepared.
        conn.set_prepared_statement_cache_capacity(128);
        migrate_file(&mut conn, path)?;
        Ok(Store { db: Db::Sqlite(conn), at: StoreAt::File(path.to_path_buf()) })
    }

    fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.at.file().unwrap_or(Path::new("")).to_path_buf(), source }
    }

    /// Where the store lives.
    pub fn at(&self) -> &StoreAt {
        &self.at
    }

    fn encode(&self, source: serde_json::Error) -> StoreError {
        StoreError::Encode { at: self.at.clone(), source }
    }

    /// Schema version of the open store.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => {
                conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.wrap(e))
            }
            Db::Postgres(pg) => pg.schema_version(),
        }
    }
}

/// Migrates a SQLite file; `PRAGMA user_version` counts the migrations applied.
fn migrate_file(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let wrap = |source| StoreError::Sqlite { path: path.to_path_buf(), source };
    let known = MIGRATIONS.len() as i64;
    // IMMEDIATE: two processes opening a fresh file must not both migrate.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(wrap)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(wrap)?;
    if found > known {
        return Err(StoreError::TooNew { at: StoreAt::File(path.to_path_buf()), found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
            .map_err(wrap)?;
    }
    tx.commit().map_err(wrap)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use simian_monkeys::{Action, Finding, Instance, Mode, MonkeyName, Outcome, Severity, Undo};

    /// A fresh, empty PostgreSQL database in this test binary's shared throwaway cluster.
    pub(crate) fn fresh_postgres() -> StoreAt {
        let url = testkit::postgres::Postgres::shared().fresh_database();
        StoreAt::parse(&url, Path::new("/")).expect("the cluster's URL")
    }

    /// Each test in the block runs twice — on a fresh SQLite file and on a fresh PostgreSQL database — as
    /// `name::sqlite` and `name::postgres`: one store suite for both backends.
    macro_rules! on_both_backends {
        ($($(#[$meta:meta])* fn $name:ident($at:ident) $body:block)*) => {$(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                $(#[$meta])*
                fn case($at: $crate::StoreAt) $body
                #[test]
                fn sqlite() {
                    let dir = tempfile::tempdir().unwrap();
                    case($crate::StoreAt::File(dir.path().join("s.db")))
                }
                #[test]
                fn postgres() {
                    case($crate::tests::fresh_postgres())
                }
            }
        )*};
    }
    pub(crate) use on_both_backends;

    /// Instance `web-1` of target `lab` in `group`.
    pub(crate) fn inst(group: &str) -> Instance {
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

    /// Journals Chaos Gorilla's isolation of `inst(group)` (owned by `owner`), due at `expires`; `None` when
    /// the store refused it (a halt).
    pub(crate) fn isolation(
        s: &Store,
        owner: Option<&str>,
        group: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Option<i64> {
        let undo = Undo::HostsCommand { instance: inst(group) };
        s.journal_fault(
            owner,
            "r",
            MonkeyName::Gorilla,
            FaultKind::Isolate,
            &inst(group),
            &undo,
            now,
            expires,
        )
        .unwrap()
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
        let Db::Sqlite(conn) = &s.db else { unreachable!("a file is SQLite") };
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn postgres_migrates_once_from_many_agents_and_refuses_a_newer_schema() {
        let at = fresh_postgres();
        // Agents starting together on a fresh database: one migrates, the others find it done.
        let versions: Vec<i64> = std::thread::scope(|sc| {
            let hs: Vec<_> =
                (0..4).map(|_| sc.spawn(|| Store::open(&at).unwrap().schema_version().unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(versions, vec![MIGRATIONS.len() as i64; 4]);
        let pg = testkit::postgres::Postgres::shared();
        let db = at.to_string().rsplit('/').next().unwrap().to_string();
        let psql = |sql: &str| pg.psql_in(&db, sql).unwrap();
        assert_eq!(psql("SELECT version FROM schema_version"), MIGRATIONS.len().to_string());
        assert_eq!(psql("SELECT COUNT(*) FROM schema_version"), "1");
        // A newer simian migrated it: this one refuses (a fresh process would not have the pool's memo).
        psql("UPDATE schema_version SET version = 99");
        let e = pg::Pg::open(match &at {
            StoreAt::Postgres(u) => u,
            StoreAt::File(_) => unreachable!(),
        })
        .and_then(|p| p.migrate_fresh(&pg_migrations()))
        .map(|_| ())
        .expect_err("newer schema");
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("upgrade simian"), "{e}");
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let Db::Sqlite(conn) = Store::open(&p).unwrap().db else { unreachable!("a file is SQLite") };
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(&p), Err(StoreError::TooNew { found: 99, .. })));
    }

    crate::tests::on_both_backends! {
        fn findings_page_newest_first_by_filter(at) {
            let mut s = Store::open(&at).unwrap();
            let t0 = Utc::now();
            s.begin_run("r", 1, Mode::Live, t0).unwrap();
            let mk = |m: MonkeyName, sev: Severity, o: Outcome, i: usize| {
                Finding::about(m, Action::Terminate, o, sev, &inst("web"), format!("f{i}"))
            };
            for i in 0..30 {
                let (m, sev) = if i % 3 == 0 { (MonkeyName::Gorilla, Severity::Warning) } else { (MonkeyName::Chaos, Severity::Info) };
                let o = if i % 2 == 0 { Outcome::Done } else { Outcome::Skipped };
                s.add_finding("r", t0, Mode::Live, &mk(m, sev, o, i)).unwrap();
            }
            let page = |f: FindingFilter| -> Vec<String> {
                s.findings(&f).unwrap().into_iter().map(|x| x.entry.finding.message).collect()
            };
            assert_eq!(page(FindingFilter { limit: 3, ..Default::default() }), ["f29", "f28", "f27"]);
            let gorilla = FindingFilter { monkey: Some("gorilla".into()), limit: 4, ..Default::default() };
            assert_eq!(page(gorilla.clone()), ["f27", "f24", "f21", "f18"]);
            // The next page starts below the last id seen.
            let last = s.findings(&gorilla).unwrap().last().unwrap().id;
            assert_eq!(page(FindingFilter { before: Some(last), ..gorilla }), ["f15", "f12", "f9", "f6"]);
            let warn_done = FindingFilter {
                severity: Some("warning".into()),
                outcome: Some("done".into()),
                limit: 100,
                ..Default::default()
            };
            assert_eq!(page(warn_done), ["f24", "f18", "f12", "f6", "f0"]);
            // What is new since a poll: only what came after the newest id seen.
            let newest = s.findings(&FindingFilter { limit: 1, ..Default::default() }).unwrap()[0].id;
            assert_eq!(page(FindingFilter { after: Some(newest - 2), limit: 10, ..Default::default() }), ["f29", "f28"]);
            assert!(page(FindingFilter { after: Some(newest), limit: 10, ..Default::default() }).is_empty());
        }

        fn claim_enforces_min_spacing_and_failed_kills_do_not_count(at) {
            let mut s = Store::open(&at).unwrap();
            let now = Utc::now();
            s.begin_run("r1", 1, Mode::Live, now).unwrap();
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

        fn concurrent_claims_grant_exactly_one(at) {
            let p = at.clone();
            Store::open(&p).unwrap().begin_run("r", 1, Mode::Live, Utc::now()).unwrap();
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

        fn fault_journal_tracks_intent_active_reverted(at) {
            let s = Store::open(&at).unwrap();
            let now = Utc::now();
            s.begin_run("r", 1, Mode::Live, now).unwrap();
            let undo = Undo::HostsCommand { instance: inst("web") };
            let a = isolation(&s, None, "web", now, now + TimeDelta::minutes(30)).expect("not halted");
            let b = isolation(&s, None, "api", now, now - TimeDelta::minutes(1)).expect("not halted");
            s.fault_applied(a).unwrap();
            let all = s.open_faults(None).unwrap();
            assert_eq!(
                all.iter().map(|f| (f.id, f.state)).collect::<Vec<_>>(),
                [(a, FaultState::Active), (b, FaultState::Intent)]
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

        fn history_round_trips_newest_first(at) {
            let mut s = Store::open(&at).unwrap();
            let t0 = Utc::now();
            s.begin_run("r", 9, Mode::DryRun, t0).unwrap();
            let f1 = Finding::run_level(MonkeyName::Chaos, Outcome::Skipped, Severity::Info, "first");
            let f2 = Finding::about(
                MonkeyName::Chaos,
                Action::Terminate,
                Outcome::Planned,
                Severity::Warning,
                &inst("web"),
                "second",
            );
            s.add_finding("r", t0, Mode::DryRun, &f1).unwrap();
            s.add_finding("r", t0 + TimeDelta::seconds(1), Mode::DryRun, &f2).unwrap();
            let h = s.history(t0 - TimeDelta::days(1)).unwrap();
            assert_eq!(h.len(), 2);
            assert_eq!(h[0].finding, f2);
            assert_eq!(h[1].finding, f1);
            assert_eq!(h[0].mode, Mode::DryRun);
            assert!(s.history(t0 + TimeDelta::days(1)).unwrap().is_empty());
        }
    }
}
