//! End-to-end: the real `simian` binary against real local processes (`sleep` children this test starts).
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

use std::path::Path;
use std::process::Command;

mod common;

use common::*;

#[test]
fn live_run_kills_one_eligible_process_per_group_and_records_it() {
    let mut fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(SPEC, "", "    probability: 1.0\n", KILL);
    let out = simian(&["run", "--policy", p(&pol), "--seed", "7", "--format", "json"]);
    assert_ok(&out);
    let r = json(&out);
    assert_eq!(r["mode"], "live");
    assert_eq!(r["seed"], 7);
    let k = killed(&r);
    assert_eq!(k.len(), 2, "{r:#}");
    assert!(k.iter().any(|i| i.starts_with("web-")) && k.iter().any(|i| i.starts_with("api-")));
    for id in ["web-1", "web-2", "api-1", "api-2"] {
        if k.contains(&id.to_string()) {
            assert!(fleet.dead(id), "{id} should be dead");
        } else {
            assert!(fleet.alive(id), "{id} should be alive");
        }
    }
    assert!(fleet.alive("db-1") && fleet.alive("db-2"), "not opted in: untouched");

    let h = simian(&["history", "--policy", p(&pol), "--format", "json"]);
    assert_eq!(h.status.code(), Some(0));
    let rows = json(&h);
    let done: Vec<_> = rows.as_array().unwrap().iter().filter(|f| f["outcome"] == "done").collect();
    assert_eq!(done.len(), 2);
    for f in done {
        assert_eq!(f["run_id"], r["run_id"]);
        assert_eq!(f["mode"], "live");
        assert!(f["at"].as_str().unwrap().contains('T'));
    }
    let text = simian(&["history", "--policy", p(&pol)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("terminate"));

    // A second run within min_time_between_kills (default none here) would kill again; with a 1d minimum it must not.
    let pol = fleet.write_policy(SPEC, "", "    probability: 1.0\n    min_time_between_kills: 1d\n", KILL);
    let again = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert!(killed(&again).is_empty(), "{again:#}");
    assert!(again["findings"].to_string().contains("min_time_between_kills"));
}

#[test]
fn dry_run_and_plan_change_nothing_and_same_seed_replays() {
    let mut fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(SPEC, "", "    probability: 0.5\n", KILL);
    let a = json(&simian(&["plan", "--policy", p(&pol), "--seed", "99", "--format", "json"]));
    let b = json(&simian(&["run", "--dry-run", "--policy", p(&pol), "--seed", "99", "--format", "json"]));
    assert_eq!(a["mode"], "dry-run");
    assert_eq!(a["findings"], b["findings"], "same seed, same decisions");
    assert!(a["findings"].as_array().unwrap().iter().all(|f| f["outcome"] != "done"));
    for (id, ..) in SPEC {
        assert!(fleet.alive(id), "{id} must survive a dry run");
    }
    // Across 40 seeds at p=0.5 both outcomes must occur (the seed really drives the decision).
    let planned: Vec<usize> = (0..40)
        .map(|s| {
            let r =
                json(&simian(&["plan", "--policy", p(&pol), "--seed", &s.to_string(), "--format", "json"]));
            r["findings"].as_array().unwrap().iter().filter(|f| f["outcome"] == "planned").count()
        })
        .collect();
    assert!(planned.contains(&0) || planned.contains(&1));
    assert!(planned.contains(&2));
}

#[test]
fn policy_mode_dry_run_is_the_default() {
    let mut fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(SPEC, "", "", KILL);
    let text = std::fs::read_to_string(&pol).unwrap().replace("mode: live\n", "");
    std::fs::write(&pol, text).unwrap();
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(r["mode"], "dry-run");
    assert_eq!(r["findings"].as_array().unwrap().iter().filter(|f| f["outcome"] == "planned").count(), 2);
    for (id, ..) in SPEC {
        assert!(fleet.alive(id));
    }
}

#[test]
fn guards_refuse_with_skipped_findings() {
    let mut fleet = Fleet::start(SPEC);
    // Kill switch present: nothing changes.
    let ks = fleet.dir.path().join("STOP");
    std::fs::write(&ks, "").unwrap();
    let pol = fleet.write_policy(SPEC, &format!("kill_switch: {}\n", ks.display()), "", KILL);
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    let f = &r["findings"][0];
    assert_eq!(f["outcome"], "skipped");
    assert!(f["instance"].is_null());
    assert!(f["message"].as_str().unwrap().contains("kill switch"), "{f}");
    // Disabled policy.
    let pol = fleet.write_policy(SPEC, "enabled: false\n", "", KILL);
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert!(r["findings"][0]["message"].as_str().unwrap().contains("enabled: false"));
    // Outside the calendar (a holiday today, in UTC) unless --ignore-calendar.
    let today = chrono::Utc::now().date_naive();
    let cal = format!("calendar:\n  holidays: [{today}, {}]\n", today.succ_opt().unwrap());
    let pol = fleet.write_policy(SPEC, &cal, "", KILL);
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json"]));
    assert_eq!(r["findings"][0]["outcome"], "skipped", "{r:#}");
    assert!(killed(&r).is_empty());
    // Excluded by tag: opted in but exempt.
    for (id, ..) in SPEC {
        assert!(fleet.alive(id));
    }
    let r = json(&simian(&["run", "--policy", p(&pol), "--ignore-calendar", "--format", "json"]));
    assert_eq!(killed(&r).len(), 2, "{r:#}");
}

#[test]
fn exclusions_win_over_opt_in() {
    let mut fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(SPEC, "exclude:\n  groups: [\"we*\"]\n", "", KILL);
    let r = json(&simian(&["run", "--policy", p(&pol), "--format", "json", "--seed", "3"]));
    let k = killed(&r);
    assert_eq!(k.len(), 1, "{r:#}");
    assert!(k[0].starts_with("api-"));
    assert!(fleet.alive("web-1") && fleet.alive("web-2"));
    let skipped: Vec<_> = r["findings"].as_array().unwrap().iter().filter(|f| f["group"] == "web").collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped
        .iter()
        .all(|f| f["outcome"] == "skipped" && f["message"].as_str().unwrap().contains("excluded")));
}

