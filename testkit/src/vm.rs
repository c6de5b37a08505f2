//! A real Linux guest with `sch_netem`, under QEMU, for tests of simian's latency monkey.
//!
//! The machines this project runs on have no `sch_netem` (`tc qdisc add … netem` fails with "Specified qdisc
//! kind is unknown"), so [`Guest::boot`] boots Debian's 6.1 kernel under QEMU software emulation (TCG) with a
//! small initramfs: busybox-static, dash as `/bin/sh` (busybox ash shadows a real `tc` with its own applet),
//! the host's `tc`, `ip` and `nohup` with their libraries, the modules `sch_netem` and `virtio_net` (with
//! their dependencies, loaded in order by insmod), Debian's sshd, and busybox `httpd` serving a two-byte file
//! (`ok\n`) on port 8080. QEMU's user networking gives the guest `10.0.2.15/24` (default route via
//! `10.0.2.2`) on `eth0` and forwards two free `127.0.0.1` ports to the guest's 22 and 8080; the network is
//! `restrict=on`, so the guest reaches nothing outside. Each guest has its own client key and host key, and
//! a known_hosts file for the host side, so SSH runs with `StrictHostKeyChecking=yes`.
//!
//! What the harness needs: `qemu-system-x86_64`, `ssh`/`ssh-keygen`, `busybox` (static), `dash`, `tc`/`ip`
//! (iproute2) and `nohup` on the host, and the packages `testkit/vm/fetch.sh` downloads with `apt-get
//! download` into `target/vm-cache` (Debian's `linux-image-6.1.0-*-amd64`, `openssh-server`, `libwrap0`).
//! `./tests/run` installs and fetches all of it. The initramfs is built once per set of inputs by
//! `testkit/vm/build-rootfs.sh` and cached as `target/vm-cache/initramfs-<hash>.cpio`; each boot appends
//! its keys as a second cpio archive.
//!
//! Everything here is blocking (call it from `spawn_blocking`, or before a runtime starts, in async tests).
//! A boot takes a few seconds (about 5–10 on two cores); the guest is killed when the [`Guest`] is dropped,
//! and powers itself off after [`MAX_LIFETIME_ENV`] seconds (default 1800) in case a test process dies
//! without dropping it. Guests use one emulated CPU each: a test binary should not boot many at once.
//!
//! When the harness cannot run (no QEMU, no kernel package), [`Guest::boot`] panics with the reason. Tests
//! that need a guest are named `vm_…`: `SIMIAN_SKIP_VM=1 ./tests/run` leaves them out with `--skip vm_` and
//! says so loudly, instead of letting them pass without running.
//!
//! Pitfalls worth knowing in tests: with QEMU user networking a host-side `connect()` completes at once
//! (QEMU accepts it), so time a request and its reply ([`Guest::http_round_trip`]), not the connect; netem on
//! `eth0` also delays SSH to the guest; `eth0`'s qdisc is `fq_codel` at boot and again after `tc qdisc del dev
//! eth0 root` (not `pfifo_fast`). A delay D on `eth0` shows as about 2·D in one [`Guest::http_round_trip`]:
//! the guest's SYN-ACK to QEMU and its reply both leave through `eth0` (measured: ~6 ms without, ~206 ms with
//! `netem delay 100ms`).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `SIMIAN_SKIP_VM=1 ./tests/run` leaves the tests that need a guest (named `vm_…`) out, saying so.
pub const SKIP_ENV: &str = "SIMIAN_SKIP_VM";
/// Overrides the cache folder (default `<workspace>/target/vm-cache`).
pub const CACHE_ENV: &str = "SIMIAN_VM_CACHE";
/// Seconds [`Guest::boot`] waits for SSH to work (default 90).
pub const BOOT_TIMEOUT_ENV: &str = "SIMIAN_VM_BOOT_TIMEOUT";
/// Seconds after which the guest powers itself off (default 1800), should its test never drop it.
pub const MAX_LIFETIME_ENV: &str = "SIMIAN_VM_MAX_LIFETIME";
/// The guest's address on its `eth0` (QEMU user networking).
pub const GUEST_ADDR: &str = "10.0.2.15";
/// The guest's interface.
pub const GUEST_IFACE: &str = "eth0";
/// The port busybox `httpd` listens on inside the guest.
pub const GUEST_HTTP_PORT: u16 = 8080;
/// What `GET /` from the guest's `httpd` returns as its body.
pub const HTTP_BODY: &str = "ok\n";

/// Bumped whenever the way the initramfs is put together changes (part of the cache key).
const LAYOUT_VERSION: &str = "1";
/// Modules the guest loads (their dependencies come along).
const MODULES: &str = "sch_netem virtio_net virtio_pci";
/// Printed on the console by the guest's /etc/rc once sshd and httpd are started.
const READY_MARK: &str = "simian-guest: ready";

