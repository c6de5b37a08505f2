//! The policy schema: serde types that mirror the YAML a user writes, field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::{Duration, Percent};

/// A whole policy file (`version: 1`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Schema version; only `1` exists.
    pub version: u32,
    /// `false` = nothing runs at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `dry-run` (default) plans and reports only; `live` acts.
    #[serde(default)]
    pub mode: Mode,
    /// IANA timezone the schedule and calendar are read in; default UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The store: a SQLite file, relative to the policy file (default `simian.db` beside it), or a
    /// PostgreSQL URL `postgres://user@host:5432/db?sslmode=require` shared by a fleet of agents.
    #[serde(default)]
    pub store: Option<Secret>,
    /// While this file exists nothing is changed.
    #[serde(default)]
    pub kill_switch: Option<String>,
    /// When monkeys may act; absent = any time.
    #[serde(default)]
    pub calendar: Option<CalendarConfig>,
    /// The tag an instance must carry to be touched; a target may override it.
    #[serde(default)]
    pub opt_in: OptIn,
    /// Instances that are never touched, even when opted in (exclusions win).
    #[serde(default)]
    pub exclude: ExcludeConfig,
    /// Where instances come from and how actions reach them.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Which monkeys run, and how.
    #[serde(default)]
    pub monkeys: MonkeysConfig,
    /// Name of this policy: the Pushgateway `instance` label and chat headers; default the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Where every run's report goes; absent or empty = `log`.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Measure the service before, during and after every acting round; abort and revert when it breaks.
    #[serde(default)]
    pub steady_state: Option<crate::steady::SteadyStateConfig>,
    /// How long the store keeps runs, findings and delivered messages; default 90 days. Undelivered messages,
    /// open faults and each group's last kill are kept whatever their age.
    #[serde(default)]
    pub retention: Option<Duration>,
    /// The daemon's control room (`/` and `/api/v1/…`): who may act through it.
    #[serde(default)]
    pub api: Option<ApiConfig>,
}

/// `api:` — access to the daemon's control room.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The bearer token every POST needs (and, when the daemon listens beyond loopback, every API request);
    /// without one the POST endpoints answer 403. Give it as `${SIMIAN_API_TOKEN}`.
    #[serde(default)]
    pub token: Option<Secret>,
}

impl Policy {
    /// The default `retention`.
    pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

    /// `retention`, or its default.
    pub fn retention(&self) -> std::time::Duration {
        self.retention.map_or(Self::RETENTION, |d| d.std())
    }
}

fn yes() -> bool {
    true
}

fn utc() -> String {
    "UTC".to_string()
}

/// Whether actions are carried out or only planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plan and report, change nothing.
    #[default]
    DryRun,
    /// Carry the actions out.
    Live,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dry-run" => Ok(Mode::DryRun),
            "live" => Ok(Mode::Live),
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

impl Mode {
    /// The name used in policies, reports and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Live => "live",
        }
    }
}

/// Local time windows in which monkeys may act.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// Half-open local window `HH:MM-HH:MM`; may wrap midnight (`22:00-06:00`).
    #[serde(default)]
    pub hours: Option<String>,
    /// Weekdays (`mon` … `sun`); absent = every day.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Local dates (`YYYY-MM-DD`) on which nothing runs.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A tag key and the value that opts an instance in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptIn {
    /// Tag key, e.g. `simian:opt-in`.
    pub tag: String,
    /// Value the tag must have, e.g. `true`.
    pub value: String,
}

impl Default for OptIn {
    fn default() -> Self {
        OptIn { tag: "simian:opt-in".to_string(), value: "true".to_string() }
    }
}

/// Instances never touched: any tag match or group glob match excludes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeConfig {
    /// Tag key → value; an instance carrying any of these is excluded.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Group name globs (`payments*`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Instance id globs.
    #[serde(default)]
    pub instances: Vec<String>,
}

/// One source of instances; `type` picks the kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetConfig {
    /// A static list of hosts in the policy.
    Hosts(HostsTarget),
    /// EC2 instances found with DescribeInstances.
    AwsEc2(AwsEc2Target),
}

