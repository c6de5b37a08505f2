//! Undoing Latency Monkey's netem on a `hosts` target: the `tc` calls it makes and when, against a fake `tc`
//! (a shell script run through a wrap executor) that keeps the interface's qdiscs in a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use simian_config::{ExecutorConfig, HostConfig, HostsTarget};
use simian_monkeys::{Actuator, Instance, Undo};
use simian_targets::{Fleet, Hosts, Target};

const FAKE_TC: &str = r#"state=$1; shift
[ "$1" = tc ] || exit 99; shift
echo "$*" >> "$state.log"
case "$1 $2" in
  "qdisc show") [ -e "$state.broken" ] && { echo "Cannot find device \"$4\"" >&2; exit 1; }; cat "$state" ;;
  "qdisc del")
    if [ "$5 $6" = "root handle" ] && grep -q "^qdisc [a-z_]* $7 root" "$state"; then
      echo "qdisc fq_codel 0: root refcnt 2 limit 10240p flows 1024" > "$state"
    else
      echo "RTNETLINK answers: No such file or directory" >&2; exit 2
    fi ;;
  *) exit 98 ;;
esac
"#;

struct Lab {
    dir: tempfile::TempDir,
    fleet: Fleet,
}

impl Lab {
    fn new(qdiscs: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tc.sh");
        std::fs::write(&script, FAKE_TC).unwrap();
        std::fs::write(dir.path().join("state"), qdiscs).unwrap();
        let state = dir.path().join("state");
        let target = HostsTarget {
            name: "lab".into(),
            executor: ExecutorConfig::Wrap { argv: vec!["sh".into(), path(&script), path(&state)] },
            terminate: None,
            isolate: None,
            restore: None,
            timeout: Some("5s".parse().unwrap()),
            opt_in: None,
            hosts: vec![HostConfig {
                id: "web-1".into(),
                address: None,
                group: "web".into(),
                zone: None,
                tags: BTreeMap::new(),
                url: None,
            }],
        };
        Lab { dir, fleet: Fleet::new(vec![Target::Hosts(Hosts::from_config(&target))]) }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("state.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state")).unwrap()
    }

    async fn restore(&self) -> Result<String, simian_monkeys::ActionError> {
        self.fleet.restore("lab", &undo()).await
    }
}

fn path(p: &Path) -> String {
    PathBuf::from(p).display().to_string()
}

fn undo() -> Undo {
    Undo::Netem {
        instance: Instance {
            target: "lab".into(),
            id: "web-1".into(),
            address: None,
            group: "web".into(),
            zone: None,
            region: None,
            url: None,
            tags: BTreeMap::new(),
        },
        interface: "eth0".into(),
        handle: "5117:".into(),
    }
}

const SHOW: &str = "qdisc show dev eth0";

#[tokio::test]
async fn removes_simians_root_qdisc_and_checks_it_is_gone() {
    let lab = Lab::new("qdisc netem 5117: root refcnt 2 limit 1000 delay 200ms\n");
    let note = lab.restore().await.unwrap();
    assert_eq!(note, "removed netem qdisc 5117: from eth0 on `web-1`");
    assert_eq!(lab.calls(), [SHOW, "qdisc del dev eth0 root handle 5117:", SHOW]);
    assert!(lab.state().starts_with("qdisc fq_codel 0: root"));
    // Repeating it is harmless: nothing is deleted the second time.
    let again = lab.restore().await.unwrap();
    assert_eq!(again, "netem qdisc 5117: was already gone from eth0 on `web-1`");
    assert_eq!(lab.calls().len(), 5);
}

#[tokio::test]
async fn leaves_a_root_qdisc_that_is_not_simians_alone() {
    let theirs = "qdisc netem 1: root refcnt 2 limit 1000 delay 5ms\n";
    let lab = Lab::new(theirs);
    let note = lab.restore().await.unwrap();
    assert!(note.contains("already gone"), "{note}");
    assert_eq!(lab.calls(), [SHOW, SHOW]);
    assert_eq!(lab.state(), theirs);
}

#[tokio::test]
async fn reports_simians_qdisc_left_below_another_root() {
    let lab = Lab::new("qdisc htb 1: root refcnt 2\nqdisc netem 5117: parent 1:1 limit 1000 delay 200ms\n");
    let err = lab.restore().await.unwrap_err().to_string();
    assert!(err.contains("5117: is still on eth0"), "{err}");
    assert_eq!(lab.calls(), [SHOW, SHOW], "nothing deleted that is not simian's root qdisc");
}

#[tokio::test]
async fn a_failing_tc_show_is_an_error_with_its_stderr() {
    let lab = Lab::new("");
    std::fs::write(lab.dir.path().join("state.broken"), "").unwrap();
    let err = lab.restore().await.unwrap_err().to_string();
    assert!(err.contains("exited with status 1") && err.contains("Cannot find device"), "{err}");
}

#[tokio::test]
async fn run_on_returns_non_zero_exits_as_output() {
    let lab = Lab::new("");
    let inv = lab.fleet.inventory().await.unwrap();
    let out = lab.fleet.run_on(&inv[0], &["tc".into(), "bogus".into()]).await.unwrap();
    assert_eq!(out.status, 98);
    let unknown = Instance { target: "nowhere".into(), ..inv[0].clone() };
    let err = lab.fleet.run_on(&unknown, &["tc".into()]).await.unwrap_err().to_string();
    assert!(err.contains("`nowhere` is not defined"), "{err}");
}

#[tokio::test]
async fn ec2_targets_cannot_run_commands_or_remove_netem() {
    let cfg = simian_config::AwsEc2Target {
        name: "cloud".into(),
        regions: vec!["us-east-1".into()],
        endpoint_url: Some("http://127.0.0.1:9".into()),
        profile: None,
        group_by: "aws:autoscaling:groupName".into(),
        opt_in: None,
        isolation_group: "simian-isolation".into(),
        terminate_batch: 100,
    };
    let opt_in = simian_config::OptIn { tag: "simian:opt-in".into(), value: "true".into() };
    let fleet = Fleet::new(vec![Target::AwsEc2(simian_targets::Ec2Target::from_config(&cfg, &opt_in))]);
    let Undo::Netem { instance, .. } = undo() else { unreachable!() };
    let inst = Instance { target: "cloud".into(), ..instance };
    let err = fleet.run_on(&inst, &["true".into()]).await.unwrap_err().to_string();
    assert_eq!(err, "target `cloud` (aws_ec2) cannot run commands on instances");
    let err = fleet.restore("cloud", &undo()).await.unwrap_err().to_string();
    assert!(err.contains("cannot remove a netem qdisc"), "{err}");
}
