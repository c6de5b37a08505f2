//! Kill claims under contention: N agents (threads with a connection each, as N processes would have) race
//! to claim kills in the same 100 groups with `min_time_between_kills: 1h`, so exactly one claim per group
//! is granted and every other one is refused as too recent — each claim one exclusive write transaction
//! (SQLite's `BEGIN IMMEDIATE`; PostgreSQL's transaction advisory lock, on a throwaway loopback cluster).
//!
//! `cargo bench -p simian-store --bench claims [-- SECONDS]` (default 5 s per case) prints claims per
//! second and the claim latency (p50, p99, max) for 1 and 3 agents on each store. Under `cargo test` it runs 0.2 s per
//! case as a smoke test.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use hdrhistogram::Histogram;
use simian_monkeys::{Instance, Mode};
use simian_store::{Claim, Store, StoreAt};

const GROUPS: usize = 100;

fn instance(group: usize) -> Instance {
    Instance {
        target: "lab".into(),
        id: format!("web-{group}"),
        address: None,
        group: format!("g{group}"),
        zone: None,
        region: None,
        url: None,
        tags: Default::default(),
    }
}

/// One agent's loop until `until`: (latencies in µs, claims granted).
fn agent(at: &StoreAt, until: Instant) -> (Histogram<u64>, usize) {
    let mut store = Store::open(at).expect("store");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut granted = 0;
    let spacing = Some(TimeDelta::hours(1));
    let mut g = 0;
    while Instant::now() < until {
        let t = Instant::now();
        match store.claim_kill("bench", &instance(g % GROUPS), Utc::now(), spacing).expect("claim") {
            Claim::Granted(_) => granted += 1,
            Claim::TooRecent(_) | Claim::Halted(_) => {}
        }
        hist.saturating_record(t.elapsed().as_micros() as u64);
        g += 1;
    }
    (hist, granted)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 =
        std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(if bench { 5.0 } else { 0.2 });
    println!("| store | agents | claims/s | p50 µs | p99 µs | max µs | granted |");
    println!("|---|---|---|---|---|---|---|");
    let pg = testkit::postgres::Postgres::start();
    for (name, fresh) in [
        (
            "SQLite (WAL)",
            &(|dir: &std::path::Path| StoreAt::File(dir.join("simian.db")))
                as &dyn Fn(&std::path::Path) -> StoreAt,
        ),
        ("PostgreSQL 15 (loopback)", &|_: &std::path::Path| {
            StoreAt::parse(&pg.fresh_database(), std::path::Path::new("/")).expect("the cluster's URL")
        }),
    ] {
        for agents in [1, 3] {
            let dir = tempfile::tempdir().expect("temp dir");
            let at = fresh(dir.path());
            Store::open(&at).expect("store").begin_run("bench", 1, Mode::Live, Utc::now()).expect("run");
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let started = Instant::now();
            let results: Vec<(Histogram<u64>, usize)> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..agents).map(|_| s.spawn(|| agent(&at, until))).collect();
                hs.into_iter().map(|h| h.join().expect("agent")).collect()
            });
            let took = started.elapsed().as_secs_f64();
            let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut granted = 0;
            for (h, g) in &results {
                all.add(h).expect("merge");
                granted += g;
            }
            // The point of the claim: one kill per group, however many agents race for it. Every agent walks
            // the groups in the same order, so the groups touched are the first (longest walk) of them.
            let touched = GROUPS.min(results.iter().map(|(h, _)| h.len() as usize).max().unwrap_or(0));
            assert_eq!(granted, touched, "a group granted twice, or one never granted");
            println!(
                "| {name} | {agents} | {:.0} | {} | {} | {} | {granted} of {} |",
                all.len() as f64 / took,
                all.value_at_quantile(0.5),
                all.value_at_quantile(0.99),
                all.max(),
                all.len()
            );
        }
    }
}