impl TargetConfig {
    /// The target's unique name.
    pub fn name(&self) -> &str {
        match self {
            TargetConfig::Hosts(h) => &h.name,
            TargetConfig::AwsEc2(a) => &a.name,
        }
    }
    /// The opt-in rule in force for this target (its own, else the policy's).
    pub fn opt_in<'a>(&'a self, policy_default: &'a OptIn) -> &'a OptIn {
        match self {
            TargetConfig::Hosts(h) => h.opt_in.as_ref().unwrap_or(policy_default),
            TargetConfig::AwsEc2(a) => a.opt_in.as_ref().unwrap_or(policy_default),
        }
    }
}

/// `type: hosts` — a static inventory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostsTarget {
    /// Unique target name.
    pub name: String,
    /// How commands reach a host: `local` (default) or `{ type: wrap, argv: [...] }`.
    #[serde(default)]
    pub executor: ExecutorConfig,
    /// Argv template that terminates a host (`{id}`, `{address}`, `{group}`, `{zone}`, `{tag:NAME}`).
    #[serde(default)]
    pub terminate: Option<Vec<String>>,
    /// Argv template that cuts a host off the network (Chaos Gorilla `action: isolate`).
    #[serde(default)]
    pub isolate: Option<Vec<String>>,
    /// Argv template that undoes `isolate`.
    #[serde(default)]
    pub restore: Option<Vec<String>>,
    /// Per-command timeout; default 30s.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Overrides the policy's opt-in tag for this target.
    #[serde(default)]
    pub opt_in: Option<OptIn>,
    /// The hosts.
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
}

/// `type: aws_ec2` — running EC2 instances that carry the opt-in tag.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEc2Target {
    /// Unique target name.
    pub name: String,
    /// Regions to list and act in (at least one).
    pub regions: Vec<String>,
    /// Send EC2 calls here instead of AWS's endpoint (tests, VPC endpoints).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Named profile of the shared AWS config; default: the standard credential chain.
    #[serde(default)]
    pub profile: Option<String>,
    /// Tag whose value is the instance's group; default `aws:autoscaling:groupName`.
    #[serde(default = "default_group_by")]
    pub group_by: String,
    /// Overrides the policy's opt-in tag for this target.
    #[serde(default)]
    pub opt_in: Option<OptIn>,
    /// Name of the deny-all security group Chaos Gorilla swaps in; default `simian-isolation`.
    #[serde(default = "default_isolation_group")]
    pub isolation_group: String,
    /// Instances per TerminateInstances call; default 100 (1..=1000).
    #[serde(default = "default_terminate_batch")]
    pub terminate_batch: u32,
}

fn default_group_by() -> String {
    "aws:autoscaling:groupName".to_string()
}

fn default_isolation_group() -> String {
    "simian-isolation".to_string()
}

fn default_terminate_batch() -> u32 {
    100
}

/// One host of a `hosts` target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Unique id within the target.
    pub id: String,
    /// Network address (informational; used by templates).
    #[serde(default)]
    pub address: Option<String>,
    /// Instance group (the unit Chaos Monkey picks one victim from).
    pub group: String,
    /// Availability zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Free-form tags; the opt-in tag lives here.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// This host's health URL (Doctor) and `Date` source (10-18), overriding `monkeys.doctor.url`.
    #[serde(default)]
    pub url: Option<String>,
}

/// How a target runs argv on its hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub enum ExecutorConfig {
    /// Run argv on this machine.
    #[default]
    Local,
    /// Prefix argv with a template, e.g. `["docker","exec","{id}"]`.
    Wrap {
        /// The prefix template.
        argv: Vec<String>,
    },
    /// Run argv on the host through the OpenSSH client (`{ type: ssh, user, port, … }`).
    Ssh(SshExecutorConfig),
}

/// `executor: { type: ssh, … }`: the OpenSSH client, so users keep their ssh config, agent and ProxyJump.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshExecutorConfig {
    /// Remote user; default: ssh's own default (ssh config, else the local user).
    #[serde(default)]
    pub user: Option<String>,
    /// Remote port; default: ssh's own default (22).
    #[serde(default)]
    pub port: Option<u16>,
    /// Private key file (`-i`); `~/` is expanded.
    #[serde(default)]
    pub identity_file: Option<String>,
    /// Known-hosts file to trust; `~/` is expanded. Host keys are always checked (never a blind accept).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// Connect timeout; default 10s.
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// How long a shared connection (ControlMaster) stays open after the last command; default 60s.
    #[serde(default)]
    pub control_persist: Option<Duration>,
    /// Host to connect to: an argv template; default `{address}` (else `{id}`).
    #[serde(default)]
    pub host: Option<String>,
}

