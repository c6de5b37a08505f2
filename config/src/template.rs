//! Argv template syntax: `{id}`, `{address}`, `{group}`, `{zone}` and `{tag:NAME}`, with `{{`/`}}` escapes.
//!
//! A template is an argv vector; each element may hold literal text and any number of placeholders
//! (`app@{id}`). This module only parses: validation uses it to check policies, and `simian-targets` renders
//! the parsed [`Piece`]s for an instance (each placeholder inside its own element, never through a shell).

use std::fmt;

/// What to write instead of a malformed placeholder; shown as a hint with every syntax error.
pub const SYNTAX_HINT: &str =
    "known placeholders: {id}, {address}, {group}, {zone}, {tag:NAME}; write {{ and }} for literal braces";

/// One placeholder a template may use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placeholder {
    /// `{id}`: the instance id.
    Id,
    /// `{address}`: the instance address (an error when the instance has none).
    Address,
    /// `{group}`: the instance group.
    Group,
    /// `{zone}`: the availability zone (an error when the instance has none).
    Zone,
    /// `{tag:NAME}`: the value of tag `NAME` (an error when the instance lacks it).
    Tag(String),
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placeholder::Id => f.write_str("{id}"),
            Placeholder::Address => f.write_str("{address}"),
            Placeholder::Group => f.write_str("{group}"),
            Placeholder::Zone => f.write_str("{zone}"),
            Placeholder::Tag(name) => write!(f, "{{tag:{name}}}"),
        }
    }
}

/// Why a template is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The template has no elements, so there is no program to run.
    #[error("the command template is empty; give at least a program name")]
    Empty,
    /// A `{…}` names no known placeholder.
    #[error("unknown placeholder `{{{name}}}` in `{element}`")]
    Unknown {
        /// The text between the braces.
        name: String,
        /// The template element it appeared in.
        element: String,
    },
    /// A `{` without its closing `}`.
    #[error("unclosed `{{` in `{element}`")]
    Unclosed {
        /// The template element.
        element: String,
    },
    /// A `}` that closes nothing.
    #[error("unmatched `}}` in `{element}`")]
    Unmatched {
        /// The template element.
        element: String,
    },
}

impl ParseError {
    /// How to fix a syntax error ([`SYNTAX_HINT`]); `None` for [`ParseError::Empty`], whose message says it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ParseError::Empty => None,
            ParseError::Unknown { .. } | ParseError::Unclosed { .. } | ParseError::Unmatched { .. } => {
                Some(SYNTAX_HINT)
            }
        }
    }
}

/// One parsed piece of a template element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text, escapes already resolved (`{{` is `{`).
    Text(String),
    /// A placeholder to fill in.
    Hole(Placeholder),
}

/// Splits one element into literal text and placeholders (adjacent text is merged; no empty text pieces).
pub fn pieces(element: &str) -> Result<Vec<Piece>, ParseError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = element.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => return Err(ParseError::Unmatched { element: element.to_string() }),
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(ParseError::Unclosed { element: element.to_string() });
                }
                let hole = match name.as_str() {
                    "id" => Placeholder::Id,
                    "address" => Placeholder::Address,
                    "group" => Placeholder::Group,
                    "zone" => Placeholder::Zone,
                    other => match other.strip_prefix("tag:") {
                        Some(tag) if !tag.is_empty() && !tag.contains('{') => {
                            Placeholder::Tag(tag.to_string())
                        }
                        _ => return Err(ParseError::Unknown { name, element: element.to_string() }),
                    },
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Hole(hole));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The placeholders `template` uses, in order of appearance (repeats included).
///
/// Fails on malformed syntax; an empty template is fine here (it has no placeholders).
pub fn placeholders(template: &[String]) -> Result<Vec<Placeholder>, ParseError> {
    let mut out = Vec::new();
    for element in template {
        for piece in pieces(element)? {
            if let Piece::Hole(p) = piece {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Checks a command template: it must be non-empty and well-formed.
pub fn check(template: &[String]) -> Result<(), ParseError> {
    if template.is_empty() {
        return Err(ParseError::Empty);
    }
    placeholders(template).map(|_| ())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn well_formed_elements_parse() {
        for ok in ["app@{id}", "{tag:pid}", "{{literal}}", "{address}:{zone}/{group}", "plain", ""] {
            assert!(pieces(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn splits_text_and_holes_resolving_escapes() {
        assert_eq!(
            pieces("{{{id}}}-{tag:pid}x").expect("parses"),
            vec![
                Piece::Text("{".into()),
                Piece::Hole(Placeholder::Id),
                Piece::Text("}-".into()),
                Piece::Hole(Placeholder::Tag("pid".into())),
                Piece::Text("x".into()),
            ]
        );
        assert_eq!(pieces("").expect("parses"), vec![]);
    }

    #[test]
    fn malformed_templates_are_rejected() {
        for (t, want) in [
            ("{host}", "unknown placeholder `{host}` in `{host}`"),
            ("{ip}", "unknown placeholder `{ip}` in `{ip}`"),
            ("{tag:}", "unknown placeholder `{tag:}` in `{tag:}`"),
            ("{ID}", "unknown placeholder `{ID}` in `{ID}`"),
            ("{}", "unknown placeholder `{}` in `{}`"),
            ("a{id", "unclosed `{` in `a{id`"),
            ("{id", "unclosed `{` in `{id`"),
            ("a}b", "unmatched `}` in `a}b`"),
            ("id}", "unmatched `}` in `id}`"),
        ] {
            let err = check(&argv(&["x", t])).unwrap_err();
            assert_eq!(err.to_string(), want, "{t}");
            assert_eq!(err.hint(), Some(SYNTAX_HINT), "{t}");
            assert_eq!(pieces(t).unwrap_err(), err, "{t}");
        }
        assert_eq!(check(&[]), Err(ParseError::Empty));
        assert_eq!(ParseError::Empty.hint(), None);
        assert_eq!(placeholders(&[]), Ok(vec![]));
    }

    #[test]
    fn lists_placeholders() {
        let ps = placeholders(&argv(&["kill", "{tag:pid}", "{id}-{id}", "{{zone}}"])).expect("parses");
        assert_eq!(ps, vec![Placeholder::Tag("pid".into()), Placeholder::Id, Placeholder::Id]);
        assert_eq!(ps[0].to_string(), "{tag:pid}");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(element in any::<String>()) {
            let _ = check(std::slice::from_ref(&element));
            let _ = pieces(&element);
        }

        #[test]
        fn escaped_text_round_trips(text in any::<String>()) {
            let escaped = text.replace('{', "{{").replace('}', "}}");
            let parsed = pieces(&escaped).expect("escaped text parses");
            let want = if text.is_empty() { vec![] } else { vec![Piece::Text(text)] };
            prop_assert_eq!(parsed, want);
        }
    }
}
