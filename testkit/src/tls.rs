//! A TLS front on loopback: terminates HTTPS with a certificate from a throwaway CA and forwards the plain
//! bytes to a local upstream (moto's server), so a test can reach a real server over `https://127.0.0.1:PORT`
//! and decide, per process, whether its CA is trusted (`SSL_CERT_FILE`).
//!
//! The CA and the leaf (subjectAltName IP 127.0.0.1) are made with the `openssl` command; the front is a short
//! Python program (`ssl` + threads), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Relays each TLS connection to the upstream port, byte for byte, in both directions.
const FRONT: &str = r#"
import os, socket, ssl, sys, threading
cert, key, upstream, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
with open(ready + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
os.rename(ready + ".tmp", ready)

def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def handle(conn):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        conn.close()
        return
    up = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pump, args=(tls, up), daemon=True).start()
    pump(up, tls)

while True:
    conn, _ = srv.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"#;

/// A running TLS front; the process is killed and the key material removed on drop.
#[derive(Debug)]
pub struct TlsFront {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run openssl (Debian package openssl, installed by ./tests/run): {e}")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes, in `dir`, a throwaway CA (`ca.pem`) and a leaf for 127.0.0.1 that it signed (`leaf.pem`,
/// `leaf.key`), with the `openssl` command.
pub fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=simian test CA"]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write leaf.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

impl TlsFront {
    /// Makes a CA and a 127.0.0.1 leaf, then starts the front relaying to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> TlsFront {
        let dir = tempfile::tempdir().expect("tempdir");
        make_certificates(dir.path());
        let ready = dir.path().join("ready");
        let mut child = Command::new("python3")
            .args(["-c", FRONT])
            .arg(dir.path().join("leaf.pem"))
            .arg(dir.path().join("leaf.key"))
            .arg(upstream.to_string())
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the TLS front (python3)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&ready).ok().and_then(|s| s.trim().parse().ok()) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the TLS front exited with {status}");
            }
            assert!(Instant::now() < deadline, "the TLS front did not start within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        TlsFront { child, port, dir }
    }

    /// `https://127.0.0.1:PORT`, for `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA's certificate (PEM): point `SSL_CERT_FILE` at it to trust the front.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
