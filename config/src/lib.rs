//! simian-config: the policy schema, loading (YAML + `${ENV}`) and pure validation with file:line:col errors.
#![forbid(unsafe_code)]

pub mod cron5;
pub mod duration;
mod env;
mod load;
mod locate;
pub mod schema;
pub mod steady;
mod store_at;
mod stream;
mod structural;
pub mod template;
mod validate;
mod yaml;

pub use duration::{Duration, Percent};
pub use load::{
    load, load_bytes, load_str, read_bytes, CalendarSpec, LoadedPolicy, PolicyError, PolicyErrors, MAX_DEPTH,
    MAX_POLICY_BYTES,
};
pub use schema::*;
pub use steady::{Metric, ProbeChoice, Rate, SteadyState, Tolerance};
pub use store_at::{PostgresUrl, StoreAt, SSL_MODES};

/// The monkeys simian knows; a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MonkeyName {
    /// Chaos Monkey.
    Chaos,
    /// Chaos Gorilla.
    Gorilla,
    /// Latency Monkey.
    Latency,
    /// Doctor Monkey.
    Doctor,
    /// 10-18 Monkey.
    TenEighteen,
}

impl MonkeyName {
    /// Every monkey, in report order.
    pub const ALL: [MonkeyName; 5] = [
        MonkeyName::Chaos,
        MonkeyName::Gorilla,
        MonkeyName::Latency,
        MonkeyName::Doctor,
        MonkeyName::TenEighteen,
    ];

    /// The name used in policies, CLI flags and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            MonkeyName::Chaos => "chaos",
            MonkeyName::Gorilla => "gorilla",
            MonkeyName::Latency => "latency",
            MonkeyName::Doctor => "doctor",
            MonkeyName::TenEighteen => "ten_eighteen",
        }
    }
}

impl std::fmt::Display for MonkeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MonkeyName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MonkeyName::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = MonkeyName::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown monkey `{s}`; known monkeys: {}", names.join(", "))
        })
    }
}
