//! simian-targets: adapters that list instances and carry actions out.
//!
//! [`Target`] is one configured source of instances (a static `hosts` list, or EC2 through [`aws_ec2`]); [`Fleet`]
//! is every target of a policy and routes each action to the target its instance came from. Both implement the
//! monkeys' [`Actuator`] port. Commands are argv [`template`]s run by an [`exec::Executor`], never through a local
//! shell; over [`ssh`] each argument is quoted once, by [`shell_quote`], for the remote shell.
#![forbid(unsafe_code)]

pub mod aws_ec2;
pub mod command;
pub mod exec;
pub mod hosts;
pub mod quote;
pub mod ssh;
pub mod template;

use std::sync::Arc;

use simian_config::{OptIn, Policy, TargetConfig};
use simian_monkeys::{ActionError, Actuator, CommandOutput, Instance, Undo};

pub use aws_ec2::Ec2Target;
pub use command::{display_argv, ExecError, Output};
pub use exec::Executor;
pub use hosts::Hosts;
pub use quote::shell_quote;
pub use ssh::SshExecutor;
pub use template::{Placeholder, TemplateError};

/// Why a target could not list its instances.
///
/// `Credentials` and `Unreachable` are configuration problems (the binary exits 2 on them); `Inventory` is any
/// other failure of the listing call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Listing the instances of a target failed.
    #[error("cannot list the instances of target `{target}`: {reason}")]
    Inventory {
        /// The target's name.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// No credentials could be found, or the cloud refused them.
    #[error("target `{target}` has no usable AWS credentials: {reason}")]
    Credentials {
        /// The target's name.
        target: String,
        /// What went wrong (never the secret itself).
        reason: String,
    },
    /// The API endpoint could not be reached (connection refused, timeout, DNS).
    #[error("target `{target}` cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The target's name.
        target: String,
        /// The endpoint tried (the `endpoint_url`, else the region's default).
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

impl TargetError {
    /// The name of the target that failed.
    pub fn target(&self) -> &str {
        match self {
            TargetError::Inventory { target, .. }
            | TargetError::Credentials { target, .. }
            | TargetError::Unreachable { target, .. } => target,
        }
    }
}

/// One configured target at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A static list of hosts.
    Hosts(Hosts),
    /// EC2 instances.
    AwsEc2(Ec2Target),
}

impl Target {
    /// Builds the runtime target from its configuration; `policy_opt_in` is the policy's opt-in rule, used when
    /// the target sets none (an EC2 target filters on it server-side). No I/O happens here.
    pub fn from_config(config: &TargetConfig, policy_opt_in: &OptIn) -> Self {
        match config {
            TargetConfig::Hosts(h) => Target::Hosts(Hosts::from_config(h)),
            TargetConfig::AwsEc2(a) => {
                Target::AwsEc2(Ec2Target::from_config(a, config.opt_in(policy_opt_in)))
            }
        }
    }

    /// Like [`Target::from_config`], but a `hosts` target takes its host list out of `config`
    /// ([`Hosts::take_from_config`]).
    pub fn take_from_config(config: &mut TargetConfig, policy_opt_in: &OptIn) -> Self {
        match config {
            TargetConfig::Hosts(h) => Target::Hosts(Hosts::take_from_config(h)),
            TargetConfig::AwsEc2(_) => Target::from_config(config, policy_opt_in),
        }
    }

    /// The target's unique name.
    pub fn name(&self) -> &str {
        match self {
            Target::Hosts(h) => h.name(),
            Target::AwsEc2(a) => a.name(),
        }
    }

    /// The instances this target knows about (for EC2: running and opted in), sorted by id.
    pub async fn inventory(&self) -> Result<Arc<[Instance]>, TargetError> {
        match self {
            Target::Hosts(h) => Ok(h.inventory()),
            Target::AwsEc2(a) => {
                let mut all = a.inventory().await?;
                all.sort_by(Instance::inventory_order);
                Ok(all.into())
            }
        }
    }

    /// Cloud API calls (HTTP attempts) made so far; 0 for hosts.
    pub fn api_calls(&self) -> u64 {
        match self {
            Target::Hosts(_) => 0,
            Target::AwsEc2(a) => a.api_calls(),
        }
    }
}

impl Actuator for Target {
    async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        match self {
            Target::Hosts(h) => h.terminate(inst).await,
            Target::AwsEc2(a) => a.terminate(inst).await,
        }
    }

    async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        match self {
            Target::Hosts(h) => {
                let mut out = Vec::with_capacity(insts.len());
                for inst in insts {
                    out.push(h.terminate(inst).await);
                }
                out
            }
            Target::AwsEc2(a) => a.terminate_many(insts).await,
        }
    }

    async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        match self {
            Target::Hosts(h) => h.prepare_isolation(inst),
            Target::AwsEc2(a) => a.prepare_isolation(inst).await,
        }
    }

    async fn isolate(&self, inst: &Instance, undo: &Undo) -> Result<String, ActionError> {
        match self {
            Target::Hosts(h) => h.isolate(inst).await,
            Target::AwsEc2(a) => a.isolate(inst, undo).await,
        }
    }

    async fn restore(&self, target: &str, undo: &Undo) -> Result<String, ActionError> {
        if target != self.name() {
            return Err(ActionError(format!(
                "target `{}` cannot restore an instance of target `{target}`",
                self.name()
            )));
        }
        match self {
            Target::Hosts(h) => h.restore(undo).await,
            Target::AwsEc2(a) => a.restore(undo).await,
        }
    }

    async fn run_on(&self, inst: &Instance, argv: &[String]) -> Result<CommandOutput, ActionError> {
        if inst.target != self.name() {
            return Err(ActionError(format!(
                "target `{}` cannot run commands on an instance of target `{}`",
                self.name(),
                inst.target
            )));
        }
        match self {
            Target::Hosts(h) => h.run_on(inst, argv).await,
            Target::AwsEc2(a) => {
                Err(ActionError(format!("target `{}` (aws_ec2) cannot run commands on instances", a.name())))
            }
        }
    }
}

