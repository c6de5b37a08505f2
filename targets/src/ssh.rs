//! The `ssh` executor: argv run on the instance through the system's OpenSSH client.
//!
//! simian runs `ssh` itself (tokio::process, no local shell), so users keep their `~/.ssh/config`, agent,
//! `ProxyJump` and so on. Host keys are always checked (`StrictHostKeyChecking=yes`, never `accept-new`),
//! nothing ever prompts (`BatchMode=yes`), and connections to a host are shared through a ControlMaster
//! socket in a private runtime directory. The remote command is the argv quoted once by
//! [`shell_quote`] for the remote login shell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use simian_config::SshExecutorConfig;
use simian_monkeys::Instance;

use crate::command::{display_argv, ExecError};
use crate::quote::shell_quote;
use crate::template;

/// Connect timeout when the executor sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle shared connection stays up when the executor sets no `control_persist`.
pub const DEFAULT_CONTROL_PERSIST: Duration = Duration::from_secs(60);
/// The exit status with which `ssh` reports its own failures (connection, authentication, host key).
pub const SSH_FAILURE_STATUS: i32 = 255;
/// Longest ControlPath directory used: a unix socket path holds at most 104–108 bytes, and ssh adds
/// `/simian-ssh-` + a 40-character `%C` hash + a temporary 17-character suffix while creating the socket.
const MAX_CONTROL_DIR_LEN: usize = 104 - 12 - 40 - 17;

/// A runtime `ssh` executor, built from an [`SshExecutorConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshExecutor {
    program: String,
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<String>,
    known_hosts: Option<String>,
    connect_timeout: Duration,
    control_persist: Duration,
    host: Option<String>,
    control_dir: Option<PathBuf>,
}

impl SshExecutor {
    /// Builds the executor from its configuration; no I/O.
    pub fn from_config(config: &SshExecutorConfig) -> Self {
        SshExecutor {
            program: "ssh".to_string(),
            user: config.user.clone(),
            port: config.port,
            identity_file: config.identity_file.clone(),
            known_hosts: config.known_hosts.clone(),
            connect_timeout: config.connect_timeout.map(|d| d.std()).unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            control_persist: config.control_persist.map(|d| d.std()).unwrap_or(DEFAULT_CONTROL_PERSIST),
            host: config.host.clone(),
            control_dir: None,
        }
    }

