//! `simian demo`: a local fleet of tiny HTTP processes, a live Chaos Monkey round against it, and checks.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use simian_monkeys::{Instance, Outcome};
use simian_scheduler::run::RunOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use crate::args::{load_policy, DemoArgs};
use crate::commands;

/// The demo policy, embedded: `config/examples/demo.yaml` with `${DEMO_PID_…}` / `${DEMO_PORT_…}` to fill.
const DEMO_POLICY: &str = include_str!("../config/examples/demo.yaml");

/// One process of the demo fleet.
struct Member {
    host: Instance,
    port: u16,
    child: Child,
}

/// `web-a` → `WEB_A`: the suffix of the variables the demo policy reads for this host.
fn var_suffix(id: &str) -> String {
    id.to_uppercase().replace('-', "_")
}

/// The hidden `demo-instance` subcommand: answer HTTP on a free loopback port, print the port first.
pub async fn instance(id: &str, address: &str, service_time: Duration) -> Result<ExitCode> {
    // The demo fleet lives on loopback only.
    let ip: std::net::IpAddr =
        address.parse().with_context(|| format!("`{address}` is not an IP address"))?;
    if !ip.is_loopback() {
        bail!("demo instances listen on loopback addresses only, not {ip}");
    }
    let listener = TcpListener::bind((address, 0)).await.with_context(|| format!("bind {address}"))?;
    println!("{}", listener.local_addr()?.port());
    let body = format!("ok {id}\n");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            // Read the request head (bounded); any request gets the same answer.
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            tokio::time::sleep(service_time).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

async fn start_member(exe: &Path, host: Instance, service_time: &str) -> Result<Member> {
    let address = host.address.clone().unwrap_or_else(|| "127.0.0.1".into());
    let mut child = Command::new(exe)
        .args(["demo-instance", "--id", &host.id, "--address", &address, "--service-time", service_time])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start demo instance {}", host.id))?;
    let out = child.stdout.take().context("demo instance stdout")?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), BufReader::new(out).read_line(&mut line))
        .await
        .context("demo instance did not report its port in 5s")??;
    let port = line.trim().parse().with_context(|| format!("demo instance printed `{}`", line.trim()))?;
    Ok(Member { host, port, child })
}

/// The demo policy with every member's real pid and port filled in.
fn policy_text(members: &[Member]) -> String {
    let mut text = DEMO_POLICY.to_string();
    for m in members {
        let sfx = var_suffix(&m.host.id);
        text = text
            .replace(&format!("${{DEMO_PID_{sfx}}}"), &m.child.id().unwrap_or(0).to_string())
            .replace(&format!("${{DEMO_PORT_{sfx}}}"), &m.port.to_string());
    }
    text
}

async fn answers(m: &Member) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build();
    let Ok(client) = client else { return false };
    match client
        .get(format!("http://{}:{}/", m.host.address.as_deref().unwrap_or("127.0.0.1"), m.port))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Run the demo end to end; exit 0 only when every check holds.
