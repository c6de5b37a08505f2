//! The engine's contract end to end, against the real binary, real processes and a real loopback receiver:
//! findings reach the sinks while a fault is held, nothing is lost when simian is SIGKILLed with a sink
//! down, and the one gate refuses the next action of a round the moment the policy (or the kill switch)
//! says so — for every acting monkey that works on `hosts`.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use testkit::receiver::Receiver;

/// Three zone-`a` members in three groups, each with a twin in zone `b` (so no group is lost whole).
const ZONED: &[Spec] = &[
    ("web-a", "web", "a", true),
    ("api-a", "api", "a", true),
    ("job-a", "job", "a", true),
    ("web-b", "web", "b", true),
    ("api-b", "api", "b", true),
    ("job-b", "job", "b", true),
];

/// One opted-in member in each of three groups.
const THREE: &[Spec] =
    &[("web-1", "web", "a", true), ("api-1", "api", "a", true), ("job-1", "job", "a", true)];

fn webhook(rx: &Receiver) -> String {
    format!("sinks:\n  - {{ type: webhook, url: \"{}\" }}\n", rx.url("/hook"))
}

/// Every finding the receiver got (200-answered requests only), with its delivery id.
fn delivered(rx: &Receiver) -> Vec<(String, Value)> {
    rx.requests()
        .iter()
        .filter(|r| r.path == "/hook")
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let id = r.header("X-Simian-Delivery").unwrap_or_default().to_string();
            let run = body["report"]["run_id"].clone();
            body["report"]["findings"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |f| (id.clone(), key(&run, &f)))
        })
        .collect()
}

/// What identifies a finding across the webhook body and `simian history --format json`.
fn key(run: &Value, f: &Value) -> Value {
    serde_json::json!([run, f["monkey"], f["action"], f["outcome"], f["instance"], f["group"], f["message"]])
}

fn kill(sig: &str, pid: u32) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