/// The monkeys; each is off unless present.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MonkeysConfig {
    /// Chaos Monkey: terminate one random eligible instance per group.
    #[serde(default)]
    pub chaos: Option<ChaosConfig>,
    /// Chaos Gorilla: take a whole availability zone down.
    #[serde(default)]
    pub gorilla: Option<GorillaConfig>,
    /// Latency Monkey: add network delay, always reverted.
    #[serde(default)]
    pub latency: Option<LatencyConfig>,
    /// Doctor Monkey: probe health endpoints and /proc, report (and optionally remediate) the sick.
    #[serde(default)]
    pub doctor: Option<DoctorConfig>,
    /// 10-18 Monkey: flag timezone, locale and clock drift.
    #[serde(default)]
    pub ten_eighteen: Option<TenEighteenConfig>,
}

/// What Doctor Monkey does about an unhealthy instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Remediation {
    /// Report only.
    #[default]
    None,
    /// Terminate it (live mode, opted-in only, within Chaos Monkey's kill limits) so its group replaces it.
    Terminate,
}

/// `monkeys.doctor`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorConfig {
    /// `false` turns this monkey off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Standard 5-field cron, read in the policy's timezone.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Health URL template, e.g. `http://{address}:8080/health`; a host's own `url` wins.
    #[serde(default)]
    pub url: Option<String>,
    /// Healthy status codes; default 200-299.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// The body must contain this, if given.
    #[serde(default)]
    pub expect_body: Option<String>,
    /// Per-probe timeout; default 2s.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Probes in flight at once; default 256.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Consecutive failed checks before `unhealthy` (and passes before `recovered`); default 3.
    #[serde(default = "default_failures")]
    pub failures_before_unhealthy: u32,
    /// Also read load, memory and disk from /proc through the target's executor.
    #[serde(default)]
    pub proc: bool,
    /// Unhealthy above this 1-minute load average per CPU.
    #[serde(default)]
    pub max_load_per_cpu: Option<f64>,
    /// Unhealthy below this share of memory available.
    #[serde(default)]
    pub min_mem_available: Option<Percent>,
    /// Unhealthy above this share of `/` used.
    #[serde(default)]
    pub max_disk_used: Option<Percent>,
    /// `none` (default) or `terminate`.
    #[serde(default)]
    pub remediate: Remediation,
}

fn default_concurrency() -> u32 {
    256
}

fn default_failures() -> u32 {
    3
}

/// Expected timezone and locale.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// IANA timezone, e.g. `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Locale, e.g. `en_US.UTF-8`.
    #[serde(default)]
    pub locale: Option<String>,
}

/// An expectation for part of the fleet; the most specific match wins (group > zone > region).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// Applies to this zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Applies to this region.
    #[serde(default)]
    pub region: Option<String>,
    /// Applies to this group.
    #[serde(default)]
    pub group: Option<String>,
    /// Expected IANA timezone there.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Expected locale there.
    #[serde(default)]
    pub locale: Option<String>,
}

/// `monkeys.ten_eighteen`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenEighteenConfig {
    /// `false` turns this monkey off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Standard 5-field cron, read in the policy's timezone.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Fleet-wide expectations; without one, each group's majority is the norm.
    #[serde(default)]
    pub expect: ExpectConfig,
    /// Expectations per zone, region or group.
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
    /// Clock skew beyond this is a finding; default 2s.
    #[serde(default)]
    pub max_clock_skew: Option<Duration>,
}

/// How Latency Monkey injects delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyVia {
    /// `tc qdisc … netem` on the host, through its executor (needs root and sch_netem).
    #[default]
    Tc,
    /// A userspace TCP proxy run by simian (`proxies`), for hosts without root or tc.
    Proxy,
}

/// One userspace proxy: clients connect to `listen`, bytes go to and from `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on, e.g. `127.0.0.1:18080`.
    pub listen: String,
    /// Address to forward to, e.g. `127.0.0.1:8080`.
    pub upstream: String,
}

