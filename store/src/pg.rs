//! The PostgreSQL backend: tokio-postgres with a deadpool pool, behind the store's synchronous interface.
//! Every statement runs on one process-wide runtime thread and the caller waits for its answer, so the
//! store is called the same way from async and blocking code and no runtime is ever nested. A connection
//! that timed out or failed inside a transaction is dropped, never handed back to the pool.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use simian_config::PostgresUrl;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::sql::{Row, Value};
use super::StoreError;

/// Longest wait for one statement (a lock, a hung server): the same bound SQLite's busy timeout sets.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait to connect; a URL's `connect_timeout` overrides it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per process and database.
const POOL_SIZE: usize = 8;
/// A write transaction: one writer at a time under an advisory lock, as SQLite's `BEGIN IMMEDIATE`.
const BEGIN_WRITE: &str = "BEGIN; SELECT pg_advisory_xact_lock(6088496226734)";
/// A migration, under its own advisory lock (two agents starting on a fresh database migrate once).
const BEGIN_MIGRATE: &str = "BEGIN; SELECT pg_advisory_xact_lock(6088496226735)";

/// Why a call to PostgreSQL failed.
#[derive(Debug, thiserror::Error)]
pub enum PgFailure {
    /// The server or the connection said no.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had (server down, pool exhausted, TLS).
    #[error("no connection: {0}")]
    Pool(String),
    /// The statement did not finish in time (lock wait, hung server).
    #[error("no answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    /// The runtime thread is gone (the process is ending).
    #[error("the store's runtime thread stopped")]
    Gone,
    /// The TLS set-up (`sslrootcert`) failed.
    #[error("TLS: {0}")]
    Tls(String),
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("simian-store-pg")
            .enable_all()
            .build()
            .expect("a tokio runtime for the PostgreSQL store (threads and timers only)")
    })
}

/// Runs `fut` on the store's runtime and waits for it (blocking the calling thread, as SQLite does).
fn block<R: Send + 'static>(
    fut: impl std::future::Future<Output = Result<R, PgFailure>> + Send + 'static,
) -> Result<R, PgFailure> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or(Err(PgFailure::Gone))
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (simian's SQL has no `?` in its literals).
pub(crate) fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read_row(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    let mut row = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        row.push(match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map_or(Value::Null, |v| Value::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map_or(Value::Null, |v| Value::Int(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map_or(Value::Null, |v| Value::Int(v.into())),
            _ => r.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
        });
    }
    Ok(Row(row))
}

/// One step on a connection.
pub(crate) enum Op {
    Exec(String, Vec<Value>),
    Query(String, Vec<Value>),
    Batch(std::borrow::Cow<'static, str>),
}

pub(crate) enum Out {
    Count(u64),
    Rows(Vec<Row>),
    Done,
}

fn refs(p: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

async fn apply(c: &Object, op: &Op) -> Result<Out, tokio_postgres::Error> {
    match op {
        Op::Exec(sql, params) => {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &refs(params)).await.map(Out::Count)
        }
        Op::Query(sql, params) => {
            let st = c.prepare_cached(sql).await?;
            let rows = c.query(&st, &refs(params)).await?;
            rows.iter().map(read_row).collect::<Result<_, _>>().map(Out::Rows)
        }
        Op::Batch(sql) => c.batch_execute(sql).await.map(|_| Out::Done),
    }
}

/// Runs `op` on `c` within [`CALL_TIMEOUT`]; the connection comes back unless it timed out (then it may be
/// mid-statement and is closed instead of pooled).
async fn step(c: Object, op: Op) -> (Option<Object>, Result<Out, PgFailure>) {
    match tokio::time::timeout(CALL_TIMEOUT, apply(&c, &op)).await {
        Ok(r) => (Some(c), r.map_err(PgFailure::Db)),
        Err(_) => {
            drop(Object::take(c));
            (None, Err(PgFailure::Timeout))
        }
    }
}

async fn connection(pool: &Pool) -> Result<Object, PgFailure> {
    pool.get().await.map_err(|e| PgFailure::Pool(chain_text(&e)))
}

/// An error and its causes on one line (the pool's errors show only the outermost).
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out = format!("{out}: {text}");
        }
        cause = c.source();
    }
    out
}

/// The pool (and whether it is migrated) for one database, shared by every `Store::open` in the process.
struct Shared {
    pool: Pool,
    migrated: OnceLock<()>,
}

/// A PostgreSQL store handle.
pub(crate) struct Pg {
    shared: Arc<Shared>,
    at: PostgresUrl,
}

impl Pg {
    /// The pool for `at` (made on first use; connections open lazily).
    pub(crate) fn open(at: &PostgresUrl) -> Result<Pg, StoreError> {
        static POOLS: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
        let key = at.secret_url().as_str().to_string();
        let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        let shared = match pools.get(&key) {
            Some(s) => s.clone(),
            None => {
                let pool = pool(at).map_err(|e| fail(at, e))?;
                let s = Arc::new(Shared { pool, migrated: OnceLock::new() });
                pools.insert(key, s.clone());
                s
            }
        };
        Ok(Pg { shared, at: at.clone() })
    }

