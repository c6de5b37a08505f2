//! The log sink: one human-readable line per finding (or planned action) for stderr.

use simian_monkeys::{Finding, Severity};

use crate::message::{at_least, Announcement, Message, PlannedAction};

/// The lines to print for `msg`: a header line, then one line per finding at or above `min` (reports) or per
/// planned action (announcements, never filtered). No line holds a newline.
pub fn lines(msg: &Message, min: Severity) -> Vec<String> {
    match msg {
        Message::Report { policy, report } => {
            let shown: Vec<&Finding> = at_least(report, min).collect();
            let total = report.findings.len();
            let summary = if shown.len() == total {
                count(total, "finding")
            } else {
                format!("{}, {} at {} or above", count(total, "finding"), shown.len(), min.as_str())
            };
            let mut out = vec![one_line(&format!(
                "simian report: policy {policy}, run {}, mode {}, seed {}: {summary}",
                report.run_id, report.mode, report.seed
            ))];
            for line in crate::digest::digest(&shown) {
                match line {
                    crate::digest::Line::Item(f) => out.push(finding_line(f)),
                    skips => {
                        out.extend(skips.summary().map(|s| one_line(&format!("simian [info] skipped {s}"))))
                    }
                }
            }
            out
        }
        Message::Announcement(a) => announcement_lines(a),
    }
}

fn finding_line(f: &Finding) -> String {
    one_line(&format!(
        "simian [{}] {} {} {} {}/{} group={} zone={}: {}",
        f.severity.as_str(),
        f.monkey,
        f.action.as_str(),
        f.outcome.as_str(),
        dash(&f.target),
        dash(&f.instance),
        dash(&f.group),
        dash(&f.zone),
        f.message
    ))
}

fn announcement_lines(a: &Announcement) -> Vec<String> {
    let stop = match &a.kill_switch {
        Some(path) => format!("; to object, create the kill switch {path}"),
        None => String::new(),
    };
    let mut out = vec![one_line(&format!(
        "simian plan for {} ({}): policy {}, mode {}, {}{stop}",
        a.date,
        a.timezone,
        a.policy,
        a.mode,
        count(a.actions.len(), "action")
    ))];
    out.extend(a.actions.iter().map(action_line));
    out
}

fn action_line(p: &PlannedAction) -> String {
    one_line(&format!(
        "simian plan {} {} {}/{} zone={}: {}",
        p.at.format("%H:%M"),
        p.monkey,
        dash(&p.target),
        p.group.as_deref().unwrap_or("*"),
        p.zone.as_deref().unwrap_or("*"),
        p.what
    ))
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// Control characters (newlines above all) become spaces: a message must not forge further log lines.
fn one_line(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::text::printable(&flat).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn report_msg() -> Message {
        fixtures::report_msg(fixtures::terminated_then_skipped("terminated\nfake line"))
    }

    #[test]
    fn report_has_a_header_and_a_line_per_finding() {
        let l = lines(&report_msg(), Severity::Info);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0], "simian report: policy nightly, run r1, mode live, seed 42: 2 findings");
        assert_eq!(
            l[1],
            "simian [warning] chaos terminate done lab/web-1 group=web zone=a: terminated fake line"
        );
        assert_eq!(l[2], "simian [info] gorilla run skipped -/- group=- zone=-: kill switch");
    }

    #[test]
    fn findings_below_min_are_left_out_but_counted() {
        let l = lines(&report_msg(), Severity::Warning);
        assert_eq!(l.len(), 2);
        assert!(l[0].ends_with("2 findings, 1 at warning or above"), "{}", l[0]);
        assert!(lines(&report_msg(), Severity::Critical).len() == 1);
        assert!(l.iter().all(|s| !s.contains('\n')));
    }

    #[test]
    fn announcement_has_a_line_per_action() {
        let msg = fixtures::announcement();
        let l = lines(&msg, Severity::Critical);
        assert_eq!(
            l,
            [
                "simian plan for 2026-03-10 (Europe/Berlin): policy nightly, mode dry-run, 1 action; \
                 to object, create the kill switch /etc/simian/stop",
                "simian plan 10:30 chaos lab/* zone=a: terminate one instance",
            ]
        );
    }
}
