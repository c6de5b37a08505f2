//! `simian demo`: a local fleet of tiny HTTP processes, a live Chaos Monkey round against it, and checks.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use simian_monkeys::Outcome;
use simian_scheduler::run::RunOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::cli::{self, DemoArgs};

/// The demo fleet: (id, group, zone, opted in, exempt).
const FLEET: &[(&str, &str, &str, bool, bool)] = &[
    ("web-a", "web", "a", true, false),
    ("web-b", "web", "b", true, false),
    ("web-c", "web", "c", true, false),
    ("api-a", "api", "a", true, false),
    ("api-b", "api", "b", true, false),
    ("api-c", "api", "c", true, true),
    ("db-a", "db", "a", false, false),
];

struct Member {
    id: &'static str,
    port: u16,
    child: Child,
}

/// The hidden `demo-instance` subcommand: answer HTTP on a free loopback port, print the port first.
pub async fn instance(id: &str) -> Result<ExitCode> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("bind a loopback port")?;
    println!("{}", listener.local_addr()?.port());
    let body = format!("ok {id}\n");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            // Read the request head (bounded); any request gets the same answer.
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

async fn start_member(exe: &Path, id: &'static str) -> Result<Member> {
    let mut child = Command::new(exe)
        .args(["demo-instance", "--id", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start demo instance {id}"))?;
    let out = child.stdout.take().context("demo instance stdout")?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), BufReader::new(out).read_line(&mut line))
        .await
        .context("demo instance did not report its port in 5s")??;
    let port = line.trim().parse().with_context(|| format!("demo instance printed `{}`", line.trim()))?;
    Ok(Member { id, port, child })
}

fn policy_yaml(members: &[Member]) -> String {
    let mut hosts = String::new();
    for m in members {
        let &(_, group, zone, opted, exempt) = FLEET.iter().find(|f| f.0 == m.id).expect("member from FLEET");
        let pid = m.child.id().unwrap_or(0);
        let mut tags = format!("pid: \"{pid}\", port: \"{}\"", m.port);
        if opted {
            tags.push_str(", \"simian:opt-in\": \"true\"");
        }
        if exempt {
            tags.push_str(", \"simian:exempt\": \"true\"");
        }
        hosts.push_str(&format!(
            "      - {{ id: {}, address: 127.0.0.1, group: {group}, zone: {zone}, tags: {{ {tags} }} }}\n",
            m.id
        ));
    }
    format!(
        "# Written by `simian demo`: a local fleet of tiny HTTP processes.\nversion: 1\nmode: live\ntimezone: UTC\nstore: simian.db\n\
exclude:\n  tags: {{ \"simian:exempt\": \"true\" }}\ntargets:\n  - name: demo\n    type: hosts\n    executor: local\n    \
terminate: [\"kill\", \"-TERM\", \"{{tag:pid}}\"]\n    timeout: 10s\n    hosts:\n{hosts}monkeys:\n  chaos:\n    \
schedule: \"* * * * *\"\n    probability: 1.0\n    min_time_between_kills: 1h\n    max_kills_per_run: 3\n"
    )
}

async fn answers(port: u16) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build();
    let Ok(client) = client else { return false };
    match client.get(format!("http://127.0.0.1:{port}/")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Run the demo end to end; exit 0 only when every check holds.
pub async fn demo(args: DemoArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("find the simian binary")?;
    let dir = tempfile::Builder::new().prefix("simian-demo-").tempdir().context("create a temp dir")?;
    println!("simian demo — starting a local fleet of {} HTTP processes in {}", FLEET.len(), dir.path().display());
    let mut members = Vec::new();
    for (id, ..) in FLEET {
        members.push(start_member(&exe, id).await?);
    }
    for m in &members {
        let &(_, group, zone, opted, exempt) = FLEET.iter().find(|f| f.0 == m.id).expect("member from FLEET");
        let note = match (opted, exempt) {
            (true, false) => "opted in",
            (true, true) => "opted in, exempt",
            (false, _) => "not opted in",
        };
        println!("  {:<6} group {:<4} zone {}  pid {:<7} http://127.0.0.1:{}  ({note})", m.id, group, zone, m.child.id().unwrap_or(0), m.port);
    }
    let policy_path = dir.path().join("simian.yaml");
    std::fs::write(&policy_path, policy_yaml(&members)).context("write the demo policy")?;
    println!("\npolicy: {}\n", policy_path.display());

    let policy = cli::load_policy(&policy_path)?;
    let opts = RunOptions { seed: args.seed, ..Default::default() };
    let report = cli::run_round(&policy, &opts).await?;
    println!("Chaos Monkey, live:");
    print!("{}", simian_sinks::render_report(&report, false));

    println!("\nhistory (simian history):");
    let rows = cli::history_rows(&policy, chrono::TimeDelta::hours(1))?;
    print!("{}", simian_sinks::render_history(&rows, false));

    println!("\nchecks:");
    let killed: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.outcome == Outcome::Done)
        .filter_map(|f| f.instance.as_deref())
        .collect();
    let mut ok = true;
    let mut check = |pass: bool, what: String| {
        println!("  [{}] {what}", if pass { "ok" } else { "FAIL" });
        ok &= pass;
    };
    check(killed.len() == 2, format!("one instance killed in each opted-in group (killed: {})", killed.join(", ")));
    for m in &mut members {
        let gone = if killed.contains(&m.id) {
            // Reap it: a killed child must exit promptly.
            tokio::time::timeout(Duration::from_secs(5), m.child.wait()).await.is_ok_and(|s| s.is_ok())
        } else {
            false
        };
        let alive = m.child.try_wait().ok().flatten().is_none() && answers(m.port).await;
        if killed.contains(&m.id) {
            check(gone && !answers(m.port).await, format!("{} is gone", m.id));
        } else {
            check(alive, format!("{} still answers", m.id));
        }
    }
    for m in &mut members {
        let _ = m.child.start_kill();
        let _ = m.child.wait().await;
    }
    if args.keep {
        let kept = dir.keep();
        println!("\nkept {}", kept.display());
    }
    if !ok {
        bail!("demo checks failed");
    }
    println!("\ndemo ok: Chaos Monkey killed {} real process(es); the decision is in the store and the report.", killed.len());
    Ok(ExitCode::SUCCESS)
}
