//! Prometheus metrics: what simian did and sees, served as OpenMetrics on `/metrics` and pushed to a Pushgateway.
//!
//! [`Metrics`] holds the registry and every metric in it. The daemon seeds the action counters from the store
//! at start-up ([`Metrics::seed_actions`]) so they survive restarts, then records every report
//! ([`Metrics::record_report`]) and Doctor's probes. [`Metrics::encode`] gives the OpenMetrics text served
//! with [`OPENMETRICS_CONTENT_TYPE`]; [`push`] PUTs the same metrics to a Pushgateway, converted by
//! [`openmetrics_to_text`] to the Prometheus text format 0.0.4, the one format the Pushgateway parses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use simian_monkeys::model::{MonkeyName, Report};

/// Content type of [`Metrics::encode`]'s output (what `/metrics` answers with).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of what [`push`] sends: the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket upper bounds (seconds) of `simian_doctor_probe_seconds`: 1 ms … 30 s.
pub const PROBE_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Bucket upper bounds (seconds) of `simian_run_duration_seconds`: 10 ms … 30 min.
pub const RUN_BUCKETS: [f64; 14] =
    [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];

/// How many characters of a Pushgateway's error response a [`PushError`] keeps.
const BODY_PREVIEW_CHARS: usize = 200;

/// One cumulative count from the store: how often `monkey` ended `action` with `outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTotal {
    /// Monkey name (`chaos`, `doctor`, …).
    pub monkey: String,
    /// Action name (`terminate`, `isolate`, …).
    pub action: String,
    /// Outcome name (`planned`, `done`, `failed`, `skipped`).
    pub outcome: String,
    /// How many, ever.
    pub count: u64,
}

/// Labels of `simian_actions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    monkey: String,
    action: String,
    outcome: String,
}

/// Labels of `simian_experiment_capacity_ratio`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProbeLabels {
    monkey: String,
    probe: String,
}

/// The `monkey` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MonkeyLabel {
    monkey: String,
}

impl MonkeyLabel {
    fn new(monkey: &str) -> MonkeyLabel {
        MonkeyLabel { monkey: monkey.to_string() }
    }
}

fn run_histogram() -> Histogram {
    Histogram::new(RUN_BUCKETS)
}

