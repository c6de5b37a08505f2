//! Human durations in policies: `90s`, `10m`, `2h`, `1d`, `1w` (and sums like `1h30m`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span written as `<n><unit>`…, units s, m, h, d, w.
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

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{text}`: {why}; write a number and a unit s, m, h, d or w, e.g. 90s, 10m, 2h, 1d, 1w"
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
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
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
        Ok(Duration(std::time::Duration::from_secs(total)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_secs();
        if s == 0 {
            return write!(f, "0s");
        }
        for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if s >= size {
                write!(f, "{}{}", s / size, unit)?;
                s %= size;
            }
        }
        Ok(())
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
        assert!(p("5").is_err());
        assert!(p("m").is_err());
        assert!(p("3x").is_err());
        assert!(p("").is_err());
        assert!(p("99999999999999999999w").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["0s", "90s", "1m30s", "2h", "1d", "1w", "1w1d1h1m1s"] {
            let d: Duration = s.parse().unwrap();
            let again: Duration = d.to_string().parse().unwrap();
            assert_eq!(d, again, "{s}");
        }
    }
}
