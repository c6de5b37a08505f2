//! The one gate, property-tested over every acting monkey with a recording actuator (a pure-logic fake:
//! the real counterparts are in tests/stream_gate.rs, tests/latency_vm.rs and tests/aws_e2e.rs): dry-run
//! never reaches the actuator, live acts only on eligible instances, a halt in the store stops everything, and
//! an edit (or a halt) made by the first action stops the next.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use proptest::prelude::*;
use simian_monkeys::{ActionError, Actuator, CommandOutput, Instance, Outcome, Undo};
use simian_scheduler::run::{run_once, RunContext, RunOptions};
use simian_scheduler::store::Store;

/// Records every call; pretends to be a host with `tc`, a default route and netem.
#[derive(Default)]
struct Recorder {
    /// (what, instance id) per call.
    calls: Mutex<Vec<(String, String)>>,
    /// Root qdisc per instance after an add.
    roots: Mutex<BTreeMap<String, String>>,
    /// Created by the first mutation, if set (the kill switch).
    on_first_mutation: Option<PathBuf>,
    /// The store in which the first mutation records a halt (`simian halt` from another terminal), if set.
    halt_on_first_mutation: Option<PathBuf>,
    /// Breaks this store's fault journal (drops the table) at the first call named here: the store failing
    /// mid-round.
    break_journal_at: Option<(&'static str, PathBuf)>,
}

impl Recorder {
    fn record(&self, what: &str, inst: &Instance) {
        let mut calls = self.calls.lock().unwrap();
        if let Some((at, store)) = &self.break_journal_at {
            if what == *at && !calls.iter().any(|(w, _)| w == at) {
                rusqlite::Connection::open(store).unwrap().execute_batch("DROP TABLE faults").unwrap();
            }
        }
        let mutating = matches!(what, "terminate" | "isolate" | "netem");
        if mutating && !calls.iter().any(|(w, _)| matches!(w.as_str(), "terminate" | "isolate" | "netem")) {
            if let Some(p) = &self.on_first_mutation {
                std::fs::write(p, "").unwrap();
            }
            if let Some(p) = &self.halt_on_first_mutation {
                Store::open(p).unwrap().halt("ops@lab", Some("stop everything"), halt_time()).unwrap();
            }
        }
        calls.push((what.to_string(), inst.id.clone()));
    }

    fn mutations(&self) -> Vec<(String, String)> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(w, _)| matches!(w.as_str(), "terminate" | "isolate" | "netem"))
            .cloned()
            .collect()
    }
}

impl Actuator for Recorder {
    async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        self.record("terminate", inst);
        Ok("recorded".into())
    }

    async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        insts.iter().for_each(|i| self.record("terminate", i));
        insts.iter().map(|_| Ok("recorded".into())).collect()
    }

    async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        self.record("prepare", inst);
        Ok(Undo::HostsCommand { instance: inst.clone() })
    }

    async fn isolate(&self, inst: &Instance, _undo: &Undo) -> Result<String, ActionError> {
        self.record("isolate", inst);
        Ok("recorded".into())
    }

    async fn run_on(&self, inst: &Instance, argv: &[String]) -> Result<CommandOutput, ActionError> {
        let out = |stdout: String| Ok(CommandOutput { status: 0, stdout, stderr: String::new() });
        match argv.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["ip", "-o", "route", "show", "default"] => {
                self.record("read", inst);
                out("default via 192.0.2.1 dev eth0 proto static\n".into())
            }
            ["tc", "qdisc", "show", ..] => {
                self.record("read", inst);
                let roots = self.roots.lock().unwrap();
                out(roots
                    .get(&inst.id)
                    .cloned()
                    .unwrap_or_else(|| "qdisc fq_codel 0: root refcnt 2\n".into()))
            }
            ["tc", "qdisc", "add" | "replace", "dev", _, "root", "handle", handle, ..] => {
                self.record("netem", inst);
                self.roots
                    .lock()
                    .unwrap()
                    .insert(inst.id.clone(), format!("qdisc netem {handle} root refcnt 2\n"));
                out(String::new())
            }
            _ => {
                self.record("read", inst);
                out(String::new())
            }
        }
    }

    async fn restore(&self, _target: &str, undo: &Undo) -> Result<String, ActionError> {
        let inst = match undo {
            Undo::HostsCommand { instance } | Undo::Netem { instance, .. } => instance,
            Undo::Ec2Groups { .. } => return Err(ActionError("unexpected undo".into())),
        };
        self.record("restore", inst);
        self.roots.lock().unwrap().remove(&inst.id);
        Ok("recorded".into())
    }
}

