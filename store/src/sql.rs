//! One SQL layer over both backends: values, rows, statements and write transactions. Each table file writes
//! its SQL once, with SQLite's `?N` placeholders and SQL both dialects accept, against [`Sql`]; a write
//! transaction is exclusive on both (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's transaction advisory lock).

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::TransactionBehavior;

use super::pg::{self, Calls};
use super::{Db, Store, StoreError};

/// A value bound to a statement or read from a row: the three kinds simian stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// An integer (times in ms, ids, counts, flags as 0/1).
    Int(i64),
    /// Text (names, JSON).
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// Statement parameters: `vals![a, b]`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::sql::Value::from($v)),*][..] };
}
pub(crate) use vals;

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    /// Column `i` as an integer, NULL as `None`.
    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.get(i) {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(_) => Err(StoreError::Decode { column: i, want: "an integer" }),
        }
    }

    /// Column `i` as an integer.
    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or(StoreError::Decode { column: i, want: "an integer, not NULL" })
    }

    /// Column `i` as an unsigned count (negative reads as 0).
    pub(crate) fn count(&self, i: usize) -> Result<u32, StoreError> {
        Ok(u32::try_from(self.int(i)?.max(0)).unwrap_or(u32::MAX))
    }

    /// Column `i` as text, NULL as `None`.
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.get(i) {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Int(_) => Err(StoreError::Decode { column: i, want: "text" }),
        }
    }

    /// Column `i` as text.
    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or(StoreError::Decode { column: i, want: "text, not NULL" })
    }
}

/// What runs SQL: the store itself (one statement, autocommit) or a write transaction.
pub(crate) trait Sql {
    /// Run a statement; how many rows it changed.
    fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Run a query; every row.
    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// Run a query; its first row.
    fn row(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
    /// Run a query that yields one integer (a count, an id from `RETURNING`).
    fn scalar(&self, sql: &str, params: &[Value]) -> Result<i64, StoreError> {
        match self.row(sql, params)? {
            Some(r) => r.int(0),
            None => Err(StoreError::Decode { column: 0, want: "an integer (the query returned no row)" }),
        }
    }
}

fn sqlite_exec(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> rusqlite::Result<u64> {
    conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params)).map(|n| n as u64)
}

fn sqlite_rows(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let width = stmt.column_count();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(width);
        for i in 0..width {
            row.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Int(v as i64),
                ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            });
        }
        out.push(Row(row));
    }
    Ok(out)
}

impl Sql for Store {
    fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => sqlite_exec(conn, sql, params).map_err(|e| self.wrap(e)),
            Db::Postgres(pg) => pg.exec(sql, params),
        }
    }

    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => sqlite_rows(conn, sql, params).map_err(|e| self.wrap(e)),
            Db::Postgres(pg) => pg.rows(sql, params),
        }
    }
}

/// An exclusive write transaction: rolled back unless [`Tx::commit`] is called.
pub(crate) enum Tx<'a> {
    /// `BEGIN IMMEDIATE` on the file.
    Sqlite(rusqlite::Transaction<'a>, &'a Store),
    /// A pooled connection inside `BEGIN` with the store's advisory lock.
    Postgres(Box<pg::PgTx>),
}

impl Store {
    /// Begins an exclusive write transaction: of two agents racing, the second waits for the first to commit,
    /// then reads what it wrote.
    pub(crate) fn write_tx(&self) -> Result<Tx<'_>, StoreError> {
        match &self.db {
            Db::Sqlite(conn) => rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
                .map(|tx| Tx::Sqlite(tx, self))
                .map_err(|e| self.wrap(e)),
            Db::Postgres(pg) => pg.begin().map(|tx| Tx::Postgres(Box::new(tx))),
        }
    }
}

impl Tx<'_> {
    /// Makes the transaction's writes durable and visible.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx, store) => tx.commit().map_err(|e| store.wrap(e)),
            Tx::Postgres(tx) => tx.commit(),
        }
    }
}

impl Sql for Tx<'_> {
    fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match self {
            Tx::Sqlite(tx, store) => sqlite_exec(tx, sql, params).map_err(|e| store.wrap(e)),
            Tx::Postgres(tx) => tx.exec(sql, params),
        }
    }

    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Tx::Sqlite(tx, store) => sqlite_rows(tx, sql, params).map_err(|e| store.wrap(e)),
            Tx::Postgres(tx) => tx.rows(sql, params),
        }
    }
}
