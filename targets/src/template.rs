//! Argv templates: `{id}`, `{address}`, `{group}`, `{zone}` and `{tag:NAME}` filled in per instance, no shell.
//!
//! A template is an argv vector; each element may hold literal text and any number of placeholders
//! (`app@{id}`). Rendering replaces each placeholder inside its own element, so a value never splits into
//! several arguments and is never interpreted by a shell. `{{` and `}}` stand for literal braces.

use std::fmt;

use simian_monkeys::Instance;

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

/// Why a template is malformed or cannot be rendered for an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template has no elements, so there is no program to run.
    #[error("the command template is empty; give at least a program name")]
    Empty,
    /// A `{…}` names no known placeholder.
    #[error(
        "unknown placeholder `{{{name}}}` in `{element}`; known placeholders: {{id}}, {{address}}, {{group}}, \
         {{zone}}, {{tag:NAME}} (write `{{{{` and `}}}}` for literal braces)"
    )]
    Unknown {
        /// The text between the braces.
        name: String,
        /// The template element it appeared in.
        element: String,
    },
    /// A `{` without its closing `}`.
    #[error("unclosed `{{` in `{element}`; write `{{{{` for a literal brace")]
    Unclosed {
        /// The template element.
        element: String,
    },
    /// A `}` that closes nothing.
    #[error("unmatched `}}` in `{element}`; write `}}}}` for a literal brace")]
    Unmatched {
        /// The template element.
        element: String,
    },
    /// The instance lacks a value a placeholder needs.
    #[error(
        "instance `{instance}` has no {what}, which the command template uses as `{placeholder}`"
    )]
    Missing {
        /// Id of the instance being rendered for.
        instance: String,
        /// What is missing, e.g. `address` or `tag \`pid\``.
        what: String,
        /// The placeholder that needed it.
        placeholder: Placeholder,
    },
}

/// One parsed piece of a template element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hole(Placeholder),
}