/// `monkeys.latency`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// `false` turns this monkey off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Standard 5-field cron, read in the policy's timezone.
    #[serde(default)]
    pub schedule: Option<String>,
    /// `tc` (default) or `proxy`.
    #[serde(default)]
    pub via: LatencyVia,
    /// Added delay, e.g. `200ms`.
    #[serde(default)]
    pub delay: Option<Duration>,
    /// Jitter around the delay (normal distribution), e.g. `20ms`; default none.
    #[serde(default)]
    pub jitter: Option<Duration>,
    /// Packet loss, e.g. `1%`; default none.
    #[serde(default)]
    pub loss: Option<Percent>,
    /// `auto` (the interface of the default route) or a name such as `eth0`.
    #[serde(default = "auto")]
    pub interface: String,
    /// How long the fault lasts; default 10m.
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Hosts per eligible group that get the delay; default 1.
    #[serde(default = "one")]
    pub hosts_per_group: u32,
    /// Replace a root qdisc simian does not own (default: refuse, finding `skipped`).
    #[serde(default)]
    pub replace_existing: bool,
    /// Extra time after `duration` before the host's dead-man switch removes the qdisc; default 30s.
    #[serde(default)]
    pub grace: Option<Duration>,
    /// Proxy mode only: the proxies to run.
    #[serde(default)]
    pub proxies: Vec<ProxyConfig>,
    /// Which steady-state probes watch this monkey's rounds: a list of names, or `false` for none; default all.
    #[serde(default)]
    pub steady_state: Option<crate::steady::ProbeChoice>,
}

fn auto() -> String {
    "auto".to_string()
}

fn one() -> u32 {
    1
}

/// What Chaos Gorilla does to the instances of the chosen zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GorillaAction {
    /// Cut them off the network for `duration`, then restore (reversible).
    #[default]
    Isolate,
    /// Terminate them.
    Terminate,
}

/// `monkeys.gorilla`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GorillaConfig {
    /// `false` turns this monkey off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Standard 5-field cron, read in the policy's timezone.
    #[serde(default)]
    pub schedule: Option<String>,
    /// `random` (default: among zones holding eligible instances) or a zone name.
    #[serde(default = "random_zone")]
    pub zone: String,
    /// `isolate` (default) or `terminate`.
    #[serde(default)]
    pub action: GorillaAction,
    /// How long an isolation lasts before it is restored; default 30m.
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Allow taking a zone that holds every eligible instance of some group.
    #[serde(default)]
    pub allow_total_loss: bool,
    /// Which steady-state probes watch this monkey's rounds: a list of names, or `false` for none; default all.
    #[serde(default)]
    pub steady_state: Option<crate::steady::ProbeChoice>,
}

fn random_zone() -> String {
    "random".to_string()
}

/// `monkeys.chaos`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    /// `false` turns this monkey off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Standard 5-field cron, read in the policy's timezone.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Chance per eligible group per run (0..=1); default 1.0 when no mean is given.
    #[serde(default)]
    pub probability: Option<f64>,
    /// Alternative to `probability`: the mean time between kills in a group.
    #[serde(default)]
    pub mean_time_between_kills: Option<Duration>,
    /// A group whose last live kill is younger than this is skipped.
    #[serde(default)]
    pub min_time_between_kills: Option<Duration>,
    /// Upper bound on kills in one run, over all groups.
    #[serde(default)]
    pub max_kills_per_run: Option<u32>,
    /// Which steady-state probes watch this monkey's rounds: a list of names, or `false` for none; default all.
    #[serde(default)]
    pub steady_state: Option<crate::steady::ProbeChoice>,
}

