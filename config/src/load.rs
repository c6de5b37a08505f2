//! Loading: read the file, expand `${VAR}`, deserialize, validate, resolve. (STUB: to be completed)

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime, Weekday};

use crate::cron5::Cron;
use crate::schema::Policy;
use crate::MonkeyName;

/// One problem in a policy, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file as given.
    pub file: String,
    /// 1-based line and column, when YAML gives one.
    pub location: Option<(usize, usize)>,
    /// Dotted key path, e.g. `monkeys.chaos.schedule` or `targets[0].hosts[2].id`.
    pub path: String,
    /// What is wrong, lowercase.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => write!(f, "{}:{}:{}: ", self.file, line, col)?,
            None if self.path.is_empty() => write!(f, "{}: ", self.file)?,
            None => write!(f, "{}: {}: ", self.file, self.path)?,
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Every problem found in a policy, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// The calendar, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CalendarSpec {
    /// Half-open local window `[start, end)`; `start > end` wraps midnight; `start == end` = all day.
    pub hours: Option<(NaiveTime, NaiveTime)>,
    /// Allowed weekdays; `None` = every day.
    pub days: Option<Vec<Weekday>>,
    /// Local dates on which nothing runs.
    pub holidays: Vec<NaiveDate>,
}

/// A valid policy with everything parsed that validation had to parse anyway.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The policy as written (after `${VAR}` expansion).
    pub policy: Policy,
    /// The policy file.
    pub path: PathBuf,
    /// The policy's timezone.
    pub tz: chrono_tz::Tz,
    /// Store file, resolved against the policy's folder.
    pub store_path: PathBuf,
    /// Kill-switch file, resolved against the policy's folder.
    pub kill_switch: Option<PathBuf>,
    /// The calendar; `None` = any time.
    pub calendar: Option<CalendarSpec>,
    /// Each configured monkey's schedule.
    pub schedules: BTreeMap<MonkeyName, Cron>,
}

/// Read and validate a policy file.
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        PolicyErrors(vec![PolicyError {
            file: name.clone(),
            location: None,
            path: String::new(),
            message: format!("cannot read policy: {e}"),
            hint: Some("pass --policy FILE or set SIMIAN_POLICY".into()),
        }])
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&name, &text, base, &|k| std::env::var(k).ok())
}

/// Validate policy text; `base_dir` resolves relative paths, `env` answers `${VAR}`.
pub fn load_str(
    name: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedPolicy, PolicyErrors> {
    let _ = env;
    let policy: Policy = serde_yaml::from_str(text).map_err(|e| {
        PolicyErrors(vec![PolicyError {
            file: name.to_string(),
            location: e.location().map(|l| (l.line(), l.column())),
            path: String::new(),
            message: e.to_string(),
            hint: None,
        }])
    })?;
    crate::validate::resolve(name, policy, base_dir)
}
