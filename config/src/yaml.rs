//! The one place that touches serde_yaml: parsing text into a value tree and deserializing from it.
//!
//! Deserializing goes through [`Lenient`], which reads numbers and booleans as strings where a string is
//! expected (`pid: 1234` in tags, `value: true` in `opt_in`), the way serde_yaml's text deserializer does.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub(crate) use serde_yaml::{Error, Mapping, Value};

use crate::locate::Loc;

/// A YAML syntax error: message and 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub location: Option<Loc>,
}

/// Parses one YAML document into a value tree.
pub(crate) fn parse(text: &str) -> Result<Value, SyntaxError> {
    serde_yaml::from_str::<Value>(text).map_err(|e| {
        let location = e.location().map(|l| (l.line(), l.column()));
        let mut message = e.to_string();
        if let Some((line, col)) = location {
            message = message.replacen(&format!(" at line {line} column {col}"), "", 1);
        }
        SyntaxError { message, location }
    })
}

/// Parses a single plain scalar the way YAML would (`42`, `true`, `0.5`); `None` for anything else.
pub(crate) fn plain_scalar(text: &str) -> Option<Value> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => Some(v),
        _ => None,
    }
}

/// A plain scalar typed exactly as serde_yaml types it (null, bool, number, else string), without a parse for
/// the common case: only texts made of number characters are handed to serde_yaml.
pub(crate) fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    // Every YAML number (`0x1F`, `-0o7`, `+.inf`, `.NaN`, `1e-3`) is made of these, with at most one dot, and
    // holds a digit unless it is an infinity or NaN (which start with a dot after an optional sign).
    let number_chars = text.chars().all(|c| c.is_ascii_hexdigit() || "xXoOiInN.+-".contains(c));
    let digit_or_dot =
        text.bytes().any(|b| b.is_ascii_digit()) || text.trim_start_matches(['+', '-']).starts_with('.');
    if number_chars && digit_or_dot && text.matches('.').count() <= 1 {
        if let Ok(v @ Value::Number(_)) = serde_yaml::from_str::<Value>(&text) {
            return v;
        }
    }
    Value::String(text)
}

/// The text of a scalar mapping key.
pub(crate) fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => None,
    }
}

/// A value tree as a serde deserializer that also reads scalars as strings.
pub(crate) struct Lenient(pub Value);

macro_rules! delegate {
    ($($method:ident),*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Mapping(m) => visitor.visit_map(MapAcc::new(m)),
            Value::Sequence(s) => visitor.visit_seq(SeqAcc(s.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            Value::Number(n) => visitor.visit_string(n.to_string()),
            other => other.deserialize_string(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Mapping(m) => visitor.visit_map(MapAcc::new(m)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Mapping(m) => visitor.visit_map(MapAcc::new(m)),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Sequence(s) => visitor.visit_seq(SeqAcc(s.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Sequence(s) => visitor.visit_seq(SeqAcc(s.into_iter())),
            other => other.deserialize_tuple(len, visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Sequence(s) => visitor.visit_seq(SeqAcc(s.into_iter())),
            other => other.deserialize_tuple_struct(name, len, visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    delegate!(
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
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_ignored_any
    );
}

struct MapAcc {
    iter: serde_yaml::mapping::IntoIter,
    value: Option<Value>,
}

impl MapAcc {
    fn new(m: Mapping) -> MapAcc {
        MapAcc { iter: m.into_iter(), value: None }
    }
}

impl<'de> MapAccess<'de> for MapAcc {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(Lenient(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(Lenient(v)),
            None => Err(de::Error::custom("value requested before its key")),
        }
    }
}

struct SeqAcc(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for SeqAcc {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(v) => seed.deserialize(Lenient(v)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn scalars_read_as_strings() {
        let v = parse("pid: 1234\nok: true\nf: 0.5\n").expect("parses");
        let m: BTreeMap<String, String> = serde::Deserialize::deserialize(Lenient(v)).expect("lenient");
        assert_eq!(m["pid"], "1234");
        assert_eq!(m["ok"], "true");
        assert_eq!(m["f"], "0.5");
    }

    proptest::proptest! {
        /// The cheap typing agrees with serde_yaml's on every text that is one plain scalar.
        #[test]
        fn plain_scalars_are_typed_as_serde_yaml_types_them(text in "[0-9a-zA-Z.+_~-]{0,10}") {
            if let Ok(v @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) = parse(&text) {
                proptest::prop_assert_eq!(resolve_plain(text.clone()), v);
            }
        }
    }

    #[test]
    fn plain_scalars_typed() {
        for (text, want) in [
            ("0x1F", Value::from(31)),
            ("-12", Value::from(-12)),
            ("1e3", Value::from(1000.0)),
            ("127.0.0.1", Value::from("127.0.0.1")),
            ("0123", Value::from("0123")),
            ("True", Value::from(true)),
            ("~", Value::Null),
            ("web-1", Value::from("web-1")),
        ] {
            assert_eq!(resolve_plain(text.to_string()), want, "{text}");
        }
    }

    #[test]
    fn syntax_error_has_location_without_suffix() {
        let e = parse("a: 1\n  b: 2\n").expect_err("bad yaml");
        assert_eq!(e.location, Some((2, 4)));
        assert!(!e.message.contains("at line 2"), "{}", e.message);
    }
}
