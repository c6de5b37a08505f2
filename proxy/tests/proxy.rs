//! The latency proxy against real TCP servers on loopback, in real time (and one test in paused tokio time).

use std::net::SocketAddr;
use std::time::Duration;

use simian_proxy::{ProxyError, ProxySpec, RunningProxy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// A request/reply server: answers each line with `re: <line>`.
async fn line_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
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

/// An echo server: copies every byte back, and half-closes after the client does.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

fn spec(upstream: SocketAddr, delay_ms: u64, jitter_ms: u64) -> ProxySpec {
    ProxySpec {
        listen: "127.0.0.1:0".to_owned(),
        upstream: upstream.to_string(),
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::from_millis(jitter_ms),
        seed: 7,
    }
}

/// Times `n` request/replies over one connection to `addr`.
async fn round_trips(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        write.write_all(format!("ping {i}\n").as_bytes()).await.unwrap();
        let reply = timeout(Duration::from_secs(5), lines.next_line()).await.unwrap().unwrap().unwrap();
        times.push(started.elapsed());
        assert_eq!(reply, format!("re: ping {i}"));
    }
    times
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test]
async fn a_100ms_proxy_adds_100ms_to_a_request_reply_not_200() {
    let server = line_server().await;
    let proxy = RunningProxy::start(spec(server, 100, 0)).await.unwrap();
    let direct = median(round_trips(server, 10).await);
    let proxied = median(round_trips(proxy.local_addr(), 10).await);
    let added = ms(proxied) - ms(direct);
    assert!((90.0..=110.0).contains(&added), "added {added:.1} ms (direct {direct:?}, proxied {proxied:?})");
    let stats = proxy.stop().await;
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.bytes_up, (0..10).map(|i| format!("ping {i}\n").len() as u64).sum::<u64>());
    assert_eq!(stats.bytes_down, (0..10).map(|i| format!("re: ping {i}\n").len() as u64).sum::<u64>());
}

#[tokio::test]
async fn with_jitter_the_mean_added_latency_is_the_delay() {
    let server = line_server().await;
    let proxy = RunningProxy::start(spec(server, 100, 20)).await.unwrap();
    let direct = median(round_trips(server, 10).await);
    let proxied = round_trips(proxy.local_addr(), 30).await;
    let added: Vec<f64> = proxied.iter().map(|t| ms(*t) - ms(direct)).collect();
    let mean = added.iter().sum::<f64>() / added.len() as f64;
    let sd = (added.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (added.len() - 1) as f64).sqrt();
    // 30 samples of sd 20 ms: the mean's standard error is ~3.7 ms.
    assert!((88.0..=115.0).contains(&mean), "mean added {mean:.1} ms, sd {sd:.1} ms");
    assert!((8.0..=35.0).contains(&sd), "jitter not applied: sd {sd:.1} ms (mean {mean:.1} ms)");
    proxy.stop().await;
}

/// Deterministic bytes that show any reordering or loss.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data` through `addr` to the echo server, half-closes, and returns everything read back.
async fn echo_through(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sent = data.to_vec();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        write.shutdown().await.unwrap();
        write
    });
    let mut back = Vec::new();
    timeout(Duration::from_secs(30), read.read_to_end(&mut back)).await.unwrap().unwrap();
    drop(writer.await.unwrap());
    back
}

#[tokio::test]
async fn five_mib_arrive_byte_identical_and_in_order_with_50ms_jitter() {
    let server = echo_server().await;
    let proxy = RunningProxy::start(spec(server, 20, 50)).await.unwrap();
    let data = pattern(5 * 1024 * 1024);
    let back = echo_through(proxy.local_addr(), &data).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "bytes differ at {}", back.iter().zip(&data).position(|(a, b)| a != b).unwrap());
    let stats = proxy.stop().await;
    assert_eq!(stats.bytes_up, data.len() as u64);
    assert_eq!(stats.bytes_down, data.len() as u64);
}

#[tokio::test]
async fn zero_delay_passes_data_through() {
    let server = echo_server().await;
    let proxy = RunningProxy::start(spec(server, 0, 0)).await.unwrap();
    let data = pattern(300_000);
    let started = Instant::now();
    let back = echo_through(proxy.local_addr(), &data).await;
    assert!(back == data);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    let direct = median(round_trips(line_server().await, 5).await);
    assert!(direct < Duration::from_millis(20));
    proxy.stop().await;
}