#[test]
fn a_held_isolation_reaches_the_webhook_while_held_and_the_restore_when_it_ends() {
    let rx = Receiver::start();
    let fleet = Fleet::start(ZONED);
    let target = "    isolate: [\"kill\", \"-STOP\", \"{tag:pid}\"]\n    restore: [\"kill\", \"-CONT\", \"{tag:pid}\"]\n";
    let monkeys = "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    duration: 30m\n";
    let pol = fleet.write_policy_with(ZONED, &webhook(&rx), target, monkeys);
    let mut child = spawn_run(&pol);
    assert!(fleet.wait_state("job-a", 'T', 10), "the zone is cut");
    assert!(rx.wait_for(1, Duration::from_secs(10)), "chat hears of the cut within 10 s, while it is held");
    assert!(child.try_wait().unwrap().is_none(), "simian still holds the zone");
    let first: Value = serde_json::from_slice(&rx.requests()[0].body).unwrap();
    let isolated: Vec<&str> = first["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "isolate" && f["outcome"] == "done")
        .map(|f| f["instance"].as_str().unwrap())
        .collect();
    assert_eq!(isolated, ["api-a", "job-a", "web-a"], "{first}");
    let cut = first["report"]["findings"].as_array().unwrap().iter().any(|f| {
        f["action"] == "run"
            && f["zone"] == "a"
            && f["message"].as_str().unwrap().starts_with("isolated zone a: 3 instance(s) until")
    });
    assert!(cut, "chat's first message says the zone is cut: {first}");
    kill("-TERM", child.id());
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let bodies: Vec<Value> = rx.requests().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    let restored: usize = bodies[1..]
        .iter()
        .flat_map(|b| b["report"]["findings"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["action"] == "restore" && f["outcome"] == "done")
        .count();
    assert_eq!(restored, 3, "the restore reaches the webhook too: {bodies:?}");
    for id in ["web-a", "api-a", "job-a"] {
        assert!(fleet.wait_state(id, 'S', 5), "{id} runs again");
    }
}

#[test]
fn sigkill_during_a_hold_with_the_sink_down_loses_no_finding_and_sends_none_twice() {
    let rx = Receiver::start();
    rx.set_status(503);
    let fleet = Fleet::start(ZONED);
    let target = "    isolate: [\"kill\", \"-STOP\", \"{tag:pid}\"]\n    restore: [\"kill\", \"-CONT\", \"{tag:pid}\"]\n";
    let monkeys = "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    duration: 30m\n";
    let pol = fleet.write_policy_with(ZONED, &webhook(&rx), target, monkeys);
    let child = spawn_run(&pol);
    assert!(fleet.wait_state("job-a", 'T', 10));
    assert!(rx.wait_for(1, Duration::from_secs(10)), "the flush before the hold tried the (down) sink");
    kill("-KILL", child.id());
    let _ = child.wait_with_output();
    // The sink comes back; only what it accepts from now on counts.
    rx.set_status(200);
    rx.clear();
    let out = simian(&["revert", "--policy", p(&pol), "--format", "json"]);
    assert_ok(&out);
    for id in ["web-a", "api-a", "job-a"] {
        assert!(fleet.wait_state(id, 'S', 5), "{id} restored by `simian revert`");
    }
    let out = simian(&["outbox", "--policy", p(&pol), "--flush"]);
    assert_ok(&out);
    let got = delivered(&rx);
    let ids: Vec<&String> = {
        let mut by_id: BTreeMap<&String, usize> = BTreeMap::new();
        for (id, _) in &got {
            *by_id.entry(id).or_default() += 1;
        }
        by_id.keys().copied().collect()
    };
    let requests = rx.requests().iter().filter(|r| r.path == "/hook").count();
    assert_eq!(ids.len(), requests, "every delivery id once: {ids:?}");
    let mut sent: Vec<Value> = got.into_iter().map(|(_, k)| k).collect();
    let history = json(&simian(&["history", "--policy", p(&pol), "--format", "json"]));
    let mut stored: Vec<Value> = history.as_array().unwrap().iter().map(|f| key(&f["run_id"], f)).collect();
    sent.sort_by_key(|v| v.to_string());
    stored.sort_by_key(|v| v.to_string());
    assert_eq!(sent, stored, "delivered = history, none twice");
    let isolates = stored.iter().filter(|k| k[2] == "isolate" && k[3] == "done").count();
    assert_eq!(isolates, 3, "the killed run's isolations are there: {stored:?}");
}

/// What the first action's command does to the world before the second action is asked for.
#[derive(Clone, Copy, Debug)]
enum Edit {
    KillSwitch,
    Disabled,
    DryRun,
    Excluded,
}

impl Edit {
    const ALL: [Edit; 4] = [Edit::KillSwitch, Edit::Disabled, Edit::DryRun, Edit::Excluded];

    /// A shell fragment (run by the target's command, after its own action) that makes the edit.
    fn script(self, policy: &str, dir: &str) -> String {
        match self {
            Edit::KillSwitch => format!("touch {dir}/STOP"),
            Edit::Disabled => format!("sed -i 's/^enabled: true$/enabled: false/' {policy}"),
            Edit::DryRun => format!("sed -i 's/^mode: live$/mode: dry-run/' {policy}"),
            // A new exemption tag on every host: the gate reads tags from the fresh policy.
            Edit::Excluded => {
                format!("sed -i '/^      - /s/pid: /\"simian:exempt\": \"true\", pid: /' {policy}")
            }
        }
    }

    /// What the refusal must name.
    fn reason(self) -> &'static str {
        match self {
            Edit::KillSwitch => "kill switch",
            Edit::Disabled => "enabled: false",
            Edit::DryRun => "no longer in live mode",
            Edit::Excluded => "excluded by tag simian:exempt=true",
        }
    }
}

/// The policy's top: a kill switch path, an explicit `enabled: true` and the exemption rule to edit.
fn top(dir: &str) -> String {
    format!("enabled: true\nkill_switch: {dir}/STOP\nexclude:\n  tags: {{ \"simian:exempt\": \"true\" }}\n")
}

/// An argv template whose command acts on the host, then makes `edit`.
fn acting(verb: &str, edit: Edit, policy: &str, dir: &str) -> String {
    format!(
        "[\"sh\", \"-c\", \"kill {verb} \\\"$1\\\"; {}\", \"sh\", \"{{tag:pid}}\"]",
        edit.script(policy, dir).replace('"', "\\\"")
    )
}

/// Runs a round whose first action makes the edit its target command holds; returns the report.
fn round_with_edit(spec: &[Spec], target: impl Fn(&str, &str) -> String, monkeys: &str) -> (Fleet, Value) {
    let fleet = Fleet::start(spec);
    let dir = fleet.dir.path().to_str().unwrap().to_string();
    let pol = fleet.dir.path().join("simian.yaml");
    let pol = fleet.write_policy_with(spec, &top(&dir), &target(p(&pol), &dir), monkeys);
    let out = simian(&["run", "--policy", p(&pol), "--format", "json", "--seed", "7"]);
    assert!(out.status.code().is_some(), "{out:?}");
    (fleet, json(&out))
}

fn assert_one_then_refused(r: &Value, action: &str, edit: Edit) {
    let done = of(r, action, "done");
    assert_eq!(done.len(), 1, "{edit:?}: exactly the first {action} happens: {r}");
    let refused: Vec<&Value> =
        of(r, action, "skipped").into_iter().filter(|f| f["instance"].is_string()).collect();
    assert_eq!(refused.len(), 2, "{edit:?}: the next two are refused: {r}");
    for f in refused {
        let msg = f["message"].as_str().unwrap();
        assert!(msg.contains(edit.reason()), "{edit:?}: `{msg}` names `{}`", edit.reason());
    }
}

#[test]
fn the_gate_refuses_the_next_chaos_kill_after_an_edit_made_during_the_first() {
    let spec = THREE;
    for edit in Edit::ALL {
        let (mut fleet, r) = round_with_edit(
            spec,
            |pol, dir| format!("    terminate: {}\n", acting("-TERM", edit, pol, dir)),
            "  chaos:\n    schedule: \"* * * * *\"\n",
        );
        assert_one_then_refused(&r, "terminate", edit);
        let alive = ["web-1", "api-1", "job-1"].iter().filter(|id| fleet.alive(id)).count();
        assert_eq!(alive, 2, "{edit:?}: only one process was killed");
    }
}

#[test]
fn the_gate_refuses_the_next_gorilla_isolation_and_termination_after_an_edit() {
    for edit in Edit::ALL {
        let (fleet, r) = round_with_edit(
            ZONED,
            |pol, dir| {
                format!(
                    "    isolate: {}\n    restore: [\"kill\", \"-CONT\", \"{{tag:pid}}\"]\n",
                    acting("-STOP", edit, pol, dir)
                )
            },
            "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    duration: 1s\n",
        );
        assert_one_then_refused(&r, "isolate", edit);
        assert_eq!(of(&r, "restore", "done").len(), 1, "{edit:?}: the one isolation is restored: {r}");
        for id in ["web-a", "api-a", "job-a"] {
            assert!(fleet.wait_state(id, 'S', 5), "{edit:?}: {id} runs");
        }
    }
    for edit in [Edit::KillSwitch, Edit::Excluded] {
        let (mut fleet, r) = round_with_edit(
            ZONED,
            |pol, dir| format!("    terminate: {}\n", acting("-TERM", edit, pol, dir)),
            "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    action: terminate\n",
        );
        assert_one_then_refused(&r, "terminate", edit);
        let alive = ["web-a", "api-a", "job-a"].iter().filter(|id| fleet.alive(id)).count();
        assert_eq!(alive, 2, "{edit:?}: only one zone-a process was killed");
    }
}

/// Doctor: three instances whose health endpoint is down (a closed loopback port) turn unhealthy at once.
fn doctor(extra: &str) -> String {
    format!(
        "  doctor:\n    schedule: \"* * * * *\"\n    url: \"http://127.0.0.1:9/health\"\n    timeout: 1s\n    failures_before_unhealthy: 1\n    remediate: terminate\n{extra}"
    )
}

#[test]
fn the_gate_refuses_the_next_doctor_remediation_after_an_edit() {
    let spec = THREE;
    for edit in Edit::ALL {
        let (mut fleet, r) = round_with_edit(
            spec,
            |pol, dir| format!("    terminate: {}\n", acting("-TERM", edit, pol, dir)),
            &doctor(""),
        );
        assert_one_then_refused(&r, "terminate", edit);
        let alive = ["web-1", "api-1", "job-1"].iter().filter(|id| fleet.alive(id)).count();
        assert_eq!(alive, 2, "{edit:?}: only one unhealthy process was remediated");
    }
}

#[test]
fn doctor_remediation_honours_max_kills_per_run_inside_its_own_round() {
    let spec = THREE;
    let mut fleet = Fleet::start(spec);
    let monkeys = format!("{}  chaos:\n    schedule: \"0 0 1 1 *\"\n    max_kills_per_run: 1\n", doctor(""));
    let pol = fleet.write_policy_with(spec, "", &format!("    terminate: {KILL}\n"), &monkeys);
    let out = simian(&["run", "--policy", p(&pol), "--monkey", "doctor", "--format", "json"]);
    let r = json(&out);
    assert_eq!(of(&r, "unhealthy", "done").len(), 3, "{r}");
    assert_eq!(of(&r, "terminate", "done").len(), 1, "one shared outage never takes the whole service: {r}");
    let limited = of(&r, "terminate", "skipped");
    assert_eq!(limited.len(), 2, "{r}");
    assert!(limited.iter().all(|f| f["message"].as_str().unwrap().contains("max_kills_per_run (1) reached")));
    let alive = ["web-1", "api-1", "job-1"].iter().filter(|id| fleet.alive(id)).count();
    assert_eq!(alive, 2);
}

#[test]
fn sigterm_during_the_first_slow_kill_stops_the_others() {
    let spec = THREE;
    let mut fleet = Fleet::start(spec);
    let dir = fleet.dir.path().to_str().unwrap().to_string();
    // Each kill announces itself with a marker file, then takes 2 s.
    let term = format!(
        "[\"sh\", \"-c\", \"touch {dir}/started; kill -TERM \\\"$1\\\"; sleep 2\", \"sh\", \"{{tag:pid}}\"]"
    );
    let pol = fleet.write_policy(spec, "", "", &term);
    let child = spawn_run(&pol);
    let marker = fleet.dir.path().join("started");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(marker.exists(), "the first kill started");
    kill("-TERM", child.id());
    let out = child.wait_with_output().unwrap();
    let r = json(&out);
    assert_eq!(of(&r, "terminate", "done").len(), 1, "{r}");
    let refused = of(&r, "terminate", "skipped");
    assert_eq!(refused.len(), 2, "{r}");
    assert!(refused.iter().all(|f| f["message"].as_str().unwrap().contains("shutting down")));
    let alive = ["web-1", "api-1", "job-1"].iter().filter(|id| fleet.alive(id)).count();
    assert_eq!(alive, 2);
}

/// A SIGKILL while a round prunes what is past `retention` loses nothing that must stay: each batch commits
/// on its own, so the store stays whole, every recent finding is still there, and the next round finishes.
#[test]
fn sigkill_during_the_prune_keeps_the_store_whole() {
    let fleet = Fleet::start(THREE);
    let db = fleet.dir.path().join("simian.db");
    let pol = fleet.write_policy(
        THREE,
        &format!("store: {}\n", db.display()),
        "    probability: 1.0\n",
        "[\"true\"]",
    );
    make_dry_run(&pol);
    for _ in 0..2 {
        assert_ok(&simian(&["run", "--policy", p(&pol)]));
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let ids = |c: &rusqlite::Connection, sql: &str| -> Vec<i64> {
        let mut st = c.prepare(sql).unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let recent = ids(&conn, "SELECT id FROM findings ORDER BY id");
    assert!(!recent.is_empty());
    // 300,000 findings of a run 200 days ago: all past the default retention (90d), none in the outbox.
    let old_ms = chrono::Utc::now().timestamp_millis() - 200 * 86_400_000;
    let tx = conn.unchecked_transaction().unwrap();
    // As simian writes them: the mode and fields copied from a recent finding, only older.
    tx.execute("INSERT INTO runs (id, seed, mode, started_ms, finished_ms) SELECT 'old', seed, mode, ?1, ?1 FROM runs LIMIT 1", [old_ms])
        .unwrap();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO findings (id, run_id, at_ms, mode, dry_run, monkey, action, outcome, target, instance, \
                 grp, zone, severity, message) SELECT ?1, 'old', ?2, mode, dry_run, monkey, action, outcome, target, \
                 instance, grp, zone, severity, message FROM findings WHERE id > 0 LIMIT 1",
            )
            .unwrap();
        for i in 1..=300_000i64 {
            ins.execute([-i, old_ms - i]).unwrap();
        }
    }
    tx.commit().unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT COUNT(*) FROM findings WHERE run_id = 'old'", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(count(&conn), 300_000);

    // The round prunes after its report; kill it as soon as the first batches are gone.
    let mut child = spawn_run(&pol);
    let left = loop {
        let n = count(&conn);
        if n < 300_000 {
            child.kill().unwrap();
            child.wait().unwrap();
            break count(&conn);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the round ended ({status}) before its prune was seen to start: {n} old findings left");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(left > 0 && left < 300_000, "killed mid-prune: {left} old findings left");
    eprintln!("killed mid-prune: {left} of 300,000 old findings left");
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let kept = ids(&conn, "SELECT id FROM findings WHERE id > 0 ORDER BY id");
    assert!(recent.iter().all(|id| kept.contains(id)), "recent findings lost: {recent:?} vs {kept:?}");
    let history = simian(&["history", "--policy", p(&pol), "--since", "1d", "--format", "json"]);
    assert_ok(&history);
    assert!(json(&history).as_array().unwrap().len() >= recent.len());

    // The next round finishes the prune and keeps everything recent.
    assert_ok(&simian(&["run", "--policy", p(&pol)]));
    assert_eq!(count(&conn), 0);
    let kept = ids(&conn, "SELECT id FROM findings WHERE id > 0 ORDER BY id");
    assert!(recent.iter().all(|id| kept.contains(id)));
}
