//! End-to-end `simian daemon`: real per-minute cron firing against processes this test starts, no overlap
//! of a monkey's rounds, /metrics and /healthz over HTTP, SIGHUP with a broken policy, and SIGTERM
//! reverting an active fault and flushing the outbox within 30 s; `simian halt` ending its hold and refusing
//! its fires until `simian resume`.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;
use serde_json::Value;
use testkit::receiver::Receiver;

#[test]
fn per_minute_isolation_never_overlaps_and_sigterm_reverts_within_30s() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let top = "name: lab\nsinks:\n  - type: log\n  - { type: webhook, url: \"${SIMIAN_WEBHOOK_URL}\" }\n";
    let pol = fleet.write_policy_with(
        ZONED_PAIRS,
        top,
        ISOLATE_BY_SIGNAL,
        "  gorilla:\n    schedule: \"* * * * *\"\n    zone: a\n    action: isolate\n    duration: 1h\n",
    );
    let mut d = Daemon::start(&pol, &rx);
    let (status, body) = d.get("/healthz");
    assert_eq!(status, 200, "{body}");
    // The first fire comes at the next minute: zone a is isolated (the processes are stopped).
    assert!(fleet.wait_state("web-a", 'T', secs_to_next_minute() + 15), "no fire:\n{}", d.log());
    assert_eq!(fleet.state("api-a"), 'T');
    assert_ne!(fleet.state("web-b"), 'T');
    let (status, metrics) = d.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("application/openmetrics-text"), "{metrics}");
    assert!(metrics.contains("simian_active_faults{monkey=\"gorilla\"} 2"), "{metrics}");
    // The next minute's fire finds the round still holding its fault: skipped, not doubled.
    assert!(d.wait_log("previous round still running", secs_to_next_minute() + 15), "{}", d.log());

    d.signal("-TERM");
    let (code, took) = d.wait_exit(30);
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(took < Duration::from_secs(30), "{took:?}");
    for id in ["web-a", "api-a"] {
        assert!(fleet.wait_state(id, 'S', 2), "{id} must run again after SIGTERM:\n{}", d.log());
    }
    // The round's report (isolations and their restores) reached the webhook before exit.
    let reports: Vec<Value> =
        rx.requests().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    let actions: Vec<(String, String)> = reports
        .iter()
        .flat_map(|r| r["report"]["findings"].as_array().cloned().unwrap_or_default())
        .map(|f| (f["action"].as_str().unwrap().to_string(), f["outcome"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == &("isolate".into(), "done".into())).count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == &("restore".into(), "done".into())).count(), 2, "{actions:?}");
    assert!(!d.log().contains(TOKEN), "webhook URL leaked:\n{}", d.log());
}

#[test]
fn sighup_with_a_broken_policy_keeps_the_old_one() {
    let fleet = Fleet::start(SPEC);
    let rx = Receiver::start();
    let top = "sinks:\n  - { type: webhook, url: \"${SIMIAN_WEBHOOK_URL}\" }\n";
    let pol = fleet.write_policy_with(
        SPEC,
        top,
        &format!("    terminate: {KILL}\n"),
        "  chaos:\n    schedule: \"* * * * *\"\n",
    );
    make_dry_run(&pol);
    let good = std::fs::read_to_string(&pol).unwrap();
    let mut d = Daemon::start(&pol, &rx);
    std::fs::write(
        &pol,
        good.replace("schedule: \"* * * * *\"", "schedule: \"61 * * * *\"\n    probabilty: 2"),
    )
    .unwrap();
    d.signal("-HUP");
    assert!(d.wait_log("policy reload failed", 10), "{}", d.log());
    let log = d.log();
    // The error names the file and line, like `simian validate`.
    assert!(log.contains(&format!("{}:", p(&pol))) && log.contains("probabilty"), "{log}");
    // The old policy keeps firing: a chaos report arrives at the next minute.
    assert!(rx.wait_for(1, Duration::from_secs(secs_to_next_minute() + 20)), "{}", d.log());
    let body: Value = serde_json::from_slice(&rx.requests()[0].body).unwrap();
    assert_eq!(body["report"]["findings"][0]["monkey"], "chaos");
    assert_eq!(d.get("/healthz").0, 200);
    // A good policy is taken on the next SIGHUP.
    std::fs::write(&pol, good).unwrap();
    d.signal("-HUP");
    assert!(d.wait_log("policy reloaded", 10), "{}", d.log());
    d.signal("-INT");
    assert_eq!(d.wait_exit(30).0, Some(0), "{}", d.log());
}

