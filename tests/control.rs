//! End-to-end control room: a real `simian daemon` holding a Gorilla isolation of processes this test
//! started, its page and API over HTTP: the fault listed with its planned restore, one fault reverted by
//! id, a halt that needs the token (refused without it, nothing changed) and then ends the hold, resume, and
//! bad requests answered 4xx in JSON.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;
use serde_json::Value;
use testkit::receiver::Receiver;

const API_TOKEN: &str = "c0ntrol-r00m-t0ken-7f3e9a";

fn body(r: &(u16, String, String)) -> Value {
    serde_json::from_str(&r.2).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", r.1, r.2))
}

#[test]
fn the_control_room_lists_the_hold_reverts_one_fault_and_halts_only_with_the_token() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let mut d = control_room_daemon(&fleet, &rx, API_TOKEN, "* * * * *", "    duration: 55s\n");
    let bearer = format!("Bearer {API_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];

    // The page and its assets, with a restrictive policy.
    let page = d.request("GET", "/", &[], "");
    assert_eq!(page.0, 200);
    assert!(
        page.1.to_lowercase().contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{}",
        page.1
    );
    assert!(page.2.contains("<script src=\"/app.js\" defer></script>") && page.2.contains("HALT"));
    for asset in ["/app.js", "/app.css", "/api/v1/openapi.json"] {
        assert_eq!(d.request("GET", asset, &[], "").0, 200, "{asset}");
    }

    assert!(fleet.wait_state("web-a", 'T', secs_to_next_minute() + 15), "no fire:\n{}", d.log());
    assert!(fleet.wait_state("api-a", 'T', 5));
    let faults = body(&d.request("GET", "/api/v1/faults", &[], ""));
    let faults = faults.as_array().expect("an array");
    let mut instances: Vec<&str> = faults.iter().map(|f| f["instance"].as_str().unwrap()).collect();
    instances.sort();
    assert_eq!(instances, ["api-a", "web-a"], "{faults:?}");
    for f in faults {
        assert_eq!(
            (f["monkey"].as_str(), f["kind"].as_str(), f["zone"].as_str()),
            (Some("gorilla"), Some("isolate"), Some("a"))
        );
        let left = f["restore_at_unix_ms"].as_i64().unwrap() - chrono::Utc::now().timestamp_millis();
        assert!((30_000..=56_000).contains(&left), "restores in {left} ms: {f}");
    }
    let status = body(&d.request("GET", "/api/v1/status", &[], ""));
    assert_eq!(
        (status["mode"].as_str(), status["active_faults"].as_u64()),
        (Some("live"), Some(2)),
        "{status}"
    );
    assert!(status["halt"].is_null());
    let schedule = body(&d.request("GET", "/api/v1/schedule?count=2", &[], ""));
    assert!(
        schedule.as_array().unwrap().iter().any(|f| f["monkey"] == "gorilla"
            && f["in_calendar"] == true
            && f["touches"] == "zone a: isolate"),
        "{schedule}"
    );
    let found = body(&d.request("GET", "/api/v1/findings?monkey=gorilla&outcome=done&limit=10", &[], ""));
    let isolations = found["findings"].as_array().unwrap();
    assert!(
        isolations.len() >= 2
            && isolations.iter().all(|f| f["monkey"] == "gorilla" && f["outcome"] == "done"),
        "{found}"
    );

    // The fleet: every instance with its eligibility, per group.
    let fleet_view = body(&d.request("GET", "/api/v1/fleet", &[], ""));
    assert_eq!(fleet_view["instances"], 4, "{fleet_view}");
    let groups = fleet_view["targets"][0]["groups"].as_array().unwrap();
    let web = groups.iter().find(|g| g["name"] == "web").expect("group web");
    assert_eq!((web["instances"].as_u64(), web["eligible"].as_u64()), (Some(2), Some(2)), "{web}");
    assert!(web["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["eligibility"] == "eligible" && m["health"] == "unknown"));
    assert!(body(&d.request("GET", "/api/v1/experiments", &[], "")).as_array().is_some_and(Vec::is_empty));

    // Without the token (or with a wrong one) nothing can be done, and nothing changes.
    for headers in [&[][..], &[("Authorization", "Bearer not-the-token-at-all")][..]] {
        let r = d.request("POST", "/api/v1/halt", headers, "{}");
        assert_eq!(r.0, 401, "{}", r.2);
        assert!(r.1.to_lowercase().contains("www-authenticate: bearer") && !r.2.contains(API_TOKEN), "{r:?}");
        let id = faults[0]["id"].as_i64().unwrap();
        assert_eq!(d.request("POST", &format!("/api/v1/faults/{id}/revert"), headers, "").0, 401);
    }
    assert!(body(&d.request("GET", "/api/v1/status", &[], ""))["halt"].is_null(), "halted without the token");
    assert_eq!((fleet.state("web-a"), fleet.state("api-a")), ('T', 'T'), "reverted without the token");

    // One fault reverted by id: that instance runs again, the other stays cut.
    let web = faults.iter().find(|f| f["instance"] == "web-a").unwrap()["id"].as_i64().unwrap();
    let r = d.request("POST", &format!("/api/v1/faults/{web}/revert"), &auth, "");
    assert_eq!(r.0, 200, "{}", r.2);
    assert_eq!(body(&r)["reverted"], true);
    assert!(fleet.wait_state("web-a", 'S', 5));
    assert_eq!(fleet.state("api-a"), 'T');
    assert_eq!(
        d.request("POST", &format!("/api/v1/faults/{web}/revert"), &auth, "").0,
        404,
        "reverted twice"
    );

    // Bad requests: 4xx with a JSON reason.
    for (method, path, payload, want) in [
        ("POST", "/api/v1/halt", "{not json", 400),
        ("POST", "/api/v1/halt", "{\"reason\": \"two\\nlines\"}", 400),
        ("POST", "/api/v1/halt", "{\"why\": \"x\"}", 400),
        ("GET", "/api/v1/findings?limit=0", "", 400),
        ("GET", "/api/v1/findings?monkey=kong", "", 400),
        ("GET", "/api/v1/nothing", "", 404),
        ("GET", "/api/v1/halt", "", 405),
        ("POST", "/api/v1/faults/x/revert", "", 400),
    ] {
        let r = d.request(method, path, &auth, payload);
        assert_eq!(r.0, want, "{method} {path}: {}", r.2);
        assert!(body(&r)["error"].is_string(), "{method} {path}: {}", r.2);
    }
    assert!(
        body(&d.request("GET", "/api/v1/status", &[], ""))["halt"].is_null(),
        "a bad halt request halted"
    );

    // HALT with the token: the hold ends within 10 s, the status says who halted and why.
    let t = Instant::now();
    let r = d.request("POST", "/api/v1/halt", &auth, "{\"reason\": \"game day over\"}");
    assert_eq!(r.0, 200, "{}", r.2);
    assert_eq!(body(&r)["new"], true);
    assert!(fleet.wait_state("api-a", 'S', 10), "still cut 10 s after the halt:\n{}", d.log());
    assert!(t.elapsed() < Duration::from_secs(10));
    let status = body(&d.request("GET", "/api/v1/status", &[], ""));
    assert_eq!(status["halt"]["reason"], "game day over");
    assert!(status["halt"]["by"].as_str().unwrap().starts_with("control room"), "{status}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while body(&d.request("GET", "/api/v1/faults", &[], "")).as_array().is_some_and(|a| !a.is_empty()) {
        assert!(Instant::now() < deadline, "faults still listed after the halt");
        std::thread::sleep(Duration::from_millis(200));
    }

    let r = d.request("POST", "/api/v1/resume", &auth, "");
    assert_eq!((r.0, body(&r)["resumed"].as_bool()), (200, Some(true)), "{}", r.2);
    assert!(body(&d.request("GET", "/api/v1/status", &[], ""))["halt"].is_null());
    d.signal("-TERM");
    assert_eq!(d.wait_exit(30).0, Some(0), "{}", d.log());
}

#[test]
fn without_a_configured_token_the_control_room_only_reads() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let pol = fleet.write_policy_with(
        ZONED_PAIRS,
        "name: lab\n",
        ISOLATE_BY_SIGNAL,
        "  gorilla:\n    schedule: \"0 0 1 1 *\"\n    zone: a\n    action: isolate\n",
    );
    let d = Daemon::start(&pol, &rx);
    assert_eq!(d.request("GET", "/api/v1/status", &[], "").0, 200);
    for path in ["/api/v1/halt", "/api/v1/resume", "/api/v1/faults/1/revert"] {
        let r = d.request("POST", path, &[("Authorization", "Bearer anything-at-all-here")], "");
        assert_eq!(r.0, 403, "{path}: {}", r.2);
        assert!(body(&r)["error"].as_str().unwrap().contains("api: { token"), "{}", r.2);
    }
    assert!(body(&d.request("GET", "/api/v1/status", &[], ""))["halt"].is_null());
}
