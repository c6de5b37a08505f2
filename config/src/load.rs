//! Loading: read the file, expand `${VAR}`, deserialize, validate, resolve; every error at once, located.
//!
//! The pipeline: parse YAML into a value tree (syntax errors stop here) → map key paths to positions →
//! expand `${VAR}` → deserialize, cutting out each bad node and retrying so every structural error is seen →
//! pure semantic validation → resolve paths, timezone, calendar and schedules.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::cron5::Cron;
use crate::locate::{key, path_string, Issue, Locator, Seg};
use crate::schema::{
    AwsEc2Target, HostConfig, HostsTarget, JsonlSink, LogSink, Policy, PrometheusSink, SinkConfig, SlackSink,
    TargetConfig, TypeFirst, WebhookSink,
};
use crate::structural::{closest, deserialize_fixing, Ctx};
use crate::yaml::{self, Value};
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

/// How many errors a message shows: a generated policy can have one per host, and 100,000 lines help
/// no one (all of them stay in [`PolicyErrors::0`]).
pub const ERRORS_SHOWN: usize = 100;

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(ERRORS_SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if let Some(more) = self.0.len().checked_sub(ERRORS_SHOWN).filter(|n| *n > 0) {
            write!(f, "\n… and {more} more errors (the first {ERRORS_SHOWN} are shown, in file order; ")?;
            f.write_str("fix these and validate again)")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

pub use crate::validate::CalendarSpec;

/// A valid policy with everything parsed that validation had to parse anyway.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The policy as written (after `${VAR}` expansion).
    pub policy: Policy,
    /// The policy file.
    pub path: PathBuf,
    /// The policy's timezone.
    pub tz: chrono_tz::Tz,
    /// Where the store lives: a file resolved against the policy's folder, or a PostgreSQL URL.
    pub store: crate::StoreAt,
    /// Kill-switch file, resolved against the policy's folder.
    pub kill_switch: Option<PathBuf>,
    /// The calendar; `None` = any time.
    pub calendar: Option<CalendarSpec>,
    /// Each configured monkey's schedule.
    pub schedules: BTreeMap<MonkeyName, Cron>,
    /// The policy's name: `name`, else the file's stem.
    pub name: String,
    /// The folder relative paths in the policy resolve against.
    pub base_dir: PathBuf,
    /// `steady_state:` resolved (defaults applied, tolerances parsed); `None` = rounds are not measured.
    pub steady_state: Option<crate::steady::SteadyState>,
}

impl LoadedPolicy {
    /// A path from the policy, resolved against the policy's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// The target `type`s a policy may use; the single list the error messages quote.
const TARGET_TYPES: &[&str] = <TargetConfig as TypeFirst>::TYPES;

/// The sink `type`s a policy may use.
const SINK_TYPES: &[&str] = <SinkConfig as TypeFirst>::TYPES;

/// Read and validate a policy file.
///
/// Relative `store` and `kill_switch` paths resolve against the file's folder; [`LoadedPolicy::path`] is
/// `path` as given.
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyErrors> {
    let name = path.display().to_string();
    let unreadable = |e: std::io::Error| {
        PolicyErrors(vec![PolicyError {
            file: name.clone(),
            location: None,
            path: String::new(),
            message: format!("cannot read policy: {e}"),
            hint: Some("pass --policy FILE or set SIMIAN_POLICY".into()),
        }])
    };
    load_bytes(path, read_bytes(path).map_err(unreadable)?)
}

/// The policy file's bytes, at most one over [`MAX_POLICY_BYTES`]: a huge file (or an endless one, like
/// /dev/zero) costs nothing to refuse.
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let f = std::fs::File::open(path)?;
    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_POLICY_BYTES as u64 + 1), &mut bytes)?;
    Ok(bytes)
}

