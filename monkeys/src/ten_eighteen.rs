//! 10-18 Monkey's pure parts: reading timezone, locale and clock facts, resolving expectations, and deciding drift.
//!
//! The caller runs [`facts_script`] on each instance through its executor (as `["sh", "-c", facts_script()]`),
//! timing the round trip, and optionally reads the `Date` header of the instance's URL ([`parse_http_date`],
//! [`skew_from_http_date`]); [`drift`] then compares everything with the policy or, where the policy says
//! nothing, with the group's majority. Unknown facts become [`DriftKind::UnknownFact`] findings, never panics.
//!
//! Timezone names are compared as written except for the aliases of UTC (`Etc/UTC`, `Universal`, `Zulu`, …),
//! which all count as `UTC`; resolving other tzdata links (e.g. `Asia/Calcutta` = `Asia/Kolkata`) would take
//! chrono-tz. Locales are compared with glibc's codeset normalisation (`en_US.UTF-8` = `en_US.utf8`,
//! `POSIX` = `C`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Instance, Severity};

/// One POSIX `sh` script printing the facts as `key=value` lines; read its output with [`parse_facts`].
///
/// Keys: `simian_facts=1` (marks output of this script), `epoch` (`date +%s.%N`; shells whose `date` lacks
/// `%N` print it literally), `offset` (`date +%z`), and only when present: `tz` ($TZ, also when empty),
/// `etc_timezone` (first line of /etc/timezone), `localtime_link` (readlink of /etc/localtime),
/// `localtime_file=1` (/etc/localtime exists but is no link), `lang`, `lc_all`.
pub fn facts_script() -> &'static str {
    "echo simian_facts=1; \
     printf 'epoch=%s\\n' \"$(date +%s.%N 2>/dev/null)\"; \
     printf 'offset=%s\\n' \"$(date +%z 2>/dev/null)\"; \
     if [ -n \"${TZ+x}\" ]; then printf 'tz=%s\\n' \"$TZ\"; fi; \
     if [ -r /etc/timezone ]; then printf 'etc_timezone=%s\\n' \"$(head -n 1 /etc/timezone)\"; fi; \
     if [ -L /etc/localtime ]; then printf 'localtime_link=%s\\n' \"$(readlink /etc/localtime)\"; \
     elif [ -e /etc/localtime ]; then echo localtime_file=1; fi; \
     if [ -n \"${LANG+x}\" ]; then printf 'lang=%s\\n' \"$LANG\"; fi; \
     if [ -n \"${LC_ALL+x}\" ]; then printf 'lc_all=%s\\n' \"$LC_ALL\"; fi"
}

/// What one instance says about its time and language; `None` = could not be read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Facts {
    /// Effective IANA timezone name (or a POSIX TZ string when $TZ holds one).
    pub timezone: Option<String>,
    /// UTC offset as `date +%z` prints it, e.g. `+0100`.
    pub utc_offset: Option<String>,
    /// Effective locale (`LC_ALL`, else `LANG`, else `C`).
    pub locale: Option<String>,
    /// Remote clock minus local clock, in seconds (positive = the instance is ahead).
    pub clock_skew: Option<f64>,
}

/// `/usr/share/zoneinfo/Europe/Berlin`, `../usr/share/zoneinfo/posix/Europe/Berlin` → `Europe/Berlin`.
fn zone_from_path(path: &str) -> Option<String> {
    let (_, name) = path.rsplit_once("zoneinfo/")?;
    let name = name.strip_prefix("posix/").or_else(|| name.strip_prefix("right/")).unwrap_or(name);
    (!name.is_empty()).then(|| name.to_string())
}

fn effective_timezone(keys: &BTreeMap<&str, &str>) -> Option<String> {
    if let Some(tz) = keys.get("tz") {
        let tz = tz.strip_prefix(':').unwrap_or(tz).trim();
        // glibc and musl read an empty TZ as UTC.
        return Some(if tz.is_empty() {
            "UTC".to_string()
        } else if tz.starts_with('/') {
            zone_from_path(tz)?
        } else {
            tz.to_string()
        });
    }
    if let Some(name) = keys.get("etc_timezone").filter(|v| !v.is_empty()) {
        return Some(name.to_string());
    }
    if let Some(link) = keys.get("localtime_link") {
        return zone_from_path(link);
    }
    if keys.contains_key("localtime_file") {
        // A copied zone file: its name is lost.
        return None;
    }
    // No TZ, no /etc/timezone, no /etc/localtime: the C library falls back to UTC.
    Some("UTC".to_string())
}

fn valid_offset(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 5 && (b[0] == b'+' || b[0] == b'-') && b[1..].iter().all(u8::is_ascii_digit)
}