/// simian's metrics and the registry that encodes them; cheap to share (`Arc`) between tasks.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    actions: Family<ActionLabels, Counter>,
    unhealthy: Gauge,
    halted: Gauge,
    store_up: Gauge,
    active_faults: Family<MonkeyLabel, Gauge>,
    /// Monkeys `set_active_faults` ever named beyond [`MonkeyName::ALL`] (reset to 0 when no longer listed).
    extra_fault_monkeys: Mutex<BTreeSet<String>>,
    outbox_pending: Gauge,
    last_run: Gauge<f64, AtomicU64>,
    probe_seconds: Histogram,
    run_seconds: Family<MonkeyLabel, Histogram, fn() -> Histogram>,
    capacity: Family<ProbeLabels, Gauge<f64, AtomicU64>>,
    aborts: Family<MonkeyLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every simian metric, all at zero (`simian_active_faults` shows 0 for every monkey).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register("simian_actions", "Actions by monkey, action and outcome", actions.clone());
        let unhealthy = Gauge::default();
        registry.register(
            "simian_unhealthy_instances",
            "Instances Doctor Monkey currently finds unhealthy",
            unhealthy.clone(),
        );
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "simian_store_up",
            "1 while the daemon's last use of its store succeeded; 0 while the store is unreachable (nothing acts)",
            store_up.clone(),
        );
        let halted = Gauge::default();
        registry.register(
            "simian_halted",
            "1 while a halt (`simian halt`) stands in the store, else 0",
            halted.clone(),
        );
        let active_faults = Family::<MonkeyLabel, Gauge>::default();
        registry.register(
            "simian_active_faults",
            "Reversible faults (isolations, latency) currently in place, by monkey",
            active_faults.clone(),
        );
        for monkey in MonkeyName::ALL {
            active_faults.get_or_create(&MonkeyLabel::new(monkey.as_str())).set(0);
        }
        let outbox_pending = Gauge::default();
        registry.register(
            "simian_outbox_pending",
            "Outbox deliveries not yet delivered to their sinks",
            outbox_pending.clone(),
        );
        let last_run = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "simian_last_run_timestamp",
            "Unix time the last run finished",
            Unit::Seconds,
            last_run.clone(),
        );
        let probe_seconds = Histogram::new(PROBE_BUCKETS);
        registry.register_with_unit(
            "simian_doctor_probe",
            "Duration of Doctor Monkey's health probes",
            Unit::Seconds,
            probe_seconds.clone(),
        );
        let run_seconds =
            Family::<MonkeyLabel, Histogram, fn() -> Histogram>::new_with_constructor(run_histogram);
        registry.register_with_unit(
            "simian_run_duration",
            "Duration of runs, by monkey (all when a run had several or none)",
            Unit::Seconds,
            run_seconds.clone(),
        );
        let capacity = Family::<ProbeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "simian_experiment_capacity_ratio",
            "Throughput during the last fault over throughput at baseline, by monkey and HTTP probe",
            capacity.clone(),
        );
        let aborts = Family::<MonkeyLabel, Counter>::default();
        registry.register(
            "simian_experiment_aborts",
            "Rounds aborted and reverted because the steady state broke, by monkey",
            aborts.clone(),
        );
        Metrics {
            registry,
            capacity,
            aborts,
            actions,
            unhealthy,
            halted,
            store_up,
            active_faults,
            extra_fault_monkeys: Mutex::new(BTreeSet::new()),
            outbox_pending,
            last_run,
            probe_seconds,
            run_seconds,
        }
    }

    /// Raises each action counter to its cumulative total from the store, so counters survive restarts and
    /// pushes stay monotonic. Meant for a fresh `Metrics`; a counter already above its total is left alone.
    pub fn seed_actions(&self, totals: &[ActionTotal]) {
        for t in totals {
            let labels = ActionLabels {
                monkey: t.monkey.clone(),
                action: t.action.clone(),
                outcome: t.outcome.clone(),
            };
            let counter = self.actions.get_or_create(&labels);
            let missing = t.count.saturating_sub(counter.get());
            counter.inc_by(missing);
        }
        // Every abort is also an `abort` finding: the store's totals seed the abort counter too.
        let mut aborts: BTreeMap<&str, u64> = BTreeMap::new();
        for t in totals.iter().filter(|t| t.action == "abort") {
            *aborts.entry(t.monkey.as_str()).or_default() += t.count;
        }
        for (monkey, count) in aborts {
            let counter = self.aborts.get_or_create(&MonkeyLabel::new(monkey));
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// Like [`Metrics::record_report`] for a round of one known monkey (the daemon's rounds), so a round
    /// without findings is still timed under its monkey.
    pub fn record_round(&self, report: &Report, monkey: simian_monkeys::MonkeyName) {
        self.record(report, monkey.as_str());
    }

    /// Counts the report's findings, observes its duration and sets the last-run time to its end.
    pub fn record_report(&self, report: &Report) {
        self.record(report, run_monkey(report));
    }

    fn record(&self, report: &Report, monkey: &str) {
        for f in &report.findings {
            let labels = ActionLabels {
                monkey: f.monkey.as_str().to_string(),
                action: f.action.as_str().to_string(),
                outcome: f.outcome.as_str().to_string(),
            };
            self.actions.get_or_create(&labels).inc();
            if f.action == simian_monkeys::Action::Abort {
                self.aborts.get_or_create(&MonkeyLabel::new(f.monkey.as_str())).inc();
            }
        }
        for e in &report.experiments {
            for p in &e.probes {
                if let Some(c) = p.capacity {
                    let labels = ProbeLabels { monkey: e.monkey.as_str().to_string(), probe: p.name.clone() };
                    self.capacity.get_or_create(&labels).set(c);
                }
            }
        }
        let seconds = (report.finished_at - report.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.run_seconds.get_or_create(&MonkeyLabel::new(monkey)).observe(seconds);
        self.last_run.set(report.finished_at.timestamp_millis() as f64 / 1000.0);
    }

    /// Observes one Doctor probe's duration.
    pub fn observe_probe(&self, seconds: f64) {
        self.probe_seconds.observe(seconds);
    }

    /// Sets whether the store answers.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Sets whether a halt stands.
    pub fn set_halted(&self, halted: bool) {
        self.halted.set(i64::from(halted));
    }

    /// Sets how many instances Doctor currently finds unhealthy.
    pub fn set_unhealthy(&self, n: i64) {
        self.unhealthy.set(n);
    }

    /// Sets the active faults per monkey; every monkey not listed goes to 0.
    pub fn set_active_faults(&self, by_monkey: &[(String, i64)]) {
        let mut extra = self.extra_fault_monkeys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (monkey, _) in by_monkey {
            if !MonkeyName::ALL.iter().any(|m| m.as_str() == monkey) {
                extra.insert(monkey.clone());
            }
        }
        let known = MonkeyName::ALL.iter().map(|m| m.as_str());
        for monkey in known.chain(extra.iter().map(String::as_str)) {
            let n = by_monkey.iter().filter(|(m, _)| m == monkey).map(|(_, n)| *n).sum();
            self.active_faults.get_or_create(&MonkeyLabel::new(monkey)).set(n);
        }
    }

    /// Sets how many outbox deliveries are still undelivered.
    pub fn set_outbox_pending(&self, n: i64) {
        self.outbox_pending.set(n);
    }

    /// Every metric as OpenMetrics text (ending in `# EOF`), served with [`OPENMETRICS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; an error would come from an encoder and leave partial output.
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}

/// The `monkey` label of a report's run duration: its findings' one monkey, else `all`.
fn run_monkey(report: &Report) -> &'static str {
    let mut monkeys = report.findings.iter().map(|f| f.monkey);
    match monkeys.next() {
        Some(first) if monkeys.all(|m| m == first) => first.as_str(),
        _ => "all",
    }
}

/// Why a push to the Pushgateway failed. Never holds the URL's credentials.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The gateway address is not a URL.
    #[error("invalid pushgateway url {gateway:?}")]
    InvalidUrl {
        /// The address, without userinfo.
        gateway: String,
    },
    /// The request could not be made or answered (connection refused, timeout, …).
    #[error("cannot push metrics to {gateway}")]
    Send {
        /// The push URL, without userinfo.
        gateway: String,
        /// What went wrong (without its URL).
        #[source]
        source: reqwest::Error,
    },
    /// The Pushgateway answered with a non-2xx status.
    #[error("pushgateway {gateway} answered {status}: {body}")]
    Status {
        /// The push URL, without userinfo.
        gateway: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The first 200 characters of the response body.
        body: String,
    },
}

