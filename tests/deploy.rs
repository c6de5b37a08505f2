//! The files in `deploy/` against the real binary: the Kubernetes policy validates with the Secret's
//! placeholder values, and the systemd units pass `systemd-analyze verify` (tests/run installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the units say the binary lives; the test points them at the one cargo built instead.
const INSTALLED_BIN: &str = "/usr/local/bin/simian";
/// Where both Kubernetes workloads mount the PersistentVolumeClaim `simian-state`.
const STATE_MOUNT: &str = "/var/lib/simian/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The body of the literal block `key: |` in a YAML document, de-indented (plain string handling: the
/// root crate has no YAML parser, and what matters is that the binary accepts the text).
fn literal_block(doc: &str, key: &str) -> String {
    let mut lines = doc.lines();
    let header = format!("{key}: |");
    let open = lines.by_ref().find(|l| l.trim() == header).unwrap_or_else(|| panic!("no `{header}` block"));
    let outer = open.len() - open.trim_start().len();
    let mut body: Vec<&str> = Vec::new();
    let mut indent = None;
    for line in lines {
        if line.trim().is_empty() {
            body.push("");
            continue;
        }
        let n = line.len() - line.trim_start().len();
        if n <= outer {
            break;
        }
        let cut = *indent.get_or_insert(n);
        assert!(n >= cut, "line less indented than the block's first line: {line:?}");
        body.push(&line[cut..]);
    }
    while body.last() == Some(&"") {
        body.pop();
    }
    assert!(!body.is_empty(), "empty `{header}` block");
    body.join("\n") + "\n"
}

/// `KEY: "value"` pairs under `stringData:` in secret.yaml (comments skipped).
fn secret_string_data(doc: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("stringData:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with(' ') {
                break;
            }
            let (k, v) = line.trim().split_once(':').unwrap_or_else(|| panic!("not `KEY: value`: {line:?}"));
            out.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    out
}

/// Names of the `${NAME}` references without a `:-default` (what must come from the environment), outside
/// whole-line comments.
fn required_env(policy: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in policy.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("${") {
            let after = &rest[at + 2..];
            let end = after.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {line:?}"));
            let inner = &after[..end];
            // `$${` is a literal `${`: skip it.
            let escaped = at > 0 && rest.as_bytes()[at - 1] == b'$';
            if !escaped && !inner.contains(":-") && !names.iter().any(|n| n == inner) {
                names.push(inner.to_string());
            }
            rest = &after[end..];
        }
    }
    names
}

fn value_of<'a>(policy: &'a str, key: &str) -> Option<&'a str> {
    policy.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().trim_matches('"'))
}

