//! Latency Monkey's userspace TCP proxy: adds `delay ± jitter` to the upstream→client direction where `tc netem`
//! is not available.
//!
//! One [`RunningProxy`] listens on one address and forwards every accepted connection to one upstream. Bytes from
//! the client go to the upstream at once; each chunk coming back from the upstream is stamped on arrival with a
//! release time (`arrival + delay + jitter sample`, never earlier than the previous chunk's, so byte order is
//! kept) and written to the client when it is due. This is what netem on the server's egress does: a
//! request/reply takes `delay` longer, not twice that.
//!
//! Memory is bounded: at most [`MAX_QUEUED_BYTES`] wait in one connection's delay queue; past that the proxy
//! stops reading from the upstream and TCP flow control pushes back on it. Half-closes are forwarded (the
//! upstream's FIN reaches the client after the data before it, delayed like it); a reset on either side ends
//! both. [`RunningProxy::stop`] closes the listener and every connection, and returns counters.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Most bytes one connection holds in its delay queue before the proxy stops reading from the upstream.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Largest chunk read from either side in one go.
const CHUNK: usize = 64 * 1024;

/// What one proxy does: where it listens, where it forwards, and how much it delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// Address to listen on, `host:port` (`127.0.0.1:0` picks a free port; see [`RunningProxy::local_addr`]).
    pub listen: String,
    /// Address every accepted connection is forwarded to, `host:port`; resolved at start and on each connect.
    pub upstream: String,
    /// Latency added to each chunk flowing from the upstream back to the client.
    pub delay: Duration,
    /// Standard deviation of a normal sample added to `delay` per chunk (clipped so the sum is never negative).
    pub jitter: Duration,
    /// Seed of the jitter samples; connection `n` (0-based, in accept order) draws from its own stream of it.
    pub seed: u64,
}

/// Counters over the whole life of one proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Bytes written to the upstream (client → upstream).
    pub bytes_up: u64,
    /// Bytes written to clients (upstream → client, after their delay).
    pub bytes_down: u64,
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An address does not parse or does not resolve.
    #[error("bad {role} address `{addr}`: {reason}")]
    BadAddress {
        /// `listen` or `upstream`.
        role: &'static str,
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address as given.
        addr: String,
        /// Why binding failed.
        reason: String,
    },
}

