//! Executors: how an argv reaches an instance — run here (`local`), behind a templated prefix (`wrap`), or on
//! the instance through the OpenSSH client (`ssh`, see [`crate::ssh`]).
//!
//! Commands are argv vectors run without a local shell, stdin closed, output captured, under a timeout after
//! which the local child (for ssh: the ssh client) is killed.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use simian_config::ExecutorConfig;
use simian_monkeys::Instance;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tracing::debug;

use crate::command::{display_argv, ExecError, Output};
use crate::ssh::{ssh_reason, SshExecutor, SSH_FAILURE_STATUS};
use crate::template;

/// At most this much of each output stream is kept; the rest is read and dropped.
const MAX_CAPTURE: usize = 1024 * 1024;
/// At most this much stderr goes into an error message.
const MAX_STDERR_IN_ERROR: usize = 2048;

/// A runtime executor, built from an [`ExecutorConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// Run argv on this machine as is.
    Local,
    /// Render `prefix` (a template) for the instance and run `prefix ++ argv` on this machine.
    Wrap {
        /// The prefix template, e.g. `["docker", "exec", "{id}"]`.
        prefix: Vec<String>,
    },
    /// Run argv on the instance through the OpenSSH client, quoted once for the remote shell.
    Ssh(SshExecutor),
}

/// An io error's message without the ` (os error N)` suffix.
fn reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Trims `s` and cuts it to about `max` bytes on a character boundary, marking the cut.
fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

