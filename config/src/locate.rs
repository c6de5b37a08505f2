//! Where things are: a map from key paths (`targets[0].hosts[2].id`) to 1-based line and column.
//!
//! Built from yaml-rust2's marked events, independently of the value tree, so it stays valid while the loader
//! removes bad nodes from that tree. Removed sequence items are remembered so that indices in later paths can
//! be translated back to the indices the user wrote.

use std::collections::{BTreeSet, HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based (line, column).
pub(crate) type Loc = (usize, usize);

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A key segment.
pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// Renders segments as `a.b[0].c` (empty for the document root).
pub(crate) fn path_string(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// One problem found somewhere in the policy, before it is given a file and a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    /// Where; indices as in the value being checked (see [`Locator::translate`]).
    pub segs: Vec<Seg>,
    /// What is wrong, lowercase.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// Point at the key rather than its value (unknown keys, missing keys).
    pub at_key: bool,
}

impl Issue {
    /// An issue located at the value of `segs`.
    pub fn at(segs: Vec<Seg>, message: impl Into<String>) -> Issue {
        Issue { segs, message: message.into(), hint: None, at_key: false }
    }

    /// The same issue with a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Issue {
        self.hint = Some(hint.into());
        self
    }
}

/// Key and value positions of one YAML document, by key path.
#[derive(Debug, Default)]
pub(crate) struct Locator {
    keys: HashMap<String, Loc>,
    values: HashMap<String, Loc>,
    plain: HashSet<String>,
    /// Keys written twice in one mapping, in file order.
    pub duplicates: Vec<(String, Loc)>,
    /// Original indices removed from each sequence (by original path).
    removed: HashMap<String, BTreeSet<usize>>,
    /// Where the nesting first went deeper than [`crate::load::MAX_DEPTH`] (the map stops there).
    pub too_deep: Option<Loc>,
}

impl Locator {
    /// Reads the first document of `text`; a syntax error just ends the map early.
    pub fn build(text: &str) -> Locator {
        Self::scan(text, None)
    }

    /// Like [`Locator::build`], but keeps only the positions [`Locator::value_loc`] and
    /// [`Locator::key_loc`] can need for `issues` (their paths and every enclosing one): locating three
    /// errors in a 100,000-host policy then holds three entries, not a million. Duplicate keys are not
    /// tracked (only a document that already read without any may use this).
    pub fn build_for(text: &str, issues: &[Issue]) -> Locator {
        let wanted = issues
            .iter()
            .flat_map(|i| (0..=i.segs.len()).map(|n| path_string(i.segs.get(..n).unwrap_or_default())))
            .collect();
        Self::scan(text, Some(wanted))
    }

    fn scan(text: &str, wanted: Option<HashSet<String>>) -> Locator {
        let mut b = Builder { wanted, ..Builder::default() };
        let mut parser = Parser::new_from_str(text);
        // Pulled event by event so that too deep a nesting stops the scan at once (yaml-rust2's scanner costs
        // O(depth) per token in flow collections). A scan error leaves a partial map; serde_yaml reports it.
        while !b.done {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) => break,
                Ok((ev, mark)) => b.on_event(ev, mark),
                // yaml-rust2 refuses nesting beyond its own limit while scanning ahead.
                Err(e) if e.info().contains("recursion limit") => {
                    b.loc.too_deep = Some((e.marker().line(), e.marker().col() + 1));
                    break;
                }
                Err(_) => break,
            }
        }
        b.loc
    }

    /// Where the key ending `segs` is written (original indices).
    pub fn key_loc(&self, segs: &[Seg]) -> Option<Loc> {
        self.keys.get(&path_string(segs)).copied()
    }

    /// Where the value at `segs` starts (original indices), else the nearest enclosing node's position.
    pub fn value_loc(&self, segs: &[Seg]) -> Option<Loc> {
        (0..=segs.len()).rev().find_map(|n| {
            let p = path_string(segs.get(..n).unwrap_or_default());
            self.values.get(&p).or_else(|| self.keys.get(&p)).copied()
        })
    }

    /// Whether the scalar at `segs` was written plain (unquoted).
    pub fn is_plain(&self, segs: &[Seg]) -> bool {
        self.plain.contains(&path_string(segs))
    }

    /// Maps indices of the current (pruned) value tree to the indices the user wrote.
    pub fn translate(&self, segs: &[Seg]) -> Vec<Seg> {
        let mut out: Vec<Seg> = Vec::with_capacity(segs.len());
        for s in segs {
            match s {
                Seg::Key(_) => out.push(s.clone()),
                Seg::Index(i) => {
                    let orig = match self.removed.get(&path_string(&out)) {
                        Some(gone) => original_index(gone, *i),
                        None => *i,
                    };
                    out.push(Seg::Index(orig));
                }
            }
        }
        out
    }

    /// Records that the item at current index `index` of the sequence at (current) `seq` was removed.
    pub fn mark_removed(&mut self, seq: &[Seg], index: usize) {
        let orig_seq = path_string(&self.translate(seq));
        let gone = self.removed.entry(orig_seq).or_default();
        let orig = original_index(gone, index);
        gone.insert(orig);
    }
}

