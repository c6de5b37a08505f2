//! simian-targets: adapters that list instances and carry actions out.
//!
//! [`Target`] is one configured source of instances (today: a static `hosts` list); [`Fleet`] is every target of
//! a policy and routes each action to the target its instance came from. Both implement the monkeys'
//! [`Actuator`] port. Commands are argv [`template`]s run by an [`exec::Executor`], never through a shell.
#![forbid(unsafe_code)]

pub mod exec;
pub mod hosts;
pub mod template;

use simian_config::{Policy, TargetConfig};
use simian_monkeys::{ActionError, Actuator, Instance, Undo};

pub use exec::{display_argv, ExecError, Executor, Output};
pub use hosts::Hosts;
pub use template::{Placeholder, TemplateError};

/// Why a target could not list its instances.
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
}

/// One configured target at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A static list of hosts.
    Hosts(Hosts),
}

impl Target {
    /// Builds the runtime target from its configuration.
    pub fn from_config(config: &TargetConfig) -> Self {
        match config {
            TargetConfig::Hosts(h) => Target::Hosts(Hosts::from_config(h)),
            TargetConfig::AwsEc2(_) => todo!("aws_ec2 target"),
        }
    }

    /// The target's unique name.
    pub fn name(&self) -> &str {
        match self {
            Target::Hosts(h) => h.name(),
        }
    }

    /// The instances this target knows about.
    pub async fn inventory(&self) -> Result<Vec<Instance>, TargetError> {
        match self {
            Target::Hosts(h) => Ok(h.inventory()),
        }
    }
}

impl Actuator for Target {
    async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        match self {
            Target::Hosts(h) => h.terminate(inst).await,
        }
    }

    async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        let mut out = Vec::with_capacity(insts.len());
        for inst in insts {
            out.push(self.terminate(inst).await);
        }
        out
    }

    async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        match self {
            Target::Hosts(_) => Ok(Undo::HostsCommand { instance: inst.clone() }),
        }
    }

    async fn isolate(&self, _inst: &Instance, _undo: &Undo) -> Result<String, ActionError> {
        Err(ActionError("isolate: not implemented yet".into()))
    }

    async fn restore(&self, _target: &str, _undo: &Undo) -> Result<String, ActionError> {
        Err(ActionError("restore: not implemented yet".into()))
    }
}

/// Every target of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fleet {
    targets: Vec<Target>,
}

impl Fleet {
    /// Builds every target the policy lists, in policy order.
    pub fn from_policy(policy: &Policy) -> Self {
        Fleet::new(policy.targets.iter().map(Target::from_config).collect())
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
    pub async fn inventory(&self) -> Result<Vec<Instance>, TargetError> {
        let mut all = Vec::new();
        for target in &self.targets {
            all.extend(target.inventory().await?);
        }
        all.sort_by(|a, b| (&a.target, &a.id).cmp(&(&b.target, &b.id)));
        Ok(all)
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

    async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        let mut out = Vec::with_capacity(insts.len());
        for inst in insts {
            out.push(self.terminate(inst).await);
        }
        out
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
}
