//! simian-monkeys: the model, the ports targets implement, and each monkey's pure decisions.
#![forbid(unsafe_code)]

pub mod chaos;
pub mod eligibility;
pub mod gorilla;
pub mod latency;
pub mod model;

pub use model::*;