/// The `i`-th original index that is not in `gone`.
fn original_index(gone: &BTreeSet<usize>, i: usize) -> usize {
    let mut orig = i;
    for g in gone {
        if *g <= orig {
            orig += 1;
        } else {
            break;
        }
    }
    orig
}

enum Frame {
    Map { path: Vec<Seg>, key: Option<String>, start: Loc, located: bool },
    Seq { path: Vec<Seg>, next: usize },
}

#[derive(Default)]
struct Builder {
    loc: Locator,
    /// Only these paths are recorded (`None`: all of them).
    wanted: Option<HashSet<String>>,
    stack: Vec<Frame>,
    /// Depth inside a complex (mapping or sequence) key, which is not tracked.
    skip: usize,
    done: bool,
}

/// Whether a path is to be recorded.
fn wants(wanted: &Option<HashSet<String>>, path: &str) -> bool {
    wanted.as_ref().is_none_or(|w| w.contains(path))
}

impl Builder {
    /// Records where the value at `p` starts (and whether it is a plain scalar), if it is wanted.
    fn value_at(&mut self, p: String, at: Loc, plain: bool) {
        if wants(&self.wanted, &p) {
            if plain {
                self.loc.plain.insert(p.clone());
            }
            self.loc.values.insert(p, at);
        }
    }

