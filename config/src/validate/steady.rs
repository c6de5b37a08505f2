//! Validation of `steady_state:` (probes, tolerances, durations, the load cap) and of each monkey's
//! `steady_state:` choice of probes.

use std::collections::HashSet;

use crate::locate::{key, Issue, Seg};
use crate::schema::Policy;
use crate::steady::{defaults, ProbeChoice, ProbeConfig, SteadyState, SteadyStateConfig, Tolerance};
use crate::MonkeyName;

use super::{at_most, bound, HOUR};

/// The most closed-loop workers one HTTP probe may run.
const MAX_CONCURRENCY: u32 = 256;

pub(super) fn steady_state(policy: &Policy, issues: &mut Vec<Issue>) -> Option<SteadyState> {
    let names = match &policy.steady_state {
        Some(cfg) => config(cfg, issues),
        None => HashSet::new(),
    };
    let choices = [
        (MonkeyName::Chaos, policy.monkeys.chaos.as_ref().and_then(|c| c.steady_state.as_ref())),
        (MonkeyName::Gorilla, policy.monkeys.gorilla.as_ref().and_then(|c| c.steady_state.as_ref())),
        (MonkeyName::Latency, policy.monkeys.latency.as_ref().and_then(|c| c.steady_state.as_ref())),
    ];
    for (m, choice) in choices {
        let path = vec![key("monkeys"), key(m.as_str()), key("steady_state")];
        match choice {
            None | Some(ProbeChoice::All(false)) => {}
            Some(ProbeChoice::All(true)) | Some(ProbeChoice::Named(_)) if policy.steady_state.is_none() => {
                issues.push(
                    Issue::at(path, "there is no top-level `steady_state:` whose probes this could name")
                        .hint("define `steady_state: { probes: [...] }` at the top of the policy, or remove this key"),
                )
            }
            Some(ProbeChoice::All(true)) => {}
            Some(ProbeChoice::Named(list)) => {
                for (i, n) in list.iter().enumerate() {
                    if !names.contains(n.as_str()) {
                        let mut known: Vec<&str> = names.iter().copied().collect();
                        known.sort_unstable();
                        let mut p = path.clone();
                        p.push(Seg::Index(i));
                        issues.push(
                            Issue::at(p, format!("unknown probe `{n}`"))
                                .hint(format!("probes defined in `steady_state.probes`: {}", known.join(", "))),
                        );
                    }
                }
            }
        }
    }
    policy.steady_state.as_ref().map(SteadyState::resolve)
}

/// Checks the top-level block; returns the probe names defined.
fn config<'p>(cfg: &'p SteadyStateConfig, issues: &mut Vec<Issue>) -> HashSet<&'p str> {
    let at = |f: &str| vec![key("steady_state"), key(f)];
    at_most(cfg.baseline, HOUR, at("baseline"), issues);
    at_most(cfg.observe, bound::LATENCY_DURATION, at("observe"), issues);
    at_most(cfg.recovery, bound::LATENCY_DURATION, at("recovery"), issues);
    at_most(cfg.check_every, HOUR, at("check_every"), issues);
    if cfg.check_every.is_some_and(|d| d.std() < std::time::Duration::from_millis(100)) {
        issues.push(
            Issue::at(at("check_every"), "`check_every` must be at least 100ms")
                .hint("e.g. `check_every: 5s` (the default)"),
        );
    }
    if cfg.abort_after == Some(0) {
        issues.push(
            Issue::at(at("abort_after"), "`abort_after: 0` would abort before any check")
                .hint("give the number of consecutive breaching checks that abort, e.g. 2 (the default)"),
        );
    }
    if cfg.probes.is_empty() {
        let mut issue = Issue::at(vec![key("steady_state")], "`steady_state` has no probes")
            .hint("add `probes:` with at least one `http:` or `prometheus:` probe, or remove `steady_state`");
        issue.at_key = true;
        issues.push(issue);
    }
    let no_baseline = cfg.baseline.is_some_and(|d| d.std().is_zero());
    let mut names = HashSet::new();
    for (i, p) in cfg.probes.iter().enumerate() {
        let here = |f: &str| vec![key("steady_state"), key("probes"), Seg::Index(i), key(f)];
        if p.name.trim().is_empty() {
            issues.push(Issue::at(here("name"), "a probe needs a name").hint("e.g. `name: checkout`"));
        } else if !names.insert(p.name.as_str()) {
            issues.push(
                Issue::at(here("name"), format!("probe name `{}` is used twice", p.name))
                    .hint("give each probe its own name"),
            );
        }
        probe(p, i, no_baseline, issues, &here);
    }
    names
}

