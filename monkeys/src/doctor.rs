//! Doctor Monkey's pure parts: reading /proc facts, judging them and HTTP probes, health state across runs, and the sweep summary.
//!
//! Nothing here does I/O: the caller runs [`proc_script`] (or the single commands) through the instance's executor,
//! probes the health URL, loads the previous [`HealthState`] from the store, and hands the results to these
//! functions. Every parser returns a clear `Err` on input it cannot read and never panics.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Severity;

/// The three load averages of `/proc/loadavg`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAvg {
    /// Average over one minute.
    pub one: f64,
    /// Average over five minutes.
    pub five: f64,
    /// Average over fifteen minutes.
    pub fifteen: f64,
}

/// Memory figures of `/proc/meminfo`, in kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_kb: u64,
    /// `MemAvailable`, or `MemFree + Buffers + Cached` on kernels older than 3.14.
    pub available_kb: u64,
}

fn parse_load_field(name: &str, field: Option<&str>) -> Result<f64, String> {
    let raw = field.ok_or_else(|| format!("/proc/loadavg: missing the {name} load average"))?;
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("/proc/loadavg: {name} load average {raw:?} is not a non-negative number")),
    }
}

/// Read `/proc/loadavg` (`0.52 0.58 0.59 1/467 12345`): the first non-empty line's first three fields.
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, String> {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| "/proc/loadavg: empty output".to_string())?;
    let mut fields = line.split_whitespace();
    Ok(LoadAvg {
        one: parse_load_field("1-minute", fields.next())?,
        five: parse_load_field("5-minute", fields.next())?,
        fifteen: parse_load_field("15-minute", fields.next())?,
    })
}

/// Number of CPUs from either the output of `nproc` (a single number) or `/proc/cpuinfo` (counts its
/// `processor : N` lines). Zero CPUs is an error, so the result can always divide.
pub fn parse_cpu_count(cpuinfo_or_nproc: &str) -> Result<u32, String> {
    let processors = cpuinfo_or_nproc
        .lines()
        .filter(|l| {
            l.split_once(':').is_some_and(|(k, v)| k.trim() == "processor" && v.trim().parse::<u32>().is_ok())
        })
        .count();
    if processors > 0 {
        return u32::try_from(processors).map_err(|_| "/proc/cpuinfo: too many processors".to_string());
    }
    let lines: Vec<&str> = cpuinfo_or_nproc.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [] => Err("cpu count: empty output (neither nproc nor /proc/cpuinfo)".to_string()),
        [one] => match one.parse::<u32>() {
            Ok(0) => Err("cpu count: nproc reported 0 cpus".to_string()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("cpu count: {one:?} is neither nproc output nor /proc/cpuinfo")),
        },
        _ => Err("cpu count: no `processor` lines in /proc/cpuinfo".to_string()),
    }
}

/// Read `/proc/meminfo`: `MemTotal` and `MemAvailable` (falling back to `MemFree + Buffers + Cached` when
/// `MemAvailable` is absent, as on kernels before 3.14; missing `Buffers`/`Cached` count as 0).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    let mut total = None;
    let mut available = None;
    let mut free = None;
    let mut buffers = None;
    let mut cached = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            "Buffers" => &mut buffers,
            "Cached" => &mut cached,
            _ => continue,
        };
        let raw = rest.split_whitespace().next().unwrap_or("");
        let value = raw
            .parse::<u64>()
            .map_err(|_| format!("/proc/meminfo: {} value {raw:?} is not a number", key.trim()))?;
        *slot = Some(value);
    }
    let total_kb = total.ok_or_else(|| "/proc/meminfo: no MemTotal line".to_string())?;
    let available_kb = match (available, free) {
        (Some(a), _) => a,
        (None, Some(f)) => f.saturating_add(buffers.unwrap_or(0)).saturating_add(cached.unwrap_or(0)),
        (None, None) => return Err("/proc/meminfo: neither MemAvailable nor MemFree".to_string()),
    };
    Ok(MemInfo { total_kb, available_kb })
}

/// One data line of `df -P`, read from the right (filesystem names may contain spaces; the root mount does not).
fn df_line(line: &str) -> Option<(u64, u64, &str, &str)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let n = fields.len();
    if n < 6 {
        return None;
    }
    let mount = fields[n - 1];
    let capacity = fields[n - 2];
    let available = fields[n - 3].parse::<u64>().ok()?;
    let used = fields[n - 4].parse::<u64>().ok()?;
    fields[n - 5].parse::<u64>().ok()?;
    Some((used, available, capacity, mount))
}