    /// Puts ControlMaster sockets in `dir` instead of the default runtime directory (tests, several agents).
    pub fn with_control_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.control_dir = Some(dir.into());
        self
    }

    /// Runs `program` instead of `ssh` (e.g. a full path).
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// The host to connect to for `inst`: the rendered `host` template, else its address, else its id.
    pub fn host_for(&self, inst: &Instance) -> Result<String, ExecError> {
        let host = match &self.host {
            Some(t) => {
                let rendered = template::render(std::slice::from_ref(t), inst).map_err(ExecError::Prefix)?;
                rendered.into_iter().next().unwrap_or_default()
            }
            None => inst.address.clone().unwrap_or_else(|| inst.id.clone()),
        };
        if host.trim().is_empty() {
            return Err(ExecError::Ssh {
                host: format!("instance `{}`", inst.id),
                reason: "the host to connect to is empty".to_string(),
            });
        }
        Ok(host)
    }

    /// `user@host:port` as messages show it (only the parts that are set).
    pub fn destination(&self, host: &str) -> String {
        let mut out = String::new();
        if let Some(user) = &self.user {
            out.push_str(user);
            out.push('@');
        }
        out.push_str(host);
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        out
    }

    /// Where this executor keeps its ControlMaster sockets: the configured directory, else
    /// `$XDG_RUNTIME_DIR`, else `simian-<uid>` under the temporary directory (or `/tmp` when that path is too
    /// long for a socket). `None` when no short, plain path exists (connections are then not shared).
    pub fn control_dir(&self) -> Option<PathBuf> {
        let candidates = [
            self.control_dir.clone(),
            std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).map(PathBuf::from),
            Some(std::env::temp_dir().join(private_dir_name())),
            Some(Path::new("/tmp").join(private_dir_name())),
        ];
        candidates.into_iter().flatten().find(|d| {
            let text = d.to_string_lossy();
            text.len() <= MAX_CONTROL_DIR_LEN
                && !text.chars().any(|c| c.is_whitespace() || "%\"'\\".contains(c))
        })
    }

    /// The ControlPath pattern (`<control dir>/simian-ssh-%C`), if connections are shared.
    pub fn control_path(&self) -> Option<PathBuf> {
        self.control_dir().map(|d| d.join("simian-ssh-%C"))
    }

    /// The full local argv that runs `argv` on `inst`: `ssh <options> -- HOST '<quoted argv>'`.
    pub fn command_line(&self, inst: &Instance, argv: &[String]) -> Result<Vec<String>, ExecError> {
        if argv.is_empty() {
            return Err(ExecError::Empty);
        }
        let host = self.host_for(inst)?;
        let mut cmd = vec![self.program.clone()];
        let mut opt = |o: String| {
            cmd.push("-o".to_string());
            cmd.push(o);
        };
        opt("BatchMode=yes".to_string());
        opt("StrictHostKeyChecking=yes".to_string());
        opt(format!("ConnectTimeout={}", whole_seconds(self.connect_timeout)));
        opt("LogLevel=ERROR".to_string());
        if let Some(known_hosts) = &self.known_hosts {
            opt(format!("UserKnownHostsFile={}", option_path(&expand_home(known_hosts))));
        }
        if let Some(identity) = &self.identity_file {
            opt(format!("IdentityFile={}", option_path(&expand_home(identity))));
            opt("IdentitiesOnly=yes".to_string());
        }
        if let Some(path) = self.control_path() {
            opt("ControlMaster=auto".to_string());
            // control_dir() only returns paths without whitespace, quotes or `%`, so `%C` is the only token.
            opt(format!("ControlPath={}", path.display()));
            opt(format!("ControlPersist={}", whole_seconds(self.control_persist)));
        }
        cmd.push("-T".to_string());
        if let Some(user) = &self.user {
            cmd.push("-l".to_string());
            cmd.push(user.clone());
        }
        if let Some(port) = self.port {
            cmd.push("-p".to_string());
            cmd.push(port.to_string());
        }
        cmd.push("--".to_string());
        cmd.push(host);
        cmd.push(shell_quote(argv));
        Ok(cmd)
    }

    /// Creates the ControlMaster directory if needed and checks that only we can use it (a directory, not a
    /// symlink, owned by us, mode 0700). On failure connections are simply not shared.
    pub fn prepare_control_dir(&self) -> Result<(), String> {
        let Some(dir) = self.control_dir() else {
            return Ok(());
        };
        ensure_private_dir(&dir)
    }

    /// `argv` on `inst` as messages show it: ``` `kill -TERM 42` on root@web-1:22 over ssh ```.
    pub fn describe(&self, inst: &Instance, argv: &[String]) -> Result<String, ExecError> {
        let host = self.host_for(inst)?;
        Ok(format!("`{}` on {} over ssh", display_argv(argv), self.destination(&host)))
    }
}

/// Rounds a timeout up to whole seconds, at least 1 (ssh takes seconds).
fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// `~/x` → `$HOME/x` (`~` alone → `$HOME`); anything else, or no `$HOME`, as is (ssh expands `~` itself).
pub fn expand_home(path: &str) -> String {
    let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    match (path, home) {
        ("~", Some(home)) => home,
        (p, Some(home)) if p.starts_with("~/") => format!("{}/{}", home.trim_end_matches('/'), &p[2..]),
        (p, _) => p.to_string(),
    }
}

/// A path as the value of an `-o Key=value` option: `%` doubled (ssh expands `%` tokens in paths), and in
/// double quotes with `"` and `\` escaped when it holds whitespace or quotes (ssh splits option values).
fn option_path(path: &str) -> String {
    let escaped = path.replace('%', "%%");
    if escaped.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// `simian-<uid>` (the uid of this process; `simian-<user>` where it cannot be read).
fn private_dir_name() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return format!("simian-{}", meta.uid());
        }
    }
    format!("simian-{}", std::env::var("USER").unwrap_or_else(|_| "user".to_string()))
}

/// Creates `dir` (mode 0700) unless it exists, and refuses it unless it is a real directory only we can use.
fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        let meta =
            std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        if let Ok(me) = std::fs::metadata("/proc/self") {
            if meta.uid() != me.uid() {
                return Err(format!("{} belongs to another user (uid {})", dir.display(), meta.uid()));
            }
        }
        // $XDG_RUNTIME_DIR is 0700 by specification; a directory we made ourselves must be too.
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} is accessible to other users (mode {:o}); expected 0700",
                dir.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(())
}

