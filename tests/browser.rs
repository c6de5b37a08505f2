//! The control room in a real browser: Debian's chromium, headless, driven through chromedriver
//! (WebDriver) with a real `simian daemon` holding a Gorilla isolation of processes this test started. The
//! page lists the faults with a live countdown; a finding made after the page loaded appears without a
//! reload; HALT → confirm → the token asked for → the processes run again within 10 s and the page says
//! halted; at phone width nothing overflows. Screenshots go to `target/screenshots/`.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};
use testkit::receiver::Receiver;

const API_TOKEN: &str = "br0wser-t0ken-5c2d81e4";

/// chromedriver on a free loopback port, killed on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn driver() -> Driver {
    for exe in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(exe).exists(),
            "{exe} is missing: ./tests/run installs Debian's chromium and chromium-driver"
        );
    }
    let port = testkit::free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver(child, port)
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn text(c: &fantoccini::Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// How many faults the page lists.
async fn rows(c: &fantoccini::Client) -> usize {
    c.find_all(Locator::Css("tr[data-fault]")).await.map_or(usize::MAX, |v| v.len())
}

/// Waits up to `secs` for `check` to hold, polling the page every 200 ms.
async fn until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_from_the_page_ends_the_hold_and_the_page_follows_live() {
    let fleet = Fleet::start(ZONED_PAIRS);
    let rx = Receiver::start();
    let d = control_room_daemon(&fleet, &rx, API_TOKEN, "* * * * *", "    duration: 58s\n");
    let wd = driver();
    let profile = tempfile::tempdir().unwrap();
    // Headless, and nothing but loopback: no background services, every other host unresolvable.
    let args = json!([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,1000",
        format!("--user-data-dir={}", profile.path().display()),
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]);
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({ "binary": "/usr/bin/chromium", "args": args }));
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", wd.1))
        .await
        .expect("a chromium session");
    let base = format!("http://127.0.0.1:{}/", d.port);

    // The hold: wait for the fire, then load the page.
    let wait = secs_to_next_minute() + 15;
    let ok = tokio::task::block_in_place(|| {
        fleet.wait_state("web-a", 'T', wait) && fleet.wait_state("api-a", 'T', 5)
    });
    assert!(ok, "no fire:\n{}", d.log());
    c.goto(&base).await.unwrap();
    until(10, "two fault rows", || async { rows(&c).await == 2 }).await;
    assert!(text(&c, "#mode").await.contains("LIVE"));
    until(20, "the fleet's groups", || async {
        c.find_all(Locator::Css("#fleet details")).await.map_or(0, |v| v.len()) == 2
    })
    .await;
    assert!(text(&c, "#fleet details[data-group='lab/web'] summary")
        .await
        .contains("2 instances, 2 eligible"));
    let first = text(&c, "tr[data-fault] .countdown").await;
    assert!(first.contains(" s"), "no countdown: {first:?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_ne!(text(&c, "tr[data-fault] .countdown").await, first, "the countdown does not move");
    std::fs::write(screenshot_dir().join("control-room.png"), c.screenshot().await.unwrap()).unwrap();

    // A finding made after the page loaded appears without a reload: revert web-a through the API.
    let newest: i64 = c
        .execute("return Math.max(0, ...[...document.querySelectorAll('#findings li[data-id]')].map(l => +l.dataset.id))", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap_or(0);
    let faults: Value = serde_json::from_str(&d.request("GET", "/api/v1/faults", &[], "").2).unwrap();
    let web =
        faults.as_array().unwrap().iter().find(|f| f["instance"] == "web-a").unwrap()["id"].as_i64().unwrap();
    let bearer = format!("Bearer {API_TOKEN}");
    assert_eq!(
        d.request("POST", &format!("/api/v1/faults/{web}/revert"), &[("Authorization", &bearer)], "").0,
        200
    );
    until(10, "the restore finding on the page", || async {
        let ids: Value = c
            .execute("return [...document.querySelectorAll('#findings li[data-id]')].map(l => [+l.dataset.id, l.textContent])", vec![])
            .await
            .unwrap_or_default();
        ids.as_array().is_some_and(|a| {
            a.iter().any(|x| x[0].as_i64().unwrap_or(0) > newest && x[1].as_str().unwrap_or("").contains("restore"))
        })
    })
    .await;
    until(10, "one fault row left", || async { rows(&c).await == 1 }).await;

    // HALT: confirm, give the token when asked; the last isolated process runs again within 10 s.
    c.find(Locator::Id("halt-button")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("reason")).await.unwrap().send_keys("game day over").await.unwrap();
    let clicked = Instant::now();
    c.find(Locator::Id("confirm-halt")).await.unwrap().click().await.unwrap();
    let token_box =
        c.wait().at_most(Duration::from_secs(5)).for_element(Locator::Id("token-input")).await.unwrap();
    until(5, "the token dialog", || async { token_box.is_displayed().await.unwrap_or(false) }).await;
    token_box.send_keys(API_TOKEN).await.unwrap();
    c.find(Locator::Id("token-ok")).await.unwrap().click().await.unwrap();
    let ok = tokio::task::block_in_place(|| fleet.wait_state("api-a", 'S', 10));
    assert!(ok && clicked.elapsed() < Duration::from_secs(12), "api-a still stopped:\n{}", d.log());
    until(10, "the page saying halted", || async { text(&c, "#halt").await.contains("HALTED") }).await;
    assert!(text(&c, "#halt").await.contains("game day over"));
    until(10, "no fault rows", || async { rows(&c).await == 0 }).await;
    std::fs::write(screenshot_dir().join("control-room-halted.png"), c.screenshot().await.unwrap()).unwrap();

    // Phone width: readable, nothing wider than the screen.
    c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let overflow =
        c.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "wider than a phone by {overflow}px");
    std::fs::write(screenshot_dir().join("control-room-phone.png"), c.screenshot().await.unwrap()).unwrap();
    c.close().await.unwrap();
}
