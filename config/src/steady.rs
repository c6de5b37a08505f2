//! `steady_state:` — how a round measures the service before, during and after its fault — and the pure
//! tolerance language (`"<= 1%"`, `"<= 2x baseline"`, `">= 50% baseline"`, `"<= 300ms"`, `"< 5"`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Duration, Secret};

/// `steady_state:` at the top of a policy.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SteadyStateConfig {
    /// Measured right before the first action; default 30s.
    #[serde(default)]
    pub baseline: Option<Duration>,
    /// Chaos Monkey only: how long "during" lasts after the kills; default 1m.
    #[serde(default)]
    pub observe: Option<Duration>,
    /// Watched after the revert (or the observe window) until every tolerance holds again; default 1m.
    #[serde(default)]
    pub recovery: Option<Duration>,
    /// How often tolerances are checked over the last window; default 5s.
    #[serde(default)]
    pub check_every: Option<Duration>,
    /// Consecutive breaching checks that abort the round; default 2.
    #[serde(default)]
    pub abort_after: Option<u32>,
    /// What is measured.
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
}

/// One steady-state probe: exactly one of `http` and `prometheus`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Unique name; monkeys select probes by it.
    pub name: String,
    /// Closed-loop HTTP load against one URL.
    #[serde(default)]
    pub http: Option<HttpProbeConfig>,
    /// A PromQL instant query.
    #[serde(default)]
    pub prometheus: Option<PrometheusProbeConfig>,
    /// Metric → tolerance text.
    #[serde(default)]
    pub tolerance: ToleranceConfig,
}

/// `http:` of a probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeConfig {
    /// The URL every request goes to.
    pub url: String,
    /// HTTP method; default GET.
    #[serde(default = "get")]
    pub method: String,
    /// Request body, if any.
    #[serde(default)]
    pub body: Option<String>,
    /// Extra request headers; values are secrets (they often carry tokens).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Statuses that count as success; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Closed-loop workers: each sends its next request when the last one returned; default 4.
    #[serde(default = "four")]
    pub concurrency: u32,
    /// Cap on requests per second over all workers, e.g. `100/s`; default 100/s, at most 1000/s.
    #[serde(default)]
    pub max_rate: Option<Rate>,
    /// Per request, from sending it to reading the whole body; default 2s.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

fn get() -> String {
    "GET".to_string()
}

fn four() -> u32 {
    4
}

/// `prometheus:` of a probe.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbeConfig {
    /// Base URL of the Prometheus HTTP API, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// PromQL giving one number (a scalar or a one-series vector).
    pub query: String,
    /// Per query; default 5s.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// `tolerance:` of a probe: each metric with its bound, as text.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceConfig {
    /// HTTP: failed requests / all requests, e.g. `"<= 1%"`.
    #[serde(default)]
    pub error_rate: Option<String>,
    /// HTTP: median latency, e.g. `"<= 300ms"` or `"<= 2x baseline"`.
    #[serde(default)]
    pub p50: Option<String>,
    /// HTTP: 99th-percentile latency.
    #[serde(default)]
    pub p99: Option<String>,
    /// HTTP: successful responses per second, e.g. `">= 50% baseline"` or `">= 20/s"`.
    #[serde(default)]
    pub throughput: Option<String>,
    /// Prometheus: the query's value, e.g. `">= 80% baseline"` or `"< 5"`.
    #[serde(default)]
    pub value: Option<String>,
}

impl ToleranceConfig {
    /// Every metric written, in report order.
    pub fn written(&self) -> Vec<(Metric, &str)> {
        [
            (Metric::ErrorRate, &self.error_rate),
            (Metric::P50, &self.p50),
            (Metric::P99, &self.p99),
            (Metric::Throughput, &self.throughput),
            (Metric::Value, &self.value),
        ]
        .into_iter()
        .filter_map(|(m, t)| t.as_deref().map(|t| (m, t)))
        .collect()
    }
}

/// `steady_state:` of a monkey: `false` for none, `true` (the default) for every probe, or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProbeChoice {
    /// `true` / `false`.
    All(bool),
    /// A subset of the probes, by name.
    Named(Vec<String>),
}

impl Default for ProbeChoice {
    fn default() -> Self {
        ProbeChoice::All(true)
    }
}