impl<'de> Deserialize<'de> for ExecutorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};

        const ALL_FIELDS: &[&str] = &[
            "type",
            "argv",
            "user",
            "port",
            "identity_file",
            "known_hosts",
            "connect_timeout",
            "control_persist",
            "host",
        ];
        const LOCAL_FIELDS: &[&str] = &["type"];
        const WRAP_FIELDS: &[&str] = &["type", "argv"];
        const SSH_FIELDS: &[&str] = &[
            "type",
            "user",
            "port",
            "identity_file",
            "known_hosts",
            "connect_timeout",
            "control_persist",
            "host",
        ];

        fn unknown<E: de::Error>(kind: &str) -> E {
            E::custom(format!(
                "unknown executor `{kind}`; expected `local`, `ssh`, or a mapping with `type: wrap` or `type: ssh`"
            ))
        }

        /// A TCP port as written: any integer reads, out-of-range ones fail here with a clear message (0 reads,
        /// and validation rejects it with a hint).
        struct Port(u16);

        impl<'de> Deserialize<'de> for Port {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = i64::deserialize(d)?;
                u16::try_from(n)
                    .map(Port)
                    .map_err(|_| de::Error::custom(format!("invalid port {n}; expected 1..=65535")))
            }
        }

        /// Sets `slot` from the map's next value, refusing a second occurrence of `key`.
        fn fill<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
            map: &mut A,
            slot: &mut Option<T>,
            key: &'static str,
        ) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(de::Error::duplicate_field(key));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }

        struct ExecutorVisitor;

        impl<'de> Visitor<'de> for ExecutorVisitor {
            type Value = ExecutorConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "`local`, `ssh` or a mapping `{ type: wrap, argv: [...] }` / `{ type: ssh, ... }`",
                )
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<ExecutorConfig, E> {
                match s {
                    "local" => Ok(ExecutorConfig::Local),
                    "ssh" => Ok(ExecutorConfig::Ssh(SshExecutorConfig::default())),
                    other => Err(unknown(other)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExecutorConfig, A::Error> {
                let mut kind: Option<String> = None;
                let mut argv: Option<Vec<String>> = None;
                let mut ssh = SshExecutorConfig::default();
                // Keys in the order written (the type may come last), to reject those of another type.
                let mut seen: Vec<&'static str> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Some(&name) = ALL_FIELDS.iter().find(|f| **f == key) else {
                        let allowed = match kind.as_deref() {
                            Some("local") => LOCAL_FIELDS,
                            Some("wrap") => WRAP_FIELDS,
                            Some("ssh") => SSH_FIELDS,
                            _ => ALL_FIELDS,
                        };
                        return Err(de::Error::unknown_field(&key, allowed));
                    };
                    match name {
                        "type" => fill(&mut map, &mut kind, "type")?,
                        "argv" => fill(&mut map, &mut argv, "argv")?,
                        "user" => fill(&mut map, &mut ssh.user, "user")?,
                        "port" => {
                            let mut port: Option<Port> = ssh.port.map(Port);
                            fill(&mut map, &mut port, "port")?;
                            ssh.port = port.map(|p| p.0);
                        }
                        "identity_file" => fill(&mut map, &mut ssh.identity_file, "identity_file")?,
                        "known_hosts" => fill(&mut map, &mut ssh.known_hosts, "known_hosts")?,
                        "connect_timeout" => fill(&mut map, &mut ssh.connect_timeout, "connect_timeout")?,
                        "control_persist" => fill(&mut map, &mut ssh.control_persist, "control_persist")?,
                        _ => fill(&mut map, &mut ssh.host, "host")?,
                    }
                    seen.push(name);
                }
                let allowed = match kind.as_deref() {
                    Some("local") => LOCAL_FIELDS,
                    Some("wrap") => WRAP_FIELDS,
                    Some("ssh") => SSH_FIELDS,
                    Some(other) => return Err(unknown(other)),
                    None => return Err(de::Error::missing_field("type")),
                };
                // A key of another executor type is unknown here (reported at the key, then cut out and retried).
                if let Some(stray) = seen.iter().find(|k| !allowed.contains(k)) {
                    return Err(de::Error::unknown_field(stray, allowed));
                }
                match (kind.as_deref(), argv) {
                    (Some("wrap"), Some(argv)) => Ok(ExecutorConfig::Wrap { argv }),
                    (Some("wrap"), None) => Err(de::Error::missing_field("argv")),
                    (Some("ssh"), _) => Ok(ExecutorConfig::Ssh(ssh)),
                    _ => Ok(ExecutorConfig::Local),
                }
            }
        }

        d.deserialize_any(ExecutorVisitor)
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    #[default]
    Info,
    /// Someone should know.
    Warning,
    /// Someone should act.
    Critical,
}