/// Replaces the group `job`/`instance` on the Pushgateway at `gateway` (e.g. `http://127.0.0.1:9091`, may
/// hold basic-auth userinfo) with `metrics`: a PUT to `<gateway>/metrics/job/<job>/instance/<instance>`,
/// label values with `/` (or anything but `[A-Za-z0-9._~-]`) base64url-encoded as the Pushgateway's API
/// requires; the body is [`Metrics::encode`] converted by [`openmetrics_to_text`]. The client's timeouts apply.
pub async fn push(
    client: &reqwest::Client,
    gateway: &str,
    job: &str,
    instance: &str,
    metrics: &Metrics,
) -> Result<(), PushError> {
    let raw = format!(
        "{}/metrics/{}/{}",
        gateway.trim_end_matches('/'),
        grouping_segment("job", job),
        grouping_segment("instance", instance)
    );
    let url = reqwest::Url::parse(&raw).map_err(|_| PushError::InvalidUrl { gateway: redact(gateway) })?;
    let shown = redact(url.as_str());
    let body = openmetrics_to_text(&metrics.encode());
    let response = client
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, TEXT_CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .map_err(|e| PushError::Send { gateway: shown.clone(), source: e.without_url() })?;
    let status = response.status();
    if status.is_success() {
        tracing::debug!(gateway = %shown, "pushed metrics");
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let body: String = text.trim().chars().take(BODY_PREVIEW_CHARS).collect();
    Err(PushError::Status { gateway: shown, status, body })
}

/// One `<label>/<value>` pair of a Pushgateway grouping key: plain when the value is non-empty and URL-safe,
/// else `<label>@base64/<base64url of value>` (an empty value is `=`, as the API requires).
fn grouping_segment(label: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if plain {
        format!("{label}/{value}")
    } else if value.is_empty() {
        format!("{label}@base64/=")
    } else {
        format!("{label}@base64/{}", base64url(value.as_bytes()))
    }
}

/// RFC 4648 §5 base64url, with padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `url` without its userinfo (`user:password@`), for messages and logs.
fn redact(url: &str) -> String {
    // Only scheme, host and port: a gateway behind a proxy may carry a token in its userinfo, path or query.
    if let Ok(parsed) = reqwest::Url::parse(url) {
        if let Some(host) = parsed.host_str() {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            return format!("{}://{host}{port}", parsed.scheme());
        }
    }
    // Not a URL (or one without a host): keep what would be the host, without userinfo or path.
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}{host}")
}

