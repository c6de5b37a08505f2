//! What the engine's callers share besides the engine: the policy re-reader for the gate, the metrics
//! (seeded from the store, refreshed where they are published, pushed after one-shot runs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use simian_config::{HostConfig, LoadedPolicy, SinkConfig, TargetConfig};
use simian_monkeys::eligibility::Exclusions;
use simian_monkeys::Report;
use simian_sinks::metrics::{ActionTotal, Metrics};
use tracing::warn;

use crate::store::{Store, StoreError};

/// The policy as its file says now, for the gate's re-check right before each action.
///
/// Re-reading a 100,000-host policy before every action would make a round O(actions × policy); instead the
/// file's fingerprint (device, inode, size, modification and change times) is compared, and the file is read
/// again only when it differs. A file modified less than [`RACY`] before it was last read may have been
/// edited again within one timestamp tick without changing size, so its bytes are compared too (as git does
/// with a "racily clean" index) until it has been still for that long.
pub struct PolicyWatch {
    path: std::path::PathBuf,
    store: simian_store::StoreAt,
    cache: Mutex<Option<Cached>>,
}

/// How long after a write the fingerprint alone is not trusted.
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

struct Cached {
    stamp: Stamp,
    read_at: SystemTime,
    digest: [u8; 32],
    fresh: Result<Arc<Fresh>, String>,
}

/// What changes whenever the file's bytes do (but for an edit within one timestamp tick: see [`RACY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The re-read policy with what the gate needs from it prepared once: compiled exclusions and an index of
/// hosts by (target, id).
#[derive(Debug)]
pub struct Fresh {
    /// The policy as the file says now.
    pub policy: LoadedPolicy,
    /// Its exclusions, compiled; `Err` = a bad pattern (the gate refuses).
    pub exclusions: Result<Exclusions, String>,
    hosts: HashMap<(String, String), (usize, usize)>,
}

impl Fresh {
    /// Prepares `policy` for the gate.
    pub fn new(policy: LoadedPolicy) -> Fresh {
        let exclusions = crate::run::exclusions(&policy);
        let mut hosts = HashMap::new();
        for (t, target) in policy.policy.targets.iter().enumerate() {
            if let TargetConfig::Hosts(h) = target {
                for (i, host) in h.hosts.iter().enumerate() {
                    hosts.entry((h.name.clone(), host.id.clone())).or_insert((t, i));
                }
            }
        }
        Fresh { policy, exclusions, hosts }
    }

    /// Host `id` of the `hosts` target `target`, as the file says now.
    pub fn host(&self, target: &str, id: &str) -> Option<&HostConfig> {
        let (t, i) = self.hosts.get(&(target.to_string(), id.to_string()))?;
        match self.policy.policy.targets.get(*t)? {
            TargetConfig::Hosts(h) => h.hosts.get(*i),
            TargetConfig::AwsEc2(_) => None,
        }
    }
}

impl PolicyWatch {
    /// Watches `policy`'s file; a `--store` override carries over to every re-read.
    pub fn new(policy: &LoadedPolicy) -> PolicyWatch {
        PolicyWatch { path: policy.path.clone(), store: policy.store.clone(), cache: Mutex::new(None) }
    }

