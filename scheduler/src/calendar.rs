//! Calendar: cron fire times in the policy timezone, filtered by hours, days and holidays.
//!
//! Cron is evaluated on local wall-clock time in the policy's IANA timezone, then each local time is
//! mapped to an instant:
//! - a local time that occurs once fires then;
//! - a local time that occurs twice (clocks fall back) fires once, at the earlier instant;
//! - a local time that does not occur (clocks spring forward) fires once, at the first instant after
//!   the gap (`30 2 * * *` on 2026-03-08 in America/Los_Angeles fires at 03:00 PDT = 10:00 UTC).
//!
//! Identical instants are fired once. The calendar (hours, days, holidays) is then checked on the
//! local time of the fire instant.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use simian_config::{cron5::Cron, CalendarSpec};

/// At most this many cron candidates are examined per search, so no input loops for long.
const MAX_CANDIDATES: usize = 100_000;
/// A search never looks further ahead than this many days of local time.
const HORIZON_DAYS: i64 = 2 * 366;
/// `mean_gap` samples the fires of this many days (four whole weeks, so every weekday weighs alike).
const SAMPLE_DAYS: i64 = 28;

/// When monkeys may act: the policy's timezone plus optional hours, days and holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
    spec: Option<CalendarSpec>,
}

/// Why an instant is outside the calendar; the first failing check wins.
enum Refusal {
    Holiday(NaiveDate),
    Day(Weekday),
    Hours(NaiveTime, NaiveTime),
}

impl Calendar {
    /// A calendar in `tz`; `spec: None` allows any time.
    pub fn new(tz: Tz, spec: Option<CalendarSpec>) -> Self {
        Calendar { tz, spec }
    }

    /// The policy's timezone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The hours, days and holidays, when the policy has a calendar.
    pub fn spec(&self) -> Option<&CalendarSpec> {
        self.spec.as_ref()
    }

    /// True when the instant is inside hours and days and not on a holiday (all in local time in tz).
    ///
    /// Hours are a half-open window `[start, end)` that may wrap midnight (`22:00-06:00` allows 23:00
    /// and 05:59, not 06:00); `start == end` means the whole day. Days and holidays are checked on the
    /// local date of the instant itself, also inside a wrapping window: with `22:00-06:00` and days
    /// `mon-fri`, Saturday 01:00 is refused even though the window opened on Friday.
    pub fn allows(&self, at: DateTime<Utc>) -> bool {
        self.check(self.local(at)).is_none()
    }

    /// Why `at` is outside the calendar, for skipped findings: `2026-12-25 is a holiday`,
    /// `saturday is not a calendar day`, or
    /// `outside calendar hours 09:00-15:00 (now 16:02 America/Los_Angeles)`; `None` when allowed.
    pub fn refusal(&self, at: DateTime<Utc>) -> Option<String> {
        let local = self.local(at);
        self.check(local).map(|r| match r {
            Refusal::Holiday(d) => format!("{} is a holiday", d.format("%Y-%m-%d")),
            Refusal::Day(w) => format!("{} is not a calendar day", weekday_name(w)),
            Refusal::Hours(start, end) => format!(
                "outside calendar hours {}-{} (now {} {})",
                clock(start),
                clock(end),
                clock(local.time()),
                self.tz.name()
            ),
        })
    }

    /// The next `n` fire instants of `cron` strictly after `after`, inside the calendar, strictly
    /// increasing. The search is bounded (about two years of local time or 100,000 cron candidates),
    /// so a schedule that never falls inside the calendar returns fewer than `n`, possibly none.
    pub fn next_fires(&self, cron: &Cron, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        self.fires(cron, after, None, n)
    }