/// Validates the policy `bytes` read from `path` (as [`load`] does after reading the file).
pub fn load_bytes(path: &Path, bytes: Vec<u8>) -> Result<LoadedPolicy, PolicyErrors> {
    let name = path.display().to_string();
    if bytes.len() > MAX_POLICY_BYTES {
        // [`read_bytes`] stops one byte over the limit: the file says how big it really is.
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(bytes.len() as u64);
        return Err(PolicyErrors(vec![too_big(&name, len)]));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        PolicyErrors(vec![PolicyError {
            file: name.clone(),
            location: None,
            path: String::new(),
            message: format!("cannot read policy: {e}"),
            hint: Some("a policy is UTF-8 text".into()),
        }])
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    load_inner(&name, &text, base, &|k| std::env::var(k).ok(), path.to_path_buf())
}

/// Validate policy text; `base_dir` resolves relative paths, `env` answers `${VAR}`.
///
/// `name` is the file name used in error messages; [`LoadedPolicy::path`] is `base_dir.join(name)` (so an
/// absolute `name` is kept as is).
pub fn load_str(
    name: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedPolicy, PolicyErrors> {
    load_inner(name, text, base_dir, env, base_dir.join(name))
}

/// The largest policy file read: a 100,000-host policy is about 10 MiB; a bigger file is most likely not a
/// policy, and reading it would cost seconds and gigabytes.
pub const MAX_POLICY_BYTES: usize = 32 << 20;

/// The deepest nesting a policy may have: real ones need six levels; deeper input is refused before it can
/// cost more than a linear scan.
pub const MAX_DEPTH: usize = 32;

fn load_inner(
    name: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    path: PathBuf,
) -> Result<LoadedPolicy, PolicyErrors> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyErrors(vec![too_big(name, text.len() as u64)]));
    }
    // A valid policy is read straight into its structs; the tree path below only runs to explain errors.
    if let Ok(policy) = crate::stream::read::<Policy>(text, env) {
        let (resolved, semantic) = crate::validate::validate(&policy, base_dir, true);
        let locator =
            if semantic.is_empty() { Locator::default() } else { Locator::build_for(text, &semantic) };
        let errors = locate_issues(name, &locator, semantic, 0, &HashSet::new());
        return conclude(name, errors, Some((policy, resolved)), base_dir, path);
    }
    load_tree(name, text, base_dir, env, path)
}

