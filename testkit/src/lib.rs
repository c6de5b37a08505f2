//! testkit: a moto EC2 server on loopback for tests, plus helpers that seed it with a fleet.
//!
//! [`Moto::start`] runs `moto_server` (installed by `./tests/run` into `target/venv-moto`) on a free
//! `127.0.0.1` port and kills it when dropped; each test should start its own, so tests never share state.
//! [`Moto::client`] talks to it with static fake credentials (never the instance metadata service);
//! [`Moto::network`] creates a VPC with one subnet in each of [`ZONES`] and two security groups, and
//! [`Network::launch`] runs tagged instances in batches of 100.
//!
//! [`vm::Guest`] boots a real Linux guest with `sch_netem` under QEMU, reachable over SSH (see [`vm`]).
//!
//! Dev-only: `publish = false`, used from `[dev-dependencies]`.
// A test harness waits on real processes and servers in real time.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

pub mod postgres;
pub mod prometheus;
pub mod pushgateway;
pub mod receiver;
pub mod service;
pub mod sshd;
pub mod tls;
pub mod vm;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

/// Environment variable that overrides where `moto_server` is found.
pub const MOTO_SERVER_ENV: &str = "SIMIAN_MOTO_SERVER";
/// The region every helper uses.
pub const REGION: &str = "us-east-1";
/// The availability zones [`Moto::network`] puts a subnet in.
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// The tag EC2 Auto Scaling puts on its instances (moto accepts it on `RunInstances`).
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";
/// simian's default opt-in tag key.
pub const OPT_IN_TAG: &str = "simian:opt-in";
/// An AMI id moto knows.
pub const AMI: &str = "ami-12c6146b";
/// Access key id of the fake credentials.
pub const ACCESS_KEY_ID: &str = "testing";
/// Secret key of the fake credentials.
pub const SECRET_ACCESS_KEY: &str = "testing";
/// Instances per `RunInstances` call.
pub const LAUNCH_BATCH: usize = 100;

/// The workspace root: the nearest directory at or above this crate holding `Cargo.lock`.
pub fn workspace_root() -> PathBuf {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or_else(|| panic!("no Cargo.lock at or above {}", start.display()))
        .to_path_buf()
}

/// Where `moto_server` is expected: `$SIMIAN_MOTO_SERVER`, else `<workspace>/target/venv-moto/bin/moto_server`.
pub fn moto_server_path() -> PathBuf {
    match std::env::var_os(MOTO_SERVER_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join("target/venv-moto/bin/moto_server"),
    }
}

/// Puts fake static AWS credentials into this process's environment, once, for code that uses the SDK's default
/// credential chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` = `testing`, `AWS_EC2_METADATA_DISABLED=true`,
/// no profile, config and credentials files pointed at nothing).
///
/// Call it first thing in every test of a binary that needs it, before any thread reads the environment.
pub fn fake_aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let nothing = std::env::temp_dir().join("simian-testkit-no-aws-config");
        for var in
            ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_REGION"]
        {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", &nothing);
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &nothing);
    });
}

/// A running `moto_server` on a loopback port; killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    endpoint: String,
    log: PathBuf,
}