#[test]
fn the_days_plan_is_posted_once_inside_the_announce_window() {
    let fleet = Fleet::start(SPEC);
    let rx = Receiver::start();
    // The day's only Chaos fire is 3 minutes from now: inside a 30-minute announce window at once.
    let at = chrono::Utc::now() + chrono::TimeDelta::minutes(3);
    let cron = at.format("%M %H * * *").to_string();
    let top = "sinks:\n  - { type: webhook, url: \"${SIMIAN_WEBHOOK_URL}\", announce: 30m }\n";
    let chaos = format!("  chaos:\n    schedule: \"{cron}\"\n");
    let pol = fleet.write_policy_with(SPEC, top, &format!("    terminate: {KILL}\n"), &chaos);
    make_dry_run(&pol);
    let mut d = Daemon::start(&pol, &rx);
    assert!(rx.wait_for(1, Duration::from_secs(10)), "no plan posted:\n{}", d.log());
    let body: Value = serde_json::from_slice(&rx.requests()[0].body).unwrap();
    assert_eq!(body["kind"], "announcement", "{body}");
    let groups: Vec<&str> =
        body["actions"].as_array().unwrap().iter().map(|a| a["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["api", "web"], "one line per opted-in group: {body}");
    assert!(body["actions"][0]["at"].as_str().unwrap().contains(&at.format("%H:%M").to_string()), "{body}");
    d.signal("-TERM");
    assert_eq!(d.wait_exit(30).0, Some(0), "{}", d.log());
    // A restart the same day does not announce again: the plan is claimed per day and sink in the store.
    let mut d = Daemon::start(&pol, &rx);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.requests().len(), 1, "{:?}", rx.requests());
    d.signal("-TERM");
    assert_eq!(d.wait_exit(30).0, Some(0), "{}", d.log());
}

/// A policy of `n` hosts, none opted in, Chaos Monkey once a year: a large file that changes nothing.
fn large_policy(dir: &std::path::Path, n: usize) -> String {
    let mut text = format!(
        "version: 1\nstore: {}\ntargets:\n  - type: hosts\n    name: big\n    terminate: [\"true\"]\n    hosts:\n",
        dir.join("simian.db").display()
    );
    for i in 0..n {
        text.push_str(&format!("      - {{ id: h{i}, address: 127.0.0.1, group: g{}, zone: a }}\n", i / 10));
    }
    text + "monkeys:\n  chaos:\n    schedule: \"0 0 1 1 *\"\n"
}

#[test]
fn a_slow_reload_never_holds_up_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let pol = dir.path().join("simian.yaml");
    std::fs::write(&pol, large_policy(dir.path(), 1)).unwrap();
    let mut d = Daemon::start(&pol, &rx);
    // 250,000 hosts: this (debug) build reads them for many seconds on a blocking thread.
    std::fs::write(&pol, large_policy(dir.path(), 250_000)).unwrap();
    d.signal("-HUP");
    assert!(d.wait_log("SIGHUP", 10), "{}", d.log());
    assert_eq!(d.get("/healthz").0, 200, "the loop answers while the policy is read");
    d.signal("-TERM");
    let (code, took) = d.wait_exit(30);
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(!d.log().contains("policy reloaded"), "the read was meant to outlast SIGTERM:\n{}", d.log());
    assert!(took < Duration::from_secs(5), "SIGTERM waited {took:?} for the reload:\n{}", d.log());
}

