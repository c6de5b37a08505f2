//! The day's plan for chat: which acting monkeys fire on a local day, when, and on which groups and zones —
//! posted `announce` before the day's first action so owners can object (kill switch) in time.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use simian_config::{GorillaAction, LoadedPolicy, MonkeyName};
use simian_monkeys::eligibility::partition;
use simian_monkeys::Instance;
use simian_sinks::{Announcement, PlannedAction};

use crate::calendar::Calendar;
use crate::run::{exclusions, monkey_enabled, opt_in_for};

/// At most this many actions are listed; the last line says how many more there are.
const MAX_LISTED: usize = 50;

/// The monkeys that change something (the others only observe and are not announced).
const ACTING: [MonkeyName; 3] = [MonkeyName::Chaos, MonkeyName::Gorilla, MonkeyName::Latency];

/// Every fire of an enabled acting monkey on local `day`, inside the calendar, in time order. The day is
/// walked by time, from its first local instant to its last (23 or 25 hours on DST days), so a
/// `* * * * *` schedule lists all of its 1,440 fires, not a fixed count from some earlier instant.
pub fn fires_on(policy: &LoadedPolicy, day: NaiveDate) -> Vec<(MonkeyName, DateTime<Utc>)> {
    let cal = Calendar::new(policy.tz, policy.calendar.clone());
    let (Some(start), Some(end)) =
        (local_midnight(policy, day), day.succ_opt().and_then(|d| local_midnight(policy, d)))
    else {
        return Vec::new();
    };
    // One second before midnight, so a fire at 00:00 counts; the date filter keeps the day exact.
    let after = start - TimeDelta::seconds(1);
    let mut out = Vec::new();
    for (m, cron) in &policy.schedules {
        if !ACTING.contains(m) || !monkey_enabled(policy, *m) {
            continue;
        }
        for at in cal.fires_between(cron, after, end) {
            if at.date_naive() == day {
                out.push((*m, at.with_timezone(&Utc)));
            }
        }
    }
    out.sort_by_key(|(m, at)| (*at, *m));
    out
}

