//! Pure validation: every semantic problem in a deserialized policy, and the values it resolves to.
//!
//! Nothing here knows about files or line numbers: problems are reported by key path and the loader gives
//! them their locations.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::{NaiveDate, NaiveTime, Weekday};

use crate::cron5::Cron;
use crate::load::CalendarSpec;
use crate::locate::{key, Issue, Seg};
use crate::schema::{
    AwsEc2Target, CalendarConfig, ChaosConfig, DoctorConfig, ExecutorConfig, GorillaAction, GorillaConfig,
    HostsTarget, LatencyConfig, LatencyVia, Policy, SinkConfig, SshExecutorConfig, TargetConfig,
    TenEighteenConfig,
};
use crate::structural::closest;
use crate::template;
use crate::{Duration, MonkeyName};

/// What a policy resolves to besides itself.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The policy's timezone (UTC when invalid).
    pub tz: chrono_tz::Tz,
    /// Store file.
    pub store_path: std::path::PathBuf,
    /// Kill-switch file.
    pub kill_switch: Option<std::path::PathBuf>,
    /// Parsed calendar.
    pub calendar: Option<CalendarSpec>,
    /// Each configured monkey's schedule.
    pub schedules: BTreeMap<MonkeyName, Cron>,
}

/// Checks `policy` and resolves its paths against `base_dir`; returns every problem found.
///
/// `all_targets` is false when some written target could not be read at all (and is missing from `policy`):
/// checks about what the fleet as a whole can do are skipped then, since the missing target may be the one
/// that could.
pub(crate) fn validate(policy: &Policy, base_dir: &Path, all_targets: bool) -> (Resolved, Vec<Issue>) {
    let mut issues = Vec::new();
    if policy.version != 1 {
        issues.push(
            Issue::at(vec![key("version")], format!("unsupported policy version {}", policy.version))
                .hint("only `version: 1` exists"),
        );
    }
    let tz = timezone(&policy.timezone, &mut issues);
    for (field, value) in [("store", &policy.store), ("kill_switch", &policy.kill_switch)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            issues.push(
                Issue::at(vec![key(field)], "must not be empty").hint("give a file path, or remove the key"),
            );
        }
    }
    let store_path = base_dir.join(policy.store.as_deref().unwrap_or("simian.db"));
    let kill_switch = policy.kill_switch.as_deref().map(|k| base_dir.join(k));
    let calendar = policy.calendar.as_ref().map(|c| calendar(c, &mut issues));
    if policy.opt_in.tag.is_empty() {
        issues.push(Issue::at(vec![key("opt_in"), key("tag")], "the opt-in tag must not be empty"));
    }
    for (field, globs) in [("groups", &policy.exclude.groups), ("instances", &policy.exclude.instances)] {
        for (i, g) in globs.iter().enumerate() {
            if let Err(e) = globset::Glob::new(g) {
                issues.push(Issue::at(
                    vec![key("exclude"), key(field), Seg::Index(i)],
                    format!("invalid glob `{g}`: {}", e.kind()),
                ));
            }
        }
    }
    targets(&policy.targets, &mut issues);
    sinks(policy, &mut issues);
    let schedules = monkeys(policy, all_targets, &mut issues);
    let resolved = Resolved { tz, store_path, kill_switch, calendar, schedules };
    (resolved, issues)
}

/// Unique names, usable URLs (never echoed: they may carry tokens), sane `announce` leads.
const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Upper bounds of durations: a fault held for weeks, a timeout of days or a spacing of decades is a typo,
/// and no bound lets date arithmetic overflow at run time.
mod bound {
    use super::{DAY, HOUR, MINUTE};
    /// A Gorilla isolation.
    pub const GORILLA_DURATION: u64 = 7 * DAY;
    /// A Latency fault.
    pub const LATENCY_DURATION: u64 = DAY;
    /// The netem dead-man switch's grace after the fault's end.
    pub const LATENCY_GRACE: u64 = HOUR;
    /// Added delay or jitter.
    pub const LATENCY_DELAY: u64 = MINUTE;
    /// Chaos Monkey's spacing and mean time between kills.
    pub const KILL_SPACING: u64 = 366 * DAY;
    /// Command, probe and connect timeouts.
    pub const TIMEOUT: u64 = HOUR;
    /// How long ssh keeps an idle shared connection; 10-18's tolerated skew.
    pub const LONG: u64 = DAY;
}

/// The located error for a duration above `max_secs`, naming the bound.
fn at_most(d: Option<Duration>, max_secs: u64, path: Vec<Seg>, issues: &mut Vec<Issue>) {
    let Some(d) = d else { return };
    if d.std() > std::time::Duration::from_secs(max_secs) {
        let max = Duration(std::time::Duration::from_secs(max_secs));
        let name = path.iter().rev().find_map(|s| match s {
            Seg::Key(k) => Some(k.to_string()),
            Seg::Index(_) => None,
        });
        issues.push(
            Issue::at(
                path,
                format!("`{}: {d}` is too long; at most {max} is allowed", name.unwrap_or_default()),
            )
            .hint(format!("give a duration up to {max}")),
        );
    }
}

