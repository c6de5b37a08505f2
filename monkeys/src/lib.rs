//! simian-monkeys: the model, the ports targets implement, and each monkey's pure decisions.
#![forbid(unsafe_code)]

pub mod chaos;
pub mod doctor;
pub mod eligibility;
pub mod error;
pub mod experiment;
pub mod gorilla;
pub mod latency;
pub mod model;
pub mod ten_eighteen;

pub use model::*;
