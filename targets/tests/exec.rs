//! Executors and the hosts target against real local processes (`sleep`, `kill`, `sh`, `env` on this machine).
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use simian_config::{ExecutorConfig, HostConfig, HostsTarget, Policy};
use simian_monkeys::{Actuator, Instance};
use simian_targets::{ExecError, Executor, Fleet, Hosts, Target};

/// Sleeping children killed on drop, so a failing test leaves nothing behind.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn spawn(n: usize) -> Self {
        Sleepers((0..n).map(|_| Command::new("sleep").arg("300").spawn().expect("spawn sleep")).collect())
    }

    /// Waits up to `bound` for child `i` to exit; true if it did.
    fn exited_within(&mut self, i: usize, bound: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < bound {
            if self.0[i].try_wait().expect("try_wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn running(&mut self, i: usize) -> bool {
        self.0[i].try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|x| x.to_string()).collect()
}

fn lab(children: &Sleepers, terminate: Option<Vec<String>>, executor: ExecutorConfig) -> HostsTarget {
    HostsTarget {
        name: "lab".into(),
        executor,
        terminate,
        isolate: None,
        restore: None,
        timeout: Some("5s".parse().expect("duration")),
        opt_in: None,
        hosts: children
            .0
            .iter()
            .enumerate()
            .map(|(i, c)| HostConfig {
                id: format!("proc-{i}"),
                address: Some("127.0.0.1".into()),
                group: "sleepers".into(),
                zone: None,
                tags: BTreeMap::from([("pid".to_string(), c.id().to_string())]),
                url: None,
            })
            .collect(),
    }
}

fn instance(id: &str) -> Instance {
    Instance {
        target: "lab".into(),
        id: id.into(),
        address: None,
        group: "g".into(),
        zone: None,
        region: None,
        url: None,
        tags: BTreeMap::new(),
    }
}

#[tokio::test]
async fn terminate_kills_exactly_the_chosen_process() {
    let mut kids = Sleepers::spawn(3);
    let pid1 = kids.0[1].id();
    let hosts =
        Hosts::from_config(&lab(&kids, Some(s(&["kill", "-TERM", "{tag:pid}"])), ExecutorConfig::Local));
    let inv = hosts.inventory();
    assert_eq!(inv.len(), 3);
    assert_eq!(inv[1].target, "lab");
    assert_eq!(inv[1].tags["pid"], pid1.to_string());

    let msg = hosts.terminate(&inv[1]).await.expect("terminate");
    assert_eq!(msg, format!("ran `kill -TERM {pid1}`"));
    assert!(kids.exited_within(1, Duration::from_secs(5)), "victim still running");
    assert!(kids.running(0) && kids.running(2), "bystanders must survive");
}

#[tokio::test]
async fn fleet_routes_to_the_instance_target() {
    let mut kids = Sleepers::spawn(2);
    let yaml = format!(
        r#"
version: 1
targets:
  - type: hosts
    name: lab
    terminate: ["kill", "{{tag:pid}}"]
    hosts:
      - {{ id: proc-0, group: sleepers, tags: {{ pid: "{}" }} }}
      - {{ id: proc-1, group: sleepers, tags: {{ pid: "{}" }} }}
  - type: hosts
    name: empty
    hosts:
      - {{ id: a, group: g }}
"#,
        kids.0[0].id(),
        kids.0[1].id()
    );
    let loaded = simian_config::load_str("policy.yaml", &yaml, std::path::Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("policy: {e:?}"));
    let policy: Policy = loaded.policy;
    let fleet = Fleet::from_policy(&policy);
    let inv = fleet.inventory().await.expect("inventory");
    let keys: Vec<_> = inv.iter().map(|i| (i.target.as_str(), i.id.as_str())).collect();
    assert_eq!(keys, [("empty", "a"), ("lab", "proc-0"), ("lab", "proc-1")]);
    assert_eq!(fleet.target("lab").map(Target::name), Some("lab"));
    assert!(fleet.target("nope").is_none());

    fleet.terminate(&inv[2]).await.expect("terminate proc-1");
    assert!(kids.exited_within(1, Duration::from_secs(5)));
    assert!(kids.running(0));

    let err = fleet.terminate(&inv[0]).await.unwrap_err();
    assert_eq!(err.to_string(), "target `empty` has no `terminate` command");
    let mut stray = inv[1].clone();
    stray.target = "nope".into();
    let err = fleet.terminate(&stray).await.unwrap_err();
    assert!(err.to_string().contains("target `nope`"), "{err}");
    let err = fleet.terminate(&instance("ghost")).await.unwrap_err();
    assert_eq!(err.to_string(), "target `lab` has no host `ghost`");
    assert!(kids.running(0));
}

#[tokio::test]
async fn terminate_reports_a_missing_tag_without_running_anything() {
    let kids = Sleepers::spawn(1);
    let hosts = Hosts::from_config(&lab(&kids, Some(s(&["kill", "{tag:nope}"])), ExecutorConfig::Local));
    let err = hosts.terminate(&hosts.inventory()[0]).await.unwrap_err();
    assert!(err.to_string().contains("has no tag `nope`"), "{err}");
}

#[tokio::test]
async fn wrap_renders_its_prefix_for_the_instance() {
    let exec =
        Executor::from_config(&ExecutorConfig::Wrap { argv: s(&["env", "SIMIAN_WRAPPED={id}@{group}"]) });
    let inst = instance("web 1; $(rm -rf /)");
    let out = exec
        .run(&inst, &s(&["sh", "-c", "printf '%s' \"$SIMIAN_WRAPPED\""]), Duration::from_secs(5))
        .await
        .expect("runs");
    assert_eq!(out.stdout, "web 1; $(rm -rf /)@g");
    assert_eq!(out.status, 0);

    let exec = Executor::from_config(&ExecutorConfig::Wrap { argv: s(&["env", "Z={zone}"]) });
    let err = exec.run(&inst, &s(&["true"]), Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ExecError::Prefix(_)), "{err:?}");
    assert!(err.to_string().contains("has no zone"), "{err}");
}