#[test]
fn a_halt_ends_the_daemons_hold_refuses_its_fires_and_resume_lifts_it() {
    halt_case(TestStore::Sqlite);
}

#[test]
fn on_postgres_a_halt_ends_the_daemons_hold_refuses_its_fires_and_resume_lifts_it() {
    halt_case(TestStore::postgres());
}

fn halt_case(store: TestStore) {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let top = format!("name: lab\n{}sinks:\n  - type: log\n", store.policy_line());
    let top = top.as_str();
    let pol = fleet.write_policy_with(
        ZONED_PAIRS,
        top,
        ISOLATE_BY_SIGNAL,
        "  gorilla:\n    schedule: \"* * * * *\"\n    zone: a\n    action: isolate\n    duration: 50s\n",
    );
    let mut d = Daemon::start(&pol, &rx);
    assert!(fleet.wait_state("web-a", 'T', secs_to_next_minute() + 15), "no fire:\n{}", d.log());

    // The daemon's own round holds the fault: it sees the halt within a second and restores.
    let t = Instant::now();
    let out = simian(&["halt", "--policy", p(&pol), "--reason", "game day over", "--format", "json"]);
    assert_ok(&out);
    let h = json(&out);
    assert_eq!((h["open_at_halt"].as_u64(), h["reverted_by_holders"].as_u64()), (Some(2), Some(2)), "{h:#}");
    for id in ["web-a", "api-a"] {
        assert!(fleet.wait_state(id, 'S', 30), "{id} still stopped after the halt:\n{}", d.log());
    }
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(d.wait_log("halted: no new actions", 10), "{}", d.log());
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("\nsimian_halted 1\n"), "{metrics}");

    // The next fire is refused: its skipped finding names the halt, and nothing is stopped.
    let before = d.log().matches("game day over").count();
    let deadline = Instant::now() + Duration::from_secs(secs_to_next_minute() + 20);
    while Instant::now() < deadline && d.log().matches("game day over").count() == before {
        assert_ne!(fleet.state("web-a"), 'T', "isolated while halted:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log().matches("game day over").count() > before, "no refused fire:\n{}", d.log());
    assert_ne!(fleet.state("web-a"), 'T');

    // Resumed: the next fire isolates again; SIGTERM restores as always.
    assert_ok(&simian(&["resume", "--policy", p(&pol)]));
    assert!(fleet.wait_state("web-a", 'T', secs_to_next_minute() + 15), "no fire after resume:\n{}", d.log());
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("\nsimian_halted 0\n"), "{metrics}");
    d.signal("-TERM");
    let (code, _) = d.wait_exit(30);
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(fleet.wait_state("web-a", 'S', 2));
}

/// The `simian agents --format json` rows of `policy`'s store.
fn agents(policy: &std::path::Path) -> Vec<Value> {
    let out = simian(&["agents", "--policy", p(policy), "--format", "json"]);
    assert_ok(&out);
    json(&out).as_array().cloned().unwrap_or_default()
}

#[test]
fn a_live_daemon_takes_over_the_faults_of_a_killed_one_and_restores_them_at_their_planned_end() {
    takeover_case(TestStore::Sqlite, 60);
}

#[test]
fn on_postgres_a_live_daemon_takes_over_the_faults_of_a_killed_one_and_restores_them_at_their_planned_end() {
    takeover_case(TestStore::postgres(), 90);
}

