//! Steady-state experiments end to end: the real binary measures a real HTTP service this test starts, whose
//! behaviour Chaos Gorilla's `isolate`/`restore` argv change (they create and remove a flag file the service
//! reads): slower answers (the book's 72 ms → 133 ms), or 500s. Prometheus tolerances run against Debian's
//! `prometheus` server scraping the same service.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use testkit::service::{Fault, FlagService};

/// Timing-sensitive measurements run one at a time, so two experiments do not share the two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const SVC: &[Spec] = &[("svc-a", "web", "a", true), ("svc-b", "web", "b", true)];

/// A live Gorilla isolate of zone a whose isolate/restore create/remove the service's flag.
fn policy(fleet: &Fleet, svc: &FlagService, duration: &str, steady: &str) -> std::path::PathBuf {
    let flag = svc.flag().display().to_string();
    let target = format!(
        "    isolate: [\"touch\", \"{flag}\"]\n    restore: [\"rm\", \"-f\", \"{flag}\"]\n    terminate: [\"true\"]\n"
    );
    let monkeys = format!(
        "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    action: isolate\n    duration: {duration}\n"
    );
    fleet.write_policy_with(SVC, steady, &target, &monkeys)
}

fn http_probe(svc: &FlagService, tolerance: &str, timing: &str) -> String {
    format!(
        "steady_state:\n{timing}  probes:\n    - name: checkout\n      http:\n        url: {}\n        concurrency: 4\n        timeout: 2s\n      tolerance:\n{tolerance}",
        svc.url("/checkout")
    )
}

fn experiment(r: &Value) -> &Value {
    let e = &r["experiment"];
    assert!(e.is_object(), "report has no experiment: {r:#}");
    e
}

fn messages(r: &Value, action: &str) -> Vec<String> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == action)
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect()
}

fn run_json(pol: &Path) -> (Value, std::process::Output) {
    let out = simian(&["run", "--policy", p(pol), "--format", "json"]);
    (json(&out), out)
}

#[test]
fn the_books_case_capacity_is_54_percent() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(
        Duration::from_millis(72),
        Fault::Slow(Duration::from_millis(133)),
        fleet.dir.path().join("flag"),
    );
    let steady = http_probe(
        &svc,
        "          error_rate: \"<= 1%\"\n          p99: \"<= 3x baseline\"\n          throughput: \">= 30% baseline\"\n",
        "  baseline: 4s\n  check_every: 1s\n  recovery: 5s\n",
    );
    let pol = policy(&fleet, &svc, "8s", &steady);
    let (r, out) = run_json(&pol);
    assert_ok(&out);
    assert_eq!(of(&r, "isolate", "done").len(), 1, "{r:#}");
    assert_eq!(of(&r, "restore", "done").len(), 1);
    let e = experiment(&r);
    assert_eq!(e["verdict"], "held", "{e:#}");
    assert_eq!(e["monkey"], "gorilla");
    let probe = &e["probes"][0];
    assert_eq!(probe["kind"], "http");
    // Latencies are the service's delay plus this machine's overhead, which only adds (a few ms, more while
    // CI builds beside the test); so each p50 is bounded below by the delay and above by delay + 15 %.
    let near = |ms: f64, delay: f64| ms >= delay - 1.0 && ms <= delay * 1.15;
    let base = probe["baseline"]["p50_ms"].as_f64().unwrap();
    assert!(near(base, 72.0), "p50 baseline {base}: {probe:#}");
    let during = probe["during"]["p50_ms"].as_f64().unwrap();
    assert!(near(during, 133.0), "p50 during {during}: {probe:#}");
    let rec = probe["recovery"]["p50_ms"].as_f64().unwrap();
    assert!(near(rec, 72.0), "p50 recovery {rec}: {probe:#}");
    assert!(probe["baseline"]["samples"].as_u64().unwrap() > 100);
    assert_eq!(probe["during"]["error_rate"].as_f64(), Some(0.0));
    // A closed loop of 4 clients serves 4 / latency per second, so capacity is the ratio of the latencies the
    // probe measured (72/133 = 0.54 without overhead; 77/138 = 0.56 with 5 ms of it).
    let capacity = probe["capacity"].as_f64().unwrap();
    assert!(
        (capacity - base / during).abs() <= 0.03,
        "capacity {capacity} vs latencies {base}/{during}: {probe:#}"
    );
    assert!((capacity - 0.54).abs() <= 0.05, "capacity {capacity}: {probe:#}");
    assert!(e["recovered_after_s"].as_f64().is_some(), "{e:#}");
    let lines = messages(&r, "experiment");
    assert!(
        lines
            .iter()
            .any(|m| m
                == &format!("checkout: capacity during the fault: {:.0} % of baseline", capacity * 100.0)),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|m| m.starts_with("checkout (baseline → during → recovery): throughput")),
        "{lines:#?}"
    );
    // The per-probe finding keeps the figures in the store (the control room draws them from there).
    let kept = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["action"] == "experiment" && f["details"]["probe"] == "checkout")
        .unwrap_or_else(|| panic!("no finding with the probe's figures: {r:#}"));
    let d = &kept["details"];
    let kept_capacity: f64 = d["capacity"].as_str().unwrap().parse().unwrap();
    assert!((kept_capacity - capacity).abs() < 1e-3, "{d:#}");
    for (phase, p50) in [("baseline", base), ("during", during), ("recovery", rec)] {
        let stats: Value = serde_json::from_str(d[phase].as_str().unwrap()).unwrap();
        assert_eq!(stats["p50_ms"].as_f64(), Some(p50), "{phase}: {d:#}");
    }
    assert_eq!(d["verdict"], "held");
    // The text report shows the same table.
    let text = simian(&["history", "--policy", p(&pol)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("capacity during the fault"));
}