/// Seconds since the epoch from `date +%s.%N`, or `date +%s` (taken as mid-second, since `%s` truncates).
fn parse_epoch(v: &str) -> Option<f64> {
    if let Ok(x) = v.parse::<f64>() {
        if v.contains('.') && x.is_finite() {
            return Some(x);
        }
    }
    let whole = v.split('.').next().unwrap_or("");
    whole.parse::<i64>().ok().map(|s| s as f64 + 0.5)
}

/// Read the output of [`facts_script`]. `rtt` is how long the whole command took and `local_sent_at_epoch`
/// when it was sent (local seconds since the epoch); the remote clock is taken to have been read half-way,
/// so `clock_skew = remote − (local_sent_at_epoch + rtt/2)`. Output without the `simian_facts=1` line (the
/// script did not run) yields no facts at all.
pub fn parse_facts(stdout: &str, rtt: Duration, local_sent_at_epoch: f64) -> Facts {
    let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
    for line in stdout.lines() {
        if let Some((k, v)) = line.split_once('=') {
            keys.entry(k.trim()).or_insert(v.trim());
        }
    }
    if keys.get("simian_facts") != Some(&"1") {
        return Facts::default();
    }
    let locale = [keys.get("lc_all"), keys.get("lang")]
        .into_iter()
        .flatten()
        .find(|v| !v.is_empty())
        .map_or_else(|| "C".to_string(), |v| v.to_string());
    let clock_skew = keys
        .get("epoch")
        .and_then(|v| parse_epoch(v))
        .filter(|_| local_sent_at_epoch.is_finite())
        .map(|remote| remote - (local_sent_at_epoch + rtt.as_secs_f64() / 2.0))
        .filter(|s| s.is_finite());
    Facts {
        timezone: effective_timezone(&keys),
        utc_offset: keys.get("offset").filter(|v| valid_offset(v)).map(|v| v.to_string()),
        locale: Some(locale),
        clock_skew,
    }
}

/// Parse an HTTP `Date` header: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and, as RFC 7231 asks of
/// recipients, the obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`) forms. The weekday is not checked against the date.
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    let naive = if let Some((_, rest)) = value.split_once(',') {
        let rest = rest.trim();
        let rest = rest.strip_suffix("GMT").or_else(|| rest.strip_suffix("UTC"))?.trim();
        NaiveDateTime::parse_from_str(rest, "%d %b %Y %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(rest, "%d-%b-%y %H:%M:%S"))
            .ok()?
    } else {
        let (_, rest) = value.split_once(char::is_whitespace)?;
        let rest: Vec<&str> = rest.split_whitespace().collect();
        NaiveDateTime::parse_from_str(&rest.join(" "), "%b %d %H:%M:%S %Y").ok()?
    };
    Some(naive.and_utc())
}

/// Clock skew from a `Date` header received for a request sent at `local_sent_at_epoch` that took `rtt`:
/// the header truncates to the second, so it is taken as mid-second.
pub fn skew_from_http_date(server: DateTime<Utc>, local_sent_at_epoch: f64, rtt: Duration) -> Option<f64> {
    let skew = server.timestamp() as f64 + 0.5 - (local_sent_at_epoch + rtt.as_secs_f64() / 2.0);
    skew.is_finite().then_some(skew)
}

/// Of two clock readings (command and `Date` header) the one further off, so a lying source is never hidden.
pub fn worst_skew(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a.filter(|x| x.is_finite()), b.filter(|x| x.is_finite())) {
        (Some(x), Some(y)) => Some(if y.abs() > x.abs() { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// What the policy expects; `None` = the group majority decides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Expect {
    /// Expected timezone.
    pub timezone: Option<String>,
    /// Expected locale.
    pub locale: Option<String>,
}

/// A policy override for the instances it selects (all of its given selectors must match).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Override {
    /// Select by availability zone.
    pub zone: Option<String>,
    /// Select by region.
    pub region: Option<String>,
    /// Select by instance group name.
    pub group: Option<String>,
    /// Expected timezone there.
    pub timezone: Option<String>,
    /// Expected locale there.
    pub locale: Option<String>,
}

impl Override {
    /// Specificity if it selects `inst`: group (4) > zone (2) > region (1), summed when combined, so
    /// `{group, zone}` beats `{group}` beats `{zone, region}` beats `{zone}` beats `{region}`; an override
    /// without selectors (0) still beats the fleet default.
    fn rank(&self, inst: &Instance) -> Option<u8> {
        let mut rank = 0;
        if let Some(g) = &self.group {
            if *g != inst.group {
                return None;
            }
            rank += 4;
        }
        if let Some(z) = &self.zone {
            if inst.zone.as_ref() != Some(z) {
                return None;
            }
            rank += 2;
        }
        if let Some(r) = &self.region {
            if inst.region.as_ref() != Some(r) {
                return None;
            }
            rank += 1;
        }
        Some(rank)
    }
}

fn most_specific(
    inst: &Instance,
    fleet: Option<&String>,
    overrides: &[Override],
    pick: impl Fn(&Override) -> Option<&String>,
) -> Option<String> {
    let mut best: Option<(u8, &String)> = None;
    for o in overrides {
        if let (Some(rank), Some(v)) = (o.rank(inst), pick(o)) {
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, v));
            }
        }
    }
    best.map(|(_, v)| v).or(fleet).cloned()
}

