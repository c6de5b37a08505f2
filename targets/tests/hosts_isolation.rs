//! Chaos Gorilla's isolate/restore on a `hosts` target: its argv templates, run for real (`touch`, `rm`).

use std::path::Path;

use simian_monkeys::{Actuator, Undo};
use simian_targets::Fleet;

fn fleet(yaml: &str) -> Fleet {
    let loaded = simian_config::load_str("policy.yaml", yaml, Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("policy: {e:?}"));
    Fleet::from_policy(&loaded.policy)
}

fn lab(dir: &Path, hosts: &str) -> String {
    let d = dir.display();
    format!(
        r#"
version: 1
targets:
  - type: hosts
    name: lab
    isolate: ["touch", "{d}/{{id}}.isolated"]
    restore: ["rm", "-f", "{d}/{{id}}.isolated"]
    hosts:
{hosts}
  - type: hosts
    name: bare
    hosts:
      - {{ id: b1, group: g }}
"#
    )
}

#[tokio::test]
async fn isolate_and_restore_run_the_target_templates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fleet(&lab(dir.path(), "      - { id: h1, group: g }\n      - { id: h2, group: g }"));
    let inv = fleet.inventory().await.expect("inventory");
    let h1 = inv.iter().find(|i| i.id == "h1").expect("h1").clone();
    let marker = dir.path().join("h1.isolated");

    let undo = fleet.prepare_isolation(&h1).await.expect("prepare");
    assert_eq!(undo, Undo::HostsCommand { instance: h1.clone() });
    assert!(!marker.exists(), "prepare changes nothing");
    let ran = fleet.isolate(&h1, &undo).await.expect("isolate");
    assert!(ran.contains("touch"), "{ran}");
    assert!(marker.exists());
    assert!(!dir.path().join("h2.isolated").exists());

    let ran = fleet.restore("lab", &undo).await.expect("restore");
    assert!(ran.contains("rm -f"), "{ran}");
    assert!(!marker.exists());
    fleet.restore("lab", &undo).await.expect("restore twice");
    assert_eq!(fleet.api_calls(), 0, "hosts make no API calls");
}

#[tokio::test]
async fn restore_renders_from_the_journaled_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = fleet(&lab(dir.path(), "      - { id: h1, group: g }"));
    let h1 = before.inventory().await.expect("inventory").iter().find(|i| i.id == "h1").expect("h1").clone();
    let undo = before.prepare_isolation(&h1).await.expect("prepare");
    before.isolate(&h1, &undo).await.expect("isolate");
    assert!(dir.path().join("h1.isolated").exists());

    // The host left the policy meanwhile; the journaled undo still restores it.
    let after = fleet(&lab(dir.path(), "      - { id: h2, group: g }"));
    after.restore("lab", &undo).await.expect("restore");
    assert!(!dir.path().join("h1.isolated").exists());
}

#[tokio::test]
async fn a_target_without_templates_refuses_before_changing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fleet(&lab(dir.path(), "      - { id: h1, group: g }"));
    let inv = fleet.inventory().await.expect("inventory");
    let b1 = inv.iter().find(|i| i.id == "b1").expect("b1").clone();
    let err = fleet.prepare_isolation(&b1).await.expect_err("no isolate template");
    assert_eq!(err.0, "target `bare` has no `isolate` command");
    let undo = Undo::HostsCommand { instance: b1.clone() };
    let err = fleet.isolate(&b1, &undo).await.expect_err("no isolate template");
    assert_eq!(err.0, "target `bare` has no `isolate` command");
    let err = fleet.restore("bare", &undo).await.expect_err("no restore template");
    assert_eq!(err.0, "target `bare` has no `restore` command");
}
