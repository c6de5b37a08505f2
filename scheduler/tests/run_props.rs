//! Property tests of a whole run over random inventories and policies, with a recording actuator.

use std::sync::Mutex;

use proptest::prelude::*;
use simian_monkeys::{ActionError, Actuator, CommandOutput, Instance, Outcome, Undo};
use simian_scheduler::run::{run_once, RunContext, RunOptions};
use simian_scheduler::store::Store;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Instance>>,
}

impl Actuator for Recorder {
    async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        self.calls.lock().unwrap().push(inst.clone());
        Ok("recorded".into())
    }

    async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        self.calls.lock().unwrap().extend(insts.iter().cloned());
        insts.iter().map(|_| Ok("recorded".into())).collect()
    }

    async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        self.calls.lock().unwrap().push(inst.clone());
        Ok(Undo::HostsCommand { instance: inst.clone() })
    }

    async fn isolate(&self, inst: &Instance, _undo: &Undo) -> Result<String, ActionError> {
        self.calls.lock().unwrap().push(inst.clone());
        Ok("recorded".into())
    }

    async fn run_on(&self, inst: &Instance, _argv: &[String]) -> Result<CommandOutput, ActionError> {
        self.calls.lock().unwrap().push(inst.clone());
        Ok(CommandOutput::default())
    }

    async fn restore(&self, _target: &str, undo: &Undo) -> Result<String, ActionError> {
        let Undo::HostsCommand { instance } = undo else { return Err(ActionError("unexpected undo".into())) };
        self.calls.lock().unwrap().push(instance.clone());
        Ok("recorded".into())
    }
}

#[derive(Debug, Clone)]
struct Host {
    group: usize,
    opted: bool,
    exempt: bool,
}

fn arb_host() -> impl Strategy<Value = Host> {
    (0usize..4, any::<bool>(), any::<bool>()).prop_map(|(group, opted, exempt)| Host { group, opted, exempt })
}

const GROUPS: [&str; 4] = ["web", "api", "payments", "batch"];

fn policy_text(hosts: &[Host], live: bool, p: f64, limit: Option<u32>) -> String {
    let mut s = format!("version: 1\nmode: {}\n", if live { "live" } else { "dry-run" });
    s.push_str("exclude:\n  tags: { \"simian:exempt\": \"true\" }\n  groups: [\"pay*\"]\n");
    s.push_str("targets:\n  - name: lab\n    type: hosts\n    terminate: [\"true\"]\n    hosts:\n");
    for (i, h) in hosts.iter().enumerate() {
        let mut tags = Vec::new();
        if h.opted {
            tags.push("\"simian:opt-in\": \"true\"");
        }
        if h.exempt {
            tags.push("\"simian:exempt\": \"true\"");
        }
        s.push_str(&format!(
            "      - {{ id: h{i}, group: {}, zone: a, tags: {{ {} }} }}\n",
            GROUPS[h.group],
            tags.join(", ")
        ));
    }
    s.push_str(&format!("monkeys:\n  chaos:\n    schedule: \"* * * * *\"\n    probability: {p}\n"));
    if let Some(l) = limit {
        s.push_str(&format!("    max_kills_per_run: {l}\n"));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn dry_run_never_acts_and_live_only_touches_eligible(
        hosts in prop::collection::vec(arb_host(), 0..25),
        live in any::<bool>(),
        force_dry in any::<bool>(),
        p in 0.0f64..=1.0,
        limit in prop::option::of(0u32..4),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let text = policy_text(&hosts, live, p, limit);
        let load = || simian_config::load_str("p.yaml", &text, dir.path(), &|_| None).map_err(|e| e.to_string());
        let policy = load().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let fresh = || load().map(|p| std::sync::Arc::new(simian_scheduler::service::Fresh::new(p)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let rec = Recorder::default();
        let fleet = simian_targets::Fleet::from_policy(&policy.policy);
        let inventory = rt.block_on(fleet.inventory()).map_err(|e| e.to_string());
        let mut store = Store::open(&policy.store).unwrap();
        let opts = RunOptions { dry_run: force_dry, seed: Some(seed), ..Default::default() };
        let ctx = RunContext::new(&rec, inventory, &fresh);
        let report = rt.block_on(run_once(&policy, &opts, ctx, &mut store)).unwrap();
        let calls = rec.calls.into_inner().unwrap();

        if !live || force_dry {
            prop_assert!(calls.is_empty(), "dry-run called the actuator");
            prop_assert_eq!(report.mode.as_str(), "dry-run");
            prop_assert!(report.findings.iter().all(|f| f.outcome != Outcome::Done));
        }
        for victim in &calls {
            let i: usize = victim.id[1..].parse().unwrap();
            prop_assert!(hosts[i].opted, "not opted in: {}", victim.id);
            prop_assert!(!hosts[i].exempt, "exempt: {}", victim.id);
            prop_assert_ne!(GROUPS[hosts[i].group], "payments");
        }
        if let Some(l) = limit {
            prop_assert!(calls.len() <= l as usize);
            let acted = report.findings.iter().filter(|f| matches!(f.outcome, Outcome::Done | Outcome::Planned)).count();
            prop_assert!(acted <= l as usize);
        }
        // One victim per group at most, and each call is reported as done.
        let mut groups: Vec<_> = calls.iter().map(|c| c.group.clone()).collect();
        groups.sort();
        groups.dedup();
        prop_assert_eq!(groups.len(), calls.len());
        prop_assert_eq!(report.findings.iter().filter(|f| f.outcome == Outcome::Done).count(), calls.len());
    }
}