/// Daemon A isolates zone a every minute for `hold` seconds; daemon B shares A's store and fires nothing
/// soon. A is SIGKILLed mid-hold: B takes over and restores by the planned end + 40 s.
fn takeover_case(store: TestStore, hold: u64) {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let pol_a = fleet.write_policy_with(
        ZONED_PAIRS,
        &format!("name: lab\n{}", store.policy_line()),
        ISOLATE_BY_SIGNAL,
        &format!(
            "  gorilla:\n    schedule: \"* * * * *\"\n    zone: a\n    action: isolate\n    duration: {hold}s\n"
        ),
    );
    let dir_b = tempfile::tempdir().unwrap();
    let pol_b = dir_b.path().join("b.yaml");
    std::fs::write(
        &pol_b,
        std::fs::read_to_string(&pol_a)
            .unwrap()
            .replace("schedule: \"* * * * *\"", "schedule: \"0 0 1 1 *\""),
    )
    .unwrap();
    let mut a = Daemon::start(&pol_a, &rx);
    let b = Daemon::start_with(&pol_b, &rx, &["--store", &store.arg(fleet.dir.path())]);
    let rows = agents(&pol_a);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["kind"] == "daemon" && r["pid"].as_u64().is_some() && r["version"].is_string()));
    let id_a = rows.iter().find(|r| r["pid"] == a.child.id()).expect("A listed")["agent"]
        .as_str()
        .unwrap()
        .to_string();
    let id_b = rows.iter().find(|r| r["pid"] == b.child.id()).expect("B listed")["agent"]
        .as_str()
        .unwrap()
        .to_string();

    assert!(fleet.wait_state("web-a", 'T', secs_to_next_minute() + 15), "no fire:\n{}", a.log());
    assert!(fleet.wait_state("api-a", 'T', 5));
    let isolated = Instant::now();
    let owned: Vec<_> = agents(&pol_a)
        .into_iter()
        .map(|r| (r["agent"].as_str().unwrap().to_string(), r["active_faults"].as_i64()))
        .collect();
    assert!(owned.contains(&(id_a.clone(), Some(2))), "{owned:?}");

    // A dies mid-hold: nothing of it runs any more; its faults stay until B's takeover restores them.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(b.wait_log("took over a fault", 50), "no takeover:\n{}", b.log());
    assert!(isolated.elapsed() < Duration::from_secs(hold - 5), "taken over late: {:?}", isolated.elapsed());
    assert_eq!(fleet.state("web-a"), 'T', "restored before its planned end");
    let rows = agents(&pol_a);
    assert_eq!(rows.len(), 1, "A's lease ran out: {rows:?}");
    assert_eq!(
        (rows[0]["agent"].as_str(), rows[0]["active_faults"].as_i64()),
        (Some(id_b.as_str()), Some(2))
    );

    // Restored by B at the planned end (`hold` after the isolation), never later than 40 s past it.
    for id in ["web-a", "api-a"] {
        assert!(
            fleet.wait_state(id, 'S', (hold + 50).saturating_sub(isolated.elapsed().as_secs())),
            "{id} not restored:\n{}",
            b.log()
        );
    }
    let took = isolated.elapsed();
    assert!(
        took >= Duration::from_secs(hold - 5) && took < Duration::from_secs(hold + 40),
        "restored after {took:?}"
    );
    let hist = json(&simian(&["history", "--policy", p(&pol_a), "--since", "1h", "--format", "json"]));
    let restores: Vec<String> = hist
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "restore" && f["outcome"] == "done")
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(restores.len(), 2, "{hist:#}");
    for m in &restores {
        assert!(m.contains(&format!("by agent {id_b} (taken over from {id_a})")), "{m}");
    }
}

#[test]
fn three_daemons_on_one_store_run_each_fire_once_and_kill_once_per_group() {
    three_daemons_case(TestStore::Sqlite);
}

#[test]
fn on_postgres_three_daemons_run_each_fire_once_kill_once_per_group_and_deliver_once() {
    three_daemons_case(TestStore::postgres());
}

