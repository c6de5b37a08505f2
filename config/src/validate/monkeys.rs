//! Validation of `monkeys:`: each monkey's schedule and settings, and what the fleet must be able to do.

use std::collections::{BTreeMap, HashSet};

use crate::cron5::Cron;
use crate::locate::{key, Issue, Seg};
use crate::schema::{
    ChaosConfig, DoctorConfig, GorillaAction, GorillaConfig, LatencyConfig, LatencyVia, Policy, TargetConfig,
    TenEighteenConfig,
};
use crate::template;
use crate::MonkeyName;

use super::calendar::timezone_at;
use super::{at_most, bound};

/// The schedule settings of monkey `m`: `None` when it is not configured.
pub(super) fn monkey_schedule(policy: &Policy, m: MonkeyName) -> Option<Option<&str>> {
    match m {
        MonkeyName::Chaos => policy.monkeys.chaos.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::Gorilla => policy.monkeys.gorilla.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::Latency => policy.monkeys.latency.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::Doctor => policy.monkeys.doctor.as_ref().map(|c| c.schedule.as_deref()),
        MonkeyName::TenEighteen => policy.monkeys.ten_eighteen.as_ref().map(|c| c.schedule.as_deref()),
    }
}

pub(super) fn monkeys(
    policy: &Policy,
    all_targets: bool,
    issues: &mut Vec<Issue>,
) -> BTreeMap<MonkeyName, Cron> {
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

pub(super) fn doctor(d: &DoctorConfig, targets: &[TargetConfig], base: &[Seg], issues: &mut Vec<Issue>) {
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

pub(super) fn ten_eighteen(t: &TenEighteenConfig, base: &[Seg], issues: &mut Vec<Issue>) {
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

pub(super) fn latency(l: &LatencyConfig, base: &[Seg], issues: &mut Vec<Issue>) {
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

pub(super) fn gorilla(
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

pub(super) fn chaos(c: &ChaosConfig, base: &[Seg], issues: &mut Vec<Issue>) {
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
