//! Pushing simian's metrics to a real Prometheus Pushgateway (Debian's, started on loopback by testkit).

use std::collections::BTreeMap;

use chrono::DateTime;
use serde_json::Value;
use simian_monkeys::model::{Action, Finding, MonkeyName, Outcome, Report, Severity};
use simian_sinks::metrics::{push, ActionTotal, Metrics, PushError};
use testkit::pushgateway::Pushgateway;

/// A policy name with a slash: the grouping label must go base64-encoded in the URL.
const INSTANCE: &str = "prod/web-fleet";
const JOB: &str = "simian";

fn finding(monkey: MonkeyName, action: Action, outcome: Outcome) -> Finding {
    Finding {
        monkey,
        action,
        outcome,
        target: Some("web".into()),
        instance: Some("i-1".into()),
        group: Some("web-asg".into()),
        zone: Some("us-east-1a".into()),
        severity: Severity::Info,
        message: "terminated".into(),
        details: BTreeMap::new(),
    }
}

fn report(findings: Vec<Finding>) -> Report {
    Report {
        run_id: "run-1".into(),
        mode: simian_monkeys::Mode::Live,
        seed: 1,
        started_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z").unwrap(),
        finished_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:03Z").unwrap(),
        api_calls: 2,
        summary: BTreeMap::new(),
        findings,
        experiment: None,
        experiments: Vec::new(),
    }
}

/// The group `job=simian, instance=INSTANCE`, with a readable failure.
fn group(gw: &Pushgateway) -> Value {
    gw.group(&[("job", JOB), ("instance", INSTANCE)]).unwrap_or_else(|| {
        panic!("no group job={JOB} instance={INSTANCE}: {:#}\nlog:\n{}", gw.metrics_api(), gw.log())
    })
}

/// The one metric of family `name` in `group` whose labels include all of `labels`.
fn metric<'a>(group: &'a Value, name: &str, labels: &[(&str, &str)]) -> &'a Value {
    let family = &group[name];
    let metrics = family["metrics"].as_array().unwrap_or_else(|| panic!("no family {name} in {group:#}"));
    let found: Vec<&Value> =
        metrics.iter().filter(|m| labels.iter().all(|(k, v)| m["labels"][*k].as_str() == Some(*v))).collect();
    assert_eq!(found.len(), 1, "one {name} with {labels:?} in {family:#}");
    found[0]
}

fn done_terminations(group: &Value) -> &Value {
    metric(
        group,
        "simian_actions_total",
        &[("monkey", "chaos"), ("action", "terminate"), ("outcome", "done")],
    )
}

