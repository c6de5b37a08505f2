//! Where the store lives: a SQLite file (one machine) or a PostgreSQL URL (a fleet of agents sharing one
//! database). Parsed and checked here, so a bad URL is a located policy error; the password never shows.

use std::path::{Path, PathBuf};

/// The `sslmode` values simian honours (libpq's names).
pub const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

/// The URL parameters simian passes on to the driver (`sslrootcert` it reads itself).
const URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "host",
    "port",
    "user",
    "dbname",
    "connect_timeout",
    "application_name",
    "options",
    "keepalives",
    "keepalives_idle",
    "target_session_attrs",
];

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreAt {
    /// A SQLite file (the default: `simian.db` beside the policy).
    File(PathBuf),
    /// A PostgreSQL database, as a libpq URL (`postgres://user[:password]@host[:port]/db?sslmode=…`).
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL; shown (Display, Debug) with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(url::Url);

impl PostgresUrl {
    /// The URL, password included: for the driver only, never for a message.
    pub fn secret_url(&self) -> &url::Url {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl std::fmt::Display for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAt::File(p) => write!(f, "{}", p.display()),
            StoreAt::Postgres(u) => u.fmt(f),
        }
    }
}

impl std::fmt::Debug for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAt::File(p) => write!(f, "File({})", p.display()),
            StoreAt::Postgres(u) => u.fmt(f),
        }
    }
}

impl From<&StoreAt> for StoreAt {
    fn from(at: &StoreAt) -> StoreAt {
        at.clone()
    }
}

impl From<&Path> for StoreAt {
    fn from(p: &Path) -> StoreAt {
        StoreAt::File(p.to_path_buf())
    }
}

impl From<PathBuf> for StoreAt {
    fn from(p: PathBuf) -> StoreAt {
        StoreAt::File(p)
    }
}

impl From<&PathBuf> for StoreAt {
    fn from(p: &PathBuf) -> StoreAt {
        StoreAt::File(p.clone())
    }
}

impl StoreAt {
    /// Reads a `store:` value (or `--store`): a `postgres://` / `postgresql://` URL, else a file path,
    /// relative to `base`. The error says what is wrong without echoing the value (it may hold a password).
    pub fn parse(text: &str, base: &Path) -> Result<StoreAt, String> {
        let lower = text.trim_start().to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            if lower.contains("://") {
                return Err("not a store: give a file path or a postgres:// URL".into());
            }
            return Ok(StoreAt::File(base.join(text)));
        }
        let url = url::Url::parse(text.trim()).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
        let param = |name: &str| url.query_pairs().any(|(k, v)| k == name && !v.is_empty());
        // As libpq: the host, user and database in the URL's parts or as parameters (`?host=/run/postgresql`
        // for a Unix socket).
        if url.host_str().is_none_or(str::is_empty) && !param("host") {
            return Err("the PostgreSQL URL names no host: postgres://user@host:5432/simian".into());
        }
        if url.username().is_empty() && !param("user") {
            return Err("the PostgreSQL URL names no user: postgres://user@host:5432/simian".into());
        }
        if url.path().trim_start_matches('/').is_empty() && !param("dbname") {
            return Err("the PostgreSQL URL names no database: postgres://user@host:5432/simian".into());
        }
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" if !SSL_MODES.contains(&v.as_ref()) => {
                    return Err(format!("sslmode `{v}` is not one of {}", SSL_MODES.join(", ")));
                }
                "password" => {
                    return Err("put the password in ${VAR} in the URL's user part, or in PGPASSWORD".into());
                }
                k if URL_PARAMETERS.contains(&k) => {}
                other => {
                    let known = URL_PARAMETERS.join(", ");
                    return Err(format!("unknown URL parameter `{other}`; simian reads {known}"));
                }
            }
        }
        Ok(StoreAt::Postgres(PostgresUrl(url)))
    }

    /// The file, for a SQLite store.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StoreAt::File(p) => Some(p),
            StoreAt::Postgres(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_files_and_urls_become_postgres_without_showing_the_password() {
        let base = Path::new("/etc/simian");
        assert_eq!(StoreAt::parse("simian.db", base).unwrap(), StoreAt::File("/etc/simian/simian.db".into()));
        assert_eq!(StoreAt::parse("/var/lib/s.db", base).unwrap(), StoreAt::File("/var/lib/s.db".into()));
        let pg = StoreAt::parse("postgres://simian:s3cret@db.lab:5432/simian?sslmode=require", base).unwrap();
        assert!(matches!(&pg, StoreAt::Postgres(u) if u.secret_url().password() == Some("s3cret")));
        assert_eq!(pg.to_string(), "postgres://simian:***@db.lab:5432/simian?sslmode=require");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(StoreAt::parse("postgresql://u@h/d", base).is_ok());
        // A Unix socket, as libpq writes it.
        assert!(StoreAt::parse("postgresql:///simian?host=/run/postgresql&user=simian", base).is_ok());
    }

    #[test]
    fn bad_urls_say_why_and_never_echo_the_password() {
        let base = Path::new("/");
        for (text, why) in [
            ("postgres://u:pw@/d", "host"),
            ("postgres://h:5432/d", "no user"),
            ("postgres://u:pw@h:5432", "no database"),
            ("postgres://u:pw@h/d?sslmode=always", "sslmode `always`"),
            ("postgres://u:pw@h/d?pool=3", "unknown URL parameter `pool`"),
            ("postgres://u@h/d?password=pw", "PGPASSWORD"),
            ("postgres://u:pw@h:99999/d", "not a valid PostgreSQL URL"),
            ("mysql://u:pw@h/d", "give a file path or a postgres:// URL"),
        ] {
            let e = StoreAt::parse(text, base).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
            assert!(!e.contains("pw"), "{text}: {e}");
        }
    }
}