/// Percent of `/` in use from the output of `df -P /`: `used / (used + available) * 100`, which is what
/// df's `Capacity` column rounds up; that column is used when both are 0. Prefers the line mounted on `/`;
/// otherwise the only data line.
pub fn parse_df_root(text: &str) -> Result<f64, String> {
    let data: Vec<(u64, u64, &str, &str)> = text.lines().filter_map(df_line).collect();
    let line = data
        .iter()
        .find(|(_, _, _, mount)| *mount == "/")
        .or(match data.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| {
            if data.is_empty() {
                "df -P /: no data line (expected `fs blocks used available capacity% mount`)".to_string()
            } else {
                "df -P /: several filesystems and none mounted on /".to_string()
            }
        })?;
    let (used, available, capacity, _) = *line;
    let sum = used as f64 + available as f64;
    if sum > 0.0 {
        return Ok(used as f64 * 100.0 / sum);
    }
    capacity
        .strip_suffix('%')
        .and_then(|p| p.parse::<f64>().ok())
        .filter(|p| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| format!("df -P /: no usable size and capacity {capacity:?} is not a percentage"))
}

/// Marker lines of [`proc_script`]'s output, one before each section.
const SECTIONS: [(&str, ProcSection); 4] = [
    ("--- simian loadavg", ProcSection::Load),
    ("--- simian cpus", ProcSection::Cpus),
    ("--- simian meminfo", ProcSection::Mem),
    ("--- simian df", ProcSection::Disk),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcSection {
    Load,
    Cpus,
    Mem,
    Disk,
}

/// One POSIX `sh` script (run as `["sh", "-c", proc_script()]`) printing every /proc fact Doctor Monkey needs,
/// each section after a `--- simian …` marker line; read its output with [`parse_proc_output`].
pub fn proc_script() -> &'static str {
    "echo '--- simian loadavg'; cat /proc/loadavg 2>/dev/null; \
     echo '--- simian cpus'; nproc 2>/dev/null || cat /proc/cpuinfo 2>/dev/null; \
     echo '--- simian meminfo'; cat /proc/meminfo 2>/dev/null; \
     echo '--- simian df'; df -P / 2>/dev/null; true"
}

/// What one instance's /proc looks like; a `None` fact could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcFacts {
    /// Load averages.
    pub load: Option<LoadAvg>,
    /// Number of CPUs (never 0).
    pub cpus: Option<u32>,
    /// Memory.
    pub mem: Option<MemInfo>,
    /// Percent of `/` in use.
    pub disk_used_pct: Option<f64>,
}