/// The reason ssh gave (its stderr, trimmed to the lines that say something), else a generic one.
pub(crate) fn ssh_reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        "ssh exited with status 255 and printed nothing".to_string()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn inst(address: Option<&str>) -> Instance {
        Instance {
            target: "lab".into(),
            id: "web-1".into(),
            address: address.map(str::to_string),
            group: "web".into(),
            zone: Some("a".into()),
            region: None,
            url: None,
            tags: BTreeMap::new(),
        }
    }

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn builds_the_ssh_command_line() {
        let cfg = SshExecutorConfig {
            user: Some("root".into()),
            port: Some(2222),
            identity_file: Some("/keys/simian".into()),
            known_hosts: Some("/keys/known hosts".into()),
            connect_timeout: Some("1500ms".parse().unwrap()),
            control_persist: None,
            host: None,
        };
        let ssh = SshExecutor::from_config(&cfg).with_control_dir("/run/simian");
        let argv = ssh.command_line(&inst(Some("10.0.0.7")), &s(&["kill", "-TERM", "it's"])).unwrap();
        assert_eq!(
            argv,
            s(&[
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=2",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "UserKnownHostsFile=\"/keys/known hosts\"",
                "-o",
                "IdentityFile=/keys/simian",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ControlMaster=auto",
                "-o",
                "ControlPath=/run/simian/simian-ssh-%C",
                "-o",
                "ControlPersist=60",
                "-T",
                "-l",
                "root",
                "-p",
                "2222",
                "--",
                "10.0.0.7",
                r"'kill' '-TERM' 'it'\''s'",
            ])
        );
        assert_eq!(
            ssh.describe(&inst(Some("10.0.0.7")), &s(&["kill", "-TERM", "42"])).unwrap(),
            "`kill -TERM 42` on root@10.0.0.7:2222 over ssh"
        );
    }

    #[test]
    fn host_defaults_to_address_then_id_and_renders_templates() {
        let plain = SshExecutor::from_config(&SshExecutorConfig::default());
        assert_eq!(plain.host_for(&inst(Some("10.0.0.7"))).unwrap(), "10.0.0.7");
        assert_eq!(plain.host_for(&inst(None)).unwrap(), "web-1");
        let templated = SshExecutor::from_config(&SshExecutorConfig {
            host: Some("{id}.{zone}.lab".into()),
            ..Default::default()
        });
        assert_eq!(templated.host_for(&inst(None)).unwrap(), "web-1.a.lab");
        let missing = SshExecutor::from_config(&SshExecutorConfig {
            host: Some("{address}".into()),
            ..Default::default()
        });
        let err = missing.host_for(&inst(None)).unwrap_err().to_string();
        assert!(err.contains("has no address"), "{err}");
        // Never StrictHostKeyChecking=no or accept-new, whatever the config.
        let line = plain.command_line(&inst(None), &s(&["true"])).unwrap();
        assert!(line.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(!line.iter().any(|a| a.contains("accept-new") || a.ends_with("=no")));
        let dash = line.iter().position(|a| a == "--").unwrap();
        assert_eq!(&line[dash + 1..], &s(&["web-1", "'true'"])[..]);
    }

    #[test]
    fn paths_are_expanded_and_escaped() {
        if let Ok(home) = std::env::var("HOME") {
            assert_eq!(expand_home("~/.ssh/simian"), format!("{}/.ssh/simian", home.trim_end_matches('/')));
            assert_eq!(expand_home("~"), home);
        }
        assert_eq!(expand_home("/abs/~/x"), "/abs/~/x");
        assert_eq!(expand_home("~other/x"), "~other/x");
        assert_eq!(option_path("/a/100%/b"), "/a/100%%/b");
        assert_eq!(option_path(r#"/a b/"c"\d"#), r#""/a b/\"c\"\\d""#);
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn control_dir_stays_short_enough_for_a_socket() {
        let long = SshExecutor::from_config(&SshExecutorConfig::default()).with_control_dir("/x".repeat(40));
        let dir = long.control_dir().expect("a fallback");
        assert!(dir.as_os_str().len() <= MAX_CONTROL_DIR_LEN, "{}", dir.display());
    }

    #[test]
    fn private_dirs_are_created_0700_and_others_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ctl");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(err.contains("accessible to other users"), "{err}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(ensure_private_dir(&file).unwrap_err().contains("not a directory"));
    }
}
