//! Latency Monkey's tc mode on a real Linux kernel with netem: a QEMU guest this test boots (testkit::vm),
//! reached by simian's SSH executor. Fails loudly if the guest cannot boot (`SIMIAN_SKIP_VM=1 ./tests/run` leaves `vm_` tests out).
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{json, p, spawn_run};
use testkit::vm::Guest;

fn policy(dir: &Path, g: &Guest, latency: &str) -> PathBuf {
    let path = dir.join("simian.yaml");
    let text = format!(
        "version: 1\nmode: live\ntargets:\n  - name: lab\n    type: hosts\n    executor: {{ type: ssh, user: {}, port: {}, identity_file: \"{}\", known_hosts: \"{}\" }}\n    hosts:\n      - {{ id: guest, address: 127.0.0.1, group: web, zone: a, tags: {{ \"simian:opt-in\": \"true\" }} }}\nmonkeys:\n  latency:\n    schedule: \"30 10 * * mon-fri\"\n    via: tc\n    interface: auto\n{latency}",
        g.user(),
        g.ssh_port(),
        g.identity_file().display(),
        g.known_hosts().display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn qdisc(g: &Guest) -> String {
    g.ssh_ok(&["tc", "qdisc", "show", "dev", "eth0"])
}

/// Is simian's netem (handle `51xx:`) the root qdisc?
fn simians(show: &str) -> bool {
    matches!(simian_monkeys::latency::root_qdisc(show), simian_monkeys::latency::Root::Simians(_))
}

/// One request/reply on an established connection: connect, let the handshake finish inside the guest
/// (its SYN-ACK leaves through the delayed interface too), then time the request and the whole reply.
fn rtt(g: &Guest) -> Duration {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", g.http_port())).expect("connect to the guest");
    s.set_nodelay(true).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let t = Instant::now();
    s.write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains(" 200"), "{reply}");
    t.elapsed()
}

fn median_rtt(g: &Guest, n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| rtt(g)).collect();
    v.sort();
    v[n / 2]
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// Wait for simian's netem while `child` runs; on failure show what simian said.
fn wait_for_netem(g: &Guest, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if simians(&qdisc(g)) {
            return;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut out);
    }
    panic!("simian's netem never showed on eth0 ({}); simian said:\n{out}", qdisc(g));
}

#[test]
fn vm_netem_adds_the_asked_delay_reverts_and_survives_a_killed_simian() {
    let g = Guest::boot();
    let dir = tempfile::tempdir().unwrap();
    let base = median_rtt(&g, 5);

    // 1. Inject 150 ms for 8 s: the guest's replies slow down by 150 ms (±10 %), then the default qdisc is back.
    let pol = policy(dir.path(), &g, "    delay: 150ms\n    duration: 8s\n    grace: 5s\n");
    let mut child = spawn_run(&pol);
    wait_for_netem(&g, &mut child);
    let slowed = median_rtt(&g, 5);
    let added = slowed.saturating_sub(base);
    assert!(
        added >= Duration::from_millis(135) && added <= Duration::from_millis(165),
        "asked 150 ms, added {added:?} (base {base:?}, with netem {slowed:?})"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    let f = r["findings"].as_array().unwrap();
    let inject = f.iter().find(|f| f["action"] == "inject_latency").expect("inject finding");
    assert_eq!(inject["outcome"], "done", "{r:#}");
    assert_eq!(inject["details"]["interface"], "eth0");
    assert_eq!(inject["details"]["delay"], "150ms");
    let revert = f.iter().find(|f| f["action"] == "revert_latency").expect("revert finding");
    assert_eq!(revert["outcome"], "done", "{r:#}");
    let after = qdisc(&g);
    assert!(!after.contains("netem"), "netem must be gone: {after}");
    let back = median_rtt(&g, 5);
    assert!(back < base + Duration::from_millis(40), "latency back to normal: {back:?} vs {base:?}");

    // 2. SIGKILL simian mid-fault: the guest's dead-man switch removes the qdisc by duration + grace.
    let pol = policy(dir.path(), &g, "    delay: 100ms\n    duration: 4s\n    grace: 3s\n");
    let mut child = spawn_run(&pol);
    wait_for_netem(&g, &mut child);
    let injected = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(simians(&qdisc(&g)), "still in place right after the kill");
    wait_for("the dead-man switch", 20, || !qdisc(&g).contains("netem"));
    let took = injected.elapsed();
    assert!(took <= Duration::from_secs(4 + 3 + 5), "dead-man removed it after {took:?}");
    // The journal still has it open; `simian revert` closes it without harm.
    let r = json(
        &Command::new(env!("CARGO_BIN_EXE_simian"))
            .args(["revert", "--policy", p(&pol), "--format", "json"])
            .output()
            .unwrap(),
    );
    assert!(r["findings"].as_array().unwrap().iter().all(|f| f["outcome"] != "failed"), "{r:#}");

    // 3. A root qdisc simian does not own is left alone.
    g.ssh_ok(&["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "8001:", "netem", "delay", "1ms"]);
    let pol = policy(dir.path(), &g, "    delay: 100ms\n    duration: 2s\n");
    let r = json(
        &Command::new(env!("CARGO_BIN_EXE_simian"))
            .args(["run", "--policy", p(&pol), "--format", "json"])
            .output()
            .unwrap(),
    );
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["action"] == "inject_latency")
        .expect("finding")
        .clone();
    assert_eq!(f["outcome"], "skipped", "{r:#}");
    assert!(f["message"].as_str().unwrap().contains("does not own"), "{f}");
    assert!(qdisc(&g).contains("netem 8001: root"), "foreign qdisc untouched");
    g.ssh_ok(&["tc", "qdisc", "del", "dev", "eth0", "root"]);
}

#[test]
fn a_kernel_without_netem_gets_a_clear_error() {
    // This machine's own kernel has no sch_netem. Probe it inside a network namespace this test makes,
    // so nothing on the machine's own interfaces is touched.
    let ns = format!("simian-test-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &ns]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "cannot create network namespace {ns} (needs root and iproute2)");
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Ns(ns.clone());
    let has_netem = Command::new("sh")
        .args(["-c", "test -d /sys/module/sch_netem || modinfo sch_netem >/dev/null 2>&1"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("simian.yaml");
    std::fs::write(
        &pol,
        format!("version: 1\nmode: live\ntargets:\n  - name: ns\n    type: hosts\n    executor: {{ type: wrap, argv: [\"ip\", \"netns\", \"exec\", \"{ns}\"] }}\n    hosts:\n      - {{ id: ns, group: g, tags: {{ \"simian:opt-in\": \"true\" }} }}\nmonkeys:\n  latency:\n    schedule: \"* * * * *\"\n    delay: 100ms\n    duration: 1s\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(["run", "--policy", p(&pol), "--format", "json"])
        .output()
        .unwrap();
    let r = json(&out);
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["action"] == "inject_latency")
        .expect("finding")
        .clone();
    if has_netem {
        eprintln!("this kernel has netem; the missing-netem message is not observable here");
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(f["outcome"], "failed");
    assert!(f["message"].as_str().unwrap().contains("sch_netem"), "{f}");
}