/// Read the output of [`proc_script`]: the facts, plus one error per section that could not be read
/// (a missing section is such an error).
pub fn parse_proc_output(stdout: &str) -> (ProcFacts, Vec<String>) {
    let mut bodies: [Option<String>; 4] = Default::default();
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(i) = SECTIONS.iter().position(|(marker, _)| line.trim() == *marker) {
            current = Some(i);
            bodies[i].get_or_insert_with(String::new);
            continue;
        }
        if let Some(body) = current.and_then(|i| bodies[i].as_mut()) {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut facts = ProcFacts::default();
    let mut errors = Vec::new();
    for ((marker, section), body) in SECTIONS.iter().zip(bodies.iter()) {
        let Some(body) = body else {
            errors.push(format!("no `{marker}` section in the output"));
            continue;
        };
        let result = match section {
            ProcSection::Load => parse_loadavg(body).map(|v| facts.load = Some(v)),
            ProcSection::Cpus => parse_cpu_count(body).map(|v| facts.cpus = Some(v)),
            ProcSection::Mem => parse_meminfo(body).map(|v| facts.mem = Some(v)),
            ProcSection::Disk => parse_df_root(body).map(|v| facts.disk_used_pct = Some(v)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    (facts, errors)
}

/// Limits on /proc facts; `None` = not checked.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcThresholds {
    /// Highest 5-minute load average per CPU.
    pub max_load_per_cpu: Option<f64>,
    /// Lowest available memory, percent of the total.
    pub min_mem_available_pct: Option<f64>,
    /// Highest use of `/`, percent.
    pub max_disk_used_pct: Option<f64>,
}

/// Judge /proc facts against the thresholds: one reason per broken limit, empty = healthy.
///
/// The load used is the 5-minute average (a sweep every five minutes then sees the whole interval, not a
/// one-minute spike). A threshold whose fact is unknown is a reason too: a limit that cannot be checked is
/// not passed.
pub fn evaluate_proc(facts: &ProcFacts, limits: &ProcThresholds) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(max) = limits.max_load_per_cpu {
        match (facts.load, facts.cpus) {
            (Some(load), Some(cpus)) if cpus > 0 => {
                let per_cpu = load.five / f64::from(cpus);
                if per_cpu > max {
                    reasons.push(format!(
                        "load {per_cpu:.2} per cpu exceeds {max:.2} (5-minute load {:.2} on {cpus} cpus)",
                        load.five
                    ));
                }
            }
            _ => reasons.push("load per cpu unknown (load average or cpu count unreadable)".to_string()),
        }
    }
    if let Some(min) = limits.min_mem_available_pct {
        match facts.mem {
            Some(mem) if mem.total_kb > 0 => {
                let pct = mem.available_kb as f64 * 100.0 / mem.total_kb as f64;
                if pct < min {
                    reasons.push(format!(
                        "memory available {pct:.1}% is below {min:.1}% ({} of {} kB)",
                        mem.available_kb, mem.total_kb
                    ));
                }
            }
            Some(_) => reasons.push("memory available unknown (MemTotal is 0)".to_string()),
            None => reasons.push("memory available unknown (/proc/meminfo unreadable)".to_string()),
        }
    }
    if let Some(max) = limits.max_disk_used_pct {
        match facts.disk_used_pct {
            Some(used) => {
                if used > max {
                    reasons.push(format!("disk / {used:.1}% used exceeds {max:.1}%"));
                }
            }
            None => reasons.push("disk use of / unknown (df unreadable)".to_string()),
        }
    }
    reasons
}

/// What a healthy HTTP answer looks like.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpExpect {
    /// Accepted statuses; empty = any 2xx (200–299).
    pub statuses: Vec<u16>,
    /// Text the body must contain, if any.
    pub body: Option<String>,
}

/// Judge one HTTP probe: `error` (connect failure, timeout, …) wins over everything; then the status must be
/// expected and the body contain the expected text. `Err` carries the reason in a sentence.
pub fn evaluate_http(
    status: Option<u16>,
    body: &str,
    error: Option<&str>,
    expect: &HttpExpect,
) -> Result<(), String> {
    if let Some(e) = error {
        return Err(format!("probe failed: {e}"));
    }
    let Some(status) = status else {
        return Err("probe failed: no response".to_string());
    };
    let ok = if expect.statuses.is_empty() {
        (200..=299).contains(&status)
    } else {
        expect.statuses.contains(&status)
    };
    if !ok {
        let wanted = if expect.statuses.is_empty() {
            "200-299".to_string()
        } else {
            expect.statuses.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
        };
        return Err(format!("status {status}, expected {wanted}"));
    }
    if let Some(want) = &expect.body {
        if !body.contains(want.as_str()) {
            return Err(format!("status {status} but the body does not contain {want:?}"));
        }
    }
    Ok(())
}

/// Default number of consecutive results before the health status flips.
pub const DEFAULT_THRESHOLD: u32 = 3;

/// Health of one instance as far as Doctor Monkey has established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Passed `threshold` checks in a row (and has not failed as many since).
    Healthy,
    /// Failed `threshold` checks in a row (and has not passed as many since).
    Unhealthy,
    /// Not yet established (new instance).
    #[default]
    Unknown,
}

impl HealthStatus {
    /// Name in reports and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }
}

/// What the caller stores per instance between runs. The default is a new instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthState {
    /// Established status.
    pub status: HealthStatus,
    /// Failed checks in a row (0 after a pass).
    pub consecutive_failures: u32,
    /// Passed checks in a row (0 after a failure).
    pub consecutive_passes: u32,
}

/// A change of established status: the only thing worth a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Healthy or unknown → unhealthy.
    BecameUnhealthy,
    /// Unhealthy → healthy.
    Recovered,
}

impl Transition {
    /// Finding action name: `unhealthy` / `recovered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::BecameUnhealthy => "unhealthy",
            Transition::Recovered => "recovered",
        }
    }

    /// Severity of its finding: critical when an instance falls sick, info when it recovers.
    pub fn severity(self) -> Severity {
        match self {
            Transition::BecameUnhealthy => Severity::Critical,
            Transition::Recovered => Severity::Info,
        }
    }
}

