//! The model every room shares: instances, findings and reports, plus the port actions go through.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
pub use simian_config::{Mode, MonkeyName, Severity};

/// One machine (process, container, VM) a target knows about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instance {
    /// Name of the target it came from.
    pub target: String,
    /// Unique id within the target.
    pub id: String,
    /// Network address, if known.
    pub address: Option<String>,
    /// Instance group (autoscaling group, service, …).
    pub group: String,
    /// Availability zone, if known.
    pub zone: Option<String>,
    /// Cloud region, if any.
    #[serde(default)]
    pub region: Option<String>,
    /// Health URL (Doctor) and `Date` source (10-18) of this instance, if the target gives one.
    #[serde(default)]
    pub url: Option<String>,
    /// Tags, including the opt-in tag.
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// The one order of every inventory and of what is reported about it: by target, then id (a seeded
    /// selection replays only over the same order).
    pub fn inventory_order(&self, other: &Instance) -> std::cmp::Ordering {
        (&self.target, &self.id).cmp(&(&other.target, &other.id))
    }
}

/// What a monkey did (or would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Terminate an instance.
    Terminate,
    /// Cut an instance off the network (reversible).
    Isolate,
    /// Undo an isolation.
    Restore,
    /// Add network delay (Latency Monkey).
    InjectLatency,
    /// Take the delay away again.
    RevertLatency,
    /// Doctor: an instance became unhealthy.
    Unhealthy,
    /// Doctor: an instance recovered.
    Recovered,
    /// Doctor: a probe could not be made (no URL, executor failure).
    ProbeError,
    /// 10-18: timezone differs from the expectation or the group's majority.
    TimezoneDrift,
    /// 10-18: locale differs.
    LocaleDrift,
    /// 10-18: clock is off by more than `max_clock_skew`.
    ClockSkew,
    /// The run as a whole (used by run-level refusals such as the kill switch).
    Run,
    /// A steady-state measurement: the baseline, the recovery, the capacity during the fault.
    Experiment,
    /// The steady state broke during the fault: the round stopped acting and reverted.
    Abort,
}

impl Action {
    /// Name in reports and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Terminate => "terminate",
            Action::Isolate => "isolate",
            Action::Restore => "restore",
            Action::InjectLatency => "inject_latency",
            Action::RevertLatency => "revert_latency",
            Action::Unhealthy => "unhealthy",
            Action::Recovered => "recovered",
            Action::ProbeError => "probe_error",
            Action::TimezoneDrift => "timezone_drift",
            Action::LocaleDrift => "locale_drift",
            Action::ClockSkew => "clock_skew",
            Action::Run => "run",
            Action::Experiment => "experiment",
            Action::Abort => "abort",
        }
    }

    /// Every action, for decoding stored names.
    pub const ALL: [Action; 14] = [
        Action::Terminate,
        Action::Isolate,
        Action::Restore,
        Action::InjectLatency,
        Action::RevertLatency,
        Action::Unhealthy,
        Action::Recovered,
        Action::ProbeError,
        Action::TimezoneDrift,
        Action::LocaleDrift,
        Action::ClockSkew,
        Action::Run,
        Action::Experiment,
        Action::Abort,
    ];
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dry-run: would have been done.
    Planned,
    /// Carried out.
    Done,
    /// Tried and failed.
    Failed,
    /// Refused by a guard or a limit; the message says why.
    Skipped,
}

