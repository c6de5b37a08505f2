//! One running experiment: its probes measure from the start of the baseline to the end of the recovery;
//! the round moves it from phase to phase, a watcher checks the tolerances every `check_every` during the
//! fault and cancels the round's abort token after `abort_after` consecutive breaches.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use simian_config::steady::{Probe, ProbeKind, SteadyState};
use simian_config::{Metric, MonkeyName};
use simian_monkeys::experiment::{Breach, Experiment as Report, PhaseStats, ProbeResult, Verdict};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::http::{worker, Pacer, Request};
use crate::prometheus::Query;
use crate::stats::{HttpSamples, Values};
use crate::ProbeError;

/// "Now" for breach times (the engine's clock), and the policy's timezone to show them in.
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Where an experiment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the first action.
    Baseline,
    /// The fault.
    During,
    /// After the revert.
    Recovery,
}

impl Phase {
    fn index(self) -> usize {
        match self {
            Phase::Baseline => 0,
            Phase::During => 1,
            Phase::Recovery => 2,
        }
    }

    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::During => "during",
            Phase::Recovery => "recovery",
        }
    }
}

#[derive(Debug, Clone)]
enum Samples {
    Http(HttpSamples),
    Values(Values),
}

impl Samples {
    fn empty(kind: &ProbeKind) -> Samples {
        match kind {
            ProbeKind::Http(_) => Samples::Http(HttpSamples::default()),
            ProbeKind::Prometheus(_) => Samples::Values(Values::default()),
        }
    }

    fn stats(&self, elapsed: Duration) -> PhaseStats {
        match self {
            Samples::Http(h) => PhaseStats::Http(h.stats(elapsed)),
            Samples::Values(v) => PhaseStats::Value(v.stats()),
        }
    }

    fn last_error(&self) -> Option<&str> {
        match self {
            Samples::Http(_) => None,
            Samples::Values(v) => v.last_error.as_deref(),
        }
    }
}

/// What one probe has measured so far.
#[derive(Debug)]
struct Recorder {
    phase: Phase,
    /// Per phase: samples, start, end.
    phases: [Option<(Samples, Instant, Option<Instant>)>; 3],
    window: Samples,
    window_start: Instant,
}

impl Recorder {
    fn record(&mut self, f: impl Fn(&mut Samples)) {
        if let Some((s, _, None)) = &mut self.phases[self.phase.index()] {
            f(s);
        }
        f(&mut self.window);
    }

    /// The current phase's figures end at `now` (if they have not ended already).
    fn end_phase(&mut self, now: Instant) {
        if let Some((_, _, end)) = &mut self.phases[self.phase.index()] {
            end.get_or_insert(now);
        }
    }

    fn phase_stats(&self, phase: Phase) -> Option<PhaseStats> {
        let (s, start, end) = self.phases[phase.index()].as_ref()?;
        Some(s.stats(end.unwrap_or_else(Instant::now).saturating_duration_since(*start)))
    }
}

struct ProbeRun {
    probe: Probe,
    rec: Mutex<Recorder>,
}