impl Moto {
    /// Starts `moto_server` on a free `127.0.0.1` port and waits (up to 60 s) until it answers.
    ///
    /// Panics, loudly, when `moto_server` is not installed: run `./tests/run`, which installs it.
    pub fn start() -> Moto {
        let server = moto_server_path();
        if !server.is_file() {
            panic!(
                "\n\n*** moto_server not found at {} ***\n\
                 The EC2 tests need moto's server. Run ./tests/run (it creates target/venv-moto and installs \
                 'moto[server]' there), or point {MOTO_SERVER_ENV} at a moto_server executable.\n\n",
                server.display()
            );
        }
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!("simian-moto-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log).expect("create the moto log file");
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone the moto log file"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let mut moto = Moto { child, port, endpoint: format!("http://127.0.0.1:{port}"), log };
            match moto.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return moto,
                Err(e) => last = e,
            }
        }
        panic!("moto_server did not start: {last}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("moto_server exited with {status} on port {}:\n{log}", self.port));
            }
            if let Ok(status) = self.http("GET", "/moto-api/data.json") {
                if status > 0 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!(
                    "moto_server did not answer on port {} within {limit:?}:\n{log}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One bodiless HTTP/1.1 request to the server; the response's status code.
    fn http(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let head = String::from_utf8_lossy(&response[..response.len().min(64)]).to_string();
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
        code.ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Wipes every resource of the server (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let status = self.http("POST", "/moto-api/reset").expect("POST /moto-api/reset");
        assert_eq!(status, 200, "POST /moto-api/reset answered {status}");
    }

    /// An EC2 client for this server in `region`, with static fake credentials (never instance metadata).
    pub fn client_in(&self, region: &str) -> Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "testkit"))
            .endpoint_url(self.endpoint.clone())
            .http_client(simian_targets::aws_ec2::https_client())
            .build();
        Client::from_conf(config)
    }

    /// An EC2 client for this server in [`REGION`].
    pub fn client(&self) -> Client {
        self.client_in(REGION)
    }

    /// Creates a VPC (10.0.0.0/16) with one subnet in each of [`ZONES`] and two security groups (`app`, `web`).
    pub async fn network(&self) -> Network {
        let client = self.client();
        let vpc = client.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("CreateVpc");
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("VPC id").to_string();
        let mut subnets = BTreeMap::new();
        for (i, zone) in ZONES.iter().enumerate() {
            let subnet = client
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(format!("10.0.{}.0/20", i * 16))
                .availability_zone(*zone)
                .send()
                .await
                .expect("CreateSubnet");
            let id = subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string();
            subnets.insert(zone.to_string(), id);
        }
        let mut security_groups = Vec::new();
        for name in ["app", "web"] {
            let sg = client
                .create_security_group()
                .group_name(name)
                .description(format!("testkit {name}"))
                .vpc_id(&vpc_id)
                .send()
                .await
                .expect("CreateSecurityGroup");
            security_groups.push(sg.group_id().expect("group id").to_string());
        }
        Network { client, vpc_id, subnets, security_groups }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The `.rs` files in `dir` (a crate's `tests/`, built as one binary from its `main.rs`) that `main_rs` (that
/// file's text) does not declare with `mod name;`. With `autotests = false` cargo builds only `main.rs`, so a
/// test file left out would be skipped silently; each such binary asserts this comes back empty.
pub fn test_files_not_declared(dir: &Path, main_rs: &str) -> Vec<String> {
    let mut missing: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let module = name.strip_suffix(".rs")?.to_string();
            (module != "main" && !main_rs.lines().any(|l| l.trim() == format!("mod {module};")))
                .then_some(name)
        })
        .collect();
    missing.sort();
    missing
}

/// A port on 127.0.0.1 that was free a moment ago (the one helper every test harness here uses).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// What [`Moto::network`] created.
#[derive(Debug, Clone)]
pub struct Network {
    /// Client in [`REGION`].
    pub client: Client,
    /// The VPC.
    pub vpc_id: String,
    /// Zone → subnet id, one per zone of [`ZONES`].
    pub subnets: BTreeMap<String, String>,
    /// Ids of the security groups `app` and `web`, in that order; instances get both unless told otherwise.
    pub security_groups: Vec<String>,
}

/// Instances to launch into a [`Network`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Zone (one of [`ZONES`]).
    pub zone: String,
    /// How many.
    pub count: usize,
    /// Tags of every instance.
    pub tags: Vec<(String, String)>,
    /// Security group ids; empty = all of the network's.
    pub security_groups: Vec<String>,
    /// Instances per `RunInstances` call (each call is one reservation; moto pages DescribeInstances by
    /// reservation); default [`LAUNCH_BATCH`].
    pub per_call: usize,
}