#[test]
fn a_breaking_steady_state_aborts_and_reverts_at_once() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(Duration::from_millis(20), Fault::Fail, fleet.dir.path().join("flag"));
    let steady = http_probe(
        &svc,
        "          error_rate: \"<= 1%\"\n",
        "  baseline: 3s\n  check_every: 1s\n  abort_after: 2\n  recovery: 10s\n",
    );
    let pol = policy(&fleet, &svc, "10m", &steady);
    let started = Instant::now();
    let child = spawn_run(&pol);
    // Watch the flag: the fault's real start and end.
    let mut cut = None;
    let mut healed = None;
    while started.elapsed() < Duration::from_secs(60) && healed.is_none() {
        match (cut, svc.flag().exists()) {
            (None, true) => cut = Some(Instant::now()),
            (Some(_), false) => healed = Some(Instant::now()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cut, healed) = (cut.expect("the fault started"), healed.expect("the fault was reverted"));
    // abort_after × check_every to decide, then within check_every + 5 s of that breach.
    let held = healed - cut;
    assert!(held < Duration::from_secs(2 + 1 + 5), "reverted {held:?} after the fault began");
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    assert!(started.elapsed() < Duration::from_secs(40), "the 10m hold must not run to its end");
    let r = json(&out);
    let aborts = of(&r, "abort", "done");
    assert_eq!(aborts.len(), 1, "{r:#}");
    assert_eq!(aborts[0]["severity"], "critical");
    let msg = aborts[0]["message"].as_str().unwrap();
    assert!(msg.contains("checkout error_rate") && msg.contains("<= 1%"), "{msg}");
    assert_eq!(aborts[0]["details"]["tolerance"], "<= 1%");
    assert_eq!(of(&r, "restore", "done").len(), 1);
    let e = experiment(&r);
    assert_eq!(e["verdict"], "aborted");
    let breaches = e["probes"][0]["breaches"].as_array().unwrap();
    assert!(breaches.len() >= 2 && breaches[0]["metric"] == "error_rate", "{e:#}");
    assert!(e["recovered_after_s"].as_f64().is_some(), "the service heals once the flag is gone: {e:#}");
    // The abort came before the restore in the stream.
    let order: Vec<&str> =
        r["findings"].as_array().unwrap().iter().map(|f| f["action"].as_str().unwrap()).collect();
    let (a, rs) = (order.iter().position(|x| *x == "abort"), order.iter().position(|x| *x == "restore"));
    assert!(a < rs, "{order:?}");
}

#[test]
fn a_service_already_failing_refuses_the_round() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(Duration::from_millis(20), Fault::Fail, fleet.dir.path().join("flag"));
    std::fs::write(svc.flag(), "").unwrap();
    let steady = http_probe(&svc, "          error_rate: \"<= 1%\"\n", "  baseline: 2s\n");
    let pol = policy(&fleet, &svc, "1m", &steady);
    let (r, out) = run_json(&pol);
    assert_ok(&out);
    assert!(of(&r, "isolate", "done").is_empty(), "nothing may act: {r:#}");
    let refused = of(&r, "experiment", "skipped");
    assert_eq!(refused.len(), 1, "{r:#}");
    let msg = refused[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("does not hold before acting")
            && msg.contains("checkout error_rate 100%")
            && msg.contains("<= 1%"),
        "{msg}"
    );
    assert_eq!(experiment(&r)["verdict"], "not_started");
    assert!(svc.flag().exists(), "no restore ran either: nothing was done");
}

