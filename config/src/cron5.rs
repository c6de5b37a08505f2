//! Standard 5-field cron (`*/15 9-17 * * mon-fri`, 0/7 = Sunday), translated for the `cron` crate.
//!
//! The `cron` crate (0.17) only reads 6/7-field expressions with a leading seconds field, reads weekday
//! numbers as 1 = Sunday … 7 = Saturday and rejects 0. So simian parses the standard 5 fields itself,
//! checks every value (with an error that says how to write it), and hands the crate an expression with
//! `0` seconds, explicit value lists and weekday *names* (`SUN` … `SAT`), which the crate cannot misread.
//!
//! Day-of-month and day-of-week: standard cron (Vixie cron, cronie) fires when *either* field matches
//! if both are restricted, and when both match if either starts with `*` (so `*/2` counts as
//! unrestricted, as in cronie). The `cron` crate always requires *both* to match. When both fields are
//! restricted, [`Cron`] therefore keeps two schedules — one per field, the other left at `*` — and
//! [`Cron::next_after_local`] returns the earlier of their next fires, which is the standard union.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{NaiveDateTime, TimeZone, Utc};

const FIELDS_HINT: &str = "minute hour day-of-month month day-of-week";
const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const MONTHS_FULL: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const DAYS_FULL: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
/// Weekday names as the `cron` crate reads them, indexed by standard cron number (0 = Sunday).
const CRATE_DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed 5-field cron expression.
#[derive(Clone)]
pub struct Cron {
    expr: String,
    schedule: cron::Schedule,
    /// The day-of-week half when both day fields are restricted (standard cron ORs them).
    either_day: Option<cron::Schedule>,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.expr)
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl Eq for Cron {}

/// One of the five fields: its name, range and (for month and weekday) its names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    full_names: &'static [&'static str],
    /// Value of the first name (`jan` = 1, `sun` = 0).
    names_base: u32,
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], full_names: &[], names_base: 0 };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], full_names: &[], names_base: 0 };
const DAY_OF_MONTH: Field =
    Field { name: "day-of-month", min: 1, max: 31, names: &[], full_names: &[], names_base: 0 };
const MONTH: Field =
    Field { name: "month", min: 1, max: 12, names: &MONTHS, full_names: &MONTHS_FULL, names_base: 1 };
const DAY_OF_WEEK: Field =
    Field { name: "day-of-week", min: 0, max: 7, names: &DAYS, full_names: &DAYS_FULL, names_base: 0 };

impl Field {
    fn is_weekday(&self) -> bool {
        self.name == DAY_OF_WEEK.name
    }

    fn how(&self) -> String {
        if self.is_weekday() {
            "use 0-7 (0 and 7 = sunday) or sun, mon, tue, wed, thu, fri, sat".to_string()
        } else if self.names.is_empty() {
            format!("use a number {}-{}", self.min, self.max)
        } else {
            format!("use {}-{} or {}", self.min, self.max, self.names.join(", "))
        }
    }

    fn value(&self, text: &str) -> Result<u32, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let v: u32 = text.parse().unwrap_or(u32::MAX);
            if v < self.min || v > self.max {
                return Err(format!(
                    "{} value {} is out of range {}-{}{}",
                    self.name,
                    text,
                    self.min,
                    self.max,
                    if self.is_weekday() { " (0 and 7 = sunday)" } else { "" }
                ));
            }
            return Ok(v);
        }
        let lower = text.to_ascii_lowercase();
        let found = self
            .names
            .iter()
            .position(|n| *n == lower)
            .or_else(|| self.full_names.iter().position(|n| *n == lower));
        match found {
            Some(i) => Ok(self.names_base + i as u32),
            None if text.is_empty() => Err(format!("empty {} value; {}", self.name, self.how())),
            None => Err(format!("unknown {} `{}`; {}", self.name, text, self.how())),
        }
    }

    /// Parse one comma-separated field into the set of values it allows.
    fn parse(&self, text: &str) -> Result<BTreeSet<u32>, String> {
        let mut out = BTreeSet::new();
        for item in text.split(',') {
            let (base, step) = match item.split_once('/') {
                Some((b, s)) => {
                    let step = match s.parse::<u32>() {
                        Ok(n) if n >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => n,
                        _ => {
                            return Err(format!(
                                "{} step `/{}` in `{}` must be a whole number of at least 1, e.g. `*/15`",
                                self.name, s, item
                            ))
                        }
                    };
                    (b, Some(step))
                }
                None => (item, None),
            };
            let (lo, hi) = if base == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = base.split_once('-') {
                let lo = self.value(a)?;
                let mut hi = self.value(b)?;
                // `fri-sun`: a range ending on sunday runs to 7.
                if self.is_weekday() && hi == 0 && lo > 0 {
                    hi = 7;
                }
                if lo > hi {
                    return Err(format!(
                        "{} range `{}` runs backwards; write it low-high, e.g. `{}-{}` or a list",
                        self.name, base, hi, lo
                    ));
                }
                (lo, hi)
            } else {
                let v = self.value(base)?;
                // `5/15` means from 5 to the end, every 15 (a common extension).
                (v, if step.is_some() { self.max } else { v })
            };
            let step = step.unwrap_or(1) as usize;
            out.extend((lo..=hi).step_by(step));
        }
        if self.is_weekday() && out.remove(&7) {
            out.insert(0);
        }
        Ok(out)
    }
}