fn sinks(policy: &Policy, issues: &mut Vec<Issue>) {
    if policy.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        issues.push(
            Issue::at(vec![key("name")], "a policy name must not be empty").hint("e.g. `name: staging-eu`"),
        );
    }
    let mut seen = HashSet::new();
    for (i, s) in policy.sinks.iter().enumerate() {
        let at = |f: &str| vec![key("sinks"), Seg::Index(i), key(f)];
        if !seen.insert(s.name()) {
            let mut issue =
                Issue::at(vec![key("sinks"), Seg::Index(i)], format!("two sinks are named `{}`", s.name()))
                    .hint("give each sink of the same type its own `name:`; deliveries are tracked per name");
            issue.at_key = true;
            issues.push(issue);
        }
        let mut url = |field: &str, value: &str| {
            if let Err(why) = check_url(value) {
                issues.push(
                    Issue::at(at(field), format!("`{field}` {why}"))
                        .hint("use a full http:// or https:// URL (from the environment: `${NAME}`)"),
                );
            }
        };
        match s {
            SinkConfig::Log(_) => {}
            SinkConfig::Jsonl(j) => {
                if j.path.trim().is_empty() {
                    issues.push(Issue::at(at("path"), "must not be empty").hint("give a file path"));
                }
            }
            SinkConfig::Slack(sl) => url("webhook_url", sl.webhook_url.expose()),
            SinkConfig::Webhook(w) => {
                url("url", w.url.expose());
                for name in w.headers.keys() {
                    let ok = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                    if !ok {
                        issues.push(
                            Issue::at(
                                vec![key("sinks"), Seg::Index(i), key("headers"), key(name)],
                                format!("invalid header name `{name}`"),
                            )
                            .hint("letters, digits, `-` and `_` only"),
                        );
                    }
                }
            }
            SinkConfig::Prometheus(p) => {
                if let Some(g) = &p.pushgateway {
                    url("pushgateway", g);
                }
            }
        }
        if let Some(a) = s.announce() {
            if a.as_secs() == 0 || a.as_secs() >= 24 * 3600 {
                issues.push(
                    Issue::at(
                        at("announce"),
                        format!("`announce: {a}` must be more than 0 and less than 24h"),
                    )
                    .hint("e.g. `announce: 30m`"),
                );
            }
        }
    }
}

/// Why `value` is not a usable http(s) URL; the value itself is never part of the answer.
fn check_url(value: &str) -> Result<(), &'static str> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or(if value.is_empty() { "is empty" } else { "must start with http:// or https://" })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || value.chars().any(char::is_whitespace) {
        return Err("is not a valid URL (no host, or whitespace)");
    }
    Ok(())
}

fn timezone(name: &str, issues: &mut Vec<Issue>) -> chrono_tz::Tz {
    timezone_at(name, vec![key("timezone")], issues)
}

/// An IANA timezone name at `path`, with the closest known name as the hint when it is misspelt.
fn timezone_at(name: &str, path: Vec<Seg>, issues: &mut Vec<Issue>) -> chrono_tz::Tz {
    match name.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            let mut issue = Issue::at(path, format!("unknown timezone `{name}`"));
            let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
            issue.hint = Some(match closest(name, names) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "use an IANA name such as `UTC` or `Europe/Berlin`".to_string(),
            });
            issues.push(issue);
            chrono_tz::UTC
        }
    }
}

fn calendar(c: &CalendarConfig, issues: &mut Vec<Issue>) -> CalendarSpec {
    let at = |f: &str| vec![key("calendar"), key(f)];
    let hours = c.hours.as_deref().and_then(|h| match parse_hours(h) {
        Ok(w) => Some(w),
        Err(()) => {
            issues.push(
                Issue::at(
                    at("hours"),
                    format!("invalid hours `{h}`: expected `HH:MM-HH:MM` in 24-hour time"),
                )
                .hint("e.g. `09:00-17:00`, or `22:00-06:00` across midnight"),
            );
            None
        }
    });
    let days = c.days.as_ref().map(|days| {
        if days.is_empty() {
            issues.push(
                Issue::at(at("days"), "an empty list of days never runs")
                    .hint("remove `days` to allow every day"),
            );
        }
        let mut out = Vec::new();
        for (i, d) in days.iter().enumerate() {
            match parse_day(d) {
                Some(w) => out.push(w),
                None => {
                    let mut issue = Issue::at(
                        vec![key("calendar"), key("days"), Seg::Index(i)],
                        format!("unknown day `{d}`; expected mon, tue, wed, thu, fri, sat or sun"),
                    );
                    let all = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                    if let Some(c) = closest(d, all) {
                        issue.hint = Some(format!("did you mean `{c}`?"));
                    }
                    issues.push(issue);
                }
            }
        }
        out
    });
    let mut holidays = Vec::new();
    for (i, h) in c.holidays.iter().enumerate() {
        match parse_date(h) {
            Some(d) => holidays.push(d),
            None => issues.push(
                Issue::at(
                    vec![key("calendar"), key("holidays"), Seg::Index(i)],
                    format!("invalid holiday `{h}`: expected a date `YYYY-MM-DD`"),
                )
                .hint("e.g. `2025-12-25`"),
            ),
        }
    }
    CalendarSpec { hours, days, holidays }
}

