//! The Slack sink: incoming-webhook payloads with Block Kit, split to fit Slack's limits, plus a `text`
//! fallback for Mattermost and Rocket.Chat.
//!
//! The payloads are a pure function of the message and the sink's settings: the outbox resumes a half-posted
//! message by skipping the parts already acknowledged, so the same input must always give the same parts.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use simian_config::{MonkeyName, SlackSink};
use simian_monkeys::{Finding, Report, Severity};

use crate::message::{at_least, Announcement, Message, PlannedAction};

/// Slack: at most 50 blocks per message.
const MAX_BLOCKS: usize = 50;
/// Every part has a header and a context block around its sections.
const MAX_SECTIONS: usize = MAX_BLOCKS - 2;
/// Slack: a header's plain text is at most 150 characters.
const HEADER_MAX: usize = 150;
/// Slack: a section's (and a context element's) text is at most 3000 characters.
const SECTION_MAX: usize = 3000;
/// Slack: `text` is cut beyond 40,000 characters.
const TEXT_MAX: usize = 40_000;
/// What the `text` fallback spends besides sections: the escaped header (≤ 5 chars per header char), the
/// context and the separators, with room to spare.
const TEXT_OVERHEAD: usize = HEADER_MAX * 5 + SECTION_MAX + 64;

/// The webhook payloads for `msg`, in posting order; empty when no finding of a report is at or above
/// `cfg.min_severity` (nothing is posted). Announcements are never filtered.
pub fn payloads(msg: &Message, cfg: &SlackSink) -> Vec<Value> {
    let draft = match msg {
        Message::Report { policy, report } => {
            let shown: Vec<&Finding> = at_least(report, cfg.min_severity).collect();
            if shown.is_empty() {
                return Vec::new();
            }
            report_draft(policy, report, &shown, cfg.min_severity)
        }
        Message::Announcement(a) => announcement_draft(a),
    };
    render(draft, cfg)
}

/// A message before it is split into parts; all texts already escaped (except the plain-text title).
struct Draft {
    title: String,
    sections: Vec<String>,
    context: String,
}

fn report_draft(policy: &str, report: &Report, shown: &[&Finding], min: Severity) -> Draft {
    let present: BTreeSet<MonkeyName> = report.findings.iter().map(|f| f.monkey).collect();
    let monkeys: Vec<&str> =
        MonkeyName::ALL.iter().filter(|m| present.contains(m)).map(|m| m.as_str()).collect();
    let mut targets: Vec<&str> = Vec::new();
    for t in report.findings.iter().filter_map(|f| f.target.as_deref()) {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let mut title = format!("simian · {} · {}", monkeys.join(", "), report.mode);
    if !targets.is_empty() {
        title.push_str(" · ");
        title.push_str(&targets.join(", "));
    }
    let mut context =
        format!("policy `{}` · run `{}` · seed `{}`", escape(policy), escape(&report.run_id), report.seed);
    if shown.len() < report.findings.len() {
        context.push_str(&format!(
            " · {} of {} findings ({} or above)",
            shown.len(),
            report.findings.len(),
            min.as_str()
        ));
    }
    let lines = crate::digest::digest(shown);
    let mut sections: Vec<String> = Vec::new();
    let mut summaries: Vec<String> = Vec::new();
    for line in &lines {
        match line {
            crate::digest::Line::Item(f) => sections.push(finding_text(f)),
            skips => summaries.extend(skips.summary().map(|s| format!("• {}", escape(&s)))),
        }
    }
    if !summaries.is_empty() {
        let n: usize = lines
            .iter()
            .map(|l| match l {
                crate::digest::Line::Skips { count, .. } => *count,
                crate::digest::Line::Item(_) => 0,
            })
            .sum();
        context.push_str(&format!(
            " · {} skips summarized; every finding is in the webhook, jsonl and `simian history`",
            crate::digest::thousands(n)
        ));
        // Summaries fill sections of at most SECTION_MAX characters each.
        let mut section = ":fast_forward: *skipped*".to_string();
        for s in summaries {
            if section.chars().count() + s.chars().count() + 1 > SECTION_MAX {
                sections.push(std::mem::take(&mut section));
            }
            if !section.is_empty() {
                section.push('\n');
            }
            section.push_str(&cut_escaped(&s, SECTION_MAX));
        }
        sections.push(section);
    }
    Draft { title, sections, context }
}

fn emoji(s: Severity) -> &'static str {
    match s {
        Severity::Info => ":information_source:",
        Severity::Warning => ":warning:",
        Severity::Critical => ":rotating_light:",
    }
}

