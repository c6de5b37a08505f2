//! simian-sinks: where reports go — a terminal table or JSON today; chat and monitoring later.
#![forbid(unsafe_code)]

pub mod table;

pub use table::{render_history, render_report, HistoryRow};