    fn fail(&self, e: PgFailure) -> StoreError {
        fail(&self.at, e)
    }

    /// An exclusive write transaction (the advisory lock is released at commit or rollback).
    pub(crate) fn begin(&self) -> Result<PgTx, StoreError> {
        PgTx::begin(&self.shared.pool, &self.at, BEGIN_WRITE)
    }

    /// Applies the migrations this binary knows (once per process and database); a database migrated by a
    /// newer simian is refused.
    pub(crate) fn migrate(&self, migrations: &[String]) -> Result<(), StoreError> {
        if self.shared.migrated.get().is_some() {
            return Ok(());
        }
        self.migrate_fresh(migrations)?;
        let _ = self.shared.migrated.set(());
        Ok(())
    }

    /// Applies the migrations, whether or not this process did before.
    pub(crate) fn migrate_fresh(&self, migrations: &[String]) -> Result<(), StoreError> {
        let tx = PgTx::begin(&self.shared.pool, &self.at, BEGIN_MIGRATE)?;
        tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let found = match tx.rows("SELECT version FROM schema_version", &[])?.first() {
            Some(r) => r.int(0)?,
            None => {
                tx.exec("INSERT INTO schema_version (version) VALUES (0)", &[])?;
                0
            }
        };
        let known = migrations.len() as i64;
        if found > known {
            return Err(StoreError::TooNew {
                at: simian_config::StoreAt::Postgres(self.at.clone()),
                found,
                known,
            });
        }
        for (i, sql) in migrations.iter().enumerate().skip(found as usize) {
            tx.batch_owned(sql)?;
            tx.exec("UPDATE schema_version SET version = ?1", &[Value::Int(i as i64 + 1)])?;
        }
        tx.commit()
    }

    pub(crate) fn schema_version(&self) -> Result<i64, StoreError> {
        match self.rows("SELECT version FROM schema_version", &[])?.first() {
            Some(r) => r.int(0),
            None => Ok(0),
        }
    }
}

fn fail(at: &PostgresUrl, source: PgFailure) -> StoreError {
    StoreError::Postgres { at: at.clone(), source }
}

/// A transaction on one pooled connection. Dropped without [`PgTx::commit`], it rolls back; a connection
/// whose state is unknown (a failed rollback, a timeout) is closed rather than pooled.
pub(crate) struct PgTx {
    conn: RefCell<Option<Object>>,
    at: PostgresUrl,
}

impl PgTx {
    fn begin(pool: &Pool, at: &PostgresUrl, begin: &'static str) -> Result<PgTx, StoreError> {
        let pool = pool.clone();
        let conn = block(async move {
            let c = connection(&pool).await?;
            match step(c, Op::Batch(begin.into())).await {
                (Some(c), Ok(_)) => Ok(c),
                (c, Err(e)) => {
                    c.map(Object::take);
                    Err(e)
                }
                (None, Ok(_)) => Err(PgFailure::Timeout),
            }
        })
        .map_err(|e| fail(at, e))?;
        Ok(PgTx { conn: RefCell::new(Some(conn)), at: at.clone() })
    }

    fn batch(&self, sql: &'static str) -> Result<(), StoreError> {
        self.call(Op::Batch(sql.into())).map(|_| ())
    }

    fn batch_owned(&self, sql: &str) -> Result<(), StoreError> {
        self.call(Op::Batch(sql.to_string().into())).map(|_| ())
    }

    pub(crate) fn commit(self) -> Result<(), StoreError> {
        self.batch("COMMIT")
    }
}

/// Runs one step on some connection: a pooled one ([`Pg`]) or a transaction's own ([`PgTx`]).
pub(crate) trait Calls {
    /// Runs `op`.
    fn call(&self, op: Op) -> Result<Out, StoreError>;

    /// Runs a statement; how many rows it changed.
    fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self.call(Op::Exec(dollars(sql), params.to_vec()))? {
            Out::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }

    /// Runs a query; every row.
    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self.call(Op::Query(dollars(sql), params.to_vec()))? {
            Out::Rows(r) => Ok(r),
            _ => Ok(Vec::new()),
        }
    }
}

impl Calls for Pg {
    fn call(&self, op: Op) -> Result<Out, StoreError> {
        let pool = self.shared.pool.clone();
        block(async move {
            let c = connection(&pool).await?;
            step(c, op).await.1
        })
        .map_err(|e| self.fail(e))
    }
}