/// `HH:MM-HH:MM`; an end of `24:00` means midnight.
pub(crate) fn parse_hours(s: &str) -> Result<(NaiveTime, NaiveTime), ()> {
    let (a, b) = s.split_once('-').ok_or(())?;
    let start = parse_hhmm(a.trim(), false)?;
    let end = parse_hhmm(b.trim(), true)?;
    Ok((start, end))
}

fn parse_hhmm(s: &str, allow_24: bool) -> Result<NaiveTime, ()> {
    let (h, m) = s.split_once(':').ok_or(())?;
    let digits = |t: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| ())?, m.parse().map_err(|_| ())?);
    if allow_24 && h == 24 && m == 0 {
        return Ok(NaiveTime::MIN);
    }
    NaiveTime::from_hms_opt(h, m, 0).ok_or(())
}

/// `mon` … `sun` or the full English name, any case.
pub(crate) fn parse_day(s: &str) -> Option<Weekday> {
    Some(match s.trim().to_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tues" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-');
    shape.then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).flatten()
}

fn targets(targets: &[TargetConfig], issues: &mut Vec<Issue>) {
    let mut names = HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let base = vec![key("targets"), Seg::Index(i)];
        let at = |f: &str| {
            let mut p = base.clone();
            p.push(key(f));
            p
        };
        let name = t.name();
        if name.trim().is_empty() {
            issues.push(Issue::at(at("name"), "a target name must not be empty"));
        } else if !names.insert(name) {
            issues.push(
                Issue::at(at("name"), format!("duplicate target name `{name}`"))
                    .hint("give each target its own name"),
            );
        }
        match t {
            TargetConfig::Hosts(h) => hosts_target(h, &base, issues),
            TargetConfig::AwsEc2(a) => aws_target(a, &base, issues),
        }
    }
}

/// One argv template of a hosts target (`terminate`, `isolate`, `restore`): not empty, placeholders known.
fn command(argv: &[String], field: &str, example: &str, base: &[Seg], issues: &mut Vec<Issue>) {
    let mut p = base.to_vec();
    p.push(key(field));
    if argv.is_empty() {
        issues.push(
            Issue::at(p.clone(), format!("the {field} command is empty"))
                .hint(format!("give an argv list, e.g. {example}")),
        );
    }
    check_argv(argv, &p, issues);
}

