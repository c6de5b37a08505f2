//! Human durations in policies: `200ms`, `90s`, `10m`, `2h`, `1d`, `1w` (and sums like `1h30m`); percentages.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span written as `<n><unit>`…, units ms, s, m, h, d, w.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Seconds in this span.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
    /// The span as a std duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }
    /// The span as a chrono duration (saturating).
    pub fn chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// The longest duration a policy may write: 100 years.
const MAX_MILLIS: u64 = 100 * 365_250 * 86_400;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{text}`: {why}; write a number and a unit ms, s, m, h, d or w, e.g. 200ms, 90s, 10m, 2h, 1d, 1w"
)]
pub struct DurationError {
    text: String,
    why: &'static str,
}

impl std::str::FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why| DurationError { text: text.to_string(), why };
        let s = text.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        // Milliseconds, so `200ms` and `1s500ms` are exact.
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: u64 = match c {
                'm' if chars.peek() == Some(&'s') => {
                    chars.next();
                    1
                }
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                _ => return Err(err("unknown unit")),
            };
            if digits.is_empty() {
                return Err(err("a unit without a number"));
            }
            let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
            digits.clear();
            total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| err("too large"))?;
        }
        if !digits.is_empty() {
            return Err(err("a number without a unit"));
        }
        // Nothing in a policy needs more; beyond it, date arithmetic could overflow.
        if total > MAX_MILLIS {
            return Err(err("more than 100 years (5218w)"));
        }
        Ok(Duration(std::time::Duration::from_millis(total)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_millis();
        if s == 0 {
            return write!(f, "0s");
        }
        for (unit, size) in
            [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)]
        {
            if s >= size {
                write!(f, "{}{}", s / size, unit)?;
                s %= size;
            }
        }
        Ok(())
    }
}

/// A percentage written `5%` or `0.5%`, in 0..=100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

/// Why a percentage did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid percentage `{0}`: write a number from 0 to 100 followed by %, e.g. 5% or 0.5%")]
pub struct PercentError(String);

impl std::str::FromStr for Percent {
    type Err = PercentError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || PercentError(text.to_string());
        let n: f64 = text.trim().strip_suffix('%').ok_or_else(err)?.trim().parse().map_err(|_| err())?;
        if !(0.0..=100.0).contains(&n) {
            return Err(err());
        }
        Ok(Percent(n))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let p = |s: &str| s.parse::<Duration>().map(|d| d.as_secs());
        assert_eq!(p("90s"), Ok(90));
        assert_eq!(p("10m"), Ok(600));
        assert_eq!(p("2h"), Ok(7200));
        assert_eq!(p("1d"), Ok(86_400));
        assert_eq!(p("1w"), Ok(604_800));
        assert_eq!(p("1h30m"), Ok(5400));
        let ms = |s: &str| s.parse::<Duration>().map(|d| d.std().as_millis());
        assert_eq!(ms("200ms"), Ok(200));
        assert_eq!(ms("1s500ms"), Ok(1500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert!(ms("5mss").is_err());
        assert!(p("5").is_err());
        assert!(p("m").is_err());
        assert!(p("3x").is_err());
        assert!(p("").is_err());
        assert!(p("99999999999999999999w").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["0s", "90s", "1m30s", "2h", "1d", "1w", "1w1d1h1m1s", "200ms", "1s5ms"] {
            let d: Duration = s.parse().unwrap();
            let again: Duration = d.to_string().parse().unwrap();
            assert_eq!(d, again, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_and_never_overflows_chrono(text in "[0-9a-z]{0,24}", n in proptest::num::u64::ANY, unit in "(ms|s|m|h|d|w)") {
            for t in [text, format!("{n}{unit}")] {
                if let Ok(d) = t.parse::<Duration>() {
                    let now = chrono::DateTime::<chrono::Utc>::from_timestamp(4_102_444_800, 0).unwrap_or_default();
                    proptest::prop_assert!(now.checked_add_signed(d.chrono()).is_some(), "{t}");
                    proptest::prop_assert!(d.std() <= std::time::Duration::from_millis(super::MAX_MILLIS));
                }
            }
        }
    }
}