/// What is expected of `inst`, fact by fact: the most specific matching override that sets the fact
/// (group > zone > region, see [`Override`]; among equally specific ones the first listed), else the fleet
/// default, else nothing (the group majority decides).
pub fn resolve(inst: &Instance, fleet: &Expect, overrides: &[Override]) -> Expect {
    Expect {
        timezone: most_specific(inst, fleet.timezone.as_ref(), overrides, |o| o.timezone.as_ref()),
        locale: most_specific(inst, fleet.locale.as_ref(), overrides, |o| o.locale.as_ref()),
    }
}

const UTC_ALIASES: [&str; 11] = [
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
    "UTC0",
    "UTC+0",
    "UTC-0",
];

/// The form timezones are compared in.
fn canonical_timezone(tz: &str) -> String {
    let tz = tz.trim();
    let tz = tz.strip_prefix(':').unwrap_or(tz);
    let tz = zone_from_path(tz).unwrap_or_else(|| tz.to_string());
    if UTC_ALIASES.contains(&tz.as_str()) {
        "UTC".to_string()
    } else {
        tz
    }
}

/// The form locales are compared in: glibc's codeset normalisation, `POSIX` = `C`.
fn canonical_locale(locale: &str) -> String {
    let locale = locale.trim();
    let (rest, modifier) = match locale.split_once('@') {
        Some((r, m)) => (r, Some(m)),
        None => (locale, None),
    };
    let (lang, codeset) = match rest.split_once('.') {
        Some((l, c)) => (l, Some(c)),
        None => (rest, None),
    };
    let lang = if lang == "POSIX" { "C" } else { lang };
    let mut out = lang.to_string();
    if let Some(c) = codeset {
        let norm: String =
            c.chars().filter(char::is_ascii_alphanumeric).map(|ch| ch.to_ascii_lowercase()).collect();
        out.push('.');
        if !norm.is_empty() && norm.chars().all(|ch| ch.is_ascii_digit()) {
            out.push_str("iso");
        }
        out.push_str(&norm);
    }
    if let Some(m) = modifier {
        out.push('@');
        out.push_str(m);
    }
    out
}

/// What kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Timezone differs from the expectation or the group majority.
    TimezoneDrift,
    /// Locale differs from the expectation or the group majority.
    LocaleDrift,
    /// Clock off by more than the allowed skew.
    ClockSkew,
    /// A fact could not be read.
    UnknownFact,
}

impl DriftKind {
    /// Every kind, in report order.
    pub const ALL: [DriftKind; 4] =
        [DriftKind::TimezoneDrift, DriftKind::LocaleDrift, DriftKind::ClockSkew, DriftKind::UnknownFact];

    /// Finding action name.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::TimezoneDrift => "timezone_drift",
            DriftKind::LocaleDrift => "locale_drift",
            DriftKind::ClockSkew => "clock_skew",
            DriftKind::UnknownFact => "unknown_fact",
        }
    }

    /// Severity of its finding (all warnings).
    pub fn severity(self) -> Severity {
        match self {
            DriftKind::TimezoneDrift
            | DriftKind::LocaleDrift
            | DriftKind::ClockSkew
            | DriftKind::UnknownFact => Severity::Warning,
        }
    }
}

/// One instance out of line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftFinding {
    /// The instance.
    pub instance: Instance,
    /// What drifted.
    pub kind: DriftKind,
    /// Expected value; for `clock_skew` the limit (`±2.000s`); for `unknown_fact` the fact's name
    /// (`timezone`, `locale`, `clock`).
    pub expected: String,
    /// Actual value; for `clock_skew` the signed skew (`+3.412s`); for `unknown_fact` `unknown`.
    pub actual: String,
    /// True when `expected` is the group's majority rather than the policy.
    pub from_majority: bool,
}

