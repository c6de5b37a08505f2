//! End-to-end Doctor and 10-18 Monkeys: the real binary against real HTTP servers on loopback this test
//! starts (healthy, 500, slow, closed, wrong body, lying clock), /proc through the local executor, facts
//! through a `wrap` executor that sets TZ/LANG per host, and through a local sshd.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{json, p};
use serde_json::Value;

/// A loopback HTTP server answering every request with `status` (changeable) and `body`; `slow` never answers.
struct Server {
    port: u16,
    status: Arc<AtomicU16>,
}

fn server(status: u16, body: &'static str, date: Option<String>, slow: bool) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let code = Arc::new(AtomicU16::new(status));
    let c = code.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let code = c.clone();
            let date = date.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                if slow {
                    std::thread::sleep(Duration::from_secs(5));
                    return;
                }
                let date = date.map(|d| format!("Date: {d}\r\n")).unwrap_or_default();
                let _ = write!(
                    s,
                    "HTTP/1.1 {} X\r\n{date}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    code.load(Ordering::SeqCst),
                    body.len()
                );
            });
        }
    });
    Server { port, status: code }
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("simian.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(pol: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", "--policy", p(pol), "--format", "json"];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_simian")).args(&args).output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

fn actions(r: &Value, action: &str) -> Vec<String> {
    let mut v: Vec<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == action)
        .map(|f| f["instance"].as_str().unwrap_or("-").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn doctor_reports_transitions_once_and_recoveries() {
    let ok = server(200, "ok", None, false);
    let err500 = server(500, "ok", None, false);
    let slow = server(200, "ok", None, true);
    let wrong = server(200, "nope", None, false);
    let closed = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let host = |id: &str, port: u16| {
        format!("      - {{ id: {id}, address: 127.0.0.1, group: web, url: \"http://127.0.0.1:{port}/health\" }}\n")
    };
    let pol = write(
        dir.path(),
        &format!(
            "version: 1\ntargets:\n  - name: lab\n    type: hosts\n    hosts:\n{}{}{}{}{}monkeys:\n  doctor:\n    schedule: \"*/5 * * * *\"\n    expect_body: ok\n    timeout: 500ms\n    failures_before_unhealthy: 2\n",
            host("ok", ok.port),
            host("e500", err500.port),
            host("slow", slow.port),
            host("wrong", wrong.port),
            host("closed", closed)
        ),
    );
    // Dry-run (the default mode) still observes and reports.
    let r1 = run(&pol, &[]);
    assert!(actions(&r1, "unhealthy").is_empty(), "one failure is not yet unhealthy: {r1:#}");
    let d = &r1["summary"]["doctor"];
    assert_eq!(d["checked"], 5);
    assert_eq!(d["healthy"], 1);
    assert_eq!(d["unhealthy"], 4);
    assert!(d["p99_ms"].as_f64().unwrap() >= 400.0, "the slow probe waits for its timeout: {d}");
    let r2 = run(&pol, &[]);
    assert_eq!(actions(&r2, "unhealthy"), ["closed", "e500", "slow", "wrong"], "{r2:#}");
    let msgs: Vec<&str> =
        r2["findings"].as_array().unwrap().iter().filter_map(|f| f["message"].as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("500")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("no answer within")), "{msgs:?}");
    assert!(r2["findings"].as_array().unwrap().iter().all(|f| f["outcome"] == "done"));
    // No flood: still unhealthy, no new finding.
    let r3 = run(&pol, &[]);
    assert!(actions(&r3, "unhealthy").is_empty(), "{r3:#}");
    // The 500 server heals: recovered after two passes, once.
    err500.status.store(200, Ordering::SeqCst);
    assert!(actions(&run(&pol, &[]), "recovered").is_empty());
    assert_eq!(actions(&run(&pol, &[]), "recovered"), ["e500"]);
    assert!(actions(&run(&pol, &[]), "recovered").is_empty());
}

