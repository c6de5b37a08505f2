//! Chat digests: what people read (Slack, the `log` sink) itemizes what happened and summarizes the skips.
//!
//! A run over 1,000 groups with two kills has ~1,000 "group not chosen" findings around the two that matter.
//! Actions (done, failed, planned) and anything above `info` are itemized; `info` skips are counted by reason
//! ("1,020 groups: group not chosen this run"). A reason seen once stays itemized: one guard refusal is
//! news, not noise. The webhook, jsonl and `simian history` keep every finding.

use std::collections::{BTreeMap, HashSet};

use simian_monkeys::{Finding, Outcome, Severity};

/// One line of a digest, in display order: items first (in report order), then the summaries (largest first).
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'f> {
    /// A finding shown in full.
    Item(&'f Finding),
    /// Skips with the same reason, counted.
    Skips {
        /// How many findings.
        count: usize,
        /// What they were about: `groups`, `instances` or `times` (run-level).
        unit: &'static str,
        /// The reason, without per-finding particulars (numbers in parentheses, timestamps).
        reason: String,
    },
}

impl Line<'_> {
    /// The summary as text: `1,020 groups: group not chosen this run`.
    pub fn summary(&self) -> Option<String> {
        match self {
            Line::Item(_) => None,
            Line::Skips { count, unit, reason } => Some(format!("{} {unit}: {reason}", thousands(*count))),
        }
    }
}

/// The digest of `findings`.
pub fn digest<'f>(findings: &[&'f Finding]) -> Vec<Line<'f>> {
    let summarized = |f: &Finding| f.outcome == Outcome::Skipped && f.severity == Severity::Info;
    let mut groups: BTreeMap<(&'static str, String), Vec<&'f Finding>> = BTreeMap::new();
    for f in findings.iter().copied().filter(|f| summarized(f)) {
        let unit = match (&f.instance, &f.group) {
            (Some(_), _) => "instances",
            (None, Some(_)) => "groups",
            (None, None) => "times",
        };
        groups.entry((unit, reason(&f.message))).or_default().push(f);
    }
    let once: HashSet<*const Finding> =
        groups.values().filter(|v| v.len() == 1).flatten().map(|f| *f as *const Finding).collect();
    let mut out: Vec<Line> = findings
        .iter()
        .copied()
        .filter(|f| !summarized(f) || once.contains(&(*f as *const Finding)))
        .map(Line::Item)
        .collect();
    let mut many: Vec<(usize, &'static str, String)> = groups
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((unit, reason), v)| (v.len(), unit, reason))
        .collect();
    // Largest first, then by reason.
    many.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    out.extend(many.into_iter().map(|(count, unit, reason)| Line::Skips { count, unit, reason }));
    out
}

/// A skip's message without what differs from one finding to the next: parenthesized particulars
/// (`(roll 0.532 ≥ probability 0.500)`, `(3 eligible)`) and timestamps.
fn reason(message: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in message.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().map(|w| if is_timestamp(w) { "…" } else { w }).collect();
    words.join(" ")
}

/// `2026-12-03T10:00:00+01:00` (with trailing punctuation).
fn is_timestamp(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() >= 19 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b.get(10) == Some(&b'T')
}

/// `1020` → `1,020`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use simian_config::MonkeyName;
    use simian_monkeys::Action;

    fn finding(outcome: Outcome, instance: Option<&str>, group: &str, message: &str) -> Finding {
        Finding {
            monkey: MonkeyName::Chaos,
            action: Action::Terminate,
            outcome,
            target: Some("t".into()),
            instance: instance.map(str::to_string),
            group: Some(group.into()),
            zone: None,
            severity: Severity::Info,
            message: message.into(),
            details: Default::default(),
        }
    }

    #[test]
    fn a_thousand_groups_and_two_kills_digest_to_four_lines() {
        let mut all = Vec::new();
        for g in 0..1020 {
            let roll = format!("group not chosen this run (roll 0.{g:03} ≥ probability 0.002) (10 eligible)");
            all.push(finding(Outcome::Skipped, None, &format!("g{g}"), &roll));
        }
        for i in 0..40 {
            all.push(finding(
                Outcome::Skipped,
                Some(&format!("i{i}")),
                "g",
                "excluded by tag simian:exempt=true",
            ));
        }
        all.push(finding(Outcome::Done, Some("a"), "x", "terminated"));
        all.push(finding(Outcome::Failed, Some("b"), "y", "exit 1"));
        all.push(finding(
            Outcome::Skipped,
            Some("c"),
            "z",
            "guard re-check refused: kill switch /run/simian/stop exists",
        ));
        let refs: Vec<&Finding> = all.iter().collect();
        let d = digest(&refs);
        let items: Vec<&str> = d
            .iter()
            .filter_map(|l| match l {
                Line::Item(f) => f.instance.as_deref(),
                Line::Skips { .. } => None,
            })
            .collect();
        assert_eq!(items, ["a", "b", "c"], "actions and a one-off skip in full, in report order");
        let sums: Vec<String> = d.iter().filter_map(Line::summary).collect();
        assert_eq!(
            sums,
            ["1,020 groups: group not chosen this run", "40 instances: excluded by tag simian:exempt=true"]
        );
    }

    #[test]
    fn timestamps_and_particulars_do_not_split_a_reason() {
        assert_eq!(
            reason(
                "last live kill in this group was at 2026-12-03T10:00:00+00:00, younger than x (3 eligible)"
            ),
            "last live kill in this group was at … younger than x"
        );
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }
}
