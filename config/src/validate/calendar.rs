//! Validation of time: the policy's timezone and `calendar:` (hours, days, holidays), resolved to a
//! [`CalendarSpec`].

use chrono::{NaiveDate, NaiveTime, Weekday};

use crate::locate::{key, Issue, Seg};
use crate::schema::CalendarConfig;
use crate::structural::closest;

/// The calendar, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CalendarSpec {
    /// Half-open local window `[start, end)`; `start > end` wraps midnight; `start == end` = all day.
    pub hours: Option<(NaiveTime, NaiveTime)>,
    /// Allowed weekdays; `None` = every day.
    pub days: Option<Vec<Weekday>>,
    /// Local dates on which nothing runs.
    pub holidays: Vec<NaiveDate>,
}

pub(super) fn timezone(name: &str, issues: &mut Vec<Issue>) -> chrono_tz::Tz {
    timezone_at(name, vec![key("timezone")], issues)
}

/// An IANA timezone name at `path`, with the closest known name as the hint when it is misspelt.
pub(super) fn timezone_at(name: &str, path: Vec<Seg>, issues: &mut Vec<Issue>) -> chrono_tz::Tz {
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

pub(super) fn calendar(c: &CalendarConfig, issues: &mut Vec<Issue>) -> CalendarSpec {
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

pub(super) fn parse_hhmm(s: &str, allow_24: bool) -> Result<NaiveTime, ()> {
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

pub(super) fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-');
    shape.then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).flatten()
}
