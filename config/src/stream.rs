//! The fast path: serde straight over yaml-rust2's event stream, `${VAR}` expanded on the way, no value tree.
//!
//! A 100,000-host policy then costs about its own structs instead of a tree ten times their size. The fast
//! path only has to be right when it succeeds: anything it does not read exactly as the tree path would —
//! anchors, aliases, tags, merge keys, duplicate keys, a second document, a type mismatch, a `${VAR}` that
//! does not expand — makes it give up, and the tree path (which finds and locates every error) takes over.
//! Scalars are typed by the tree path's own code ([`Lenient`] over a one-scalar [`Value`]), so both agree.

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use crate::yaml::{resolve_plain, Lenient, Value};

/// Why the fast path gave up (never shown to users: the tree path says what is wrong).
#[derive(Debug)]
pub(crate) struct GiveUp(String);

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        GiveUp(msg.to_string())
    }
}

fn give_up<T>(why: impl std::fmt::Display) -> Result<T, GiveUp> {
    Err(GiveUp(why.to_string()))
}

/// Reads one YAML document as `T`; `Err` means "use the tree path", not "the policy is wrong".
pub(crate) fn read<T: DeserializeOwned>(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<T, GiveUp> {
    read_with(text, Some(env))
}

/// The tree path's value tree for the documents this reader handles, `${VAR}` left as written (the tree path
/// expands it, with locations): the same tree serde_yaml builds, without serde_yaml first holding every event
/// of the document (~200 MB for a 100,000-host policy). `None`: let serde_yaml parse it (tags, anchors, a
/// duplicate key, a syntax error — it explains those).
pub(crate) fn read_tree(text: &str) -> Option<Value> {
    // Only a mapping can be a policy; anything else (where the two parsers can differ on block scalars at
    // the top level) is left to serde_yaml, whose tree the error is about.
    read_with(text, None).ok().filter(|v| matches!(v, Value::Mapping(_)))
}

/// What answers `${VAR}`.
type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

fn read_with<T: DeserializeOwned>(text: &str, env: Option<Env>) -> Result<T, GiveUp> {
    let mut events = Events { parser: Parser::new_from_str(text), env, depth: 0 };
    // yaml-rust2 frames even an implicit document with its start and end events.
    if !matches!((events.next()?, events.next()?), (Event::StreamStart, Event::DocumentStart)) {
        return give_up("no document");
    }
    let value = T::deserialize(&mut events)?;
    match (events.next()?, events.next()?) {
        (Event::DocumentEnd, Event::StreamEnd) => Ok(value),
        _ => give_up("more than one document"),
    }
}

/// The event stream as a deserializer.
struct Events<'t, 'e> {
    parser: Parser<std::str::Chars<'t>>,
    /// Answers `${VAR}`; `None`: strings stay as written.
    env: Option<Env<'e>>,
    depth: usize,
}

/// The kind of node that comes next.
enum Next {
    Scalar,
    Map,
    Seq,
}

impl Events<'_, '_> {
    fn next(&mut self) -> Result<Event, GiveUp> {
        self.parser.next_token().map(|(e, _)| e).or_else(give_up)
    }

    fn peek(&mut self) -> Result<&Event, GiveUp> {
        match self.parser.peek() {
            Ok((e, _)) => Ok(e),
            Err(e) => give_up(e),
        }
    }

    /// What the next node is; anchors, aliases and tags are left to the tree path.
    fn next_kind(&mut self) -> Result<Next, GiveUp> {
        match self.peek()? {
            Event::Scalar(_, _, 0, None) => Ok(Next::Scalar),
            Event::MappingStart(0, None) => Ok(Next::Map),
            Event::SequenceStart(0, None) => Ok(Next::Seq),
            other => give_up(format!("{other:?} is read by the tree path")),
        }
    }

    /// The next scalar as the tree path would have it after `${VAR}` expansion.
    fn scalar_value(&mut self) -> Result<Value, GiveUp> {
        let Event::Scalar(text, style, 0, None) = self.next()? else {
            return give_up("expected a scalar");
        };
        let plain = style == TScalarStyle::Plain;
        let value = if plain { resolve_plain(text) } else { Value::String(text) };
        // As in the tree path, only string values are expanded.
        match (value, self.env) {
            (Value::String(s), Some(env)) if s.contains('$') => {
                let (expanded, errors) = crate::env::expand_value(&s, || plain, env);
                if !errors.is_empty() {
                    return give_up("a variable does not expand");
                }
                Ok(expanded)
            }
            (v, _) => Ok(v),
        }
    }

    /// A mapping key: never expanded, `<<` (merge) left to the tree path.
    fn key_value(&mut self) -> Result<Option<Value>, GiveUp> {
        match self.next()? {
            Event::MappingEnd => Ok(None),
            Event::Scalar(text, style, 0, None) => {
                // The tree applies merges itself after parsing; read straight, a `<<` would be a plain key.
                if style == TScalarStyle::Plain && text == "<<" && self.env.is_some() {
                    return give_up("merge keys are read by the tree path");
                }
                Ok(Some(if style == TScalarStyle::Plain { resolve_plain(text) } else { Value::String(text) }))
            }
            _ => give_up("complex keys are read by the tree path"),
        }
    }

    fn enter(&mut self) -> Result<(), GiveUp> {
        self.depth += 1;
        if self.depth > crate::load::MAX_DEPTH {
            return give_up("too deep");
        }
        self.next().map(|_| ())
    }
}

fn lenient<T>(r: Result<T, serde_yaml::Error>) -> Result<T, GiveUp> {
    r.map_err(|e| GiveUp(e.to_string()))
}

/// A scalar goes through the tree path's [`Lenient`]; a mapping or sequence only where one is asked for.
macro_rules! scalar_only {
    ($($method:ident),*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
                match self.next_kind()? {
                    Next::Scalar => lenient(Lenient(self.scalar_value()?).$method(visitor)),
                    Next::Map | Next::Seq => give_up("a collection where a scalar belongs"),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for &mut Events<'_, '_> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.next_kind()? {
            Next::Scalar => lenient(Lenient(self.scalar_value()?).deserialize_any(visitor)),
            Next::Map => {
                self.enter()?;
                visitor.visit_map(Map { de: self, seen: Vec::new() })
            }
            Next::Seq => {
                self.enter()?;
                visitor.visit_seq(Seq { de: self })
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.next_kind()? {
            Next::Scalar => lenient(Lenient(self.scalar_value()?).deserialize_option(visitor)),
            Next::Map | Next::Seq => visitor.visit_some(self),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.next_kind()? {
            Next::Map => self.deserialize_any(visitor),
            Next::Scalar | Next::Seq => give_up("expected a mapping"),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GiveUp> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.next_kind()? {
            Next::Seq => self.deserialize_any(visitor),
            Next::Scalar | Next::Map => give_up("expected a sequence"),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, GiveUp> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, GiveUp> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GiveUp> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GiveUp> {
        match self.next_kind()? {
            Next::Scalar => lenient(Lenient(self.scalar_value()?).deserialize_unit_struct(name, visitor)),
            Next::Map | Next::Seq => give_up("a collection where a unit belongs"),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GiveUp> {
        match self.next_kind()? {
            Next::Scalar => lenient(Lenient(self.scalar_value()?).deserialize_enum(name, variants, visitor)),
            Next::Map | Next::Seq => give_up("enums with data are read by the tree path"),
        }
    }

    scalar_only!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_identifier,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_ignored_any
    );
}

/// Keys one mapping may have on the fast path; a bigger mapping (hostile or not) goes to the tree path.
const LINEAR_KEYS: usize = 32;

struct Map<'d, 't, 'e> {
    de: &'d mut Events<'t, 'e>,
    /// Hashes of the keys seen: a duplicate (or a collision, which only costs the tree path) gives up.
    seen: Vec<u64>,
}

/// FNV-1a of a key's text and kind: cheap for the short keys policies have.
fn key_hash(key: &Value) -> u64 {
    let (kind, text) = match key {
        Value::String(s) => (0u8, s.as_bytes()),
        Value::Bool(true) => (1, &b"true"[..]),
        Value::Bool(false) => (1, &b"false"[..]),
        Value::Null => (2, &b""[..]),
        Value::Number(_) | Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => (3, &b""[..]),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind);
    for b in text {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<'de> MapAccess<'de> for Map<'_, '_, '_> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, GiveUp> {
        let Some(key) = self.de.key_value()? else {
            self.de.depth -= 1;
            return Ok(None);
        };
        // Policies' mappings are small; a huge one (hostile or not) goes to the tree path, which hashes.
        // Numbers as keys: rare enough to leave to the tree path, which compares them exactly.
        let h = key_hash(&key);
        if self.seen.len() >= LINEAR_KEYS || self.seen.contains(&h) || matches!(key, Value::Number(_)) {
            return give_up("a duplicate, a number as a key, or a very large mapping");
        }
        self.seen.push(h);
        lenient(seed.deserialize(Lenient(key))).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, GiveUp> {
        seed.deserialize(&mut *self.de)
    }
}

struct Seq<'d, 't, 'e> {
    de: &'d mut Events<'t, 'e>,
}

impl<'de> SeqAccess<'de> for Seq<'_, '_, '_> {
    type Error = GiveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, GiveUp> {
        if matches!(self.de.peek()?, Event::SequenceEnd) {
            self.de.next()?;
            self.de.depth -= 1;
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(k: &str) -> Option<String> {
        (k == "N").then(|| "7".to_string())
    }

    #[test]
    fn reads_what_the_tree_path_reads() {
        let text = "a: 1\nb: \"1\"\nc: ${N}\nd: \"${N}\"\ne: [x, 0x1F, true]\nf: ~\n";
        let fast: BTreeMap<String, Option<serde_yaml::Value>> = read(text, &env).expect("fast");
        let mut tree = crate::yaml::parse(text).expect("tree");
        let mut issues = Vec::new();
        let loc = crate::locate::Locator::build(text);
        crate::env::expand_tree(&mut tree, &mut Vec::new(), &loc, &env, &mut issues);
        let slow: BTreeMap<String, Option<serde_yaml::Value>> =
            serde::Deserialize::deserialize(Lenient(tree)).expect("tree");
        assert_eq!(fast, slow);
        assert_eq!(fast["c"], Some(serde_yaml::Value::from(7)));
        assert_eq!(fast["d"], Some(serde_yaml::Value::from("7")));
    }

    #[test]
    fn the_event_reader_builds_the_tree_serde_yaml_builds() {
        let texts = [
            "version: 1\nname: x\nn: 0x1F\nf: 1.50\nz: ~\nq: \"12\"\ns: 'a b'\nv: ${HOME}\nb: [true, No, .inf, -0o7]\n",
            "targets:\n  - {id: a, tags: {pid: 1234, ok: yes}}\n  - - 1\n    - [2, {x: y}]\nempty: {}\ne: []\n",
            "a: |\n  line\n  two\nb: >-\n  folded\n  text\nc: \"esc\\n\"\n'quoted key': 1\ntrue: 2\n~: 3\n",
            "base: {x: 1}\nc:\n  <<: {y: 2}\n",
        ];
        for text in texts {
            let ours = read_tree(text).expect("the event reader reads it");
            let theirs = crate::yaml::parse(text).expect("serde_yaml reads it");
            assert_eq!(ours, theirs, "{text}");
        }
        // What serde_yaml explains (or resolves) itself is left to it.
        for text in
            ["a: &x 1\nb: *x\n", "a: !!str 1\n", "a: 1\na: 2\n", "a: [\n", "1: x\n", "a: 1\n---\nb: 2\n"]
        {
            assert!(read_tree(text).is_none(), "{text}");
        }
    }

    #[test]
    fn gives_up_on_what_only_the_tree_path_reads() {
        let m = |t: &str| read::<BTreeMap<String, serde_yaml::Value>>(t, &env).is_err();
        assert!(m("a: &x 1\nb: *x\n"), "anchors");
        assert!(m("a: 1\na: 2\n"), "duplicates");
        assert!(m("a: !!str 1\n"), "tags");
        assert!(m("a: ${UNSET}\n"), "unset variable");
        assert!(m("a: 1\n---\nb: 2\n"), "two documents");
        assert!(m("base: {x: 1}\nc:\n  <<: {y: 2}\n"), "merge key");
        let deep = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert!(m(&deep), "depth");
        assert!(!m("a: [[1]]\n"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whenever both build a tree, the event reader's is serde_yaml's: on YAML-ish text and on the
        /// examples with a piece cut out or replaced.
        #[test]
        fn the_event_reader_agrees_with_serde_yaml(
            text in "[a-z_:{}\\[\\], \"'$\n0-9.~|>#-]{0,300}",
            which in 0usize..3,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            len in 0usize..40,
            insert in "[a-z:{}\\[\\], \"'\n0-9.-]{0,8}",
        ) {
            let base = [
                include_str!("../examples/hosts.yaml"),
                include_str!("../examples/demo.yaml"),
                include_str!("../examples/aws.yaml"),
            ][which];
            let pos = at.index(base.len());
            let end = (pos + len).min(base.len());
            let mutated = match (base.get(..pos), base.get(end..)) {
                (Some(head), Some(tail)) => format!("{head}{insert}{tail}"),
                _ => base.to_string(),
            };
            // Where the two parsers disagree on whether text is YAML at all, the loader follows yaml-rust2, as
            // its fast path and locator always did.
            for t in [text.as_str(), mutated.as_str()] {
                if let (Some(ours), Ok(theirs)) = (read_tree(t), crate::yaml::parse(t)) {
                    proptest::prop_assert_eq!(ours, theirs, "{}", t);
                }
            }
        }
    }
}