/// The field as the `cron` crate reads it: `*` when every value is allowed, else an explicit list.
fn crate_field(field: &Field, values: &BTreeSet<u32>) -> String {
    let all = if field.is_weekday() { 7 } else { (field.max - field.min + 1) as usize };
    if values.len() >= all {
        return "*".to_string();
    }
    let items: Vec<String> = values
        .iter()
        .map(|&v| if field.is_weekday() { CRATE_DAYS[(v % 7) as usize].to_string() } else { v.to_string() })
        .collect();
    items.join(",")
}

fn macro_expansion(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Some("0 0 1 1 *"),
        "@monthly" => Some("0 0 1 * *"),
        "@weekly" => Some("0 0 * * 0"),
        "@daily" | "@midnight" => Some("0 0 * * *"),
        "@hourly" => Some("0 * * * *"),
        _ => None,
    }
}

impl Cron {
    /// Parse a standard 5-field expression (`minute hour day-of-month month day-of-week`) or one of
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`; the error says what is wrong and how to
    /// write it.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let trimmed = expr.trim();
        let bad = |detail: String| format!("invalid cron `{trimmed}`: {detail}");
        let body = if trimmed.starts_with('@') {
            macro_expansion(trimmed).ok_or_else(|| {
                bad("unknown shorthand; use @hourly, @daily, @weekly, @monthly or @yearly, or 5 fields (minute hour day-of-month month day-of-week)".to_string())
            })?
        } else {
            trimmed
        };
        let parts: Vec<&str> = body.split_whitespace().collect();
        if parts.len() != 5 {
            let mut detail = format!("expected 5 fields ({FIELDS_HINT}), got {}", parts.len());
            if parts.len() == 6 || parts.len() == 7 {
                detail.push_str(&format!(
                    "; simian uses standard 5-field cron: {FIELDS_HINT} (no seconds or year field)"
                ));
            } else if parts.len() < 5 {
                detail.push_str("; write `*` for any value, e.g. `*/5 * * * *`");
            }
            return Err(bad(detail));
        }
        let fields = [&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK];
        let mut sets = Vec::with_capacity(5);
        for (field, text) in fields.iter().zip(&parts) {
            sets.push(field.parse(text).map_err(&bad)?);
        }
        let f: Vec<String> = fields.iter().zip(&sets).map(|(field, set)| crate_field(field, set)).collect();
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule, String> {
            let six = format!("0 {} {} {} {} {}", f[0], f[1], dom, f[3], dow);
            six.parse::<cron::Schedule>()
                .map_err(|e| bad(format!("cannot translate for the cron crate ({e})")))
        };
        let dom_restricted = !parts[2].starts_with('*');
        let dow_restricted = !parts[4].starts_with('*');
        let (schedule, either_day) = if dom_restricted && dow_restricted {
            (build(&f[2], "*")?, Some(build("*", &f[4])?))
        } else {
            (build(&f[2], &f[4])?, None)
        };
        // A day-of-month the month never has (`0 0 31 2 *`) would never fire.
        let never = |s: &cron::Schedule| s.upcoming(Utc).next().is_none();
        let never_either = match &either_day {
            Some(s) => never(s),
            None => true,
        };
        if never(&schedule) && never_either {
            return Err(bad(
                "it never fires (no such day in those months); check day-of-month and month".to_string()
            ));
        }
        Ok(Cron { expr: trimmed.to_string(), schedule, either_day })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The translated schedule (seconds field first, weekday names).
    ///
    /// Exact unless both day-of-month and day-of-week are restricted: then standard cron fires when
    /// *either* matches, and this is only the day-of-month half. Use [`Cron::next_after_local`], which
    /// always follows standard cron.
    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }

    /// True when day-of-month and day-of-week are both restricted, so a fire needs either, not both.
    pub fn days_either(&self) -> bool {
        self.either_day.is_some()
    }

    /// The first fire strictly after `after`, both as wall-clock (naive) times: the expression is
    /// evaluated on the calendar alone, with no timezone (mapping to instants is the caller's job).
    /// `None` when the schedule has no later fire (the `cron` crate stops at year 2100).
    pub fn next_after_local(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = Utc.from_utc_datetime(&after);
        let first = self.schedule.after(&start).next();
        let second = self.either_day.as_ref().and_then(|s| s.after(&start).next());
        match (first, second) {
            (Some(a), Some(b)) => Some(a.min(b).naive_utc()),
            (a, b) => a.or(b).map(|d| d.naive_utc()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Timelike, Weekday};

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(h, min, 0)).expect("valid test date")
    }

    /// The next `n` fires after `from`.
    fn fires(expr: &str, from: NaiveDateTime, n: usize) -> Vec<NaiveDateTime> {
        let cron = Cron::parse(expr).expect("valid cron");
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = cron.next_after_local(t).expect("a next fire");
            out.push(t);
        }
        out
    }

    fn weekdays(expr: &str) -> BTreeSet<String> {
        // 2026-03-02 is a Monday; two weeks cover every weekday twice.
        fires(expr, at(2026, 3, 1, 0, 0), 10)
            .into_iter()
            .map(|t| format!("{:?}", t.weekday()).to_lowercase())
            .collect()
    }

    #[test]
    fn every_five_minutes() {
        let f = fires("*/5 * * * *", at(2026, 1, 1, 10, 2), 3);
        assert_eq!(f, vec![at(2026, 1, 1, 10, 5), at(2026, 1, 1, 10, 10), at(2026, 1, 1, 10, 15)]);
        assert_eq!(Cron::parse("*/5 * * * *").unwrap().expr(), "*/5 * * * *");
    }

    #[test]
    fn weekday_names_are_monday_to_friday() {
        let want: BTreeSet<String> =
            ["mon", "tue", "wed", "thu", "fri"].iter().map(|s| s.to_string()).collect();
        assert_eq!(weekdays("0 9 * * MON-FRI"), want);
        assert_eq!(weekdays("0 9 * * mon-fri"), want);
        for t in fires("0 9 * * MON-FRI", at(2026, 3, 1, 0, 0), 10) {
            assert_eq!((t.hour(), t.minute()), (9, 0));
        }
    }

    #[test]
    fn weekday_numbers_one_to_five_are_monday_to_friday() {
        let want: BTreeSet<String> =
            ["mon", "tue", "wed", "thu", "fri"].iter().map(|s| s.to_string()).collect();
        assert_eq!(weekdays("0 9 * * 1-5"), want);
        let f = fires("0 9 * * 1-5", at(2026, 3, 1, 0, 0), 5);
        assert_eq!(f[0], at(2026, 3, 2, 9, 0));
        assert_eq!(f[4], at(2026, 3, 6, 9, 0));
    }

    #[test]
    fn zero_and_seven_are_sunday() {
        for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * SUNDAY", "@weekly"] {
            for t in fires(expr, at(2026, 3, 1, 0, 0), 4) {
                assert_eq!(t.weekday(), Weekday::Sun, "{expr}");
                assert_eq!((t.hour(), t.minute()), (0, 0), "{expr}");
            }
        }
        // A range may end on sunday written as 0.
        let want: BTreeSet<String> = ["fri", "sat", "sun"].iter().map(|s| s.to_string()).collect();
        assert_eq!(weekdays("0 0 * * fri-sun"), want);
        assert_eq!(weekdays("0 0 * * 5-7"), want);
    }

    #[test]
    fn daily_at_half_past_two() {
        let f = fires("30 2 * * *", at(2026, 1, 1, 3, 0), 2);
        assert_eq!(f, vec![at(2026, 1, 2, 2, 30), at(2026, 1, 3, 2, 30)]);
    }

    #[test]
    fn lists_ranges_steps_and_months() {
        let f = fires("1-30/10 9,17 * jan-feb *", at(2026, 1, 1, 0, 0), 4);
        assert_eq!(
            f,
            vec![at(2026, 1, 1, 9, 1), at(2026, 1, 1, 9, 11), at(2026, 1, 1, 9, 21), at(2026, 1, 1, 17, 1)]
        );
        let f = fires("0 0 1 mar *", at(2026, 1, 1, 0, 0), 1);
        assert_eq!(f, vec![at(2026, 3, 1, 0, 0)]);
    }

    #[test]
    fn shorthands() {
        assert_eq!(fires("@hourly", at(2026, 1, 1, 0, 30), 1), vec![at(2026, 1, 1, 1, 0)]);
        assert_eq!(fires("@daily", at(2026, 1, 1, 0, 30), 1), vec![at(2026, 1, 2, 0, 0)]);
        assert_eq!(fires("@monthly", at(2026, 1, 1, 0, 30), 1), vec![at(2026, 2, 1, 0, 0)]);
        assert_eq!(fires("@yearly", at(2026, 1, 1, 0, 30), 1), vec![at(2027, 1, 1, 0, 0)]);
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // Standard cron: the 13th OR any friday.
        let cron = Cron::parse("0 0 13 * fri").unwrap();
        assert!(cron.days_either());
        let f = fires("0 0 13 * fri", at(2026, 3, 1, 0, 0), 4);
        // March 2026: fridays 6, 13, 20, 27; the 13th is a friday too (fires once).
        assert_eq!(
            f,
            vec![at(2026, 3, 6, 0, 0), at(2026, 3, 13, 0, 0), at(2026, 3, 20, 0, 0), at(2026, 3, 27, 0, 0)]
        );
        let f = fires("0 0 1 * mon", at(2026, 3, 28, 0, 0), 3);
        assert_eq!(f, vec![at(2026, 3, 30, 0, 0), at(2026, 4, 1, 0, 0), at(2026, 4, 6, 0, 0)]);
        // With `*` in one of them, both must match (here: odd days that are mondays).
        assert!(!Cron::parse("0 0 */2 * mon").unwrap().days_either());
    }

    fn err(expr: &str) -> String {
        Cron::parse(expr).expect_err(expr)
    }

    #[test]
    fn four_fields_are_rejected() {
        assert_eq!(
            err("*/5 * * *"),
            "invalid cron `*/5 * * *`: expected 5 fields (minute hour day-of-month month day-of-week), got 4; \
             write `*` for any value, e.g. `*/5 * * * *`"
        );
    }

    #[test]
    fn six_fields_are_rejected() {
        let e = err("0 */5 * * * *");
        assert!(e.starts_with("invalid cron `0 */5 * * * *`: expected 5 fields"), "{e}");
        assert!(
            e.contains("simian uses standard 5-field cron: minute hour day-of-month month day-of-week"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_say_how_to_write_them() {
        assert_eq!(err("61 * * * *"), "invalid cron `61 * * * *`: minute value 61 is out of range 0-59");
        assert_eq!(
            err("* * * * funday"),
            "invalid cron `* * * * funday`: unknown day-of-week `funday`; \
             use 0-7 (0 and 7 = sunday) or sun, mon, tue, wed, thu, fri, sat"
        );
        assert!(err("* 24 * * *").contains("hour value 24 is out of range 0-23"));
        assert!(err("* * 0 * *").contains("day-of-month value 0 is out of range 1-31"));
        assert!(err("* * * 13 *").contains("month value 13 is out of range 1-12"));
        assert!(err("* * * * 8").contains("day-of-week value 8 is out of range 0-7"));
        assert!(err("*/0 * * * *").contains("at least 1"));
        assert!(err("30-10 * * * *").contains("runs backwards"));
        assert!(err("* * * foo *").contains("unknown month `foo`"));
        assert!(err("x * * * *").contains("unknown minute `x`; use a number 0-59"));
        assert!(err("1,,2 * * * *").contains("empty minute value"));
        assert!(err("").contains("got 0"));
        assert!(err("@reboot").contains("unknown shorthand"));
        assert!(err("0 0 31 2 *").contains("never fires"));
        assert!(err("* * ? * *").contains("unknown day-of-month `?`"));
        assert!(err("* * * * 1#2").contains("day-of-week"));
    }

    #[test]
    fn no_panics_on_odd_input() {
        for expr in [
            "-",
            "*/",
            "/5 * * * *",
            "1-",
            "-1 * * * *",
            "99999999999999999999 * * * *",
            "*/99999999999 * * * *",
            "* * * * mon-",
            "ą * * * *",
            "*-* * * * *",
            "1/2/3 * * * *",
            "@",
            "\t",
            "* * * * * * * *",
        ] {
            let _ = Cron::parse(expr);
        }
        assert!(Cron::parse("*/90 * * * *").is_ok());
    }
}
