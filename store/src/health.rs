//! Doctor Monkey's health state per instance, carried across runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use simian_monkeys::doctor::HealthStatus;

use super::sql::{vals, Sql};
use super::{ms, Store, StoreError};

/// Doctor's stored view of one instance: status and the current streaks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthRow {
    /// `unknown`, `healthy` or `unhealthy`.
    pub status: HealthStatus,
    /// Consecutive failed checks.
    pub failures: u32,
    /// Consecutive passed checks.
    pub passes: u32,
}

impl Store {
    /// Doctor's stored health of every instance seen so far, by (target, instance).
    pub fn health(&self) -> Result<BTreeMap<(String, String), HealthRow>, StoreError> {
        self.rows("SELECT target, instance, status, failures, passes FROM health", &[])?
            .iter()
            .map(|r| {
                Ok((
                    (r.text(0)?, r.text(1)?),
                    HealthRow {
                        status: match r.text(2)?.as_str() {
                            "healthy" => HealthStatus::Healthy,
                            "unhealthy" => HealthStatus::Unhealthy,
                            _ => HealthStatus::Unknown,
                        },
                        failures: r.count(3)?,
                        passes: r.count(4)?,
                    },
                ))
            })
            .collect()
    }

    /// Save Doctor's view of one instance.
    pub fn set_health(
        &self,
        target: &str,
        instance: &str,
        row: &HealthRow,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO health (target, instance, status, failures, passes, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (target, instance) DO UPDATE SET status = ?3, failures = ?4, passes = ?5, updated_ms = ?6",
            vals![target, instance, row.status.as_str(), row.failures, row.passes, ms(now)],
        )
        .map(|_| ())
    }

    /// Instances Doctor currently holds unhealthy.
    pub fn unhealthy_count(&self) -> Result<i64, StoreError> {
        self.scalar("SELECT COUNT(*) FROM health WHERE status = 'unhealthy'", &[])
    }
}
