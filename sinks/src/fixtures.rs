//! Test fixtures shared by the sinks' unit tests: an instance, findings about it, a report and a day's plan.

use chrono::{DateTime, FixedOffset, NaiveDate};
use simian_monkeys::{Action, Finding, Instance, MonkeyName, Outcome, Report, Severity};

use crate::message::{Announcement, Message, PlannedAction};

/// When the fixture run started (and finished).
pub(crate) const STARTED_AT: &str = "2026-03-09T10:00:00-07:00";

/// Instance `web-1` of group `web` in zone `a`, from target `lab`.
pub(crate) fn instance() -> Instance {
    Instance {
        target: "lab".into(),
        id: "web-1".into(),
        address: None,
        group: "web".into(),
        zone: Some("a".into()),
        region: None,
        url: None,
        tags: Default::default(),
    }
}

/// A finding about [`instance`].
pub(crate) fn finding(
    monkey: MonkeyName,
    action: Action,
    outcome: Outcome,
    severity: Severity,
    message: impl Into<String>,
) -> Finding {
    Finding::about(monkey, action, outcome, severity, &instance(), message)
}

/// Chaos terminated [`instance`].
pub(crate) fn terminated(severity: Severity, message: impl Into<String>) -> Finding {
    finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done, severity, message)
}

/// A run-level finding: `monkey` skipped its whole run.
pub(crate) fn skipped(monkey: MonkeyName, severity: Severity, message: impl Into<String>) -> Finding {
    Finding::run_level(monkey, Outcome::Skipped, severity, message)
}

/// The usual pair: Chaos terminated [`instance`] (warning, `message`), then Gorilla skipped its run for the
/// kill switch (info).
pub(crate) fn terminated_then_skipped(message: &str) -> Vec<Finding> {
    vec![terminated(Severity::Warning, message), skipped(MonkeyName::Gorilla, Severity::Info, "kill switch")]
}

/// Live run `r1`, seed 42, at [`STARTED_AT`], holding `findings`.
pub(crate) fn report(findings: Vec<Finding>) -> Report {
    let t = DateTime::parse_from_rfc3339(STARTED_AT).unwrap();
    Report {
        run_id: "r1".into(),
        mode: simian_monkeys::Mode::Live,
        seed: 42,
        started_at: t,
        finished_at: t,
        api_calls: 0,
        summary: Default::default(),
        findings,
        experiment: None,
        experiments: Vec::new(),
    }
}

/// [`report`] as policy `nightly`'s outbox message.
pub(crate) fn report_msg(findings: Vec<Finding>) -> Message {
    Message::Report { policy: "nightly".into(), report: report(findings) }
}

/// [`report`] of [`terminated_then_skipped`]`("terminated")`.
pub(crate) fn sample_report() -> Report {
    report(terminated_then_skipped("terminated"))
}

/// `hh:mm` on 2026-03-10 in Berlin (+01:00).
fn at(hh_mm: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(&format!("2026-03-10T{hh_mm}:00+01:00")).unwrap()
}

/// An action planned at `hh_mm` (see [`at`]).
pub(crate) fn planned(
    monkey: &str,
    hh_mm: &str,
    target: Option<&str>,
    group: Option<&str>,
    zone: Option<&str>,
    what: &str,
) -> PlannedAction {
    PlannedAction {
        monkey: monkey.into(),
        at: at(hh_mm),
        target: target.map(Into::into),
        group: group.map(Into::into),
        zone: zone.map(Into::into),
        what: what.into(),
    }
}

/// Policy `nightly`'s dry-run plan for 2026-03-10 (Europe/Berlin, kill switch `/etc/simian/stop`).
pub(crate) fn announcement_of(actions: Vec<PlannedAction>) -> Message {
    Message::Announcement(Announcement {
        policy: "nightly".into(),
        date: NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
        timezone: "Europe/Berlin".into(),
        mode: simian_monkeys::Mode::DryRun,
        kill_switch: Some("/etc/simian/stop".into()),
        actions,
    })
}

/// [`announcement_of`] one action: chaos terminates one instance of target `lab` in zone `a` at 10:30.
pub(crate) fn announcement() -> Message {
    announcement_of(vec![planned("chaos", "10:30", Some("lab"), None, Some("a"), "terminate one instance")])
}