fn three_daemons_case(store: TestStore) {
    const GROUPS3: &[Spec] = &[
        ("web-1", "web", "a", true),
        ("web-2", "web", "b", true),
        ("api-1", "api", "a", true),
        ("api-2", "api", "b", true),
        ("jobs-1", "jobs", "a", true),
        ("jobs-2", "jobs", "b", true),
    ];
    let mut fleet = Fleet::start(GROUPS3);
    let rx = Receiver::start();
    let pol = fleet.write_policy(
        GROUPS3,
        // The daemons get the receiver's URL; `simian agents` (same policy) needs none.
        &format!(
            "name: lab\n{}sinks:\n  - type: log\n  - {{ type: webhook, url: \"${{SIMIAN_WEBHOOK_URL:-http://127.0.0.1:9/}}\" }}\n",
            store.policy_line()
        ),
        "    probability: 1.0\n    min_time_between_kills: 1h\n",
        KILL,
    );
    // All three must be up before the first fire they are counted on: start them early in a minute.
    if secs_to_next_minute() < 20 {
        std::thread::sleep(Duration::from_secs(secs_to_next_minute() + 1));
    }
    let daemons: Vec<Daemon> = (0..3).map(|_| Daemon::start(&pol, &rx)).collect();
    assert_eq!(agents(&pol).len(), 3);
    // Two fires: the first kills one instance per group, the second none (1 h between kills).
    let fired = |d: &[Daemon]| d.iter().map(|d| d.log().matches("firing").count()).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(secs_to_next_minute() + 75);
    while fired(&daemons) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
    assert_eq!(fired(&daemons), 2, "two fires, each run once:\n{}", logs.join("\n----\n"));
    let taken: usize = logs.iter().map(|l| l.matches("this fire was taken by another agent").count()).sum();
    assert_eq!(taken, 4, "the other two agents stood back at each fire:\n{}", logs.join("\n----\n"));
    let dead: Vec<&str> = GROUPS3.iter().map(|s| s.0).filter(|id| fleet.dead(id)).collect();
    let groups: std::collections::BTreeSet<&str> =
        dead.iter().map(|id| id.split('-').next().unwrap()).collect();
    assert_eq!((dead.len(), groups.len()), (3, 3), "one kill per group: {dead:?}");
    // In the store: two fires, each claimed by one agent and run as one round.
    let fires = store.count(fleet.dir.path(), "SELECT COUNT(*) FROM fires WHERE monkey = 'chaos'");
    let runs = store.count(fleet.dir.path(), "SELECT COUNT(*) FROM runs");
    assert_eq!((fires, runs), (2, 2));
    // The shared outbox: every finding reached the webhook exactly once, whichever agent delivered it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = || -> Vec<(String, String)> {
        rx.requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .flat_map(|m| {
                let run = m["report"]["run_id"].as_str().unwrap_or_default().to_string();
                let findings = m["report"]["findings"].as_array().cloned().unwrap_or_default();
                findings.into_iter().map(move |f| (run.clone(), f.to_string()))
            })
            .collect()
    };
    let kills = |d: &[(String, String)]| {
        d.iter().filter(|(_, f)| f.contains("\"terminate\"") && f.contains("\"done\"")).count()
    };
    while kills(&delivered()) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = delivered();
    let unique: std::collections::BTreeSet<&(String, String)> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a finding was delivered twice: {all:#?}");
    assert_eq!(kills(&all), 3, "{all:#?}");
    let runs: std::collections::BTreeSet<&str> = all.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(runs.len(), 2, "both rounds reported: {runs:?}");
}