impl Severity {
    /// Name in reports and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A value that must never be shown: webhook URLs, signing secrets, header values.
///
/// `Debug`, `Display` and `Serialize` print `***`; only [`Secret::expose`] gives the value, at the point of use.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(v: impl Into<String>) -> Secret {
        Secret(v.into())
    }
    /// The value itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// One place reports go; `type` picks the kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// Human-readable lines on stderr.
    Log(LogSink),
    /// One JSON object per finding appended to a file (the audit trail).
    Jsonl(JsonlSink),
    /// Slack (or Mattermost, Rocket.Chat) incoming webhook with Block Kit.
    Slack(SlackSink),
    /// Generic JSON POST of the report, HMAC-signed when `secret` is set.
    Webhook(WebhookSink),
    /// Metrics: `/metrics` in the daemon, a Pushgateway push after one-shot runs.
    Prometheus(PrometheusSink),
}

impl SinkConfig {
    /// The `type` as written.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Log(_) => "log",
            SinkConfig::Jsonl(_) => "jsonl",
            SinkConfig::Slack(_) => "slack",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Prometheus(_) => "prometheus",
        }
    }

    /// The sink's unique name: its `name`, else its type. Delivery marks in the outbox are kept per name.
    pub fn name(&self) -> &str {
        let given = match self {
            SinkConfig::Log(s) => &s.name,
            SinkConfig::Jsonl(s) => &s.name,
            SinkConfig::Slack(s) => &s.name,
            SinkConfig::Webhook(s) => &s.name,
            SinkConfig::Prometheus(s) => &s.name,
        };
        given.as_deref().unwrap_or(self.kind())
    }

    /// Findings below this severity are not sent to this sink.
    pub fn min_severity(&self) -> Severity {
        match self {
            SinkConfig::Log(s) => s.min_severity,
            SinkConfig::Jsonl(s) => s.min_severity,
            SinkConfig::Slack(s) => s.min_severity,
            SinkConfig::Webhook(s) => s.min_severity,
            SinkConfig::Prometheus(_) => Severity::Info,
        }
    }

    /// How long before the day's first scheduled action this sink gets the day's plan, if at all.
    pub fn announce(&self) -> Option<Duration> {
        match self {
            SinkConfig::Slack(s) => s.announce,
            SinkConfig::Webhook(s) => s.announce,
            SinkConfig::Log(_) | SinkConfig::Jsonl(_) | SinkConfig::Prometheus(_) => None,
        }
    }
}

/// `type: log` — lines on stderr.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSink {
    /// Unique sink name; default `log`.
    #[serde(default)]
    pub name: Option<String>,
    /// Lowest severity written; default `info`.
    #[serde(default)]
    pub min_severity: Severity,
}

/// `type: jsonl` — the audit trail: one JSON object per finding, fsynced once per run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSink {
    /// Unique sink name; default `jsonl`.
    #[serde(default)]
    pub name: Option<String>,
    /// File appended to, relative to the policy file.
    pub path: String,
    /// Lowest severity written; default `info`.
    #[serde(default)]
    pub min_severity: Severity,
}

/// `type: slack` — an incoming webhook (Slack, Mattermost, Rocket.Chat).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSink {
    /// Unique sink name; default `slack`.
    #[serde(default)]
    pub name: Option<String>,
    /// The incoming-webhook URL; write `${SLACK_WEBHOOK_URL}` and keep it in the environment.
    pub webhook_url: Secret,
    /// Lowest severity posted; default `info`.
    #[serde(default)]
    pub min_severity: Severity,
    /// Post the day's plan this long before the day's first scheduled action (e.g. `30m`).
    #[serde(default)]
    pub announce: Option<Duration>,
    /// Channel override (honoured by Mattermost and legacy Slack webhooks).
    #[serde(default)]
    pub channel: Option<String>,
    /// Display name override; default `simian`.
    #[serde(default)]
    pub username: Option<String>,
}

