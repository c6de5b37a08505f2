//! What running a command comes to, for every executor: its output, why it failed, and how an argv is
//! shown to people. Executors (`exec`) and the ssh transport (`ssh`) both use it; neither imports the other
//! for it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::template::TemplateError;

/// What a finished command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output (lossy UTF-8, at most 1 MiB).
    pub stdout: String,
    /// Standard error (lossy UTF-8, at most 1 MiB).
    pub stderr: String,
    /// Exit status: always 0 from [`Executor::run`]; from [`Executor::output`] the exit code, or 128 + the
    /// signal that ended the command.
    pub status: i32,
}

/// Why a command could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The argv (after any prefix) is empty.
    #[error("nothing to run: the command is empty")]
    Empty,
    /// The executor's prefix template does not render for this instance.
    #[error("cannot build the executor prefix: {0}")]
    Prefix(#[source] TemplateError),
    /// The program could not be started.
    #[error("cannot run `{program}`: {reason}")]
    Spawn {
        /// The program (`argv[0]`).
        program: String,
        /// The operating system's reason, e.g. `No such file or directory`.
        reason: String,
        /// The kind of the underlying I/O error.
        kind: std::io::ErrorKind,
    },
    /// The command outlived its timeout and was killed.
    #[error("timed out after {} running `{argv}`{}", human(*.after), on_suffix(.on))]
    Timeout {
        /// The whole argv, for display.
        argv: String,
        /// Where it ran when not here, e.g. `root@web-1:22 over ssh`.
        on: Option<String>,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The command ran and failed.
    #[error("`{argv}`{} {}{}", on_suffix(.on), describe(*.status, *.signal), stderr_suffix(.stderr))]
    Failed {
        /// The whole argv, for display (for ssh: the remote command).
        argv: String,
        /// Where it ran when not here, e.g. `root@web-1:22 over ssh`.
        on: Option<String>,
        /// The exit code, or `None` when a signal ended it.
        status: Option<i32>,
        /// The signal that ended it, if any.
        signal: Option<i32>,
        /// Trimmed standard error, truncated to about 2 KB.
        stderr: String,
    },
    /// `ssh` itself failed (exit status 255): no connection, authentication refused, unknown host key.
    ///
    /// A remote command that exits with 255 is indistinguishable from this and reported the same way.
    #[error("ssh to {host} failed: {reason}")]
    Ssh {
        /// The destination, e.g. `root@10.0.0.7:22`.
        host: String,
        /// What ssh said (its stderr).
        reason: String,
    },
    /// Waiting for the command or reading its output failed.
    #[error("lost track of `{argv}`: {reason}")]
    Wait {
        /// The whole argv, for display.
        argv: String,
        /// The operating system's reason.
        reason: String,
    },
}

fn describe(status: Option<i32>, signal: Option<i32>) -> String {
    match (status, signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "ended without an exit status".to_string(),
    }
}

fn on_suffix(on: &Option<String>) -> String {
    match on {
        Some(on) => format!(" on {on}"),
        None => String::new(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// A timeout for messages: `30s`, `200ms`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Shows an argv for people: elements joined by spaces, those with unusual characters in single quotes.
///
/// For messages only; commands are never run through a shell.
pub fn display_argv(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let plain = !a.is_empty() && a.chars().all(|c| c.is_alphanumeric() || "-_./:=@,+%^".contains(c));
        if plain {
            out.push_str(a);
        } else {
            let _ = write!(out, "'{}'", a.replace('\'', r"'\''"));
        }
    }
    out
}
