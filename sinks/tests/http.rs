//! Delivering Slack and webhook messages over real HTTP to a recording server on loopback (testkit's
//! Receiver).

use std::time::Duration;

use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use simian_config::{Secret, SlackSink};
use simian_monkeys::{Action, Finding, Instance, MonkeyName, Outcome, Report, Severity};
use simian_sinks::http::{DeliveryError, Poster};
use simian_sinks::{slack, webhook, Message};
use testkit::receiver::Receiver;

const TOKEN: &str = "B0T-T0KEN-do-not-leak-9c1e";
const WAIT: Duration = Duration::from_secs(5);

fn report(n: usize) -> Message {
    let t = DateTime::parse_from_rfc3339("2026-03-09T10:00:00+01:00").unwrap();
    let findings = (0..n)
        .map(|i| {
            let inst = Instance {
                target: "lab".into(),
                id: format!("web-{i}"),
                address: None,
                group: "web".into(),
                zone: Some("a".into()),
                region: None,
                url: None,
                tags: Default::default(),
            };
            let severity = if i % 2 == 0 { Severity::Warning } else { Severity::Info };
            Finding::about(MonkeyName::Chaos, Action::Terminate, Outcome::Done, severity, &inst, "terminated")
        })
        .collect();
    Message::Report {
        policy: "nightly".into(),
        report: Report {
            run_id: "run-1".into(),
            mode: simian_monkeys::Mode::Live,
            seed: 42,
            started_at: t,
            finished_at: t,
            api_calls: 0,
            summary: Default::default(),
            findings,
            experiment: None,
            experiments: Vec::new(),
        },
    }
}

fn hook_url(r: &Receiver) -> String {
    r.url(&format!("/services/T000/{TOKEN}"))
}

fn assert_no_url(e: &DeliveryError, url: &str) {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(url), "URL leaked: {text}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
}

#[tokio::test]
async fn slack_payloads_arrive_with_block_kit_intact() {
    let r = Receiver::start();
    let url = hook_url(&r);
    let cfg = SlackSink {
        name: None,
        webhook_url: Secret::new(&url),
        min_severity: Severity::Info,
        announce: None,
        channel: Some("#chaos".into()),
        username: None,
    };
    let parts = slack::payloads(&report(70), &cfg);
    assert_eq!(parts.len(), 2);
    let poster = Poster::new().unwrap();
    for part in &parts {
        let body = serde_json::to_vec(part).unwrap();
        poster.post_json(&cfg.webhook_url, &[], &[], body).await.unwrap();
    }
    assert!(r.wait_for(2, WAIT));
    let got = r.requests();
    let mut sections = 0;
    for (req, sent) in got.iter().zip(&parts) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, format!("/services/T000/{TOKEN}"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("user-agent"), Some(concat!("simian/", env!("CARGO_PKG_VERSION"))));
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(&v, sent);
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks.last().unwrap()["type"], "context");
        assert!(blocks[1..blocks.len() - 1]
            .iter()
            .all(|b| b["type"] == "section" && b["text"]["type"] == "mrkdwn"));
        sections += blocks.len() - 2;
        assert_eq!(v["channel"], "#chaos");
        assert_eq!(v["username"], "simian");
        assert!(v["text"].as_str().unwrap().contains("`web-"));
    }
    assert_eq!(sections, 70);
}

#[tokio::test]
async fn webhook_body_is_signed_and_custom_headers_arrive() {
    let r = Receiver::start();
    let url = Secret::new(r.url("/simian"));
    let secret = "s3cret-signing-key";
    let msg = report(5);
    let body = webhook::body(&msg, Severity::Warning);
    let headers = vec![
        ("X-Simian-Event".to_string(), "report".to_string()),
        ("X-Simian-Signature".to_string(), webhook::sign(secret.as_bytes(), &body)),
    ];
    let secret_headers = vec![("Authorization".to_string(), Secret::new(format!("Bearer {TOKEN}")))];
    Poster::new().unwrap().post_json(&url, &headers, &secret_headers, body).await.unwrap();
    assert!(r.wait_for(1, WAIT));
    let req = &r.requests()[0];

    // The receiver's side: recompute the HMAC over the bytes that arrived.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&req.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("x-simian-signature"), Some(expected.as_str()));
    assert_eq!(req.header("x-simian-event"), Some("report"));
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(req.header("content-type"), Some("application/json"));

    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["kind"], "report");
    let findings = v["report"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3, "only warning and above");
    assert!(findings.iter().all(|f| f["severity"] == "warning"));
}

#[tokio::test]
async fn a_down_receiver_is_a_transport_error_without_the_url() {
    let r = Receiver::start();
    let url = hook_url(&r);
    let poster = Poster::new().unwrap();
    // A pooled connection from this request must not hide the outage below.
    poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap();
    r.set_down(true);
    let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Transport(_)), "{e:?}");
    assert_no_url(&e, &url);
    r.set_down(false);
    poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap();
    assert_eq!(r.requests().len(), 2);
}

#[tokio::test]
async fn throttling_statuses_carry_retry_after() {
    let r = Receiver::start();
    let url = hook_url(&r);
    let poster = Poster::new().unwrap();
    r.set_status(503);
    r.set_headers(&[("Retry-After", "7")]);
    let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
    assert_eq!(e, DeliveryError::Status { code: 503, retry_after: Some(Duration::from_secs(7)) });
    assert_no_url(&e, &url);

    r.set_status(429);
    r.set_headers(&[("Retry-After", "30")]);
    let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
    assert_eq!(e, DeliveryError::Status { code: 429, retry_after: Some(Duration::from_secs(30)) });

    // Only 429 and 503 are throttling; elsewhere the header is ignored.
    r.set_status(500);
    let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
    assert_eq!(e, DeliveryError::Status { code: 500, retry_after: None });
    assert_no_url(&e, &url);

    r.set_status(302);
    r.set_headers(&[("Location", "http://127.0.0.1:9/elsewhere")]);
    let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
    assert_eq!(e, DeliveryError::Status { code: 302, retry_after: None }, "redirects are not followed");

    r.set_status(204);
    poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap();
    assert_eq!(r.requests().len(), 5);
}

#[test]
fn the_receiver_also_serves_blocking_callers() {
    let r = Receiver::start();
    let url = Secret::new(hook_url(&r));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let poster = Poster::new().unwrap();
    rt.block_on(poster.post_json(&url, &[], &[], b"{\"a\":1}".to_vec())).unwrap();
    assert!(r.wait_for(1, WAIT));
    assert_eq!(r.requests()[0].body, b"{\"a\":1}");
}
