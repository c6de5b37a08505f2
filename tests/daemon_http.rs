//! The daemon's HTTP face under abuse, against the real binary: 1,100 idle connections under a 1,024
//! descriptor limit neither starve the store nor keep `/healthz` away for long, and a locked store never
//! holds `/healthz` behind `/metrics` scrapes.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `GET path`, with a short read timeout; `None` when the connection is refused, closed or silent.
fn get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

/// Poll `/healthz` until it answers 200; how long that took.
fn healthz_within(port: u16, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if get(port, "/healthz", Duration::from_secs(2)).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// One opted-in member (the daemon needs a fleet; these tests never act on it).
const ONE: &[Spec] = &[("web-1", "web", "a", true)];

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(policy: &std::path::Path, port: u16, nofile: Option<u32>) -> Daemon {
    let bin = env!("CARGO_BIN_EXE_simian");
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .args(["daemon", "--policy", p(policy), "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the daemon");
    let d = Daemon(child);
    assert!(healthz_within(port, Duration::from_secs(15)).is_some(), "the daemon did not come up");
    d
}

/// A policy whose store is in the fleet's folder; Doctor observes a closed loopback port once a minute.
fn policy(fleet: &Fleet) -> std::path::PathBuf {
    fleet.write_policy_with(
        ONE,
        "",
        "",
        "  doctor:\n    schedule: \"* * * * *\"\n    url: \"http://127.0.0.1:9/\"\n    timeout: 1s\n",
    )
}

#[test]
fn idle_connections_beyond_the_descriptor_limit_do_not_starve_the_daemon() {
    let fleet = Fleet::start(ONE);
    let pol = policy(&fleet);
    let port = testkit::free_port();
    let mut d = start(&pol, port, Some(1024));
    // A holder process (with its own, higher limit) opens 1,100 connections and sends nothing.
    let script = format!(
        "import socket, time\nsocks = []\nfor _ in range(1100):\n    try:\n        s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n        socks.append(s)\n    except OSError:\n        pass\nprint(len(socks), flush=True)\ntime.sleep(40)\n"
    );
    let mut holder = Command::new("prlimit")
        .args(["--nofile=4096:4096", "python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 holds the connections");
    let mut opened = [0u8; 16];
    let n = holder.stdout.as_mut().unwrap().read(&mut opened).unwrap();
    let opened: usize = String::from_utf8_lossy(&opened[..n]).trim().parse().unwrap_or(0);
    assert!(opened >= 1000, "the holder opened {opened} connections");
    // Idle connections are cut after the header-read timeout (10 s), or refused at the cap at once.
    let took = healthz_within(port, Duration::from_secs(30));
    assert!(took.is_some(), "/healthz never answered while 1,100 idle connections were open");
    // The store still opens: a scrape reads its gauges, and SIGTERM's revert and flush work.
    let metrics = get(port, "/metrics", Duration::from_secs(5)).unwrap_or_default();
    assert!(metrics.contains("simian_active_faults"), "{metrics}");
    assert!(Command::new("kill").args(["-TERM", &d.0.id().to_string()]).status().unwrap().success());
    let status = d.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean exit with the descriptors still exhausted by the holder");
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn a_locked_store_never_holds_healthz_behind_metrics_scrapes() {
    let fleet = Fleet::start(ONE);
    let pol = policy(&fleet);
    let port = testkit::free_port();
    let _d = start(&pol, port, None);
    // Another process holds the store's write lock (and its readers out) for 20 s.
    let db = fleet.dir.path().join("simian.db");
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS hold(x);",
    )
    .unwrap();
    let scrapes: Vec<_> =
        (0..4).map(|_| std::thread::spawn(move || get(port, "/metrics", Duration::from_secs(40)))).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let health = get(port, "/healthz", Duration::from_secs(20)).unwrap_or_default();
    let waited = t.elapsed();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The old daemon held /healthz for ~17 s here (four scrapes blocking both async workers on SQLite's
    // 30 s busy timeout); 5 s leaves room for a loaded machine and still fails that.
    assert!(waited < Duration::from_secs(5), "/healthz waited {waited:?} behind the store");
    for s in scrapes {
        let r = s.join().unwrap().unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 200"), "a scrape still answers, with the last gauges: {r}");
    }
    lock.execute_batch("ROLLBACK;").unwrap();
}
