//! Readable tables of reports and history for terminals; colour only when asked (i.e. on a TTY).

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use simian_monkeys::{Finding, Outcome, Report};

/// A history line: the finding plus the run it came from (the `history --format json` contract).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// The run.
    pub run_id: String,
    /// When it was recorded, in the policy's timezone.
    pub at: DateTime<FixedOffset>,
    /// The run's mode.
    pub mode: simian_monkeys::Mode,
    /// The finding's fields, inline.
    #[serde(flatten)]
    pub finding: Finding,
}

fn paint(s: &str, outcome: Outcome, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match outcome {
        Outcome::Done => "31",     // red: something was killed
        Outcome::Failed => "1;31", // bold red
        Outcome::Planned => "33",  // yellow
        Outcome::Skipped => "2",   // dim
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

fn dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// Lay rows out in columns; the last column is free text and never padded.
fn columns(header: &[&str], rows: &[(Outcome, Vec<String>)], color: bool) -> String {
    // Values from inventories and commands are shown, never interpreted by the terminal.
    let rows: Vec<(Outcome, Vec<String>)> = rows
        .iter()
        .map(|(o, r)| (*o, r.iter().map(|c| crate::text::printable(c).into_owned()).collect()))
        .collect();
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for (_, r) in &rows {
        for (i, c) in r.iter().enumerate().take(n - 1) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < n {
                let pad = width[i].saturating_sub(c.chars().count());
                let _ = write!(s, "{c}{}  ", " ".repeat(pad));
            } else {
                s.push_str(c);
            }
        }
        s
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push('\n');
    for (outcome, r) in &rows {
        out.push_str(&paint(&line(r), *outcome, color));
        out.push('\n');
    }
    out
}

fn cells(f: &Finding) -> Vec<String> {
    vec![
        f.monkey.to_string(),
        f.action.as_str().into(),
        f.outcome.as_str().into(),
        dash(&f.target).into(),
        dash(&f.instance).into(),
        dash(&f.group).into(),
        dash(&f.zone).into(),
        f.message.clone(),
    ]
}

const HEADER: [&str; 8] = ["MONKEY", "ACTION", "OUTCOME", "TARGET", "INSTANCE", "GROUP", "ZONE", "MESSAGE"];

/// The report as a table with a summary line.
pub fn render_report(r: &Report, color: bool) -> String {
    let mut out = format!(
        "run {}  mode {}  seed {}  {} → {}\n",
        crate::text::printable(&r.run_id),
        r.mode,
        r.seed,
        r.started_at.format("%Y-%m-%d %H:%M:%S %:z"),
        r.finished_at.format("%H:%M:%S")
    );
    if r.findings.is_empty() {
        out.push_str("no findings\n");
        return out;
    }
    let rows: Vec<_> = r.findings.iter().map(|f| (f.outcome, cells(f))).collect();
    out.push_str(&columns(&HEADER, &rows, color));
    let count = |o| r.findings.iter().filter(|f| f.outcome == o).count();
    let _ = writeln!(
        out,
        "{} done, {} planned, {} failed, {} skipped",
        count(Outcome::Done),
        count(Outcome::Planned),
        count(Outcome::Failed),
        count(Outcome::Skipped)
    );
    for e in &r.experiments {
        let _ = writeln!(
            out,
            "experiment ({}): {}{}",
            e.monkey,
            e.verdict.as_str(),
            e.recovered_after_s.map_or(String::new(), |s| format!(", recovered after {s:.1}s"))
        );
        for p in &e.probes {
            let _ = writeln!(out, "  {}", crate::text::printable(&p.line()));
            if let Some(c) = p.capacity {
                let _ = writeln!(out, "  {}", simian_monkeys::experiment::capacity_line(c));
            }
        }
    }
    out
}

/// History as a table, newest first.
pub fn render_history(rows: &[HistoryRow], color: bool) -> String {
    if rows.is_empty() {
        return "no findings in this period\n".into();
    }
    let mut header = vec!["AT", "MODE"];
    header.extend(HEADER);
    let rows: Vec<_> = rows
        .iter()
        .map(|h| {
            let mut c = vec![h.at.format("%Y-%m-%d %H:%M:%S").to_string(), h.mode.to_string()];
            c.extend(cells(&h.finding));
            (h.finding.outcome, c)
        })
        .collect();
    columns(&header, &rows, color)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn plain_table_has_no_escapes_and_aligns() {
        let s = render_report(&fixtures::sample_report(), false);
        assert!(!s.contains('\x1b'));
        assert!(s.contains("seed 42"));
        let lines: Vec<_> = s.lines().collect();
        assert!(lines[1].starts_with("MONKEY"));
        assert_eq!(lines[2].find("web-1"), lines[1].find("INSTANCE"));
        assert!(s.contains("1 done, 0 planned, 0 failed, 1 skipped"));
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(render_report(&fixtures::sample_report(), true).contains("\x1b[31m"));
    }

    #[test]
    fn json_has_contract_fields() {
        let v = serde_json::to_value(fixtures::sample_report()).unwrap();
        for k in ["run_id", "mode", "seed", "started_at", "finished_at", "api_calls", "findings"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let f = &v["findings"][0];
        for k in ["monkey", "action", "outcome", "target", "instance", "group", "zone", "severity", "message"]
        {
            assert!(f.get(k).is_some(), "{k}");
        }
        assert_eq!(f["monkey"], "chaos");
        assert_eq!(f["outcome"], "done");
        assert!(v["findings"][1]["instance"].is_null());
        let row = HistoryRow {
            run_id: "r1".into(),
            at: fixtures::sample_report().started_at,
            mode: simian_monkeys::Mode::Live,
            finding: fixtures::sample_report().findings[0].clone(),
        };
        let h = serde_json::to_value(row).unwrap();
        assert_eq!(h["run_id"], "r1");
        assert_eq!(h["instance"], "web-1");
        assert_eq!(h["at"], "2026-03-09T10:00:00-07:00");
    }

    #[test]
    fn escape_sequences_in_ids_are_shown_not_interpreted() {
        let mut r = fixtures::sample_report();
        r.findings[0].instance = Some("i-1\x1b[2J\x1b]0;owned\x07".into());
        r.findings[0].message = "bye\u{202e}txt".into();
        let table = render_report(&r, false);
        assert!(
            !table.contains('\x1b') && !table.contains('\x07') && !table.contains('\u{202e}'),
            "{table:?}"
        );
        assert!(table.contains("i-1\\u{1b}[2J"), "{table}");
        let row = HistoryRow {
            run_id: "r1".into(),
            at: r.started_at,
            mode: simian_monkeys::Mode::Live,
            finding: r.findings[0].clone(),
        };
        let history = render_history(std::slice::from_ref(&row), false);
        assert!(!history.contains('\x1b') && history.contains("\\u{1b}"), "{history:?}");
        // JSON keeps the exact value.
        let json = serde_json::to_string(&row).unwrap();
        assert!(json.contains("\\u001b[2J"), "{json}");
    }
}