#[test]
fn doctor_reads_proc_through_the_local_executor_and_remediates_only_live_opted_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut sick = Command::new("sleep").arg("300").stdin(Stdio::null()).spawn().unwrap();
    let mut bystander = Command::new("sleep").arg("300").stdin(Stdio::null()).spawn().unwrap();
    let bad = closed_port();
    let (sick_pid, bystander_pid) = (sick.id(), bystander.id());
    let policy = |mode: &str, mem: &str| {
        format!(
            "version: 1\nmode: {mode}\ntargets:\n  - name: lab\n    type: hosts\n    terminate: [\"kill\", \"-TERM\", \"{{tag:pid}}\"]\n    hosts:\n      - {{ id: sick, address: 127.0.0.1, group: web, url: \"http://127.0.0.1:{bad}/\", tags: {{ \"simian:opt-in\": \"true\", pid: \"{}\" }} }}\n      - {{ id: other, address: 127.0.0.1, group: web, url: \"http://127.0.0.1:{bad}/\", tags: {{ pid: \"{}\" }} }}\nmonkeys:\n  doctor:\n    schedule: \"*/5 * * * *\"\n    failures_before_unhealthy: 1\n    timeout: 300ms\n    remediate: terminate\n  ten_eighteen:\n    schedule: \"0 * * * *\"\n",
            sick_pid,
            bystander_pid
        ) + mem
    };
    // /proc: 100 % memory available can never hold → unhealthy with the memory reason; lenient limits pass.
    let proc_pol = write(
        dir.path(),
        "version: 1\ntargets:\n  - name: lab\n    type: hosts\n    hosts:\n      - { id: me, group: g }\nmonkeys:\n  doctor:\n    schedule: \"*/5 * * * *\"\n    failures_before_unhealthy: 1\n    proc: true\n    min_mem_available: 100%\n",
    );
    let r = run(&proc_pol, &[]);
    assert_eq!(actions(&r, "unhealthy"), ["me"], "{r:#}");
    assert!(r["findings"].to_string().contains("mem"), "{r:#}");
    let lenient = write(
        dir.path(),
        "version: 1\nstore: lenient.db\ntargets:\n  - name: lab\n    type: hosts\n    hosts:\n      - { id: me, group: g }\nmonkeys:\n  doctor:\n    schedule: \"*/5 * * * *\"\n    failures_before_unhealthy: 1\n    proc: true\n    min_mem_available: 0%\n    max_disk_used: 100%\n    max_load_per_cpu: 1000\n",
    );
    let r = run(&lenient, &[]);
    assert_eq!(r["summary"]["doctor"]["healthy"], 1, "{r:#}");

    // Remediation: dry-run only plans; live terminates the opted-in sick instance, never the other one.
    let pol = write(dir.path(), &policy("dry-run", "").replace("version: 1\n", "version: 1\nstore: r.db\n"));
    let r = run(&pol, &[]);
    let t: Vec<_> = r["findings"].as_array().unwrap().iter().filter(|f| f["action"] == "terminate").collect();
    assert_eq!(t.len(), 2, "{r:#}");
    assert!(t.iter().any(|f| f["instance"] == "sick" && f["outcome"] == "planned"), "{r:#}");
    assert!(t.iter().any(|f| f["instance"] == "other" && f["outcome"] == "skipped"), "{r:#}");
    assert!(sick.try_wait().unwrap().is_none());
    let pol = write(dir.path(), &policy("live", "").replace("version: 1\n", "version: 1\nstore: r2.db\n"));
    let r = run(&pol, &[]);
    let done: Vec<_> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "terminate" && f["outcome"] == "done")
        .collect();
    assert_eq!(done.len(), 1, "{r:#}");
    assert_eq!(done[0]["instance"], "sick");
    assert_eq!(actions(&r, "unhealthy"), ["other", "sick"]);
    let _ = sick.wait();
    assert!(bystander.try_wait().unwrap().is_none(), "not opted in: never remediated");
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn ten_eighteen_flags_minority_timezone_locale_and_lying_clocks() {
    let hour_ago =
        (chrono::Utc::now() - chrono::TimeDelta::hours(1)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let liar = server(200, "ok", Some(hour_ago), false);
    let honest =
        server(200, "ok", Some(chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()), false);
    let dir = tempfile::tempdir().unwrap();
    let host = |id: &str, tz: &str, lang: &str, url: Option<u16>| {
        let url = url.map(|p| format!(", url: \"http://127.0.0.1:{p}/\"")).unwrap_or_default();
        format!(
            "      - {{ id: {id}, group: web, zone: a, tags: {{ tz: \"{tz}\", lang: \"{lang}\" }}{url} }}\n"
        )
    };
    let text = format!(
        "version: 1\ntargets:\n  - name: lab\n    type: hosts\n    executor: {{ type: wrap, argv: [\"env\", \"-u\", \"LC_ALL\", \"TZ={{tag:tz}}\", \"LANG={{tag:lang}}\"] }}\n    hosts:\n{}{}{}{}{}monkeys:\n  ten_eighteen:\n    schedule: \"0 * * * *\"\n    max_clock_skew: 2s\n",
        host("w1", "UTC", "en_US.UTF-8", Some(honest.port)),
        host("w2", "UTC", "en_US.UTF-8", None),
        host("w3", "UTC", "en_US.UTF-8", None),
        host("w4", "Asia/Tokyo", "en_US.UTF-8", Some(liar.port)),
        host("w5", "UTC", "de_DE.UTF-8", None),
    );
    let pol = write(dir.path(), &text);
    let r = run(&pol, &[]);
    assert_eq!(actions(&r, "timezone_drift"), ["w4"], "{r:#}");
    assert_eq!(actions(&r, "locale_drift"), ["w5"], "{r:#}");
    assert_eq!(actions(&r, "clock_skew"), ["w4"], "{r:#}");
    let skew =
        r["findings"].as_array().unwrap().iter().find(|f| f["action"] == "clock_skew").unwrap().clone();
    assert_eq!(skew["severity"], "warning");
    assert!(skew["details"]["actual"].as_str().unwrap().starts_with("-3"), "{skew}");
    assert_eq!(r["summary"]["ten_eighteen"]["timezone_drift"], 1);
    // With a policy expectation (and an override for zone a), the expectation is the norm, not the majority.
    let text = text.replace("    max_clock_skew: 2s\n", "    max_clock_skew: 2s\n    expect: { timezone: Asia/Tokyo }\n    overrides:\n      - { group: web, locale: de_DE.UTF-8 }\n");
    let pol = write(dir.path(), &text);
    let r = run(&pol, &[]);
    assert_eq!(actions(&r, "timezone_drift"), ["w1", "w2", "w3", "w5"], "{r:#}");
    assert_eq!(actions(&r, "locale_drift"), ["w1", "w2", "w3", "w4"], "{r:#}");
}

#[test]
fn ten_eighteen_reads_facts_through_ssh() {
    let sshd = testkit::sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let pol = write(
        dir.path(),
        &format!(
            "version: 1\nmode: live\ntargets:\n  - name: lab\n    type: hosts\n    executor: {{ type: ssh, user: {}, port: {}, identity_file: \"{}\", known_hosts: \"{}\" }}\n    hosts:\n      - {{ id: remote, address: 127.0.0.1, group: web }}\nmonkeys:\n  ten_eighteen:\n    schedule: \"0 * * * *\"\n    expect: {{ timezone: Antarctica/Troll }}\n",
            sshd.user(),
            sshd.port(),
            sshd.identity_file().display(),
            sshd.known_hosts().display()
        ),
    );
    let r = run(&pol, &[]);
    assert!(actions(&r, "probe_error").is_empty(), "facts were read over ssh: {r:#}");
    let tz = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["action"] == "timezone_drift")
        .expect("drift")
        .clone();
    assert_eq!(tz["details"]["expected"], "Antarctica/Troll", "{tz}");
    assert!(actions(&r, "clock_skew").is_empty(), "same machine, same clock: {r:#}");
}
