//! The policy schema: serde types that mirror the YAML a user writes, field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;

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
    /// SQLite store file, relative to the policy file; default `simian.db` beside it.
    #[serde(default)]
    pub store: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
}

impl<'de> Deserialize<'de> for ExecutorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};

        const FIELDS: &[&str] = &["type", "argv"];

        fn unknown<E: de::Error>(kind: &str) -> E {
            E::custom(format!(
                "unknown executor `{kind}`; expected `local` or `{{ type: wrap, argv: [...] }}`"
            ))
        }

        struct ExecutorVisitor;

        impl<'de> Visitor<'de> for ExecutorVisitor {
            type Value = ExecutorConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`local` or a mapping `{ type: wrap, argv: [...] }`")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<ExecutorConfig, E> {
                match s {
                    "local" => Ok(ExecutorConfig::Local),
                    other => Err(unknown(other)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExecutorConfig, A::Error> {
                let mut kind: Option<String> = None;
                let mut argv: Option<Vec<String>> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "type" if kind.is_some() => return Err(de::Error::duplicate_field("type")),
                        "argv" if argv.is_some() => return Err(de::Error::duplicate_field("argv")),
                        "type" => kind = Some(map.next_value()?),
                        "argv" => argv = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                match (kind.as_deref(), argv) {
                    (Some("wrap"), Some(argv)) => Ok(ExecutorConfig::Wrap { argv }),
                    (Some("wrap"), None) => Err(de::Error::missing_field("argv")),
                    (Some("local"), None) => Ok(ExecutorConfig::Local),
                    (Some("local"), Some(_)) => {
                        Err(de::Error::custom("`argv` belongs to `type: wrap`; a local executor takes none"))
                    }
                    (Some(other), _) => Err(unknown(other)),
                    (None, _) => Err(de::Error::missing_field("type")),
                }
            }
        }

        d.deserialize_any(ExecutorVisitor)
    }
}