fn finding_text(f: &Finding) -> String {
    let mut s = format!(
        "{} *{}* · *{}* {} → *{}*",
        emoji(f.severity),
        f.severity.as_str(),
        f.monkey,
        f.action.as_str(),
        f.outcome.as_str()
    );
    let place: Vec<String> =
        [("instance", &f.instance), ("group", &f.group), ("zone", &f.zone), ("target", &f.target)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k} `{}`", escape(v))))
            .collect();
    s.push('\n');
    if place.is_empty() {
        s.push_str("whole run");
    } else {
        s.push_str(&place.join(" · "));
    }
    if !f.message.is_empty() {
        s.push('\n');
        s.push_str(&escape(&f.message));
    }
    if !f.details.is_empty() {
        let details: Vec<String> =
            f.details.iter().map(|(k, v)| format!("{}: `{}`", escape(k), escape(v))).collect();
        s.push('\n');
        s.push_str(&details.join(" · "));
    }
    cut_escaped(&s, SECTION_MAX)
}

fn announcement_draft(a: &Announcement) -> Draft {
    let title = format!("simian plan for {} ({}) — {}", a.date, a.timezone, a.policy);
    let mut sections: Vec<String> = a.actions.iter().map(action_text).collect();
    if sections.is_empty() {
        sections.push("Nothing is planned.".to_string());
    }
    let object = match &a.kill_switch {
        Some(path) => format!(
            "to object, create the kill switch file `{}` on the simian host: while it exists nothing \
             is changed",
            escape(path)
        ),
        None => "no kill switch is set for this policy: to object, ask its owners to stop simian".to_string(),
    };
    let context = format!("policy `{}` · mode `{}` · {object}", escape(&a.policy), a.mode);
    Draft { title, sections, context }
}

fn action_text(p: &PlannedAction) -> String {
    let mut place = Vec::new();
    if let Some(t) = &p.target {
        place.push(format!("target `{}`", escape(t)));
    }
    place.push(match &p.group {
        Some(g) => format!("group `{}`", escape(g)),
        None => "every eligible group".to_string(),
    });
    place.push(match &p.zone {
        Some(z) => format!("zone `{}`", escape(z)),
        None => "any zone".to_string(),
    });
    let s = format!(
        "*{}* · *{}* · {}\n{}",
        p.at.format("%H:%M"),
        escape(&p.monkey),
        place.join(" · "),
        escape(&p.what)
    );
    cut_escaped(&s, SECTION_MAX)
}

/// Splits the draft into payloads that fit both the block limit and the `text` limit, in order.
fn render(d: Draft, cfg: &SlackSink) -> Vec<Value> {
    let context = cut_escaped(&d.context, SECTION_MAX);
    let mut parts: Vec<&[String]> = Vec::new();
    let mut start = 0;
    let mut chars = 0;
    for (i, s) in d.sections.iter().enumerate() {
        let len = s.chars().count() + 2;
        let count = i - start;
        if count > 0 && (count == MAX_SECTIONS || chars + len > TEXT_MAX - TEXT_OVERHEAD) {
            parts.push(&d.sections[start..i]);
            start = i;
            chars = 0;
        }
        chars += len;
    }
    parts.push(&d.sections[start..]);
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, sections)| {
            let suffix = if n > 1 { format!(" (part {}/{n})", i + 1) } else { String::new() };
            let header = format!("{}{suffix}", cut_plain(&d.title, HEADER_MAX - suffix.chars().count()));
            payload(&header, sections, &context, cfg)
        })
        .collect()
}

