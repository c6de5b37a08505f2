//! No input makes the loader panic: arbitrary text, and the examples with random bytes cut or changed.

use std::path::Path;

use proptest::prelude::*;
use simian_config::load_str;

fn env(k: &str) -> Option<String> {
    k.starts_with("DEMO_").then(|| "1".to_string())
}

const HOSTS: &str = include_str!("../examples/hosts.yaml");
const DEMO: &str = include_str!("../examples/demo.yaml");
const AWS: &str = include_str!("../examples/aws.yaml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = load_str("p.yaml", &text, Path::new("."), &env);
    }

    #[test]
    fn yamlish_text_never_panics(text in "[a-z_:{}\\[\\], \"'$\n0-9.*-]{0,300}") {
        let _ = load_str("p.yaml", &text, Path::new("."), &env);
    }

    #[test]
    fn mutated_examples_never_panic(which in 0usize..3, at in any::<prop::sample::Index>(), len in 0usize..40, insert in ".{0,8}") {
        let base = [HOSTS, DEMO, AWS][which];
        let mut pos = at.index(base.len());
        while !base.is_char_boundary(pos) { pos -= 1; }
        let mut end = (pos + len).min(base.len());
        while !base.is_char_boundary(end) { end -= 1; }
        let text = format!("{}{}{}", &base[..pos], insert, &base[end.max(pos)..]);
        match load_str("p.yaml", &text, Path::new("."), &env) {
            Ok(_) => {}
            Err(errors) => {
                // Every error names the file, and none is empty.
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    let line = e.to_string();
                    prop_assert!(line.starts_with("p.yaml"), "{}", line);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}