pub async fn demo(args: DemoArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("find the simian binary")?;
    let dir = tempfile::Builder::new().prefix("simian-demo-").tempdir().context("create a temp dir")?;
    // The fleet is the embedded policy's host list (placeholders read as 0 until the processes exist).
    let shape = simian_config::load_str("demo.yaml", DEMO_POLICY, dir.path(), &|k| {
        k.starts_with("DEMO_").then(|| "0".into())
    })
    .map_err(anyhow::Error::new)
    .context("the embedded demo policy does not load")?;
    let hosts = simian_targets::Fleet::from_policy(&shape.policy).inventory().await?;
    let opt_in = shape.policy.opt_in.clone();
    println!(
        "simian demo — starting a local fleet of {} HTTP processes; policy and store in {}",
        hosts.len(),
        dir.path().display()
    );
    let mut members = Vec::new();
    for host in hosts.iter().cloned() {
        members.push(start_member(&exe, host, "0s").await?);
    }
    for m in &members {
        let h = &m.host;
        let note =
            match (h.tags.get(&opt_in.tag) == Some(&opt_in.value), h.tags.contains_key("simian:exempt")) {
                (true, false) => "opted in",
                (true, true) => "opted in, exempt",
                (false, _) => "not opted in",
            };
        println!(
            "  {:<6} group {:<4} zone {}  pid {:<7} http://{}:{}  ({note})",
            h.id,
            h.group,
            h.zone.as_deref().unwrap_or("-"),
            m.child.id().unwrap_or(0),
            h.address.as_deref().unwrap_or("127.0.0.1"),
            m.port
        );
    }
    let policy_path = dir.path().join("simian.yaml");
    std::fs::write(&policy_path, policy_text(&members)).context("write the demo policy")?;
    println!("\npolicy: {}\n", policy_path.display());

    let policy = load_policy(&policy_path)?;
    let opts =
        RunOptions { seed: args.seed, shutdown: commands::shutdown_on_signals(), ..Default::default() };
    let report = commands::run_round(policy.clone(), &opts).await?;
    println!("Chaos Monkey, live:");
    print!("{}", simian_sinks::render_report(&report, false));

    println!("\nhistory (simian history):");
    let rows = commands::history_rows(&policy, chrono::TimeDelta::hours(1))?;
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
    let groups: std::collections::BTreeSet<_> = members
        .iter()
        .filter(|m| m.host.tags.get(&opt_in.tag) == Some(&opt_in.value))
        .map(|m| m.host.group.clone())
        .collect();
    check(
        killed.len() == groups.len(),
        format!(
            "one instance killed in each of the {} opted-in groups (killed: {})",
            groups.len(),
            killed.join(", ")
        ),
    );
    for m in &mut members {
        let id = m.host.id.as_str();
        let gone = if killed.contains(&id) {
            // Reap it: a killed child must exit promptly.
            tokio::time::timeout(Duration::from_secs(5), m.child.wait()).await.is_ok_and(|s| s.is_ok())
        } else {
            false
        };
        let alive = m.child.try_wait().ok().flatten().is_none() && answers(m).await;
        if killed.contains(&id) {
            check(gone && !answers(m).await, format!("{id} is gone (process reaped, port closed)"));
        } else {
            check(alive, format!("{id} still answers"));
        }
    }
    let audit = std::fs::read_to_string(policy.resolve("findings.jsonl")).unwrap_or_default();
    check(
        audit.lines().count() == report.findings.len(),
        format!(
            "{} finding(s) in the jsonl audit trail (sink `jsonl`, via the outbox)",
            audit.lines().count()
        ),
    );
    for m in &mut members {
        let _ = m.child.start_kill();
        let _ = m.child.wait().await;
    }
    ok &= experiment(&exe, dir.path()).await?;
    if args.keep {
        let kept = dir.keep();
        println!("\nkept {}", kept.display());
    }
    if !ok {
        bail!("demo checks failed");
    }
    println!(
        "\ndemo ok: Chaos Monkey killed {} real process(es); Latency Monkey's fault was measured against the \
         steady state. Every decision is in the store and the report.",
        killed.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The embedded experiment policy: Latency Monkey's proxy in front of the demo's `shop` service.
const EXPERIMENT_POLICY: &str = include_str!("../config/examples/demo-experiment.yaml");

/// The second half: a short Latency fault on `shop` under a steady-state probe; prints the baseline →
/// during → recovery table and the capacity line and checks them. True when every check holds.
async fn experiment(exe: &Path, dir: &Path) -> Result<bool> {
    let shop_host = Instance {
        target: "demo".into(),
        id: "shop".into(),
        address: Some("127.0.0.1".into()),
        group: "shop".into(),
        zone: None,
        region: None,
        url: None,
        tags: Default::default(),
    };
    let mut shop = start_member(exe, shop_host, "72ms").await?;
    // A port that was free a moment ago, for the proxy.
    let proxy_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let text = EXPERIMENT_POLICY
        .replace("${DEMO_SHOP_PORT}", &shop.port.to_string())
        .replace("${DEMO_PROXY_PORT}", &proxy_port.to_string());
    let path = dir.join("experiment.yaml");
    std::fs::write(&path, text).context("write the experiment policy")?;
    println!(
        "\nLatency Monkey under a steady-state probe: shop answers in 72 ms (pid {}); a proxy on port {proxy_port} \
         adds 61 ms for 4 s.\npolicy: {}\n",
        shop.child.id().unwrap_or(0),
        path.display()
    );
    let policy = load_policy(&path)?;
    let opts = RunOptions { shutdown: commands::shutdown_on_signals(), ..Default::default() };
    let report = commands::run_round(policy.clone(), &opts).await;
    let _ = shop.child.start_kill();
    let _ = shop.child.wait().await;
    let report = report?;
    print!("{}", simian_sinks::render_report(&report, false));
    println!("\nchecks:");
    let mut ok = true;
    let mut check = |pass: bool, what: String| {
        println!("  [{}] {what}", if pass { "ok" } else { "FAIL" });
        ok &= pass;
    };
    let Some(e) = &report.experiment else {
        check(false, "the round reports an experiment".into());
        return Ok(false);
    };
    check(
        e.verdict == simian_monkeys::experiment::Verdict::Held,
        format!("verdict {} (every tolerance held)", e.verdict.as_str()),
    );
    let capacity = e.probes.first().and_then(|p| p.capacity);
    check(
        capacity.is_some_and(|c| (c - 0.54).abs() <= 0.05),
        format!(
            "capacity during the fault {} — the book's 54 % (72 ms → 133 ms per request)",
            capacity.map_or("unknown".into(), |c| format!("{:.0} %", c * 100.0))
        ),
    );
    check(
        e.recovered_after_s.is_some(),
        format!(
            "recovered {} after the delay was removed",
            e.recovered_after_s.map_or("never".into(), |s| format!("{s:.1}s"))
        ),
    );
    Ok(ok)
}