fn payload(header: &str, sections: &[String], context: &str, cfg: &SlackSink) -> Value {
    let mut blocks = Vec::with_capacity(sections.len() + 2);
    blocks.push(json!({ "type": "header", "text": { "type": "plain_text", "text": header, "emoji": true } }));
    blocks.extend(
        sections.iter().map(|s| json!({ "type": "section", "text": { "type": "mrkdwn", "text": s } })),
    );
    blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": context }] }));
    let mut text = format!("*{}*", escape(header));
    for s in sections {
        text.push_str("\n\n");
        text.push_str(s);
    }
    text.push_str("\n\n");
    text.push_str(context);
    let mut p = json!({
        "username": cfg.username.as_deref().unwrap_or("simian"),
        "text": text,
        "blocks": blocks,
    });
    if let (Some(channel), Some(obj)) = (&cfg.channel, p.as_object_mut()) {
        obj.insert("channel".into(), Value::String(channel.clone()));
    }
    p
}

/// Slack's mrkdwn escaping: only `&`, `<` and `>` are special (`<` starts links and mentions).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters (not bytes: Slack counts characters), ending in `…` when cut.
fn cut_plain(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Like [`cut_plain`] for escaped text: never leaves half an entity (`&am…`) behind.
fn cut_escaped(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    // Every `&` in escaped text starts an entity; one without its `;` was cut.
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use proptest::prelude::*;
    use simian_config::Secret;
    use simian_monkeys::Outcome;

    fn cfg(min: Severity) -> SlackSink {
        SlackSink {
            name: None,
            webhook_url: Secret::new("http://127.0.0.1:9/hook"),
            min_severity: min,
            announce: None,
            channel: None,
            username: None,
        }
    }

    /// Chaos terminated instance `inst-{i}`.
    fn finding(i: usize, severity: Severity, message: String) -> Finding {
        let mut f = fixtures::terminated(severity, message);
        f.instance = Some(format!("inst-{i}"));
        f
    }

    fn report(findings: Vec<Finding>) -> Message {
        fixtures::report_msg(findings)
    }

    fn blocks(p: &Value) -> &Vec<Value> {
        p["blocks"].as_array().unwrap()
    }

    fn sections(p: &Value) -> Vec<String> {
        blocks(p)
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_thousand_groups_with_two_kills_is_one_message_with_the_skips_counted() {
        let mut all: Vec<Finding> = (0..1000)
            .map(|g| {
                let mut f = fixtures::finding(
                    MonkeyName::Chaos,
                    simian_monkeys::Action::Terminate,
                    Outcome::Skipped,
                    Severity::Info,
                    format!("group not chosen this run (roll 0.{g:03} ≥ probability 0.002) (10 eligible)"),
                );
                f.instance = None;
                f.group = Some(format!("g{g}"));
                f
            })
            .collect();
        all.push(finding(1, Severity::Warning, "terminated".into()));
        all.push(finding(2, Severity::Warning, "terminated".into()));
        let p = payloads(&report(all), &cfg(Severity::Info));
        assert_eq!(p.len(), 1, "one message");
        let s = sections(&p[0]);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].contains("inst-1") && s[1].contains("inst-2"), "{s:?}");
        assert!(s[2].contains("1,000 groups: group not chosen this run"), "{s:?}");
    }

    #[test]
    fn small_report_is_one_payload_with_header_sections_and_context() {
        let mut gorilla =
            Finding::run_level(MonkeyName::Gorilla, Outcome::Skipped, Severity::Info, "calendar");
        gorilla.severity = Severity::Critical;
        let msg = report(vec![
            finding(1, Severity::Warning, "terminated <b> & co".into()),
            finding(2, Severity::Info, "quiet".into()),
            gorilla,
        ]);
        let p = payloads(&msg, &cfg(Severity::Warning));
        assert_eq!(p.len(), 1);
        let b = blocks(&p[0]);
        assert_eq!(b.len(), 4);
        assert_eq!(b[0]["type"], "header");
        assert_eq!(b[0]["text"]["type"], "plain_text");
        assert_eq!(b[0]["text"]["text"], "simian · chaos, gorilla · live · lab");
        assert_eq!(b[1]["text"]["type"], "mrkdwn");
        let s = sections(&p[0]);
        assert!(s[0].starts_with(":warning: *warning*"), "{}", s[0]);
        assert!(s[0].contains("instance `inst-1` · group `web` · zone `a`"), "{}", s[0]);
        assert!(s[0].contains("*done*"), "{}", s[0]);
        assert!(s[0].contains("terminated &lt;b&gt; &amp; co"), "{}", s[0]);
        assert!(s[1].starts_with(":rotating_light:"), "{}", s[1]);
        assert!(s[1].contains("whole run"), "{}", s[1]);
        assert_eq!(b[3]["type"], "context");
        let ctx = b[3]["elements"][0]["text"].as_str().unwrap();
        assert!(ctx.contains("run `r1`") && ctx.contains("seed `42`") && ctx.contains("policy `nightly`"));
        assert!(ctx.contains("2 of 3 findings (warning or above)"), "{ctx}");
        assert_eq!(p[0]["username"], "simian");
        assert!(p[0].get("channel").is_none());
        let text = p[0]["text"].as_str().unwrap();
        assert!(text.contains(&s[0]) && text.contains(&s[1]) && text.contains(ctx), "{text}");
    }

    #[test]
    fn nothing_at_or_above_min_posts_nothing() {
        let msg = report(vec![finding(1, Severity::Info, "x".into())]);
        assert!(payloads(&msg, &cfg(Severity::Warning)).is_empty());
        assert!(payloads(&report(vec![]), &cfg(Severity::Info)).is_empty());
    }

    #[test]
    fn username_and_channel_when_configured() {
        let mut c = cfg(Severity::Info);
        c.username = Some("chaos-bot".into());
        c.channel = Some("#ops".into());
        let p = payloads(&report(vec![finding(1, Severity::Info, "x".into())]), &c);
        assert_eq!(p[0]["username"], "chaos-bot");
        assert_eq!(p[0]["channel"], "#ops");
    }

    #[test]
    fn long_reports_are_split_with_numbered_headers() {
        let msg = report((0..100).map(|i| finding(i, Severity::Warning, "m".into())).collect());
        let p = payloads(&msg, &cfg(Severity::Info));
        assert_eq!(p.len(), 3);
        assert_eq!(blocks(&p[0]).len(), 50);
        assert!(blocks(&p[0])[0]["text"]["text"].as_str().unwrap().ends_with(" (part 1/3)"));
        assert!(blocks(&p[2])[0]["text"]["text"].as_str().unwrap().ends_with(" (part 3/3)"));
        assert_eq!(blocks(&p[2]).last().unwrap()["type"], "context");
        let all: Vec<String> = p.iter().flat_map(sections).collect();
        assert_eq!(all.len(), 100);
        assert!(all[99].contains("`inst-99`"));
    }

    #[test]
    fn long_titles_are_cut_to_150_characters_keeping_the_part_number() {
        let mut findings: Vec<Finding> = (0..60).map(|i| finding(i, Severity::Info, "m".into())).collect();
        findings[0].target = Some("t".repeat(400));
        let p = payloads(&report(findings), &cfg(Severity::Info));
        let h = blocks(&p[0])[0]["text"]["text"].as_str().unwrap();
        assert_eq!(h.chars().count(), 150);
        assert!(h.ends_with("… (part 1/2)"), "{h}");
    }

    #[test]
    fn cutting_never_leaves_half_an_entity() {
        let s = escape(&"a&".repeat(10));
        for max in 1..s.len() {
            let c = cut_escaped(&s, max);
            assert!(c.chars().count() <= max, "{c}");
            let body = c.trim_end_matches('…');
            assert!(body.matches('&').count() == body.matches(';').count(), "{c}");
        }
    }

    #[test]
    fn announcement_lists_actions_and_how_to_object() {
        let msg = fixtures::announcement_of(vec![
            fixtures::planned("chaos", "10:00", Some("lab"), Some("web"), None, "terminate one instance"),
            fixtures::planned("gorilla", "14:30", None, None, Some("b"), "isolate the zone for 10m"),
        ]);
        // Never filtered, whatever the sink's minimum.
        let p = payloads(&msg, &cfg(Severity::Critical));
        assert_eq!(p.len(), 1);
        let b = blocks(&p[0]);
        assert_eq!(b[0]["text"]["text"], "simian plan for 2026-03-10 (Europe/Berlin) — nightly");
        let s = sections(&p[0]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], "*10:00* · *chaos* · target `lab` · group `web` · any zone\nterminate one instance");
        assert_eq!(s[1], "*14:30* · *gorilla* · every eligible group · zone `b`\nisolate the zone for 10m");
        let ctx = b[3]["elements"][0]["text"].as_str().unwrap();
        assert!(ctx.contains("`/etc/simian/stop`"), "{ctx}");
        assert!(p[0]["text"].as_str().unwrap().contains("terminate one instance"));
    }

    #[test]
    fn payloads_are_deterministic() {
        let msg = report((0..120).map(|i| finding(i, Severity::Warning, "m".repeat(i * 20))).collect());
        assert_eq!(payloads(&msg, &cfg(Severity::Info)), payloads(&msg, &cfg(Severity::Info)));
    }

    fn severity() -> impl Strategy<Value = Severity> {
        prop_oneof![Just(Severity::Info), Just(Severity::Warning), Just(Severity::Critical)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn payloads_respect_slack_limits_and_keep_every_finding(
            specs in prop::collection::vec((severity(), 0usize..4000, any::<bool>()), 0..500),
            min in severity(),
            policy_len in 0usize..400,
        ) {
            let findings: Vec<Finding> = specs
                .iter()
                .enumerate()
                .map(|(i, (s, len, special))| {
                    let unit = if *special { "<&>é" } else { "x" };
                    finding(i, *s, unit.repeat(len / unit.chars().count()))
                })
                .collect();
            let expected: Vec<usize> =
                findings.iter().enumerate().filter(|(_, f)| f.severity >= min).map(|(i, _)| i).collect();
            let mut msg = report(findings);
            if let Message::Report { policy, .. } = &mut msg {
                *policy = "p&".repeat(policy_len);
            }
            let p = payloads(&msg, &cfg(min));
            prop_assert_eq!(p.is_empty(), expected.is_empty());
            let mut seen = Vec::new();
            for (n, part) in p.iter().enumerate() {
                let b = blocks(part);
                prop_assert!(b.len() <= MAX_BLOCKS);
                prop_assert_eq!(&b[0]["type"], "header");
                prop_assert_eq!(&b[b.len() - 1]["type"], "context");
                let header = b[0]["text"]["text"].as_str().unwrap();
                prop_assert!(header.chars().count() <= HEADER_MAX);
                if p.len() > 1 {
                    let suffix = format!("(part {}/{})", n + 1, p.len());
                    prop_assert!(header.ends_with(&suffix));
                }
                let ctx = b[b.len() - 1]["elements"][0]["text"].as_str().unwrap();
                prop_assert!(ctx.chars().count() <= SECTION_MAX);
                prop_assert!(part["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
                for s in sections(part) {
                    prop_assert!(s.chars().count() <= SECTION_MAX);
                    prop_assert!(!s.is_empty());
                    seen.push(s);
                }
            }
            prop_assert_eq!(seen.len(), expected.len());
            for (s, i) in seen.iter().zip(&expected) {
                let marker = format!("`inst-{i}`");
                prop_assert!(s.contains(&marker));
            }
        }
    }
}