#[test]
fn with_its_store_unreachable_the_daemon_says_so_and_fires_nothing_until_it_is_back() {
    let mut fleet = Fleet::start(SPEC);
    let rx = Receiver::start();
    let pol = fleet.write_policy(SPEC, "name: lab\n", "    probability: 1.0\n", KILL);
    // The store must break before the first fire: start early in a minute.
    if secs_to_next_minute() < 20 {
        std::thread::sleep(Duration::from_secs(secs_to_next_minute() + 1));
    }
    let d = Daemon::start(&pol, &rx);
    let (status, body) = d.get("/healthz");
    assert_eq!(status, 200);
    assert!(body.contains("\nstore: up\n"), "{body}");

    // The store's file becomes a folder: nothing can open it.
    let db = fleet.dir.path().join("simian.db");
    let aside = fleet.dir.path().join("simian.db.aside");
    std::fs::rename(&db, &aside).unwrap();
    std::fs::create_dir(&db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.get("/healthz").1.contains("store: down since") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = d.get("/healthz");
    assert_eq!(status, 200, "a down store is reported, not a reason to restart the daemon: {body}");
    assert!(body.contains("store: down since"), "{body}");
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("\nsimian_store_up 0\n"), "{metrics}");
    // The next fire cannot be claimed: nothing is killed.
    assert!(d.wait_log("not firing", secs_to_next_minute() + 15), "{}", d.log());
    for (id, ..) in SPEC {
        assert!(fleet.alive(id), "{id} killed while the store was down");
    }

    std::fs::remove_dir(&db).unwrap();
    std::fs::rename(&aside, &db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.get("/healthz").1.contains("\nstore: up\n") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.get("/healthz").1.contains("\nstore: up\n"), "{}", d.log());
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("\nsimian_store_up 1\n"), "{metrics}");
}

#[test]
fn with_postgres_stopped_mid_hold_the_owner_restores_on_time_acts_no_more_and_records_it_when_back() {
    let store = TestStore::postgres();
    let TestStore::Postgres(pg) = &store else { unreachable!() };
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let pol = fleet.write_policy_with(
        ZONED_PAIRS,
        &format!("name: lab\n{}sinks:\n  - type: log\n", store.policy_line()),
        ISOLATE_BY_SIGNAL,
        "  gorilla:\n    schedule: \"* * * * *\"\n    zone: a\n    action: isolate\n    duration: 40s\n",
    );
    if secs_to_next_minute() < 20 {
        std::thread::sleep(Duration::from_secs(secs_to_next_minute() + 1));
    }
    let mut d = Daemon::start(&pol, &rx);
    assert!(fleet.wait_state("web-a", 'T', secs_to_next_minute() + 15), "no fire:\n{}", d.log());
    assert!(fleet.wait_state("api-a", 'T', 5));
    let isolated = Instant::now();

    // PostgreSQL goes away mid-hold.
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d.get("/healthz").1.contains("store: down since") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.get("/healthz").1.contains("store: down since"), "{}", d.log());
    // The owner restores at the planned end from what it holds in memory.
    for id in ["web-a", "api-a"] {
        assert!(fleet.wait_state(id, 'S', 60), "{id} not restored with the store down:\n{}", d.log());
    }
    let took = isolated.elapsed();
    assert!(took >= Duration::from_secs(35) && took < Duration::from_secs(50), "restored after {took:?}");
    // The next fire cannot be claimed: nothing is isolated while the store is down.
    assert!(d.wait_log("not firing", secs_to_next_minute() + 15), "{}", d.log());
    std::thread::sleep(Duration::from_secs(3));
    for (id, ..) in ZONED_PAIRS {
        assert_ne!(fleet.state(id), 'T', "{id} isolated while the store was down:\n{}", d.log());
    }

    // Back: the revert and the round's findings made meanwhile are recorded; no fault is left open.
    pg.start_again();
    assert!(d.wait_log("recorded what was done while the store was down", 20), "{}", d.log());
    assert!(d.get("/healthz").1.contains("\nstore: up\n"), "{}", d.log());
    assert_eq!(store.count(fleet.dir.path(), "SELECT COUNT(*) FROM faults WHERE state <> 'reverted'"), 0);
    assert_eq!(store.count(fleet.dir.path(), "SELECT COUNT(*) FROM faults WHERE state = 'reverted'"), 2);
    let hist = json(&simian(&["history", "--policy", p(&pol), "--since", "1h", "--format", "json"]));
    let restores = hist
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "restore" && f["outcome"] == "done")
        .count();
    assert_eq!(restores, 2, "{hist:#}");
    d.signal("-TERM");
    let (code, _) = d.wait_exit(30);
    assert_eq!(code, Some(0), "{}", d.log());
}
