//! Pure validation: collects every error in a deserialized policy. (STUB: to be completed)

use std::collections::BTreeMap;
use std::path::Path;

use crate::load::{CalendarSpec, LoadedPolicy, PolicyError, PolicyErrors};
use crate::schema::Policy;
use crate::MonkeyName;

pub(crate) fn resolve(name: &str, policy: Policy, base_dir: &Path) -> Result<LoadedPolicy, PolicyErrors> {
    let err = |path: &str, message: String| PolicyError {
        file: name.to_string(),
        location: None,
        path: path.to_string(),
        message,
        hint: None,
    };
    let mut errors = Vec::new();
    let tz: chrono_tz::Tz = policy.timezone.parse().unwrap_or_else(|_| {
        errors.push(err("timezone", format!("unknown timezone `{}`", policy.timezone)));
        chrono_tz::UTC
    });
    let mut schedules = BTreeMap::new();
    if let Some(c) = &policy.monkeys.chaos {
        match c.schedule.as_deref().map(crate::cron5::Cron::parse) {
            Some(Ok(s)) => {
                schedules.insert(MonkeyName::Chaos, s);
            }
            Some(Err(e)) => errors.push(err("monkeys.chaos.schedule", e)),
            None => errors.push(err("monkeys.chaos", "monkey has no schedule".into())),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    let store_path = base_dir.join(policy.store.as_deref().unwrap_or("simian.db"));
    let kill_switch = policy.kill_switch.as_deref().map(|k| base_dir.join(k));
    let calendar = policy.calendar.as_ref().map(|_| CalendarSpec::default());
    Ok(LoadedPolicy {
        policy,
        path: base_dir.to_path_buf(),
        tz,
        store_path,
        kill_switch,
        calendar,
        schedules,
    })
}