impl<'de> Deserialize<'de> for ProbeChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProbeChoice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of probe names, or false for none")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ProbeChoice, E> {
                Ok(ProbeChoice::All(v))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<ProbeChoice, S::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(ProbeChoice::Named(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// A request rate written `100/s` (or `6000/m`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

impl Rate {
    /// Requests per second.
    pub fn per_second(self) -> f64 {
        self.0
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let err = || {
            format!("invalid rate `{text}`: write requests per second like `100/s` (or per minute, `600/m`)")
        };
        let (n, unit) = text.trim().split_once('/').ok_or_else(err)?;
        let n: f64 = n.trim().parse().map_err(|_| err())?;
        let per = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            _ => return Err(err()),
        };
        if !n.is_finite() || n <= 0.0 {
            return Err(err());
        }
        Ok(Rate(n / per))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a tolerance bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Failed / all requests, 0..=1.
    ErrorRate,
    /// Median latency, milliseconds.
    P50,
    /// 99th-percentile latency, milliseconds.
    P99,
    /// Successful responses per second.
    Throughput,
    /// A Prometheus query's value.
    Value,
}

impl Metric {
    /// Key in the policy and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::Throughput => "throughput",
            Metric::Value => "value",
        }
    }

    /// Whether an HTTP probe measures it (else a Prometheus probe does).
    pub fn is_http(self) -> bool {
        match self {
            Metric::ErrorRate | Metric::P50 | Metric::P99 | Metric::Throughput => true,
            Metric::Value => false,
        }
    }

    /// A value of this metric for people: `1.5%`, `133.2ms`, `55.4/s`, `12.5`.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::ErrorRate => format!("{}%", round(v * 100.0)),
            Metric::P50 | Metric::P99 => format!("{}ms", round(v)),
            Metric::Throughput => format!("{}/s", round(v)),
            Metric::Value => format!("{}", round(v)),
        }
    }
}

fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        (v * 10.0).round() / 10.0
    } else {
        (v * 100.0).round() / 100.0
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn holds(self, v: f64, bound: f64) -> bool {
        match self {
            Cmp::Lt => v < bound,
            Cmp::Le => v <= bound,
            Cmp::Gt => v > bound,
            Cmp::Ge => v >= bound,
        }
    }
}

/// What the value is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A fixed number in the metric's unit (error rate as a fraction, latency in ms, throughput per second).
    Absolute(f64),
    /// A multiple of the measured baseline (`2x baseline`, `50% baseline` = 0.5).
    Baseline(f64),
}

/// One parsed tolerance; `text` is what the policy says, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerance {
    /// The comparison.
    pub cmp: Cmp,
    /// Against what.
    pub bound: Bound,
    /// As written.
    pub text: String,
}

impl Tolerance {
    /// Parse `text` for `metric`; the error says what is accepted.
    pub fn parse(metric: Metric, text: &str) -> Result<Tolerance, String> {
        let t = text.trim();
        let (cmp, rest) = if let Some(r) = t.strip_prefix("<=") {
            (Cmp::Le, r)
        } else if let Some(r) = t.strip_prefix(">=") {
            (Cmp::Ge, r)
        } else if let Some(r) = t.strip_prefix('<') {
            (Cmp::Lt, r)
        } else if let Some(r) = t.strip_prefix('>') {
            (Cmp::Gt, r)
        } else {
            return Err(format!("tolerance `{text}` does not start with <=, <, >= or >"));
        };
        let rest = rest.trim();
        let bound = if let Some(rel) = rest.strip_suffix("baseline") {
            let rel = rel.trim();
            let factor = if let Some(x) = rel.strip_suffix('x') {
                number(x)
            } else if let Some(p) = rel.strip_suffix('%') {
                number(p).map(|p| p / 100.0)
            } else {
                None
            };
            match factor {
                Some(f) => Bound::Baseline(f),
                None => {
                    return Err(format!(
                        "tolerance `{text}`: a relative bound is written like `2x baseline` or `50% baseline`"
                    ))
                }
            }
        } else {
            Bound::Absolute(
                absolute(metric, rest)
                    .ok_or_else(|| format!("tolerance `{text}` for `{metric}`: {}", absolute_hint(metric)))?,
            )
        };
        Ok(Tolerance { cmp, bound, text: t.to_string() })
    }

    /// Whether it compares with the baseline.
    pub fn is_relative(&self) -> bool {
        matches!(self.bound, Bound::Baseline(_))
    }

