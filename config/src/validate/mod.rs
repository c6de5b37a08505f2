//! Pure validation: every semantic problem in a deserialized policy, and the values it resolves to.
//!
//! Nothing here knows about files or line numbers: problems are reported by key path and the loader gives
//! them their locations. One file per policy section; this one ties them together and holds the bounds
//! every section shares.

mod calendar;
mod monkeys;
mod sinks;
mod steady;
mod targets;

pub use calendar::CalendarSpec;
use calendar::{calendar, timezone};
use monkeys::monkeys;
use sinks::sinks;
use targets::targets;

use std::collections::BTreeMap;
use std::path::Path;

use crate::cron5::Cron;
use crate::locate::{key, Issue, Seg};
use crate::schema::Policy;
use crate::{Duration, MonkeyName};

/// What a policy resolves to besides itself.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The policy's timezone (UTC when invalid).
    pub tz: chrono_tz::Tz,
    /// Where the store lives.
    pub store: crate::StoreAt,
    /// Kill-switch file.
    pub kill_switch: Option<std::path::PathBuf>,
    /// Parsed calendar.
    pub calendar: Option<CalendarSpec>,
    /// Each configured monkey's schedule.
    pub schedules: BTreeMap<MonkeyName, Cron>,
    /// `steady_state:` resolved.
    pub steady_state: Option<crate::steady::SteadyState>,
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
    let store_text = policy.store.as_ref().map(crate::Secret::expose);
    for (field, value) in [("store", store_text), ("kill_switch", policy.kill_switch.as_deref())] {
        if value.is_some_and(|v| v.trim().is_empty()) {
            issues.push(
                Issue::at(vec![key(field)], "must not be empty")
                    .hint("give a file path or a postgres:// URL, or remove the key"),
            );
        }
    }
    let store = match crate::StoreAt::parse(store_text.unwrap_or("simian.db"), base_dir) {
        Ok(at) => at,
        Err(why) => {
            issues.push(Issue::at(vec![key("store")], why).hint(
                "give a file path (SQLite, one machine) or postgres://user@host:5432/db (a fleet); put the \
                 password in ${VAR} or PGPASSWORD",
            ));
            crate::StoreAt::File(base_dir.join("simian.db"))
        }
    };
    let kill_switch = policy.kill_switch.as_deref().map(|k| base_dir.join(k));
    if let Some(token) = policy.api.as_ref().and_then(|a| a.token.as_ref()) {
        // Short tokens are guessable; a bearer token is all that stands between the network and HALT.
        if token.expose().chars().count() < 16 {
            issues.push(
                Issue::at(vec![key("api"), key("token")], "the API token is shorter than 16 characters")
                    .hint("use a random one, e.g. `openssl rand -hex 32`, given as ${SIMIAN_API_TOKEN}"),
            );
        }
    }
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
    at_most(policy.retention, bound::RETENTION, vec![key("retention")], &mut issues);
    if policy.retention.is_some_and(|d| d.std() < std::time::Duration::from_secs(HOUR)) {
        issues.push(
            Issue::at(
                vec![key("retention")],
                "a retention under an hour would drop findings before they are read",
            )
            .hint("give at least `1h`; the default is 90d"),
        );
    }
    targets(&policy.targets, &mut issues);
    sinks(policy, &mut issues);
    let schedules = monkeys(policy, all_targets, &mut issues);
    let steady_state = steady::steady_state(policy, &mut issues);
    let resolved = Resolved { tz, store, kill_switch, calendar, schedules, steady_state };
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
    /// How long the store keeps history.
    pub const RETENTION: u64 = 10 * 366 * DAY;
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

#[cfg(test)]
mod tests {
    use chrono::{NaiveTime, Weekday};

    use super::calendar::*;
    use super::targets::{check_endpoint_url, is_region};

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