fn hosts_target(h: &HostsTarget, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &[Seg]| {
        let mut p = base.to_vec();
        p.extend_from_slice(f);
        p
    };
    let commands = [
        ("terminate", &h.terminate, r#"["systemctl", "stop", "app@{id}"]"#),
        ("isolate", &h.isolate, r#"["iptables", "-I", "INPUT", "-j", "DROP"]"#),
        ("restore", &h.restore, r#"["iptables", "-D", "INPUT", "-j", "DROP"]"#),
    ];
    for (field, argv, example) in commands {
        if let Some(argv) = argv {
            command(argv, field, example, base, issues);
        }
    }
    match (&h.isolate, &h.restore) {
        (Some(_), None) => {
            let mut issue = Issue::at(
                at(&[key("isolate")]),
                "`isolate` needs a matching `restore` so the fault can be undone",
            )
            .hint("add `restore: [...]`, an argv that reverses `isolate`");
            issue.at_key = true;
            issues.push(issue);
        }
        (None, Some(_)) => {
            let mut issue =
                Issue::at(at(&[key("restore")]), "`restore` without `isolate` has nothing to undo")
                    .hint("add the `isolate` command it reverses, or remove `restore`");
            issue.at_key = true;
            issues.push(issue);
        }
        (Some(_), Some(_)) | (None, None) => {}
    }
    match &h.executor {
        ExecutorConfig::Local => {}
        ExecutorConfig::Ssh(ssh) => ssh_executor(ssh, &at(&[key("executor")]), issues),
        ExecutorConfig::Wrap { argv } => {
            let p = at(&[key("executor"), key("argv")]);
            if argv.is_empty() {
                issues.push(
                    Issue::at(p.clone(), "the wrap executor's argv is empty")
                        .hint("give a prefix, e.g. [\"docker\", \"exec\", \"{id}\"]"),
                );
            }
            check_argv(argv, &p, issues);
        }
    }
    if h.timeout.is_some_and(|t| t.std().is_zero()) {
        issues.push(Issue::at(at(&[key("timeout")]), "the timeout must be longer than 0s"));
    }
    at_most(h.timeout, bound::TIMEOUT, at(&[key("timeout")]), issues);
    if let Some(o) = &h.opt_in {
        if o.tag.is_empty() {
            issues.push(Issue::at(at(&[key("opt_in"), key("tag")]), "the opt-in tag must not be empty"));
        }
    }
    let mut ids = HashSet::new();
    for (j, host) in h.hosts.iter().enumerate() {
        let hp = |f: &str| at(&[key("hosts"), Seg::Index(j), key(f)]);
        if host.id.trim().is_empty() {
            issues.push(Issue::at(hp("id"), "a host id must not be empty"));
        } else if !ids.insert(host.id.as_str()) {
            issues.push(
                Issue::at(hp("id"), format!("duplicate host id `{}` in this target", host.id))
                    .hint("host ids must be unique within a target"),
            );
        }
        if host.group.trim().is_empty() {
            issues.push(Issue::at(hp("group"), "a host group must not be empty"));
        }
    }
}

fn aws_target(a: &AwsEc2Target, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &[Seg]| {
        let mut p = base.to_vec();
        p.extend_from_slice(f);
        p
    };
    if a.regions.is_empty() {
        issues.push(
            Issue::at(at(&[key("regions")]), "an aws_ec2 target needs at least one region")
                .hint("e.g. `regions: [us-east-1]`"),
        );
    }
    let mut seen = HashSet::new();
    for (i, r) in a.regions.iter().enumerate() {
        let p = at(&[key("regions"), Seg::Index(i)]);
        if !is_region(r) {
            let fixed = r.trim().to_lowercase();
            let hint = if is_region(&fixed) {
                format!("region names are lowercase without spaces: `{fixed}`")
            } else if let Some(region) =
                fixed.strip_suffix(|c: char| c.is_ascii_lowercase()).filter(|r| is_region(r))
            {
                format!("`{fixed}` is an availability zone; its region is `{region}`")
            } else {
                "write a region code such as `us-east-1`, `eu-central-1` or `us-gov-west-1`".to_string()
            };
            issues.push(Issue::at(p, format!("`{r}` is not an AWS region")).hint(hint));
        } else if !seen.insert(r.as_str()) {
            issues.push(Issue::at(p, format!("duplicate region `{r}`")).hint("list each region once"));
        }
    }
    if let Some(u) = &a.endpoint_url {
        if let Err(why) = check_endpoint_url(u) {
            issues.push(
                Issue::at(at(&[key("endpoint_url")]), format!("invalid endpoint_url `{u}`: {why}")).hint(
                    "e.g. `http://127.0.0.1:5000` for a local moto server; remove it to use AWS's endpoint",
                ),
            );
        }
    }
    if a.profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
        issues.push(Issue::at(at(&[key("profile")]), "the profile name must not be empty").hint(
            "name a profile of the shared AWS config, or remove the key for the default credential chain",
        ));
    }
    if a.group_by.trim().is_empty() {
        issues.push(
            Issue::at(at(&[key("group_by")]), "the group_by tag must not be empty")
                .hint("the default, `aws:autoscaling:groupName`, groups instances by Auto Scaling group"),
        );
    }
    if a.isolation_group.trim().is_empty() {
        issues.push(
            Issue::at(at(&[key("isolation_group")]), "the isolation security group name must not be empty")
                .hint("the default is `simian-isolation`"),
        );
    }
    if !(1..=1000).contains(&a.terminate_batch) {
        issues.push(
            Issue::at(
                at(&[key("terminate_batch")]),
                format!("terminate_batch {} is outside 1..=1000", a.terminate_batch),
            )
            .hint("one TerminateInstances call takes at most 1000 instances; the default is 100"),
        );
    }
    if let Some(o) = &a.opt_in {
        if o.tag.is_empty() {
            issues.push(Issue::at(at(&[key("opt_in"), key("tag")]), "the opt-in tag must not be empty"));
        }
    }
}

/// An AWS region code: `^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$` (`us-east-1`, `us-gov-west-1`, `us-isob-east-1`).
pub(crate) fn is_region(s: &str) -> bool {
    let letters = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let partition = |p: &str| {
        p == "gov" || p.strip_prefix("iso").is_some_and(|x| x.is_empty() || (x.len() == 1 && letters(x)))
    };
    let parts: Vec<&str> = s.split('-').collect();
    let cc = |p: &str| p.len() == 2 && letters(p);
    match parts.as_slice() {
        [c, area, n] => cc(c) && letters(area) && digits(n),
        [c, part, area, n] => cc(c) && partition(part) && letters(area) && digits(n),
        _ => false,
    }
}

/// An absolute `http://` or `https://` URL with a host (and maybe a port); `Err` says what is wrong.
pub(crate) fn check_endpoint_url(u: &str) -> Result<(), String> {
    if u.trim().is_empty() {
        return Err("it is empty".to_string());
    }
    if u.chars().any(char::is_whitespace) {
        return Err("a URL cannot contain whitespace".to_string());
    }
    let Some((scheme, rest)) = u.split_once("://") else {
        return Err("expected an absolute URL starting with `http://` or `https://`".to_string());
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!("unsupported scheme `{scheme}`; expected `http` or `https`"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials do not belong in the URL; use `profile` or the credential chain".to_string());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => match tail {
                "" => (authority, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (authority, Some(p)),
                    None => return Err(format!("unexpected `{t}` after the IPv6 address")),
                },
            },
            _ => return Err(format!("invalid IPv6 host `{authority}`")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host".to_string());
    }
    let host_ok = host.starts_with('[')
        || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !host_ok {
        return Err(format!("invalid host `{host}`"));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(format!("invalid port `{p}`; expected 1..=65535"));
        }
    }
    Ok(())
}

/// Checks an `executor: { type: ssh, … }` found at `base`.
fn ssh_executor(ssh: &SshExecutorConfig, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &str| {
        let mut p = base.to_vec();
        p.push(key(f));
        p
    };
    if ssh.port == Some(0) {
        issues
            .push(Issue::at(at("port"), "the ssh port must be 1..=65535, not 0").hint("22 is ssh's default"));
    }
    for (field, value, hint) in [
        ("user", &ssh.user, "remove `user` to use ssh's default (your ssh config, else your login name)"),
        (
            "identity_file",
            &ssh.identity_file,
            "remove `identity_file` to use your ssh agent and default keys",
        ),
        ("known_hosts", &ssh.known_hosts, "remove `known_hosts` to use ~/.ssh/known_hosts"),
    ] {
        let Some(value) = value else { continue };
        if value.trim().is_empty() {
            issues.push(Issue::at(at(field), format!("the ssh `{field}` must not be empty")).hint(hint));
        } else if value.chars().any(char::is_control) {
            issues
                .push(Issue::at(at(field), format!("the ssh `{field}` must not contain control characters")));
        }
    }
    if let Some(host) = &ssh.host {
        if host.trim().is_empty() {
            issues.push(
                Issue::at(at("host"), "the ssh `host` must not be empty").hint(
                    "remove `host` to connect to `{address}` (else `{id}`), or give e.g. `{id}.internal`",
                ),
            );
        } else if let Err(e) = template::pieces(host) {
            let mut issue = Issue::at(at("host"), e.to_string());
            if let Some(hint) = e.hint() {
                issue = issue.hint(hint);
            }
            issues.push(issue);
        }
    }
    at_most(ssh.connect_timeout, bound::TIMEOUT, at("connect_timeout"), issues);
    at_most(ssh.control_persist, bound::LONG, at("control_persist"), issues);
    if ssh.connect_timeout.is_some_and(|t| t.std().is_zero()) {
        issues.push(Issue::at(at("connect_timeout"), "the ssh connect timeout must be longer than 0s"));
    }
    if ssh.control_persist.is_some_and(|t| t.std().is_zero()) {
        issues.push(
            Issue::at(at("control_persist"), "`control_persist` must be longer than 0s")
                .hint("ssh would keep an idle shared connection open forever at 0; give e.g. 60s"),
        );
    }
}

/// Checks the placeholders of every element of an argv template.
fn check_argv(argv: &[String], base: &[Seg], issues: &mut Vec<Issue>) {
    for (i, el) in argv.iter().enumerate() {
        if let Err(e) = template::pieces(el) {
            let mut p = base.to_vec();
            p.push(Seg::Index(i));
            let mut issue = Issue::at(p, e.to_string());
            if let Some(hint) = e.hint() {
                issue = issue.hint(hint);
            }
            issues.push(issue);
        }
    }
}

/// The schedule settings of monkey `m`: `None` when it is not configured.
fn monkey_schedule(policy: &Policy, m: MonkeyName) -> Option<Option<&str>> {
    match m {
        MonkeyName::Chaos => policy.monkeys.chaos.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::Gorilla => policy.monkeys.gorilla.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::Latency => policy.monkeys.latency.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::Doctor => policy.monkeys.doctor.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::TenEighteen => policy.monkeys.ten_eighteen.as_ref().map(|c| c.schedule.as_deref()),
    }
}

fn monkeys(policy: &Policy, all_targets: bool, issues: &mut Vec<Issue>) -> BTreeMap<MonkeyName, Cron> {
    let mut schedules = BTreeMap::new();
    for m in MonkeyName::ALL {
        let base = vec![key("monkeys"), key(m.as_str())];
        match monkey_schedule(policy, m) {
            None => {}
            Some(None) => {
                let mut issue = Issue::at(base.clone(), format!("monkey `{m}` has no schedule"))
                    .hint("add e.g. `schedule: \"*/30 9-17 * * mon-fri\"` (5-field cron)");
                issue.at_key = true;
                issues.push(issue);
            }
            Some(Some(expr)) => {
                let mut p = base.clone();
                p.push(key("schedule"));
                match Cron::parse(expr) {
                    Ok(c) => {
                        schedules.insert(m, c);
                    }
                    Err(e) => issues.push(Issue::at(p, e)),
                }
            }
        }
        match m {
            MonkeyName::Chaos => {
                if let Some(c) = &policy.monkeys.chaos {
                    chaos(c, &base, issues);
                }
            }
            MonkeyName::Gorilla => {
                if let Some(g) = &policy.monkeys.gorilla {
                    gorilla(g, &policy.targets, all_targets, &base, issues);
                }
            }
            MonkeyName::Latency => {
                if let Some(l) = &policy.monkeys.latency {
                    latency(l, &base, issues);
                }
            }
            MonkeyName::Doctor => {
                if let Some(d) = &policy.monkeys.doctor {
                    doctor(d, &policy.targets, &base, issues);
                }
            }
            MonkeyName::TenEighteen => {
                if let Some(t) = &policy.monkeys.ten_eighteen {
                    ten_eighteen(t, &base, issues);
                }
            }
        }
    }
    schedules
}

fn doctor(d: &DoctorConfig, targets: &[TargetConfig], base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &str| {
        let mut p = base.to_vec();
        p.push(key(f));
        p
    };
    let hosts_have_urls = targets.iter().any(|t| match t {
        TargetConfig::Hosts(h) => h.hosts.iter().any(|x| x.url.is_some()),
        TargetConfig::AwsEc2(_) => false,
    });
    if d.url.is_none() && !d.proc && !hosts_have_urls {
        let mut issue = Issue::at(
            at("url"),
            "the doctor has nothing to check: no `url`, no host `url`, and `proc` is off",
        )
        .hint("add e.g. `url: \"http://{address}:8080/health\"`, or `proc: true`");
        issue.at_key = true;
        issues.push(issue);
    }
    if let Some(u) = &d.url {
        if let Err(e) = template::pieces(u) {
            issues.push(Issue::at(at("url"), e.to_string()).hint(template::SYNTAX_HINT));
        } else if !(u.starts_with("http://") || u.starts_with("https://")) {
            issues
                .push(Issue::at(at("url"), format!("health URL `{u}` must start with http:// or https://")));
        }
    }
    for (i, code) in d.expect_status.iter().enumerate() {
        if !(100..=599).contains(code) {
            let mut p = at("expect_status");
            p.push(Seg::Index(i));
            issues.push(Issue::at(p, format!("{code} is not an HTTP status code (100..=599)")));
        }
    }
    if d.timeout.is_some_and(|t| t.std().is_zero()) {
        issues.push(Issue::at(at("timeout"), "the probe timeout must be longer than 0s"));
    }
    at_most(d.timeout, bound::TIMEOUT, at("timeout"), issues);
    if d.concurrency == 0 {
        issues.push(Issue::at(at("concurrency"), "concurrency must be at least 1"));
    }
    if d.failures_before_unhealthy == 0 {
        issues
            .push(Issue::at(at("failures_before_unhealthy"), "failures_before_unhealthy must be at least 1"));
    }
    if d.max_load_per_cpu.is_some_and(|l| !(l > 0.0 && l.is_finite())) {
        issues
            .push(Issue::at(at("max_load_per_cpu"), "max_load_per_cpu must be a positive number, e.g. 2.0"));
    }
    let needs_proc =
        d.max_load_per_cpu.is_some() || d.min_mem_available.is_some() || d.max_disk_used.is_some();
    if needs_proc && !d.proc {
        issues.push(
            Issue::at(at("proc"), "load, memory and disk thresholds need `proc: true`")
                .hint("set `proc: true`, or remove the thresholds"),
        );
    }
}

fn ten_eighteen(t: &TenEighteenConfig, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &[Seg]| {
        let mut p = base.to_vec();
        p.extend_from_slice(f);
        p
    };
    if let Some(tz) = &t.expect.timezone {
        timezone_at(tz, at(&[key("expect"), key("timezone")]), issues);
    }
    for (i, o) in t.overrides.iter().enumerate() {
        let here = |f: &str| at(&[key("overrides"), Seg::Index(i), key(f)]);
        if let Some(tz) = &o.timezone {
            timezone_at(tz, here("timezone"), issues);
        }
        let selectors = [&o.zone, &o.region, &o.group].iter().filter(|s| s.is_some()).count();
        if selectors == 0 {
            let mut issue = Issue::at(
                at(&[key("overrides"), Seg::Index(i)]),
                "an override names at least one of `zone`, `region` or `group`",
            )
            .hint("e.g. `{ zone: eu-west-1a, timezone: Europe/Dublin }`");
            issue.at_key = true;
            issues.push(issue);
        }
        if o.timezone.is_none() && o.locale.is_none() {
            issues.push(Issue::at(
                at(&[key("overrides"), Seg::Index(i)]),
                "an override sets `timezone`, `locale` or both",
            ));
        }
    }
    at_most(t.max_clock_skew, bound::LONG, at(&[key("max_clock_skew")]), issues);
    if t.max_clock_skew.is_some_and(|d| d.std().is_zero()) {
        issues.push(Issue::at(at(&[key("max_clock_skew")]), "max_clock_skew must be longer than 0s"));
    }
}

fn latency(l: &LatencyConfig, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &str| {
        let mut p = base.to_vec();
        p.push(key(f));
        p
    };
    let at_index = |f: &str, i: usize, g: &str| {
        let mut p = at(f);
        p.push(Seg::Index(i));
        p.push(key(g));
        p
    };
    match l.delay {
        None => {
            let mut issue =
                Issue::at(at("delay"), "the latency monkey needs a `delay`").hint("e.g. `delay: 200ms`");
            issue.at_key = true;
            issues.push(issue);
        }
        Some(d) if d.std().is_zero() && l.jitter.is_none_or(|j| j.std().is_zero()) => issues.push(
            Issue::at(at("delay"), "a delay of 0 with no jitter adds nothing").hint("e.g. `delay: 200ms`"),
        ),
        Some(_) => {}
    }
    if l.interface.trim().is_empty() {
        issues.push(
            Issue::at(at("interface"), "the interface must not be empty")
                .hint("`auto` uses the interface of the default route"),
        );
    }
    if l.duration.is_some_and(|d| d.std().is_zero()) {
        issues.push(Issue::at(at("duration"), "the latency duration must be longer than 0s"));
    }
    at_most(l.duration, bound::LATENCY_DURATION, at("duration"), issues);
    at_most(l.grace, bound::LATENCY_GRACE, at("grace"), issues);
    at_most(l.delay, bound::LATENCY_DELAY, at("delay"), issues);
    at_most(l.jitter, bound::LATENCY_DELAY, at("jitter"), issues);
    if l.hosts_per_group == 0 {
        issues.push(Issue::at(at("hosts_per_group"), "hosts_per_group must be at least 1"));
    }
    match l.via {
        LatencyVia::Proxy if l.proxies.is_empty() => issues.push(
            Issue::at(at("via"), "`via: proxy` needs at least one entry in `proxies`")
                .hint("e.g. `proxies: [{ listen: \"127.0.0.1:18080\", upstream: \"127.0.0.1:8080\" }]`"),
        ),
        LatencyVia::Tc if !l.proxies.is_empty() => issues.push(
            Issue::at(at("proxies"), "`proxies` are used with `via: proxy` only")
                .hint("set `via: proxy`, or remove `proxies`"),
        ),
        LatencyVia::Proxy | LatencyVia::Tc => {}
    }
    let mut listens = HashSet::new();
    for (i, p) in l.proxies.iter().enumerate() {
        if p.listen.parse::<std::net::SocketAddr>().is_err() {
            issues.push(
                Issue::at(at_index("proxies", i, "listen"), format!("invalid listen address `{}`", p.listen))
                    .hint("an IP and a port, e.g. `127.0.0.1:18080`"),
            );
        } else if !listens.insert(p.listen.clone()) {
            issues.push(Issue::at(
                at_index("proxies", i, "listen"),
                format!("duplicate listen address `{}`", p.listen),
            ));
        }
        let port_ok = p
            .upstream
            .rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
        if !port_ok {
            issues.push(
                Issue::at(
                    at_index("proxies", i, "upstream"),
                    format!("invalid upstream address `{}`", p.upstream),
                )
                .hint("a host and a port, e.g. `127.0.0.1:8080`"),
            );
        }
    }
}

fn gorilla(
    g: &GorillaConfig,
    targets: &[TargetConfig],
    all_targets: bool,
    base: &[Seg],
    issues: &mut Vec<Issue>,
) {
    let at = |f: &str| {
        let mut p = base.to_vec();
        p.push(key(f));
        p
    };
    if g.zone.trim().is_empty() {
        issues.push(
            Issue::at(at("zone"), "the zone must not be empty")
                .hint("use `random` for a zone holding eligible instances, or name one, e.g. `us-east-1a`"),
        );
    }
    match (g.action, g.duration) {
        (GorillaAction::Terminate, Some(_)) => issues.push(
            Issue::at(
                at("duration"),
                "`duration` applies to `action: isolate` only; terminated instances are not restored",
            )
            .hint("remove `duration`, or use `action: isolate`"),
        ),
        (GorillaAction::Isolate, Some(d)) if d.std().is_zero() => {
            issues.push(Issue::at(at("duration"), "the isolation duration must be longer than 0s"))
        }
        (GorillaAction::Isolate, _) | (GorillaAction::Terminate, None) => {}
    }
    at_most(g.duration, bound::GORILLA_DURATION, at("duration"), issues);
    // Isolating needs a target that can isolate: aws_ec2 swaps security groups, hosts run `isolate`. A hosts
    // target without the commands is reported when the gorilla acts on it; a fleet with none is an error now.
    let can_isolate = |t: &TargetConfig| match t {
        TargetConfig::AwsEc2(_) => true,
        // A lone `isolate` or `restore` is reported on its own; do not pile on.
        TargetConfig::Hosts(h) => h.isolate.is_some() || h.restore.is_some(),
    };
    let isolate = g.action == GorillaAction::Isolate;
    if g.enabled && isolate && all_targets && !targets.is_empty() && !targets.iter().any(can_isolate) {
        issues.push(
            Issue::at(
                at("action"),
                "`action: isolate` needs a target that can isolate, and no target here can",
            )
            .hint("add `isolate`/`restore` to a hosts target, or use `action: terminate`"),
        );
    }
}

fn chaos(c: &ChaosConfig, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &str| {
        let mut p = base.to_vec();
        p.push(key(f));
        p
    };
    if let Some(p) = c.probability {
        if !(0.0..=1.0).contains(&p) {
            issues.push(
                Issue::at(at("probability"), format!("probability {p} is outside 0..=1"))
                    .hint("0 never acts, 1 always acts, 0.25 acts one run in four"),
            );
        }
    }
    if let Some(m) = c.mean_time_between_kills {
        if c.probability.is_some() {
            issues.push(
                Issue::at(
                    at("mean_time_between_kills"),
                    "`probability` and `mean_time_between_kills` are both set",
                )
                .hint("keep one of them"),
            );
        }
        if m.std().is_zero() {
            issues.push(Issue::at(
                at("mean_time_between_kills"),
                "mean_time_between_kills must be longer than 0s",
            ));
        }
    }
    at_most(c.mean_time_between_kills, bound::KILL_SPACING, at("mean_time_between_kills"), issues);
    at_most(c.min_time_between_kills, bound::KILL_SPACING, at("min_time_between_kills"), issues);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).expect("valid");
        assert_eq!(parse_hours("09:00-17:30"), Ok((t(9, 0), t(17, 30))));
        assert_eq!(parse_hours("22:00 - 06:00"), Ok((t(22, 0), t(6, 0))));
        assert_eq!(parse_hours("18:00-24:00"), Ok((t(18, 0), t(0, 0))));
        for bad in ["9-17", "24:00-01:00", "09:60-10:00", "0900-1000", "09:00", "09:00-10:00-11:00", ""] {
            assert_eq!(parse_hours(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for ok in [
            "us-east-1",
            "eu-central-1",
            "ap-southeast-2",
            "us-gov-west-1",
            "us-iso-east-1",
            "us-isob-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "us-east-1a",
            "US-EAST-1",
            "useast-1",
            "usa-east-1",
            "us-isoab-east-1",
            "us-foo-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn endpoint_urls() {
        for ok in [
            "http://127.0.0.1:5000",
            "https://ec2.us-east-1.amazonaws.com",
            "HTTP://localhost/",
            "http://moto_server:5000/path?q=1",
            "http://[::1]:5000",
        ] {
            assert_eq!(check_endpoint_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:5000",
            "ftp://host",
            "http://",
            "http://:5000",
            "http://host:0",
            "http://host:x",
            "http://a b",
            "http://user:pw@host",
            "http://[::1",
            "http://[zz]:1",
            "http://ho$t",
        ] {
            assert!(check_endpoint_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_and_dates() {
        assert_eq!(parse_day("Monday"), Some(Weekday::Mon));
        assert_eq!(parse_day("SUN"), Some(Weekday::Sun));
        assert_eq!(parse_day("mo"), None);
        assert!(parse_date("2025-12-25").is_some());
        assert!(parse_date("2025-2-5").is_none());
        assert!(parse_date("2025-02-30").is_none());
    }
}
