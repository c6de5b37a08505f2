//! A real HTTP/1.1 server on loopback that records every request, for testing the Slack and webhook sinks.
//!
//! [`Receiver::start`] binds `127.0.0.1:0` and serves (hyper 1) on a background thread with its own tokio
//! runtime, so sync and async tests can both use it. It answers every request with [`Receiver::set_status`]
//! (default 200) and the headers of [`Receiver::set_headers`]. [`Receiver::set_down`] closes the listening
//! socket and every open connection, so new connections are refused until it is brought up again on the same
//! port. Dropping the receiver stops the thread.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long `set_down` waits for the server thread to apply the change.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `POST`, `GET`, …
    pub method: String,
    /// Path and query, e.g. `/hook?x=1`.
    pub path: String,
    /// Headers in arrival order; names lowercase (as hyper gives them).
    pub headers: Vec<(String, String)>,
    /// The body, complete.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

/// What the test thread asks of the server thread; `seq` lets the asker wait until it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    seq: u64,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    Down,
    Stop,
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    reply: Mutex<Reply>,
    /// The last applied control `seq`, or why it could not be applied.
    applied: Mutex<(u64, Option<String>)>,
    applied_cv: Condvar,
}

/// Poisoning only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn ack(&self, seq: u64, error: Option<String>) {
        *lock(&self.applied) = (seq, error);
        self.applied_cv.notify_all();
    }
}

/// A recording HTTP server on `127.0.0.1`; stopped when dropped.
#[derive(Debug)]
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Binds `127.0.0.1:0` and starts serving; ready to accept connections when this returns.
    pub fn start() -> Receiver {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make the listener non-blocking");
        let port = listener.local_addr().expect("listener address").port();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            reply: Mutex::new(Reply { status: 200, headers: Vec::new() }),
            applied: Mutex::new((0, None)),
            applied_cv: Condvar::new(),
        });
        let (control, rx) = watch::channel(Control { seq: 0, state: State::Up });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the receiver's tokio runtime");
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("receiver-{port}"))
            .spawn(move || runtime.block_on(run(listener, port, rx, thread_shared)))
            .expect("spawn the receiver thread");
        Receiver { port, shared, control, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT<path>`; a missing leading `/` is added.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://127.0.0.1:{}{slash}{path}", self.port)
    }

    /// The port it listens on (the same across `set_down`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// The status code of every later answer (default 200).
    pub fn set_status(&self, status: u16) {
        lock(&self.shared.reply).status = status;
    }

    /// Extra headers of every later answer (e.g. `Retry-After`), replacing earlier ones.
    pub fn set_headers(&self, headers: &[(&str, &str)]) {
        lock(&self.shared.reply).headers =
            headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    }

    /// `true` closes the listening socket and every open connection (new connections are refused);
    /// `false` listens on the same port again. Returns once the change is in effect.
    pub fn set_down(&self, down: bool) {
        let state = if down { State::Down } else { State::Up };
        let mut seq = 0;
        self.control.send_modify(|c| {
            c.seq += 1;
            c.state = state;
            seq = c.seq;
        });
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        let mut applied = lock(&self.shared.applied);
        while applied.0 < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "receiver on port {} did not apply set_down({down}) within {CONTROL_TIMEOUT:?}",
                    self.port
                );
            }
            applied = self.shared.applied_cv.wait_timeout(applied, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        if let Some(error) = &applied.1 {
            panic!("receiver on port {}: set_down({down}) failed: {error}", self.port);
        }
    }

    /// Waits until at least `n` requests have arrived; false if `timeout` passed first.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let requests = lock(&self.shared.requests);
        let (requests, _) = self
            .shared
            .arrived
            .wait_timeout_while(requests, timeout, |r| r.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        requests.len() >= n
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.control.send_modify(|c| {
            c.seq += 1;
            c.state = State::Stop;
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds the port again; `SO_REUSEADDR` because closed connections leave it in TIME_WAIT.
async fn rebind(port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last = String::new();
    // A client socket may briefly hold the port as its local port; retry for a while.
    for _ in 0..100 {
        let attempt = TcpSocket::new_v4().and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(1024)
        });
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("cannot bind {addr} again: {last}"))
}

/// The server thread: applies control changes and accepts connections while up.
async fn run(listener: StdListener, port: u16, mut control: watch::Receiver<Control>, shared: Arc<Shared>) {
    let mut listener = match TcpListener::from_std(listener) {
        Ok(l) => Some(l),
        Err(e) => {
            shared.ack(0, Some(format!("cannot use the listener: {e}")));
            None
        }
    };
    let mut conns = JoinSet::new();
    loop {
        let Control { seq, state } = *control.borrow_and_update();
        match state {
            State::Stop => return,
            State::Down => {
                listener = None;
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                shared.ack(seq, None);
            }
            State::Up => {
                let mut error = None;
                if listener.is_none() {
                    match rebind(port).await {
                        Ok(l) => listener = Some(l),
                        Err(e) => error = Some(e),
                    }
                }
                shared.ack(seq, error);
            }
        }
        loop {
            tokio::select! {
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                accepted = accept(listener.as_ref()) => {
                    if let Ok((stream, _)) = accepted {
                        conns.spawn(serve(stream, shared.clone()));
                    }
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }
}

/// Accepts on the listener, or never completes when there is none (down).
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |req| handle(req, shared.clone()));
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// Records the request (before answering, so a client that got its answer finds it recorded) and answers.
async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    };
    lock(&shared.requests).push(recorded);
    shared.arrived.notify_all();
    let reply = lock(&shared.reply).clone();
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &reply.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;

    /// One HTTP/1.1 request over a fresh connection; the raw response.
    fn post(port: u16, path: &str, body: &str) -> std::io::Result<String> {
        let mut s = StdStream::connect((Ipv4Addr::LOCALHOST, port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Test: yes\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn records_requests_and_answers_with_the_configured_status() {
        let r = Receiver::start();
        assert!(r.url("hook").ends_with("/hook"));
        let answer = post(r.port(), "/hook?x=1", "hello").unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        r.set_status(503);
        r.set_headers(&[("Retry-After", "7")]);
        let answer = post(r.port(), "/again", "").unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 7"), "{answer}");
        assert!(r.wait_for(2, Duration::from_secs(5)));
        let got = r.requests();
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, "/hook?x=1");
        assert_eq!(got[0].body, b"hello");
        assert_eq!(got[0].header("x-test"), Some("yes"));
        assert_eq!(got[1].path, "/again");
        assert!(!r.wait_for(3, Duration::from_millis(50)));
        r.clear();
        assert!(r.requests().is_empty());
    }

    #[test]
    fn down_refuses_connections_and_up_serves_the_same_port_again() {
        let r = Receiver::start();
        post(r.port(), "/a", "").unwrap();
        r.set_down(true);
        let err = StdStream::connect((Ipv4Addr::LOCALHOST, r.port())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        r.set_down(false);
        assert!(post(r.port(), "/b", "").unwrap().starts_with("HTTP/1.1 200"));
        assert_eq!(r.requests().len(), 2);
    }

    #[test]
    fn down_closes_open_connections() {
        let r = Receiver::start();
        let mut s = StdStream::connect((Ipv4Addr::LOCALHOST, r.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        r.set_down(true);
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        // Closed: end of stream or a reset, never an answer.
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
        assert!(r.requests().is_empty());
    }

    #[tokio::test]
    async fn works_from_async_tests_and_stops_on_drop() {
        let r = Receiver::start();
        let port = r.port();
        let answer = tokio::task::spawn_blocking(move || post(port, "/x", "{}")).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"));
        drop(r);
        assert!(StdStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }
}