/// The first instant of local `day` (midnight, or the first instant after a DST gap at midnight).
fn local_midnight(policy: &LoadedPolicy, day: NaiveDate) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    let midnight = day.and_hms_opt(0, 0, 0)?;
    // A zone that skips midnight (a DST gap) starts its day at the first instant after the gap.
    (0..=180).find_map(|m| {
        policy
            .tz
            .from_local_datetime(&(midnight + TimeDelta::minutes(m)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// When the day's plan is due for a sink with lead `lead`: `(day, announce at, first action)` for the
/// local day whose first action is the next one after `now`, if `now` is inside its announce window.
pub fn due(policy: &LoadedPolicy, lead: TimeDelta, now: DateTime<Utc>) -> Option<(NaiveDate, DateTime<Utc>)> {
    let today = now.with_timezone(&policy.tz).date_naive();
    // The lead may reach back over midnight: tomorrow's first action can be due today.
    [Some(today), today.succ_opt()].into_iter().flatten().find_map(|day| {
        // Only the day's first action opens the window: later fires of the day are not re-announced.
        let (_, first) = *fires_on(policy, day).first()?;
        (first > now && now >= first - lead).then_some((day, first))
    })
}

/// The plan of local `day` from `after` on: one line per fire and eligible group (Gorilla: per zone).
pub fn plan(
    policy: &LoadedPolicy,
    inventory: &[Instance],
    day: NaiveDate,
    after: DateTime<Utc>,
) -> Announcement {
    let groups: Vec<(String, String)> = match exclusions(policy) {
        Ok(excl) => partition(inventory, &|t| opt_in_for(policy, t), &excl).eligible.into_keys().collect(),
        Err(_) => Vec::new(),
    };
    let mut actions = Vec::new();
    let local = |at: DateTime<Utc>| at.with_timezone(&policy.tz).fixed_offset();
    let ms = &policy.policy.monkeys;
    for (m, at) in fires_on(policy, day).into_iter().filter(|(_, at)| *at >= after) {
        match m {
            MonkeyName::Chaos => {
                actions.extend(per_group(&groups, m, local(at), "may terminate one instance of this group"))
            }
            MonkeyName::Gorilla => {
                let Some(g) = &ms.gorilla else { continue };
                let verb = match g.action {
                    GorillaAction::Isolate => {
                        format!(
                            "isolate {} for {}",
                            zone_phrase(&g.zone),
                            g.duration.map_or("30m".into(), |d| d.to_string())
                        )
                    }
                    GorillaAction::Terminate => {
                        format!("terminate every opted-in instance in {}", zone_phrase(&g.zone))
                    }
                };
                actions.push(PlannedAction {
                    monkey: m.as_str().into(),
                    at: local(at),
                    target: None,
                    group: None,
                    zone: (g.zone != "random").then(|| g.zone.clone()),
                    what: verb,
                });
            }
            MonkeyName::Latency => {
                let Some(l) = &ms.latency else { continue };
                let delay = l.delay.map_or("the configured delay".into(), |d| d.to_string());
                let dur = l.duration.map_or("its duration".into(), |d| d.to_string());
                let what = format!("add {delay} of delay to {} host(s) for {dur}", l.hosts_per_group.max(1));
                actions.extend(per_group(&groups, m, local(at), &what));
            }
            MonkeyName::Doctor | MonkeyName::TenEighteen => {}
        }
    }
    if actions.len() > MAX_LISTED {
        let more = actions.len() - (MAX_LISTED - 1);
        actions.truncate(MAX_LISTED - 1);
        if let Some(last) = actions.last().cloned() {
            actions.push(PlannedAction {
                target: None,
                group: None,
                zone: None,
                what: format!("… and {more} more actions later today (`simian schedule` lists them)"),
                ..last
            });
        }
    }
    Announcement {
        policy: policy.name.clone(),
        date: day,
        timezone: policy.tz.name().to_string(),
        mode: policy.policy.mode,
        kill_switch: policy.kill_switch.as_ref().map(|k| k.display().to_string()),
        actions,
    }
}

/// One planned action per eligible (target, group).
fn per_group<'g>(
    groups: &'g [(String, String)],
    m: MonkeyName,
    at: DateTime<chrono::FixedOffset>,
    what: &'g str,
) -> impl Iterator<Item = PlannedAction> + 'g {
    groups.iter().map(move |(target, group)| PlannedAction {
        monkey: m.as_str().into(),
        at,
        target: Some(target.clone()),
        group: Some(group.clone()),
        zone: None,
        what: what.into(),
    })
}

fn zone_phrase(zone: &str) -> String {
    if zone == "random" {
        "one random zone".into()
    } else {
        format!("zone {zone}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy(extra: &str) -> LoadedPolicy {
        let text = format!(
            "version: 1\ntimezone: Europe/Berlin\nmonkeys:\n  chaos:\n    schedule: \"0 10,14 * * *\"\n  gorilla:\n    schedule: \"30 11 * * *\"\n    zone: z1\n  doctor:\n    schedule: \"*/5 * * * *\"\n    url: \"http://{{address}}/\"\n{extra}"
        );
        match simian_config::load_str("p.yaml", &text, Path::new("/tmp"), &|_| None) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn fires_only_acting_monkeys_of_the_local_day() {
        let p = policy("");
        let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let f = fires_on(&p, day);
        // Berlin is UTC+2 in July: 10:00, 11:30 and 14:00 local.
        let want = vec![
            (MonkeyName::Chaos, utc("2026-07-01T08:00:00Z")),
            (MonkeyName::Gorilla, utc("2026-07-01T09:30:00Z")),
            (MonkeyName::Chaos, utc("2026-07-01T12:00:00Z")),
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn due_opens_lead_before_the_first_action_only() {
        let p = policy("");
        let lead = TimeDelta::minutes(30);
        assert_eq!(due(&p, lead, utc("2026-07-01T07:29:00Z")), None);
        let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        assert_eq!(due(&p, lead, utc("2026-07-01T07:30:00Z")), Some((day, utc("2026-07-01T08:00:00Z"))));
        assert_eq!(due(&p, lead, utc("2026-07-01T07:59:59Z")), Some((day, utc("2026-07-01T08:00:00Z"))));
        // After the first action, later ones of the same day are not announced again.
        assert_eq!(due(&p, lead, utc("2026-07-01T09:10:00Z")), None);
    }

    #[test]
    fn due_reaches_over_midnight() {
        let p = policy("");
        let lead = TimeDelta::hours(11);
        // 23:30 Berlin on June 30 is within 11 h of 10:00 on July 1.
        let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        assert_eq!(due(&p, lead, utc("2026-06-30T21:30:00Z")), Some((day, utc("2026-07-01T08:00:00Z"))));
    }

    #[test]
    fn plan_lists_groups_and_zones_and_respects_opt_in() {
        let p = policy("");
        let inst = |id: &str, group: &str, opted: bool| Instance {
            target: "t".into(),
            id: id.into(),
            address: None,
            group: group.into(),
            zone: Some("z1".into()),
            region: None,
            url: None,
            tags: if opted {
                [("simian:opt-in".to_string(), "true".to_string())].into()
            } else {
                Default::default()
            },
        };
        let inv = vec![inst("a", "web", true), inst("b", "db", false)];
        let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let a = plan(&p, &inv, day, utc("2026-07-01T00:00:00Z"));
        let lines: Vec<_> =
            a.actions.iter().map(|x| (x.monkey.as_str(), x.group.as_deref(), x.zone.as_deref())).collect();
        assert_eq!(
            lines,
            vec![("chaos", Some("web"), None), ("gorilla", None, Some("z1")), ("chaos", Some("web"), None)]
        );
        assert_eq!(a.actions[0].at.to_rfc3339(), "2026-07-01T10:00:00+02:00");
        assert_eq!(a.timezone, "Europe/Berlin");
    }

    fn every_minute(tz: &str) -> LoadedPolicy {
        let text = format!("version: 1\ntimezone: {tz}\nmonkeys:\n  chaos:\n    schedule: \"* * * * *\"\n");
        match simian_config::load_str("p.yaml", &text, Path::new("/tmp"), &|_| None) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_every_minute_day_is_walked_to_its_end() {
        let p = every_minute("UTC");
        let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let f = fires_on(&p, day);
        assert_eq!(f.len(), 1440);
        assert_eq!(f[0].1, utc("2026-07-01T00:00:00Z"));
        assert_eq!(f[1439].1, utc("2026-07-01T23:59:00Z"));
    }

    #[test]
    fn dst_days_have_23_and_25_hours_of_fires() {
        let p = every_minute("Europe/Berlin");
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap_or_default();
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap_or_default();
        assert_eq!(fires_on(&p, spring).len(), 1380);
        // The repeated hour fires once (the earlier instant), as the calendar documents.
        assert_eq!(fires_on(&p, autumn).len(), 1440);
        let last = fires_on(&p, autumn).last().map(|(_, at)| *at);
        assert_eq!(last, Some(utc("2026-10-25T22:59:00Z")), "23:59 CET");
    }

    #[test]
    fn the_plan_at_17_utc_still_lists_the_rest_of_the_day() {
        let p = every_minute("UTC");
        let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default();
        let web = Instance {
            target: "lab".into(),
            id: "web-1".into(),
            address: None,
            group: "web".into(),
            zone: None,
            region: None,
            url: None,
            tags: [("simian:opt-in".to_string(), "true".to_string())].into(),
        };
        let a = plan(&p, &[web], day, utc("2026-07-01T17:00:00Z"));
        assert!(!a.actions.is_empty(), "at 17:00 the day still has 7 hours of fires");
        assert!(a.actions.iter().all(|x| x.at >= utc("2026-07-01T17:00:00Z")));
    }
}