#[test]
fn kubernetes_policy_validates_with_the_secret_placeholders() {
    let policy = literal_block(&read("deploy/kubernetes/configmap.yaml"), "simian.yaml");
    let secret = secret_string_data(&read("deploy/kubernetes/secret.yaml"));
    let vars = required_env(&policy);
    for v in ["SLACK_WEBHOOK_URL", "SIMIAN_WEBHOOK_URL", "SIMIAN_HOOK_SECRET"] {
        assert!(vars.iter().any(|n| n == v), "the policy should read ${{{v}}}: {vars:?}");
    }
    for v in &vars {
        assert!(secret.contains_key(v), "${{{v}}} is not in secret.yaml's stringData: {secret:?}");
    }

    // A staging policy in dry-run on EC2 with the default credential chain; its paths on the mounted volume.
    assert_eq!(value_of(&policy, "mode"), Some("dry-run"));
    assert!(
        policy.contains("type: aws_ec2") && !policy.contains("endpoint_url") && !policy.contains("profile:")
    );
    for key in ["store", "kill_switch"] {
        let v = value_of(&policy, key).unwrap_or_else(|| panic!("no `{key}:`"));
        assert!(v.starts_with(STATE_MOUNT), "`{key}: {v}` is not on the volume at {STATE_MOUNT}");
    }
    for workload in ["deploy/kubernetes/deployment.yaml", "deploy/kubernetes/cronjob.yaml"] {
        let text = read(workload);
        assert!(text.contains("mountPath: /var/lib/simian }"), "{workload} must mount the state volume");
        assert!(text.contains("claimName: simian-state"), "{workload} must use the PVC simian-state");
        assert!(text.contains("name: simian-secrets"), "{workload} must read the Secret");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("simian.yaml");
    std::fs::write(&file, &policy).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simian"));
    cmd.args(["validate", "--policy"]).arg(&file).env_remove("SIMIAN_POLICY").env("NO_COLOR", "1");
    for v in &vars {
        cmd.env(v, &secret[v]);
    }
    let out = cmd.output().expect("run simian validate");
    assert_eq!(
        out.status.code(),
        Some(0),
        "simian validate refused deploy/kubernetes/configmap.yaml's policy:\n{}\n--- policy ---\n{policy}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the Secret the same policy must be refused (the ${VAR}s really come from the environment).
    let mut bare = Command::new(env!("CARGO_BIN_EXE_simian"));
    bare.args(["validate", "--policy"]).arg(&file).env_remove("SIMIAN_POLICY");
    for v in &vars {
        bare.env_remove(v);
    }
    let out = bare.output().expect("run simian validate");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

fn copy_dir(from: &Path, to: &Path, bin: &str) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, bin);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(&target, text.replace(INSTALLED_BIN, bin)).unwrap();
        }
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed (Debian package `systemd`); ./tests/run installs it"
    );
    let bin = env!("CARGO_BIN_EXE_simian");
    assert!(!bin.contains(char::is_whitespace), "unit files cannot name {bin:?} unquoted");
    let src = repo().join("deploy/systemd");
    let text = read("deploy/systemd/simian.service") + &read("deploy/systemd/simian-run@.service");
    assert!(text.contains(&format!("ExecStart={INSTALLED_BIN} ")), "the units should run {INSTALLED_BIN}");

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&src, dir.path(), bin);
    // The template is checked through an instance; the drop-in in simian.service.d/ is loaded with its unit.
    let units = ["simian.service", "simian-run@staging.service", "simian-run@staging.timer"];
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| dir.path().join(u)))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Unknown keys and bad values are only warnings (exit 0): refuse any about our files.
    let dir_text = dir.path().to_string_lossy();
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(&*dir_text) || l.contains("simian")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warned about the units:\n{}", ours.join("\n"));

    // The daemon as one agent of a fleet: the drop-in from deploy/systemd/fleet, installed beside the others.
    let fleet = read("deploy/systemd/fleet/fleet.conf");
    assert!(
        fleet.contains("\nExecStopPost=\n"),
        "a fleet agent must not `simian revert` what live agents hold"
    );
    assert!(!fleet.contains("--store"), "the store comes from $SIMIAN_STORE in simian.env");
    std::fs::write(dir.path().join("simian.service.d/fleet.conf"), fleet.replace(INSTALLED_BIN, bin))
        .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("simian.service"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed with the fleet drop-in:\n{stderr}");
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(&*dir_text) || l.contains("simian")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warned with the fleet drop-in:\n{}", ours.join("\n"));
}

#[test]
fn the_kubernetes_fleet_runs_two_agents_on_the_postgres_store_from_its_secret() {
    let kustomization = read("deploy/kubernetes-fleet/kustomization.yaml");
    for needle in
        ["- ../kubernetes\n", "- postgres-secret.yaml", "- pdb.yaml", "- path: deployment-patch.yaml"]
    {
        assert!(kustomization.contains(needle), "kustomization.yaml lacks `{needle}`");
    }
    // The SQLite volume and the CronJob that used it are not part of a fleet.
    for kind in ["kind: PersistentVolumeClaim\n      metadata:\n        name: simian-state", "kind: CronJob"]
    {
        assert!(kustomization.contains(kind), "the overlay should delete `{kind}`");
    }
    let patch = read("deploy/kubernetes-fleet/deployment-patch.yaml");
    assert!(patch.contains("replicas: 2") && patch.contains("type: RollingUpdate"), "{patch}");
    assert!(patch.contains("secretKeyRef: { name: simian-postgres, key: SIMIAN_STORE }"), "{patch}");
    assert!(patch.contains("secretKeyRef: { name: simian-postgres, key: PGPASSWORD }"), "{patch}");
    // `value: null` drops the base's file path: a variable with both value and valueFrom is refused.
    assert!(patch.contains("- name: SIMIAN_STORE\n              value: null\n"), "{patch}");
    assert!(read("deploy/kubernetes-fleet/pdb.yaml").contains("minAvailable: 1"));

    // The base policy with the Secret's store URL (as the pods pass it) validates: a PostgreSQL store.
    let secret = secret_string_data(&read("deploy/kubernetes-fleet/postgres-secret.yaml"));
    let url = &secret["SIMIAN_STORE"];
    assert!(url.starts_with("postgres://") && !url.contains("replace-me"), "{url}");
    let policy = literal_block(&read("deploy/kubernetes/configmap.yaml"), "simian.yaml");
    let base = secret_string_data(&read("deploy/kubernetes/secret.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("simian.yaml");
    std::fs::write(&file, &policy).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simian"));
    cmd.args(["validate", "--policy"]).arg(&file).env_remove("SIMIAN_POLICY").env("SIMIAN_STORE", url);
    for v in required_env(&policy) {
        cmd.env(&v, &base[&v]);
    }
    let out = cmd.output().expect("run simian validate");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A malformed one is refused, and says so without echoing it.
    let out = cmd
        .env("SIMIAN_STORE", "postgres://simian:pw@db.example.internal/simian?sslmode=never")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sslmode `never`") && !stderr.contains(":pw@"), "{stderr}");
}