/// The tree path: parse into a value tree, expand, deserialize cutting out bad nodes, validate, locate.
fn load_tree(
    name: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    path: PathBuf,
) -> Result<LoadedPolicy, PolicyErrors> {
    let error = |location: Option<(usize, usize)>, path: String, message: String, hint: Option<String>| {
        PolicyError { file: name.to_string(), location, path, message, hint }
    };
    let mut locator = Locator::build(text);
    if let Some(at) = locator.too_deep {
        let message = format!("nested deeper than {MAX_DEPTH} levels");
        let hint = Some("a policy needs about six levels; is this the policy file?".to_string());
        return Err(PolicyErrors(vec![error(Some(at), String::new(), message, hint)]));
    }
    // serde_yaml parses only what the event reader leaves to it (tags, anchors, duplicates, syntax errors).
    let mut root = match crate::stream::read_tree(text).map_or_else(|| yaml::parse(text), Ok) {
        Ok(v) => v,
        Err(e) if e.message.starts_with("duplicate entry") && !locator.duplicates.is_empty() => {
            let errors = locator
                .duplicates
                .iter()
                .map(|(p, at)| {
                    let k = p.rsplit('.').next().unwrap_or(p);
                    let hint = Some("each key may appear once in a mapping".to_string());
                    error(Some(*at), p.clone(), format!("duplicate key `{k}`"), hint)
                })
                .collect();
            return Err(PolicyErrors(errors));
        }
        Err(e) => return Err(PolicyErrors(vec![error(e.location, String::new(), e.message, None)])),
    };
    if let Err(e) = root.apply_merge() {
        return Err(PolicyErrors(vec![error(None, String::new(), e.to_string(), None)]));
    }
    let Value::Mapping(top) = &mut root else {
        let message = match root {
            Value::Null => "the policy is empty".to_string(),
            _ => "a policy must be a mapping of keys at the top level".to_string(),
        };
        let hint = Some("start with `version: 1`".to_string());
        return Err(PolicyErrors(vec![error(Some((1, 1)), String::new(), message, hint)]));
    };

    let mut issues = Vec::new();
    let mut segs = Vec::new();
    let mut tree = Value::Mapping(std::mem::take(top));
    crate::env::expand_tree(&mut tree, &mut segs, &locator, env, &mut issues);
    let env_count = issues.len();
    let tainted: HashSet<String> = issues.iter().map(|i| path_string(&i.segs)).collect();
    let Value::Mapping(mut top) = tree else {
        return Err(PolicyErrors(Vec::new()));
    };
    if !top.contains_key("version") {
        issues.push(Issue::at(Vec::new(), "missing key `version`").hint("add `version: 1` at the top"));
        top.insert(Value::from("version"), Value::from(1));
    }
    // Targets and sinks are internally tagged, which would hide paths inside them: read them one by one.
    let targets = match top.get("targets") {
        Some(Value::Sequence(_)) => top.insert(Value::from("targets"), Value::Sequence(Vec::new())),
        _ => None,
    };
    let sinks = match top.get("sinks") {
        Some(Value::Sequence(_)) => top.insert(Value::from("sinks"), Value::Sequence(Vec::new())),
        _ => None,
    };
    let mut ctx = Ctx { loc: &mut locator, issues, removed: HashSet::new() };
    let mut root = Value::Mapping(top);
    let policy = deserialize_fixing::<Policy>(&mut root, &[], &mut ctx);
    let mut target_list = Vec::new();
    let mut written_targets = 0;
    if let Some(Value::Sequence(items)) = targets {
        written_targets = items.len();
        for item in items {
            let cur = target_list.len();
            match read_target(item, cur, &mut ctx) {
                Some(t) => target_list.push(t),
                None => ctx.drop_item(&[key("targets")], cur),
            }
        }
    }
    let mut sink_list = Vec::new();
    if let Some(Value::Sequence(items)) = sinks {
        for item in items {
            let cur = sink_list.len();
            match read_sink(item, cur, &mut ctx) {
                Some(s) => sink_list.push(s),
                None => ctx.drop_item(&[key("sinks")], cur),
            }
        }
    }
    let mut issues = std::mem::take(&mut ctx.issues);
    let structural: std::collections::HashSet<String> = issues.iter().map(|i| path_string(&i.segs)).collect();
    let resolved = policy.map(|mut p| {
        let all_targets = target_list.len() == written_targets;
        p.targets = target_list;
        p.sinks = sink_list;
        let (resolved, semantic) = crate::validate::validate(&p, base_dir, all_targets);
        // A key already reported as malformed was cut out; do not also report it as missing.
        // Compare in written indexes: items dropped as unreadable shift the indexes validation saw.
        issues.extend(
            semantic
                .into_iter()
                .map(|mut i| {
                    i.segs = locator.translate(&i.segs);
                    i
                })
                .filter(|i| !structural.contains(&path_string(&i.segs))),
        );
        (p, resolved)
    });

    let errors = locate_issues(name, &locator, issues, env_count, &tainted);
    conclude(name, errors, resolved, base_dir, path)
}

/// Gives each issue its file position, in file order; issues on values whose `${VAR}` failed (after the
/// first `env_count`, which say so) are dropped.
fn locate_issues(
    name: &str,
    locator: &Locator,
    issues: Vec<Issue>,
    env_count: usize,
    tainted: &HashSet<String>,
) -> Vec<PolicyError> {
    let mut errors: Vec<PolicyError> = Vec::new();
    for (n, issue) in issues.into_iter().enumerate() {
        let p = path_string(&issue.segs);
        // Values whose `${VAR}` failed to expand are only reported for that.
        if n >= env_count && tainted.contains(&p) {
            continue;
        }
        let at = if issue.at_key {
            locator.key_loc(&issue.segs).or_else(|| locator.value_loc(&issue.segs))
        } else {
            locator.value_loc(&issue.segs)
        };
        // A problem with a default the user did not write (`action: isolate`) points at the nearest key written.
        let at = at.or_else(|| {
            (1..issue.segs.len()).rev().find_map(|n| locator.key_loc(issue.segs.get(..n).unwrap_or_default()))
        });
        errors.push(PolicyError {
            file: name.to_string(),
            location: at,
            path: p,
            message: issue.message,
            hint: issue.hint,
        });
    }
    errors.sort_by(|a, b| {
        (a.location.is_none(), a.location, &a.path).cmp(&(b.location.is_none(), b.location, &b.path))
    });
    errors.dedup();
    errors
}