/// Splits one element into literal text and placeholders.
fn parse_element(element: &str) -> Result<Vec<Piece>, TemplateError> {
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
            '}' => {
                return Err(TemplateError::Unmatched {
                    element: element.to_string(),
                })
            }
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
                    return Err(TemplateError::Unclosed {
                        element: element.to_string(),
                    });
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
                        _ => {
                            return Err(TemplateError::Unknown {
                                name,
                                element: element.to_string(),
                            })
                        }
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
pub fn placeholders(template: &[String]) -> Result<Vec<Placeholder>, TemplateError> {
    let mut out = Vec::new();
    for element in template {
        for piece in parse_element(element)? {
            if let Piece::Hole(p) = piece {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Checks a command template for validation: it must be non-empty and well-formed.
pub fn check(template: &[String]) -> Result<(), TemplateError> {
    if template.is_empty() {
        return Err(TemplateError::Empty);
    }
    placeholders(template).map(|_| ())
}

/// The value `hole` takes for `inst`, or why there is none.
fn value<'a>(hole: &Placeholder, inst: &'a Instance) -> Result<&'a str, TemplateError> {
    let missing = |what: String| TemplateError::Missing {
        instance: inst.id.clone(),
        what,
        placeholder: hole.clone(),
    };
    match hole {
        Placeholder::Id => Ok(&inst.id),
        Placeholder::Group => Ok(&inst.group),
        Placeholder::Address => inst
            .address
            .as_deref()
            .ok_or_else(|| missing("address".to_string())),
        Placeholder::Zone => inst
            .zone
            .as_deref()
            .ok_or_else(|| missing("zone".to_string())),
        Placeholder::Tag(name) => inst
            .tags
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| missing(format!("tag `{name}`"))),
    }
}

/// Renders `template` for `inst`: one output element per template element, placeholders replaced in place.
///
/// An empty template renders to an empty argv (use [`check`] to reject it). A placeholder whose value the
/// instance lacks is an error naming it; nothing is ever replaced by an empty string silently.
pub fn render(template: &[String], inst: &Instance) -> Result<Vec<String>, TemplateError> {
    template
        .iter()
        .map(|element| {
            let mut out = String::with_capacity(element.len());
            for piece in parse_element(element)? {
                match piece {
                    Piece::Text(t) => out.push_str(&t),
                    Piece::Hole(h) => out.push_str(value(&h, inst)?),
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn inst() -> Instance {
        Instance {
            target: "lab".into(),
            id: "web-1".into(),
            address: Some("10.0.0.7".into()),
            group: "web".into(),
            zone: None,
            tags: BTreeMap::from([("pid".to_string(), "1234".to_string())]),
        }
    }

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_every_placeholder_in_place() {
        let mut i = inst();
        i.zone = Some("a".into());
        let out = render(
            &argv(&[
                "ssh",
                "root@{address}",
                "{group}/{id}@{zone}",
                "kill",
                "{tag:pid}",
                "plain",
            ]),
            &i,
        )
        .expect("renders");
        assert_eq!(
            out,
            argv(&[
                "ssh",
                "root@10.0.0.7",
                "web/web-1@a",
                "kill",
                "1234",
                "plain"
            ])
        );
    }

    #[test]
    fn escapes_braces() {
        let out = render(&argv(&["{{id}}", "a}}b{{", "{{{id}}}"]), &inst()).expect("renders");
        assert_eq!(out, argv(&["{id}", "a}b{", "{web-1}"]));
    }

    #[test]
    fn missing_values_are_errors_naming_them() {
        let err = render(&argv(&["x", "{zone}"]), &inst()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance `web-1` has no zone, which the command template uses as `{zone}`"
        );
        let err = render(&argv(&["{tag:owner}"]), &inst()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "instance `web-1` has no tag `owner`, which the command template uses as `{tag:owner}`"
        );
        let mut i = inst();
        i.address = None;
        let err = render(&argv(&["{address}"]), &i).unwrap_err();
        assert!(err.to_string().contains("has no address"), "{err}");
    }

    #[test]
    fn empty_values_that_exist_are_kept() {
        let mut i = inst();
        i.tags.insert("empty".into(), String::new());
        assert_eq!(
            render(&argv(&["a{tag:empty}b"]), &i).expect("renders"),
            argv(&["ab"])
        );
    }

    #[test]
    fn malformed_templates_are_rejected() {
        for (t, want) in [
            ("{host}", "unknown placeholder `{host}` in `{host}`"),
            ("{tag:}", "unknown placeholder `{tag:}`"),
            ("{ID}", "unknown placeholder `{ID}`"),
            ("{}", "unknown placeholder `{}`"),
            ("a{id", "unclosed `{` in `a{id`"),
            ("a}b", "unmatched `}` in `a}b`"),
        ] {
            let err = check(&argv(&["x", t])).unwrap_err().to_string();
            assert!(err.starts_with(want), "{t}: {err}");
            assert!(render(&argv(&[t]), &inst()).is_err(), "{t}");
        }
        assert_eq!(check(&[]), Err(TemplateError::Empty));
        assert_eq!(render(&[], &inst()), Ok(vec![]));
    }

    #[test]
    fn lists_placeholders() {
        let ps =
            placeholders(&argv(&["kill", "{tag:pid}", "{id}-{id}", "{{zone}}"])).expect("parses");
        assert_eq!(
            ps,
            vec![
                Placeholder::Tag("pid".into()),
                Placeholder::Id,
                Placeholder::Id
            ]
        );
        assert_eq!(ps[0].to_string(), "{tag:pid}");
    }

    proptest! {
        #[test]
        fn any_id_lands_verbatim_in_one_element(id in any::<String>(), extra in "[a-z ;$()'\"]{0,8}") {
            let mut i = inst();
            i.id = id.clone();
            let template = argv(&["echo", "{id}", "pre-{id}-post", "{{literal}}", "--"]);
            let out = render(&template, &i).expect("renders");
            prop_assert_eq!(out.len(), template.len());
            prop_assert_eq!(&out[1], &id);
            prop_assert_eq!(&out[2], &format!("pre-{id}-post"));
            prop_assert_eq!(&out[3], "{literal}");
            // Shell-looking values stay one argument too.
            i.id = format!("a b; rm -rf / $(echo {extra}) 'q\"");
            let out = render(&template, &i).expect("renders");
            prop_assert_eq!(out.len(), template.len());
            prop_assert_eq!(&out[1], &i.id);
        }

        #[test]
        fn parsing_never_panics(element in any::<String>()) {
            let _ = check(std::slice::from_ref(&element));
            let _ = render(std::slice::from_ref(&element), &inst());
        }
    }
}