#[tokio::test]
async fn timeout_kills_the_command_fast() {
    let inst = instance("slow");
    // The child records its pid so the test can check it is gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > '{}'; exec sleep 5", pidfile.display());
    let start = Instant::now();
    let err =
        Executor::Local.run(&inst, &s(&["sh", "-c", &script]), Duration::from_millis(300)).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(matches!(err, ExecError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().starts_with("timed out after 300ms running `sh -c"), "{err}");

    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let pid = pid.trim();
    assert!(!pid.is_empty());
    // Killed and reaped: no /proc entry (a zombie would still have one).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} survived the timeout");

    let err = Executor::Local.run(&inst, &s(&["sleep", "5"]), Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(err.to_string(), "timed out after 200ms running `sleep 5`");
}

#[tokio::test]
async fn non_zero_exit_carries_status_and_stderr() {
    let err = Executor::Local
        .run(&instance("x"), &s(&["sh", "-c", "echo out; echo boom >&2; exit 3"]), Duration::from_secs(5))
        .await
        .unwrap_err();
    match &err {
        ExecError::Failed { status, stderr, .. } => {
            assert_eq!(*status, Some(3));
            assert_eq!(stderr, "boom");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "`sh -c 'echo out; echo boom >&2; exit 3'` exited with status 3: boom");
}

#[tokio::test]
async fn killed_by_signal_is_reported() {
    let err = Executor::Local
        .run(&instance("x"), &s(&["sh", "-c", "kill -KILL $$"]), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("was killed by signal 9"), "{err}");
}

#[tokio::test]
async fn huge_stderr_is_truncated_in_the_message() {
    let err = Executor::Local
        .run(
            &instance("x"),
            &s(&["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.len() < 2300, "{} bytes", msg.len());
    assert!(msg.ends_with("(97952 more bytes)"), "{}", &msg[msg.len() - 40..]);
}

#[tokio::test]
async fn missing_program_is_a_clear_error() {
    let err = Executor::Local
        .run(&instance("x"), &s(&["simian-no-such-program", "arg"]), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "cannot run `simian-no-such-program`: No such file or directory");
    let err = Executor::Local.run(&instance("x"), &[], Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ExecError::Empty));
}

#[tokio::test]
async fn output_is_captured() {
    let out = Executor::Local
        .run(&instance("x"), &s(&["sh", "-c", "echo hi; echo warn >&2"]), Duration::from_secs(5))
        .await
        .expect("runs");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str(), out.status), ("hi\n", "warn\n", 0));
}
