//! Who may be touched: the opt-in tag must match and no exclusion may (exclusions win).

use globset::{Glob, GlobSet, GlobSetBuilder};
use simian_config::{ExcludeConfig, OptIn};

use crate::model::Instance;

/// Why an instance may or may not be touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// Opted in and not excluded.
    Eligible,
    /// Lacks the opt-in tag (or has another value).
    NotOptedIn,
    /// Opted in, but an exclusion matches; the text says which.
    Excluded(String),
}

/// Compiled exclusion rules.
#[derive(Debug, Clone)]
pub struct Exclusions {
    tags: Vec<(String, String)>,
    groups: GlobSet,
    instances: GlobSet,
}

fn globset(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p)?);
    }
    b.build()
}

impl Exclusions {
    /// Compile the policy's `exclude` section (globs are validated when the policy loads).
    pub fn new(cfg: &ExcludeConfig) -> Result<Self, globset::Error> {
        Ok(Exclusions {
            tags: cfg.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            groups: globset(&cfg.groups)?,
            instances: globset(&cfg.instances)?,
        })
    }

    /// The exclusion that matches `inst`, if any.
    pub fn matching(&self, inst: &Instance) -> Option<String> {
        if let Some((k, v)) = self.tags.iter().find(|(k, v)| inst.tags.get(k) == Some(v)) {
            return Some(format!("excluded by tag {k}={v}"));
        }
        if self.groups.is_match(&inst.group) {
            return Some(format!("excluded by group pattern (group `{}`)", inst.group));
        }
        if self.instances.is_match(&inst.id) {
            return Some(format!("excluded by instance pattern (`{}`)", inst.id));
        }
        None
    }
}

/// Decide whether `inst` may be touched.
pub fn eligibility(inst: &Instance, opt_in: &OptIn, excl: &Exclusions) -> Eligibility {
    if inst.tags.get(&opt_in.tag) != Some(&opt_in.value) {
        return Eligibility::NotOptedIn;
    }
    match excl.matching(inst) {
        Some(why) => Eligibility::Excluded(why),
        None => Eligibility::Eligible,
    }
}
