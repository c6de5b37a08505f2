//! End-to-end Chaos Gorilla on a `hosts` target: isolation is SIGSTOP of real local processes this test
//! starts, restore is SIGCONT — a real, reversible fault whose state the kernel reports in /proc.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ZONED: &[Spec] = &[
    ("web-a", "web", "a", true),
    ("web-b", "web", "b", true),
    ("api-a", "api", "a", true),
    ("api-c", "api", "c", true),
    ("solo-a", "solo", "a", true),
    ("db-a", "db", "a", false),
];

fn gorilla(zone: &str, action: &str, extra: &str) -> String {
    format!("  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: {zone}\n    action: {action}\n{extra}")
}

fn ids(fs: &[&Value]) -> Vec<String> {
    let mut v: Vec<_> = fs.iter().filter_map(|f| f["instance"].as_str().map(String::from)).collect();
    v.sort();
    v
}

#[test]
fn isolate_holds_for_the_duration_then_restores() {
    let fleet = Fleet::start(ZONED);
    let pol =
        fleet.write_policy_with(ZONED, "", ISOLATE_BY_SIGNAL, &gorilla("a", "isolate", "    duration: 3s\n"));
    let child = spawn_run(&pol);
    assert!(fleet.wait_state("web-a", 'T', 5), "web-a should be stopped while isolated");
    assert_eq!(fleet.state("api-a"), 'T');
    assert_ne!(fleet.state("solo-a"), 'T', "solo lives only in zone a: spared");
    assert_ne!(fleet.state("db-a"), 'T', "not opted in");
    assert_ne!(fleet.state("web-b"), 'T', "other zone");
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let r = json(&out);
    assert_eq!(ids(&of(&r, "isolate", "done")), ["api-a", "web-a"]);
    assert_eq!(ids(&of(&r, "restore", "done")), ["api-a", "web-a"]);
    let spared = of(&r, "isolate", "skipped");
    assert_eq!(spared.len(), 1);
    assert_eq!(spared[0]["group"], "solo");
    assert!(spared[0]["message"].as_str().unwrap().contains("allow_total_loss"));
    let head = &r["findings"][0];
    assert_eq!(head["monkey"], "gorilla");
    assert_eq!(head["zone"], "a");
    assert!(head["message"].as_str().unwrap().contains("zone a"));
    for id in ["web-a", "api-a"] {
        assert!(fleet.wait_state(id, 'S', 2), "{id} must be running again");
    }
}

#[test]
fn sigterm_restores_at_once_and_sigkill_is_undone_by_revert() {
    let fleet = Fleet::start(ZONED);
    let pol =
        fleet.write_policy_with(ZONED, "", ISOLATE_BY_SIGNAL, &gorilla("a", "isolate", "    duration: 1h\n"));
    // SIGTERM: restore now, exit cleanly.
    let child = spawn_run(&pol);
    assert!(fleet.wait_state("web-a", 'T', 5));
    assert!(fleet.wait_state("api-a", 'T', 5));
    let t = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_ok(&out);
    assert_eq!(ids(&of(&json(&out), "restore", "done")), ["api-a", "web-a"]);
    assert!(fleet.wait_state("web-a", 'S', 2) && fleet.wait_state("api-a", 'S', 2));

    // SIGKILL: nothing can run in simian; the journal remembers, `simian revert` restores.
    let mut child = Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(["run", "--policy", p(&pol), "--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(fleet.wait_state("web-a", 'T', 5));
    assert!(fleet.wait_state("api-a", 'T', 5));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fleet.state("web-a"), 'T', "killed simian leaves the fault in place");
    // Not yet expired: a dry run reports nothing due, and restores nothing.
    let plan = json(&simian(&["plan", "--policy", p(&pol), "--format", "json"]));
    assert!(of(&plan, "restore", "done").is_empty());
    assert_eq!(fleet.state("web-a"), 'T');
    let r = json(&simian(&["revert", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(ids(&of(&r, "restore", "done")), ["api-a", "web-a"], "{r:#}");
    assert!(fleet.wait_state("web-a", 'S', 2) && fleet.wait_state("api-a", 'S', 2));
    // Nothing left to revert.
    let again = json(&simian(&["revert", "--policy", p(&pol), "--format", "json"]));
    assert!(again["findings"].as_array().unwrap().is_empty(), "{again:#}");
}

#[test]
fn next_run_reverts_expired_faults_of_a_killed_simian() {
    let fleet = Fleet::start(ZONED);
    let pol =
        fleet.write_policy_with(ZONED, "", ISOLATE_BY_SIGNAL, &gorilla("a", "isolate", "    duration: 1s\n"));
    let mut child = spawn_run_silent(&pol);
    assert!(fleet.wait_state("web-a", 'T', 5));
    assert!(fleet.wait_state("api-a", 'T', 5));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // A dry run only reports the due revert…
    let plan = json(&simian(&["plan", "--policy", p(&pol), "--format", "json", "--monkey", "gorilla"]));
    assert_eq!(ids(&of(&plan, "restore", "planned")), ["api-a", "web-a"], "{plan:#}");
    assert_eq!(fleet.state("web-a"), 'T');
    // …a live run restores first (the policy is disabled, so nothing new is done).
    let text = std::fs::read_to_string(&pol).unwrap().replace("mode: live\n", "mode: live\nenabled: false\n");
    std::fs::write(&pol, text).unwrap();
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(ids(&of(&r, "restore", "done")), ["api-a", "web-a"], "{r:#}");
    assert!(fleet.wait_state("web-a", 'S', 2) && fleet.wait_state("api-a", 'S', 2));
}

#[test]
fn terminate_takes_the_zone_but_spares_total_loss_and_dry_run_touches_nothing() {
    let mut fleet = Fleet::start(ZONED);
    let pol = fleet.write_policy_with(ZONED, "", ISOLATE_BY_SIGNAL, &gorilla("a", "terminate", ""));
    let plan = json(&simian(&["plan", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(ids(&of(&plan, "terminate", "planned")), ["api-a", "web-a"]);
    for (id, ..) in ZONED {
        assert!(fleet.alive(id), "dry run must not touch {id}");
    }
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(ids(&of(&r, "terminate", "done")), ["api-a", "web-a"], "{r:#}");
    assert!(fleet.dead("web-a") && fleet.dead("api-a"));
    assert!(fleet.alive("solo-a") && fleet.alive("db-a") && fleet.alive("web-b") && fleet.alive("api-c"));

    // allow_total_loss: the solo group goes too.
    let fleet = Fleet::start(ZONED);
    let pol = fleet.write_policy_with(
        ZONED,
        "",
        ISOLATE_BY_SIGNAL,
        &gorilla("a", "terminate", "    allow_total_loss: true\n"),
    );
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(ids(&of(&r, "terminate", "done")), ["api-a", "solo-a", "web-a"], "{r:#}");
}

#[test]
fn random_zone_is_seeded_and_only_among_zones_with_eligible_instances() {
    let fleet = Fleet::start(ZONED);
    let pol = fleet.write_policy_with(ZONED, "", ISOLATE_BY_SIGNAL, &gorilla("random", "terminate", ""));
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let a =
            json(&simian(&["plan", "--policy", p(&pol), "--seed", &seed.to_string(), "--format", "json"]));
        let b =
            json(&simian(&["plan", "--policy", p(&pol), "--seed", &seed.to_string(), "--format", "json"]));
        assert_eq!(a["findings"], b["findings"]);
        seen.insert(a["findings"][0]["zone"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
}
