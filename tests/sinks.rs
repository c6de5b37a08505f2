//! End-to-end sinks: `simian run` delivering to a real HTTP receiver on loopback (Slack Block Kit and a
//! signed webhook), a jsonl audit file, the durable outbox across a receiver outage, the real Pushgateway,
//! and `simian announce`; secrets never in any output.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use testkit::receiver::Receiver;

const TOKEN: &str = "T0KEN-b7f3c9d2e1";
const HOOK_SECRET: &str = "s3cr3t-hmac-key-4711";

/// `simian` with the policy's secrets in the environment, as a deployment would set them.
fn simian_env(rx: &Receiver, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(args)
        .env("SLACK_WEBHOOK_URL", rx.url(&format!("/slack/{TOKEN}")))
        .env("SIMIAN_WEBHOOK_URL", rx.url(&format!("/hook/{TOKEN}")))
        .env("SIMIAN_HOOK_SECRET", HOOK_SECRET)
        .env("SIMIAN_LOG", "debug")
        .output()
        .unwrap()
}

fn sinks(dir: &Path) -> String {
    format!(
        "name: lab-staging\nsinks:\n  - type: log\n  - {{ type: jsonl, path: {} }}\n  - {{ type: slack, webhook_url: \"${{SLACK_WEBHOOK_URL}}\", min_severity: info, announce: 30m }}\n  - {{ type: webhook, url: \"${{SIMIAN_WEBHOOK_URL}}\", secret: \"${{SIMIAN_HOOK_SECRET}}\", headers: {{ X-Team: sre }} }}\n",
        dir.join("audit/findings.jsonl").display()
    )
}

/// A dry-run policy for the fleet with Chaos Monkey every minute and `top` (sinks, name, …) added.
fn chaos_policy(fleet: &Fleet, top: &str) -> std::path::PathBuf {
    let chaos = "  chaos:\n    schedule: \"* * * * *\"\n";
    let pol = fleet.write_policy_with(SPEC, top, &format!("    terminate: {KILL}\n"), chaos);
    make_dry_run(&pol);
    pol
}

/// The secrets must appear in no output line of simian.
fn assert_no_secrets(out: &Output) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains(TOKEN), "webhook URL token leaked to {name}:\n{text}");
        assert!(!text.contains(HOOK_SECRET), "HMAC secret leaked to {name}:\n{text}");
    }
}

fn by_path<'a>(rx: &'a [testkit::receiver::Recorded], prefix: &str) -> Vec<&'a testkit::receiver::Recorded> {
    rx.iter().filter(|r| r.path.starts_with(prefix)).collect()
}

fn outbox(rx: &Receiver, pol: &Path) -> Value {
    let out = simian_env(rx, &["outbox", "--policy", p(pol), "--format", "json"]);
    assert_ok(&out);
    assert_no_secrets(&out);
    json(&out)
}

#[test]
fn receiver_down_for_two_runs_then_up_gets_every_finding_exactly_once() {
    let fleet = Fleet::start(SPEC);
    let rx = Receiver::start();
    let pol = chaos_policy(&fleet, &sinks(fleet.dir.path()));
    rx.set_down(true);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let out = simian_env(&rx, &["run", "--policy", p(&pol), "--format", "json"]);
        assert_ok(&out);
        assert_no_secrets(&out);
        runs.push(json(&out));
    }
    // Both reports wait in the outbox for both HTTP sinks; the jsonl file had them at once.
    let pending = outbox(&rx, &pol);
    let rows = pending["pending"].as_array().unwrap();
    let mut per_sink: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        let n = per_sink.entry(r["sink"].as_str().unwrap()).or_default();
        // The oldest report was tried in both runs; the newer one waits behind it (chat keeps its order).
        let (attempts, error) = (r["attempts"].as_u64().unwrap(), r["last_error"].as_str());
        if *n == 0 {
            assert_eq!(attempts, 2, "{r}");
            assert!(error.is_some_and(|e| e.contains("not reached") && !e.contains(TOKEN)), "{r}");
        } else {
            assert_eq!((attempts, error), (0, None), "{r}");
        }
        *n += 1;
    }
    assert_eq!(per_sink, BTreeMap::from([("slack", 2), ("webhook", 2)]));
    assert!(rx.requests().is_empty());

    rx.set_down(false);
    let out = simian_env(&rx, &["run", "--policy", p(&pol), "--format", "json"]);
    assert_ok(&out);
    assert_no_secrets(&out);
    runs.push(json(&out));
    assert_eq!(outbox(&rx, &pol)["pending"].as_array().unwrap().len(), 0);

    let got = rx.requests();
    // Webhook: each report once, in run order, signed over the exact body.
    let hooks = by_path(&got, "/hook/");
    let ids: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    let hook_ids: Vec<String> = hooks
        .iter()
        .map(|h| {
            let body: Value = serde_json::from_slice(&h.body).unwrap();
            assert_eq!(body["kind"], "report");
            assert_eq!(body["policy"], "lab-staging");
            let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
            mac.update(&h.body);
            let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(h.header("x-simian-signature"), Some(want.as_str()));
            assert_eq!(h.header("x-team"), Some("sre"));
            assert_eq!(h.header("content-type"), Some("application/json"));
            body["report"]["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(hook_ids, ids);
    // Every finding of every run reached the webhook exactly once.
    let sent: usize = hooks
        .iter()
        .map(|h| {
            serde_json::from_slice::<Value>(&h.body).unwrap()["report"]["findings"].as_array().unwrap().len()
        })
        .sum();
    let made: usize = runs.iter().map(|r| r["findings"].as_array().unwrap().len()).sum();
    assert_eq!(sent, made);
    assert!(made >= 6, "two groups planned per run: {made}");

    // Slack: Block Kit with a header, one section per finding, a context naming the run; each run once.
    let slack = by_path(&got, "/slack/");
    let mut slack_runs = Vec::new();
    let mut sections = 0;
    for s in &slack {
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        let blocks = body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert_eq!(blocks[0]["type"], "header");
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(header.contains("chaos") && header.contains("dry-run"), "{header}");
        assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()), "text fallback for Mattermost");
        sections += blocks.iter().filter(|b| b["type"] == "section").count();
        let context = blocks.iter().find(|b| b["type"] == "context").expect("context block").to_string();
        let run = ids.iter().find(|id| context.contains(**id)).expect("context names the run id");
        slack_runs.push(*run);
    }
    assert_eq!(slack_runs, ids);
    assert_eq!(sections, made);

    // jsonl: every finding of every run, one line each.
    let lines = std::fs::read_to_string(fleet.dir.path().join("audit/findings.jsonl")).unwrap();
    let lines: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), made);
    assert!(lines.iter().all(|l| l["kind"] == "finding" && ids.contains(&l["run_id"].as_str().unwrap())));

    // A fourth run delivers only its own report: nothing is sent twice.
    let before = rx.requests().len();
    let out = simian_env(&rx, &["run", "--policy", p(&pol)]);
    assert_ok(&out);
    assert_eq!(rx.requests().len(), before + 2);
}