/// Every target of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fleet {
    targets: Vec<Target>,
}

impl Fleet {
    /// Builds every target the policy lists, in policy order (each with the policy's opt-in as its default).
    pub fn from_policy(policy: &Policy) -> Self {
        Fleet::new(policy.targets.iter().map(|t| Target::from_config(t, &policy.opt_in)).collect())
    }

    /// Like [`Fleet::from_policy`], but the `hosts` targets take their host lists out of `policy` (moved, not
    /// copied); what is left of the policy lists no hosts.
    pub fn take_from_policy(policy: &mut Policy) -> Self {
        let opt_in = &policy.opt_in;
        Fleet::new(policy.targets.iter_mut().map(|t| Target::take_from_config(t, opt_in)).collect())
    }

    /// Cloud API calls (HTTP attempts, retries included) made so far by every target; hosts count 0.
    pub fn api_calls(&self) -> u64 {
        self.targets.iter().map(Target::api_calls).sum()
    }

    /// A fleet of the given targets.
    pub fn new(targets: Vec<Target>) -> Self {
        Fleet { targets }
    }

    /// The targets, in policy order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The target named `name`, if any.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name() == name)
    }

    /// The instances of every target, sorted by (target, id); the first target that fails fails the whole.
    ///
    /// One target's list is handed out as it is (a hosts target's is shared, not copied: a sweep of 10,000
    /// hosts holds it once); several are merged.
    pub async fn inventory(&self) -> Result<Arc<[Instance]>, TargetError> {
        if let [one] = self.targets.as_slice() {
            return one.inventory().await;
        }
        let mut all = Vec::new();
        for target in &self.targets {
            all.extend(target.inventory().await?.iter().cloned());
        }
        all.sort_by(Instance::inventory_order);
        Ok(all.into())
    }
}

impl Fleet {
    fn route(&self, target: &str) -> Result<&Target, ActionError> {
        self.target(target)
            .ok_or_else(|| ActionError(format!("target `{target}` is not defined in the policy")))
    }
}

impl Actuator for Fleet {
    async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        self.route(&inst.target)?.terminate(inst).await
    }

    /// Groups the instances by target (targets in order of first appearance), lets each target batch its share,
    /// and returns the results in the order of `insts`.
    async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        let mut by_target: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, inst) in insts.iter().enumerate() {
            match by_target.iter_mut().find(|(t, _)| *t == inst.target) {
                Some((_, idxs)) => idxs.push(i),
                None => by_target.push((&inst.target, vec![i])),
            }
        }
        let mut out: Vec<Option<Result<String, ActionError>>> = vec![None; insts.len()];
        for (target, idxs) in by_target {
            match self.route(target) {
                Ok(t) => {
                    let share: Vec<Instance> = idxs.iter().map(|&i| insts[i].clone()).collect();
                    for (&i, result) in idxs.iter().zip(t.terminate_many(&share).await) {
                        out[i] = Some(result);
                    }
                }
                Err(e) => {
                    for &i in &idxs {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(ActionError("not attempted".into())))).collect()
    }

    async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        self.route(&inst.target)?.prepare_isolation(inst).await
    }

    async fn isolate(&self, inst: &Instance, undo: &Undo) -> Result<String, ActionError> {
        self.route(&inst.target)?.isolate(inst, undo).await
    }

    async fn restore(&self, target: &str, undo: &Undo) -> Result<String, ActionError> {
        self.route(target)?.restore(target, undo).await
    }

    async fn run_on(&self, inst: &Instance, argv: &[String]) -> Result<CommandOutput, ActionError> {
        self.route(&inst.target)?.run_on(inst, argv).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn taking_the_hosts_gives_the_same_fleet_and_leaves_the_policy_without_them() {
        let text = "version: 1\nstore: s.db\nmonkeys: { chaos: { schedule: \"0 10 * * *\" } }\ntargets:\n  \
                    - name: web\n    type: hosts\n    terminate: [\"true\"]\n    hosts:\n      \
                    - { id: b, group: g, tags: { simian:opt-in: \"true\" } }\n      \
                    - { id: a, group: g, url: \"http://127.0.0.1:1/\" }\n";
        let loaded =
            simian_config::load_str("p.yaml", text, std::path::Path::new("/tmp"), &|_| None).unwrap();
        let copied = Fleet::from_policy(&loaded.policy);
        let mut policy = loaded.policy.clone();
        let taken = Fleet::take_from_policy(&mut policy);
        assert_eq!(taken, copied);
        let inv = taken.inventory().await.unwrap();
        assert_eq!(inv.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(inv[1].tags.get("simian:opt-in").map(String::as_str), Some("true"));
        assert_eq!(inv[0].url.as_deref(), Some("http://127.0.0.1:1/"));
        match &policy.targets[0] {
            TargetConfig::Hosts(h) => assert!(h.hosts.is_empty()),
            TargetConfig::AwsEc2(_) => unreachable!("a hosts target"),
        }
        // Everything but the host list is left as it was.
        assert_eq!(policy.targets[0].name(), loaded.policy.targets[0].name());
    }
}
