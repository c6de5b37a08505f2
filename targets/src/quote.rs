//! Shell quoting for the one place a shell cannot be avoided: the command line `ssh` hands to the remote shell.
//!
//! `ssh host a b` joins its arguments with spaces and lets the remote login shell parse the result, so each
//! argv element is quoted exactly once, here, and nowhere else.

/// Quotes every element of `argv` for a POSIX shell and joins them with spaces, so that the shell's word
/// splitting gives back exactly `argv`.
///
/// Each element goes into single quotes, inside which a POSIX shell treats every character literally; a `'`
/// is written as `'\''` (close, escaped quote, reopen) and an empty element as `''`. Nothing else is special:
/// spaces, newlines, `$(…)`, backquotes, backslashes, globs and non-ASCII text survive as is. (A NUL byte
/// cannot be passed through any argv, so it cannot occur.) The remote login shell must be POSIX (sh, bash,
/// dash, zsh, ksh, busybox ash); csh and fish parse quotes differently.
pub fn shell_quote(argv: &[String]) -> String {
    let mut out = String::with_capacity(argv.iter().map(|a| a.len() + 3).sum());
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('\'');
        for c in arg.chars() {
            if c == '\'' {
                out.push_str(r"'\''");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use proptest::prelude::*;

    use super::*;

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn quotes_each_element_once() {
        assert_eq!(shell_quote(&s(&["kill", "-TERM", "42"])), "'kill' '-TERM' '42'");
        assert_eq!(shell_quote(&s(&["it's", ""])), r"'it'\''s' ''");
        assert_eq!(shell_quote(&s(&["$(reboot)", "a b", "\\n"])), r"'$(reboot)' 'a b' '\n'");
        assert_eq!(shell_quote(&[]), "");
    }

    /// What `sh` makes of `quoted` as the arguments of `printf '%s\0'`: the words it split them into.
    fn through_sh(quoted: &str) -> Vec<String> {
        let out =
            Command::new("sh").arg("-c").arg(format!("printf '%s\\0' {quoted}")).output().expect("run sh");
        assert!(out.status.success(), "sh failed: {}", String::from_utf8_lossy(&out.stderr));
        split_nul(&out.stdout)
    }

    fn split_nul(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
        let mut words: Vec<String> = text.split('\0').map(str::to_string).collect();
        assert_eq!(words.pop().as_deref(), Some(""), "output ends with NUL");
        words
    }

    #[test]
    fn hostile_arguments_survive_a_real_shell() {
        let argv = s(&[
            "",
            "'",
            "''",
            "\"",
            "a b\tc\nd",
            "$(touch /tmp/simian-pwned)",
            "`id`",
            "$HOME ${X:-y}",
            "\\",
            "\\'",
            "*",
            "~",
            "-n",
            ";|&<>(){}!#",
            "é – 日本 🐒",
            "\r\u{7f}\u{1b}[31m",
        ]);
        assert_eq!(through_sh(&shell_quote(&argv)), argv);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_argv_round_trips_through_sh(
            argv in prop::collection::vec(
                prop_oneof![
                    "[^\\x00]{0,12}",
                    prop::sample::select(vec!["'", "''", "\\", "$(", ")", "`", "\n", " ", "\"", "$", "!"])
                        .prop_map(str::to_string),
                    "[ '\"\\\\$`!\\n\\t]{0,6}",
                ],
                0..8,
            )
        ) {
            // printf with no arguments prints its format once; give it at least one.
            prop_assume!(!argv.is_empty());
            prop_assert_eq!(through_sh(&shell_quote(&argv)), argv);
        }
    }
}
