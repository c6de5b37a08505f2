//! End-to-end `simian halt` / `simian resume` on one machine (the SQLite store) against processes this test
//! starts: a halt stops every new action until resume, a fault held by a running simian is reverted by it
//! within seconds, and a fault whose holder was SIGKILLed is reverted by the halt itself.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const GORILLA_1H: &str =
    "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    action: isolate\n    duration: 1h\n";

fn halt(pol: &std::path::Path, reason: &str) -> (Value, Duration) {
    let t = Instant::now();
    let out = simian(&["halt", "--policy", p(pol), "--reason", reason, "--format", "json"]);
    let took = t.elapsed();
    assert_ok(&out);
    (json(&out), took)
}

fn ids(fs: &[&Value]) -> Vec<String> {
    let mut v: Vec<_> = fs.iter().filter_map(|f| f["instance"].as_str().map(String::from)).collect();
    v.sort();
    v
}

#[test]
fn a_halt_stops_every_action_until_resume() {
    let mut fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(SPEC, "", "    probability: 1.0\n", KILL);

    let (h, _) = halt(&pol, "checkout is paging");
    assert_eq!(h["new"], true, "{h:#}");
    assert_eq!(h["halt"]["reason"], "checkout is paging");
    assert!(h["halt"]["by"].as_str().unwrap().contains('@'), "{h:#}");
    assert_eq!(h["open_at_halt"], 0);
    assert!(h["revert"].is_null());
    // A second halt keeps the first: who and why stay.
    let (again, _) = halt(&pol, "another reason");
    assert_eq!(again["new"], false);
    assert_eq!(again["halt"]["reason"], "checkout is paging");

    // Halted: a live run kills nothing, and says why in a `skipped` finding.
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert!(killed(&r).is_empty(), "{r:#}");
    let skipped = of(&r, "run", "skipped");
    let why = skipped.iter().filter_map(|f| f["message"].as_str()).collect::<Vec<_>>().join("\n");
    assert!(why.contains("halted by ") && why.contains("checkout is paging"), "{r:#}");
    for (id, ..) in SPEC {
        assert!(fleet.alive(id), "{id} was touched while halted");
    }
    // The halt is in the metrics a one-shot run would push, and in `simian history`.
    let hist = String::from_utf8(simian(&["history", "--policy", p(&pol), "--since", "1h"]).stdout).unwrap();
    assert!(hist.contains("checkout is paging"), "{hist}");

    let out = simian(&["resume", "--policy", p(&pol), "--format", "json"]);
    assert_ok(&out);
    let resumed = json(&out);
    assert_eq!(resumed["resumed"], true, "{resumed:#}");
    assert_eq!(resumed["halt"]["reason"], "checkout is paging");
    let out = simian(&["resume", "--policy", p(&pol)]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not halted"));

    // Resumed: the next run acts again (one kill in each opted-in group).
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(killed(&r).len(), 2, "{r:#}");
}

#[test]
fn a_fault_held_by_a_running_simian_is_reverted_by_it_within_seconds() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let pol = fleet.write_policy_with(ZONED_PAIRS, "", ISOLATE_BY_SIGNAL, GORILLA_1H);
    let child = spawn_run(&pol);
    assert!(fleet.wait_state("web-a", 'T', 10) && fleet.wait_state("api-a", 'T', 10), "not isolated");

    let t = Instant::now();
    let (h, took) = halt(&pol, "stop the game day");
    // The holder looks every second: both restored within the halt's grace, nothing left for the halt.
    assert_eq!(h["open_at_halt"], 2, "{h:#}");
    assert_eq!(h["reverted_by_holders"], 2, "{h:#}");
    assert!(h["revert"].is_null(), "{h:#}");
    assert!(took < Duration::from_secs(8), "halt took {took:?}");
    for id in ["web-a", "api-a"] {
        assert!(fleet.wait_state(id, 'S', 2), "{id} must run again");
    }
    // The run ends long before its hour, with the restores in its report.
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(30), "the run held on for {:?}", t.elapsed());
    assert_ok(&out);
    let r = json(&out);
    assert_eq!(ids(&of(&r, "restore", "done")), ["api-a", "web-a"], "{r:#}");

    // While halted a new run isolates nothing.
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert!(of(&r, "isolate", "done").is_empty(), "{r:#}");
    assert_ne!(fleet.state("web-a"), 'T');
}

#[test]
fn a_fault_whose_holder_was_killed_is_reverted_by_the_halt() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let pol = fleet.write_policy_with(ZONED_PAIRS, "", ISOLATE_BY_SIGNAL, GORILLA_1H);
    let mut child = spawn_run_silent(&pol);
    assert!(fleet.wait_state("web-a", 'T', 10) && fleet.wait_state("api-a", 'T', 10), "not isolated");
    child.kill().unwrap();
    child.wait().unwrap();

    let (h, took) = halt(&pol, "holder died");
    // Nobody reverted within the grace: the halt reverted both from the journal, within 30 s.
    assert_eq!(h["open_at_halt"], 2, "{h:#}");
    assert_eq!(h["reverted_by_holders"], 0, "{h:#}");
    let revert = &h["revert"];
    assert_eq!(ids(&of(revert, "restore", "done")), ["api-a", "web-a"], "{h:#}");
    assert!(took < Duration::from_secs(30), "halt took {took:?}");
    for id in ["web-a", "api-a"] {
        assert!(fleet.wait_state(id, 'S', 2), "{id} must run again");
    }
    let text = simian(&["halt", "--policy", p(&pol)]);
    assert_ok(&text);
    assert!(String::from_utf8_lossy(&text.stdout).contains("already halted"));
}

#[test]
fn a_hostile_reason_is_refused_and_nothing_is_halted() {
    let fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(SPEC, "", "    probability: 1.0\n", KILL);
    for reason in ["x".repeat(501), "line one\nline two".to_string(), "bell\u{7}".to_string()] {
        let out = simian(&["halt", "--policy", p(&pol), "--reason", &reason]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--reason must be one line"));
    }
    let out = simian(&["resume", "--policy", p(&pol)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not halted"), "a refused halt was recorded");
    let (h, _) = halt(&pol, &"y".repeat(500));
    assert_eq!(h["new"], true);
}
