//! `${VAR}` and `${VAR:-default}` expansion inside scalar string values; `$$` is a literal `$`.
//!
//! Only values are expanded (never keys, never comments). A plain (unquoted) scalar that expands to a number
//! or a boolean becomes one, so `max_kills_per_run: ${MAX_KILLS}` works; quote it to keep a string.

use crate::locate::{Issue, Locator, Seg};
use crate::yaml::{self, Value};

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with `NAME` unset and no default.
    Unset(String),
    /// `${` without its `}`.
    Unterminated,
    /// `${…}` whose name is not a variable name.
    BadName(String),
}

impl ExpandError {
    fn into_issue(self, segs: Vec<Seg>) -> Issue {
        match self {
            ExpandError::Unset(name) => Issue::at(segs, format!("environment variable `{name}` is not set"))
                .hint(format!("set it, or give a default: `${{{name}:-value}}`")),
            ExpandError::Unterminated => Issue::at(segs, "unterminated `${`")
                .hint("close it with `}`, or write `$$` for a literal `$`"),
            ExpandError::BadName(name) => {
                Issue::at(segs, format!("invalid variable name `{name}` in `${{…}}`"))
                    .hint("names are letters, digits and `_`, not starting with a digit")
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands one string; collects every problem in it. Unset variables expand to the empty string.
pub(crate) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<ExpandError>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                errors.push(ExpandError::Unterminated);
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !valid_name(name) {
                errors.push(ExpandError::BadName(name.to_string()));
            } else {
                match (env(name).filter(|v| default.is_none() || !v.is_empty()), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => errors.push(ExpandError::Unset(name.to_string())),
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    (out, errors)
}

/// One string value after `${VAR}` expansion, with the problems found. A plain (unquoted) value that held a
/// `${…}` is typed again, so `probability: ${P}` reads as a number; a quoted one stays a string. `plain` is
/// asked only when it matters. The tree path and the streaming fast path both expand through here.
pub(crate) fn expand_value(
    s: &str,
    plain: impl FnOnce() -> bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Value, Vec<ExpandError>) {
    let (expanded, errors) = expand(s, env);
    let typed = if s.contains("${") && plain() { yaml::plain_scalar(&expanded) } else { None };
    (typed.unwrap_or(Value::String(expanded)), errors)
}

/// Expands every string value in `value`; returns one issue per problem, at the value's path.
pub(crate) fn expand_tree(
    value: &mut Value,
    segs: &mut Vec<Seg>,
    loc: &Locator,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            let (expanded, errors) = expand_value(s, || loc.is_plain(segs), env);
            issues.extend(errors.into_iter().map(|e| e.into_issue(segs.clone())));
            *value = expanded;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                segs.push(Seg::Index(i));
                expand_tree(item, segs, loc, env, issues);
                segs.pop();
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                segs.push(Seg::Key(yaml::key_text(k).unwrap_or_default()));
                expand_tree(v, segs, loc, env, issues);
                segs.pop();
            }
        }
        Value::Tagged(t) => expand_tree(&mut t.value, segs, loc, env, issues),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOST" => Some("web-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_default_and_escape() {
        assert_eq!(expand("app@${HOST}", &env), ("app@web-1".into(), vec![]));
        assert_eq!(expand("${NOPE:-x}-${HOST:-y}", &env), ("x-web-1".into(), vec![]));
        assert_eq!(expand("${EMPTY:-d}", &env), ("d".into(), vec![]));
        assert_eq!(expand("${EMPTY}", &env), ("".into(), vec![]));
        assert_eq!(expand("cost $$5 $x", &env), ("cost $5 $x".into(), vec![]));
        assert_eq!(expand("${NOPE:-}", &env), ("".into(), vec![]));
    }

    #[test]
    fn reports_problems() {
        assert_eq!(expand("${NOPE}", &env).1, vec![ExpandError::Unset("NOPE".into())]);
        assert_eq!(expand("a ${HOST", &env).1, vec![ExpandError::Unterminated]);
        assert_eq!(expand("${1X}", &env).1, vec![ExpandError::BadName("1X".into())]);
        assert_eq!(expand("${}", &env).1, vec![ExpandError::BadName("".into())]);
    }
}
