//! A throwaway PostgreSQL cluster on a loopback port, for the fleet-store tests.
//!
//! [`Postgres::start`] runs Debian's PostgreSQL (installed by `./tests/run`): `initdb` into a fresh folder,
//! `pg_ctl start` on a free `127.0.0.1` port (socket in the same folder), and `createdb simian`. The server
//! refuses to run as root, so as root every command runs as the `postgres` user (the Debian package creates
//! it) on a folder it owns. Stopped (`pg_ctl -m immediate stop`) and removed when dropped; [`Postgres::stop`]
//! and [`Postgres::start_again`] take it down and up mid-test (the store-unreachable cases).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Environment variable naming the folder with `initdb` and `pg_ctl`, overriding the search.
pub const PG_BINDIR_ENV: &str = "SIMIAN_PG_BINDIR";
/// The database the tests use; the superuser is `simian` too (`initdb -U simian`, trust auth on loopback).
pub const DATABASE: &str = "simian";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    /// Holds `data/`; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    /// Run the server's commands as this user (`Some("postgres")` when the tests run as root).
    run_as: Option<&'static str>,
}

/// The newest `/usr/lib/postgresql/N/bin` (Debian's layout), or `$SIMIAN_PG_BINDIR`.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PG_BINDIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "\n\n*** PostgreSQL not found under /usr/lib/postgresql/*/bin ***\nRun ./tests/run (it installs \
             Debian's `postgresql`), or point {PG_BINDIR_ENV} at a folder with initdb and pg_ctl.\n\n"
        ),
    }
}

/// Whether this process runs as root (uid 0), from /proc.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|uid| uid == "0")
}

impl Postgres {
    /// A new cluster with database [`DATABASE`], ready for connections. Panics, loudly, when PostgreSQL is
    /// missing or does not start (with its log).
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = is_root().then_some("postgres");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data folder");
        if let Some(user) = run_as {
            // The server's user must reach its folder: the temp folder is root's and 0700.
            run(Command::new("chmod").arg("755").arg(dir.path()));
            run(Command::new("chown").arg(format!("{user}:{user}")).arg(&data));
        }
        let pg = Postgres { bin, dir, port: crate::free_port(), run_as };
        pg.run_pg("initdb", &["-D", &pg.data(), "-A", "trust", "-U", DATABASE, "--no-sync", "-E", "UTF8"]);
        pg.start_again();
        pg.run_pg("createdb", &["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", DATABASE, DATABASE]);
        pg
    }

    /// The data folder.
    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// One of the cluster's programs, run as the server's user when the tests run as root.
    fn pg_command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Runs one of the cluster's programs; panics with its output on failure.
    fn run_pg(&self, program: &str, args: &[&str]) -> Output {
        run(self.pg_command(program).args(args))
    }

    /// Starts the (stopped) server again on the same port and data: the store comes back.
    pub fn start_again(&self) {
        // Room for many pools: a test binary opens one per database, and each keeps up to 8 connections.
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400",
            self.port,
            self.data()
        );
        let log = self.dir.path().join("data").join("server.log").display().to_string();
        self.run_pg("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// Stops the server at once (`-m immediate`, like a crash): connections fail until [`Postgres::start_again`].
    pub fn stop(&self) {
        self.run_pg("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// `postgres://simian@127.0.0.1:PORT/simian`.
    pub fn url(&self) -> String {
        format!("postgres://{DATABASE}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The folder holding the server's Unix socket (`.s.PGSQL.PORT`).
    pub fn socket_dir(&self) -> PathBuf {
        PathBuf::from(self.data())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL with the cluster's `psql`; its output (unaligned, tuples only), or the error text.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in(DATABASE, sql)
    }

    /// [`Postgres::psql`] in database `db` (one made by [`Postgres::fresh_database`]: the last part of its URL).
    pub fn psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", DATABASE, "-d", db])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Serves TLS too, with `leaf.pem` / `leaf.key` from `certs` (made by [`crate::tls::make_certificates`]);
    /// clients choose (loopback is trusted either way), so a test sees which `sslmode` used TLS.
    pub fn enable_ssl(&self, certs: &Path) {
        let data = PathBuf::from(self.data());
        for f in ["leaf.pem", "leaf.key"] {
            std::fs::copy(certs.join(f), data.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
            if let Some(user) = self.run_as {
                run(Command::new("chown").arg(format!("{user}:{user}")).arg(data.join(f)));
            }
        }
        // The server refuses a key others can read.
        run(Command::new("chmod").arg("600").arg(data.join("leaf.key")));
        // One statement per call: ALTER SYSTEM cannot run inside the transaction a multi-statement -c is.
        for sql in [
            "ALTER SYSTEM SET ssl_cert_file = 'leaf.pem'",
            "ALTER SYSTEM SET ssl_key_file = 'leaf.key'",
            "ALTER SYSTEM SET ssl = on",
            "SELECT pg_reload_conf()",
        ] {
            self.psql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.psql("SHOW ssl").as_deref() != Ok("on") {
            assert!(std::time::Instant::now() < deadline, "TLS did not come on:\n{}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// A new, empty database in this cluster; its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.psql(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        format!("postgres://{DATABASE}@127.0.0.1:{}/{name}", self.port)
    }

    /// One cluster for the whole test process, started on first use; a watchdog stops it and removes its
    /// folder once this process has exited (a static is never dropped).
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Postgres::start();
            let mut stop = pg.pg_command("pg_ctl");
            stop.args(["-D", &pg.data(), "-m", "immediate", "-w", "stop"]);
            let mut argv = vec![stop.get_program().to_os_string()];
            argv.extend(stop.get_args().map(|a| a.to_os_string()));
            // sh gets the pid, the folder and the stop command as arguments, never spliced into its script.
            // It outlives this process by design (init reaps it), so it is never waited for.
            #[allow(clippy::zombie_processes)]
            let _watchdog = Command::new("sh")
                .arg("-c")
                .arg(r#"pid=$1; dir=$2; shift 2; while kill -0 "$pid" 2>/dev/null; do sleep 1; done; "$@" >/dev/null 2>&1; rm -rf "$dir""#)
                .arg("watchdog")
                .arg(std::process::id().to_string())
                .arg(pg.dir.path())
                .args(argv)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("the shared cluster's watchdog");
            pg
        })
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(Path::new(&self.data()).join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Already stopped is fine: nothing to report from a destructor.
        let _ =
            self.pg_command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
    }
}

/// Runs `cmd`; panics with its output unless it succeeds.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