impl ProbeRun {
    fn rec(&self) -> MutexGuard<'_, Recorder> {
        self.rec.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
struct Watch {
    consecutive: u32,
    breaches: Vec<(usize, Breach)>,
    abort: Option<Breach>,
}

struct Inner {
    monkey: MonkeyName,
    ss: SteadyState,
    probes: Vec<ProbeRun>,
    watch: Mutex<Watch>,
    now: Now,
    tz: chrono_tz::Tz,
}

impl Inner {
    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every tolerance over each probe's window since the last check; the windows start again.
    fn check(&self, phase: Phase) -> Vec<(usize, Breach)> {
        let mut out = Vec::new();
        for (i, p) in self.probes.iter().enumerate() {
            let (window, base, err) = {
                let mut rec = p.rec();
                let now = Instant::now();
                let window = rec.window.stats(now.saturating_duration_since(rec.window_start));
                let err = rec.window.last_error().map(str::to_string);
                rec.window = Samples::empty(&p.probe.kind);
                rec.window_start = now;
                (window, rec.phase_stats(Phase::Baseline), err)
            };
            for (metric, tol) in &p.probe.tolerances {
                let value = window.metric(*metric);
                let b = base.as_ref().map(|b| b.metric(*metric));
                if !tol.holds(value, b) {
                    out.push((
                        i,
                        self.breach(phase, &p.probe.name, *metric, value, &tol.text, b, err.as_deref()),
                    ));
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn breach(
        &self,
        phase: Phase,
        probe: &str,
        metric: Metric,
        value: f64,
        tolerance: &str,
        baseline: Option<f64>,
        error: Option<&str>,
    ) -> Breach {
        let shown = if value.is_nan() {
            match error {
                Some(e) => format!("no value ({e})"),
                None => "no value (no responses)".to_string(),
            }
        } else {
            metric.show(value)
        };
        let base = match baseline.filter(|b| b.is_finite()) {
            Some(b) if tolerance.contains("baseline") => format!(" (baseline {})", metric.show(b)),
            _ => String::new(),
        };
        Breach {
            at: (self.now)().with_timezone(&self.tz).fixed_offset(),
            phase: phase.as_str().to_string(),
            probe: probe.to_string(),
            metric: metric.as_str().to_string(),
            value: (!value.is_nan()).then_some(value),
            tolerance: tolerance.to_string(),
            message: format!("{probe} {metric} {shown} breaks \"{tolerance}\"{base}"),
        }
    }
}

/// A running experiment; [`Experiment::finish`] stops its probes and gives the report.
pub struct Experiment {
    inner: Arc<Inner>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    recovered_after: Option<f64>,
    not_started: bool,
}

impl Experiment {
    /// Start measuring: every probe's load or queries begin now, in the baseline phase.
    pub fn start(
        monkey: MonkeyName,
        ss: &SteadyState,
        now: Now,
        tz: chrono_tz::Tz,
    ) -> Result<Experiment, ProbeError> {
        let stop = CancellationToken::new();
        let t0 = Instant::now();
        let probes: Vec<ProbeRun> = ss
            .probes
            .iter()
            .map(|p| ProbeRun {
                probe: p.clone(),
                rec: Mutex::new(Recorder {
                    phase: Phase::Baseline,
                    phases: [Some((Samples::empty(&p.kind), t0, None)), None, None],
                    window: Samples::empty(&p.kind),
                    window_start: t0,
                }),
            })
            .collect();
        let inner = Arc::new(Inner { monkey, ss: ss.clone(), probes, watch: Mutex::default(), now, tz });
        let mut tasks = Vec::new();
        for (i, p) in ss.probes.iter().enumerate() {
            match &p.kind {
                ProbeKind::Http(cfg) => {
                    let req = Arc::new(Request::new(&p.name, cfg)?);
                    let pacer = Arc::new(Pacer::new(req.interval));
                    let sink = inner.clone();
                    let record: Arc<dyn Fn(Duration, bool) + Send + Sync> = Arc::new(move |lat, ok| {
                        sink.probes[i].rec().record(|s| {
                            if let Samples::Http(h) = s {
                                h.record(lat, ok)
                            }
                        })
                    });
                    for _ in 0..req.concurrency {
                        tasks.push(tokio::spawn(worker(
                            req.clone(),
                            pacer.clone(),
                            record.clone(),
                            stop.clone(),
                        )));
                    }
                }
                ProbeKind::Prometheus(cfg) => {
                    let q = Query::new(&p.name, cfg)?;
                    // Often enough that every check window holds a fresh value.
                    let period = ss.check_every.min(Duration::from_secs(2)).max(Duration::from_millis(100));
                    let (inner, stop) = (inner.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut tick = tokio::time::interval(period);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tick.tick() => {}
                            }
                            let v = tokio::select! {
                                _ = stop.cancelled() => return,
                                v = q.value() => v,
                            };
                            inner.probes[i].rec().record(|s| {
                                if let Samples::Values(vals) = s {
                                    match &v {
                                        Ok(x) => vals.record(*x),
                                        Err(e) => vals.last_error = Some(e.clone()),
                                    }
                                }
                            });
                        }
                    }));
                }
            }
        }
        info!(monkey = %monkey, probes = ss.probes.len(), "steady-state probes started");
        Ok(Experiment { inner, stop, tasks, watcher: None, recovered_after: None, not_started: false })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &SteadyState {
        &self.inner.ss
    }

    /// Move every probe into `phase`: the current phase ends now.
    pub fn enter(&self, phase: Phase) {
        let now = Instant::now();
        for p in &self.inner.probes {
            let mut rec = p.rec();
            rec.end_phase(now);
            rec.phase = phase;
            rec.phases[phase.index()] = Some((Samples::empty(&p.probe.kind), now, None));
            rec.window = Samples::empty(&p.probe.kind);
            rec.window_start = now;
        }
    }

    /// End the current phase's figures now (the fault is being reverted); checks go on over the windows.
    pub fn pause(&self) {
        let now = Instant::now();
        for p in &self.inner.probes {
            let mut rec = p.rec();
            rec.end_phase(now);
        }
    }

    /// Start the fault phase's figures again now: the fault is fully in place (the hold begins), so what
    /// was measured while it was being applied does not dilute them. The watch goes on.
    pub fn fault_in_place(&self) {
        let now = Instant::now();
        for p in &self.inner.probes {
            let mut rec = p.rec();
            if rec.phase == Phase::During {
                rec.phases[Phase::During.index()] = Some((Samples::empty(&p.probe.kind), now, None));
            }
        }
    }

    /// After the baseline: the absolute tolerances over the whole baseline; any breach means do not act.
    pub fn baseline_breaches(&self) -> Vec<Breach> {
        let mut out = Vec::new();
        for p in &self.inner.probes {
            let (stats, err) = {
                let rec = p.rec();
                (
                    rec.phase_stats(Phase::Baseline),
                    rec.phases[0].as_ref().and_then(|(s, ..)| s.last_error().map(str::to_string)),
                )
            };
            let Some(stats) = stats else { continue };
            for (metric, tol) in p.probe.tolerances.iter().filter(|(_, t)| !t.is_relative()) {
                let v = stats.metric(*metric);
                if !tol.holds(v, None) {
                    out.push(self.inner.breach(
                        Phase::Baseline,
                        &p.probe.name,
                        *metric,
                        v,
                        &tol.text,
                        None,
                        err.as_deref(),
                    ));
                }
            }
        }
        out
    }

    /// Mark the experiment as not started (the round did not act), keeping the baseline figures.
    pub fn not_started(&mut self) {
        self.not_started = true;
    }

    /// Enter the fault phase and watch it: every `check_every`, `abort_after` consecutive breaching checks
    /// cancel `abort`. [`Experiment::abort_reason`] then says which breach decided it.
    pub fn during(&mut self, abort: CancellationToken) {
        self.enter(Phase::During);
        let inner = self.inner.clone();
        let stop = self.stop.clone();
        self.watcher = Some(tokio::spawn(async move {
            let every = inner.ss.check_every;
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let breaches = inner.check(Phase::During);
                let mut w = inner.watch();
                if breaches.is_empty() {
                    w.consecutive = 0;
                    continue;
                }
                w.consecutive += 1;
                for (_, b) in &breaches {
                    warn!(monkey = %inner.monkey, breach = %b.message, consecutive = w.consecutive, "steady state breached");
                }
                let decided = breaches.first().map(|(_, b)| b.clone());
                w.breaches.extend(breaches);
                if w.consecutive >= inner.ss.abort_after {
                    w.abort = decided;
                    drop(w);
                    abort.cancel();
                    return;
                }
            }
        }));
    }