/// Advance the health state by one check result.
///
/// The status becomes `Unhealthy` once `threshold` checks in a row have failed, and `Healthy` once as many
/// have passed; a `threshold` of 0 counts as 1. Only `… → Unhealthy` (`BecameUnhealthy`) and
/// `Unhealthy → Healthy` (`Recovered`) are transitions; a new instance settling as healthy is not news. So
/// one change yields exactly one transition and the two kinds alternate. A stored state with counters
/// beyond the threshold (e.g. the threshold was lowered) flips on its next result of that kind.
pub fn step(prev: &HealthState, passed: bool, threshold: u32) -> (HealthState, Option<Transition>) {
    let threshold = threshold.max(1);
    let mut next = *prev;
    if passed {
        next.consecutive_passes = prev.consecutive_passes.saturating_add(1);
        next.consecutive_failures = 0;
    } else {
        next.consecutive_failures = prev.consecutive_failures.saturating_add(1);
        next.consecutive_passes = 0;
    }
    let transition = match prev.status {
        HealthStatus::Healthy | HealthStatus::Unknown
            if !passed && next.consecutive_failures >= threshold =>
        {
            next.status = HealthStatus::Unhealthy;
            Some(Transition::BecameUnhealthy)
        }
        HealthStatus::Unknown if passed && next.consecutive_passes >= threshold => {
            next.status = HealthStatus::Healthy;
            None
        }
        HealthStatus::Unhealthy if passed && next.consecutive_passes >= threshold => {
            next.status = HealthStatus::Healthy;
            Some(Transition::Recovered)
        }
        HealthStatus::Healthy | HealthStatus::Unhealthy | HealthStatus::Unknown => None,
    };
    (next, transition)
}

/// Nearest-rank percentile of ascending `sorted_ms`; `p` in percent (50, 99), clamped to 0–100.
/// `None` for no samples or a NaN `p`.
pub fn percentile(sorted_ms: &[f64], p: f64) -> Option<f64> {
    if sorted_ms.is_empty() || p.is_nan() {
        return None;
    }
    let n = sorted_ms.len();
    let p = p.clamp(0.0, 100.0);
    let rank = (p / 100.0 * n as f64).ceil() as usize;
    sorted_ms.get(rank.clamp(1, n) - 1).copied()
}

/// How one probe of a sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// Answered as expected (and /proc within limits).
    Healthy,
    /// Answered, but wrongly (status, body, /proc limits).
    Unhealthy,
    /// Could not be probed (connect error, timeout, executor failure).
    Error,
}

/// One sweep in numbers (`summary.doctor` in the report).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Instances probed.
    pub checked: u64,
    /// Probes that passed.
    pub healthy: u64,
    /// Probes that answered wrongly.
    pub unhealthy: u64,
    /// Probes that could not be made.
    pub errors: u64,
    /// Median probe latency in ms (nearest rank); `None` without latencies.
    pub p50_ms: Option<f64>,
    /// 99th-percentile probe latency in ms (nearest rank); `None` without latencies.
    pub p99_ms: Option<f64>,
}

/// Collects probe results into a [`Summary`].
#[derive(Debug, Clone, Default)]
pub struct SummaryBuilder {
    checked: u64,
    healthy: u64,
    unhealthy: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

impl SummaryBuilder {
    /// An empty sweep.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one probe; `latency` (if measured) joins the percentiles.
    pub fn record(&mut self, outcome: ProbeOutcome, latency: Option<Duration>) -> &mut Self {
        self.checked = self.checked.saturating_add(1);
        let counter = match outcome {
            ProbeOutcome::Healthy => &mut self.healthy,
            ProbeOutcome::Unhealthy => &mut self.unhealthy,
            ProbeOutcome::Error => &mut self.errors,
        };
        *counter = counter.saturating_add(1);
        if let Some(d) = latency {
            self.latencies_ms.push(d.as_secs_f64() * 1000.0);
        }
        self
    }

