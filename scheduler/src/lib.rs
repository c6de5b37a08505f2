//! simian-scheduler: when monkeys run (calendar), whether they may (guards), what they did (store), the run,
//! the outbox that feeds the sinks, and the daemon.
#![forbid(unsafe_code)]

pub mod announce;
pub mod calendar;
pub mod daemon;
pub mod outbox;
pub mod run;
pub mod service;
pub mod store;
