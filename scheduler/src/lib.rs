//! simian-scheduler: when monkeys run (calendar), whether they may (guards), what they did (store), and the run.
#![forbid(unsafe_code)]

pub mod calendar;
pub mod run;
pub mod store;
