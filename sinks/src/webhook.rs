//! The generic webhook sink: the message as JSON (findings filtered by severity) and its HMAC-SHA256
//! signature.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use simian_monkeys::Severity;

use crate::message::Message;

/// The JSON body POSTed for `msg`: `{"kind":"report",…}` with only the findings at or above `min`, or
/// `{"kind":"announcement",…}` unchanged. Always sent, even when no finding remains: the receiver learns
/// that the run happened.
pub fn body(msg: &Message, min: Severity) -> Vec<u8> {
    let filtered;
    let out = match msg {
        Message::Report { policy, report } => {
            let mut report = report.clone();
            report.findings.retain(|f| f.severity >= min);
            filtered = Message::Report { policy: policy.clone(), report };
            &filtered
        }
        Message::Announcement(_) => msg,
    };
    // Serializing these types cannot fail (string map keys, no fallible serializers); should that ever
    // change, send a body that says so rather than nothing.
    serde_json::to_vec(out).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialize the webhook body");
        serde_json::json!({ "kind": "error", "error": e.to_string() }).to_string().into_bytes()
    })
}

/// `sha256=<lowercase hex HMAC-SHA256 of body under secret>`, the `X-Simian-Signature` header value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length (long ones are hashed), so this never fails in practice.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot key the HMAC");
            "sha256=".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use simian_monkeys::MonkeyName;

    #[test]
    fn sign_matches_rfc_4231_test_case_2() {
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn sign_accepts_empty_and_long_keys() {
        assert!(sign(b"", b"x").starts_with("sha256="));
        assert_eq!(sign(&[7u8; 200], b"x").len(), "sha256=".len() + 64);
    }

    fn report_msg() -> Message {
        let f = |s, m| fixtures::skipped(MonkeyName::Chaos, s, m);
        fixtures::report_msg(vec![
            f(Severity::Info, "a"),
            f(Severity::Critical, "b"),
            f(Severity::Warning, "c"),
        ])
    }

    #[test]
    fn body_filters_findings_and_keeps_the_rest() {
        let v: serde_json::Value = serde_json::from_slice(&body(&report_msg(), Severity::Warning)).unwrap();
        assert_eq!(v["kind"], "report");
        assert_eq!(v["policy"], "nightly");
        assert_eq!(v["report"]["run_id"], "r1");
        assert_eq!(v["report"]["seed"], 42);
        let msgs: Vec<_> =
            v["report"]["findings"].as_array().unwrap().iter().map(|f| f["message"].clone()).collect();
        assert_eq!(msgs, ["b", "c"]);
        // Round-trips into the outbox type.
        let back: Message = serde_json::from_slice(&body(&report_msg(), Severity::Info)).unwrap();
        assert_eq!(back, report_msg());
    }

    #[test]
    fn body_is_sent_even_when_nothing_passes() {
        let mut msg = report_msg();
        if let Message::Report { report, .. } = &mut msg {
            report.findings.retain(|f| f.severity < Severity::Critical);
        }
        let v: serde_json::Value = serde_json::from_slice(&body(&msg, Severity::Critical)).unwrap();
        assert_eq!(v["kind"], "report");
        assert_eq!(v["report"]["findings"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn announcements_are_sent_as_they_are() {
        let msg = fixtures::announcement();
        let v: serde_json::Value = serde_json::from_slice(&body(&msg, Severity::Critical)).unwrap();
        assert_eq!(v["kind"], "announcement");
        assert_eq!(v["kill_switch"], "/etc/simian/stop");
        assert_eq!(v["actions"][0]["what"], "terminate one instance");
    }
}
