//! Argv templates: `{id}`, `{address}`, `{group}`, `{zone}` and `{tag:NAME}` filled in per instance, no shell.
//!
//! A template is an argv vector; each element may hold literal text and any number of placeholders
//! (`app@{id}`). Rendering replaces each placeholder inside its own element, so a value never splits into
//! several arguments and is never interpreted by a shell. `{{` and `}}` stand for literal braces.
//!
//! The syntax (parsing, [`placeholders`], [`check`]) lives in [`simian_config::template`], shared with policy
//! validation; this module adds rendering for an [`Instance`].

use simian_config::template::{pieces, Piece};
use simian_monkeys::Instance;

pub use simian_config::template::{check, placeholders, ParseError, Placeholder};

/// Why a template cannot be rendered for an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is malformed.
    #[error("{}", with_hint(.0))]
    Parse(ParseError),
    /// The instance lacks a value a placeholder needs.
    #[error("instance `{instance}` has no {what}, which the command template uses as `{placeholder}`")]
    Missing {
        /// Id of the instance being rendered for.
        instance: String,
        /// What is missing, e.g. `address` or `tag \`pid\``.
        what: String,
        /// The placeholder that needed it.
        placeholder: Placeholder,
    },
}

impl From<ParseError> for TemplateError {
    fn from(e: ParseError) -> Self {
        TemplateError::Parse(e)
    }
}

/// A parse error's message followed by its hint, if any.
fn with_hint(e: &ParseError) -> String {
    match e.hint() {
        Some(hint) => format!("{e}; {hint}"),
        None => e.to_string(),
    }
}

/// The value `hole` takes for `inst`, or why there is none.
fn value<'a>(hole: &Placeholder, inst: &'a Instance) -> Result<&'a str, TemplateError> {
    let missing =
        |what: String| TemplateError::Missing { instance: inst.id.clone(), what, placeholder: hole.clone() };
    match hole {
        Placeholder::Id => Ok(&inst.id),
        Placeholder::Group => Ok(&inst.group),
        Placeholder::Address => inst.address.as_deref().ok_or_else(|| missing("address".to_string())),
        Placeholder::Zone => inst.zone.as_deref().ok_or_else(|| missing("zone".to_string())),
        Placeholder::Tag(name) => {
            inst.tags.get(name).map(String::as_str).ok_or_else(|| missing(format!("tag `{name}`")))
        }
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
            for piece in pieces(element)? {
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
            region: None,
            url: None,
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
            &argv(&["ssh", "root@{address}", "{group}/{id}@{zone}", "kill", "{tag:pid}", "plain"]),
            &i,
        )
        .expect("renders");
        assert_eq!(out, argv(&["ssh", "root@10.0.0.7", "web/web-1@a", "kill", "1234", "plain"]));
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
        assert_eq!(render(&argv(&["a{tag:empty}b"]), &i).expect("renders"), argv(&["ab"]));
    }

    #[test]
    fn malformed_templates_do_not_render() {
        for (t, want) in [
            ("{host}", "unknown placeholder `{host}` in `{host}`; known placeholders: "),
            ("a{id", "unclosed `{` in `a{id`; known placeholders: "),
            ("a}b", "unmatched `}` in `a}b`; known placeholders: "),
        ] {
            let err = render(&argv(&["x", t]), &inst()).unwrap_err();
            assert!(matches!(err, TemplateError::Parse(_)), "{t}: {err:?}");
            assert!(err.to_string().starts_with(want), "{t}: {err}");
        }
        assert_eq!(render(&[], &inst()), Ok(vec![]));
        assert_eq!(check(&[]).map_err(TemplateError::from), Err(TemplateError::Parse(ParseError::Empty)));
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
        fn rendering_never_panics(element in any::<String>()) {
            let _ = render(std::slice::from_ref(&element), &inst());
        }
    }
}
