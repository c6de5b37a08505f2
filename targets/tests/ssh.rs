//! The ssh executor against a real OpenSSH server on loopback (testkit::sshd; `./tests/run` installs it).
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use simian_config::{ExecutorConfig, HostConfig, HostsTarget, SshExecutorConfig};
use simian_monkeys::{Actuator, Instance};
use simian_targets::{ExecError, Executor, Fleet, Hosts, SshExecutor, Target};
use testkit::sshd::Sshd;

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|x| x.to_string()).collect()
}

/// The executor config that reaches `sshd` with its key and host key.
fn config(sshd: &Sshd) -> SshExecutorConfig {
    SshExecutorConfig {
        user: Some(sshd.user().to_string()),
        port: Some(sshd.port()),
        identity_file: Some(sshd.identity_file().display().to_string()),
        known_hosts: Some(sshd.known_hosts().display().to_string()),
        connect_timeout: Some("5s".parse().unwrap()),
        control_persist: Some("5s".parse().unwrap()),
        host: None,
    }
}

fn executor(config: &SshExecutorConfig, control_dir: &Path) -> Executor {
    Executor::Ssh(SshExecutor::from_config(config).with_control_dir(control_dir))
}

fn localhost() -> Instance {
    Instance {
        target: "lab".into(),
        id: "local".into(),
        address: Some("127.0.0.1".into()),
        group: "g".into(),
        zone: None,
        region: None,
        url: None,
        tags: BTreeMap::new(),
    }
}

/// Splits `printf '%s\0' …` output back into its arguments.
fn split_nul(text: &str) -> Vec<String> {
    let mut words: Vec<String> = text.split('\0').map(str::to_string).collect();
    assert_eq!(words.pop().as_deref(), Some(""), "output ends with NUL: {text:?}");
    words
}

/// `printf '%s\0' args…` run on the remote side through `exec`.
async fn remote_words(exec: &Executor, args: &[String]) -> Result<Vec<String>, ExecError> {
    let mut argv = s(&["printf", "%s\\0"]);
    argv.extend_from_slice(args);
    let out = exec.run(&localhost(), &argv, Duration::from_secs(20)).await?;
    Ok(split_nul(&out.stdout))
}

const HOSTILE: &[&str] = &[
    "",
    "'",
    "''",
    "\"",
    "a b\tc\nd",
    "$(touch /tmp/simian-ssh-pwned)",
    "`touch /tmp/simian-ssh-pwned`",
    "$HOME ${X:-y} $0",
    "\\",
    "\\'",
    "*",
    "~",
    "-n",
    "--",
    ";|&<>(){}!#",
    "é – 日本 🐒",
    "\r\u{7f}\u{1b}[31m",
    "%s %n %%",
];

#[tokio::test]
async fn hostile_arguments_arrive_exactly() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let exec = executor(&config(&sshd), ctl.path());
    let args = s(HOSTILE);
    let got = remote_words(&exec, &args).await.unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(got, args);
    assert!(!Path::new("/tmp/simian-ssh-pwned").exists(), "a quoted argument was executed");
}

#[test]
fn any_argv_round_trips_through_the_remote_shell() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let exec = executor(&config(&sshd), ctl.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(32));
    let strategy = prop::collection::vec(
        prop_oneof![
            "[^\\x00]{0,12}",
            prop::sample::select(vec!["'", "''", "\\", "$(", ")", "`", "\n", " ", "\"", "$", "!", ""])
                .prop_map(str::to_string),
            "[ '\"\\\\$`!\\n\\t]{0,6}",
        ],
        1..8,
    );
    runner
        .run(&strategy, |args| {
            let got =
                rt.block_on(remote_words(&exec, &args)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, args);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn remote_failures_carry_status_and_stderr() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let exec = executor(&config(&sshd), ctl.path());
    let argv = s(&["sh", "-c", "echo out; echo boom >&2; exit 3"]);
    let out = exec.output(&localhost(), &argv, Duration::from_secs(20)).await.unwrap();
    assert_eq!((out.stdout.as_str(), out.stderr.as_str(), out.status), ("out\n", "boom\n", 3));
    let err = exec.run(&localhost(), &argv, Duration::from_secs(20)).await.unwrap_err();
    let msg = err.to_string();
    match &err {
        ExecError::Failed { status: Some(3), on: Some(on), stderr, .. } => {
            assert_eq!(stderr, "boom");
            assert!(on.contains("127.0.0.1") && on.contains("over ssh"), "{on}");
        }
        other => panic!("{other:?}"),
    }
    assert!(msg.contains("exited with status 3") && msg.ends_with(": boom"), "{msg}");
}

#[tokio::test]
async fn unknown_host_key_is_refused_clearly() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let cfg = SshExecutorConfig {
        known_hosts: Some(sshd.empty_known_hosts().display().to_string()),
        ..config(&sshd)
    };
    let err = executor(&cfg, ctl.path()).run(&localhost(), &s(&["true"]), Duration::from_secs(20)).await;
    let err = err.expect_err("an unknown host key must be refused");
    let msg = err.to_string();
    assert!(matches!(err, ExecError::Ssh { .. }), "{err:?}");
    assert!(msg.starts_with(&format!("ssh to {}@127.0.0.1:{} failed: ", sshd.user(), sshd.port())), "{msg}");
    assert!(msg.to_lowercase().contains("host key verification failed"), "{msg}");
    // Nothing was learned: the file is still empty (never accept-new).
    assert_eq!(std::fs::read_to_string(sshd.empty_known_hosts()).unwrap(), "");
}