impl Outcome {
    /// Name in reports and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Planned => "planned",
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

pub(crate) fn monkey_ser<S: serde::Serializer>(m: &MonkeyName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

pub(crate) fn monkey_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<MonkeyName, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// One thing a monkey found or did; the unit of reports, history and sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Which monkey.
    #[serde(serialize_with = "monkey_ser", deserialize_with = "monkey_de")]
    pub monkey: MonkeyName,
    /// What it did.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// Target name; null for run-level findings.
    pub target: Option<String>,
    /// Instance id; null for run-level findings.
    pub instance: Option<String>,
    /// Group; null for run-level findings.
    pub group: Option<String>,
    /// Zone; null when unknown or run-level.
    pub zone: Option<String>,
    /// How much it matters.
    pub severity: Severity,
    /// What happened and why, in a sentence.
    pub message: String,
    /// Structured extras (Latency Monkey: interface, delay, jitter, loss, deadline); omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl Finding {
    /// A finding about the whole run (no instance).
    pub fn run_level(
        monkey: MonkeyName,
        outcome: Outcome,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            monkey,
            action: Action::Run,
            outcome,
            target: None,
            instance: None,
            group: None,
            zone: None,
            severity,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    /// A finding about one instance.
    pub fn about(
        monkey: MonkeyName,
        action: Action,
        outcome: Outcome,
        severity: Severity,
        inst: &Instance,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            monkey,
            action,
            outcome,
            target: Some(inst.target.clone()),
            instance: Some(inst.id.clone()),
            group: Some(inst.group.clone()),
            zone: inst.zone.clone(),
            severity,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }
}

/// What one run found and did (the `--format json` contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Unique id of the run.
    pub run_id: String,
    /// `dry-run` or `live`: the mode the run actually had.
    pub mode: Mode,
    /// The RNG seed; the same seed, inventory and history replay the decisions.
    pub seed: u64,
    /// Start, RFC 3339 in the policy's timezone.
    pub started_at: DateTime<FixedOffset>,
    /// End, RFC 3339 in the policy's timezone.
    pub finished_at: DateTime<FixedOffset>,
    /// Cloud API calls (HTTP attempts) the run made; 0 for targets without an API.
    #[serde(default)]
    pub api_calls: u64,
    /// Per-monkey summaries (`doctor`, `ten_eighteen`); omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub summary: BTreeMap<String, serde_json::Value>,
    /// Everything found and done.
    pub findings: Vec<Finding>,
    /// The steady-state experiment of the run (the one that went worst when several monkeys ran one);
    /// `null` when no probe watched it.
    #[serde(default)]
    pub experiment: Option<crate::experiment::Experiment>,
    /// Every experiment of the run, one per acting monkey a probe watched; omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<crate::experiment::Experiment>,
}

impl Report {
    /// True when at least one action failed (exit code 1).
    pub fn any_failed(&self) -> bool {
        self.findings.iter().any(|f| f.outcome == Outcome::Failed)
    }
}

/// Why an action on an instance failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

/// What it takes to undo a reversible fault; journaled (as JSON) *before* the fault is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// EC2 isolation: put these security groups back on the instance.
    Ec2Groups {
        /// Region of the instance.
        region: String,
        /// The instance.
        instance_id: String,
        /// Its security groups before isolation, in order.
        groups: Vec<String>,
        /// The deny-all group that replaced them.
        isolation_group: String,
    },
    /// hosts isolation: run the target's `restore` template for this instance.
    HostsCommand {
        /// The instance as it was when isolated (the template's values).
        instance: Instance,
    },
    /// Latency Monkey's netem: delete simian's root qdisc on this interface, if it is still simian's.
    Netem {
        /// The instance (reached through its target's executor).
        instance: Instance,
        /// Network interface.
        interface: String,
        /// simian's qdisc handle, e.g. `5117:`.
        handle: String,
    },
}

/// What a command run on an instance printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status (0 = success).
    pub status: i32,
}

/// The port through which monkeys change the world; targets implement it.
pub trait Actuator: Sync {
    /// Terminate `inst`; on success a short note of what was run.
    fn terminate(&self, inst: &Instance) -> impl Future<Output = Result<String, ActionError>> + Send;

    /// Terminate several instances (batched where the target can); one result per instance, in order.
    fn terminate_many(
        &self,
        insts: &[Instance],
    ) -> impl Future<Output = Vec<Result<String, ActionError>>> + Send;

    /// Everything needed to undo an isolation of `inst`, read before anything changes on it.
    /// May create the (empty, deny-all) isolation group; never touches the instance.
    fn prepare_isolation(&self, inst: &Instance) -> impl Future<Output = Result<Undo, ActionError>> + Send;

    /// Cut `inst` off the network, as described by `undo`.
    fn isolate(
        &self,
        inst: &Instance,
        undo: &Undo,
    ) -> impl Future<Output = Result<String, ActionError>> + Send;

    /// Undo an isolation of an instance of target `target`; safe to repeat.
    fn restore(&self, target: &str, undo: &Undo) -> impl Future<Output = Result<String, ActionError>> + Send;

    /// Run argv on the instance through its target's executor; a non-zero exit is returned, not an error
    /// (monkeys probe with it). Err = the command could not run at all (no executor, timeout, ssh failure).
    fn run_on(
        &self,
        inst: &Instance,
        argv: &[String],
    ) -> impl Future<Output = Result<CommandOutput, ActionError>> + Send;
}