    /// Whether `value` satisfies it; `baseline` is the same metric over the baseline phase (a relative
    /// tolerance with no baseline value cannot be judged, so it holds). NaN (no samples) never holds.
    pub fn holds(&self, value: f64, baseline: Option<f64>) -> bool {
        if value.is_nan() {
            return false;
        }
        match self.bound {
            Bound::Absolute(b) => self.cmp.holds(value, b),
            Bound::Baseline(f) => match baseline.filter(|b| b.is_finite()) {
                Some(b) => self.cmp.holds(value, b * f),
                None => true,
            },
        }
    }
}

fn number(s: &str) -> Option<f64> {
    let n: f64 = s.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

fn absolute(metric: Metric, s: &str) -> Option<f64> {
    match metric {
        Metric::ErrorRate => {
            let p = number(s.strip_suffix('%')?)?;
            (p <= 100.0).then_some(p / 100.0)
        }
        Metric::P50 | Metric::P99 => s.parse::<Duration>().ok().map(|d| d.std().as_secs_f64() * 1000.0),
        Metric::Throughput => number(s.strip_suffix("/s").unwrap_or(s)),
        Metric::Value => {
            let n: f64 = s.parse().ok()?;
            n.is_finite().then_some(n)
        }
    }
}

fn absolute_hint(metric: Metric) -> &'static str {
    match metric {
        Metric::ErrorRate => "write a percentage such as `<= 1%`, or `<= 2x baseline`",
        Metric::P50 | Metric::P99 => "write a duration such as `<= 300ms`, or `<= 2x baseline`",
        Metric::Throughput => "write requests per second such as `>= 20/s`, or `>= 50% baseline`",
        Metric::Value => "write a number such as `< 5`, or `>= 80% baseline`",
    }
}

/// `steady_state:` resolved: defaults applied, tolerances parsed (validation has checked every one).
#[derive(Debug, Clone, PartialEq)]
pub struct SteadyState {
    /// Measured right before the first action.
    pub baseline: std::time::Duration,
    /// Chaos Monkey's "during" after its kills.
    pub observe: std::time::Duration,
    /// Longest wait for the tolerances to hold again after the revert.
    pub recovery: std::time::Duration,
    /// Check period.
    pub check_every: std::time::Duration,
    /// Consecutive breaching checks that abort.
    pub abort_after: u32,
    /// The probes.
    pub probes: Vec<Probe>,
}

/// One resolved probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Its name.
    pub name: String,
    /// How it measures.
    pub kind: ProbeKind,
    /// Parsed tolerances, in report order.
    pub tolerances: Vec<(Metric, Tolerance)>,
}

/// How a probe measures.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    /// Closed-loop HTTP load.
    Http(HttpProbeConfig),
    /// PromQL instant queries.
    Prometheus(PrometheusProbeConfig),
}

impl ProbeKind {
    /// `http` or `prometheus`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Prometheus(_) => "prometheus",
        }
    }
}

/// Defaults of `steady_state:`.
pub mod defaults {
    use std::time::Duration;
    /// `baseline`.
    pub const BASELINE: Duration = Duration::from_secs(30);
    /// `observe`.
    pub const OBSERVE: Duration = Duration::from_secs(60);
    /// `recovery`.
    pub const RECOVERY: Duration = Duration::from_secs(60);
    /// `check_every`.
    pub const CHECK_EVERY: Duration = Duration::from_secs(5);
    /// `abort_after`.
    pub const ABORT_AFTER: u32 = 2;
    /// An HTTP probe's `max_rate`, per second.
    pub const MAX_RATE: f64 = 100.0;
    /// The highest `max_rate` allowed, per second: probes measure staging, they must not load-test it.
    pub const MAX_RATE_LIMIT: f64 = 1000.0;
    /// An HTTP probe's `timeout`.
    pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
    /// A Prometheus query's `timeout`.
    pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
}