#[tokio::test]
async fn the_upstream_fin_reaches_the_client_after_its_delayed_data() {
    // The server answers once the client half-closed, then closes: the client must see the whole answer
    // (delayed) and then EOF.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).await.unwrap();
        stream.write_all(format!("got {} bytes", request.len()).as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let proxy = RunningProxy::start(spec(server, 60, 0)).await.unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    client.shutdown().await.unwrap();
    let started = Instant::now();
    let mut reply = String::new();
    timeout(Duration::from_secs(5), client.read_to_string(&mut reply)).await.unwrap().unwrap();
    assert_eq!(reply, "got 5 bytes");
    assert!(started.elapsed() >= Duration::from_millis(55), "EOF came early: {:?}", started.elapsed());
    proxy.stop().await;
}

#[tokio::test]
async fn stop_releases_the_port_and_closes_client_connections() {
    let server = line_server().await;
    let proxy = RunningProxy::start(spec(server, 100, 0)).await.unwrap();
    let addr = proxy.local_addr();
    assert_eq!(round_trips(addr, 1).await.len(), 1);

    // An open connection with a reply still in the delay queue when stop() comes.
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"ping\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let started = Instant::now();
    let stats = proxy.stop().await;
    assert!(started.elapsed() < Duration::from_millis(200), "stop took {:?}", started.elapsed());
    assert_eq!(stats.connections, 2);

    let mut rest = Vec::new();
    let read = timeout(Duration::from_millis(500), open.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "client connection still open after stop");
    assert!(rest.is_empty(), "a not-yet-due reply leaked out: {rest:?}");

    // Both the standard library and tokio can bind the port at once; so can a new proxy.
    drop(std::net::TcpListener::bind(addr).expect("port released for std"));
    drop(TcpListener::bind(addr).await.expect("port released for tokio"));
    let again =
        RunningProxy::start(ProxySpec { listen: addr.to_string(), ..spec(server, 0, 0) }).await.unwrap();
    assert_eq!(again.local_addr(), addr);
    assert_eq!(round_trips(addr, 1).await.len(), 1);
    again.stop().await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting after stop");
}

#[tokio::test]
async fn start_on_an_occupied_port_fails_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err =
        RunningProxy::start(ProxySpec { listen: addr.clone(), ..spec("127.0.0.1:9".parse().unwrap(), 0, 0) })
            .await
            .unwrap_err();
    assert!(matches!(err, ProxyError::Bind { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot listen on {addr}: address already in use"));
}

#[tokio::test]
async fn bad_addresses_are_named() {
    let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let err = RunningProxy::start(ProxySpec { listen: "127.0.0.1".to_owned(), ..spec(upstream, 0, 0) })
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("bad listen address `127.0.0.1`: "), "{err}");
    let err = RunningProxy::start(ProxySpec { upstream: "no-port".to_owned(), ..spec(upstream, 0, 0) })
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("bad upstream address `no-port`: "), "{err}");
    let err = RunningProxy::start(ProxySpec { listen: "192.0.2.1:8080".to_owned(), ..spec(upstream, 0, 0) })
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("cannot listen on 192.0.2.1:8080: "), "{err}");
}

#[tokio::test]
async fn an_unreachable_upstream_closes_the_client() {
    // A port nobody listens on: bind one, note it, release it.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let proxy = RunningProxy::start(spec(free, 0, 0)).await.unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(2), client.read(&mut buf)).await.expect("client left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_pushes_back_on_the_upstream() {
    // The upstream tries to send 64 MiB to a client that reads nothing: the proxy queues at most 4 MiB, so the
    // upstream gets stuck well before the end (kernel socket buffers hold a few MiB more).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        while sent < 64 * 1024 * 1024 {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len();
            let _ = sent_tx.send(sent);
        }
    });
    let proxy = RunningProxy::start(spec(server, 0, 0)).await.unwrap();
    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sent = *sent_rx.borrow_and_update();
    assert!(sent > 0, "nothing flowed");
    assert!(sent < 32 * 1024 * 1024, "no backpressure: upstream sent {} MiB", sent >> 20);
    drop(client);
    proxy.stop().await;
}

#[tokio::test(start_paused = true)]
async fn in_paused_time_the_delay_is_exact() {
    let server = line_server().await;
    let proxy = RunningProxy::start(spec(server, 250, 0)).await.unwrap();
    let times = round_trips(proxy.local_addr(), 3).await;
    for t in times {
        // Virtual time only moves at timers: the reply is released exactly 250 ms after it arrived.
        assert!(t >= Duration::from_millis(250) && t < Duration::from_millis(260), "{t:?}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_reset_on_one_side_resets_the_other() {
    // Upstream resets after its reply: the client gets the (delayed) reply, then a reset, not a clean EOF.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let (upstream_saw_tx, upstream_saw) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        first.write_all(b"bye").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.set_zero_linger().unwrap();
        drop(first);
        // Second connection: the client resets; see what the upstream reads.
        let (mut second, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let read = timeout(Duration::from_secs(2), second.read(&mut buf)).await;
        let _ = upstream_saw_tx.send(read.map(|r| r.map_err(|e| e.kind())));
    });
    let proxy = RunningProxy::start(spec(server, 50, 0)).await.unwrap();

    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut got = Vec::new();
    let read = timeout(Duration::from_secs(2), client.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"bye");
    assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset));

    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.set_zero_linger().unwrap();
    drop(client);
    let saw = upstream_saw.await.unwrap().expect("upstream left hanging");
    assert_eq!(saw, Err(std::io::ErrorKind::ConnectionReset));
    proxy.stop().await;
}
