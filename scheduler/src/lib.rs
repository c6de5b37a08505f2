//! simian-scheduler: when monkeys run (calendar), whether they may (guards), what they did (store), the run,
//! the outbox that feeds the sinks, and the daemon.
#![forbid(unsafe_code)]

pub mod announce;
pub mod calendar;
pub mod clock;
pub mod daemon;
pub mod engine;
pub mod http;
pub mod outbox;
pub mod run;
pub mod service;
pub mod store;

/// An error and its causes on one line (`a: b: c`), for log fields: our error types keep causes as
/// `#[source]` instead of repeating them in their own text.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
