//! A real OpenSSH server on a loopback port, for tests of the ssh executor.
//!
//! [`Sshd::start`] runs Debian's `/usr/sbin/sshd` (installed by `./tests/run`) in the foreground on a free
//! `127.0.0.1` port, with its own host key, config, pid file and authorized key in a temporary directory, and
//! kills it when dropped. It accepts only the client key it generated ([`Sshd::identity_file`]), for the
//! current user, and [`Sshd::known_hosts`] trusts exactly its host key.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable that overrides where `sshd` is found.
pub const SSHD_ENV: &str = "SIMIAN_SSHD";
/// Where Debian's openssh-server puts the daemon.
pub const DEFAULT_SSHD: &str = "/usr/sbin/sshd";
/// How long sshd may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running sshd on `127.0.0.1`, killed on drop.
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
}

impl std::fmt::Debug for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sshd").field("port", &self.port).field("dir", &self.dir.path()).finish()
    }
}

/// Runs `program args`, panicking with its output unless it succeeds; returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}`: {e} (run ./tests/run, which installs it)"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where `sshd` is: `$SIMIAN_SSHD`, else `/usr/sbin/sshd`.
pub fn sshd_path() -> PathBuf {
    match std::env::var_os(SSHD_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SSHD),
    }
}

/// The user this process runs as.
fn current_user() -> String {
    run("id", &["-un"]).trim().to_string()
}

/// True when this process runs as root.
fn is_root() -> bool {
    run("id", &["-u"]).trim() == "0"
}

/// What sshd needs from the system: `/run/sshd` and the `sshd` privilege-separation user. Created when
/// missing and running as root (a throwaway test machine); otherwise a panic says what to do.
fn prepare_system() {
    let privsep = Path::new("/run/sshd");
    let has_user = Command::new("getent")
        .args(["passwd", "sshd"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !is_root() {
        // Non-root sshd runs without privilege separation and serves only its own user.
        return;
    }
    if !privsep.is_dir() {
        fs::create_dir_all(privsep).unwrap_or_else(|e| panic!("cannot create {}: {e}", privsep.display()));
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(privsep, fs::Permissions::from_mode(0o755));
    }
    if !has_user {
        run(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--home-dir",
                "/run/sshd",
                "--shell",
                "/usr/sbin/nologin",
                "sshd",
            ],
        );
    }
}

impl Sshd {
    /// Starts sshd on a free loopback port and waits until it accepts connections.
    ///
    /// Panics, saying to run `./tests/run`, when sshd is not installed.
    pub fn start() -> Sshd {
        let sshd = sshd_path();
        if !sshd.is_file() {
            panic!(
                "sshd not found at {} ({SSHD_ENV} overrides): the ssh tests need Debian's openssh-server; \
                 run ./tests/run, which installs it with apt-get",
                sshd.display()
            );
        }
        prepare_system();
        let dir = tempfile::Builder::new().prefix("simian-sshd-").tempdir().expect("temp dir");
        let d = dir.path();
        let host_key = d.join("host_ed25519_key");
        let client_key = d.join("id_ed25519");
        for (key, comment) in [(&host_key, "simian-test-host"), (&client_key, "simian-test-client")] {
            run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key.to_str().expect("utf-8 path")],
            );
        }
        let authorized = d.join("authorized_keys");
        fs::copy(d.join("id_ed25519.pub"), &authorized).expect("write authorized_keys");
        let user = current_user();
        // Retry on the small chance that another process takes the port between picking and binding it.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = crate::free_port();
            let config = d.join("sshd_config");
            fs::write(&config, config_text(d, port, &host_key, &authorized)).expect("write sshd_config");
            let log = d.join("sshd.log");
            let log_file = fs::File::create(&log).expect("create sshd.log");
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("try_wait sshd") {
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    eprintln!("sshd on port {port} exited ({status}):\n{last_log}");
                    break;
                }
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    let host_pub = fs::read_to_string(d.join("host_ed25519_key.pub")).expect("host key");
                    let mut fields = host_pub.split_whitespace();
                    let (kind, key) = (fields.next().expect("key type"), fields.next().expect("key"));
                    fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {kind} {key}\n"))
                        .expect("write known_hosts");
                    fs::write(d.join("empty_known_hosts"), "").expect("write empty known_hosts");
                    return Sshd { child, dir, port, user };
                }
                if start.elapsed() > START_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sshd did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT:?}:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("sshd would not start:\n{last_log}");
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private key it accepts.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// A known_hosts file holding its host key as `[127.0.0.1]:PORT`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// An empty known_hosts file (every host key unknown).
    pub fn empty_known_hosts(&self) -> PathBuf {
        self.dir.path().join("empty_known_hosts")
    }

    /// The user to log in as: the one running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its temporary directory (config, keys, `sshd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd logged so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// The sshd_config of a test server.
fn config_text(dir: &Path, port: u16, host_key: &Path, authorized: &Path) -> String {
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         MaxSessions 64\n\
         MaxStartups 64:30:128\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        authorized = authorized.display(),
    )
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