/// Where the downloaded packages and the built initramfs are kept.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::workspace_root().join("target/vm-cache"),
    }
}

/// The folder holding `fetch.sh` and `build-rootfs.sh`.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm")
}

/// A booted guest with `sch_netem`, reachable over SSH as root on a loopback port. Killed on drop.
#[derive(Debug)]
pub struct Guest {
    child: Child,
    dir: tempfile::TempDir,
    ssh_port: u16,
    http_port: u16,
    identity: PathBuf,
    known_hosts: PathBuf,
    console: PathBuf,
    boot_time: Duration,
}

impl Guest {
    /// Boots a guest and waits until SSH works (up to [`BOOT_TIMEOUT_ENV`], default 90 s). Blocking.
    ///
    /// Panics, loudly and with the reason, when the harness cannot run here or the guest does not come up.
    pub fn boot() -> Guest {
        match Guest::try_boot() {
            Ok(guest) => guest,
            Err(e) => panic!(
                "\n\n*** the netem test guest (testkit::vm) cannot run: {e} ***\n\
                 ./tests/run installs what it needs (qemu-system-x86 from bookworm-backports, busybox-static, \
                 iproute2, openssh-client) and fetches the kernel into target/vm-cache; `{SKIP_ENV}=1 ./tests/run` \
                 leaves the `vm_` tests out, saying so.\n\n"
            ),
        }
    }

