//! The jsonl sink, simian's audit trail: one JSON object per finding (or announcement) appended to a file.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use simian_monkeys::{Action, Finding, Outcome, Report, Severity};

use crate::message::{at_least, Message};

/// One line of the trail for a finding: the run's fields, then the finding's (all of them, `details` too, so
/// every line has the same keys).
#[derive(Serialize)]
struct FindingLine<'a> {
    kind: &'static str,
    policy: &'a str,
    run_id: &'a str,
    mode: &'a str,
    seed: u64,
    started_at: DateTime<FixedOffset>,
    finished_at: DateTime<FixedOffset>,
    monkey: &'static str,
    action: Action,
    outcome: Outcome,
    target: &'a Option<String>,
    instance: &'a Option<String>,
    group: &'a Option<String>,
    zone: &'a Option<String>,
    severity: Severity,
    message: &'a str,
    details: &'a BTreeMap<String, String>,
}

impl<'a> FindingLine<'a> {
    fn new(policy: &'a str, r: &'a Report, f: &'a Finding) -> Self {
        FindingLine {
            kind: "finding",
            policy,
            run_id: &r.run_id,
            mode: r.mode.as_str(),
            seed: r.seed,
            started_at: r.started_at,
            finished_at: r.finished_at,
            monkey: f.monkey.as_str(),
            action: f.action,
            outcome: f.outcome,
            target: &f.target,
            instance: &f.instance,
            group: &f.group,
            zone: &f.zone,
            severity: f.severity,
            message: &f.message,
            details: &f.details,
        }
    }
}

/// Appends `msg` to the file at `path`: one line per finding at or above `min`, or one
/// `"kind":"announcement"` line. Creates missing folders and the file (mode 0640 on unix); writes every line
/// in one write and syncs once. Returns the number of lines written.
pub fn append(path: &Path, msg: &Message, min: Severity) -> std::io::Result<usize> {
    let lines: Vec<String> = match msg {
        Message::Report { policy, report } => at_least(report, min)
            .map(|f| serde_json::to_string(&FindingLine::new(policy, report, f)))
            .collect::<Result<_, _>>()?,
        // Serialized as `Message` tags it: `"kind":"announcement"` plus the announcement's fields.
        Message::Announcement(_) => vec![serde_json::to_string(msg)?],
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The trail names hosts and groups: readable by the owner's group, not by everyone.
        options.mode(0o640);
    }
    let mut file = options.open(path)?;
    if lines.is_empty() {
        return Ok(0);
    }
    let mut buf = lines.join("\n");
    buf.push('\n');
    // One append of the whole batch, so a concurrent reader or writer never sees half a run.
    file.write_all(buf.as_bytes())?;
    file.sync_data()?;
    Ok(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use simian_monkeys::MonkeyName;

    fn report_msg() -> Message {
        let mut latency = fixtures::finding(
            MonkeyName::Latency,
            Action::InjectLatency,
            Outcome::Done,
            Severity::Warning,
            "added 200ms",
        );
        latency.details.insert("delay".into(), "200ms".into());
        fixtures::report_msg(vec![
            latency,
            fixtures::skipped(MonkeyName::Chaos, Severity::Info, "kill switch"),
        ])
    }

    fn read(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn one_line_per_finding_with_run_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/deep/simian.jsonl");
        assert_eq!(append(&path, &report_msg(), Severity::Info).unwrap(), 2);
        let v = read(&path);
        assert_eq!(v.len(), 2);
        for k in [
            "kind",
            "policy",
            "run_id",
            "mode",
            "seed",
            "started_at",
            "finished_at",
            "monkey",
            "action",
            "outcome",
            "target",
            "instance",
            "group",
            "zone",
            "severity",
            "message",
            "details",
        ] {
            assert!(v[0].get(k).is_some() && v[1].get(k).is_some(), "{k}");
        }
        assert_eq!(v[0]["kind"], "finding");
        assert_eq!(v[0]["policy"], "nightly");
        assert_eq!(v[0]["seed"], 42);
        assert_eq!(v[0]["monkey"], "latency");
        assert_eq!(v[0]["action"], "inject_latency");
        assert_eq!(v[0]["details"]["delay"], "200ms");
        assert_eq!(v[0]["started_at"], "2026-03-09T10:00:00-07:00");
        assert!(v[1]["instance"].is_null());
        assert_eq!(v[1]["details"], serde_json::json!({}));
    }

    #[test]
    fn appends_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simian.jsonl");
        assert_eq!(append(&path, &report_msg(), Severity::Info).unwrap(), 2);
        assert_eq!(append(&path, &report_msg(), Severity::Warning).unwrap(), 1);
        assert_eq!(append(&path, &report_msg(), Severity::Critical).unwrap(), 0);
        let v = read(&path);
        assert_eq!(v.len(), 3);
        assert_eq!(v[2]["severity"], "warning");
    }

    #[test]
    fn announcement_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simian.jsonl");
        let msg = fixtures::announcement_of(vec![fixtures::planned(
            "chaos",
            "10:00",
            None,
            Some("web"),
            None,
            "terminate one instance",
        )]);
        assert_eq!(append(&path, &msg, Severity::Critical).unwrap(), 1);
        let v = read(&path);
        assert_eq!(v[0]["kind"], "announcement");
        assert_eq!(v[0]["policy"], "nightly");
        assert_eq!(v[0]["actions"][0]["group"], "web");
    }

    #[cfg(unix)]
    #[test]
    fn new_file_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simian.jsonl");
        append(&path, &report_msg(), Severity::Info).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{mode:o}");
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    }

    #[test]
    fn a_path_that_is_a_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(append(dir.path(), &report_msg(), Severity::Info).is_err());
    }
}