/// Reads a stream to its end, keeping at most [`MAX_CAPTURE`] bytes.
async fn capture<R: AsyncRead + Unpin>(stream: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return Ok(kept);
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = MAX_CAPTURE.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(unix)]
fn signal_of(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn signal_of(_status: &ExitStatus) -> Option<i32> {
    None
}

impl Executor {
    /// Builds the runtime executor from its configuration.
    pub fn from_config(config: &ExecutorConfig) -> Self {
        match config {
            ExecutorConfig::Local => Executor::Local,
            ExecutorConfig::Wrap { argv } => Executor::Wrap { prefix: argv.clone() },
            ExecutorConfig::Ssh(ssh) => Executor::Ssh(SshExecutor::from_config(ssh)),
        }
    }

    /// The full argv this executor would run for `argv` on `inst` (prefix rendered and prepended).
    pub fn command_line(&self, inst: &Instance, argv: &[String]) -> Result<Vec<String>, ExecError> {
        match self {
            Executor::Local => Ok(argv.to_vec()),
            Executor::Wrap { prefix } => {
                let mut full = template::render(prefix, inst).map_err(ExecError::Prefix)?;
                full.extend_from_slice(argv);
                Ok(full)
            }
            Executor::Ssh(ssh) => ssh.command_line(inst, argv),
        }
    }

    /// `argv` on `inst` as messages show it: ``` `kill -TERM 42` ``` (with the prefix for wrap; with the
    /// destination for ssh: ``` `kill -TERM 42` on root@web-1:22 over ssh ```).
    pub fn describe(&self, inst: &Instance, argv: &[String]) -> Result<String, ExecError> {
        match self {
            Executor::Local | Executor::Wrap { .. } => {
                Ok(format!("`{}`", display_argv(&self.command_line(inst, argv)?)))
            }
            Executor::Ssh(ssh) => ssh.describe(inst, argv),
        }
    }

    /// Runs `argv` for `inst`, killing it after `timeout`; `Ok` only when it exits with status 0.
    pub async fn run(
        &self,
        inst: &Instance,
        argv: &[String],
        timeout: Duration,
    ) -> Result<Output, ExecError> {
        let (out, signal) = self.exec(inst, argv, timeout).await?;
        if out.status == 0 && signal.is_none() {
            return Ok(out);
        }
        let (shown, on) = self.shown(inst, argv)?;
        Err(ExecError::Failed {
            argv: shown,
            on,
            status: (signal.is_none() && out.status >= 0).then_some(out.status),
            signal,
            stderr: truncate(&out.stderr, MAX_STDERR_IN_ERROR),
        })
    }

    /// Runs `argv` for `inst` like [`Executor::run`], but a non-zero exit is returned in the [`Output`]
    /// (`status`: the exit code, or 128 + the signal that ended a local command), not as an error.
    ///
    /// Errors: the command could not be started, timed out, or (ssh) the connection failed.
    pub async fn output(
        &self,
        inst: &Instance,
        argv: &[String],
        timeout: Duration,
    ) -> Result<Output, ExecError> {
        Ok(self.exec(inst, argv, timeout).await?.0)
    }

    /// Runs `argv` for `inst`: its output whatever the exit status, and the signal that ended it, if any.
    async fn exec(
        &self,
        inst: &Instance,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(Output, Option<i32>), ExecError> {
        let full = self.command_line(inst, argv)?;
        if let Executor::Ssh(ssh) = self {
            if let Err(why) = ssh.prepare_control_dir() {
                // Still works, just without a shared connection: ssh falls back when it cannot bind.
                debug!(instance = %inst.id, reason = %why, "cannot prepare the ssh control directory");
            }
        }
        debug!(instance = %inst.id, argv = ?full, "running command");
        let (shown, on) = self.shown(inst, argv)?;
        let (out, signal) = match spawn_and_wait(&full, timeout).await {
            Ok(done) => done,
            Err(ExecError::Timeout { after, .. }) => {
                return Err(ExecError::Timeout { argv: shown, on, after });
            }
            Err(e) => return Err(e),
        };
        if let (Executor::Ssh(ssh), SSH_FAILURE_STATUS) = (self, out.status) {
            return Err(ExecError::Ssh {
                host: ssh.destination(&ssh.host_for(inst)?),
                reason: truncate(&ssh_reason(&out.stderr), MAX_STDERR_IN_ERROR),
            });
        }
        Ok((out, signal))
    }

    /// The argv as errors show it, and where it runs when not here.
    fn shown(&self, inst: &Instance, argv: &[String]) -> Result<(String, Option<String>), ExecError> {
        match self {
            Executor::Local | Executor::Wrap { .. } => {
                Ok((display_argv(&self.command_line(inst, argv)?), None))
            }
            Executor::Ssh(ssh) => {
                Ok((display_argv(argv), Some(format!("{} over ssh", ssh.destination(&ssh.host_for(inst)?)))))
            }
        }
    }
}

/// Runs `argv` on this machine without a shell, stdin closed, output captured, killed after `timeout`.
pub async fn run_argv(argv: &[String], timeout: Duration) -> Result<Output, ExecError> {
    let (out, signal) = spawn_and_wait(argv, timeout).await?;
    if out.status == 0 && signal.is_none() {
        return Ok(out);
    }
    Err(ExecError::Failed {
        argv: display_argv(argv),
        on: None,
        status: (signal.is_none() && out.status >= 0).then_some(out.status),
        signal,
        stderr: truncate(&out.stderr, MAX_STDERR_IN_ERROR),
    })
}

/// Runs `argv` to its end (or kills it after `timeout`); the output whatever the exit status, and the signal
/// that ended it, if any (`status` is then 128 + the signal).
async fn spawn_and_wait(argv: &[String], timeout: Duration) -> Result<(Output, Option<i32>), ExecError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ExecError::Empty);
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExecError::Spawn { program: program.clone(), reason: reason(&e), kind: e.kind() })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished =
        tokio::time::timeout(timeout, async { tokio::join!(capture(stdout), capture(stderr), child.wait()) })
            .await;
    let (out, err, status) = match finished {
        Ok(parts) => parts,
        Err(_elapsed) => {
            // SIGKILL and reap; if it already exited, there is nothing left to do.
            let _ = child.kill().await;
            debug!(argv = ?argv, timeout_ms = timeout.as_millis() as u64, "killed command after timeout");
            return Err(ExecError::Timeout { argv: display_argv(argv), on: None, after: timeout });
        }
    };
    let wait_err = |e: std::io::Error| ExecError::Wait { argv: display_argv(argv), reason: reason(&e) };
    let status = status.map_err(wait_err)?;
    let stdout = String::from_utf8_lossy(&out.map_err(wait_err)?).into_owned();
    let stderr = String::from_utf8_lossy(&err.map_err(wait_err)?).into_owned();
    let signal = signal_of(&status);
    let code = match (status.code(), signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    Ok((Output { stdout, stderr, status: code }, if status.code().is_some() { None } else { signal }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::human;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(200)), "200ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::ZERO), "0s");
    }

    #[test]
    fn argv_display_quotes_only_when_needed() {
        let argv: Vec<String> =
            ["kill", "-TERM", "1234", "a b", "it's", ""].iter().map(|s| s.to_string()).collect();
        assert_eq!(display_argv(&argv), r#"kill -TERM 1234 'a b' 'it'\''s' ''"#);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        let s = "é".repeat(2000);
        let t = truncate(&s, 2047);
        assert!(t.starts_with(&"é".repeat(1023)));
        assert!(t.ends_with("(1954 more bytes)"), "{t}");
        assert_eq!(truncate("  boom \n", 2048), "boom");
    }

    #[test]
    fn strips_os_error_codes() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(reason(&e), "No such file or directory");
    }
}
