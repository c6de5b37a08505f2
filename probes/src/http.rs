//! Closed-loop HTTP load: `concurrency` workers, each sending its next request when the last one returned
//! (body read), paced so that all of them together never exceed `max_rate`. Timeouts and unexpected statuses
//! are errors, and count in the latencies as the time they took.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use simian_config::steady::{defaults, HttpProbeConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ProbeError;

/// What every request is.
#[derive(Debug)]
pub(crate) struct Request {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    body: Option<String>,
    headers: reqwest::header::HeaderMap,
    expect: Vec<u16>,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: u32,
    pub(crate) interval: Duration,
}

impl Request {
    /// From the probe's settings; the error never carries the URL (it may hold a token).
    pub(crate) fn new(name: &str, cfg: &HttpProbeConfig) -> Result<Request, ProbeError> {
        let bad = |why: String| ProbeError::Setup { probe: name.to_string(), why };
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| bad(format!("bad url: {e}")))?;
        let method = reqwest::Method::from_bytes(cfg.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad(format!("bad method `{}`", cfg.method)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad(format!("bad header name `{k}`")))?;
            let mut value = reqwest::header::HeaderValue::from_str(v.expose())
                .map_err(|_| bad(format!("header `{k}` has a value HTTP cannot carry")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let concurrency = cfg.concurrency.max(1);
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(concurrency as usize)
            .connect_timeout(cfg.timeout.map_or(defaults::HTTP_TIMEOUT, |d| d.std()))
            .build()
            .map_err(|e| bad(format!("cannot build an HTTP client: {e}")))?;
        let rate = cfg
            .max_rate
            .map_or(defaults::MAX_RATE, |r| r.per_second())
            .clamp(0.001, defaults::MAX_RATE_LIMIT);
        Ok(Request {
            client,
            method,
            url,
            body: cfg.body.clone(),
            headers,
            expect: cfg.expect_status.clone(),
            timeout: cfg.timeout.map_or(defaults::HTTP_TIMEOUT, |d| d.std()),
            concurrency,
            interval: Duration::from_secs_f64(1.0 / rate),
        })
    }

    fn expected(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect.contains(&status)
        }
    }

    /// One request, from sending it to reading the whole body: (latency, success).
    pub(crate) async fn once(&self) -> (Duration, bool) {
        let start = Instant::now();
        let mut req =
            self.client.request(self.method.clone(), self.url.clone()).headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let exchange = async {
            let resp = req.send().await.ok()?;
            let status = resp.status().as_u16();
            resp.bytes().await.ok()?;
            Some(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Some(status)) => (start.elapsed(), self.expected(status)),
            Ok(None) => (start.elapsed(), false),
            Err(_) => (self.timeout, false),
        }
    }
}

/// Hands out send times `interval` apart over all workers: the rate cap. A worker that is late never earns
/// a burst.
#[derive(Debug)]
pub(crate) struct Pacer {
    next: Mutex<Instant>,
    interval: Duration,
}

impl Pacer {
    pub(crate) fn new(interval: Duration) -> Pacer {
        Pacer { next: Mutex::new(Instant::now()), interval }
    }

    /// The next free slot, taken.
    pub(crate) fn take(&self) -> Instant {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (*next).max(now);
        *next = slot + self.interval;
        slot
    }
}

/// Run one worker until `stop`: wait for a slot, send, record.
pub(crate) async fn worker(
    req: Arc<Request>,
    pacer: Arc<Pacer>,
    record: Arc<dyn Fn(Duration, bool) + Send + Sync>,
    stop: CancellationToken,
) {
    loop {
        let slot = pacer.take();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(slot) => {}
        }
        let (latency, ok) = tokio::select! {
            _ = stop.cancelled() => return,
            r = req.once() => r,
        };
        record(latency, ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_caps_the_rate_over_all_workers() {
        let p = Pacer::new(Duration::from_millis(10));
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..100).map(|_| p.take()).collect();
        assert_eq!(slots[99] - t0, Duration::from_millis(990));
        tokio::time::advance(Duration::from_secs(5)).await;
        // Late: the next slot is now, not a burst of the missed ones.
        let a = p.take();
        let b = p.take();
        assert_eq!(b - a, Duration::from_millis(10));
    }
}