#[test]
fn dry_run_measures_the_baseline_and_never_acts() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(Duration::from_millis(20), Fault::Fail, fleet.dir.path().join("flag"));
    let steady = http_probe(&svc, "          error_rate: \"<= 1%\"\n", "  baseline: 2s\n");
    let pol = policy(&fleet, &svc, "1m", &steady);
    make_dry_run(&pol);
    let (r, out) = run_json(&pol);
    assert_ok(&out);
    assert!(!svc.flag().exists());
    assert!(of(&r, "isolate", "done").is_empty());
    assert_eq!(of(&r, "isolate", "planned").len(), 1);
    let planned = of(&r, "experiment", "planned");
    assert_eq!(planned.len(), 1, "{r:#}");
    assert!(planned[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("would act; steady state holds now: checkout "));
    let e = experiment(&r);
    assert_eq!(e["verdict"], "not_started");
    assert!(e["probes"][0]["baseline"]["samples"].as_u64().unwrap() > 10);
    assert!(e["probes"][0]["during"].is_null());
    assert!(svc.requests() > 10);
}

#[test]
fn sigterm_during_an_experiment_reverts_as_today() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(
        Duration::from_millis(20),
        Fault::Slow(Duration::from_millis(25)),
        fleet.dir.path().join("flag"),
    );
    let steady = http_probe(&svc, "          error_rate: \"<= 1%\"\n", "  baseline: 2s\n  check_every: 1s\n");
    let pol = policy(&fleet, &svc, "1h", &steady);
    let child = spawn_run(&pol);
    let t = Instant::now();
    while !svc.flag().exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "the fault never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let t = Instant::now();
    while svc.flag().exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "SIGTERM must revert at once");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let r = json(&out);
    assert_eq!(of(&r, "restore", "done").len(), 1);
    assert!(of(&r, "abort", "done").is_empty());
}

#[test]
fn a_promql_tolerance_aborts_the_round() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(Duration::from_millis(20), Fault::Fail, fleet.dir.path().join("flag"));
    let prom = testkit::prometheus::Prometheus::start(&[svc.addr()]);
    let query = "sum(rate(service_errors_total[3s]))";
    prom.wait_for(query, Duration::from_secs(30));
    let steady = format!(
        "steady_state:\n  baseline: 3s\n  check_every: 1s\n  abort_after: 2\n  recovery: 10s\n  probes:\n    - name: load\n      http:\n        url: {}\n        concurrency: 2\n    - name: errors\n      prometheus:\n        url: {}\n        query: '{query}'\n      tolerance:\n        value: \"< 1\"\n",
        svc.url("/"),
        prom.url()
    );
    let pol = policy(&fleet, &svc, "10m", &steady);
    let started = Instant::now();
    let (r, out) = run_json(&pol);
    assert_ok(&out);
    assert!(started.elapsed() < Duration::from_secs(45), "the hold must not run to its end");
    let aborts = of(&r, "abort", "done");
    assert_eq!(aborts.len(), 1, "{r:#}");
    assert!(aborts[0]["message"].as_str().unwrap().contains("errors value"), "{}", aborts[0]["message"]);
    assert!(!svc.flag().exists());
    let e = experiment(&r);
    assert_eq!(e["verdict"], "aborted");
    let errors = e["probes"].as_array().unwrap().iter().find(|p| p["name"] == "errors").unwrap();
    assert_eq!(errors["kind"], "prometheus");
    assert_eq!(errors["baseline"]["value"].as_f64(), Some(0.0), "{errors:#}");
    assert!(errors["during"]["max"].as_f64().unwrap() >= 1.0, "{errors:#}");
    assert!(errors["baseline"]["samples"].as_u64().unwrap() >= 2);
}

#[test]
fn latency_proxy_is_measured_through_all_three_phases() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let svc = FlagService::start(Duration::from_millis(30), Fault::Fail, dir.path().join("unused"));
    let listen = format!("127.0.0.1:{}", testkit::free_port());
    let pol = dir.path().join("simian.yaml");
    std::fs::write(
        &pol,
        format!(
            "version: 1\nmode: live\nsteady_state:\n  baseline: 3s\n  check_every: 1s\n  recovery: 5s\n  probes:\n    - name: api\n      http:\n        url: http://{listen}/\n        concurrency: 2\n      tolerance:\n        p50: \"<= 3x baseline\"\nmonkeys:\n  latency:\n    schedule: \"0 11 * * wed\"\n    via: proxy\n    delay: 60ms\n    duration: 4s\n    proxies:\n      - listen: \"{listen}\"\n        upstream: \"{}\"\n",
            svc.addr()
        ),
    )
    .unwrap();
    let (r, out) = run_json(&pol);
    assert_ok(&out);
    let e = experiment(&r);
    assert_eq!(e["verdict"], "held", "{e:#}");
    let pr = &e["probes"][0];
    let p50 = |phase: &str| pr[phase]["p50_ms"].as_f64().unwrap();
    // The service's delay (+60 ms during the fault) plus overhead that only adds: the proxy's hop, a busy CI.
    let near = |ms: f64, delay: f64| ms >= delay - 1.0 && ms <= delay + 10.0;
    assert!(near(p50("baseline"), 30.0), "{pr:#}");
    assert!(near(p50("during"), 90.0), "{pr:#}");
    assert!(near(p50("recovery"), 30.0), "{pr:#}");
    assert_eq!(pr["baseline"]["error_rate"].as_f64(), Some(0.0), "the proxy listens during the baseline");
    assert_eq!(of(&r, "revert_latency", "done").len(), 1);
}

