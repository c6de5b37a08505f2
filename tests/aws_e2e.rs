//! End-to-end on EC2: the real `simian` binary against moto's EC2 server (started by the test on a free
//! loopback port, fake static credentials), checked against the server's own state.
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{json, p};
use serde_json::Value;
use testkit::{Launch, Moto, Network, ZONES};

/// The binary with fake static credentials and no way to reach real AWS or instance metadata.
fn simian_cmd(args: &[&str]) -> Command {
    let nothing = std::env::temp_dir().join("simian-e2e-no-aws-config");
    let mut c = Command::new(env!("CARGO_BIN_EXE_simian"));
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", testkit::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", testkit::SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &nothing)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nothing)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_EC2")
        .env_remove("SIMIAN_POLICY");
    c
}

fn simian(args: &[&str]) -> Output {
    simian_cmd(args).output().expect("run simian")
}

fn spawn(args: &[&str]) -> Child {
    simian_cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn simian")
}

fn ok(out: Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn policy(dir: &Path, moto: &Moto, monkeys: &str) -> PathBuf {
    policy_at(dir, moto.endpoint(), monkeys)
}

fn policy_at(dir: &Path, endpoint: &str, monkeys: &str) -> PathBuf {
    let path = dir.join("simian.yaml");
    let text = format!(
        "version: 1\nmode: live\nexclude:\n  tags: {{ \"simian:exempt\": \"true\" }}\ntargets:\n  - name: staging\n    type: aws_ec2\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\nmonkeys:\n{monkeys}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn with(r: &Value, action: &str, outcome: &str) -> Vec<String> {
    let mut v: Vec<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == action && f["outcome"] == outcome)
        .filter_map(|f| f["instance"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

/// A fleet over three zones: web (3 per zone) and api (1a, 1b) opted in; batch not opted in; one exempt
/// web instance; one opted-in instance outside any group; one opted-in but stopped.
struct Ec2Fleet {
    net: Network,
    web: Vec<String>,
    api: Vec<String>,
    batch: Vec<String>,
    exempt: Vec<String>,
    ungrouped: Vec<String>,
    stopped: Vec<String>,
}

impl Ec2Fleet {
    async fn launch(moto: &Moto) -> Ec2Fleet {
        let net = moto.network().await;
        let mut web = Vec::new();
        for z in ZONES {
            web.extend(net.launch(Launch::new(z, 3).group("web").opted_in()).await);
        }
        let mut api = net.launch(Launch::new(ZONES[0], 1).group("api").opted_in()).await;
        api.extend(net.launch(Launch::new(ZONES[1], 1).group("api").opted_in()).await);
        let batch = net.launch(Launch::new(ZONES[0], 2).group("batch")).await;
        let exempt =
            net.launch(Launch::new(ZONES[0], 1).group("web").opted_in().tag("simian:exempt", "true")).await;
        let ungrouped = net.launch(Launch::new(ZONES[0], 1).opted_in()).await;
        let stopped = net.launch(Launch::new(ZONES[0], 1).group("api").opted_in()).await;
        net.stop(&stopped).await;
        Ec2Fleet { net, web, api, batch, exempt, ungrouped, stopped }
    }

    fn all(&self) -> Vec<String> {
        [&self.web, &self.api, &self.batch, &self.exempt, &self.ungrouped, &self.stopped]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Everything the server knows about our instances and security groups, for before/after checks.
    async fn snapshot(&self) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>, usize) {
        let all = self.all();
        let states = self.net.states(&all).await;
        let mut groups = BTreeMap::new();
        for id in &all {
            groups.insert(id.clone(), self.net.groups_of(id).await);
        }
        let sgs = self.net.client.describe_security_groups().send().await.unwrap().security_groups().len();
        (states, groups, sgs)
    }
}

fn gone(state: &str) -> bool {
    matches!(state, "terminated" | "shutting-down")
}

#[test]
fn chaos_monkey_kills_only_eligible_ec2_instances_and_counts_api_calls() {
    let moto = Moto::start();
    let rt = rt();
    let f = rt.block_on(Ec2Fleet::launch(&moto));
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(dir.path(), &moto, "  chaos:\n    schedule: \"* * * * *\"\n    probability: 1.0\n");
    let r = ok(simian(&["run", "--policy", p(&pol), "--seed", "11", "--format", "json"]));
    let killed = with(&r, "terminate", "done");
    assert_eq!(killed.len(), 2, "{r:#}");
    assert_eq!(killed.iter().filter(|k| f.web.contains(k)).count(), 1);
    assert_eq!(killed.iter().filter(|k| f.api.contains(k)).count(), 1);
    let skipped = with(&r, "terminate", "skipped");
    assert!(skipped.contains(&f.exempt[0]) && skipped.contains(&f.ungrouped[0]), "{r:#}");
    let states = rt.block_on(f.net.states(&f.all()));
    for (id, state) in &states {
        assert_eq!(gone(state), killed.contains(id), "{id} is {state}");
    }
    let calls = r["api_calls"].as_u64().unwrap();
    // One DescribeInstances page and one batched TerminateInstances: nothing else.
    assert_eq!(calls, 2, "api_calls");
}

/// Real AWS is HTTPS only: the SDK's client (rustls with ring, the platform's roots) talks TLS to a front
/// whose CA the run is told to trust, and refuses the same front when it is not.
#[test]
fn https_endpoints_are_verified_against_the_trusted_roots() {
    let moto = Moto::start();
    let rt = rt();
    let f = rt.block_on(Ec2Fleet::launch(&moto));
    let tls = testkit::tls::TlsFront::start(moto.port());
    let dir = tempfile::tempdir().unwrap();
    let pol = policy_at(
        dir.path(),
        &tls.endpoint(),
        "  chaos:\n    schedule: \"* * * * *\"\n    probability: 1.0\n",
    );

    // Not trusted (only the platform's roots): refused at the handshake, nothing touched.
    let out = simian_cmd(&["run", "--policy", p(&pol), "--format", "json"])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&tls.endpoint()) && err.contains("certificate"), "{err}");
    let states = rt.block_on(f.net.states(&f.all()));
    assert!(states.values().all(|s| !gone(s)), "{states:?}");

    // Trusted: the inventory and the kills go over TLS.
    let out = simian_cmd(&["run", "--policy", p(&pol), "--seed", "11", "--format", "json"])
        .env("SSL_CERT_FILE", tls.ca())
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let r = ok(out);
    let killed = with(&r, "terminate", "done");
    assert_eq!(killed.len(), 2, "{r:#}");
    let states = rt.block_on(f.net.states(&f.all()));
    for (id, state) in &states {
        assert_eq!(gone(state), killed.contains(id), "{id} is {state}");
    }
}

#[test]
fn gorilla_isolates_a_zone_and_restores_the_exact_original_groups() {
    let moto = Moto::start();
    let rt = rt();
    let f = rt.block_on(Ec2Fleet::launch(&moto));
    // api in 1a keeps only one of its groups, so restores must bring back each instance's own set.
    let (before_states, before_groups, _) = rt.block_on(f.snapshot());
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        &moto,
        "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: us-east-1a\n    action: isolate\n    duration: 3s\n",
    );
    let child = spawn(&["run", "--policy", p(&pol), "--format", "json"]);
    // While isolated: exactly the eligible instances of us-east-1a have exactly one group, simian's.
    let in_a: Vec<String> = f.web[..3].iter().chain(&f.api[..1]).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut isolated = Vec::new();
    while Instant::now() < deadline {
        isolated = in_a.iter().map(|id| rt.block_on(f.net.groups_of(id))).collect::<Vec<_>>();
        if isolated.iter().all(|g| g.len() == 1 && !before_groups.values().any(|b| b == g)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sg = isolated[0].clone();
    assert!(isolated.iter().all(|g| *g == sg), "all isolated into one group: {isolated:?}");
    let rules = rt.block_on(f.net.client.describe_security_groups().group_ids(&sg[0]).send()).unwrap();
    let g = &rules.security_groups()[0];
    assert!(g.ip_permissions().is_empty() && g.ip_permissions_egress().is_empty(), "deny-all: {g:?}");
    for other in f.web[3..].iter().chain(&f.exempt).chain(&f.batch) {
        assert_eq!(rt.block_on(f.net.groups_of(other)), before_groups[other], "{other} must not be touched");
    }
    let r = ok(child.wait_with_output().unwrap());
    let mut expect = in_a.clone();
    expect.sort();
    assert_eq!(with(&r, "isolate", "done"), expect, "{r:#}");
    assert_eq!(with(&r, "restore", "done"), expect);
    let (after_states, after_groups, _) = rt.block_on(f.snapshot());
    assert_eq!(after_states, before_states);
    for (id, groups) in &before_groups {
        let (mut a, mut b) = (groups.clone(), after_groups[id].clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "{id}: original groups must come back exactly");
    }
}

#[test]
fn sigkill_during_isolation_then_revert_restores() {
    let moto = Moto::start();
    let rt = rt();
    let f = rt.block_on(Ec2Fleet::launch(&moto));
    let (_, before_groups, _) = rt.block_on(f.snapshot());
    let dir = tempfile::tempdir().unwrap();
    let pol = policy(
        dir.path(),
        &moto,
        "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: us-east-1b\n    action: isolate\n    duration: 1h\n",
    );
    let mut child = spawn(&["run", "--policy", p(&pol)]);
    let in_b: Vec<String> = f.web[3..6].iter().chain(&f.api[1..2]).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if in_b.iter().all(|id| rt.block_on(f.net.groups_of(id)).len() == 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: simian gets no chance to restore
    child.wait().unwrap();
    for id in &in_b {
        assert_eq!(rt.block_on(f.net.groups_of(id)).len(), 1, "{id} still isolated after the crash");
    }
    let r = ok(simian(&["revert", "--policy", p(&pol), "--format", "json"]));
    let mut expect = in_b.clone();
    expect.sort();
    assert_eq!(with(&r, "restore", "done"), expect, "{r:#}");
    for id in &in_b {
        let (mut a, mut b) = (before_groups[id].clone(), rt.block_on(f.net.groups_of(id)));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{id}");
    }
}

#[test]
fn gorilla_terminate_and_dry_run_leaves_everything_as_it_was() {
    let moto = Moto::start();
    let rt = rt();
    let f = rt.block_on(Ec2Fleet::launch(&moto));
    let before = rt.block_on(f.snapshot());
    let dir = tempfile::tempdir().unwrap();
    let monkeys = "  chaos:\n    schedule: \"* * * * *\"\n  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: random\n    action: isolate\n";
    let pol = policy(dir.path(), &moto, monkeys);
    for seed in ["1", "2", "3"] {
        let r = ok(simian(&["plan", "--policy", p(&pol), "--seed", seed, "--format", "json"]));
        assert_eq!(r["mode"], "dry-run");
        // Chaos plans one kill in each opted-in group (web, api); Gorilla isolates a whole zone's eligible
        // instances, and every zone holds at least three web instances.
        assert_eq!(with(&r, "terminate", "planned").len(), 2, "{r:#}");
        assert!(with(&r, "isolate", "planned").len() >= 3, "{r:#}");
    }
    assert_eq!(rt.block_on(f.snapshot()), before, "dry-run changed the server's state");

    let pol = policy(
        dir.path(),
        &moto,
        "  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: us-east-1b\n    action: terminate\n",
    );
    let r = ok(simian(&["run", "--policy", p(&pol), "--format", "json"]));
    let mut expect: Vec<String> = f.web[3..6].iter().chain(&f.api[1..2]).cloned().collect();
    expect.sort();
    assert_eq!(with(&r, "terminate", "done"), expect, "{r:#}");
    let states = rt.block_on(f.net.states(&f.all()));
    for (id, state) in states {
        assert_eq!(gone(&state), expect.contains(&id), "{id} {state}");
    }
}

#[test]
fn unreachable_endpoint_and_missing_credentials_fail_fast_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("simian.yaml");
    // Port 9 on loopback: nothing listens there.
    std::fs::write(
        &path,
        "version: 1\ntargets:\n  - name: staging\n    type: aws_ec2\n    regions: [us-east-1]\n    endpoint_url: http://127.0.0.1:9\nmonkeys:\n  chaos:\n    schedule: \"* * * * *\"\n",
    )
    .unwrap();
    let t = Instant::now();
    let out = simian(&["plan", "--policy", p(&path)]);
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");

    let moto = Moto::start();
    let pol = policy(dir.path(), &moto, "  chaos:\n    schedule: \"* * * * *\"\n");
    let t = Instant::now();
    let out = simian_cmd(&["plan", "--policy", p(&pol)])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("credential"), "{err}");
}
