//! Chaos Gorilla's decision: which zone goes down, and which of its instances — a pure function.

use std::collections::BTreeSet;

use rand::Rng;

use crate::eligibility::GroupKey;
use crate::model::Instance;

/// How the zone is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneChoice {
    /// Uniformly among zones that hold eligible instances.
    Random,
    /// This zone.
    Named(String),
}

impl ZoneChoice {
    /// `random` or a zone name, as written in the policy.
    pub fn from_policy(zone: &str) -> Self {
        match zone {
            "random" => ZoneChoice::Random,
            other => ZoneChoice::Named(other.to_string()),
        }
    }
}

/// What Chaos Gorilla decided, borrowing the inventory.
#[derive(Debug, Clone, PartialEq)]
pub enum GorillaPlan<'i> {
    /// Nothing to do; the text says why.
    NoZone(String),
    /// Take this zone down.
    Zone {
        /// The zone.
        zone: String,
        /// Eligible instances in the zone to act on, in (target, group, id) order.
        victims: Vec<&'i Instance>,
        /// Groups left alone because the zone holds all their eligible instances, with those instances.
        spared: Vec<(GroupKey, Vec<&'i Instance>)>,
    },
}

/// Choose the zone and the instances to act on.
///
/// A group whose every eligible instance sits in the chosen zone is spared unless
/// `allow_total_loss`: the point is to prove failover, not to take a service down.
/// Draws exactly one number from `rng`, whatever the inventory, so replays stay aligned.
pub fn plan<'i, R: Rng>(
    eligible: &crate::eligibility::Groups<'i>,
    choice: &ZoneChoice,
    allow_total_loss: bool,
    rng: &mut R,
) -> GorillaPlan<'i> {
    let draw: f64 = rng.random();
    let zones: BTreeSet<&str> = eligible.values().flatten().filter_map(|i| i.zone.as_deref()).collect();
    let zone = match choice {
        ZoneChoice::Named(z) if zones.contains(z.as_str()) => z.clone(),
        ZoneChoice::Named(z) => {
            return GorillaPlan::NoZone(format!("zone `{z}` holds no eligible instances"));
        }
        ZoneChoice::Random if zones.is_empty() => {
            return GorillaPlan::NoZone("no eligible instance has a zone".into());
        }
        ZoneChoice::Random => {
            let idx = ((draw * zones.len() as f64) as usize).min(zones.len() - 1);
            zones.iter().nth(idx).map(|z| z.to_string()).unwrap_or_default()
        }
    };
    let mut victims = Vec::new();
    let mut spared = Vec::new();
    for (key, members) in eligible {
        let in_zone: Vec<&Instance> =
            members.iter().filter(|i| i.zone.as_deref() == Some(zone.as_str())).copied().collect();
        if in_zone.is_empty() {
            continue;
        }
        if in_zone.len() == members.len() && !allow_total_loss {
            spared.push((key.clone(), in_zone));
        } else {
            victims.extend(in_zone);
        }
    }
    GorillaPlan::Zone { zone, victims, spared }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::{partition, Exclusions};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use simian_config::{ExcludeConfig, OptIn};

    fn inst(id: &str, group: &str, zone: &str) -> Instance {
        Instance {
            target: "aws".into(),
            id: id.into(),
            address: None,
            group: group.into(),
            zone: Some(zone.into()),
            region: Some("us-east-1".into()),
            url: None,
            tags: [("simian:opt-in".to_string(), "true".to_string())].into(),
        }
    }

    fn groups(inv: &[Instance]) -> crate::eligibility::Groups<'_> {
        partition(inv, &|_| OptIn::default(), &Exclusions::new(&ExcludeConfig::default()).unwrap()).eligible
    }

    #[test]
    fn named_zone_spares_groups_that_live_only_there() {
        let inv = vec![
            inst("w1", "web", "us-east-1a"),
            inst("w2", "web", "us-east-1b"),
            inst("s1", "solo", "us-east-1a"),
            inst("s2", "solo", "us-east-1a"),
        ];
        let g = groups(&inv);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let GorillaPlan::Zone { zone, victims, spared } =
            plan(&g, &ZoneChoice::Named("us-east-1a".into()), false, &mut rng)
        else {
            panic!("expected a zone")
        };
        assert_eq!(zone, "us-east-1a");
        assert_eq!(victims.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["w1"]);
        assert_eq!(spared.len(), 1);
        assert_eq!(spared[0].0 .1, "solo");
        let GorillaPlan::Zone { victims, spared, .. } =
            plan(&g, &ZoneChoice::Named("us-east-1a".into()), true, &mut rng)
        else {
            panic!("expected a zone")
        };
        assert_eq!(victims.len(), 3);
        assert!(spared.is_empty());
        assert!(matches!(
            plan(&g, &ZoneChoice::Named("eu-west-1a".into()), false, &mut rng),
            GorillaPlan::NoZone(_)
        ));
        assert!(matches!(
            plan(&Default::default(), &ZoneChoice::Random, false, &mut rng),
            GorillaPlan::NoZone(_)
        ));
    }

    proptest! {
        #[test]
        fn random_zone_acts_only_inside_it_and_never_takes_a_whole_group(
            spec in prop::collection::vec((0u8..5, 0u8..3), 1..40),
            seed in any::<u64>(),
        ) {
            let zones = ["z-a", "z-b", "z-c"];
            let inv: Vec<_> = spec.iter().enumerate()
                .map(|(i, (g, z))| inst(&format!("i{i}"), &format!("g{g}"), zones[*z as usize]))
                .collect();
            let g = groups(&inv);
            let a = plan(&g, &ZoneChoice::Random, false, &mut ChaCha8Rng::seed_from_u64(seed));
            let b = plan(&g, &ZoneChoice::Random, false, &mut ChaCha8Rng::seed_from_u64(seed));
            prop_assert_eq!(&a, &b);
            let GorillaPlan::Zone { zone, victims, spared } = a else {
                return Err(TestCaseError::fail("inventory with zones must give a zone"));
            };
            prop_assert!(inv.iter().any(|i| i.zone.as_deref() == Some(zone.as_str())));
            for v in &victims {
                prop_assert_eq!(v.zone.as_deref(), Some(zone.as_str()));
                let whole = &g[&(v.target.clone(), v.group.clone())];
                prop_assert!(whole.iter().any(|i| i.zone.as_deref() != Some(zone.as_str())),
                    "group {} lost every eligible instance", v.group);
            }
            let in_zone = inv.iter().filter(|i| i.zone.as_deref() == Some(zone.as_str())).count();
            let spared_n: usize = spared.iter().map(|(_, s)| s.len()).sum();
            prop_assert_eq!(victims.len() + spared_n, in_zone);
        }
    }
}
