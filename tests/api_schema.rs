//! The control room's API against its own OpenAPI document, with schemathesis (pinned, in
//! `target/venv-schemathesis`, installed by `./tests/run`): generated requests against a real daemon, every
//! response checked — no 5xx, status codes, content types, headers and bodies as documented, bad input
//! refused. First without the token: every POST answers 401 and nothing changes; then with it.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::process::Command;

use common::daemon::*;
use common::*;
use testkit::receiver::Receiver;

const API_TOKEN: &str = "schemathesis-t0ken-0a9b8c";

fn schemathesis(url: &str, headers: &[&str]) -> (bool, String) {
    let exe =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv-schemathesis/bin/schemathesis");
    assert!(exe.exists(), "{} is missing: ./tests/run installs schemathesis (pinned) there", exe.display());
    let mut cmd = Command::new(exe);
    cmd.args(["run", url, "--checks", "all", "--max-examples", "25", "--workers", "1", "--seed", "4242"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.env("NO_COLOR", "1").env("SCHEMATHESIS_HOOKS", "").output().expect("run schemathesis");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn the_api_matches_its_openapi_document_and_refuses_posts_without_the_token() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let d = control_room_daemon(&fleet, &rx, API_TOKEN, "0 0 1 1 *", "");
    let url = format!("http://127.0.0.1:{}/api/v1/openapi.json", d.port);
    let halted = || {
        let s: serde_json::Value =
            serde_json::from_str(&d.request("GET", "/api/v1/status", &[], "").2).unwrap();
        !s["halt"].is_null()
    };

    let (ok, out) = schemathesis(&url, &[]);
    assert!(ok, "schemathesis without the token:\n{out}");
    assert!(!halted(), "a POST without the token halted the fleet:\n{out}");
    assert!(!d.log().contains("halt recorded from the control room"), "{}", d.log());

    let bearer = format!("Authorization: Bearer {API_TOKEN}");
    let (ok, out) = schemathesis(&url, &[&bearer]);
    assert!(ok, "schemathesis with the token:\n{out}");
    // Every operation of the document (all ten) was exercised.
    assert!(out.contains("Tested: 10"), "{out}");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
