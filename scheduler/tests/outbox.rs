//! The outbox against a real HTTP receiver on loopback: a split Slack report resumes after the parts
//! already acknowledged, a sink in backoff waits unless forced or handed a fresh report, and the backlog
//! is delivered in order once the sink is back.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::Value;
use simian_monkeys::{Action, Finding, MonkeyName, Outcome, Report, Severity};
use simian_scheduler::clock::SystemClock;
use simian_scheduler::outbox::{deliver, enqueue, Urgency};
use simian_scheduler::store::Store;
use simian_sinks::http::Poster;
use simian_sinks::{Message, Sink};
use testkit::receiver::Receiver;

fn report(id: &str, findings: usize) -> Message {
    let now = Utc::now().fixed_offset();
    let f = |i: usize| Finding {
        monkey: MonkeyName::Chaos,
        action: Action::Terminate,
        outcome: Outcome::Planned,
        target: Some("lab".into()),
        instance: Some(format!("i-{i:03}")),
        group: Some("web".into()),
        zone: Some("a".into()),
        severity: Severity::Info,
        message: "would terminate".into(),
        details: BTreeMap::new(),
    };
    let report = Report {
        run_id: id.into(),
        mode: simian_monkeys::Mode::DryRun,
        seed: 1,
        started_at: now,
        finished_at: now,
        api_calls: 0,
        summary: BTreeMap::new(),
        findings: (0..findings).map(f).collect(),
        experiment: None,
        experiments: Vec::new(),
    };
    Message::Report { policy: "lab".into(), report }
}

fn policy(dir: &std::path::Path, rx: &Receiver) -> simian_config::LoadedPolicy {
    let text = format!(
        "version: 1\nsinks:\n  - {{ type: slack, webhook_url: \"{}\" }}\n  - {{ type: webhook, url: \"{}\" }}\n",
        rx.url("/slack"),
        rx.url("/hook")
    );
    let path = dir.join("simian.yaml");
    std::fs::write(&path, text).unwrap();
    simian_config::load(&path).unwrap()
}

fn bodies(rx: &Receiver, path: &str) -> Vec<Value> {
    rx.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_split_slack_report_resumes_after_the_acknowledged_parts() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let p = policy(dir.path(), &rx);
    let sinks = Sink::all(&p);
    let mut store = Store::open(&p.store).unwrap();
    let id = enqueue(&mut store, &sinks, &report("r1", 100), Some("slack"), Utc::now()).unwrap().unwrap();
    // As if a previous attempt had posted part 1 of 3 and then lost the connection.
    store.delivery_progress(id, "slack", 1).unwrap();
    let poster = Poster::new().unwrap();
    let s = deliver(&mut store, &sinks, &poster, Urgency::Normal { fresh: vec![id] }, &SystemClock)
        .await
        .unwrap();
    assert_eq!((s.delivered, s.pending), (1, 0));
    let got = bodies(&rx, "/slack");
    let headers: Vec<&str> = got.iter().map(|b| b["blocks"][0]["text"]["text"].as_str().unwrap()).collect();
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(headers[0].contains("part 2/3") && headers[1].contains("part 3/3"), "{headers:?}");
    assert!(bodies(&rx, "/hook").is_empty(), "only the slack sink was asked");
}

#[tokio::test]
async fn backoff_waits_unless_forced_or_fresh_and_keeps_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let p = policy(dir.path(), &rx);
    let sinks = Sink::all(&p);
    let mut store = Store::open(&p.store).unwrap();
    let poster = Poster::new().unwrap();
    rx.set_status(503);
    let first = enqueue(&mut store, &sinks, &report("r1", 1), None, Utc::now()).unwrap();
    let s = deliver(
        &mut store,
        &sinks,
        &poster,
        Urgency::Normal { fresh: first.into_iter().collect() },
        &SystemClock,
    )
    .await
    .unwrap();
    assert_eq!((s.delivered, s.failed.len(), s.pending), (0, 2, 2));
    assert!(s.failed.iter().all(|(_, e)| e.contains("503")), "{s:?}");
    let b = store.backoff("webhook").unwrap().unwrap();
    assert_eq!(b.failures, 1);
    assert!(b.next_attempt > Utc::now() + chrono::TimeDelta::seconds(20));

    // The endpoint is back, but the sink is in backoff and nothing new arrived: no attempt.
    rx.set_status(200);
    let tried = rx.requests().len();
    let s =
        deliver(&mut store, &sinks, &poster, Urgency::Normal { fresh: vec![] }, &SystemClock).await.unwrap();
    assert_eq!((s.delivered, s.pending), (0, 2));
    assert_eq!(rx.requests().len(), tried);

    // A fresh report goes at once, after the backlog, each exactly once.
    let second = enqueue(&mut store, &sinks, &report("r2", 1), None, Utc::now()).unwrap();
    let s = deliver(
        &mut store,
        &sinks,
        &poster,
        Urgency::Normal { fresh: second.into_iter().collect() },
        &SystemClock,
    )
    .await
    .unwrap();
    assert_eq!((s.delivered, s.pending), (4, 0));
    assert!(store.backoff("webhook").unwrap().is_none());
    let runs: Vec<String> =
        bodies(&rx, "/hook").iter().map(|b| b["report"]["run_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(runs, ["r1", "r1", "r2"], "503 for the first try, then r1 and r2 in order");
    let s = deliver(&mut store, &sinks, &poster, Urgency::Force, &SystemClock).await.unwrap();
    assert_eq!((s.delivered, s.pending), (0, 0), "nothing is sent twice");
}