    /// The summary so far.
    pub fn build(&self) -> Summary {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        Summary {
            checked: self.checked,
            healthy: self.healthy,
            unhealthy: self.unhealthy,
            errors: self.errors,
            p50_ms: percentile(&sorted, 50.0),
            p99_ms: percentile(&sorted, 99.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_loadavg() {
        let l = parse_loadavg("\n  0.52 0.58   0.59 1/467 12345\n").unwrap();
        assert_eq!(l, LoadAvg { one: 0.52, five: 0.58, fifteen: 0.59 });
        assert!(parse_loadavg("").unwrap_err().contains("empty"));
        assert!(parse_loadavg("0.5 0.4").unwrap_err().contains("15-minute"));
        assert!(parse_loadavg("x 0.4 0.3").unwrap_err().contains("1-minute"));
        assert!(parse_loadavg("-1 0.4 0.3").is_err());
        assert!(parse_loadavg("NaN 0.4 0.3").is_err());
    }

    #[test]
    fn reads_cpu_count_from_nproc_or_cpuinfo() {
        assert_eq!(parse_cpu_count("8\n"), Ok(8));
        assert_eq!(parse_cpu_count("\n  4  \n\n"), Ok(4));
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: X\n\n\
                       processor\t: 1\nvendor_id\t: GenuineIntel\n\nprocessor\t: 2\n\n";
        assert_eq!(parse_cpu_count(cpuinfo), Ok(3));
        // Old ARM: `Processor : ARMv7 …` names the model, it is not a CPU.
        assert_eq!(parse_cpu_count("Processor\t: ARMv7 rev 4\nprocessor\t: 0\nprocessor\t: 1\n"), Ok(2));
        assert!(parse_cpu_count("0").is_err());
        assert!(parse_cpu_count("").is_err());
        assert!(parse_cpu_count("nproc: not found").is_err());
        assert!(parse_cpu_count("vendor_id : x\nmodel : y\n").is_err());
    }

    #[test]
    fn reads_meminfo_with_and_without_memavailable() {
        let modern = "MemTotal:       16318412 kB\nMemFree:          512000 kB\n\
                      MemAvailable:    8000000 kB\nBuffers:  100 kB\nCached: 200 kB\nHugePages_Total: 0\n";
        assert_eq!(parse_meminfo(modern), Ok(MemInfo { total_kb: 16318412, available_kb: 8000000 }));
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
        assert_eq!(parse_meminfo(old), Ok(MemInfo { total_kb: 1000, available_kb: 400 }));
        assert!(parse_meminfo("MemFree: 1 kB\n").unwrap_err().contains("MemTotal"));
        assert!(parse_meminfo("MemTotal: 1 kB\n").unwrap_err().contains("MemFree"));
        assert!(parse_meminfo("MemTotal: lots kB\n").unwrap_err().contains("not a number"));
    }

    #[test]
    fn reads_df_root() {
        let df = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                  /dev/sda1        100  75  25      75% /\n";
        assert_eq!(parse_df_root(df), Ok(75.0));
        let spaced = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                      my disk 100 10 30 25% /\n";
        assert_eq!(parse_df_root(spaced), Ok(25.0));
        let several = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                       tmpfs 10 1 9 10% /run\n/dev/root 100 90 10 90% /\n";
        assert_eq!(parse_df_root(several), Ok(90.0));
        let empty_fs = "Filesystem 1024-blocks Used Available Capacity Mounted on\nnone 0 0 0 3% /\n";
        assert_eq!(parse_df_root(empty_fs), Ok(3.0));
        assert!(parse_df_root("Filesystem 1024-blocks Used Available Capacity Mounted on\n").is_err());
        assert!(parse_df_root("df: /: No such file").is_err());
        assert!(parse_df_root("a 10 1 9 10% /run\nb 10 1 9 10% /srv\n").is_err());
    }

    #[test]
    fn reads_the_whole_proc_script_output_and_names_what_is_missing() {
        let out = "--- simian loadavg\n1.0 4.0 3.0 1/2 3\n--- simian cpus\n2\n--- simian meminfo\n\
                   MemTotal: 1000 kB\nMemAvailable: 30 kB\n--- simian df\n\
                   Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda 100 95 5 95% /\n";
        let (facts, errors) = parse_proc_output(out);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(facts.cpus, Some(2));
        let limits = ProcThresholds {
            max_load_per_cpu: Some(1.5),
            min_mem_available_pct: Some(5.0),
            max_disk_used_pct: Some(90.0),
        };
        let reasons = evaluate_proc(&facts, &limits);
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("load 2.00 per cpu exceeds 1.50"));
        assert!(reasons[1].contains("memory available 3.0% is below 5.0%"));
        assert!(reasons[2].contains("95.0% used exceeds 90.0%"));

        let (facts, errors) = parse_proc_output("--- simian loadavg\n0.1 0.1 0.1\n--- simian cpus\n");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(facts.load.is_some() && facts.cpus.is_none());
    }

    #[test]
    fn healthy_proc_has_no_reasons_and_unchecked_limits_are_ignored() {
        let facts = ProcFacts {
            load: Some(LoadAvg { one: 9.0, five: 1.0, fifteen: 1.0 }),
            cpus: Some(4),
            mem: Some(MemInfo { total_kb: 100, available_kb: 50 }),
            disk_used_pct: Some(50.0),
        };
        let limits = ProcThresholds {
            max_load_per_cpu: Some(0.5),
            min_mem_available_pct: Some(10.0),
            max_disk_used_pct: Some(90.0),
        };
        assert!(evaluate_proc(&facts, &limits).is_empty());
        assert!(evaluate_proc(&ProcFacts::default(), &ProcThresholds::default()).is_empty());
        assert_eq!(evaluate_proc(&ProcFacts::default(), &limits).len(), 3);
    }

    #[test]
    fn judges_http_probes() {
        let any2xx = HttpExpect::default();
        assert_eq!(evaluate_http(Some(204), "", None, &any2xx), Ok(()));
        assert_eq!(
            evaluate_http(Some(500), "", None, &any2xx),
            Err("status 500, expected 200-299".to_string())
        );
        assert!(evaluate_http(None, "", Some("connection refused"), &any2xx)
            .unwrap_err()
            .contains("connection refused"));
        assert!(evaluate_http(Some(200), "ok", Some("timed out"), &any2xx).is_err());
        assert!(evaluate_http(None, "", None, &any2xx).unwrap_err().contains("no response"));
        let strict = HttpExpect { statuses: vec![200, 503], body: Some("ok".into()) };
        assert_eq!(evaluate_http(Some(503), "all ok", None, &strict), Ok(()));
        assert_eq!(
            evaluate_http(Some(204), "ok", None, &strict),
            Err("status 204, expected 200, 503".to_string())
        );
        assert!(evaluate_http(Some(200), "degraded", None, &strict)
            .unwrap_err()
            .contains("does not contain \"ok\""));
    }

    fn run(results: &[bool], threshold: u32) -> (HealthState, Vec<(usize, Transition)>) {
        let mut s = HealthState::default();
        let mut ts = Vec::new();
        for (i, &r) in results.iter().enumerate() {
            let (next, t) = step(&s, r, threshold);
            if let Some(t) = t {
                ts.push((i, t));
            }
            s = next;
        }
        (s, ts)
    }

    #[test]
    fn flips_after_threshold_results_once() {
        let (s, ts) = run(&[false, false], 3);
        assert_eq!(s.status, HealthStatus::Unknown);
        assert!(ts.is_empty());
        let (s, ts) = run(&[false, false, false, false, false], 3);
        assert_eq!(s.status, HealthStatus::Unhealthy);
        assert_eq!(ts, vec![(2, Transition::BecameUnhealthy)]);
        let (s, ts) = run(&[false, false, false, true, true, false, true, true, true, true], 3);
        assert_eq!(s.status, HealthStatus::Healthy);
        assert_eq!(ts, vec![(2, Transition::BecameUnhealthy), (8, Transition::Recovered)]);
        // A new instance settling as healthy is not a transition.
        let (s, ts) = run(&[true, true, true], 3);
        assert_eq!(s.status, HealthStatus::Healthy);
        assert!(ts.is_empty());
        // Threshold 0 behaves as 1.
        let (_, ts) = run(&[false, true], 0);
        assert_eq!(ts, vec![(0, Transition::BecameUnhealthy), (1, Transition::Recovered)]);
        assert_eq!(Transition::BecameUnhealthy.severity(), Severity::Critical);
        assert_eq!(Transition::Recovered.as_str(), "recovered");
    }

    #[test]
    fn survives_odd_stored_states() {
        let odd = HealthState {
            status: HealthStatus::Unhealthy,
            consecutive_failures: 0,
            consecutive_passes: u32::MAX,
        };
        assert_eq!(step(&odd, true, 3).1, Some(Transition::Recovered));
        let (s, t) = step(&odd, false, 3);
        assert_eq!((s.consecutive_failures, s.consecutive_passes, t), (1, 0, None));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[15.0, 20.0, 35.0, 40.0, 50.0], 30.0), Some(20.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&v, f64::NAN), None);
        assert_eq!(percentile(&v, 250.0), Some(100.0));
    }