impl DriftFinding {
    /// The finding's message, expected vs actual in one sentence.
    pub fn message(&self) -> String {
        let basis = if self.from_majority {
            format!(" (the majority of group {})", self.instance.group)
        } else {
            String::new()
        };
        match self.kind {
            DriftKind::TimezoneDrift => {
                format!("timezone is {}, expected {}{basis}", self.actual, self.expected)
            }
            DriftKind::LocaleDrift => {
                format!("locale is {}, expected {}{basis}", self.actual, self.expected)
            }
            DriftKind::ClockSkew => {
                format!("clock is off by {}, allowed {}", self.actual, self.expected)
            }
            DriftKind::UnknownFact => format!("{} could not be read", self.expected),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fact {
    Timezone,
    Locale,
}

impl Fact {
    fn value(self, f: &Facts) -> Option<&String> {
        match self {
            Fact::Timezone => f.timezone.as_ref(),
            Fact::Locale => f.locale.as_ref(),
        }
    }

    fn expected(self, e: &Expect) -> Option<&String> {
        match self {
            Fact::Timezone => e.timezone.as_ref(),
            Fact::Locale => e.locale.as_ref(),
        }
    }

    fn canonical(self, v: &str) -> String {
        match self {
            Fact::Timezone => canonical_timezone(v),
            Fact::Locale => canonical_locale(v),
        }
    }

    fn kind(self) -> DriftKind {
        match self {
            Fact::Timezone => DriftKind::TimezoneDrift,
            Fact::Locale => DriftKind::LocaleDrift,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fact::Timezone => "timezone",
            Fact::Locale => "locale",
        }
    }
}

/// Canonical value → (members holding it, first spelling seen).
type Tally = BTreeMap<String, (usize, String)>;

/// Per group (target, group), the value held by more than half of the members that have no expectation
/// for `fact` and whose value is known: (canonical form, first spelling seen).
fn majorities(
    instances: &[(Instance, Facts)],
    expects: &[Expect],
    fact: Fact,
) -> BTreeMap<(String, String), (String, String)> {
    // group → (known values, canonical → (count, first spelling))
    let mut counts: BTreeMap<(String, String), (usize, Tally)> = BTreeMap::new();
    for ((inst, facts), expect) in instances.iter().zip(expects) {
        if fact.expected(expect).is_some() {
            continue;
        }
        let Some(v) = fact.value(facts) else { continue };
        let (known, per_value) = counts.entry((inst.target.clone(), inst.group.clone())).or_default();
        *known += 1;
        per_value.entry(fact.canonical(v)).or_insert_with(|| (0, v.clone())).0 += 1;
    }
    counts
        .into_iter()
        .filter_map(|(group, (known, per_value))| {
            per_value
                .into_iter()
                .find(|(_, (n, _))| n * 2 > known)
                .map(|(canon, (_, spelling))| (group, (canon, spelling)))
        })
        .collect()
}

fn format_skew(s: f64) -> String {
    format!("{s:+.3}s")
}

/// Decide drift over a fleet; findings come per instance in input order (timezone, locale, clock).
///
/// - A fact that could not be read is an `unknown_fact` (timezone, locale, clock; the UTC offset is not
///   judged).
/// - With an expectation ([`resolve`]: override > fleet default), every instance whose value differs is
///   drift.
/// - Without one, the norm is the value held by **more than half** of the group's members (same target and
///   group) that have no expectation for that fact and whose value is known. A tie, or a plurality short of
///   half, is no norm, and then nothing in that group is drift for that fact.
/// - `clock_skew` when the skew's magnitude exceeds `max_skew` (no majority: the clock has one truth).
pub fn drift(
    instances: &[(Instance, Facts)],
    fleet: &Expect,
    overrides: &[Override],
    max_skew: Duration,
) -> Vec<DriftFinding> {
    let expects: Vec<Expect> = instances.iter().map(|(inst, _)| resolve(inst, fleet, overrides)).collect();
    let norms = [
        (Fact::Timezone, majorities(instances, &expects, Fact::Timezone)),
        (Fact::Locale, majorities(instances, &expects, Fact::Locale)),
    ];
    let limit = max_skew.as_secs_f64();
    let mut out = Vec::new();
    for ((inst, facts), expect) in instances.iter().zip(&expects) {
        let finding = |kind, expected: String, actual: String, from_majority| DriftFinding {
            instance: inst.clone(),
            kind,
            expected,
            actual,
            from_majority,
        };
        for (fact, norm) in &norms {
            let Some(actual) = fact.value(facts) else {
                out.push(finding(
                    DriftKind::UnknownFact,
                    fact.name().to_string(),
                    "unknown".to_string(),
                    false,
                ));
                continue;
            };
            let canon = fact.canonical(actual);
            if let Some(want) = fact.expected(expect) {
                if fact.canonical(want) != canon {
                    out.push(finding(fact.kind(), want.clone(), actual.clone(), false));
                }
            } else if let Some((norm_canon, spelling)) = norm.get(&(inst.target.clone(), inst.group.clone()))
            {
                if *norm_canon != canon {
                    out.push(finding(fact.kind(), spelling.clone(), actual.clone(), true));
                }
            }
        }
        match facts.clock_skew.filter(|s| s.is_finite()) {
            None => {
                out.push(finding(DriftKind::UnknownFact, "clock".to_string(), "unknown".to_string(), false))
            }
            Some(s) if s.abs() > limit => {
                out.push(finding(DriftKind::ClockSkew, format!("±{limit:.3}s"), format_skew(s), false))
            }
            Some(_) => {}
        }
    }
    out
}

/// Findings per kind (`summary.ten_eighteen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DriftSummary {
    /// `timezone_drift` findings.
    pub timezone_drift: u64,
    /// `locale_drift` findings.
    pub locale_drift: u64,
    /// `clock_skew` findings.
    pub clock_skew: u64,
    /// `unknown_fact` findings.
    pub unknown_fact: u64,
}

impl DriftSummary {
    /// The count for one kind.
    pub fn get(&self, kind: DriftKind) -> u64 {
        match kind {
            DriftKind::TimezoneDrift => self.timezone_drift,
            DriftKind::LocaleDrift => self.locale_drift,
            DriftKind::ClockSkew => self.clock_skew,
            DriftKind::UnknownFact => self.unknown_fact,
        }
    }
}

/// Count findings per kind.
pub fn summary(findings: &[DriftFinding]) -> DriftSummary {
    let mut s = DriftSummary::default();
    for f in findings {
        let counter = match f.kind {
            DriftKind::TimezoneDrift => &mut s.timezone_drift,
            DriftKind::LocaleDrift => &mut s.locale_drift,
            DriftKind::ClockSkew => &mut s.clock_skew,
            DriftKind::UnknownFact => &mut s.unknown_fact,
        };
        *counter += 1;
    }
    s
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn inst(id: usize, group: &str, zone: Option<&str>, region: Option<&str>) -> Instance {
        Instance {
            target: "lab".into(),
            id: format!("h{id:03}"),
            address: None,
            group: group.into(),
            zone: zone.map(Into::into),
            region: region.map(Into::into),
            url: None,
            tags: BTreeMap::new(),
        }
    }

    fn facts(tz: &str, locale: &str) -> Facts {
        Facts {
            timezone: Some(tz.into()),
            utc_offset: Some("+0000".into()),
            locale: Some(locale.into()),
            clock_skew: Some(0.1),
        }
    }

    const SECOND: Duration = Duration::from_secs(2);

    #[test]
    fn effective_timezone_order() {
        let p = |s: &str| parse_facts(&format!("simian_facts=1\n{s}"), Duration::ZERO, 0.0).timezone;
        let all =
            "tz=:Asia/Tokyo\netc_timezone=Europe/Dublin\nlocaltime_link=/usr/share/zoneinfo/Europe/Berlin\n";
        assert_eq!(p(all).as_deref(), Some("Asia/Tokyo"));
        assert_eq!(
            p("etc_timezone=Europe/Dublin\nlocaltime_link=/usr/share/zoneinfo/Europe/Berlin\n").as_deref(),
            Some("Europe/Dublin")
        );
        assert_eq!(
            p("localtime_link=../usr/share/zoneinfo/posix/Europe/Berlin\n").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(p("tz=\n").as_deref(), Some("UTC"));
        assert_eq!(p("tz=:/usr/share/zoneinfo/America/Lima\n").as_deref(), Some("America/Lima"));
        assert_eq!(p("tz=CET-1CEST\n").as_deref(), Some("CET-1CEST"));
        assert_eq!(p("localtime_file=1\n"), None);
        assert_eq!(p("localtime_link=/somewhere/else\n"), None);
        assert_eq!(p("").as_deref(), Some("UTC"));
    }

    #[test]
    fn locale_offset_and_clock() {
        let out = "simian_facts=1\nepoch=1000.25\noffset=+0530\nlang=en_US.UTF-8\nlc_all=\n";
        let f = parse_facts(out, Duration::from_millis(500), 990.0);
        assert_eq!(f.locale.as_deref(), Some("en_US.UTF-8"));
        assert_eq!(f.utc_offset.as_deref(), Some("+0530"));
        assert_eq!(f.clock_skew, Some(10.0));
        let f = parse_facts(
            "simian_facts=1\nlang=en_US.UTF-8\nlc_all=de_DE.UTF-8\nepoch=1000.%N\n",
            Duration::ZERO,
            1000.0,
        );
        assert_eq!(f.locale.as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(f.clock_skew, Some(0.5));
        assert_eq!(f.utc_offset, None);
        let f = parse_facts("simian_facts=1\nepoch=\noffset=+01\n", Duration::ZERO, 0.0);
        assert_eq!(f.locale.as_deref(), Some("C"));
        assert_eq!((f.clock_skew, f.utc_offset), (None, None));
        assert_eq!(parse_facts("simian_facts=1\nepoch=5.0\n", Duration::ZERO, f64::NAN).clock_skew, None);
        assert_eq!(parse_facts("sh: 1: not found\n", Duration::ZERO, 0.0), Facts::default());
    }

    /// Runs the script through the local /bin/sh: the one test here that needs the system.
    #[test]
    fn script_and_parser_agree_on_a_real_shell() {
        let sent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = std::time::Instant::now();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(facts_script())
            .env("TZ", ":Asia/Tokyo")
            .env("LANG", "ja_JP.UTF-8")
            .env_remove("LC_ALL")
            .output()
            .expect("sh runs");
        let f = parse_facts(&String::from_utf8_lossy(&out.stdout), started.elapsed(), sent);
        assert_eq!(f.timezone.as_deref(), Some("Asia/Tokyo"));
        assert_eq!(f.locale.as_deref(), Some("ja_JP.UTF-8"));
        assert!(f.utc_offset.as_deref().is_some_and(valid_offset), "{f:?}");
        assert!(f.clock_skew.is_some_and(|s| s.abs() < 1.0), "{f:?}");
    }

    #[test]
    fn reads_http_dates_in_all_three_forms() {
        let want = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).unwrap();
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("  Sunday, 06-Nov-94 08:49:37 GMT "), Some(want));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        // A server lying about the weekday still gives its time.
        assert_eq!(parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 +0100"), None);
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date(""), None);
        let skew = skew_from_http_date(want, want.timestamp() as f64 - 10.0, Duration::from_secs(1));
        assert_eq!(skew, Some(10.0));
        assert_eq!(worst_skew(Some(0.2), Some(-5.0)), Some(-5.0));
        assert_eq!(worst_skew(Some(3.0), None), Some(3.0));
        assert_eq!(worst_skew(Some(f64::NAN), Some(1.0)), Some(1.0));
        assert_eq!(worst_skew(None, None), None);
    }

    #[test]
    fn most_specific_override_wins_per_fact() {
        let fleet = Expect { timezone: Some("UTC".into()), locale: Some("en_US.UTF-8".into()) };
        let overrides = vec![
            Override {
                region: Some("eu-west-1".into()),
                timezone: Some("Europe/London".into()),
                ..Override::default()
            },
            Override {
                zone: Some("eu-west-1a".into()),
                timezone: Some("Europe/Dublin".into()),
                ..Override::default()
            },
            Override {
                group: Some("tokyo-web".into()),
                timezone: Some("Asia/Tokyo".into()),
                locale: Some("ja_JP.UTF-8".into()),
                ..Override::default()
            },
            Override {
                group: Some("tokyo-web".into()),
                timezone: Some("Asia/Seoul".into()),
                ..Override::default()
            },
        ];
        let r = |i: &Instance| resolve(i, &fleet, &overrides);
        let web = inst(1, "web", Some("eu-west-1a"), Some("eu-west-1"));
        assert_eq!(r(&web).timezone.as_deref(), Some("Europe/Dublin"));
        assert_eq!(r(&web).locale.as_deref(), Some("en_US.UTF-8"));
        let web_b = inst(2, "web", Some("eu-west-1b"), Some("eu-west-1"));
        assert_eq!(r(&web_b).timezone.as_deref(), Some("Europe/London"));
        let tokyo = inst(3, "tokyo-web", Some("eu-west-1a"), Some("eu-west-1"));
        assert_eq!(
            r(&tokyo),
            Expect { timezone: Some("Asia/Tokyo".into()), locale: Some("ja_JP.UTF-8".into()) }
        );
        let elsewhere = inst(4, "api", None, None);
        assert_eq!(r(&elsewhere), fleet);
        assert_eq!(resolve(&elsewhere, &Expect::default(), &overrides), Expect::default());
    }

    #[test]
    fn expectation_flags_every_differing_instance() {
        let fleet = Expect { timezone: Some("UTC".into()), locale: Some("en_US.UTF-8".into()) };
        let fl = vec![
            (inst(1, "web", None, None), facts("Etc/UTC", "en_US.utf8")),
            (inst(2, "web", None, None), facts("Europe/Berlin", "en_US.UTF-8")),
            (inst(3, "web", None, None), facts("Europe/Berlin", "de_DE.UTF-8")),
        ];
        let found = drift(&fl, &fleet, &[], SECOND);
        let kinds: Vec<_> = found.iter().map(|f| (f.instance.id.as_str(), f.kind.as_str())).collect();
        assert_eq!(
            kinds,
            vec![("h002", "timezone_drift"), ("h003", "timezone_drift"), ("h003", "locale_drift")]
        );
        assert_eq!(found[0].message(), "timezone is Europe/Berlin, expected UTC");
        assert!(!found[0].from_majority);
        let s = summary(&found);
        assert_eq!((s.timezone_drift, s.locale_drift, s.get(DriftKind::ClockSkew)), (2, 1, 0));
    }

    #[test]
    fn majority_is_the_norm_without_expectation_and_ties_are_none() {
        let mut fl: Vec<_> = (0..5).map(|i| (inst(i, "web", None, None), facts("UTC", "C.UTF-8"))).collect();
        fl[4].1.timezone = Some("Asia/Tokyo".into());
        fl.push((inst(10, "db", None, None), facts("Asia/Tokyo", "C")));
        fl.push((inst(11, "db", None, None), facts("UTC", "POSIX")));
        let found = drift(&fl, &Expect::default(), &[], SECOND);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].instance.id, "h004");
        assert!(found[0].from_majority);
        assert_eq!(found[0].message(), "timezone is Asia/Tokyo, expected UTC (the majority of group web)");
        // Plurality short of half: 2 UTC, 2 Berlin, 1 Tokyo → no norm.
        let zones = ["UTC", "UTC", "Europe/Berlin", "Europe/Berlin", "Asia/Tokyo"];
        let fl: Vec<_> =
            zones.iter().enumerate().map(|(i, z)| (inst(i, "web", None, None), facts(z, "C"))).collect();
        assert!(drift(&fl, &Expect::default(), &[], SECOND).is_empty());
    }

