//! Benchmark of the latency proxy: accuracy of the added delay, overhead at 0 ms, throughput.
//!
//! Run with `cargo bench -p simian-proxy --bench latency` (real time, loopback only; ~1 min). Prints a Markdown
//! table. `SIMIAN_BENCH_SCALE=0.2` shortens every phase.

use std::net::SocketAddr;
use std::time::Duration;

use simian_proxy::{ProxySpec, RunningProxy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Answers each line with `re: <line>`.
async fn line_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.set_nodelay(true).unwrap();
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write.write_all(format!("re: {line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `bytes` to every client, then closes.
async fn source_server(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x5a_u8; 256 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        Client { lines: BufReader::new(read).lines(), write }
    }

    async fn round_trip(&mut self) -> Duration {
        let started = Instant::now();
        self.write.write_all(b"ping\n").await.unwrap();
        let reply = self.lines.next_line().await.unwrap().unwrap();
        let took = started.elapsed();
        assert_eq!(reply, "re: ping");
        took
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs
}

fn spec(upstream: SocketAddr, delay_ms: u64, jitter_ms: u64) -> ProxySpec {
    ProxySpec {
        listen: "127.0.0.1:0".to_owned(),
        upstream: upstream.to_string(),
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::from_millis(jitter_ms),
        seed: 1,
    }
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale) as usize).max(10)
}

async fn direct_p50_us(server: SocketAddr, n: usize) -> f64 {
    let mut direct = Client::connect(server).await;
    let xs = sorted(round_trips_us(&mut direct, n).await);
    percentile(&xs, 50.0)
}

async fn round_trips_us(client: &mut Client, n: usize) -> Vec<f64> {
    let mut xs = Vec::with_capacity(n);
    for _ in 0..n {
        xs.push(client.round_trip().await.as_secs_f64() * 1e6);
    }
    xs
}

/// Added latency (ms) of `n` sequential request/replies through a proxy asking `delay ± jitter`.
async fn accuracy(server: SocketAddr, delay_ms: u64, jitter_ms: u64, n: usize) {
    let base_us = direct_p50_us(server, 200).await;
    let proxy = RunningProxy::start(spec(server, delay_ms, jitter_ms)).await.unwrap();
    let mut client = Client::connect(proxy.local_addr()).await;
    let added: Vec<f64> =
        round_trips_us(&mut client, n).await.into_iter().map(|us| (us - base_us) / 1000.0).collect();
    proxy.stop().await;
    let mean = added.iter().sum::<f64>() / n as f64;
    let sd = (added.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let s = sorted(added);
    println!(
        "| {delay_ms} ms ± {jitter_ms} ms, {n} request/replies | added latency p50 {:.2} ms, p99 {:.2} ms, \
         min {:.2} ms, max {:.2} ms, mean {mean:.2} ms, sd {sd:.2} ms |",
        percentile(&s, 50.0),
        percentile(&s, 99.0),
        s[0],
        s[s.len() - 1],
    );
}

/// Round trips direct and through a 0 ms proxy, interleaved in blocks so drift hits both alike.
async fn overhead(server: SocketAddr, n: usize) {
    let proxy = RunningProxy::start(spec(server, 0, 0)).await.unwrap();
    let mut direct = Client::connect(server).await;
    let mut proxied = Client::connect(proxy.local_addr()).await;
    // Warm up both paths.
    round_trips_us(&mut direct, 200).await;
    round_trips_us(&mut proxied, 200).await;
    let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n / 100 {
        d.extend(round_trips_us(&mut direct, 100).await);
        p.extend(round_trips_us(&mut proxied, 100).await);
    }
    proxy.stop().await;
    let (d, p) = (sorted(d), sorted(p));
    for (name, xs) in [("direct", &d), ("through a 0 ms proxy", &p)] {
        println!(
            "| {name}, {} request/replies | round trip p50 {:.0} µs, p99 {:.0} µs |",
            xs.len(),
            percentile(xs, 50.0),
            percentile(xs, 99.0)
        );
    }
    println!(
        "| 0 ms proxy overhead | p50 +{:.0} µs, p99 +{:.0} µs |",
        percentile(&p, 50.0) - percentile(&d, 50.0),
        percentile(&p, 99.0) - percentile(&d, 99.0)
    );
}

/// The least any userspace proxy does: `tokio::io::copy_bidirectional`, for reference.
async fn plain_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

/// MB/s of one connection reading `bytes` from the source server.
async fn download(addr: SocketAddr, bytes: usize) -> f64 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, bytes);
    bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// One connection downloading `bytes` direct and through proxies (a fifth of that through the delayed ones: they
/// are capped near `MAX_QUEUED_BYTES / delay`).
async fn throughput(bytes: usize) {
    let (source, small_source) = (source_server(bytes).await, source_server(bytes / 5).await);
    let direct = download(source, bytes).await;
    println!("| download {} MB, direct | {direct:.0} MB/s |", bytes / 1_000_000);
    let plain = download(plain_proxy(source).await, bytes).await;
    println!(
        "| download {} MB, through a plain `copy_bidirectional` proxy (reference) | {plain:.0} MB/s ({:.0} % of direct) |",
        bytes / 1_000_000,
        plain / direct * 100.0
    );
    for (delay, jitter) in [(0, 0), (100, 0), (100, 20)] {
        let (source, bytes) = if delay == 0 { (source, bytes) } else { (small_source, bytes / 5) };
        let proxy = RunningProxy::start(spec(source, delay, jitter)).await.unwrap();
        let through = download(proxy.local_addr(), bytes).await;
        proxy.stop().await;
        println!(
            "| download {} MB, through a {delay} ms ± {jitter} ms proxy | {through:.0} MB/s ({:.0} % of direct) |",
            bytes / 1_000_000,
            through / direct * 100.0
        );
    }
}

fn main() {
    // `cargo test --all-targets` also runs bench binaries (without `--bench`): a real-time measurement is
    // not a test, so do nothing then; `cargo bench` passes `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("latency bench: run it with `cargo bench -p simian-proxy --bench latency`");
        return;
    }
    let scale: f64 = std::env::var("SIMIAN_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = line_server().await;
        println!("| case | result |");
        println!("|---|---|");
        accuracy(server, 100, 0, scaled(200, scale)).await;
        accuracy(server, 100, 20, scaled(100, scale)).await;
        overhead(server, scaled(5_000, scale).div_ceil(100) * 100).await;
        throughput(scaled(1_000, scale) * 1_000_000).await;
    });
}