#[test]
fn failed_action_exits_1_with_stderr_in_message() {
    let fleet = Fleet::start(SPEC);
    let pol = fleet.write_policy(
        SPEC,
        "",
        "    max_kills_per_run: 1\n",
        "[\"sh\", \"-c\", \"echo no such victim >&2; exit 3\"]",
    );
    let out = simian(&["run", "--policy", p(&pol), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    let failed: Vec<_> =
        r["findings"].as_array().unwrap().iter().filter(|f| f["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1, "max_kills_per_run 1: {r:#}");
    assert!(failed[0]["message"].as_str().unwrap().contains("no such victim"), "{}", failed[0]);
    assert!(r["findings"].to_string().contains("max_kills_per_run (1) reached"));
}

#[test]
fn concurrent_runs_respect_min_time_between_kills() {
    let spec: &[Spec] = &[("w1", "web", "a", true), ("w2", "web", "b", true), ("w3", "web", "c", true)];
    let mut fleet = Fleet::start(spec);
    let pol = fleet.write_policy(spec, "", "    min_time_between_kills: 1d\n", KILL);
    let children: Vec<_> = (0..4).map(|_| spawn_run(&pol)).collect();
    let total: usize =
        children.into_iter().map(|c| killed(&json(&c.wait_with_output().unwrap())).len()).sum();
    assert_eq!(total, 1, "four racing runs, one group, 1d minimum: exactly one kill");
    let dead = ["w1", "w2", "w3"].iter().filter(|id| fleet.dead(id)).count();
    assert_eq!(dead, 1);
}

#[test]
fn validate_reports_every_error_with_location_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("bad.yaml");
    std::fs::write(
        &pol,
        "version: 1\ntimezone: America/Los_Angles\ntargets:\n  - name: lab\n    type: hosts\n    hosts: []\nmonkeys:\n  chaos:\n    schedule: \"*/5 * * *\"\n    probability: 1.5\n",
    )
    .unwrap();
    let out = simian(&["validate", "--policy", p(&pol)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:2:"), "{err}");
    assert!(err.contains("America/Los_Angeles"), "hint: {err}");
    assert!(err.contains("bad.yaml:9:"), "{err}");
    assert!(err.contains("bad.yaml:10:"), "{err}");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/hosts.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(["validate", "--policy", p(&good)])
        .env("SIMIAN_STATE", dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    // Missing file and bad arguments are also exit 2.
    assert_eq!(simian(&["validate", "--policy", "/nonexistent/simian.yaml"]).status.code(), Some(2));
    assert_eq!(simian(&["run", "--bogus"]).status.code(), Some(2));
}

#[test]
fn schedule_lists_fires_in_the_policy_timezone() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("s.yaml");
    std::fs::write(
        &pol,
        "version: 1\ntimezone: America/Los_Angeles\ncalendar:\n  days: [mon, tue, wed, thu, fri]\nmonkeys:\n  chaos:\n    schedule: \"0 10 * * mon-fri\"\n",
    )
    .unwrap();
    let out = simian(&[
        "schedule",
        "--policy",
        p(&pol),
        "--from",
        "2026-03-06T00:00:00Z",
        "--count",
        "3",
        "--format",
        "json",
    ]);
    assert_ok(&out);
    let v = json(&out);
    let at: Vec<_> = v.as_array().unwrap().iter().map(|e| e["at"].as_str().unwrap().to_string()).collect();
    // Friday before DST (PST), then Monday and Tuesday after spring-forward (PDT).
    assert_eq!(at, ["2026-03-06T10:00:00-08:00", "2026-03-09T10:00:00-07:00", "2026-03-10T10:00:00-07:00"]);
    assert_eq!(v[0]["monkey"], "chaos");
}

#[test]
fn demo_runs_end_to_end() {
    let out = simian(&["demo", "--seed", "1", "--keep"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // Checked from what the demo kept, not from its own verdict: the fleet it printed (id, group, pid,
    // opt-in) and the store it wrote.
    let members: Vec<(String, String, u32, String)> = stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" pid "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let note =
                l.rsplit_once('(').map(|(_, n)| n.trim_end_matches(')').to_string()).unwrap_or_default();
            (w[0].to_string(), w[2].to_string(), w[6].parse().unwrap(), note)
        })
        .collect();
    assert_eq!(members.len(), 9, "{stdout}");
    let kept = stdout.lines().find_map(|l| l.strip_prefix("kept ")).expect("--keep names the folder");
    let policy = std::path::Path::new(kept).join("simian.yaml");
    let history = json(&simian(&["history", "--policy", p(&policy), "--format", "json"]));
    let done: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "terminate" && f["outcome"] == "done")
        .collect();
    let mut groups: Vec<&str> = done.iter().map(|f| f["group"].as_str().unwrap()).collect();
    groups.sort();
    assert_eq!(groups, ["api", "web"], "one kill per opted-in group: {history}");
    for f in &done {
        let id = f["instance"].as_str().unwrap();
        let (_, _, pid, note) = members.iter().find(|m| m.0 == id).expect("a demo member");
        assert_eq!(note, "opted in", "{id} was eligible");
        // The command that ran killed that member's own process.
        assert!(f["message"].as_str().unwrap().contains(&format!("kill -TERM {pid}`")), "{f}");
    }
    let audit = std::fs::read_to_string(std::path::Path::new(kept).join("findings.jsonl")).unwrap();
    assert_eq!(
        audit.lines().count(),
        history.as_array().unwrap().len(),
        "the jsonl audit trail has every finding"
    );
    // The demo cleans up: none of its processes outlives it.
    for (id, _, pid, _) in &members {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{id} (pid {pid}) still runs");
    }
    std::fs::remove_dir_all(kept).unwrap();
}

#[test]
fn mean_time_between_kills_sets_the_probability_from_the_schedule() {
    let fleet = Fleet::start(SPEC);
    // Fires every minute, mean 4 minutes between kills: p = 0.25 per group per run.
    let pol = fleet.write_policy(SPEC, "", "    mean_time_between_kills: 4m\n", KILL);
    let mut chosen = 0;
    let runs = 60;
    for seed in 0..runs {
        let r =
            json(&simian(&["plan", "--policy", p(&pol), "--seed", &seed.to_string(), "--format", "json"]));
        let f = r["findings"].as_array().unwrap();
        chosen += f.iter().filter(|f| f["outcome"] == "planned").count();
        for s in f.iter().filter(|f| f["outcome"] == "skipped") {
            assert!(s["message"].as_str().unwrap().contains("probability 0.250"), "{s}");
        }
    }
    // 120 group-draws at p = 0.25: mean 30, and 10..=50 holds with overwhelming probability.
    assert!((10..=50).contains(&chosen), "chosen {chosen} of {}", 2 * runs);
}
