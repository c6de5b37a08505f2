//! A real Prometheus server on a loopback port, scraping test services every second.
//!
//! [`Prometheus::start`] runs Debian's `/usr/bin/prometheus` (installed by `./tests/run`) with its own config
//! and TSDB folder on a free `127.0.0.1` port, waits until `/-/ready` answers, and kills it when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pushgateway::get;

/// Environment variable that overrides where the Prometheus binary is found.
pub const PROMETHEUS_ENV: &str = "SIMIAN_PROMETHEUS";
/// Where Debian's prometheus package puts the binary.
pub const DEFAULT_PROMETHEUS: &str = "/usr/bin/prometheus";

/// A running Prometheus server, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Prometheus {
    /// Start it scraping `targets` (`127.0.0.1:PORT`, path `/metrics`) every second, as job `svc`.
    ///
    /// Panics, loudly, when the binary is missing: run `./tests/run`, which installs Debian's `prometheus`.
    pub fn start(targets: &[String]) -> Prometheus {
        let bin = std::env::var_os(PROMETHEUS_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PROMETHEUS));
        if !bin.is_file() {
            panic!(
                "\n\n*** prometheus not found at {} ***\nRun ./tests/run (it installs Debian's `prometheus`), or \
                 point {PROMETHEUS_ENV} at a prometheus binary.\n\n",
                bin.display()
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).expect("write prometheus.yml");
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut prom = Prometheus { child, _dir: dir, port };
        // Returns from inside the loop once ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = prom.child.try_wait() {
                let log = std::fs::read_to_string(prom._dir.path().join("log")).unwrap_or_default();
                panic!("prometheus exited with {status}:\n{log}");
            }
            if matches!(get(port, "/-/ready"), Ok((200, _))) {
                return prom;
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Wait until an instant query gives a value (the first scrapes are in).
    pub fn wait_for(&self, query: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let path = format!("/api/v1/query?query={}", encode(query));
        loop {
            if let Ok((200, body)) = get(self.port, &path) {
                if body.contains("\"value\"") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "prometheus has no value for `{query}` after {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Percent-encode a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