impl SteadyState {
    /// Resolve a config that validation accepted; tolerances that do not parse are left out (validation has
    /// reported them, so a policy holding one never loads).
    pub fn resolve(cfg: &SteadyStateConfig) -> SteadyState {
        let probes = cfg
            .probes
            .iter()
            .filter_map(|p| {
                let kind = match (&p.http, &p.prometheus) {
                    (Some(h), None) => ProbeKind::Http(h.clone()),
                    (None, Some(q)) => ProbeKind::Prometheus(q.clone()),
                    _ => return None,
                };
                let tolerances = p
                    .tolerance
                    .written()
                    .into_iter()
                    .filter_map(|(m, t)| Tolerance::parse(m, t).ok().map(|t| (m, t)))
                    .collect();
                Some(Probe { name: p.name.clone(), kind, tolerances })
            })
            .collect();
        SteadyState {
            baseline: cfg.baseline.map_or(defaults::BASELINE, |d| d.std()),
            observe: cfg.observe.map_or(defaults::OBSERVE, |d| d.std()),
            recovery: cfg.recovery.map_or(defaults::RECOVERY, |d| d.std()),
            check_every: cfg.check_every.map_or(defaults::CHECK_EVERY, |d| d.std()),
            abort_after: cfg.abort_after.unwrap_or(defaults::ABORT_AFTER).max(1),
            probes,
        }
    }

    /// The experiment a monkey's round runs under its `steady_state:` choice; `None` = no probe watches it.
    pub fn for_monkey(&self, choice: Option<&ProbeChoice>) -> Option<SteadyState> {
        let probes: Vec<Probe> = match choice {
            None | Some(ProbeChoice::All(true)) => self.probes.clone(),
            Some(ProbeChoice::All(false)) => Vec::new(),
            Some(ProbeChoice::Named(names)) => {
                self.probes.iter().filter(|p| names.contains(&p.name)).cloned().collect()
            }
        };
        (!probes.is_empty()).then(|| SteadyState { probes, ..self.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_of_the_issue() {
        let t = Tolerance::parse(Metric::ErrorRate, "<= 1%").expect("ok");
        assert_eq!((t.cmp, t.bound), (Cmp::Le, Bound::Absolute(0.01)));
        let t = Tolerance::parse(Metric::P99, "<= 2x baseline").expect("ok");
        assert_eq!(t.bound, Bound::Baseline(2.0));
        let t = Tolerance::parse(Metric::Throughput, ">= 50% baseline").expect("ok");
        assert_eq!((t.cmp, t.bound), (Cmp::Ge, Bound::Baseline(0.5)));
        let t = Tolerance::parse(Metric::P50, "<= 300ms").expect("ok");
        assert_eq!(t.bound, Bound::Absolute(300.0));
        let t = Tolerance::parse(Metric::Value, "< -5").expect("ok");
        assert_eq!((t.cmp, t.bound), (Cmp::Lt, Bound::Absolute(-5.0)));
        assert!(Tolerance::parse(Metric::P99, "<= 300").is_err());
        assert!(Tolerance::parse(Metric::ErrorRate, "1%").is_err());
        assert!(Tolerance::parse(Metric::ErrorRate, "<= 101%").is_err());
        assert!(Tolerance::parse(Metric::Value, ">= lots baseline").is_err());
    }

    #[test]
    fn judges_against_the_baseline() {
        let t = Tolerance::parse(Metric::Throughput, ">= 50% baseline").expect("ok");
        assert!(t.holds(30.0, Some(55.0)));
        assert!(!t.holds(27.0, Some(55.0)));
        assert!(t.holds(1.0, None), "no baseline value: cannot judge");
        assert!(!t.holds(f64::NAN, Some(55.0)), "no samples never holds");
        assert_eq!("100/s".parse::<Rate>().map(Rate::per_second), Ok(100.0));
        assert_eq!("600/m".parse::<Rate>().map(Rate::per_second), Ok(10.0));
        assert!("100".parse::<Rate>().is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,30}") {
            for m in [Metric::ErrorRate, Metric::P50, Metric::P99, Metric::Throughput, Metric::Value] {
                let _ = Tolerance::parse(m, &s);
            }
        }

        #[test]
        fn relative_bound_scales(f in 0.01f64..10.0, base in 0.1f64..1000.0, v in 0.0f64..10000.0) {
            let t = Tolerance::parse(Metric::Value, &format!("<= {f}x baseline")).expect("parses");
            prop_assert_eq!(t.holds(v, Some(base)), v <= base * f);
            let t = Tolerance::parse(Metric::Value, &format!(">= {}% baseline", f * 100.0)).expect("parses");
            prop_assert_eq!(t.holds(v, Some(base)), v >= base * (f * 100.0) / 100.0);
        }
    }
}