    /// The policy as the file says now; `Err` = it no longer loads (the gate refuses).
    pub fn current(&self) -> Result<Arc<Fresh>, String> {
        let meta =
            std::fs::metadata(&self.path).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let stamp = Stamp::of(&meta);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref() {
            let settled =
                meta.modified().ok().and_then(|m| m.checked_add(RACY)).is_some_and(|m| m < c.read_at);
            if c.stamp == stamp && settled {
                return c.fresh.clone();
            }
        }
        let read_at = wall_clock();
        let bytes = simian_config::read_bytes(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(c) = cache.as_mut().filter(|c| c.digest == digest) {
            c.stamp = stamp;
            c.read_at = read_at;
            return c.fresh.clone();
        }
        let fresh = simian_config::load_bytes(&self.path, bytes)
            .map(|mut p| {
                p.store = self.store.clone();
                Arc::new(Fresh::new(p))
            })
            .map_err(|e| e.to_string());
        *cache = Some(Cached { stamp, read_at, digest, fresh: fresh.clone() });
        fresh
    }
}

/// The filesystem's "now", to compare with file timestamps (not the engine's clock, which tests may pause).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}

/// Metrics seeded with the store's totals, so counters survive restarts and pushes stay monotonic.
pub fn seeded_metrics(store: &Store) -> Result<Metrics, StoreError> {
    let m = Metrics::new();
    let totals: Vec<ActionTotal> = store
        .action_counts()?
        .into_iter()
        .map(|c| ActionTotal { monkey: c.monkey, action: c.action, outcome: c.outcome, count: c.count })
        .collect();
    m.seed_actions(&totals);
    Ok(m)
}

/// Gauges that describe the present (unhealthy instances, active faults, undelivered messages), read
/// from the store right before they are published: at each `/metrics` scrape, before each push.
pub fn refresh_gauges(m: &Metrics, store: &Store) -> Result<(), StoreError> {
    m.set_unhealthy(store.unhealthy_count()?);
    m.set_halted(store.current_halt()?.is_some());
    m.set_active_faults(&store.active_faults_by_monkey()?);
    m.set_outbox_pending(store.pending_count()?);
    Ok(())
}

/// The Pushgateway of the policy's `prometheus` sink, if one is set.
pub fn pushgateway(policy: &LoadedPolicy) -> Option<&str> {
    policy.policy.sinks.iter().find_map(|s| match s {
        SinkConfig::Prometheus(p) => p.pushgateway.as_deref(),
        SinkConfig::Log(_) | SinkConfig::Jsonl(_) | SinkConfig::Slack(_) | SinkConfig::Webhook(_) => None,
    })
}

/// After a one-shot run: push the metrics (seeded before the run, plus its report) to the Pushgateway.
pub async fn push_metrics(policy: &LoadedPolicy, metrics: &Arc<Metrics>, report: &Report) {
    let Some(gateway) = pushgateway(policy) else { return };
    metrics.record_report(report);
    match Store::open(&policy.store) {
        Ok(store) => {
            if let Err(e) = refresh_gauges(metrics, &store) {
                warn!(error = %crate::chain(&e), "cannot read gauges from the store");
            }
        }
        Err(e) => warn!(error = %crate::chain(&e), "cannot read gauges from the store"),
    }
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => return warn!(error = %e, "cannot build an HTTP client for the Pushgateway"),
    };
    // A failed push loses nothing: counters are cumulative, the next push carries everything.
    if let Err(e) = simian_sinks::metrics::push(&client, gateway, "simian", &policy.name, metrics).await {
        warn!(error = %e, "cannot push metrics to the Pushgateway");
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    fn policy(mode: &str) -> String {
        format!("version: 1\nmode: {mode}\ntargets:\n  - type: hosts\n    name: t\n    terminate: [\"true\"]\n    hosts:\n      - {{ id: a, group: g }}\n")
    }

    #[test]
    fn the_file_is_read_again_only_when_it_changed_even_within_one_timestamp_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, policy("live")).unwrap();
        let watch = PolicyWatch::new(&simian_config::load(&path).unwrap());
        let first = watch.current().unwrap();
        assert!(Arc::ptr_eq(&first, &watch.current().unwrap()), "unchanged: the same parse");
        assert!(first.host("t", "a").is_some() && first.host("t", "b").is_none());
        // Same length, written at once: only the bytes tell.
        std::fs::write(&path, policy("LIVE").replace("LIVE", "dry-")).unwrap();
        let e = watch.current().expect_err("`dry-` is no mode");
        assert!(e.contains("unknown value `dry-`"), "{e}");
        std::fs::write(&path, policy("dry-run")).unwrap();
        assert_eq!(watch.current().unwrap().policy.policy.mode, simian_config::Mode::DryRun);
        std::fs::remove_file(&path).unwrap();
        assert!(watch.current().is_err(), "a vanished policy refuses");
    }
}