#[tokio::test]
async fn a_closed_port_fails_fast() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = SshExecutorConfig { port: Some(closed), ..config(&sshd) };
    let start = Instant::now();
    let err = executor(&cfg, ctl.path()).run(&localhost(), &s(&["true"]), Duration::from_secs(20)).await;
    let msg = err.expect_err("nothing listens there").to_string();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(msg.starts_with(&format!("ssh to {}@127.0.0.1:{closed} failed: ", sshd.user())), "{msg}");
    assert!(msg.contains("Connection refused"), "{msg}");
}

#[tokio::test]
async fn connections_are_shared_through_a_control_socket() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let exec = executor(&config(&sshd), ctl.path());
    let first = exec.run(&localhost(), &s(&["echo", "one"]), Duration::from_secs(20)).await.unwrap();
    assert_eq!(first.stdout, "one\n");
    let sockets = || -> Vec<_> {
        std::fs::read_dir(ctl.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                use std::os::unix::fs::FileTypeExt;
                e.file_name().to_string_lossy().starts_with("simian-ssh-")
                    && e.file_type().unwrap().is_socket()
            })
            .map(|e| e.path())
            .collect()
    };
    assert_eq!(sockets().len(), 1, "one ControlMaster socket in {}", ctl.path().display());
    for i in 0..3 {
        let out =
            exec.run(&localhost(), &s(&["echo", &i.to_string()]), Duration::from_secs(20)).await.unwrap();
        assert_eq!(out.stdout, format!("{i}\n"));
    }
    assert_eq!(sockets().len(), 1);
    // One authentication for four commands: the later ones rode the shared connection.
    let log = sshd.log();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "sshd log:\n{log}");
}

/// A local `sleep`, killed on drop.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn terminate_over_ssh_kills_the_process() {
    let sshd = Sshd::start();
    let mut victim = Sleeper(Command::new("sleep").arg("300").spawn().unwrap());
    let bystander = Sleeper(Command::new("sleep").arg("300").spawn().unwrap());
    let host = |i: usize, pid: u32| HostConfig {
        id: format!("proc-{i}"),
        address: Some("127.0.0.1".into()),
        group: "sleepers".into(),
        zone: None,
        tags: BTreeMap::from([("pid".to_string(), pid.to_string())]),
        url: None,
    };
    let target = HostsTarget {
        name: "lab".into(),
        executor: ExecutorConfig::Ssh(config(&sshd)),
        terminate: Some(s(&["kill", "-TERM", "{tag:pid}"])),
        isolate: None,
        restore: None,
        timeout: Some("20s".parse().unwrap()),
        opt_in: None,
        hosts: vec![host(0, victim.0.id()), host(1, bystander.0.id())],
    };
    let fleet = Fleet::new(vec![Target::Hosts(Hosts::from_config(&target))]);
    let inv = fleet.inventory().await.unwrap();
    let note = fleet.terminate(&inv[0]).await.unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(
        note,
        format!("ran `kill -TERM {}` on {}@127.0.0.1:{} over ssh", victim.0.id(), sshd.user(), sshd.port())
    );
    let start = Instant::now();
    while victim.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "victim still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut bystander = bystander;
    assert!(bystander.0.try_wait().unwrap().is_none(), "bystander must survive");

    // run_on returns the output of a failing command instead of an error.
    let out = fleet.run_on(&inv[1], &s(&["sh", "-c", "echo no >&2; exit 7"])).await.unwrap();
    assert_eq!((out.status, out.stderr.as_str()), (7, "no\n"));
}

#[tokio::test]
async fn timeouts_kill_the_ssh_client() {
    let sshd = Sshd::start();
    let ctl = tempfile::tempdir().unwrap();
    let exec = executor(&config(&sshd), ctl.path());
    // Warm the shared connection so the timeout measures the command, not the handshake.
    exec.run(&localhost(), &s(&["true"]), Duration::from_secs(20)).await.unwrap();
    let marker = format!("{}.{}", 600 + std::process::id() % 100, std::process::id());
    let start = Instant::now();
    let err = exec.run(&localhost(), &s(&["sleep", &marker]), Duration::from_secs(1)).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    match &err {
        ExecError::Timeout { argv, on: Some(on), .. } => {
            assert_eq!(argv, &format!("sleep {marker}"));
            assert!(on.ends_with("over ssh"), "{on}");
        }
        other => panic!("{other:?}"),
    }
    // No local ssh client for this command is left behind.
    let clients = Command::new("pgrep").args(["-f", &format!("ssh .*'sleep' '{marker}'")]).output().unwrap();
    assert!(
        clients.stdout.is_empty(),
        "ssh client still running: {}",
        String::from_utf8_lossy(&clients.stdout)
    );
    // The remote command: sshd gives it no signal when the session closes (no pty); report what happened.
    let remote = Command::new("pgrep").args(["-x", "-f", &format!("sleep {marker}")]).output().unwrap();
    let pids = String::from_utf8_lossy(&remote.stdout).trim().to_string();
    if !pids.is_empty() {
        eprintln!("note: the remote `sleep {marker}` outlived the timeout (pids {pids}); killing it");
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}
