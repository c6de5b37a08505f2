//! One way to show an error with its causes, for every crate: `outer: cause: root cause`.

/// The error and its causes, one `: ` apart; a cause whose text the outer text already holds is left out
/// (hyper, reqwest and the AWS SDK often repeat it).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
