//! Planning at cloud scale: eligibility and every monkey's choice over an inventory of N instances in N/10
//! groups (default 1,000,000), built as a cloud inventory would return them (not YAML).
//!
//! `cargo bench -p simian-monkeys --bench plan_scale [-- N]` prints each step's time and the process's peak
//! RSS (which includes the inventory itself).
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

use std::collections::BTreeMap;
use std::time::Instant;

use rand::SeedableRng;
use simian_config::{ExcludeConfig, OptIn};
use simian_monkeys::chaos::{self, ChaosParams};
use simian_monkeys::eligibility::{partition, Exclusions};
use simian_monkeys::gorilla::{self, ZoneChoice};
use simian_monkeys::{latency, Instance};

fn inventory(n: usize) -> Vec<Instance> {
    (0..n)
        .map(|i| {
            let mut tags = BTreeMap::new();
            tags.insert("simian:opt-in".to_string(), "true".to_string());
            tags.insert("Name".to_string(), format!("svc-{}", i / 10));
            if i % 97 == 0 {
                tags.insert("simian:exempt".to_string(), "true".to_string());
            }
            Instance {
                target: "aws".into(),
                id: format!("i-{i:017x}"),
                address: Some(format!("127.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)),
                group: format!("asg-{}", i / 10),
                zone: Some(format!("us-east-1{}", ['a', 'b', 'c'][i % 3])),
                region: Some("us-east-1".into()),
                url: None,
                tags,
            }
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()))
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let t = Instant::now();
    let inv = inventory(n);
    println!("inventory of {n} instances built in {:.2?}; peak RSS {:.0} MiB", t.elapsed(), peak_rss_mib());

    let excl = Exclusions::new(&ExcludeConfig {
        tags: [("simian:exempt".to_string(), "true".to_string())].into(),
        ..ExcludeConfig::default()
    })
    .expect("exclusions");
    let opt_in = OptIn { tag: "simian:opt-in".into(), value: "true".into() };
    let total = Instant::now();
    let t = Instant::now();
    let part = partition(&inv, &|_| opt_in.clone(), &excl);
    let eligibility = t.elapsed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let t = Instant::now();
    let params =
        ChaosParams { probability: 0.5, min_time_between_kills: None, max_kills_per_run: Some(1000) };
    let decisions =
        chaos::plan(&part.eligible, &BTreeMap::new(), &params, chrono::DateTime::UNIX_EPOCH, &mut rng);
    let chaos_t = t.elapsed();
    let t = Instant::now();
    let zone = gorilla::plan(&part.eligible, &ZoneChoice::Random, false, &mut rng);
    let gorilla_t = t.elapsed();
    let t = Instant::now();
    let slowed = latency::choose(&part.eligible, 1, &mut rng);
    let latency_t = t.elapsed();
    let all = total.elapsed();
    println!(
        "groups {} · excluded {} · chaos decisions {} · gorilla {} · latency {}",
        part.eligible.len(),
        part.excluded.len(),
        decisions.len(),
        match &zone {
            gorilla::GorillaPlan::Zone { zone, victims, .. } =>
                format!("zone {zone}, {} victims", victims.len()),
            gorilla::GorillaPlan::NoZone(why) => why.clone(),
        },
        slowed.len()
    );
    println!(
        "eligibility {eligibility:.2?} · chaos plan {chaos_t:.2?} · gorilla plan {gorilla_t:.2?} · latency choice {latency_t:.2?} · all {all:.2?}"
    );
    println!("peak RSS {:.0} MiB (inventory included)", peak_rss_mib());
}