#[test]
fn slack_min_severity_filters_and_announce_posts_the_plan() {
    let fleet = Fleet::start(SPEC);
    let rx = Receiver::start();
    // A fixed-offset zone where it is about noon now, whatever the hour this test runs at: "the rest of
    // today" then always holds ~12 hours of per-minute fires. (Etc/GMT-N is UTC+N.)
    #[allow(clippy::disallowed_methods)] // picks the zone; the binary reads its own clock
    let hour = chrono::Timelike::hour(&chrono::Utc::now()) as i32;
    let offset = 12 - hour; // -11 ..= 12
    let tz = if offset >= 0 { format!("Etc/GMT-{offset}") } else { format!("Etc/GMT+{}", -offset) };
    let top = format!(
        "timezone: {tz}\nkill_switch: STOP\nsinks:\n  - {{ type: slack, webhook_url: \"${{SLACK_WEBHOOK_URL}}\", min_severity: warning, announce: 30m }}\n"
    );
    let pol = chaos_policy(&fleet, &top);
    // Dry-run findings are `info`: below the sink's minimum, so nothing is posted.
    let out = simian_env(&rx, &["run", "--policy", p(&pol)]);
    assert_ok(&out);
    assert!(rx.requests().is_empty(), "{:?}", rx.requests());
    assert_eq!(outbox(&rx, &pol)["pending"].as_array().unwrap().len(), 0);

    let out = simian_env(&rx, &["announce", "--policy", p(&pol)]);
    assert_ok(&out);
    assert_no_secrets(&out);
    assert!(rx.wait_for(1, Duration::from_secs(5)));
    let body: Value = serde_json::from_slice(&rx.requests()[0].body).unwrap();
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    let text = body.to_string();
    assert!(text.contains("plan"), "{text}");
    // Opted-in groups are named, the others never.
    assert!(text.contains("web") && text.contains("api"), "{text}");
    assert!(!text.contains("db"), "{text}");
    assert!(text.contains("STOP"), "the kill switch is how owners object: {text}");
}

#[test]
fn one_shot_run_pushes_cumulative_metrics_to_the_real_pushgateway() {
    let gw = testkit::pushgateway::Pushgateway::start();
    let fleet = Fleet::start(SPEC);
    let top = format!("name: lab/eu\nsinks:\n  - {{ type: prometheus, pushgateway: \"{}\" }}\n", gw.url());
    let pol = chaos_policy(&fleet, &top);
    let planned = |api: &Value| -> Option<f64> {
        let groups = api["data"].as_array()?;
        let g =
            groups.iter().find(|g| g["labels"]["job"] == "simian" && g["labels"]["instance"] == "lab/eu")?;
        let fam = g["simian_actions_total"]["metrics"].as_array()?;
        let m =
            fam.iter().find(|m| m["labels"]["monkey"] == "chaos" && m["labels"]["outcome"] == "planned")?;
        m["value"].as_str()?.parse().ok()
    };
    for want in [2.0, 4.0] {
        let out = simian(&["run", "--policy", p(&pol)]);
        assert_ok(&out);
        let api = gw.metrics_api();
        assert_eq!(planned(&api), Some(want), "{api}");
    }
}