/// The loaded policy, or the errors.
fn conclude(
    name: &str,
    errors: Vec<PolicyError>,
    resolved: Option<(Policy, crate::validate::Resolved)>,
    base_dir: &Path,
    path: PathBuf,
) -> Result<LoadedPolicy, PolicyErrors> {
    match resolved {
        Some((policy, r)) if errors.is_empty() => Ok(LoadedPolicy {
            tz: r.tz,
            store: r.store,
            kill_switch: r.kill_switch,
            calendar: r.calendar,
            schedules: r.schedules,
            steady_state: r.steady_state,
            name: policy
                .name
                .clone()
                .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "simian".to_string()),
            base_dir: base_dir.to_path_buf(),
            path,
            policy,
        }),
        _ if errors.is_empty() => Err(PolicyErrors(vec![PolicyError {
            file: name.to_string(),
            location: None,
            path: String::new(),
            message: "the policy could not be read".to_string(),
            hint: None,
        }])),
        _ => Err(PolicyErrors(errors)),
    }
}

/// The error for a file over [`MAX_POLICY_BYTES`].
fn too_big(name: &str, len: u64) -> PolicyError {
    PolicyError {
        file: name.to_string(),
        location: None,
        path: String::new(),
        message: format!(
            "the policy is {:.1} MiB; policies are limited to {} MiB",
            len as f64 / (1 << 20) as f64,
            MAX_POLICY_BYTES >> 20
        ),
        hint: Some(
            "is this the policy file? fleets too large to list belong in an aws_ec2 target".to_string(),
        ),
    }
}

/// Reads `targets[index]` (current index): its `type`, then that kind's settings.
fn read_target(mut item: Value, index: usize, ctx: &mut Ctx) -> Option<TargetConfig> {
    let (kind, base) = take_type("targets", "target", TARGET_TYPES, &mut item, index, ctx)?;
    match kind.as_str() {
        "hosts" => read_hosts_target(item, base, ctx).map(TargetConfig::Hosts),
        "aws_ec2" => deserialize_fixing::<AwsEc2Target>(&mut item, &base, ctx).map(TargetConfig::AwsEc2),
        other => unknown_type(other, "target", TARGET_TYPES, base, ctx),
    }
}

