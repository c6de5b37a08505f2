//! The `hosts` target: a static inventory from the policy, acted on through argv templates and an executor.

use std::sync::Arc;
use std::time::Duration;

use simian_config::{HostConfig, HostsTarget};
use simian_monkeys::{ActionError, CommandOutput, Instance, Undo};
use tracing::info;

use crate::command::{display_argv, ExecError, Output};
use crate::exec::Executor;
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
    /// Sorted by id, and shared with every inventory handed out (never copied per round).
    hosts: Arc<[Instance]>,
}

impl Hosts {
    /// Builds the target from its configuration (templates are checked when used; validation checks them first).
    pub fn from_config(config: &HostsTarget) -> Self {
        Self::with_hosts(config, config.hosts.clone())
    }

    /// Like [`Hosts::from_config`], but moves the host list out of `config` instead of copying it: an engine
    /// holds a 100,000-host policy's hosts once, as this target's instances.
    pub fn take_from_config(config: &mut HostsTarget) -> Self {
        let hosts = std::mem::take(&mut config.hosts);
        Self::with_hosts(config, hosts)
    }

    fn with_hosts(config: &HostsTarget, hosts: Vec<HostConfig>) -> Self {
        let mut hosts = hosts
            .into_iter()
            .map(|h| Instance {
                target: config.name.clone(),
                id: h.id,
                address: h.address,
                group: h.group,
                zone: h.zone,
                region: None,
                url: h.url,
                tags: h.tags,
            })
            .collect::<Vec<_>>();
        hosts.sort_by(Instance::inventory_order);
        Hosts {
            name: config.name.clone(),
            executor: Executor::from_config(&config.executor),
            terminate: config.terminate.clone(),
            isolate: config.isolate.clone(),
            restore: config.restore.clone(),
            timeout: config.timeout.map(|d| d.std()).unwrap_or(DEFAULT_TIMEOUT),
            hosts: hosts.into(),
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

    /// The hosts as instances, sorted by id: the target's own list, shared.
    pub fn inventory(&self) -> Arc<[Instance]> {
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

    /// Runs `argv` on the configured host with `inst`'s id through the executor and timeout; a non-zero exit
    /// is returned in the output, not as an error.
    pub async fn run_on(&self, inst: &Instance, argv: &[String]) -> Result<CommandOutput, ActionError> {
        let host = self.host(inst)?;
        self.output(host, argv).await
    }

    /// Runs `argv` for `host` (taken as is) and returns its output whatever its exit status.
    async fn output(&self, host: &Instance, argv: &[String]) -> Result<CommandOutput, ActionError> {
        let out = self
            .executor
            .output(host, argv, self.timeout)
            .await
            .map_err(|e| ActionError(format!("on `{}`: {e}", host.id)))?;
        Ok(CommandOutput { stdout: out.stdout, stderr: out.stderr, status: out.status })
    }

    /// Undoes a fault recorded in `undo`, acting on the journaled instance (so a host since removed from the
    /// policy is still restored); safe to repeat.
    ///
    /// - an isolation: renders and runs the `restore` template;
    /// - a netem qdisc: deletes it only while `tc qdisc show` still lists simian's handle as the root qdisc,
    ///   then checks that the handle is gone.
    pub async fn restore(&self, undo: &Undo) -> Result<String, ActionError> {
        let instance = match undo {
            Undo::HostsCommand { instance } => instance,
            Undo::Netem { instance, interface, handle } => {
                return self.remove_netem(instance, interface, handle).await;
            }
            Undo::Ec2Groups { .. } => {
                return Err(ActionError(format!("target `{}` cannot restore an EC2 undo record", self.name)));
            }
        };
        let template = self.template(&self.restore, "restore")?;
        let ran = self.render_and_run(template, instance).await?;
        info!(target_name = %self.name, instance = %instance.id, group = %instance.group, "restored instance");
        Ok(ran)
    }

    /// Deletes simian's root qdisc `handle` on `interface` of `host` if it is still the root, then verifies it
    /// is gone.
    async fn remove_netem(
        &self,
        host: &Instance,
        interface: &str,
        handle: &str,
    ) -> Result<String, ActionError> {
        let show: Vec<String> = ["tc", "qdisc", "show", "dev", interface].map(String::from).to_vec();
        let before = self.qdiscs(host, &show).await?;
        let ours_is_root = before.iter().any(|q| q.root && same_handle(&q.handle, handle));
        if ours_is_root {
            let del: Vec<String> =
                ["tc", "qdisc", "del", "dev", interface, "root", "handle", handle].map(String::from).to_vec();
            let out = self.output(host, &del).await?;
            if out.status != 0 {
                return Err(ActionError(format!(
                    "on `{}`: `{}` exited with status {}: {}",
                    host.id,
                    display_argv(&del),
                    out.status,
                    out.stderr.trim()
                )));
            }
        }
        let after = self.qdiscs(host, &show).await?;
        if let Some(left) = after.iter().find(|q| same_handle(&q.handle, handle)) {
            return Err(ActionError(format!(
                "on `{}`: simian's qdisc {handle} is still on {interface} after removal ({} {})",
                host.id,
                left.kind,
                if left.root { "root" } else { "not root" }
            )));
        }
        let note = if ours_is_root {
            format!("removed netem qdisc {handle} from {interface} on `{}`", host.id)
        } else {
            format!("netem qdisc {handle} was already gone from {interface} on `{}`", host.id)
        };
        info!(target_name = %self.name, instance = %host.id, interface = %interface, handle = %handle, removed = ours_is_root, "restored network interface");
        Ok(note)
    }

    /// The qdiscs `tc qdisc show` lists on `host`; an error when it does not exit 0.
    async fn qdiscs(&self, host: &Instance, show: &[String]) -> Result<Vec<Qdisc>, ActionError> {
        let out = self.output(host, show).await?;
        if out.status != 0 {
            return Err(ActionError(format!(
                "on `{}`: `{}` exited with status {}: {}",
                host.id,
                display_argv(show),
                out.status,
                out.stderr.trim()
            )));
        }
        Ok(parse_qdiscs(&out.stdout))
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
        let shown = self.executor.describe(host, &argv).map_err(|e| ActionError(e.to_string()))?;
        self.run(host, &argv).await.map_err(|e| ActionError(e.to_string()))?;
        Ok(format!("ran {shown}"))
    }
}

/// One line of `tc qdisc show`: `qdisc netem 5117: root refcnt 2 limit 1000 delay 200ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Qdisc {
    kind: String,
    handle: String,
    root: bool,
}

/// The qdiscs listed by `tc qdisc show` (lines that do not start with `qdisc` are skipped).
fn parse_qdiscs(text: &str) -> Vec<Qdisc> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "qdisc" {
                return None;
            }
            let kind = words.next()?.to_string();
            let handle = words.next()?.to_string();
            let root = words.next() == Some("root");
            Some(Qdisc { kind, handle, root })
        })
        .collect()
}

/// True when two qdisc handles name the same major (`5117:` = `5117` = `5117:0`).
fn same_handle(a: &str, b: &str) -> bool {
    fn major(h: &str) -> &str {
        let h = h.trim();
        let major = h.split(':').next().unwrap_or(h);
        major.trim_start_matches('0')
    }
    !major(a).is_empty() && major(a) == major(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tc_qdisc_show() {
        let text = "qdisc netem 5117: root refcnt 2 limit 1000 delay 200ms\n\
                    qdisc fq_codel 0: parent :1 limit 10240p flows 1024\n\
                    garbage\n";
        let qs = parse_qdiscs(text);
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0], Qdisc { kind: "netem".into(), handle: "5117:".into(), root: true });
        assert!(!qs[1].root);
        assert!(same_handle("5117:", "5117"));
        assert!(same_handle("5117:", "5117:0"));
        assert!(!same_handle("5117:", "511:"));
        assert!(!same_handle("0:", "0:"));
    }
}