    #[test]
    fn majority_only_counts_members_without_expectation() {
        // Zone a expects Dublin (and has it); zone b has no expectation: 2 UTC + 1 Tokyo there.
        let overrides = [Override {
            zone: Some("a".into()),
            timezone: Some("Europe/Dublin".into()),
            ..Override::default()
        }];
        let mut fl: Vec<_> =
            (0..4).map(|i| (inst(i, "web", Some("a"), None), facts("Europe/Dublin", "C"))).collect();
        fl.push((inst(4, "web", Some("b"), None), facts("UTC", "C")));
        fl.push((inst(5, "web", Some("b"), None), facts("UTC", "C")));
        fl.push((inst(6, "web", Some("b"), None), facts("Asia/Tokyo", "C")));
        let found = drift(&fl, &Expect::default(), &overrides, SECOND);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].instance.id.as_str(), found[0].expected.as_str()), ("h006", "UTC"));
    }

    #[test]
    fn clock_skew_and_unknown_facts() {
        let mut ahead = facts("UTC", "C");
        ahead.clock_skew = Some(3.4121);
        let mut behind = facts("UTC", "C");
        behind.clock_skew = Some(-2.0);
        let fl = vec![
            (inst(1, "web", None, None), ahead),
            (inst(2, "web", None, None), behind),
            (inst(3, "web", None, None), Facts::default()),
        ];
        let found = drift(&fl, &Expect::default(), &[], SECOND);
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.instance.id.as_str(), f.kind, f.expected.as_str(), f.actual.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("h001", DriftKind::ClockSkew, "±2.000s", "+3.412s"),
                ("h003", DriftKind::UnknownFact, "timezone", "unknown"),
                ("h003", DriftKind::UnknownFact, "locale", "unknown"),
                ("h003", DriftKind::UnknownFact, "clock", "unknown"),
            ]
        );
        assert_eq!(found[0].message(), "clock is off by +3.412s, allowed ±2.000s");
        assert_eq!(found[1].message(), "timezone could not be read");
        assert_eq!(summary(&found).unknown_fact, 3);
        assert_eq!(
            DriftKind::ALL.map(DriftKind::as_str),
            ["timezone_drift", "locale_drift", "clock_skew", "unknown_fact"]
        );
        assert_eq!(DriftKind::ClockSkew.severity(), Severity::Warning);
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_timezone("Etc/UTC"), "UTC");
        assert_eq!(canonical_timezone(":/usr/share/zoneinfo/Zulu"), "UTC");
        assert_eq!(canonical_timezone("Europe/Berlin"), "Europe/Berlin");
        assert_eq!(canonical_locale("en_US.UTF-8"), canonical_locale("en_US.utf8"));
        assert_eq!(canonical_locale("de_DE.ISO-8859-1@euro"), "de_DE.iso88591@euro");
        assert_eq!(canonical_locale("de_DE.88591"), "de_DE.iso88591");
        assert_eq!(canonical_locale("POSIX"), "C");
        assert_ne!(canonical_locale("en_US.UTF-8"), canonical_locale("en_GB.UTF-8"));
    }

    fn arb_facts() -> impl Strategy<Value = Facts> {
        (
            prop::option::of("\\PC{0,12}"),
            prop::option::of("\\PC{0,6}"),
            prop::option::of("\\PC{0,12}"),
            prop::option::of(prop_oneof![any::<f64>(), -10f64..10.0]),
        )
            .prop_map(|(timezone, utc_offset, locale, clock_skew)| Facts {
                timezone,
                utc_offset,
                locale,
                clock_skew,
            })
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*", rtt in any::<u64>(), sent in any::<f64>()) {
            let _ = parse_facts(&s, Duration::from_nanos(rtt), sent);
            let _ = parse_facts(&format!("simian_facts=1\n{s}"), Duration::from_nanos(rtt), sent);
            let _ = parse_http_date(&s);
        }

        #[test]
        fn drift_never_panics(
            fl in prop::collection::vec(("[ab]", prop::option::of("[xy]"), arb_facts()), 0..12),
            tz in prop::option::of("\\PC{0,8}"),
            skew_ms in any::<u64>(),
        ) {
            let fl: Vec<_> = fl.into_iter().enumerate()
                .map(|(i, (g, z, f))| (inst(i, &g, z.as_deref(), None), f)).collect();
            let fleet = Expect { timezone: tz, locale: None };
            let over = [Override { zone: Some("x".into()), locale: Some("C".into()), ..Override::default() }];
            let found = drift(&fl, &fleet, &over, Duration::from_millis(skew_ms));
            let s = summary(&found);
            prop_assert_eq!(DriftKind::ALL.iter().map(|k| s.get(*k)).sum::<u64>(), found.len() as u64);
        }

        #[test]
        fn minority_of_k_is_exactly_k_findings_without_expectation(
            n in 1usize..40,
            k_frac in 0f64..1.0,
            seed in prop::collection::vec((0usize..1000, 0usize..3), 40),
        ) {
            let k = ((n.saturating_sub(1)) / 2).min((k_frac * n as f64) as usize);
            prop_assert!(2 * k < n);
            // Positions of the minority: the first k of a seeded permutation; minority zones vary.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|i| (seed[*i].0, *i));
            let minority: Vec<usize> = order[..k].to_vec();
            let others = ["Asia/Tokyo", "Europe/Berlin", "America/Lima"];
            let fl: Vec<_> = (0..n)
                .map(|i| {
                    let tz = if minority.contains(&i) { others[seed[i].1] } else { "UTC" };
                    (inst(i, "web", None, None), facts(tz, "C"))
                })
                .collect();
            let found = drift(&fl, &Expect::default(), &[], SECOND);
            prop_assert!(found.iter().all(|f| f.kind == DriftKind::TimezoneDrift && f.expected == "UTC"));
            let mut flagged: Vec<usize> = found.iter().map(|f| f.instance.id[1..].parse().unwrap()).collect();
            flagged.sort_unstable();
            let mut want = minority.clone();
            want.sort_unstable();
            prop_assert_eq!(flagged, want);
        }

        #[test]
        fn with_expectation_every_differing_instance_is_flagged(
            zones in prop::collection::vec(prop_oneof!["UTC", "Etc/UTC", "Asia/Tokyo", "Europe/Berlin"], 0..40),
        ) {
            let fl: Vec<_> = zones.iter().enumerate()
                .map(|(i, z)| (inst(i, "web", None, None), facts(z, "C")))
                .collect();
            let fleet = Expect { timezone: Some("Asia/Tokyo".into()), locale: None };
            let found = drift(&fl, &fleet, &[], SECOND);
            let flagged: Vec<&str> = found.iter().map(|f| f.instance.id.as_str()).collect();
            let want: Vec<String> = zones.iter().enumerate()
                .filter(|(_, z)| *z != "Asia/Tokyo").map(|(i, _)| format!("h{i:03}")).collect();
            prop_assert_eq!(flagged, want.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert!(found.iter().all(|f| f.kind == DriftKind::TimezoneDrift && !f.from_majority));
        }
    }
}
