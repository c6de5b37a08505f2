//! Validation of `sinks:`: unique names, usable URLs (never echoed), sane `announce` leads.

use std::collections::HashSet;

use crate::locate::{key, Issue, Seg};
use crate::schema::{Policy, SinkConfig};

pub(super) fn sinks(policy: &Policy, issues: &mut Vec<Issue>) {
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
pub(super) fn check_url(value: &str) -> Result<(), &'static str> {
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