#[derive(Debug, Clone)]
struct Host {
    group: usize,
    zone: usize,
    opted: bool,
    exempt: bool,
    /// Its id matches the policy's `exclude.instances` glob.
    canary: bool,
}

fn arb_host() -> impl Strategy<Value = Host> {
    (0usize..3, 0usize..2, any::<bool>(), any::<bool>(), prop::bool::weighted(0.2))
        .prop_map(|(group, zone, opted, exempt, canary)| Host { group, zone, opted, exempt, canary })
}

#[derive(Debug, Clone, Copy)]
enum Monkey {
    Chaos,
    GorillaIsolate,
    GorillaTerminate,
    LatencyTc,
    LatencyProxy,
    Doctor,
}

fn arb_monkey() -> impl Strategy<Value = Monkey> {
    prop_oneof![
        Just(Monkey::Chaos),
        Just(Monkey::GorillaIsolate),
        Just(Monkey::GorillaTerminate),
        Just(Monkey::LatencyTc),
        Just(Monkey::LatencyProxy),
        Just(Monkey::Doctor),
    ]
}

const GROUPS: [&str; 3] = ["web", "api", "job"];

fn id(i: usize, h: &Host) -> String {
    if h.canary {
        format!("h{i}-canary")
    } else {
        format!("h{i}")
    }
}

/// A policy over `hosts`; `override_opt_in` makes the target use its own opt-in tag (`chaos: yes`).
fn policy_text(hosts: &[Host], m: Monkey, live: bool, override_opt_in: bool, port: u16) -> String {
    let (tag, value) = if override_opt_in { ("chaos", "yes") } else { ("simian:opt-in", "true") };
    let mut s = format!("version: 1\nmode: {}\n", if live { "live" } else { "dry-run" });
    s.push_str("exclude:\n  tags: { \"simian:exempt\": \"true\" }\n  instances: [\"*-canary\"]\n");
    s.push_str("targets:\n  - name: lab\n    type: hosts\n    terminate: [\"true\"]\n");
    s.push_str("    isolate: [\"true\"]\n    restore: [\"true\"]\n");
    if override_opt_in {
        s.push_str("    opt_in: { tag: chaos, value: \"yes\" }\n");
    }
    s.push_str("    hosts:\n");
    for (i, h) in hosts.iter().enumerate() {
        let mut tags = Vec::new();
        if h.opted {
            tags.push(format!("\"{tag}\": \"{value}\""));
        }
        if h.exempt {
            tags.push("\"simian:exempt\": \"true\"".into());
        }
        s.push_str(&format!(
            "      - {{ id: {}, group: {}, zone: z{}, tags: {{ {} }} }}\n",
            id(i, h),
            GROUPS[h.group],
            h.zone,
            tags.join(", ")
        ));
    }
    s.push_str("monkeys:\n");
    s.push_str(&match m {
        Monkey::Chaos => "  chaos:\n    schedule: \"* * * * *\"\n".to_string(),
        Monkey::GorillaIsolate => {
            "  gorilla:\n    schedule: \"* * * * *\"\n    duration: 1s\n    allow_total_loss: true\n".into()
        }
        Monkey::GorillaTerminate => {
            "  gorilla:\n    schedule: \"* * * * *\"\n    action: terminate\n    allow_total_loss: true\n".into()
        }
        Monkey::LatencyTc => {
            "  latency:\n    schedule: \"* * * * *\"\n    delay: 100ms\n    duration: 1s\n    hosts_per_group: 2\n".into()
        }
        Monkey::LatencyProxy => format!(
            "  latency:\n    schedule: \"* * * * *\"\n    via: proxy\n    delay: 100ms\n    duration: 1s\n    proxies:\n      - {{ listen: \"127.0.0.1:{port}\", upstream: \"127.0.0.1:9\" }}\n"
        ),
        Monkey::Doctor => "  doctor:\n    schedule: \"* * * * *\"\n    url: \"http://127.0.0.1:9/\"\n    timeout: 1s\n    failures_before_unhealthy: 1\n    remediate: terminate\n".into(),
    });
    s
}