    /// Like [`Guest::boot`], with the reason as an error instead of a panic.
    pub fn try_boot() -> Result<Guest, String> {
        let started = Instant::now();
        for tool in ["qemu-system-x86_64", "ssh", "ssh-keygen"] {
            if find_in_path(tool).is_none() {
                return Err(format!("{tool} is not installed"));
            }
        }
        let image = Image::get()?;
        let timeout = env_secs(BOOT_TIMEOUT_ENV, 90);
        let mut last = String::new();
        // A free port can be taken between our look and QEMU's bind: QEMU then exits, and we retry.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("simian-vm-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
            let mut guest = Guest::spawn(&image, dir, started)?;
            match guest.wait_ready(timeout) {
                Ok(()) => {
                    guest.boot_time = started.elapsed();
                    return Ok(guest);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(image: &Image, dir: tempfile::TempDir, started: Instant) -> Result<Guest, String> {
        let path = dir.path();
        let identity = path.join("id_ed25519");
        let host_key = path.join("ssh_host_ed25519_key");
        keygen(&identity, "simian-test-client")?;
        keygen(&host_key, "root@simian-guest")?;

        // The per-boot keys travel as a second cpio archive appended to the cached one.
        let initrd = path.join("initrd.cpio");
        let mut out =
            io::BufWriter::new(fs::File::create(&initrd).map_err(|e| format!("{}: {e}", initrd.display()))?);
        let copy = |out: &mut io::BufWriter<fs::File>| -> io::Result<()> {
            io::copy(&mut fs::File::open(&image.initramfs)?, out)?;
            let mut cpio = Cpio::new(&mut *out);
            cpio.file("etc/ssh/ssh_host_ed25519_key", 0o600, &fs::read(&host_key)?)?;
            cpio.file("root/.ssh/authorized_keys", 0o600, &fs::read(identity.with_extension("pub"))?)?;
            cpio.finish()?;
            out.flush()
        };
        copy(&mut out).map_err(|e| format!("cannot write {}: {e}", initrd.display()))?;
        drop(out);

        let ssh_port = crate::free_port();
        let mut http_port = crate::free_port();
        while http_port == ssh_port {
            http_port = crate::free_port();
        }
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).map_err(|e| e.to_string())?;
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known_hosts = path.join("known_hosts");
        fs::write(&known_hosts, format!("[127.0.0.1]:{ssh_port} {}\n", host_pub.join(" ")))
            .map_err(|e| format!("{}: {e}", known_hosts.display()))?;

        let console = path.join("console.log");
        let log = fs::File::create(&console).map_err(|e| format!("{}: {e}", console.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let max_life = env_secs(MAX_LIFETIME_ENV, 1800).as_secs();
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1", "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(format!("console=ttyS0 quiet panic=-1 simian.max_lifetime={max_life}"))
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,\
                 hostfwd=tcp:127.0.0.1:{http_port}-:{GUEST_HTTP_PORT}"
            ))
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        Ok(Guest {
            child,
            dir,
            ssh_port,
            http_port,
            identity,
            known_hosts,
            console,
            boot_time: started.elapsed(),
        })
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "QEMU exited with {status} before SSH worked; console:\n{}",
                    self.console_log()
                ));
            }
            if self.console_log().contains(READY_MARK) {
                let out = self.ssh_with_timeout(&["true"], 5);
                if out.status.success() {
                    return Ok(());
                }
                last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "SSH to the guest did not work within {limit:?} (last ssh error: {last:?}); console:\n{}",
                    self.console_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `127.0.0.1` port forwarded to the guest's sshd (port 22).
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The `127.0.0.1` port forwarded to the guest's busybox `httpd` (port 8080), which serves `ok\n` at `/`.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The host to connect to: `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The user to log in as: `root`.
    pub fn user(&self) -> &str {
        "root"
    }

    /// The private key (ed25519, no passphrase) the guest's root accepts; its public half is beside it (`.pub`).
    pub fn identity_file(&self) -> &Path {
        &self.identity
    }

    /// A known_hosts file with the guest's host key, as `[127.0.0.1]:PORT ssh-ed25519 …`.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The per-guest temporary folder (keys, known_hosts, console log); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long [`Guest::boot`] took, initramfs build (if any) included.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The options an OpenSSH client needs to reach the guest, destination excluded (`-p`, `-i`, the
    /// known_hosts file with `StrictHostKeyChecking=yes`, `BatchMode=yes`, no user config file).
    pub fn ssh_options(&self) -> Vec<String> {
        let mut args: Vec<String> =
            vec!["-F".into(), "/dev/null".into(), "-p".into(), self.ssh_port.to_string()];
        args.push("-i".into());
        args.push(self.identity.display().to_string());
        for option in [
            "IdentitiesOnly=yes".to_string(),
            "BatchMode=yes".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "LogLevel=ERROR".to_string(),
        ] {
            args.push("-o".into());
            args.push(option);
        }
        args
    }

    /// The `ssh` command for one remote command line, destination included (`root@127.0.0.1`), to which the
    /// caller adds the remote command.
    pub fn ssh_command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_options()).arg(format!("{}@{}", self.user(), self.host())).stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` in the guest over SSH (each argument shell-quoted, so it arrives as given) and returns
    /// its output; a connection timeout of 30 s. Use `&["sh", "-c", "…"]` for a shell command line.
    pub fn ssh(&self, argv: &[&str]) -> Output {
        self.ssh_with_timeout(argv, 30)
    }

    fn ssh_with_timeout(&self, argv: &[&str], connect_secs: u32) -> Output {
        // The same quoting simian's ssh executor uses: one function for every remote command line.
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        self.ssh_command()
            .args(["-o", &format!("ConnectTimeout={connect_secs}"), "--"])
            .arg(simian_targets::shell_quote(&argv))
            .output()
            .unwrap_or_else(|e| panic!("cannot run ssh: {e}"))
    }

    /// [`Guest::ssh`] that panics unless the command succeeds; its standard output.
    pub fn ssh_ok(&self, argv: &[&str]) -> String {
        let out = self.ssh(argv);
        assert!(
            out.status.success(),
            "guest command {argv:?} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything the guest has printed on its serial console so far (kernel messages, /etc/rc's output).
    pub fn console_log(&self) -> String {
        fs::read(&self.console).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The file the console is written to.
    pub fn console_log_path(&self) -> &Path {
        &self.console
    }

    /// One `GET /` to the guest's `httpd` through the forwarded port: the time from sending the request to
    /// the end of the reply (the connect is not timed: QEMU accepts it on the host at once, whatever the
    /// guest's qdisc does). Each call is a new connection, so a netem delay D on `eth0` adds about 2·D
    /// (the guest's SYN-ACK, then its reply). Fails unless the reply is `200` with body `ok\n`.
    pub fn http_round_trip(&self) -> io::Result<Duration> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let started = Instant::now();
        stream.write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n")?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&reply);
        if !text.starts_with("HTTP/1.") || !text.contains(" 200") || !text.ends_with(HTTP_BODY) {
            return Err(io::Error::other(format!("unexpected reply from the guest's httpd: {text:?}")));
        }
        Ok(took)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_secs(var: &str, default: u64) -> Duration {
    let secs = std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default);
    Duration::from_secs(secs)
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path).chain(extra).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn keygen(path: &Path, comment: &str) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if !out.status.success() {
        return Err(format!("ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// The cached kernel and initramfs.
struct Image {
    kernel: PathBuf,
    initramfs: PathBuf,
}

impl Image {
    /// Fetches the packages (once) and builds the initramfs (once per cache key), under a process-wide lock.
    fn get() -> Result<Image, String> {
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache_dir();
        fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        let fetched =
            ["kernel", "openssh-server", "libwrap0"].iter().all(|p| cache.join(p).join("PACKAGE").is_file());
        if !fetched {
            run_script("fetch.sh", &[cache.as_os_str()], None)?;
        }
        let boot = cache.join("kernel/boot");
        let kernel = fs::read_dir(&boot)
            .map_err(|e| format!("{}: {e}", boot.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
            .ok_or_else(|| format!("no vmlinuz-* in {}", boot.display()))?;

        let key = cache_key(&cache)?;
        let initramfs = cache.join(format!("initramfs-{key:016x}.cpio"));
        if !initramfs.is_file() {
            build_initramfs(&cache, &initramfs)?;
        }
        Ok(Image { kernel, initramfs })
    }
}

/// A hash of everything the initramfs is made from: the build script, the fetched packages' names, the
/// host binaries copied in (path, size, modification time), the module list and [`LAYOUT_VERSION`].
fn cache_key(cache: &Path) -> Result<u64, String> {
    let mut hash = Fnv::default();
    hash.add(LAYOUT_VERSION.as_bytes());
    hash.add(MODULES.as_bytes());
    let script = scripts_dir().join("build-rootfs.sh");
    hash.add(&fs::read(&script).map_err(|e| format!("{}: {e}", script.display()))?);
    for package in ["kernel", "openssh-server", "libwrap0"] {
        hash.add(&fs::read(cache.join(package).join("PACKAGE")).unwrap_or_default());
    }
    for tool in ["busybox", "dash", "tc", "ip", "nohup"] {
        let path = find_in_path(tool).ok_or_else(|| format!("{tool} is not installed on this host"))?;
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        hash.add(path.as_os_str().as_encoded_bytes());
        hash.add(&meta.len().to_le_bytes());
        hash.add(&meta.mtime().to_le_bytes());
    }
    Ok(hash.0)
}

fn build_initramfs(cache: &Path, dest: &Path) -> Result<(), String> {
    let staging = cache.join(format!(".rootfs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        run_script("build-rootfs.sh", &[cache.as_os_str(), staging.as_os_str()], Some(("MODULES", MODULES)))?;
        let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut out = io::BufWriter::new(fs::File::create(&tmp)?);
            let mut cpio = Cpio::new(&mut out);
            // The kernel opens /dev/console for init before anything mounts devtmpfs.
            cpio.node("dev/console", 0o020600, (5, 1))?;
            cpio.tree(&staging, "")?;
            cpio.finish()?;
            out.flush()
        };
        write().map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, dest).map_err(|e| format!("cannot rename to {}: {e}", dest.display()))?;
        // Older builds are of no more use.
        for entry in fs::read_dir(cache).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("initramfs-") && entry.path() != dest {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

fn run_script(name: &str, args: &[&std::ffi::OsStr], env: Option<(&str, &str)>) -> Result<(), String> {
    let script = scripts_dir().join(name);
    let mut cmd = Command::new("sh");
    cmd.arg(&script).args(args).stdin(Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// 64-bit FNV-1a: a hash that stays the same across Rust releases (unlike `DefaultHasher`).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A writer of the `newc` cpio format the kernel unpacks an initramfs from; everything owned by root.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Cpio<W> {
        Cpio { out, ino: 1000, written: 0 }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) -> io::Result<()> {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..n as usize])
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, data, (0, 0))
    }

    fn node(&mut self, name: &str, mode: u32, rdev: (u32, u32)) -> io::Result<()> {
        self.entry(name, mode, &[], rdev)
    }

    /// `dir`'s contents, recursively, as `prefix/…` (directories before what they hold; symlinks kept).
    fn tree(&mut self, dir: &Path, prefix: &str) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = fs::symlink_metadata(entry.path())?;
            let mode = meta.mode();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(entry.path())?;
                self.entry(&name, mode, target.as_os_str().as_encoded_bytes(), (0, 0))?;
            } else if meta.is_dir() {
                self.entry(&name, mode, &[], (0, 0))?;
                self.tree(&entry.path(), &format!("{name}/"))?;
            } else if meta.is_file() {
                let perm = meta.permissions().mode() & 0o7777;
                self.file(&name, perm, &fs::read(entry.path())?)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.entry("TRAILER!!!", 0, &[], (0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_entries_padded_to_four_bytes() {
        let mut buf = Vec::new();
        let mut cpio = Cpio::new(&mut buf);
        cpio.file("a", 0o644, b"xyz").unwrap();
        cpio.finish().unwrap();
        assert!(buf.starts_with(b"070701"));
        // header 110 + "a\0" 2 = 112 (aligned), data 3 + 1 pad = 116, then the trailer's header.
        assert_eq!(&buf[110..112], b"a\0");
        assert_eq!(&buf[112..116], b"xyz\0");
        assert_eq!(&buf[116..122], b"070701");
        assert_eq!(buf.len() % 4, 0);
    }
}
