//! Pure statistics of a phase or a check window: HTTP samples in an HDR histogram (percentiles from every
//! sample, never from averages), Prometheus values as mean/min/max.

use std::time::Duration;

use hdrhistogram::Histogram;
use simian_monkeys::experiment::{HttpStats, ValueStats};

/// Latencies are kept in microseconds from 1 µs to 1 h at 3 significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

/// HTTP samples of one phase or window.
#[derive(Debug, Clone)]
pub struct HttpSamples {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
}

impl Default for HttpSamples {
    fn default() -> Self {
        HttpSamples { hist: histogram(), ok: 0, errors: 0 }
    }
}

fn histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5): this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

impl HttpSamples {
    /// One request: how long it took (the timeout, if it timed out) and whether it succeeded.
    pub fn record(&mut self, latency: Duration, ok: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS).clamp(1, MAX_MICROS);
        self.hist.saturating_record(micros);
        if ok {
            self.ok += 1;
        } else {
            self.errors += 1;
        }
    }

    /// Requests recorded.
    pub fn samples(&self) -> u64 {
        self.ok + self.errors
    }

    /// The figures over `elapsed` (throughput = successful responses per second of it).
    pub fn stats(&self, elapsed: Duration) -> HttpStats {
        let n = self.samples();
        let secs = elapsed.as_secs_f64();
        let ms = |q: f64| if n == 0 { f64::NAN } else { self.hist.value_at_quantile(q) as f64 / 1000.0 };
        HttpStats {
            throughput_rps: if secs > 0.0 { self.ok as f64 / secs } else { f64::NAN },
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            error_rate: if n == 0 { f64::NAN } else { self.errors as f64 / n as f64 },
            samples: n,
        }
    }
}

/// Prometheus values of one phase or window.
#[derive(Debug, Clone, Default)]
pub struct Values {
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    n: u64,
    /// The last query error, when a query failed.
    pub last_error: Option<String>,
}

impl Values {
    /// One value read.
    pub fn record(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    /// The figures.
    pub fn stats(&self) -> ValueStats {
        ValueStats {
            value: (self.n > 0).then(|| self.sum / self.n as f64),
            min: self.min,
            max: self.max,
            samples: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_come_from_every_sample() {
        let mut s = HttpSamples::default();
        for _ in 0..98 {
            s.record(Duration::from_millis(72), true);
        }
        s.record(Duration::from_millis(500), true);
        s.record(Duration::from_secs(2), false);
        let st = s.stats(Duration::from_secs(2));
        assert!((st.p50_ms - 72.0).abs() < 0.1, "{st:?}");
        assert!((st.p99_ms - 500.0).abs() < 1.0, "{st:?}");
        assert_eq!(st.samples, 100);
        assert!((st.error_rate - 0.01).abs() < 1e-9);
        assert!((st.throughput_rps - 49.5).abs() < 1e-9, "successes per second: {st:?}");
    }

    #[test]
    fn empty_windows_have_no_figures() {
        let st = HttpSamples::default().stats(Duration::from_secs(1));
        assert!(st.p50_ms.is_nan() && st.error_rate.is_nan());
        assert_eq!(st.throughput_rps, 0.0);
        assert_eq!(Values::default().stats().value, None);
    }

    proptest! {
        #[test]
        fn quantiles_stay_within_the_samples(ms in proptest::collection::vec(1u64..100_000, 1..200)) {
            let mut s = HttpSamples::default();
            for m in &ms {
                s.record(Duration::from_millis(*m), true);
            }
            let st = s.stats(Duration::from_secs(1));
            let (lo, hi) = (*ms.iter().min().unwrap_or(&1) as f64, *ms.iter().max().unwrap_or(&1) as f64);
            // HDR keeps 3 significant digits.
            prop_assert!(st.p50_ms >= lo * 0.999 && st.p50_ms <= hi * 1.001);
            prop_assert!(st.p99_ms >= st.p50_ms);
        }
    }
}
