//! End-to-end Latency Monkey in proxy mode: the real binary proxies to a real HTTP process on loopback,
//! and request/reply times through the proxy rise by the asked delay, then the listener is released.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, spawn_run};

/// The demo's tiny HTTP instance, started from the simian binary itself.
struct Upstream(Child, u16);

impl Upstream {
    fn start() -> Upstream {
        let mut c = Command::new(env!("CARGO_BIN_EXE_simian"))
            .args(["demo-instance", "--id", "up", "--address", "127.0.0.1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap();
        Upstream(c, port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP request/reply, timed from the request to the end of the reply.
fn rtt(port: u16) -> Option<Duration> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let t = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.contains("ok up").then(|| t.elapsed())
}

/// `simian run` of a live Latency Monkey proxying `listen` to the upstream; the policy lives in the dir.
fn run_proxy(
    up: &Upstream,
    listen: u16,
    schedule: &str,
    delay: &str,
    duration: &str,
) -> (Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("simian.yaml");
    let text = format!(
        "version: 1\nmode: live\nmonkeys:\n  latency:\n    schedule: \"{schedule}\"\n    via: proxy\n    delay: {delay}\n    duration: {duration}\n    proxies:\n      - {{ listen: \"127.0.0.1:{listen}\", upstream: \"127.0.0.1:{}\" }}\n",
        up.1
    );
    std::fs::write(&pol, text).unwrap();
    let child = spawn_run(&pol);
    (child, dir)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn proxy_adds_the_delay_once_per_reply_and_releases_the_port() {
    let up = Upstream::start();
    let listen = testkit::free_port();
    let direct = median((0..5).filter_map(|_| rtt(up.1)).collect());
    let (child, _dir) = run_proxy(&up, listen, "30 10 * * mon-fri", "200ms", "4s");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", listen)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let through = median((0..5).filter_map(|_| rtt(listen)).collect());
    let added = through.saturating_sub(direct);
    assert!(
        added >= Duration::from_millis(180) && added <= Duration::from_millis(220),
        "asked 200 ms, added {added:?} (direct {direct:?}, through {through:?})"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    let f = r["findings"].as_array().unwrap();
    let inject = f.iter().find(|f| f["action"] == "inject_latency").expect("inject finding");
    assert_eq!(inject["outcome"], "done");
    assert_eq!(inject["monkey"], "latency");
    assert_eq!(inject["details"]["delay"], "200ms");
    assert!(inject["details"]["deadline"].as_str().is_some());
    let revert = f.iter().find(|f| f["action"] == "revert_latency").expect("revert finding");
    assert_eq!(revert["outcome"], "done");
    // The listener is gone: the port can be bound again, and the upstream answers directly as before.
    assert!(TcpListener::bind(("127.0.0.1", listen)).is_ok(), "port {listen} must be released");
    assert!(rtt(up.1).is_some());
}

#[test]
fn sigterm_stops_the_proxy_at_once() {
    let up = Upstream::start();
    let listen = testkit::free_port();
    let (child, _dir) = run_proxy(&up, listen, "* * * * *", "50ms", "1h");
    let deadline = Instant::now() + Duration::from_secs(5);
    while rtt(listen).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rtt(listen).is_some(), "proxy never answered");
    let t = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert!(r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["action"] == "revert_latency" && f["outcome"] == "done"));
    assert!(TcpListener::bind(("127.0.0.1", listen)).is_ok(), "port {listen} must be released");
}