/// A proxy that is accepting connections; [`RunningProxy::stop`] ends it (dropping it also stops it, without
/// waiting).
#[derive(Debug)]
pub struct RunningProxy {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    acceptor: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    delaying: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ProxyStats {
        ProxyStats {
            connections: self.connections.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl RunningProxy {
    /// Binds `spec.listen` now and starts accepting; fails with the address named if it is malformed, does not
    /// resolve, or is already in use.
    pub async fn start(spec: ProxySpec) -> Result<RunningProxy, ProxyError> {
        Self::start_with(spec, true).await
    }

    /// Like [`RunningProxy::start`], but forwarding without delay until [`RunningProxy::set_delaying`]: a
    /// steady-state probe sees the service through the proxy before, during and after the fault.
    pub async fn start_idle(spec: ProxySpec) -> Result<RunningProxy, ProxyError> {
        Self::start_with(spec, false).await
    }

    /// Switch the delay on or off; chunks stamped from now on get it (or not).
    pub fn set_delaying(&self, on: bool) {
        self.delaying.store(on, Ordering::Relaxed);
        info!(listen = %self.local_addr, delaying = on, "latency proxy delay switched");
    }

    async fn start_with(spec: ProxySpec, delaying: bool) -> Result<RunningProxy, ProxyError> {
        let listen_addr = resolve("listen", &spec.listen).await?;
        // Check the upstream now so a typo fails the fault instead of every connection.
        resolve("upstream", &spec.upstream).await?;
        let listener = bind(listen_addr).map_err(|e| ProxyError::Bind {
            addr: spec.listen.clone(),
            reason: if e.kind() == io::ErrorKind::AddrInUse {
                "address already in use".to_owned()
            } else {
                e.to_string()
            },
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ProxyError::Bind { addr: spec.listen.clone(), reason: e.to_string() })?;
        let shutdown = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        info!(
            listen = %local_addr,
            upstream = %spec.upstream,
            delay_ms = spec.delay.as_millis() as u64,
            jitter_ms = spec.jitter.as_millis() as u64,
            "latency proxy started"
        );
        let delaying = Arc::new(AtomicBool::new(delaying));
        let acceptor = tokio::spawn(accept_loop(
            listener,
            Arc::new(spec),
            shutdown.clone(),
            counters.clone(),
            delaying.clone(),
        ));
        Ok(RunningProxy { local_addr, shutdown, acceptor: Some(acceptor), counters, delaying })
    }

    /// The address actually bound (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far, without stopping.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// Closes the listener (the port can be bound again as soon as this returns), ends every connection at once
    /// (queued, not yet due bytes are dropped), and returns the final counters.
    pub async fn stop(mut self) -> ProxyStats {
        self.shutdown.cancel();
        if let Some(acceptor) = self.acceptor.take() {
            if let Err(e) = acceptor.await {
                warn!(listen = %self.local_addr, error = %e, "latency proxy task failed");
            }
        }
        let stats = self.counters.snapshot();
        info!(
            listen = %self.local_addr,
            connections = stats.connections,
            bytes_up = stats.bytes_up,
            bytes_down = stats.bytes_down,
            "latency proxy stopped"
        );
        stats
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn resolve(role: &'static str, addr: &str) -> Result<SocketAddr, ProxyError> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(parsed);
    }
    let bad = |reason: String| ProxyError::BadAddress { role, addr: addr.to_owned(), reason };
    match tokio::net::lookup_host(addr).await {
        Ok(mut addrs) => addrs.next().ok_or_else(|| bad("resolves to no address".to_owned())),
        Err(e) => Err(bad(e.to_string())),
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Lets the next proxy (or the real service) bind this port right after stop(), even while connections the
    // proxy closed linger in TIME_WAIT. Linux still refuses a second *listener* on the port.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    spec: Arc<ProxySpec>,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
    delaying: Arc<AtomicBool>,
) {
    let mut connections = JoinSet::new();
    let mut index: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let rng = connection_rng(spec.seed, index);
                    index += 1;
                    let (spec, counters, shutdown) = (spec.clone(), counters.clone(), shutdown.clone());
                    let delaying = delaying.clone();
                    connections.spawn(async move {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            result = serve(client, &spec, rng, &counters, delaying) => match result {
                                Ok(()) => debug!(client = %peer, "proxied connection closed"),
                                Err(e) => debug!(client = %peer, error = %e, "proxied connection ended"),
                            },
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(error = %e, "latency proxy cannot accept");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
            // Reap finished connections so the set does not grow with a long-lived proxy.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Every connection task watches the same token and returns at once; wait so their sockets are closed and the
    // counters final when stop() returns.
    while connections.join_next().await.is_some() {}
}

fn connection_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Jitter and clipping: `delay + jitter × N(0, 1)`, never below zero.
struct Latency {
    delay: Duration,
    jitter: Duration,
    rng: ChaCha8Rng,
    /// Off: forward without delay (an idle proxy measured before and after the fault).
    delaying: Arc<AtomicBool>,
}

impl Latency {
    fn sample(&mut self) -> Duration {
        if !self.delaying.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        if self.jitter.is_zero() {
            return self.delay;
        }
        let secs = self.delay.as_secs_f64() + self.jitter.as_secs_f64() * standard_normal(&mut self.rng);
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Box–Muller: one standard normal sample.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One item of a connection's delay queue.
enum Down {
    /// Bytes from the upstream, due at `at`.
    Data { at: Instant, bytes: Vec<u8> },
    /// The upstream half-closed; forward the FIN at `at`.
    Eof { at: Instant },
    /// The upstream connection failed; reset the client at `at`.
    Reset { at: Instant },
}

async fn serve(
    client: TcpStream,
    spec: &ProxySpec,
    rng: ChaCha8Rng,
    counters: &Counters,
    delaying: Arc<AtomicBool>,
) -> io::Result<()> {
    let upstream = match TcpStream::connect(spec.upstream.as_str()).await {
        Ok(upstream) => upstream,
        Err(e) => {
            warn!(upstream = %spec.upstream, error = %e, "latency proxy cannot reach the upstream");
            let _ = client.set_zero_linger();
            return Err(e);
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();

    let budget = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
    // The semaphore bounds the bytes; the channel only needs room for what that many bytes can be split into.
    let (queue, due) = mpsc::unbounded_channel();
    let latency = Latency { delay: spec.delay, jitter: spec.jitter, rng, delaying };

    let up = pump_up(client_read, upstream_write, counters);
    let stamp = stamp_down(upstream_read, latency, queue, budget.clone());
    let release = release_down(due, client_write, budget, counters);
    // The stamping side ends when the upstream closes; the release side ends after the last queued item. The
    // connection ends when both directions are done, or at the first error.
    let down = async { tokio::try_join!(stamp, release).map(|_| ()) };
    tokio::try_join!(up, down).map(|_| ())
}

/// client → upstream, at once; the client's FIN is forwarded as the upstream's.
async fn pump_up(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, counters: &Counters) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                reset(to);
                return Err(e);
            }
        };
        if n == 0 {
            // Ignore a failed shutdown: the upstream may already be gone, the down side reports that.
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        counters.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Reads the upstream and queues each chunk with its release time. It never fails: a failed upstream is queued
/// as a reset, so the client sees it after the data before it.
async fn stamp_down(
    mut from: OwnedReadHalf,
    mut latency: Latency,
    queue: mpsc::UnboundedSender<Down>,
    budget: Arc<Semaphore>,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut last = Instant::now();
    let mut due = |latency: &mut Latency| {
        let at = (Instant::now() + latency.sample()).max(last);
        last = at;
        at
    };
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = queue.send(Down::Eof { at: due(&mut latency) });
                return Ok(());
            }
            Ok(n) => n,
            Err(_) => {
                let _ = queue.send(Down::Reset { at: due(&mut latency) });
                return Ok(());
            }
        };
        let at = due(&mut latency);
        let bytes = buf[..n].to_vec();
        // Backpressure: wait for room before reading more; the release side gives the permits back.
        match budget.acquire_many(n as u32).await {
            Ok(permits) => permits.forget(),
            Err(_) => return Ok(()),
        }
        if queue.send(Down::Data { at, bytes }).is_err() {
            // The release side is gone (the client failed); it reports why.
            return Ok(());
        }
    }
}

/// Writes each queued chunk to the client when it is due.
async fn release_down(
    mut due: mpsc::UnboundedReceiver<Down>,
    mut to: OwnedWriteHalf,
    budget: Arc<Semaphore>,
    counters: &Counters,
) -> io::Result<()> {
    while let Some(item) = due.recv().await {
        match item {
            Down::Data { at, bytes } => {
                wait_until(at).await;
                to.write_all(&bytes).await?;
                counters.bytes_down.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                budget.add_permits(bytes.len());
            }
            Down::Eof { at } => {
                wait_until(at).await;
                to.shutdown().await?;
                return Ok(());
            }
            Down::Reset { at } => {
                wait_until(at).await;
                reset(to);
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "upstream connection failed"));
            }
        }
    }
    Ok(())
}

async fn wait_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

/// Makes the peer of `half` see a reset (RST) instead of an orderly close once the connection is dropped.
fn reset(half: OwnedWriteHalf) {
    let _ = half.as_ref().set_zero_linger();
    // Dropping the half would send a FIN first; leave the close to the read half's drop.
    half.forget();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(delay_ms: u64, jitter_ms: u64, seed: u64, index: u64) -> Latency {
        Latency {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            rng: connection_rng(seed, index),
            delaying: Arc::new(AtomicBool::new(true)),
        }
    }

    #[test]
    fn an_idle_proxy_adds_nothing() {
        let mut l = latency(100, 20, 1, 0);
        l.delaying.store(false, Ordering::Relaxed);
        assert_eq!(l.sample(), Duration::ZERO);
        l.delaying.store(true, Ordering::Relaxed);
        assert!(l.sample() > Duration::ZERO);
    }

    #[test]
    fn samples_are_normal_around_the_delay() {
        let mut l = latency(100, 20, 1, 0);
        let xs: Vec<f64> = (0..20_000).map(|_| l.sample().as_secs_f64() * 1000.0).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!((mean - 100.0).abs() < 0.5, "mean {mean}");
        assert!((sd - 20.0).abs() < 0.5, "sd {sd}");
        let within_1sd = xs.iter().filter(|x| (**x - 100.0).abs() < 20.0).count() as f64 / xs.len() as f64;
        assert!((within_1sd - 0.683).abs() < 0.02, "{within_1sd}");
    }

    #[test]
    fn samples_are_clipped_at_zero() {
        let mut l = latency(10, 50, 2, 0);
        let xs: Vec<Duration> = (0..10_000).map(|_| l.sample()).collect();
        let zeros = xs.iter().filter(|x| x.is_zero()).count();
        // P(N(10, 50) < 0) ≈ 0.42
        assert!((3_800..4_600).contains(&zeros), "{zeros}");
    }

    #[test]
    fn no_jitter_means_exactly_the_delay() {
        let mut l = latency(100, 0, 3, 0);
        assert!((0..100).all(|_| l.sample() == Duration::from_millis(100)));
    }

    #[test]
    fn a_seed_replays_and_connections_draw_different_streams() {
        let draw = |seed, index| {
            let mut l = latency(100, 20, seed, index);
            (0..8).map(|_| l.sample()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42, 0), draw(42, 0));
        assert_ne!(draw(42, 0), draw(42, 1));
        assert_ne!(draw(42, 0), draw(43, 0));
    }
}
