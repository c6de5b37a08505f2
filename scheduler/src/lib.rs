//! simian-scheduler: when monkeys run (calendar), whether they may (guards), what they did (store), the run,
//! the outbox that feeds the sinks, and the daemon.
#![forbid(unsafe_code)]

pub mod announce;
pub mod calendar;
pub mod clock;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod http;
pub mod outbox;
pub mod run;
pub mod service;
/// The store, its own crate (`store/`): re-exported so `simian_scheduler::store::…` keeps working.
pub use simian_store as store;

/// An error and its causes on one line (`a: b: c`), for log fields: our error types keep causes as
/// `#[source]` instead of repeating them in their own text.
pub use simian_monkeys::error::chain;