    /// Every fire in `(after, until]`, inside the calendar, in order (bounded like every walk here).
    pub fn fires_between(
        &self,
        cron: &Cron,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Tz>> {
        self.fires(cron, after, Some(until), usize::MAX)
    }

    /// Mean gap between fires inside the calendar: the 28 days after `from` divided by the number
    /// of fires in `(from, from + 28 days]` — the long-run mean of consecutive gaps, without the bias
    /// of where the sample starts (`0 10 * * *` on `mon-fri` gives 1.4 days). `None` with fewer
    /// than 2 fires, e.g. when the schedule never falls inside the calendar.
    pub fn mean_gap(&self, cron: &Cron, from: DateTime<Utc>) -> Option<TimeDelta> {
        let span = TimeDelta::try_days(SAMPLE_DAYS)?;
        let until = from.checked_add_signed(span)?;
        let count = self.fires(cron, from, Some(until), usize::MAX).len();
        if count < 2 {
            return None;
        }
        Some(span / i32::try_from(count).ok()?)
    }

    /// Fires strictly after `after` (and not after `until`), at most `n` of them.
    fn fires(
        &self,
        cron: &Cron,
        after: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        n: usize,
    ) -> Vec<DateTime<Tz>> {
        let mut out: Vec<DateTime<Tz>> = Vec::new();
        if n == 0 || self.never_open() {
            return out;
        }
        let start = self.local(after);
        let horizon = TimeDelta::try_days(HORIZON_DAYS)
            .and_then(|d| start.checked_add_signed(d))
            .unwrap_or(NaiveDateTime::MAX);
        let mut cursor = start;
        for _ in 0..MAX_CANDIDATES {
            let Some(next) = cron.next_after_local(cursor) else {
                break;
            };
            if next > horizon {
                break;
            }
            cursor = next;
            let Some(fire) = self.instant(next) else {
                continue;
            };
            let fire_utc = fire.with_timezone(&Utc);
            if until.is_some_and(|u| fire_utc > u) {
                break;
            }
            // Earlier copies of a repeated hour, and every gap time after the first, map to instants
            // already passed.
            if fire_utc <= after || out.last().is_some_and(|last| fire <= *last) {
                continue;
            }
            let local = fire.naive_local();
            if self.check(local).is_none() {
                out.push(fire);
                if out.len() >= n {
                    break;
                }
            } else if let Some(resume) = self.next_open(local).and_then(|t| self.resume_before(t)) {
                // Nothing in [local, open) is allowed: continue the search just before it opens.
                cursor = cursor.max(resume);
            }
        }
        out
    }

    /// The wall-clock time of `at` in the calendar's timezone.
    fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.tz).naive_local()
    }

    /// The instant a local time fires at: itself, the earlier of two, or the end of a gap.
    fn instant(&self, local: NaiveDateTime) -> Option<DateTime<Tz>> {
        match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => Some(t),
            chrono::LocalResult::Ambiguous(earlier, _) => Some(earlier),
            chrono::LocalResult::None => self.after_gap(local),
        }
    }

    /// The first instant whose local time is later than `local`, which falls in a gap.
    fn after_gap(&self, local: NaiveDateTime) -> Option<DateTime<Tz>> {
        let naive_at = |s: i64| DateTime::from_timestamp(s, 0).map(|t| self.local(t));
        // No UTC offset exceeds 26 hours, so the transition lies inside this range.
        let guess = local.and_utc().timestamp();
        let (mut lo, mut hi) = (guess.checked_sub(26 * 3600)?, guess.checked_add(26 * 3600)?);
        if naive_at(lo)? >= local || naive_at(hi)? <= local {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if naive_at(mid)? > local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        DateTime::from_timestamp(hi, 0).map(|t| t.with_timezone(&self.tz))
    }

    /// The local time after which to search for fires that map at or after local time `open`.
    fn resume_before(&self, open: NaiveDateTime) -> Option<NaiveDateTime> {
        let at = self.instant(open)?.with_timezone(&Utc);
        Some(self.local(at.checked_sub_signed(TimeDelta::try_seconds(1)?)?))
    }

    /// True when no instant can ever be inside the calendar (an empty list of days).
    fn never_open(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.days.as_ref()).is_some_and(|d| d.is_empty())
    }

    /// Why the local time is outside the calendar, if it is.
    fn check(&self, local: NaiveDateTime) -> Option<Refusal> {
        let spec = self.spec.as_ref()?;
        let date = local.date();
        if spec.holidays.contains(&date) {
            return Some(Refusal::Holiday(date));
        }
        if let Some(days) = &spec.days {
            if !days.contains(&date.weekday()) {
                return Some(Refusal::Day(date.weekday()));
            }
        }
        match spec.hours {
            Some((start, end)) if !in_window(start, end, local.time()) => Some(Refusal::Hours(start, end)),
            _ => None,
        }
    }

    /// The earliest local time after `local` at which the calendar may allow again (everything in
    /// between is refused); `None` when it cannot tell.
    fn next_open(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let date = local.date();
        let next_day = date.succ_opt()?;
        match self.check(local)? {
            Refusal::Holiday(_) | Refusal::Day(_) => Some(next_day.and_time(NaiveTime::MIN)),
            Refusal::Hours(start, end) if start < end && local.time() < start => Some(date.and_time(start)),
            Refusal::Hours(start, end) if start < end => Some(next_day.and_time(start)),
            // Wrapping window: refused only in [end, start) of the same day.
            Refusal::Hours(start, _) => Some(date.and_time(start)),
        }
    }
}

