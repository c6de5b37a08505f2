//! A real Prometheus Pushgateway on a loopback port, for tests of the metrics push.
//!
//! [`Pushgateway::start`] runs Debian's `/usr/bin/prometheus-pushgateway` (installed by `./tests/run`) on a
//! free `127.0.0.1` port, keeping metrics in memory only (Debian's default persistence file is under
//! `/var/lib`), waits until `/-/ready` answers and kills it when dropped. [`Pushgateway::metrics_api`] reads
//! what it holds through `GET /api/v1/metrics`.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable that overrides where the Pushgateway binary is found.
pub const PUSHGATEWAY_ENV: &str = "SIMIAN_PUSHGATEWAY";
/// Where Debian's prometheus-pushgateway package puts the binary.
pub const DEFAULT_PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";
/// How long the Pushgateway may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Pushgateway on `127.0.0.1`, killed on drop.
pub struct Pushgateway {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl std::fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushgateway").field("port", &self.port).field("dir", &self.dir.path()).finish()
    }
}

/// Where the Pushgateway is: `$SIMIAN_PUSHGATEWAY`, else `/usr/bin/prometheus-pushgateway`.
pub fn pushgateway_path() -> PathBuf {
    match std::env::var_os(PUSHGATEWAY_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PUSHGATEWAY),
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the Pushgateway binds it a moment later).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// One bodiless HTTP/1.0 GET to `127.0.0.1:port`; the status code and body.
pub(crate) fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let code = code.ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((code, body.to_string()))
}

impl Pushgateway {
    /// Starts the Pushgateway on a free loopback port and waits until `/-/ready` answers 200.
    ///
    /// Panics, saying to run `./tests/run`, when it is not installed.
    pub fn start() -> Pushgateway {
        let binary = pushgateway_path();
        if !binary.is_file() {
            panic!(
                "Pushgateway not found at {} ({PUSHGATEWAY_ENV} overrides): the push tests need Debian's \
                 prometheus-pushgateway; run ./tests/run, which installs it with apt-get",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("simian-pushgateway-").tempdir().expect("temp dir");
        let log = dir.path().join("pushgateway.log");
        // Retry on the small chance that another process takes the port between picking and binding it.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log_file = fs::File::create(&log).expect("create pushgateway.log");
            let mut child = Command::new(&binary)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--persistence.file=")
                .arg("--log.level=debug")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone pushgateway.log"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("try_wait pushgateway") {
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    eprintln!("pushgateway on port {port} exited ({status}):\n{last_log}");
                    break;
                }
                if matches!(get(port, "/-/ready"), Ok((200, _))) {
                    return Pushgateway { child, dir, port };
                }
                if start.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "pushgateway was not ready on 127.0.0.1:{port} within {START_TIMEOUT:?}:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("pushgateway would not start:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every group it holds, as `GET /api/v1/metrics` answers: `{"status": "success", "data": [{"labels":
    /// {grouping labels}, "<metric name>": {"type": "COUNTER", "metrics": [{"labels": {…}, "value": "3"}]},
    /// …}]}` (histograms have `count`, `sum` and `buckets` instead of `value`; numbers are strings).
    pub fn metrics_api(&self) -> serde_json::Value {
        let (code, body) = get(self.port, "/api/v1/metrics").expect("GET /api/v1/metrics");
        assert_eq!(code, 200, "GET /api/v1/metrics answered {code}: {body}\nlog:\n{}", self.log());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/v1/metrics is not JSON ({e}): {body}"))
    }

    /// The group whose grouping labels are exactly `labels` (e.g. `[("job", "simian"), ("instance", "x")]`),
    /// from [`Pushgateway::metrics_api`]; `None` when there is no such group.
    pub fn group(&self, labels: &[(&str, &str)]) -> Option<serde_json::Value> {
        let api = self.metrics_api();
        let groups = api["data"].as_array().cloned().unwrap_or_default();
        groups.into_iter().find(|g| {
            let Some(have) = g["labels"].as_object() else { return false };
            have.len() == labels.len()
                && labels.iter().all(|(k, v)| have.get(*k).and_then(|x| x.as_str()) == Some(v))
        })
    }

    /// Its text exposition (`GET /metrics`), grouping labels included in every sample.
    pub fn exposition(&self) -> String {
        let (code, body) = get(self.port, "/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "GET /metrics answered {code}: {body}");
        body
    }

    /// Its temporary directory (`pushgateway.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pushgateway.log")).unwrap_or_default()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