impl Launch {
    /// `count` untagged instances in `zone`.
    pub fn new(zone: &str, count: usize) -> Launch {
        Launch {
            zone: zone.to_string(),
            count,
            tags: Vec::new(),
            security_groups: Vec::new(),
            per_call: LAUNCH_BATCH,
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Launch {
        self.tags.push((key.to_string(), value.to_string()));
        self
    }

    /// Puts the instances in Auto Scaling group `name` (the [`GROUP_TAG`] tag).
    pub fn group(self, name: &str) -> Launch {
        self.tag(GROUP_TAG, name)
    }

    /// Opts the instances in with simian's default tag (`simian:opt-in=true`).
    pub fn opted_in(self) -> Launch {
        self.tag(OPT_IN_TAG, "true")
    }

    /// Launches `n` instances per `RunInstances` call (one reservation each).
    pub fn per_call(mut self, n: usize) -> Launch {
        self.per_call = n.clamp(1, LAUNCH_BATCH);
        self
    }

    /// Uses these security groups instead of all of the network's.
    pub fn security_groups(mut self, ids: &[&str]) -> Launch {
        self.security_groups = ids.iter().map(|s| s.to_string()).collect();
        self
    }
}

impl Network {
    /// Runs the instances ([`Launch::per_call`] per `RunInstances` call); their ids, in launch order.
    pub async fn launch(&self, launch: Launch) -> Vec<String> {
        let subnet = self
            .subnets
            .get(&launch.zone)
            .unwrap_or_else(|| panic!("no subnet in zone {}; use one of {ZONES:?}", launch.zone));
        let groups =
            if launch.security_groups.is_empty() { &self.security_groups } else { &launch.security_groups };
        let tags: Vec<Tag> =
            launch.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        let mut calls = Vec::new();
        let mut left = launch.count;
        while left > 0 {
            let n = left.min(launch.per_call.max(1));
            let mut call = self
                .client
                .run_instances()
                .image_id(AMI)
                .instance_type(InstanceType::T3Micro)
                .min_count(n as i32)
                .max_count(n as i32)
                .subnet_id(subnet)
                .set_security_group_ids(Some(groups.clone()));
            if !tags.is_empty() {
                call = call.tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Instance)
                        .set_tags(Some(tags.clone()))
                        .build(),
                );
            }
            calls.push(call);
            left -= n;
        }
        // One call at a time: moto serves them one by one anyway, and concurrent RunInstances calls raced there.
        let mut ids = Vec::with_capacity(launch.count);
        for call in calls {
            let out = call.send().await.expect("RunInstances");
            ids.extend(out.instances().iter().filter_map(|i| i.instance_id().map(str::to_string)));
        }
        ids
    }

    /// Stops the instances (they stay, in state `stopped`).
    pub async fn stop(&self, ids: &[String]) {
        self.client
            .stop_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .expect("StopInstances");
    }

    /// State name (`running`, `terminated`, …) of each instance that DescribeInstances still shows.
    pub async fn states(&self, ids: &[String]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(500) {
            let mut pages = self
                .client
                .describe_instances()
                .filters(Filter::builder().name("instance-id").set_values(Some(chunk.to_vec())).build())
                .max_results(1000)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                for r in page.expect("DescribeInstances").reservations() {
                    for i in r.instances() {
                        let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string());
                        out.insert(
                            i.instance_id().unwrap_or_default().to_string(),
                            state.unwrap_or_default(),
                        );
                    }
                }
            }
        }
        out
    }

    /// The security group ids of an instance (its `SecurityGroups`, in order).
    pub async fn groups_of(&self, id: &str) -> Vec<String> {
        let out = self.client.describe_instances().instance_ids(id).send().await.expect("DescribeInstances");
        let inst = out.reservations().iter().flat_map(|r| r.instances()).next().expect("the instance");
        inst.security_groups().iter().filter_map(|g| g.group_id().map(str::to_string)).collect()
    }
}