/// Gorilla isolates the hosts of zone z0 (three groups, one host each) for 1 s while the store's fault
/// journal breaks at the first call `at`: every isolation made is still restored.
fn isolations_are_restored_when_the_journal_breaks_at(
    at: &'static str,
) -> Result<simian_monkeys::Report, String> {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> =
        (0..3).map(|g| Host { group: g, zone: 0, opted: true, exempt: false, canary: false }).collect();
    let text = policy_text(&hosts, Monkey::GorillaIsolate, true, false, 0);
    let rec = Recorder { break_journal_at: Some((at, dir.path().join("simian.db"))), ..Recorder::default() };
    let report = try_live_round(dir.path(), &text, &rec);
    let calls = rec.calls.lock().unwrap().clone();
    let count = |w: &str| calls.iter().filter(|(c, _)| c == w).count();
    assert!(count("isolate") >= 1, "{calls:?}");
    assert_eq!(count("restore"), count("isolate"), "an isolation was left in place: {calls:?}");
    report
}

#[test]
fn a_journal_that_breaks_mid_revert_does_not_stop_the_other_restores() {
    let report = isolations_are_restored_when_the_journal_breaks_at("restore").expect("the round ends");
    let unrecorded =
        report.findings.iter().filter(|f| f.message.contains("not recorded in the journal")).count();
    assert_eq!(unrecorded, 3, "{:?}", report.findings);
}

#[test]
fn a_round_whose_journal_breaks_mid_round_restores_what_it_did_from_memory() {
    // After the first isolation the journal is gone: the next claim fails the round, which still restores.
    let failed = isolations_are_restored_when_the_journal_breaks_at("isolate");
    assert!(failed.is_err(), "the round should fail with its store: {failed:?}");
}

/// When the tests' halts are made (only shown in messages).
fn halt_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::UNIX_EPOCH
}

/// One live round (seed 1) of `text` with `rec` as the actuator, on the paused clock.
fn live_round(dir: &std::path::Path, text: &str, rec: &Recorder) -> simian_monkeys::Report {
    try_live_round(dir, text, rec).unwrap()
}

