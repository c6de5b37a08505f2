//! simian-sinks: where reports go (terminal table, JSON; chat and monitoring later).
#![forbid(unsafe_code)]