    /// True when the next node is a mapping key.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Records a key of the innermost mapping.
    fn take_key(&mut self, k: String, at: Loc) {
        if let Some(Frame::Map { path, key, located, .. }) = self.stack.last_mut() {
            if !*located {
                *located = true;
                let ps = path_string(path);
                if wants(&self.wanted, &ps) {
                    self.loc.values.insert(ps, at);
                }
            }
            let mut p = path.clone();
            p.push(Seg::Key(k.clone()));
            let ps = path_string(&p);
            if !wants(&self.wanted, &ps) {
                *key = Some(k);
                return;
            }
            match self.loc.keys.entry(ps) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    self.loc.duplicates.push((e.key().clone(), at))
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(at);
                }
            }
            *key = Some(k);
        }
    }

    /// The path of the next value node, advancing the parent.
    fn value_path(&mut self) -> Vec<Seg> {
        match self.stack.last_mut() {
            None => Vec::new(),
            Some(Frame::Map { path, key, .. }) => {
                let mut p = path.clone();
                p.push(Seg::Key(key.take().unwrap_or_default()));
                p
            }
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(Seg::Index(*next));
                *next += 1;
                p
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        let at = (mark.line(), mark.col() + 1);
        if matches!(ev, Event::MappingStart(..) | Event::SequenceStart(..))
            && self.stack.len() + self.skip >= crate::load::MAX_DEPTH
        {
            self.loc.too_deep = Some(at);
            self.done = true;
            return;
        }
        if self.skip > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skip += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.skip -= 1;
                    if self.skip == 0 {
                        self.take_key("?".to_string(), at);
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(s, style, ..) => {
                if self.expecting_key() {
                    self.take_key(s, at);
                } else {
                    let p = path_string(&self.value_path());
                    self.value_at(p, at, style == TScalarStyle::Plain);
                }
            }
            Event::Alias(_) => {
                if self.expecting_key() {
                    self.take_key("*".to_string(), at);
                } else {
                    let p = path_string(&self.value_path());
                    self.value_at(p, at, false);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if self.expecting_key() => {
                self.skip = 1;
            }
            Event::MappingStart(..) => {
                let path = self.value_path();
                self.stack.push(Frame::Map { path, key: None, start: at, located: false });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path();
                self.value_at(path_string(&path), at, false);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { path, start, located: false, .. }) = self.stack.pop() {
                    self.value_at(path_string(&path), start, false);
                }
            }
            Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_values() {
        let text = "version: 1\nmonkeys:\n  chaos:\n    schedule: \"x\"\ntargets:\n  - type: hosts\n    hosts:\n      - {id: a}\n";
        let l = Locator::build(text);
        let p = |s: &[Seg]| s.to_vec();
        assert_eq!(l.key_loc(&p(&[key("version")])), Some((1, 1)));
        assert_eq!(l.value_loc(&p(&[key("version")])), Some((1, 10)));
        let sched = [key("monkeys"), key("chaos"), key("schedule")];
        assert_eq!(l.key_loc(&sched), Some((4, 5)));
        assert_eq!(l.value_loc(&sched), Some((4, 15)));
        assert!(!l.is_plain(&sched));
        assert!(l.is_plain(&[key("version")]));
        let t0 = [key("targets"), Seg::Index(0)];
        assert_eq!(l.value_loc(&t0), Some((6, 5)));
        let id = [key("targets"), Seg::Index(0), key("hosts"), Seg::Index(0), key("id")];
        assert_eq!(l.value_loc(&id), Some((8, 14)));
        // Unknown paths fall back to the nearest ancestor.
        let deep = [key("targets"), Seg::Index(0), key("nope")];
        assert_eq!(l.value_loc(&deep), Some((6, 5)));
    }

    #[test]
    fn a_locator_for_some_issues_finds_them_where_the_full_one_does_and_keeps_nothing_else() {
        let text = "version: 1\ntargets:\n  - type: hosts\n    hosts:\n      - {id: a, address: x}\n      - {id: b}\n";
        let id1 = vec![key("targets"), Seg::Index(0), key("hosts"), Seg::Index(1), key("id")];
        let missing = vec![key("targets"), Seg::Index(0), key("hosts"), Seg::Index(1), key("address")];
        let issues = [Issue::at(id1.clone(), "x"), Issue::at(missing.clone(), "y")];
        let (full, lean) = (Locator::build(text), Locator::build_for(text, &issues));
        for segs in [&id1, &missing] {
            assert_eq!(lean.value_loc(segs), full.value_loc(segs), "{segs:?}");
            assert_eq!(lean.key_loc(segs), full.key_loc(segs), "{segs:?}");
            assert_eq!(lean.is_plain(segs), full.is_plain(segs), "{segs:?}");
        }
        assert_eq!(lean.value_loc(&id1), Some((6, 14)));
        // Only the issues' paths and their ancestors are held: the other host is not.
        let other = [key("targets"), Seg::Index(0), key("hosts"), Seg::Index(0), key("address")];
        assert_eq!(full.value_loc(&other), Some((5, 26)));
        assert_ne!(lean.value_loc(&other), full.value_loc(&other));
        assert!(lean.keys.len() + lean.values.len() <= 2 * (id1.len() + 2), "{lean:?}");
    }

    #[test]
    fn translates_removed_indices() {
        let mut l = Locator::default();
        let seq = [key("a")];
        l.mark_removed(&seq, 1); // original 1 gone
        l.mark_removed(&seq, 1); // current 1 is original 2
        let t = l.translate(&[key("a"), Seg::Index(1), key("b")]);
        assert_eq!(t, vec![key("a"), Seg::Index(3), key("b")]);
        assert_eq!(l.translate(&[key("a"), Seg::Index(0)]), vec![key("a"), Seg::Index(0)]);
    }

    #[test]
    fn records_duplicates() {
        let l = Locator::build("a: 1\nb: 2\na: 3\n");
        assert_eq!(l.duplicates, vec![("a".to_string(), (3, 1))]);
    }
}