/// [`live_round`], its error as text.
fn try_live_round(
    dir: &std::path::Path,
    text: &str,
    rec: &Recorder,
) -> Result<simian_monkeys::Report, String> {
    let load = || simian_config::load_str("p.yaml", text, dir, &|_| None).map_err(|e| e.to_string());
    let policy = load().unwrap();
    let fresh = || load().map(|p| std::sync::Arc::new(simian_scheduler::service::Fresh::new(p)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let fleet = simian_targets::Fleet::from_policy(&policy.policy);
    let inventory = rt.block_on(fleet.inventory()).map_err(|e| e.to_string());
    let mut store = Store::open(&policy.store).unwrap();
    let opts = RunOptions { seed: Some(1), ..Default::default() };
    rt.block_on(run_once(&policy, &opts, RunContext::new(rec, inventory, &fresh), &mut store))
        .map_err(|e| e.to_string())
}

fn eligible(h: &Host) -> bool {
    h.opted && !h.exempt && !h.canary
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn dry_run_never_acts_and_live_acts_only_on_eligible_instances(
        hosts in prop::collection::vec(arb_host(), 0..12),
        m in arb_monkey(),
        live in any::<bool>(),
        force_dry in any::<bool>(),
        override_opt_in in any::<bool>(),
        seed in any::<u64>(),
        halted in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = policy_text(&hosts, m, live, override_opt_in, port);
        let load = || simian_config::load_str("p.yaml", &text, dir.path(), &|_| None).map_err(|e| e.to_string());
        let policy = load().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let fresh = || load().map(|p| std::sync::Arc::new(simian_scheduler::service::Fresh::new(p)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let rec = Recorder::default();
        let fleet = simian_targets::Fleet::from_policy(&policy.policy);
        let inventory = rt.block_on(fleet.inventory()).map_err(|e| e.to_string());
        let mut store = Store::open(&policy.store).unwrap();
        if halted {
            store.halt("ops@lab", None, halt_time()).unwrap();
        }
        let opts = RunOptions { dry_run: force_dry, seed: Some(seed), ..Default::default() };
        let ctx = RunContext::new(&rec, inventory, &fresh);
        let report = rt.block_on(run_once(&policy, &opts, ctx, &mut store)).unwrap();
        let calls = rec.calls.lock().unwrap().clone();
        if !live || force_dry {
            prop_assert!(calls.is_empty(), "dry-run reached the actuator: {calls:?}");
            use simian_monkeys::Action::{InjectLatency, Isolate, Terminate};
            // Doctor's observations are `done` in dry-run too; no action is.
            let acted = report.findings.iter().any(|f| f.outcome == Outcome::Done && matches!(f.action, Terminate | Isolate | InjectLatency));
            prop_assert!(!acted, "{:?}", report.findings);
        }
        if halted {
            prop_assert!(rec.mutations().is_empty(), "acted while halted: {:?}", report.findings);
        }
        if live && !force_dry && !halted && matches!(m, Monkey::Chaos | Monkey::LatencyTc) && hosts.iter().any(eligible) {
            prop_assert!(!rec.mutations().is_empty(), "live with eligible hosts acts: {:?}", report.findings);
        }
        for (what, victim) in rec.mutations() {
            let i: usize = victim.trim_start_matches('h').trim_end_matches("-canary").parse().unwrap();
            prop_assert!(eligible(&hosts[i]), "{what} on ineligible {victim}: {:?}", hosts[i]);
        }
    }
}

#[test]
fn a_kill_switch_made_by_the_first_netem_injection_refuses_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> =
        (0..3).map(|g| Host { group: g, zone: 0, opted: true, exempt: false, canary: false }).collect();
    let stop = dir.path().join("STOP");
    let text = policy_text(&hosts, Monkey::LatencyTc, true, false, 0).replacen(
        "version: 1\n",
        &format!("version: 1\nkill_switch: {}\n", stop.display()),
        1,
    );
    let rec = Recorder { on_first_mutation: Some(stop), ..Recorder::default() };
    let report = live_round(dir.path(), &text, &rec);
    let injected: Vec<_> = rec.mutations();
    assert_eq!(injected.len(), 1, "{injected:?}");
    let refused: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.action == simian_monkeys::Action::InjectLatency && f.outcome == Outcome::Skipped)
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", report.findings);
    assert!(refused.iter().all(|f| f.message.contains("kill switch")), "{refused:?}");
    let reverted = report
        .findings
        .iter()
        .filter(|f| f.action == simian_monkeys::Action::RevertLatency && f.outcome == Outcome::Done)
        .count();
    assert_eq!(reverted, 1, "the one injection is reverted: {:?}", report.findings);
}

#[test]
fn a_halt_recorded_after_the_first_kill_refuses_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> =
        (0..3).map(|g| Host { group: g, zone: 0, opted: true, exempt: false, canary: false }).collect();
    let text = policy_text(&hosts, Monkey::Chaos, true, false, 0);
    // The policy's store is `simian.db` beside it (the default).
    let rec = Recorder { halt_on_first_mutation: Some(dir.path().join("simian.db")), ..Recorder::default() };
    let report = live_round(dir.path(), &text, &rec);
    assert_eq!(rec.mutations().len(), 1, "{:?}", report.findings);
    let refused: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.action == simian_monkeys::Action::Terminate && f.outcome == Outcome::Skipped)
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", report.findings);
    assert!(
        refused
            .iter()
            .all(|f| f.message.contains("halted by ops@lab") && f.message.contains("stop everything")),
        "{refused:?}"
    );
}