#[tokio::test]
async fn pushed_metrics_arrive_typed_labelled_and_monotonic() {
    let gw = Pushgateway::start();
    let client = reqwest::Client::new();
    let metrics = Metrics::new();
    metrics.record_report(&report(vec![
        finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done),
        finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done),
        finding(MonkeyName::Chaos, Action::Terminate, Outcome::Skipped),
    ]));
    for seconds in [0.004, 0.2, 7.0] {
        metrics.observe_probe(seconds);
    }
    metrics.set_unhealthy(2);
    metrics.set_active_faults(&[("gorilla".into(), 1)]);
    metrics.set_outbox_pending(5);

    push(&client, &gw.url(), JOB, INSTANCE, &metrics).await.expect("first push");
    let g = group(&gw);
    assert_eq!(g["last_push_successful"], Value::Bool(true), "{g:#}");

    // The counter keeps its type and help (OpenMetrics as is would arrive as an untyped `_total`).
    assert_eq!(g["simian_actions_total"]["type"], "COUNTER", "{g:#}");
    assert!(g["simian_actions_total"]["help"].as_str().is_some_and(|h| h.starts_with("Actions by")), "{g:#}");
    let done = done_terminations(&g);
    assert_eq!(done["value"], "2", "{done:#}");
    let labels: BTreeMap<String, String> = serde_json::from_value(done["labels"].clone()).unwrap();
    let expected: BTreeMap<String, String> = [
        ("action", "terminate"),
        ("instance", INSTANCE),
        ("job", JOB),
        ("monkey", "chaos"),
        ("outcome", "done"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expected);
    let skipped = metric(
        &g,
        "simian_actions_total",
        &[("monkey", "chaos"), ("action", "terminate"), ("outcome", "skipped")],
    );
    assert_eq!(skipped["value"], "1");

    // Histograms: the probes and the run.
    assert_eq!(g["simian_doctor_probe_seconds"]["type"], "HISTOGRAM", "{g:#}");
    let probes = metric(&g, "simian_doctor_probe_seconds", &[]);
    assert_eq!(probes["count"], "3", "{probes:#}");
    assert_eq!(probes["buckets"]["0.005"], "1", "{probes:#}");
    assert_eq!(probes["buckets"]["10"], "3", "{probes:#}");
    let run = metric(&g, "simian_run_duration_seconds", &[("monkey", "chaos")]);
    assert_eq!(run["count"], "1", "{run:#}");
    assert_eq!(run["sum"], "3", "{run:#}");

    // Gauges.
    assert_eq!(g["simian_unhealthy_instances"]["type"], "GAUGE");
    assert_eq!(metric(&g, "simian_unhealthy_instances", &[])["value"], "2");
    assert_eq!(metric(&g, "simian_outbox_pending", &[])["value"], "5");
    assert_eq!(metric(&g, "simian_active_faults", &[("monkey", "gorilla")])["value"], "1");
    assert_eq!(metric(&g, "simian_active_faults", &[("monkey", "chaos")])["value"], "0");
    assert_eq!(metric(&g, "simian_last_run_timestamp_seconds", &[])["value"], "1.714557603e+09");

    // What Prometheus would scrape from the gateway.
    let exposition = gw.exposition();
    assert!(exposition.contains("# TYPE simian_actions_total counter\n"), "{exposition}");

    // More findings, pushed again: the counter grows (a PUT replaces the group with the new totals).
    metrics.record_report(&report(vec![finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done)]));
    push(&client, &format!("{}/", gw.url()), JOB, INSTANCE, &metrics).await.expect("second push");
    let g = group(&gw);
    assert_eq!(done_terminations(&g)["value"], "3");
    assert_eq!(metric(&g, "simian_run_duration_seconds", &[("monkey", "chaos")])["count"], "2");

    // A restart: a fresh Metrics seeded from the store's totals, then one more run; still monotonic.
    let restarted = Metrics::new();
    restarted.seed_actions(&[
        ActionTotal { monkey: "chaos".into(), action: "terminate".into(), outcome: "done".into(), count: 3 },
        ActionTotal {
            monkey: "chaos".into(),
            action: "terminate".into(),
            outcome: "skipped".into(),
            count: 1,
        },
    ]);
    restarted.record_report(&report(vec![finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done)]));
    push(&client, &gw.url(), JOB, INSTANCE, &restarted).await.expect("push after restart");
    let g = group(&gw);
    assert_eq!(done_terminations(&g)["value"], "4");
    let skipped = metric(
        &g,
        "simian_actions_total",
        &[("monkey", "chaos"), ("action", "terminate"), ("outcome", "skipped")],
    );
    assert_eq!(skipped["value"], "1");
}

#[tokio::test]
async fn a_closed_port_is_an_error_without_the_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = format!("http://simian:s3cret@127.0.0.1:{port}");
    let err = push(&reqwest::Client::new(), &gateway, JOB, INSTANCE, &Metrics::new())
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, PushError::Send { .. }), "{err:?}");
    let chain = chain(&err);
    assert!(chain.contains(&format!("127.0.0.1:{port}")), "{chain}");
    assert!(!chain.contains("s3cret") && !chain.contains("simian:"), "{chain}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
}

#[tokio::test]
async fn a_refused_push_gives_the_status_and_the_body() {
    let gw = Pushgateway::start();
    let gateway = gw.url().replace("http://", "http://simian:s3cret@");
    // The real gateway refuses an empty job name with 400 "job name is required".
    let err = push(&reqwest::Client::new(), &gateway, "", INSTANCE, &Metrics::new())
        .await
        .expect_err("an empty job is refused");
    match &err {
        PushError::Status { status, body, .. } => {
            assert_eq!(status.as_u16(), 400);
            assert!(body.contains("job name is required"), "{body}");
            assert!(body.chars().count() <= 200);
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    let chain = chain(&err);
    assert!(chain.contains("400") && chain.contains("job name is required"), "{chain}");
    assert!(!chain.contains("s3cret") && !format!("{err:?}").contains("s3cret"), "{chain}");
}

#[tokio::test]
async fn a_gateway_that_is_not_a_url_is_an_error() {
    let err = push(&reqwest::Client::new(), "http://u:s3cret@[::1", JOB, INSTANCE, &Metrics::new())
        .await
        .expect_err("not a URL");
    assert!(matches!(err, PushError::InvalidUrl { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
}

/// The error and its sources, joined with `: `.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