#[test]
fn simian_probe_measures_now_without_chaos() {
    let _g = serial();
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(Duration::from_millis(10), Fault::Fail, fleet.dir.path().join("flag"));
    let steady = http_probe(&svc, "          error_rate: \"<= 1%\"\n          p99: \"<= 2x baseline\"\n", "");
    let pol = policy(&fleet, &svc, "1m", &steady);
    let out = simian(&["probe", "--policy", p(&pol), "--for", "2s", "--format", "json"]);
    assert_ok(&out);
    let j = json(&out);
    assert_eq!(j["holds"], true);
    let pr = &j["probes"][0];
    assert!(pr["stats"]["samples"].as_u64().unwrap() > 20, "{j:#}");
    let statuses: Vec<&str> =
        pr["tolerances"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["holds", "relative"]);
    assert!(!svc.flag().exists());
    // Failing service: exit 1, the text names the breaking tolerance.
    std::fs::write(svc.flag(), "").unwrap();
    let out = simian(&["probe", "--policy", p(&pol), "--for", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BREAKS") && text.contains("error_rate <= 1%: breaks (100%)"), "{text}");
}

#[test]
fn steady_state_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("bad.yaml");
    std::fs::write(
        &pol,
        r#"version: 1
steady_state:
  baseline: 0s
  probes:
    - name: checkout
      http:
        url: http://127.0.0.1:9/
        max_rate: 5000/s
      tolerance:
        error_rate: "about 1%"
        p99: "<= 2x baseline"
        value: "< 5"
targets:
  - name: lab
    type: hosts
    terminate: ["true"]
    hosts: [{ id: a, group: g, zone: a }]
monkeys:
  chaos:
    schedule: "* * * * *"
    steady_state: [checkout, chekout]
"#,
    )
    .unwrap();
    let out = simian(&["validate", "--policy", p(&pol)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for (loc, what) in [
        ("bad.yaml:8:19", "over 1000/s"),
        ("bad.yaml:10:21", "about 1%"),
        ("bad.yaml:11:14", "baseline: 0s"),
        ("bad.yaml:12:16", "has no metric `value`"),
        ("bad.yaml:21:30", "unknown probe `chekout`"),
    ] {
        assert!(err.lines().any(|l| l.contains(loc) && l.contains(what)), "want {loc} {what} in:\n{err}");
    }
}

#[test]
fn the_daemon_runs_rounds_as_experiments() {
    let fleet = Fleet::start(SVC);
    let svc = FlagService::start(Duration::from_millis(20), Fault::Fail, fleet.dir.path().join("flag"));
    let jsonl = fleet.dir.path().join("findings.jsonl");
    let steady = format!(
        "sinks:\n  - {{ type: jsonl, path: {} }}\n{}",
        jsonl.display(),
        http_probe(
            &svc,
            "          error_rate: \"<= 1%\"\n",
            "  baseline: 2s\n  check_every: 1s\n  abort_after: 2\n  recovery: 5s\n"
        )
    );
    let flag = svc.flag().display().to_string();
    let target = format!(
        "    isolate: [\"touch\", \"{flag}\"]\n    restore: [\"rm\", \"-f\", \"{flag}\"]\n    terminate: [\"true\"]\n"
    );
    let monkeys =
        "  gorilla:\n    schedule: \"* * * * *\"\n    zone: a\n    action: isolate\n    duration: 10m\n";
    let pol = fleet.write_policy_with(SVC, &steady, &target, monkeys);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(["daemon", "--policy", p(&pol)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The next minute's fire, the baseline, the isolation, two breaching checks, the revert, the recovery.
    let t = Instant::now();
    let mut lines = String::new();
    while t.elapsed() < Duration::from_secs(100) {
        lines = std::fs::read_to_string(&jsonl).unwrap_or_default();
        if lines.contains("\"action\":\"abort\"") && lines.contains("recovered") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let status = daemon.wait().unwrap();
    assert!(lines.contains("\"action\":\"abort\""), "no abort in the daemon's findings:\n{lines}");
    assert!(lines.contains("\"action\":\"restore\""), "{lines}");
    assert!(lines.contains("steady state recovered"), "{lines}");
    assert!(!svc.flag().exists(), "the daemon reverted the fault");
    assert_eq!(status.code(), Some(0));
}