/// `type: webhook` — the report as JSON, POSTed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    /// Unique sink name; default `webhook`.
    #[serde(default)]
    pub name: Option<String>,
    /// Where to POST.
    pub url: Secret,
    /// HMAC-SHA256 key: the body is signed into `X-Simian-Signature: sha256=<hex>`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Extra request headers (e.g. `Authorization`); values are treated as secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Lowest severity sent; default `info`.
    #[serde(default)]
    pub min_severity: Severity,
    /// Send the day's plan this long before the day's first scheduled action.
    #[serde(default)]
    pub announce: Option<Duration>,
}

/// `type: prometheus` — `/metrics` in the daemon; one-shot runs push to `pushgateway` when set.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSink {
    /// Unique sink name; default `prometheus`.
    #[serde(default)]
    pub name: Option<String>,
    /// Pushgateway base URL, e.g. `http://127.0.0.1:9091`.
    #[serde(default)]
    pub pushgateway: Option<String>,
}

/// An internally tagged section item (`targets[]`, `sinks[]`) read without buffering it: serde's derived internal
/// tagging copies the whole item first, which for a 100,000-host target costs a second copy of it. Keys written
/// before `type` (a `name`, usually) are buffered; from `type` on, the mapping streams into the kind's struct.
pub(crate) trait TypeFirst: Sized {
    /// What one item is called in messages: `target`, `sink`.
    const WHAT: &'static str;
    /// The known `type`s.
    const TYPES: &'static [&'static str];
    /// The item of kind `kind` from the rest of its mapping.
    fn read<'de, A: serde::de::MapAccess<'de>>(kind: &str, rest: A) -> Result<Self, A::Error>;
}

struct TypeFirstVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: TypeFirst> serde::de::Visitor<'de> for TypeFirstVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} mapping with a `type` key", T::WHAT)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut before = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if k == "type" {
                let kind: String = map.next_value()?;
                return T::read(&kind, Buffered { before: before.into_iter(), value: None, rest: map });
            }
            before.push((k, map.next_value::<serde_yaml::Value>()?));
        }
        Err(serde::de::Error::missing_field("type"))
    }
}

/// The entries read before `type`, then the rest of the mapping.
struct Buffered<A> {
    before: std::vec::IntoIter<(String, serde_yaml::Value)>,
    value: Option<serde_yaml::Value>,
    rest: A,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for Buffered<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.before.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(serde::de::value::StringDeserializer::new(k)).map(Some)
            }
            None => self.rest.next_key_seed(seed),
        }
    }

    fn next_value_seed<S: serde::de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(crate::yaml::Lenient(v)).map_err(serde::de::Error::custom),
            None => self.rest.next_value_seed(seed),
        }
    }
}

/// The kind's struct from the rest of a mapping.
fn rest<'de, A: serde::de::MapAccess<'de>, T: Deserialize<'de>>(rest: A) -> Result<T, A::Error> {
    T::deserialize(serde::de::value::MapAccessDeserializer::new(rest))
}

impl TypeFirst for TargetConfig {
    const WHAT: &'static str = "target";
    const TYPES: &'static [&'static str] = &["hosts", "aws_ec2"];

    fn read<'de, A: serde::de::MapAccess<'de>>(kind: &str, map: A) -> Result<Self, A::Error> {
        match kind {
            "hosts" => rest(map).map(TargetConfig::Hosts),
            "aws_ec2" => rest(map).map(TargetConfig::AwsEc2),
            other => Err(serde::de::Error::unknown_variant(other, Self::TYPES)),
        }
    }
}

impl TypeFirst for SinkConfig {
    const WHAT: &'static str = "sink";
    const TYPES: &'static [&'static str] = &["log", "jsonl", "slack", "webhook", "prometheus"];

    fn read<'de, A: serde::de::MapAccess<'de>>(kind: &str, map: A) -> Result<Self, A::Error> {
        match kind {
            "log" => rest(map).map(SinkConfig::Log),
            "jsonl" => rest(map).map(SinkConfig::Jsonl),
            "slack" => rest(map).map(SinkConfig::Slack),
            "webhook" => rest(map).map(SinkConfig::Webhook),
            "prometheus" => rest(map).map(SinkConfig::Prometheus),
            other => Err(serde::de::Error::unknown_variant(other, Self::TYPES)),
        }
    }
}

impl<'de> Deserialize<'de> for TargetConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TypeFirstVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TypeFirstVisitor(std::marker::PhantomData))
    }
}