/// Reads a `hosts` target whose `type` is taken. Its host list can be 100,000 long: each host is read on
/// its own, so an error costs a pass over that host, not over the whole list (and the list is not copied).
fn read_hosts_target(mut item: Value, base: Vec<Seg>, ctx: &mut Ctx) -> Option<HostsTarget> {
    let items = match &mut item {
        Value::Mapping(m) => match m.get_mut("hosts") {
            Some(Value::Sequence(items)) => std::mem::take(items),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut seq = base.clone();
    seq.push(key("hosts"));
    let mut hosts = Vec::with_capacity(items.len());
    for mut host in items {
        let cur = hosts.len();
        let mut at = seq.clone();
        at.push(Seg::Index(cur));
        match deserialize_fixing::<HostConfig>(&mut host, &at, ctx) {
            Some(h) => hosts.push(h),
            None => ctx.drop_item(&seq, cur),
        }
    }
    // What is left has an empty list where the hosts were (or the wrong value, reported from here).
    let mut target = deserialize_fixing::<HostsTarget>(&mut item, &base, ctx)?;
    target.hosts = hosts;
    Some(target)
}

/// Reads `sinks[index]` (current index): its `type`, then that kind's settings.
fn read_sink(mut item: Value, index: usize, ctx: &mut Ctx) -> Option<SinkConfig> {
    let (kind, base) = take_type("sinks", "sink", SINK_TYPES, &mut item, index, ctx)?;
    match kind.as_str() {
        "log" => deserialize_fixing::<LogSink>(&mut item, &base, ctx).map(SinkConfig::Log),
        "jsonl" => deserialize_fixing::<JsonlSink>(&mut item, &base, ctx).map(SinkConfig::Jsonl),
        "slack" => deserialize_fixing::<SlackSink>(&mut item, &base, ctx).map(SinkConfig::Slack),
        "webhook" => deserialize_fixing::<WebhookSink>(&mut item, &base, ctx).map(SinkConfig::Webhook),
        "prometheus" => {
            deserialize_fixing::<PrometheusSink>(&mut item, &base, ctx).map(SinkConfig::Prometheus)
        }
        other => unknown_type(other, "sink", SINK_TYPES, base, ctx),
    }
}

/// Removes and returns the `type` of the internally tagged item `section[index]`, with the item's path;
/// `None` (reported) when the item is not a mapping or has no string `type`.
fn take_type(
    section: &str,
    what: &str,
    types: &[&str],
    item: &mut Value,
    index: usize,
    ctx: &mut Ctx,
) -> Option<(String, Vec<Seg>)> {
    let base = vec![key(section), Seg::Index(index)];
    let known = types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
    let Value::Mapping(m) = item else {
        let issue = Issue::at(base, format!("a {what} must be a mapping with a `type` key"))
            .hint(format!("known types: {known}"));
        ctx.report(issue);
        return None;
    };
    let mut type_path = base.clone();
    type_path.push(key("type"));
    match m.remove("type") {
        None => {
            let mut issue = Issue::at(base, "missing key `type`").hint(format!("known types: {known}"));
            issue.at_key = true;
            ctx.report(issue);
            None
        }
        Some(Value::String(s)) => Some((s, base)),
        Some(other) => {
            let found = yaml::key_text(&other).unwrap_or_else(|| "…".to_string());
            ctx.report(Issue::at(
                type_path,
                format!("unknown {what} type `{found}`; known types: {}", types.join(", ")),
            ));
            None
        }
    }
}

/// Reports a `type` that names no known kind, with the closest one as the hint.
fn unknown_type<T>(found: &str, what: &str, types: &[&str], mut path: Vec<Seg>, ctx: &mut Ctx) -> Option<T> {
    path.push(key("type"));
    let mut issue =
        Issue::at(path, format!("unknown {what} type `{found}`; known types: {}", types.join(", ")));
    if let Some(c) = closest(found, types.iter().copied()) {
        issue.hint = Some(format!("did you mean `{c}`?"));
    }
    ctx.report(issue);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped example and test policy reads the same by both paths, and by the fast one.
    #[test]
    fn the_fast_path_reads_every_example_as_the_tree_path_does() {
        let env = |_: &str| Some("1234".to_string());
        let dirs = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"),
        ];
        let mut seen = 0;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("example");
                let Ok(fast) = crate::stream::read::<Policy>(&text, &env) else {
                    continue;
                };
                let tree = load_tree("p.yaml", &text, Path::new("."), &env, PathBuf::from("p.yaml"));
                let tree = tree.unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!(fast, tree.policy, "{}", p.display());
                seen += 1;
            }
        }
        assert!(seen >= 4, "only {seen} examples read by the fast path");
        // Keys before `type`, numbers where strings belong, `${VAR}` typed again, quoted numbers kept.
        let text = "version: 1\nmode: live\ntargets:\n  - name: lab\n    executor: local\n    type: hosts\n    terminate: [kill, \"{tag:pid}\"]\n    hosts:\n      - {id: a, group: g, tags: {pid: 1234, port: \"${P}\", on: true}}\nmonkeys:\n  chaos:\n    schedule: \"* * * * *\"\n    probability: ${P}\n    max_kills_per_run: 0x2\nsinks:\n  - path: f.jsonl\n    type: jsonl\n";
        let env = |k: &str| (k == "P").then(|| "1".to_string());
        let fast = crate::stream::read::<Policy>(text, &env).expect("fast path");
        let tree = load_tree("p.yaml", text, Path::new("."), &env, PathBuf::from("p.yaml")).expect("tree");
        assert_eq!(fast, tree.policy);
    }

    #[test]
    fn huge_and_deep_policies_are_refused_cheaply_with_a_reason() {
        let env = |_: &str| None;
        let big = "#".repeat(MAX_POLICY_BYTES + 1);
        let e = load_str("p.yaml", &big, Path::new("."), &env).expect_err("too big");
        assert!(e.to_string().contains("limited to 32 MiB"), "{e}");
        let deep = format!("version: 1\nx: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = load_str("p.yaml", &deep, Path::new("."), &env).expect_err("too deep");
        assert!(e.to_string().starts_with("p.yaml:2:"), "{e}");
        assert!(e.to_string().contains("nested deeper than 32 levels"), "{e}");
    }
}