    #[test]
    fn builds_the_summary() {
        let mut b = SummaryBuilder::new();
        b.record(ProbeOutcome::Healthy, Some(Duration::from_millis(10)))
            .record(ProbeOutcome::Healthy, Some(Duration::from_millis(30)))
            .record(ProbeOutcome::Unhealthy, Some(Duration::from_millis(20)))
            .record(ProbeOutcome::Error, None);
        let s = b.build();
        assert_eq!((s.checked, s.healthy, s.unhealthy, s.errors), (4, 2, 1, 1));
        assert_eq!(s.p50_ms, Some(20.0));
        assert_eq!(s.p99_ms, Some(30.0));
        assert_eq!(SummaryBuilder::new().build().p50_ms, None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_loadavg(&s);
            let _ = parse_cpu_count(&s);
            let _ = parse_meminfo(&s);
            let _ = parse_df_root(&s);
            let _ = parse_proc_output(&s);
        }

        #[test]
        fn parsers_never_panic_on_plausible_lines(lines in prop::collection::vec(
            prop_oneof![
                "[0-9. /:%a-zA-Z_-]{0,40}",
                "(MemTotal|MemAvailable|MemFree|Buffers|Cached|processor): *[0-9]{0,25} kB",
                "[a-z/]{1,8} +[0-9]{0,22} +[0-9]{0,22} +[0-9]{0,22} +[0-9]{0,3}% +/",
            ], 0..8)) {
            let s = lines.join("\n");
            if let Ok(p) = parse_df_root(&s) {
                prop_assert!(p.is_finite() && p >= 0.0);
            }
            if let Ok(n) = parse_cpu_count(&s) {
                prop_assert!(n > 0);
            }
            if let Ok(m) = parse_meminfo(&s) {
                let _ = evaluate_proc(
                    &ProcFacts { mem: Some(m), ..ProcFacts::default() },
                    &ProcThresholds { min_mem_available_pct: Some(5.0), ..ProcThresholds::default() },
                );
            }
            let _ = parse_loadavg(&s);
        }

        #[test]
        fn transitions_alternate_and_need_exactly_threshold_in_a_row(
            results in prop::collection::vec(any::<bool>(), 0..200),
            threshold in 0u32..6,
        ) {
            let t = threshold.max(1) as usize;
            let (_, ts) = run(&results, threshold);
            for pair in ts.windows(2) {
                prop_assert_ne!(pair[0].1, pair[1].1);
            }
            if let Some((_, first)) = ts.first() {
                prop_assert_eq!(*first, Transition::BecameUnhealthy);
            }
            for &(i, tr) in &ts {
                let want = tr == Transition::Recovered;
                // Exactly `t` results of its kind end at i …
                prop_assert!(i + 1 >= t);
                prop_assert!(results[i + 1 - t..=i].iter().all(|&r| r == want));
                if i + 1 > t {
                    prop_assert_ne!(results[i - t], want);
                }
            }
            // … and every such run of `t` ends in a transition unless the status already matched.
            let mut s = HealthState::default();
            for &r in &results {
                let (next, tr) = step(&s, r, threshold);
                let flipped = match (s.status, next.status) {
                    (HealthStatus::Unhealthy, HealthStatus::Healthy) => tr == Some(Transition::Recovered),
                    (HealthStatus::Healthy | HealthStatus::Unknown, HealthStatus::Unhealthy) => {
                        tr == Some(Transition::BecameUnhealthy)
                    }
                    (a, b) => tr.is_none() && (a == b || (a, b) == (HealthStatus::Unknown, HealthStatus::Healthy)),
                };
                prop_assert!(flipped);
                let streak = if r { next.consecutive_passes } else { next.consecutive_failures } as usize;
                if streak == t {
                    prop_assert_eq!(next.status, if r { HealthStatus::Healthy } else { HealthStatus::Unhealthy });
                }
                s = next;
            }
        }

        #[test]
        fn percentile_is_a_sample_and_monotone(mut v in prop::collection::vec(-1e6f64..1e6, 1..50), p in 0f64..100.0, q in 0f64..100.0) {
            v.sort_by(f64::total_cmp);
            let a = percentile(&v, p.min(q)).unwrap();
            let b = percentile(&v, p.max(q)).unwrap();
            prop_assert!(v.contains(&a) && v.contains(&b));
            prop_assert!(a <= b);
        }
    }
}