impl Calls for PgTx {
    fn call(&self, op: Op) -> Result<Out, StoreError> {
        let Some(c) = self.conn.borrow_mut().take() else {
            return Err(fail(&self.at, PgFailure::Pool("the transaction's connection was lost".into())));
        };
        let (c, r) = block(async move { Ok(step(c, op).await) }).unwrap_or((None, Err(PgFailure::Gone)));
        *self.conn.borrow_mut() = c;
        r.map_err(|e| fail(&self.at, e))
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(c) = self.conn.get_mut().take() else { return };
        // Not committed (an error, an early return): roll back, and pool the connection only if that worked.
        let _ = block(async move {
            if let (Some(c), Err(_)) = step(c, Op::Batch("ROLLBACK".into())).await {
                drop(Object::take(c));
            }
            Ok(())
        });
    }
}

/// The pool for `at`: TLS per `sslmode` (verified against the system's roots and `sslrootcert`), the
/// password from the URL or else `PGPASSWORD`.
fn pool(at: &PostgresUrl) -> Result<Pool, PgFailure> {
    let url = at.secret_url();
    let mut driver_url = url.clone();
    let mut root_cert = None;
    let mut pairs = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslrootcert" => root_cert = Some(v.into_owned()),
            // Certificates are always verified, so libpq's verify-ca and verify-full mean "require" here.
            "sslmode" if v.starts_with("verify") => pairs.push((k.into_owned(), "require".to_string())),
            _ => pairs.push((k.into_owned(), v.into_owned())),
        }
    }
    driver_url.set_query(None);
    if !pairs.is_empty() {
        driver_url.query_pairs_mut().extend_pairs(pairs);
    }
    let mut config: tokio_postgres::Config =
        driver_url.as_str().parse().map_err(|e: tokio_postgres::Error| PgFailure::Pool(e.to_string()))?;
    if config.get_password().is_none() {
        if let Ok(pw) = std::env::var("PGPASSWORD") {
            config.password(pw);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if root_cert.is_some() && config.get_ssl_mode() == SslMode::Disable {
        return Err(PgFailure::Tls("sslrootcert is given but sslmode=disable".into()));
    }
    let tls = tls(root_cert.as_deref())?;
    let manager =
        Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CALL_TIMEOUT))
        .create_timeout(Some(CALL_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| PgFailure::Pool(e.to_string()))
}

fn tls(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgFailure> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates leave only `sslrootcert`; the handshake then says what is missing.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| PgFailure::Tls(format!("sslrootcert {path}: {e}")))?;
        for cert in certs {
            roots.add(cert).map_err(|e| PgFailure::Tls(format!("sslrootcert {path}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgFailure::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Sql;
    use crate::{Store, StoreAt};

    #[test]
    fn sslmode_is_honoured_and_the_servers_certificate_is_always_verified() {
        let certs = tempfile::tempdir().unwrap();
        testkit::tls::make_certificates(certs.path());
        let pg = testkit::postgres::Postgres::start();
        pg.enable_ssl(certs.path());
        let ca = certs.path().join("ca.pem").display().to_string();
        let open = |query: &str| {
            let at = StoreAt::parse(&format!("{}?{query}", pg.url()), std::path::Path::new("/")).unwrap();
            Store::open(at)
        };
        let on_tls = |s: &Store| {
            s.scalar("SELECT COUNT(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl", &[]).unwrap()
        };
        for mode in ["require", "verify-ca", "verify-full", "prefer"] {
            let s = open(&format!("sslmode={mode}&sslrootcert={ca}"))
                .unwrap_or_else(|e| panic!("{mode}: {}", chain_text(&e)));
            assert_eq!(on_tls(&s), 1, "sslmode={mode} without TLS");
        }
        assert_eq!(on_tls(&open("sslmode=disable").unwrap()), 0, "sslmode=disable used TLS");
        // A server whose certificate no trusted root signed is refused, and the URL shown has no secret.
        let e =
            open("sslmode=require&application_name=unverified").err().expect("an unknown issuer was trusted");
        let why = chain_text(&e);
        assert!(why.contains("certificate") && why.contains("UnknownIssuer"), "{why}");
        let e = open(&format!("sslmode=disable&sslrootcert={ca}")).err().expect("a root with TLS off");
        assert!(chain_text(&e).contains("sslrootcert is given but sslmode=disable"), "{}", chain_text(&e));
    }

    #[test]
    fn a_unix_socket_url_reaches_the_server() {
        let pg = testkit::postgres::Postgres::shared();
        let url =
            format!("postgresql:///simian?host={}&port={}&user=simian", pg.socket_dir().display(), pg.port());
        let s = Store::open(StoreAt::parse(&url, std::path::Path::new("/")).unwrap()).unwrap();
        // No TCP peer: the session is on the socket.
        assert_eq!(
            s.scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() AND client_port = -1",
                &[]
            )
            .unwrap(),
            1
        );
    }

    #[test]
    fn placeholders_become_dollars_and_nothing_else_changes() {
        assert_eq!(
            dollars("SELECT ?1, ?12 WHERE a = '?' AND b = ?2"),
            "SELECT $1, $12 WHERE a = '?' AND b = $2"
        );
    }
}
