//! Who may be touched: the opt-in tag must match and no exclusion may (exclusions win).

use std::collections::BTreeMap;

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
        // An empty set still builds a match candidate per call: skip it (a million instances are planned over).
        if !self.groups.is_empty() && self.groups.is_match(&inst.group) {
            return Some(format!("excluded by group pattern (group `{}`)", inst.group));
        }
        if !self.instances.is_empty() && self.instances.is_match(&inst.id) {
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
    if inst.group.is_empty() {
        // Monkeys reason per group; an instance in no group has nothing to fail over to.
        return Eligibility::Excluded("not in any group (no group tag)".into());
    }
    match excl.matching(inst) {
        Some(why) => Eligibility::Excluded(why),
        None => Eligibility::Eligible,
    }
}

/// Key of a group: (target name, group name).
pub type GroupKey = (String, String);

/// Which instances may be touched, and why the others may not; it borrows the inventory (an inventory of a
/// million instances is not copied to be planned over).
#[derive(Debug, Clone, Default)]
pub struct Partition<'i> {
    /// Eligible instances per group, each list sorted by id.
    pub eligible: Groups<'i>,
    /// Opted-in instances that an exclusion protects, with the reason.
    pub excluded: Vec<(&'i Instance, String)>,
}

/// Eligible instances per group.
pub type Groups<'i> = BTreeMap<GroupKey, Vec<&'i Instance>>;

/// Split an inventory into eligible groups and excluded instances (non-opted-in ones are dropped).
pub fn partition<'i>(
    inventory: &'i [Instance],
    opt_in_for: &dyn Fn(&str) -> OptIn,
    excl: &Exclusions,
) -> Partition<'i> {
    let mut p = Partition::default();
    // Grouped by borrowed keys first: owned keys are made once per group, not once per instance.
    let mut groups: std::collections::HashMap<(&str, &str), Vec<&Instance>> = Default::default();
    // Targets are few: their opt-in is asked once each, not once per instance.
    let mut opt_ins: Vec<(&str, OptIn)> = Vec::new();
    for inst in inventory {
        let i = match opt_ins.iter().position(|(t, _)| *t == inst.target) {
            Some(i) => i,
            None => {
                opt_ins.push((&inst.target, opt_in_for(&inst.target)));
                opt_ins.len() - 1
            }
        };
        match eligibility(inst, &opt_ins[i].1, excl) {
            Eligibility::Eligible => groups.entry((&inst.target, &inst.group)).or_default().push(inst),
            Eligibility::Excluded(why) => p.excluded.push((inst, why)),
            Eligibility::NotOptedIn => {}
        }
    }
    p.eligible = groups
        .into_iter()
        .map(|((t, g), mut list)| {
            list.sort_by(|a, b| a.inventory_order(b));
            ((t.to_string(), g.to_string()), list)
        })
        .collect();
    p
}
