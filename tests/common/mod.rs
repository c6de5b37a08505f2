//! Shared helpers of the end-to-end tests: run the real binary, and a fleet of real `sleep` processes.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod daemon;

pub fn simian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(args)
        .env_remove("SIMIAN_POLICY")
        .env("NO_COLOR", "1")
        .output()
        .expect("run simian")
}

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad json ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn assert_ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A fleet of `sleep` processes owned by the test; all are killed on drop.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub procs: Vec<(String, Child)>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// (id, group, zone, opted in)
pub type Spec = (&'static str, &'static str, &'static str, bool);

impl Fleet {
    pub fn start(spec: &[Spec]) -> Fleet {
        let procs = spec
            .iter()
            .map(|(id, ..)| {
                let c = Command::new("sleep").arg("300").stdin(Stdio::null()).spawn().expect("spawn sleep");
                (id.to_string(), c)
            })
            .collect();
        Fleet { dir: tempfile::tempdir().unwrap(), procs }
    }

    pub fn hosts_yaml(&self, spec: &[Spec]) -> String {
        spec.iter()
            .zip(&self.procs)
            .map(|((id, group, zone, opted), (_, c))| {
                let opt = if *opted { ", \"simian:opt-in\": \"true\"" } else { "" };
                format!(
                    "      - {{ id: {id}, group: {group}, zone: {zone}, tags: {{ pid: \"{}\"{opt} }} }}\n",
                    c.id()
                )
            })
            .collect()
    }

    pub fn write_policy(&self, spec: &[Spec], extra_top: &str, chaos: &str, terminate: &str) -> PathBuf {
        let p = self.dir.path().join("simian.yaml");
        let text = format!(
            "version: 1\nmode: live\n{extra_top}targets:\n  - name: lab\n    type: hosts\n    terminate: {terminate}\n    hosts:\n{}monkeys:\n  chaos:\n    schedule: \"* * * * *\"\n{chaos}",
            self.hosts_yaml(spec)
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Has the process been terminated? Waits up to 5 s for it to exit.
    pub fn dead(&mut self, id: &str) -> bool {
        let c = &mut self.procs.iter_mut().find(|(i, _)| i == id).expect("known id").1;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if c.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Write a policy with a `lab` hosts target (extra target keys in `target`) and the given `monkeys:` body.
    pub fn write_policy_with(&self, spec: &[Spec], top: &str, target: &str, monkeys: &str) -> PathBuf {
        let p = self.dir.path().join("simian.yaml");
        let text = format!(
            "version: 1\nmode: live\n{top}targets:\n  - name: lab\n    type: hosts\n{target}    hosts:\n{}monkeys:\n{monkeys}",
            self.hosts_yaml(spec)
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The pid of a member.
    pub fn pid(&self, id: &str) -> u32 {
        self.procs.iter().find(|(i, _)| i == id).expect("known id").1.id()
    }

    /// The process state letter from /proc (`S` sleeping, `T` stopped, …).
    pub fn state(&self, id: &str) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid(id))).unwrap_or_default();
        // Format: pid (comm) STATE …; comm may hold spaces, so split after the last ')'.
        stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).unwrap_or('?')
    }

    /// Wait up to `secs` for a member to reach `state`.
    pub fn wait_state(&self, id: &str, state: char, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.state(id) == state {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    pub fn alive(&mut self, id: &str) -> bool {
        let c = &mut self.procs.iter_mut().find(|(i, _)| i == id).expect("known id").1;
        c.try_wait().unwrap().is_none()
    }
}

pub const SPEC: &[Spec] = &[
    ("web-1", "web", "a", true),
    ("web-2", "web", "b", true),
    ("api-1", "api", "a", true),
    ("api-2", "api", "c", true),
    ("db-1", "db", "a", false),
    ("db-2", "db", "b", false),
];
pub const KILL: &str = "[\"kill\", \"-TERM\", \"{tag:pid}\"]";

/// Two opted-in groups spread over zones a, b and c: zone a holds one instance of each.
pub const ZONED_PAIRS: &[Spec] = &[
    ("web-a", "web", "a", true),
    ("web-b", "web", "b", true),
    ("api-a", "api", "a", true),
    ("api-c", "api", "c", true),
];

/// Target keys that make isolation SIGSTOP and restore SIGCONT of the instance's process (a real,
/// reversible fault the kernel reports in /proc), and terminate SIGTERM.
pub const ISOLATE_BY_SIGNAL: &str = "    isolate: [\"kill\", \"-STOP\", \"{tag:pid}\"]\n    restore: [\"kill\", \"-CONT\", \"{tag:pid}\"]\n    terminate: [\"kill\", \"-TERM\", \"{tag:pid}\"]\n";

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub fn killed(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"] == "done")
        .map(|f| f["instance"].as_str().unwrap().to_string())
        .collect()
}

/// Switch a written policy from `mode: live` to `mode: dry-run`.
pub fn make_dry_run(policy: &Path) {
    let text = std::fs::read_to_string(policy).unwrap();
    std::fs::write(policy, text.replacen("mode: live\n", "mode: dry-run\n", 1)).unwrap();
}

/// `simian run --policy P --format json` in the background, stdout and stderr captured.
pub fn spawn_run(policy: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(["run", "--policy", p(policy), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `simian run --policy P` in the background, its output discarded (a run the test will SIGKILL).
pub fn spawn_run_silent(policy: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_simian"))
        .args(["run", "--policy", p(policy)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The report's findings with this action and outcome.
pub fn of<'a>(r: &'a Value, action: &str, outcome: &str) -> Vec<&'a Value> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == action && f["outcome"] == outcome)
        .collect()
}

/// The store an end-to-end test runs on: the policy's default SQLite file, or a throwaway PostgreSQL
/// cluster started for the test (stoppable mid-test).
pub enum TestStore {
    /// `simian.db` beside the policy.
    Sqlite,
    /// A cluster of the test's own.
    Postgres(testkit::postgres::Postgres),
}

impl TestStore {
    /// A fresh cluster with an empty `simian` database.
    pub fn postgres() -> TestStore {
        TestStore::Postgres(testkit::postgres::Postgres::start())
    }

    /// The policy's `store:` line ("" for the default file).
    pub fn policy_line(&self) -> String {
        match self {
            TestStore::Sqlite => String::new(),
            TestStore::Postgres(pg) => format!("store: {}\n", pg.url()),
        }
    }

    /// `--store` for a daemon whose policy lives in another folder than `policy_dir`'s.
    pub fn arg(&self, policy_dir: &Path) -> String {
        match self {
            TestStore::Sqlite => policy_dir.join("simian.db").display().to_string(),
            TestStore::Postgres(pg) => pg.url(),
        }
    }

    /// One integer from `sql` (a count), read beside simian.
    pub fn count(&self, policy_dir: &Path, sql: &str) -> i64 {
        match self {
            TestStore::Sqlite => rusqlite::Connection::open(policy_dir.join("simian.db"))
                .and_then(|db| db.query_row(sql, [], |r| r.get(0)))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            TestStore::Postgres(pg) => {
                let out = pg.psql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                out.parse().unwrap_or_else(|e| panic!("{sql}: {out:?}: {e}"))
            }
        }
    }
}
