//! The `hosts` target: a static inventory from the policy, acted on through argv templates and an executor.

use std::time::Duration;

use simian_config::HostsTarget;
use simian_monkeys::{ActionError, Instance, Undo};
use tracing::info;

use crate::exec::{display_argv, ExecError, Executor, Output};
use crate::template;

/// Per-command timeout when the target sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `type: hosts` target at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    name: String,
    executor: Executor,
    terminate: Option<Vec<String>>,
    isolate: Option<Vec<String>>,
    restore: Option<Vec<String>>,
    timeout: Duration,
    hosts: Vec<Instance>,
}

impl Hosts {
    /// Builds the target from its configuration (templates are checked when used; validation checks them first).
    pub fn from_config(config: &HostsTarget) -> Self {
        let hosts = config
            .hosts
            .iter()
            .map(|h| Instance {
                target: config.name.clone(),
                id: h.id.clone(),
                address: h.address.clone(),
                group: h.group.clone(),
                zone: h.zone.clone(),
                region: None,
                tags: h.tags.clone(),
            })
            .collect();
        Hosts {
            name: config.name.clone(),
            executor: Executor::from_config(&config.executor),
            terminate: config.terminate.clone(),
            isolate: config.isolate.clone(),
            restore: config.restore.clone(),
            timeout: config.timeout.map(|d| d.std()).unwrap_or(DEFAULT_TIMEOUT),
            hosts,
        }
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How commands reach the hosts.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The hosts as instances, in policy order.
    pub fn inventory(&self) -> Vec<Instance> {
        self.hosts.clone()
    }

    /// The configured host with `inst`'s id, if this target has it.
    fn host(&self, inst: &Instance) -> Result<&Instance, ActionError> {
        self.hosts
            .iter()
            .find(|h| h.id == inst.id)
            .ok_or_else(|| ActionError(format!("target `{}` has no host `{}`", self.name, inst.id)))
    }

    /// Runs `argv` (already rendered) for `inst` through this target's executor and timeout.
    pub async fn run(&self, inst: &Instance, argv: &[String]) -> Result<Output, ExecError> {
        self.executor.run(inst, argv, self.timeout).await
    }

    /// Terminates `inst` by rendering and running the `terminate` template; `Ok` says what ran.
    ///
    /// The host is looked up by id in this target's inventory, and the template is rendered from the policy's
    /// view of it, so a stale or foreign `Instance` cannot steer the command.
    pub async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        let template = self.template(&self.terminate, "terminate")?;
        let host = self.host(inst)?;
        let ran = self.render_and_run(template, host).await?;
        info!(target_name = %self.name, instance = %host.id, group = %host.group, "terminated instance");
        Ok(ran)
    }

    /// Everything needed to undo an isolation of `inst`: the policy's view of the host.
    pub fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        self.template(&self.isolate, "isolate")?;
        self.template(&self.restore, "restore")?;
        Ok(Undo::HostsCommand { instance: self.host(inst)?.clone() })
    }

    /// Cuts `inst` off by rendering and running the `isolate` template for the host (looked up by id).
    pub async fn isolate(&self, inst: &Instance) -> Result<String, ActionError> {
        let template = self.template(&self.isolate, "isolate")?;
        let host = self.host(inst)?;
        let ran = self.render_and_run(template, host).await?;
        info!(target_name = %self.name, instance = %host.id, group = %host.group, "isolated instance");
        Ok(ran)
    }

    /// Undoes an isolation by rendering the `restore` template from the journaled instance in `undo` (so a host
    /// since removed from the policy is still restored); safe to repeat when the template is.
    pub async fn restore(&self, undo: &Undo) -> Result<String, ActionError> {
        let Undo::HostsCommand { instance } = undo else {
            return Err(ActionError(format!("target `{}` cannot restore an EC2 undo record", self.name)));
        };
        let template = self.template(&self.restore, "restore")?;
        let ran = self.render_and_run(template, instance).await?;
        info!(target_name = %self.name, instance = %instance.id, group = %instance.group, "restored instance");
        Ok(ran)
    }

    /// The template `what`, or an error naming the target.
    fn template<'a>(
        &self,
        template: &'a Option<Vec<String>>,
        what: &str,
    ) -> Result<&'a [String], ActionError> {
        template
            .as_deref()
            .ok_or_else(|| ActionError(format!("target `{}` has no `{what}` command", self.name)))
    }

    /// Renders `template` for `host`, runs it, and says what ran.
    async fn render_and_run(&self, template: &[String], host: &Instance) -> Result<String, ActionError> {
        let argv = template::render(template, host).map_err(|e| ActionError(e.to_string()))?;
        let full = self.executor.command_line(host, &argv).map_err(|e| ActionError(e.to_string()))?;
        self.run(host, &argv).await.map_err(|e| ActionError(e.to_string()))?;
        Ok(format!("ran `{}`", display_argv(&full)))
    }
}
