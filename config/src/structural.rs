//! Structural checks: deserialize the value tree, and on each error record it, cut the offending node out
//! and try again, so that every unknown key and every ill-typed value is reported in one pass.

use std::collections::HashSet;

use serde::de::DeserializeOwned;

use crate::locate::{path_string, Issue, Locator, Seg};
use crate::yaml::{key_text, Lenient, Value};
use crate::MonkeyName;

/// How many errors one structure may report before giving up.
const MAX_ROUNDS: usize = 100;

/// Everything the structural pass accumulates.
pub(crate) struct Ctx<'a> {
    /// Positions, and which sequence items were removed.
    pub loc: &'a mut Locator,
    /// Problems found, with original (user-written) indices.
    pub issues: Vec<Issue>,
    /// Original paths of nodes removed because they were wrong.
    pub removed: HashSet<String>,
}

impl Ctx<'_> {
    /// Records a problem at the current path `segs` (translated to original indices now).
    pub fn report(&mut self, mut issue: Issue) {
        issue.segs = self.loc.translate(&issue.segs);
        self.issues.push(issue);
    }

    /// Records that item `index` of the sequence at current path `seq` was dropped.
    pub fn drop_item(&mut self, seq: &[Seg], index: usize) {
        let mut p = seq.to_vec();
        p.push(Seg::Index(index));
        self.removed.insert(path_string(&self.loc.translate(&p)));
        self.loc.mark_removed(seq, index);
    }
}

/// Deserializes `value` (found at current path `base`) as `T`, removing bad nodes until it fits.
///
/// Returns `None` when the value as a whole cannot become a `T` (the caller drops it).
pub(crate) fn deserialize_fixing<T: DeserializeOwned>(
    value: &mut Value,
    base: &[Seg],
    ctx: &mut Ctx,
) -> Option<T> {
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, T>(Lenient(value.clone())) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let mut rel = Vec::new();
        for s in err.path().iter() {
            match s {
                serde_path_to_error::Segment::Seq { index } => rel.push(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => rel.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => break,
            }
        }
        let msg = err.inner().to_string();
        // A map visitor may reject a key before the path records it: add it, so it is the key removed.
        if let Some(rest) = msg.strip_prefix("unknown field ") {
            if let Some(found) = backticked(rest).first() {
                if rel.last() != Some(&Seg::Key(found.to_string())) {
                    rel.push(Seg::Key(found.to_string()));
                }
            }
        }
        let mut cur = base.to_vec();
        cur.extend(rel.iter().cloned());
        let issue = describe(&msg, &cur, ctx);
        if let Some(issue) = issue {
            ctx.report(issue);
        }
        // Cut out the node the error is about.
        let (last, parent) = rel.split_last()?;
        let container = node_mut(value, parent)?;
        let original = path_string(&ctx.loc.translate(&cur));
        let removed = match (container, last) {
            (Value::Mapping(m), Seg::Key(k)) => {
                let before = m.len();
                m.retain(|mk, _| key_text(mk).as_deref() != Some(k.as_str()));
                m.len() < before
            }
            (Value::Sequence(items), Seg::Index(i)) if *i < items.len() => {
                items.remove(*i);
                let seq: Vec<Seg> = cur.get(..cur.len().saturating_sub(1)).unwrap_or_default().to_vec();
                ctx.loc.mark_removed(&seq, *i);
                true
            }
            _ => false,
        };
        if !removed {
            return None;
        }
        ctx.removed.insert(original);
    }
    None
}

/// The node at `segs` below `value`.
fn node_mut<'v>(value: &'v mut Value, segs: &[Seg]) -> Option<&'v mut Value> {
    let mut node = value;
    for s in segs {
        node = match (node, s) {
            (Value::Mapping(m), Seg::Key(k)) => {
                m.iter_mut().find(|(mk, _)| key_text(mk).as_deref() == Some(k.as_str())).map(|(_, v)| v)?
            }
            (Value::Sequence(items), Seg::Index(i)) => items.get_mut(*i)?,
            (Value::Tagged(t), _) => &mut t.value,
            _ => return None,
        };
    }
    Some(node)
}

/// The names between backticks in a serde message, in order.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let w = word.to_lowercase();
    let (best, dist) = candidates
        .into_iter()
        .map(|c| (c, strsim::levenshtein(&w, &c.to_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    let limit = (w.chars().count() / 3).max(2);
    (dist <= limit).then_some(best)
}

/// Turns a serde error message into an issue; `None` when it should stay silent.
fn describe(msg: &str, cur: &[Seg], ctx: &Ctx) -> Option<Issue> {
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let (found, mut allowed) = match names.split_first() {
            Some((f, a)) => (*f, a.to_vec()),
            None => ("?", Vec::new()),
        };
        let parent = cur.get(..cur.len().saturating_sub(1)).unwrap_or_default();
        if parent == [Seg::Key("monkeys".into())] {
            let known: Vec<&str> = MonkeyName::ALL.iter().map(|m| m.as_str()).collect();
            let mut issue = Issue::at(
                cur.to_vec(),
                format!("unknown monkey `{found}`; known monkeys: {}", known.join(", ")),
            );
            issue.at_key = true;
            if let Some(c) = closest(found, known.iter().copied()) {
                issue.hint = Some(format!("did you mean `{c}`?"));
            }
            return Some(issue);
        }
        if matches!(parent, [Seg::Key(t), Seg::Index(_)] if t == "targets" || t == "sinks")
            && !allowed.contains(&"type")
        {
            allowed.insert(0, "type");
        }
        let list = allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
        let hint = match closest(found, allowed.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? allowed keys: {list}"),
            None if allowed.is_empty() => "remove it".to_string(),
            None => format!("allowed keys: {list}"),
        };
        let mut issue = Issue::at(cur.to_vec(), format!("unknown key `{found}`")).hint(hint);
        issue.at_key = true;
        return Some(issue);
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let field = backticked(rest).first().copied().unwrap_or("?").to_string();
        let mut full = ctx.loc.translate(cur);
        full.push(Seg::Key(field.clone()));
        if ctx.removed.contains(&path_string(&full)) {
            // Already reported as wrong where it was written.
            return None;
        }
        let mut issue = Issue::at(cur.to_vec(), format!("missing key `{field}`"));
        issue.at_key = true;
        return Some(issue);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        if let Some((found, expected)) = names.split_first() {
            let list = expected.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
            let mut issue =
                Issue::at(cur.to_vec(), format!("unknown value `{found}`; expected one of {list}"));
            if let Some(c) = closest(found, expected.iter().copied()) {
                issue.hint = Some(format!("did you mean `{c}`?"));
            }
            return Some(issue);
        }
    }
    let mut issue = Issue::at(cur.to_vec(), msg.to_string());
    let quoted = !ctx.loc.is_plain(&ctx.loc.translate(cur));
    if quoted && msg.starts_with("invalid type: string") && !msg.ends_with("expected a string") {
        issue.hint = Some("a quoted value is a string; remove the quotes".to_string());
    }
    Some(issue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let c = ["schedule", "probability", "enabled"];
        assert_eq!(closest("schedul", c), Some("schedule"));
        assert_eq!(closest("probabilty", c), Some("probability"));
        assert_eq!(closest("zebra", c), None);
    }

    #[test]
    fn backticks() {
        assert_eq!(backticked("`a`, expected one of `b`, `c`"), vec!["a", "b", "c"]);
    }
}
