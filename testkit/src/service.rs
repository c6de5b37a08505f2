//! A real HTTP service on loopback whose behaviour a fault changes: it answers every request after a fixed
//! service time, and while a flag file exists (created by a fault's argv, e.g. Gorilla's `isolate: ["touch",
//! FLAG]`, removed by its `restore`) it answers slower, or with 500s. `/metrics` gives Prometheus counters
//! (`service_requests_total`, `service_errors_total`) for a Prometheus server to scrape.
//!
//! Each request is served concurrently (closed-loop probes see `concurrency / service time` requests per
//! second). The server runs on its own thread and runtime; dropping it stops it.

use std::convert::Infallible;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the fault does while the flag file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 200 after this service time instead.
    Slow(Duration),
    /// Answer 500 after the normal service time.
    Fail,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// The running service.
#[derive(Debug)]
pub struct FlagService {
    port: u16,
    flag: PathBuf,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl FlagService {
    /// Serve on `127.0.0.1:0`: `normal` service time, `fault` while `flag` exists.
    pub fn start(normal: Duration, fault: Fault, flag: PathBuf) -> FlagService {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("listener address").port();
        let counters = Arc::new(Counters::default());
        let (stop, mut stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build the service's runtime");
        let (c, f) = (counters.clone(), flag.clone());
        let thread = std::thread::Builder::new()
            .name(format!("flag-service-{port}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let (stream, _) = tokio::select! {
                            _ = stopped.changed() => return,
                            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        };
                        let _ = stream.set_nodelay(true);
                        let (c, f) = (c.clone(), f.clone());
                        tokio::spawn(async move {
                            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let (c, f) = (c.clone(), f.clone());
                                async move {
                                    Ok::<_, Infallible>(answer(req.uri().path(), normal, fault, &f, &c).await)
                                }
                            });
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                        });
                    }
                })
            })
            .expect("spawn the service thread");
        FlagService { port, flag, counters, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The flag file.
    pub fn flag(&self) -> &std::path::Path {
        &self.flag
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }
}

async fn answer(
    path: &str,
    normal: Duration,
    fault: Fault,
    flag: &std::path::Path,
    c: &Counters,
) -> Response<Full<Bytes>> {
    if path == "/metrics" {
        let text = format!(
            "# TYPE service_requests_total counter\nservice_requests_total {}\n# TYPE service_errors_total counter\nservice_errors_total {}\n",
            c.requests.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed)
        );
        return Response::new(Full::new(Bytes::from(text)));
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    let faulty = flag.exists();
    let (wait, status) = match (faulty, fault) {
        (false, _) => (normal, StatusCode::OK),
        (true, Fault::Slow(d)) => (d, StatusCode::OK),
        (true, Fault::Fail) => (normal, StatusCode::INTERNAL_SERVER_ERROR),
    };
    tokio::time::sleep(wait).await;
    if status != StatusCode::OK {
        c.errors.fetch_add(1, Ordering::Relaxed);
    }
    let mut r = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *r.status_mut() = status;
    r
}

impl Drop for FlagService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
