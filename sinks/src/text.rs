//! Text that reaches a terminal: instance ids, tags and messages come from inventories and commands, so
//! control characters (ESC sequences, carriage returns, bells) and bidi overrides are shown escaped, never
//! interpreted. JSON output keeps every value exact.

use std::borrow::Cow;

/// `s` with every control character and bidi override written as an escape (`\x1b`, `\r`, `\u{202e}`).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// C0/C1 controls (tab and newline included: table cells are one line) and the bidi controls that
/// reorder what a terminal shows.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_and_leaves_the_rest() {
        assert_eq!(printable("web-1"), "web-1");
        assert_eq!(printable("ümlaut ok"), "ümlaut ok");
        assert_eq!(printable("i-1\x1b[2J\x1b]0;pwned\x07"), "i-1\\u{1b}[2J\\u{1b}]0;pwned\\u{7}");
        assert_eq!(printable("a\rb\nc"), "a\\rb\\nc");
        assert_eq!(printable("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
    }
}
