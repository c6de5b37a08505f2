//! A `simian daemon` the test starts, its stderr collected line by line, and plain HTTP to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::receiver::Receiver;

use super::p;

pub const TOKEN: &str = "d43m0n-T0KEN-9a8b";

/// A running daemon whose stderr is collected line by line.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start(policy: &std::path::Path, rx: &Receiver) -> Daemon {
        Daemon::start_with(policy, rx, &[])
    }

    /// A daemon with more arguments (`--store` to share another policy's store, say).
    pub fn start_with(policy: &std::path::Path, rx: &Receiver, extra: &[&str]) -> Daemon {
        let port = testkit::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_simian"))
            .args(["daemon", "--policy", p(policy), "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("SIMIAN_WEBHOOK_URL", rx.url(&format!("/hook/{TOKEN}")))
            .env("SIMIAN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let d = Daemon { child, port, log };
        assert!(d.wait_log("serving /metrics", 10), "daemon did not start:\n{}", d.log());
        d
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn wait_log(&self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, text)
    }

    /// One HTTP request to the daemon: the status, the response's head and its body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += &format!("Content-Length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, head.to_string(), body.to_string())
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok);
    }

    /// Wait for exit; the exit status and how long it took.
    pub fn wait_exit(&mut self, secs: u64) -> (Option<i32>, Duration) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (None, t.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds until just after the next minute boundary (cron fires on the minute).
pub fn secs_to_next_minute() -> u64 {
    let now = chrono::Utc::now();
    60 - u64::from(chrono::Timelike::second(&now))
}

/// A daemon over `fleet` (of [`super::ZONED_PAIRS`]) whose control room takes `token`, with Chaos Gorilla
/// isolating zone a on `schedule` (plus `extra` Gorilla keys, e.g. `"    duration: 55s\n"`).
pub fn control_room_daemon(
    fleet: &super::Fleet,
    rx: &Receiver,
    token: &str,
    schedule: &str,
    extra: &str,
) -> Daemon {
    let pol = fleet.write_policy_with(
        super::ZONED_PAIRS,
        &format!("name: lab\napi:\n  token: \"{token}\"\nsinks:\n  - type: log\n"),
        super::ISOLATE_BY_SIGNAL,
        &format!("  gorilla:\n    schedule: \"{schedule}\"\n    zone: a\n    action: isolate\n{extra}"),
    );
    Daemon::start(&pol, rx)
}