fn probe(
    p: &ProbeConfig,
    i: usize,
    no_baseline: bool,
    issues: &mut Vec<Issue>,
    here: &dyn Fn(&str) -> Vec<Seg>,
) {
    let is_http = match (&p.http, &p.prometheus) {
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (Some(_), Some(_)) | (None, None) => {
            let mut issue = Issue::at(
                vec![key("steady_state"), key("probes"), Seg::Index(i)],
                format!("probe `{}` needs exactly one of `http:` and `prometheus:`", p.name),
            )
            .hint("split it into two probes, each with one way of measuring");
            issue.at_key = true;
            issues.push(issue);
            return;
        }
    };
    if let Some(h) = &p.http {
        let at = |f: &str| {
            let mut v = here("http");
            v.push(key(f));
            v
        };
        url(&h.url, at("url"), issues);
        if h.method.is_empty() || !h.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            issues.push(
                Issue::at(at("method"), format!("invalid HTTP method `{}`", h.method))
                    .hint("e.g. GET, POST, HEAD"),
            );
        }
        for (n, s) in h.expect_status.iter().enumerate() {
            if !(100..=599).contains(s) {
                let mut path = at("expect_status");
                path.push(Seg::Index(n));
                issues.push(
                    Issue::at(path, format!("{s} is not an HTTP status"))
                        .hint("statuses run from 100 to 599"),
                );
            }
        }
        if h.concurrency == 0 || h.concurrency > MAX_CONCURRENCY {
            issues.push(
                Issue::at(
                    at("concurrency"),
                    format!("concurrency {} is outside 1..={MAX_CONCURRENCY}", h.concurrency),
                )
                .hint("a few closed-loop workers measure a service; e.g. `concurrency: 4`"),
            );
        }
        if let Some(r) = h.max_rate {
            if r.per_second() > defaults::MAX_RATE_LIMIT {
                issues.push(
                    Issue::at(at("max_rate"), format!("`max_rate: {r}` is over 1000/s"))
                        .hint("a probe measures staging, it must not load-test it: give at most `1000/s`"),
                );
            }
        }
        at_most(h.timeout, bound::TIMEOUT, at("timeout"), issues);
        if h.timeout.is_some_and(|d| d.std().is_zero()) {
            issues.push(
                Issue::at(at("timeout"), "`timeout: 0s` fails every request").hint("e.g. `timeout: 2s`"),
            );
        }
        for name in h.headers.keys() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                let mut path = at("headers");
                path.push(key(name));
                issues.push(
                    Issue::at(path, format!("invalid header name `{name}`")).hint("e.g. `Authorization`"),
                );
            }
        }
    }
    if let Some(q) = &p.prometheus {
        let at = |f: &str| {
            let mut v = here("prometheus");
            v.push(key(f));
            v
        };
        url(&q.url, at("url"), issues);
        if q.query.trim().is_empty() {
            issues.push(
                Issue::at(at("query"), "the query is empty").hint("e.g. `sum(rate(orders_total[1m]))`"),
            );
        }
        at_most(q.timeout, bound::TIMEOUT, at("timeout"), issues);
    }
    for (metric, text) in p.tolerance.written() {
        let mut path = here("tolerance");
        path.push(key(metric.as_str()));
        if metric.is_http() != is_http {
            let (has, wants) = if is_http {
                ("an http probe", "error_rate, p50, p99, throughput")
            } else {
                ("a prometheus probe", "value")
            };
            issues.push(
                Issue::at(path, format!("{has} has no metric `{metric}`"))
                    .hint(format!("its metrics: {wants}")),
            );
            continue;
        }
        match Tolerance::parse(metric, text) {
            Err(e) => issues.push(Issue::at(path, e)),
            Ok(t) if t.is_relative() && no_baseline => issues.push(
                Issue::at(
                    path,
                    format!("`{text}` is relative to the baseline, but `baseline: 0s` measures none"),
                )
                .hint("give `baseline` a duration (default 30s), or an absolute bound"),
            ),
            Ok(_) => {}
        }
    }
}

/// An http(s) URL; the text is not echoed back whole (it may carry a token).
fn url(u: &str, path: Vec<Seg>, issues: &mut Vec<Issue>) {
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        issues.push(
            Issue::at(path, "not an http:// or https:// URL with a host")
                .hint("e.g. `http://127.0.0.1:8080/checkout`"),
        );
    }
}