    /// The breach that aborted the round, if one did.
    pub fn abort_reason(&self) -> Option<Breach> {
        self.inner.watch().abort.clone()
    }

    /// After the revert: stop watching, then measure until every tolerance holds at a check (→ the seconds it
    /// took) or `recovery` runs out (→ `None`). `shutdown` ends the wait early.
    pub async fn recover(&mut self, shutdown: &CancellationToken) -> Option<f64> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.enter(Phase::Recovery);
        let start = Instant::now();
        let every = self.inner.ss.check_every;
        let end = start + self.inner.ss.recovery;
        loop {
            let next = (Instant::now() + every).min(end);
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(next) => {}
            }
            if self.inner.check(Phase::Recovery).is_empty() {
                let secs = start.elapsed().as_secs_f64();
                self.recovered_after = Some((secs * 10.0).round() / 10.0);
                return self.recovered_after;
            }
            if Instant::now() >= end {
                return None;
            }
        }
    }

    /// Stop every probe and report.
    pub async fn finish(mut self) -> Report {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let now = Instant::now();
        for p in &self.inner.probes {
            let mut rec = p.rec();
            rec.end_phase(now);
        }
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let w = self.inner.watch();
        let probes: Vec<ProbeResult> = self
            .inner
            .probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let rec = p.rec();
                let (baseline, during, recovery) = (
                    rec.phase_stats(Phase::Baseline),
                    rec.phase_stats(Phase::During),
                    rec.phase_stats(Phase::Recovery),
                );
                let capacity = match (&baseline, &during) {
                    (Some(PhaseStats::Http(b)), Some(PhaseStats::Http(d))) if b.throughput_rps > 0.0 => {
                        Some(((d.throughput_rps / b.throughput_rps) * 1000.0).round() / 1000.0)
                    }
                    _ => None,
                };
                ProbeResult {
                    name: p.probe.name.clone(),
                    kind: p.probe.kind.as_str().to_string(),
                    baseline,
                    during,
                    recovery,
                    capacity,
                    breaches: w.breaches.iter().filter(|(j, _)| *j == i).map(|(_, b)| b.clone()).collect(),
                }
            })
            .collect();
        let entered_recovery = probes.iter().any(|p| p.recovery.is_some());
        let verdict = if self.not_started {
            Verdict::NotStarted
        } else if w.abort.is_some() {
            Verdict::Aborted
        } else if !w.breaches.is_empty() || (entered_recovery && self.recovered_after.is_none()) {
            Verdict::Deviated
        } else {
            Verdict::Held
        };
        info!(monkey = %self.inner.monkey, verdict = verdict.as_str(), "steady-state experiment finished");
        Report { monkey: self.inner.monkey, verdict, recovered_after_s: self.recovered_after, probes }
    }
}

impl Drop for Experiment {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}