/// Half-open `[start, end)`, wrapping midnight when `start > end`, the whole day when equal.
fn in_window(start: NaiveTime, end: NaiveTime, t: NaiveTime) -> bool {
    if start == end {
        true
    } else if start < end {
        start <= t && t < end
    } else {
        t >= start || t < end
    }
}

/// `09:00`, or `09:00:30` when the seconds matter.
fn clock(t: NaiveTime) -> String {
    use chrono::Timelike;
    if t.second() == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use chrono_tz::America::Los_Angeles;
    use chrono_tz::Europe::Berlin;

    fn cron(expr: &str) -> Cron {
        Cron::parse(expr).expect("valid cron")
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().expect("valid test time")
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("valid test time")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    fn spec(
        hours: Option<(NaiveTime, NaiveTime)>,
        days: Option<Vec<Weekday>>,
        holidays: Vec<NaiveDate>,
    ) -> Option<CalendarSpec> {
        Some(CalendarSpec { hours, days, holidays })
    }

    fn weekdays() -> Vec<Weekday> {
        vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
    }

    /// Fires as `YYYY-MM-DD HH:MM±offset` local and as UTC.
    fn show(fires: &[DateTime<Tz>]) -> Vec<String> {
        fires
            .iter()
            .map(|f| {
                format!("{} = {}", f.format("%Y-%m-%d %H:%M%:z"), f.with_timezone(&Utc).format("%H:%MZ"))
            })
            .collect()
    }

    fn assert_increasing(fires: &[DateTime<Tz>], after: DateTime<Utc>) {
        let mut last = after;
        for f in fires {
            let u = f.with_timezone(&Utc);
            assert!(u > last, "{u} not after {last}");
            last = u;
        }
    }

    #[test]
    fn spring_forward_fires_once_at_the_end_of_the_gap() {
        let cal = Calendar::new(Los_Angeles, None);
        let after = utc(2026, 3, 7, 12, 0);
        let fires = cal.next_fires(&cron("30 2 * * *"), after, 3);
        assert_eq!(
            show(&fires),
            [
                "2026-03-08 03:00-07:00 = 10:00Z",
                "2026-03-09 02:30-07:00 = 09:30Z",
                "2026-03-10 02:30-07:00 = 09:30Z"
            ]
        );
    }

    #[test]
    fn spring_forward_half_hourly_has_no_duplicates() {
        let cal = Calendar::new(Los_Angeles, None);
        let after = utc(2026, 3, 8, 8, 0); // 00:00 PST
        let fires = cal.next_fires(&cron("*/30 * * * *"), after, 6);
        assert_eq!(
            show(&fires),
            [
                "2026-03-08 00:30-08:00 = 08:30Z",
                "2026-03-08 01:00-08:00 = 09:00Z",
                "2026-03-08 01:30-08:00 = 09:30Z",
                "2026-03-08 03:00-07:00 = 10:00Z",
                "2026-03-08 03:30-07:00 = 10:30Z",
                "2026-03-08 04:00-07:00 = 11:00Z"
            ]
        );
        assert_increasing(&fires, after);
    }

    #[test]
    fn fall_back_fires_once_at_the_earlier_instant() {
        let cal = Calendar::new(Los_Angeles, None);
        let fires = cal.next_fires(&cron("30 1 * * *"), utc(2026, 11, 1, 0, 0), 2);
        assert_eq!(show(&fires), ["2026-11-01 01:30-07:00 = 08:30Z", "2026-11-02 01:30-08:00 = 09:30Z"]);
        // Searching from inside the repeated hour (01:10 PST): that day's 01:30 already fired.
        let fires = cal.next_fires(&cron("30 1 * * *"), utc(2026, 11, 1, 9, 10), 1);
        assert_eq!(show(&fires), ["2026-11-02 01:30-08:00 = 09:30Z"]);
    }

    #[test]
    fn fall_back_quarter_hourly_fires_each_local_time_once() {
        let cal = Calendar::new(Los_Angeles, None);
        let after = utc(2026, 11, 1, 7, 30); // 00:30 PDT
        let fires = cal.next_fires(&cron("*/15 * * * *"), after, 8);
        assert_eq!(
            show(&fires),
            [
                "2026-11-01 00:45-07:00 = 07:45Z",
                "2026-11-01 01:00-07:00 = 08:00Z",
                "2026-11-01 01:15-07:00 = 08:15Z",
                "2026-11-01 01:30-07:00 = 08:30Z",
                "2026-11-01 01:45-07:00 = 08:45Z",
                "2026-11-01 02:00-08:00 = 10:00Z",
                "2026-11-01 02:15-08:00 = 10:15Z",
                "2026-11-01 02:30-08:00 = 10:30Z"
            ]
        );
        let locals: Vec<_> = fires.iter().map(|f| f.naive_local()).collect();
        assert!(locals.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn berlin_dst_both_ways() {
        let cal = Calendar::new(Berlin, None);
        let spring = cal.next_fires(&cron("30 2 * * *"), utc(2026, 3, 28, 12, 0), 2);
        assert_eq!(show(&spring), ["2026-03-29 03:00+02:00 = 01:00Z", "2026-03-30 02:30+02:00 = 00:30Z"]);
        let autumn = cal.next_fires(&cron("30 2 * * *"), utc(2026, 10, 24, 12, 0), 2);
        assert_eq!(show(&autumn), ["2026-10-25 02:30+02:00 = 00:30Z", "2026-10-26 02:30+01:00 = 01:30Z"]);
        // Office hours in Berlin summer time are 07:00-15:00 UTC.
        let cal = Calendar::new(Berlin, spec(Some((hm(9, 0), hm(17, 0))), None, vec![]));
        let fires = cal.next_fires(&cron("0 * * * *"), utc(2026, 6, 1, 0, 0), 9);
        let first = &show(&fires)[..];
        assert_eq!(first[0], "2026-06-01 09:00+02:00 = 07:00Z");
        assert_eq!(first[7], "2026-06-01 16:00+02:00 = 14:00Z");
        assert_eq!(first[8], "2026-06-02 09:00+02:00 = 07:00Z");
    }

    #[test]
    fn window_wrapping_midnight() {
        let cal = Calendar::new(chrono_tz::UTC, spec(Some((hm(22, 0), hm(6, 0))), None, vec![]));
        assert!(cal.allows(utc(2026, 5, 5, 23, 0)));
        assert!(cal.allows(utc(2026, 5, 5, 22, 0)));
        assert!(cal.allows(utc(2026, 5, 6, 0, 0)));
        assert!(cal.allows(Utc.with_ymd_and_hms(2026, 5, 6, 5, 59, 59).unwrap()));
        assert!(!cal.allows(utc(2026, 5, 6, 6, 0)));
        assert!(!cal.allows(utc(2026, 5, 6, 21, 59)));
        let fires = cal.next_fires(&cron("0 * * * *"), utc(2026, 5, 5, 12, 0), 9);
        let hours: Vec<String> = fires.iter().map(|f| f.format("%d %H").to_string()).collect();
        assert_eq!(hours, ["05 22", "05 23", "06 00", "06 01", "06 02", "06 03", "06 04", "06 05", "06 22"]);
    }

    #[test]
    fn whole_day_when_start_equals_end() {
        let cal = Calendar::new(chrono_tz::UTC, spec(Some((hm(0, 0), hm(0, 0))), None, vec![]));
        assert!(cal.allows(utc(2026, 5, 5, 13, 37)));
        assert_eq!(cal.refusal(utc(2026, 5, 5, 13, 37)), None);
    }

    #[test]
    fn days_filter_mon_fri() {
        let cal = Calendar::new(Los_Angeles, spec(None, Some(weekdays()), vec![]));
        // 2026-03-06 is a Friday.
        let fires = cal.next_fires(&cron("0 10 * * *"), utc(2026, 3, 6, 12, 0), 3);
        let days: Vec<String> = fires.iter().map(|f| f.format("%a %d %H:%M").to_string()).collect();
        assert_eq!(days, ["Fri 06 10:00", "Mon 09 10:00", "Tue 10 10:00"]);
    }

    #[test]
    fn wrapping_window_uses_the_weekday_of_the_local_date() {
        let cal = Calendar::new(chrono_tz::UTC, spec(Some((hm(22, 0), hm(6, 0))), Some(weekdays()), vec![]));
        // Friday 2026-03-06 23:00 is allowed, Saturday 01:00 is not, Monday 01:00 is.
        assert!(cal.allows(utc(2026, 3, 6, 23, 0)));
        assert_eq!(cal.refusal(utc(2026, 3, 7, 1, 0)).as_deref(), Some("saturday is not a calendar day"));
        let fires = cal.next_fires(&cron("0 1 * * *"), utc(2026, 3, 6, 12, 0), 2);
        let days: Vec<String> = fires.iter().map(|f| f.format("%a %d %H:%M").to_string()).collect();
        assert_eq!(days, ["Mon 09 01:00", "Tue 10 01:00"]);
    }

    #[test]
    fn holidays_are_skipped() {
        let cal = Calendar::new(Los_Angeles, spec(None, None, vec![date(2026, 12, 25)]));
        let fires = cal.next_fires(&cron("0 10 * * *"), utc(2026, 12, 24, 20, 0), 2);
        let days: Vec<String> = fires.iter().map(|f| f.format("%Y-%m-%d %H:%M").to_string()).collect();
        assert_eq!(days, ["2026-12-26 10:00", "2026-12-27 10:00"]);
        // The holiday is a local date: 2026-12-25 06:00 UTC is still the 24th in Los Angeles.
        assert!(cal.allows(utc(2026, 12, 25, 6, 0)));
        assert_eq!(cal.refusal(utc(2026, 12, 25, 18, 0)).as_deref(), Some("2026-12-25 is a holiday"));
    }

    #[test]
    fn refusal_texts() {
        let cal = Calendar::new(Los_Angeles, spec(Some((hm(9, 0), hm(15, 0))), Some(weekdays()), vec![]));
        // 2026-03-04 (Wednesday) 16:02 PST = 2026-03-05 00:02 UTC.
        assert_eq!(
            cal.refusal(utc(2026, 3, 5, 0, 2)).as_deref(),
            Some("outside calendar hours 09:00-15:00 (now 16:02 America/Los_Angeles)")
        );
        assert!(!cal.allows(utc(2026, 3, 5, 0, 2)));
        // 2026-03-07 is a Saturday; 12:00 PST = 20:00 UTC.
        assert_eq!(cal.refusal(utc(2026, 3, 7, 20, 0)).as_deref(), Some("saturday is not a calendar day"));
        assert_eq!(cal.refusal(utc(2026, 3, 4, 20, 0)), None);
        assert!(cal.allows(utc(2026, 3, 4, 20, 0)));
        // No calendar: any time.
        let any = Calendar::new(Los_Angeles, None);
        assert_eq!(any.refusal(utc(2026, 3, 7, 20, 0)), None);
        assert_eq!(any.tz(), Los_Angeles);
    }

    #[test]
    fn mean_gap_weekdays_and_quarter_hours() {
        let cal = Calendar::new(Los_Angeles, spec(None, Some(weekdays()), vec![]));
        let gap = cal.mean_gap(&cron("0 10 * * *"), utc(2026, 3, 2, 0, 0)).expect("fires");
        assert_eq!(gap, TimeDelta::try_days(7).unwrap() / 5); // 1.4 days
                                                              // The same from any start.
        let gap = cal.mean_gap(&cron("0 10 * * *"), utc(2026, 3, 4, 19, 7)).expect("fires");
        assert_eq!(gap, TimeDelta::try_days(7).unwrap() / 5);
        for tz in [chrono_tz::UTC, Los_Angeles] {
            // Across the spring-forward gap too (2026-03-08).
            let gap = Calendar::new(tz, None).mean_gap(&cron("*/15 * * * *"), utc(2026, 3, 1, 0, 0));
            assert_eq!(gap, TimeDelta::try_minutes(15), "{tz}");
        }
    }

    #[test]
    fn mean_gap_none_when_never_inside() {
        let cal = Calendar::new(Los_Angeles, spec(Some((hm(9, 0), hm(15, 0))), None, vec![]));
        assert_eq!(cal.mean_gap(&cron("0 3 * * *"), utc(2026, 3, 1, 0, 0)), None);
        assert_eq!(cal.mean_gap(&cron("@monthly"), utc(2026, 3, 1, 0, 0)), None);
    }

    #[test]
    fn searches_are_bounded() {
        let cal = Calendar::new(Los_Angeles, spec(Some((hm(9, 0), hm(15, 0))), None, vec![]));
        assert!(cal.next_fires(&cron("0 3 * * *"), utc(2026, 3, 1, 0, 0), 5).is_empty());
        let closed = Calendar::new(Los_Angeles, spec(None, Some(vec![]), vec![]));
        assert!(closed.next_fires(&cron("* * * * *"), utc(2026, 3, 1, 0, 0), 5).is_empty());
        // The next Feb 29 is within the horizon; the one after that is not.
        let rare = Calendar::new(Los_Angeles, None);
        let leap = rare.next_fires(&cron("0 0 29 2 *"), utc(2026, 3, 1, 0, 0), 2);
        assert_eq!(show(&leap), ["2028-02-29 00:00-08:00 = 08:00Z"]);
        assert!(rare.next_fires(&cron("* * * * *"), utc(2026, 3, 1, 0, 0), 0).is_empty());
    }

    #[test]
    fn every_minute_in_a_narrow_window_skips_ahead() {
        let cal = Calendar::new(Los_Angeles, spec(Some((hm(9, 0), hm(9, 10))), Some(weekdays()), vec![]));
        let after = utc(2026, 3, 6, 20, 0); // Friday 12:00 PST
        let fires = cal.next_fires(&cron("* * * * *"), after, 25);
        assert_eq!(fires.len(), 25);
        assert_increasing(&fires, after);
        let s = show(&fires);
        assert_eq!(s[0], "2026-03-09 09:00-07:00 = 16:00Z");
        assert_eq!(s[9], "2026-03-09 09:09-07:00 = 16:09Z");
        assert_eq!(s[10], "2026-03-10 09:00-07:00 = 16:00Z");
        let started = std::time::Instant::now();
        for _ in 0..100 {
            let _ = Calendar::new(Los_Angeles, None).next_fires(&cron("* * * * *"), after, 10);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    mod scan {
        use super::*;
        use proptest::prelude::*;

        /// The fires a brute-force minute scan of local times finds in `(after, bound]`.
        fn brute(
            cal: &Calendar,
            cron: &Cron,
            after: DateTime<Utc>,
            bound: DateTime<Utc>,
        ) -> Vec<DateTime<Tz>> {
            let minute = TimeDelta::try_minutes(1).unwrap();
            let mut local = cal.local(after) - TimeDelta::try_hours(3).unwrap();
            let end = cal.local(bound) + TimeDelta::try_hours(3).unwrap();
            let mut out: Vec<DateTime<Tz>> = Vec::new();
            while local <= end {
                if cron.next_after_local(local - minute) == Some(local) {
                    let fire = cal.instant(local).expect("an instant");
                    let u = fire.with_timezone(&Utc);
                    if u > after && u <= bound && cal.allows(u) && !out.contains(&fire) {
                        out.push(fire);
                    }
                }
                local += minute;
            }
            out.sort();
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn next_fires_matches_a_minute_scan(
                start in 0i64..(3 * 24 * 60),
                around in prop::sample::select(vec![
                    utc(2026, 3, 7, 0, 0), utc(2026, 10, 31, 0, 0), utc(2026, 3, 27, 0, 0),
                    utc(2026, 10, 23, 0, 0), utc(2026, 12, 23, 0, 0),
                ]),
                tz in prop::sample::select(vec![Los_Angeles, Berlin, chrono_tz::Australia::Lord_Howe]),
                expr in prop::sample::select(vec![
                    "*/15 * * * *", "30 2 * * *", "0,30 1-3 * * *", "*/7 9-17 * * mon-fri", "45 * * * 0,6",
                ]),
                hours in prop::option::of((0u32..24, 0u32..24)),
                weekdays_only in any::<bool>(),
            ) {
                let after = around + TimeDelta::try_minutes(start).unwrap();
                let spec = spec(
                    hours.map(|(a, b)| (hm(a, 30 * (a % 2)), hm(b, 0))),
                    weekdays_only.then(weekdays),
                    vec![date(2026, 12, 25)],
                );
                let cal = Calendar::new(tz, spec);
                let cron = cron(expr);
                let bound = after + TimeDelta::try_days(2).unwrap();
                let want = brute(&cal, &cron, after, bound);
                let got: Vec<_> = cal
                    .next_fires(&cron, after, 1000)
                    .into_iter()
                    .filter(|f| f.with_timezone(&Utc) <= bound)
                    .collect();
                prop_assert_eq!(show(&got), show(&want));
            }
        }
    }
}