/// Converts OpenMetrics text, as [`Metrics::encode`] writes it, to the Prometheus text format 0.0.4.
///
/// The Pushgateway (1.5.1, Debian bookworm) parses every push as 0.0.4: it answers 200 to OpenMetrics, but
/// a counter's `_total` samples under `# TYPE x counter` become an untyped `x_total` without help. So:
/// counter families `x` become `x_total` in `# HELP`/`# TYPE`; `info` families `x` become gauges `x_info`;
/// `unknown` becomes `untyped`; `# UNIT` and `# EOF` lines go; `\"` in help text becomes `"` (0.0.4 escapes
/// only `\\` and `\n` there). A family whose samples already carry its own name is left as it is, so text
/// already in the 0.0.4 format passes unchanged. Samples are kept as they are (prometheus-client writes no
/// timestamps, and simian's metrics have no exemplars).
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    // Sample names, to tell an OpenMetrics counter `x` (samples `x_total`) from a 0.0.4 one (samples `x`).
    let samples: BTreeSet<&str> = openmetrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut renamed: BTreeMap<&str, &str> = BTreeMap::new();
    for line in openmetrics.lines() {
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let suffix = match kind.trim() {
                "counter" => "_total",
                "info" => "_info",
                _ => continue,
            };
            if !samples.contains(name) {
                renamed.insert(name, suffix);
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = renamed.get(name).copied().unwrap_or("");
            out.push_str(&format!("# HELP {name}{suffix} {}\n", help.replace("\\\"", "\"")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = renamed.get(name).copied().unwrap_or("");
            let kind = match kind.trim() {
                "info" => "gauge",
                "unknown" => "untyped",
                other => other,
            };
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::DateTime;
    use simian_monkeys::model::{Action, Finding, Outcome, Severity};

    use super::*;

    fn finding(monkey: MonkeyName, action: Action, outcome: Outcome) -> Finding {
        Finding {
            monkey,
            action,
            outcome,
            target: Some("web".into()),
            instance: Some("i-1".into()),
            group: Some("g".into()),
            zone: None,
            severity: Severity::Info,
            message: "m".into(),
            details: BTreeMap::new(),
        }
    }

    #[test]
    fn experiments_set_capacity_and_count_aborts() {
        use simian_monkeys::experiment::{Experiment, ProbeResult, Verdict};
        let m = Metrics::new();
        let mut r = report(vec![finding(MonkeyName::Gorilla, Action::Abort, Outcome::Done)]);
        r.experiments = vec![Experiment {
            monkey: MonkeyName::Gorilla,
            verdict: Verdict::Aborted,
            recovered_after_s: Some(2.0),
            probes: vec![ProbeResult {
                name: "checkout".into(),
                kind: "http".into(),
                baseline: None,
                during: None,
                recovery: None,
                capacity: Some(0.54),
                breaches: Vec::new(),
            }],
        }];
        m.record_report(&r);
        let text = m.encode();
        assert!(
            text.contains("simian_experiment_capacity_ratio{monkey=\"gorilla\",probe=\"checkout\"} 0.54"),
            "{text}"
        );
        assert!(text.contains("simian_experiment_aborts_total{monkey=\"gorilla\"} 1"), "{text}");
        // Restarted: the store's totals seed the abort counter.
        let fresh = Metrics::new();
        fresh.seed_actions(&[ActionTotal {
            monkey: "chaos".into(),
            action: "abort".into(),
            outcome: "done".into(),
            count: 3,
        }]);
        assert!(fresh.encode().contains("simian_experiment_aborts_total{monkey=\"chaos\"} 3"));
    }

    fn report(findings: Vec<Finding>) -> Report {
        Report {
            run_id: "r1".into(),
            mode: simian_monkeys::Mode::Live,
            seed: 7,
            started_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:00+02:00").unwrap(),
            finished_at: DateTime::parse_from_rfc3339("2024-05-01T10:00:02.5+02:00").unwrap(),
            api_calls: 0,
            summary: BTreeMap::new(),
            findings,
            experiment: None,
            experiments: Vec::new(),
        }
    }

    /// The value of the sample line that starts with `prefix` (name and labels, up to the value).
    fn sample(text: &str, prefix: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' ').map(str::to_string))
    }

    #[test]
    fn encode_has_every_family_with_help_and_type() {
        let m = Metrics::new();
        // prometheus-client leaves out families without samples: the label families appear once used.
        let fresh = m.encode();
        assert!(!fresh.contains("simian_actions") && !fresh.contains("simian_run_duration"), "{fresh}");
        m.record_report(&report(vec![finding(MonkeyName::Gorilla, Action::Isolate, Outcome::Failed)]));
        let text = m.encode();
        for (name, kind) in [
            ("simian_actions", "counter"),
            ("simian_unhealthy_instances", "gauge"),
            ("simian_halted", "gauge"),
            ("simian_store_up", "gauge"),
            ("simian_active_faults", "gauge"),
            ("simian_outbox_pending", "gauge"),
            ("simian_last_run_timestamp_seconds", "gauge"),
            ("simian_doctor_probe_seconds", "histogram"),
            ("simian_run_duration_seconds", "histogram"),
        ] {
            assert!(text.contains(&format!("\n# TYPE {name} {kind}\n")), "{name} {kind} in:\n{text}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} help in:\n{text}");
        }
        assert!(text.contains("# UNIT simian_doctor_probe_seconds seconds\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        for m in ["chaos", "gorilla", "latency", "doctor", "ten_eighteen"] {
            assert_eq!(sample(&text, &format!("simian_active_faults{{monkey=\"{m}\"}}")), Some("0".into()));
        }
    }

    #[test]
    fn record_report_counts_findings_and_observes_the_run() {
        let m = Metrics::new();
        m.record_report(&report(vec![
            finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done),
            finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done),
            finding(MonkeyName::Chaos, Action::Terminate, Outcome::Skipped),
        ]));
        let text = m.encode();
        let done = "simian_actions_total{monkey=\"chaos\",action=\"terminate\",outcome=\"done\"}";
        let skipped = "simian_actions_total{monkey=\"chaos\",action=\"terminate\",outcome=\"skipped\"}";
        assert_eq!(sample(&text, done), Some("2".into()), "{text}");
        assert_eq!(sample(&text, skipped), Some("1".into()), "{text}");
        assert_eq!(sample(&text, "simian_run_duration_seconds_count{monkey=\"chaos\"}"), Some("1".into()));
        assert_eq!(sample(&text, "simian_run_duration_seconds_sum{monkey=\"chaos\"}"), Some("2.5".into()));
        assert_eq!(
            sample(&text, "simian_run_duration_seconds_bucket{le=\"1.0\",monkey=\"chaos\"}"),
            Some("0".into()),
            "{text}"
        );
        assert_eq!(
            sample(&text, "simian_run_duration_seconds_bucket{le=\"5.0\",monkey=\"chaos\"}"),
            Some("1".into()),
            "{text}"
        );
        // 2024-05-01T08:00:02.5Z
        assert_eq!(sample(&text, "simian_last_run_timestamp_seconds"), Some("1714550402.5".into()), "{text}");
    }

    #[test]
    fn a_run_of_several_monkeys_or_none_is_all() {
        let m = Metrics::new();
        m.record_report(&report(vec![
            finding(MonkeyName::Doctor, Action::Unhealthy, Outcome::Done),
            finding(MonkeyName::TenEighteen, Action::ClockSkew, Outcome::Done),
        ]));
        m.record_report(&report(Vec::new()));
        let text = m.encode();
        assert_eq!(sample(&text, "simian_run_duration_seconds_count{monkey=\"all\"}"), Some("2".into()));
        assert!(!text.contains("simian_run_duration_seconds_count{monkey=\"doctor\"}"), "{text}");
        let doctor = "simian_actions_total{monkey=\"doctor\",action=\"unhealthy\",outcome=\"done\"}";
        let skew = "simian_actions_total{monkey=\"ten_eighteen\",action=\"clock_skew\",outcome=\"done\"}";
        assert_eq!(sample(&text, doctor), Some("1".into()));
        assert_eq!(sample(&text, skew), Some("1".into()));
    }

    #[test]
    fn a_daemon_round_without_findings_is_timed_under_its_monkey() {
        let m = Metrics::new();
        m.record_round(&report(Vec::new()), MonkeyName::Doctor);
        let text = m.encode();
        assert_eq!(sample(&text, "simian_run_duration_seconds_count{monkey=\"doctor\"}"), Some("1".into()));
        assert!(!text.contains("monkey=\"all\""), "{text}");
    }

    #[test]
    fn a_report_that_ends_before_it_starts_takes_zero_seconds() {
        let m = Metrics::new();
        let mut r = report(vec![finding(MonkeyName::Latency, Action::InjectLatency, Outcome::Planned)]);
        std::mem::swap(&mut r.started_at, &mut r.finished_at);
        m.record_report(&r);
        let text = m.encode();
        assert_eq!(sample(&text, "simian_run_duration_seconds_sum{monkey=\"latency\"}"), Some("0.0".into()));
    }

    #[test]
    fn seeded_totals_and_recorded_reports_add_up() {
        let m = Metrics::new();
        let total = |monkey: &str, action: &str, outcome: &str, count| ActionTotal {
            monkey: monkey.into(),
            action: action.into(),
            outcome: outcome.into(),
            count,
        };
        m.seed_actions(&[total("chaos", "terminate", "done", 40), total("gorilla", "isolate", "failed", 3)]);
        m.record_report(&report(vec![
            finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done),
            finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done),
        ]));
        let text = m.encode();
        let done = "simian_actions_total{monkey=\"chaos\",action=\"terminate\",outcome=\"done\"}";
        let failed = "simian_actions_total{monkey=\"gorilla\",action=\"isolate\",outcome=\"failed\"}";
        assert_eq!(sample(&text, done), Some("42".into()), "{text}");
        assert_eq!(sample(&text, failed), Some("3".into()), "{text}");
        // Seeding again (or with a lower total) never lowers a counter.
        m.seed_actions(&[total("chaos", "terminate", "done", 40)]);
        assert_eq!(sample(&m.encode(), done), Some("42".into()));
    }

    #[test]
    fn gauges_and_probes() {
        let m = Metrics::new();
        m.set_unhealthy(4);
        m.set_outbox_pending(9);
        m.observe_probe(0.003);
        m.observe_probe(12.0);
        m.set_active_faults(&[("gorilla".into(), 2), ("latency".into(), 1), ("future".into(), 5)]);
        let text = m.encode();
        assert_eq!(sample(&text, "simian_unhealthy_instances"), Some("4".into()));
        assert_eq!(sample(&text, "simian_outbox_pending"), Some("9".into()));
        assert_eq!(sample(&text, "simian_doctor_probe_seconds_count"), Some("2".into()));
        assert_eq!(sample(&text, "simian_doctor_probe_seconds_bucket{le=\"0.005\"}"), Some("1".into()));
        assert_eq!(sample(&text, "simian_doctor_probe_seconds_bucket{le=\"30.0\"}"), Some("2".into()));
        let faults =
            |t: &str, monkey: &str| sample(t, &format!("simian_active_faults{{monkey=\"{monkey}\"}}"));
        assert_eq!(faults(&text, "gorilla"), Some("2".into()));
        assert_eq!(faults(&text, "latency"), Some("1".into()));
        assert_eq!(faults(&text, "future"), Some("5".into()));
        assert_eq!(faults(&text, "chaos"), Some("0".into()));
        // Monkeys no longer listed go back to 0, including ones outside the known set.
        m.set_active_faults(&[("latency".into(), 3)]);
        let text = m.encode();
        assert_eq!(faults(&text, "gorilla"), Some("0".into()));
        assert_eq!(faults(&text, "latency"), Some("3".into()));
        assert_eq!(faults(&text, "future"), Some("0".into()));
    }

    #[test]
    fn conversion_renames_counters_and_drops_openmetrics_only_lines() {
        let om = "# HELP simian_actions Actions by monkey.\n\
                  # TYPE simian_actions counter\n\
                  simian_actions_total{monkey=\"chaos\",action=\"terminate\",outcome=\"done\"} 3\n\
                  # HELP simian_doctor_probe_seconds Probe \\\"time\\\" \\\\ took.\n\
                  # TYPE simian_doctor_probe_seconds histogram\n\
                  # UNIT simian_doctor_probe_seconds seconds\n\
                  simian_doctor_probe_seconds_sum 0.5\n\
                  simian_doctor_probe_seconds_count 1\n\
                  simian_doctor_probe_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP build Build.\n\
                  # TYPE build info\n\
                  build_info{version=\"1\"} 1\n\
                  # HELP odd Odd.\n\
                  # TYPE odd unknown\n\
                  odd 1\n\
                  # EOF\n";
        let expected = "# HELP simian_actions_total Actions by monkey.\n\
                        # TYPE simian_actions_total counter\n\
                        simian_actions_total{monkey=\"chaos\",action=\"terminate\",outcome=\"done\"} 3\n\
                        # HELP simian_doctor_probe_seconds Probe \"time\" \\\\ took.\n\
                        # TYPE simian_doctor_probe_seconds histogram\n\
                        simian_doctor_probe_seconds_sum 0.5\n\
                        simian_doctor_probe_seconds_count 1\n\
                        simian_doctor_probe_seconds_bucket{le=\"+Inf\"} 1\n\
                        # HELP build_info Build.\n\
                        # TYPE build_info gauge\n\
                        build_info{version=\"1\"} 1\n\
                        # HELP odd Odd.\n\
                        # TYPE odd untyped\n\
                        odd 1\n";
        assert_eq!(openmetrics_to_text(om), expected);
    }

    #[test]
    fn conversion_of_encoded_metrics_has_a_type_for_every_sample() {
        let m = Metrics::new();
        m.record_report(&report(vec![finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done)]));
        m.observe_probe(0.2);
        let text = openmetrics_to_text(&m.encode());
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# TYPE simian_actions_total counter\n"), "{text}");
        assert!(text.contains("# HELP simian_actions_total "), "{text}");
        assert!(!text.contains("# TYPE simian_actions counter"), "{text}");
        // Every sample's name is its family's, or the family's plus a histogram suffix.
        let mut family = ("", "");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split_once(' ').unwrap();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let ok = match family.1 {
                    "histogram" => {
                        ["_sum", "_count", "_bucket"].iter().any(|s| name == format!("{}{s}", family.0))
                    }
                    _ => name == family.0,
                };
                assert!(ok, "sample {name} under {family:?} in:\n{text}");
            }
        }
    }

    #[test]
    fn conversion_leaves_text_format_alone() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# TYPE g gauge\ng{x=\"y\"} -2\n";
        assert_eq!(openmetrics_to_text(text), text);
        assert_eq!(openmetrics_to_text(""), "");
        // So converting twice is converting once.
        let m = Metrics::new();
        m.record_report(&report(vec![finding(MonkeyName::Chaos, Action::Terminate, Outcome::Done)]));
        let once = openmetrics_to_text(&m.encode());
        assert_eq!(openmetrics_to_text(&once), once);
    }

    #[test]
    fn grouping_segments_base64_what_is_not_url_safe() {
        assert_eq!(grouping_segment("job", "simian"), "job/simian");
        assert_eq!(grouping_segment("instance", "web-1.prod_a~"), "instance/web-1.prod_a~");
        assert_eq!(grouping_segment("instance", "prod/web"), "instance@base64/cHJvZC93ZWI=");
        assert_eq!(grouping_segment("instance", "a b"), "instance@base64/YSBi");
        assert_eq!(grouping_segment("instance", ""), "instance@base64/=");
    }

    #[test]
    fn base64url_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected);
        }
        // The URL-safe alphabet: `-` and `_` instead of `+` and `/`.
        assert_eq!(base64url(&[0xfb, 0xff, 0xbf]), "-_-_");
    }

    #[test]
    fn redact_drops_userinfo() {
        assert_eq!(redact("http://u:secret@gw:9091/metrics/job/x"), "http://gw:9091");
        assert_eq!(redact("http://gw:9091"), "http://gw:9091");
        // A token in the path or the query never reaches a log line.
        assert_eq!(
            redact("https://gw.example/T0KEN-4711/metrics/job/simian?key=s3cr3t"),
            "https://gw.example"
        );
        assert_eq!(redact("not a url u:secret@host/x"), "host");
        assert_eq!(redact("http://u:p@[bad/x"), "http://[bad");
        assert_eq!(redact("plain"), "plain");
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }
}
