//! simian-targets: adapters that list instances and carry actions out.
#![forbid(unsafe_code)]
