//! Chaos Monkey's decision: for each group with eligible instances, maybe pick one victim — a pure function.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;

use crate::model::Instance;

/// The knobs of one Chaos Monkey run, already resolved from the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosParams {
    /// Chance per eligible group per run, 0..=1.
    pub probability: f64,
    /// Skip a group whose last live kill is younger than this.
    pub min_time_between_kills: Option<TimeDelta>,
    /// Total kills allowed in this run.
    pub max_kills_per_run: Option<u32>,
}

pub use crate::eligibility::{partition, GroupKey, Groups, Partition};

/// What Chaos Monkey decided for one group (or one non-eligible instance).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Terminate this instance.
    Kill {
        /// The victim.
        victim: Instance,
        /// How many eligible instances the group had.
        eligible: usize,
    },
    /// The group's probability roll said no this time.
    NotChosen {
        /// The group.
        group: GroupKey,
        /// The roll, in 0..1.
        roll: f64,
        /// The probability it had to beat.
        probability: f64,
    },
    /// The group was killed in too recently.
    TooRecent {
        /// The group.
        group: GroupKey,
        /// When its last live kill happened.
        last_kill: DateTime<Utc>,
    },
    /// `max_kills_per_run` was already reached.
    LimitReached {
        /// The group.
        group: GroupKey,
        /// The limit.
        limit: u32,
    },
}

/// Decide, group by group in a fixed order, whom to kill.
///
/// Every group consumes the same two draws from `rng` whatever is decided, so a change in one
/// group's history never shifts another group's choice: the same seed, inventory and history
/// give the same decisions. When more groups would lose an instance than `max_kills_per_run`
/// allows, which of them do is drawn afterwards from the same `rng` (uniformly, without
/// replacement): a limit below the number of groups never spends itself on the same groups.
pub fn plan<R: Rng>(
    eligible: &Groups,
    last_live_kill: &BTreeMap<GroupKey, DateTime<Utc>>,
    params: &ChaosParams,
    now: DateTime<Utc>,
    rng: &mut R,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for (key, members) in eligible {
        if members.is_empty() {
            continue;
        }
        let roll: f64 = rng.random();
        let pick = rng.random_range(0..members.len());
        if roll >= params.probability {
            out.push(Decision::NotChosen { group: key.clone(), roll, probability: params.probability });
            continue;
        }
        if let (Some(min), Some(last)) = (params.min_time_between_kills, last_live_kill.get(key)) {
            if now.signed_duration_since(*last) < min {
                out.push(Decision::TooRecent { group: key.clone(), last_kill: *last });
                continue;
            }
        }
        out.push(Decision::Kill { victim: (*members[pick]).clone(), eligible: members.len() });
    }
    if let Some(limit) = params.max_kills_per_run {
        let kills: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Decision::Kill { .. }))
            .map(|(i, _)| i)
            .collect();
        if kills.len() > limit as usize {
            let keep: std::collections::BTreeSet<usize> =
                rand::seq::index::sample(rng, kills.len(), limit as usize)
                    .into_iter()
                    .map(|k| kills[k])
                    .collect();
            for i in kills.into_iter().filter(|i| !keep.contains(i)) {
                if let Decision::Kill { victim, .. } = &out[i] {
                    let group = (victim.target.clone(), victim.group.clone());
                    out[i] = Decision::LimitReached { group, limit };
                }
            }
        }
    }
    out
}

/// The per-run probability that gives a mean time between kills `mtbk` when runs are `mean_gap` apart.
pub fn probability_from_mean(mtbk: TimeDelta, mean_gap: TimeDelta) -> f64 {
    let m = mtbk.num_seconds();
    if m <= 0 {
        return 1.0;
    }
    (mean_gap.num_seconds() as f64 / m as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use crate::eligibility::Exclusions;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use simian_config::{ExcludeConfig, OptIn};

    fn inst(id: &str, group: &str, tags: &[(&str, &str)]) -> Instance {
        Instance {
            target: "lab".into(),
            id: id.into(),
            address: None,
            group: group.into(),
            zone: Some("a".into()),
            region: None,
            url: None,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const IN: (&str, &str) = ("simian:opt-in", "true");

    fn default_opt_in(_: &str) -> OptIn {
        OptIn::default()
    }

    #[test]
    fn picks_one_per_group_and_respects_history() {
        let inv = vec![
            inst("w1", "web", &[IN]),
            inst("w2", "web", &[IN]),
            inst("a1", "api", &[IN]),
            inst("d1", "db", &[]),
            inst("p1", "payments", &[IN]),
        ];
        let excl =
            Exclusions::new(&ExcludeConfig { groups: vec!["pay*".into()], ..Default::default() }).unwrap();
        let part = partition(&inv, &default_opt_in, &excl);
        assert_eq!(part.eligible.len(), 2);
        assert_eq!(part.excluded.len(), 1);
        let params = ChaosParams {
            probability: 1.0,
            min_time_between_kills: Some(TimeDelta::days(1)),
            max_kills_per_run: None,
        };
        let now = Utc::now();
        let mut history = BTreeMap::new();
        history.insert(("lab".to_string(), "api".to_string()), now - TimeDelta::hours(2));
        let d = plan(&part.eligible, &history, &params, now, &mut ChaCha8Rng::seed_from_u64(7));
        assert!(matches!(&d[0], Decision::TooRecent { group, .. } if group.1 == "api"));
        assert!(matches!(&d[1], Decision::Kill { victim, eligible: 2 } if victim.group == "web"));
    }

    #[test]
    fn same_seed_same_decisions() {
        let inv: Vec<_> = (0..50).map(|i| inst(&format!("i{i}"), &format!("g{}", i % 7), &[IN])).collect();
        let part = partition(&inv, &default_opt_in, &Exclusions::new(&ExcludeConfig::default()).unwrap());
        let params =
            ChaosParams { probability: 0.5, min_time_between_kills: None, max_kills_per_run: Some(3) };
        let now = Utc::now();
        let a = plan(&part.eligible, &BTreeMap::new(), &params, now, &mut ChaCha8Rng::seed_from_u64(42));
        let b = plan(&part.eligible, &BTreeMap::new(), &params, now, &mut ChaCha8Rng::seed_from_u64(42));
        assert_eq!(a, b);
    }

    #[test]
    fn mean_time_gives_probability() {
        assert!((probability_from_mean(TimeDelta::days(2), TimeDelta::days(1)) - 0.5).abs() < 1e-9);
        assert_eq!(probability_from_mean(TimeDelta::hours(1), TimeDelta::days(1)), 1.0);
    }

    fn arb_instance() -> impl Strategy<Value = Instance> {
        (0u8..40, 0u8..6, 0u8..3, prop::bool::ANY, prop::bool::ANY, prop::bool::ANY).prop_map(
            |(id, g, z, opted, wrong_value, exempt)| {
                let mut tags = BTreeMap::new();
                if opted {
                    tags.insert(
                        "simian:opt-in".to_string(),
                        if wrong_value { "false" } else { "true" }.to_string(),
                    );
                }
                if exempt {
                    tags.insert("simian:exempt".to_string(), "true".to_string());
                }
                Instance {
                    target: if g % 2 == 0 { "lab" } else { "prod" }.into(),
                    id: format!("i-{id}"),
                    address: None,
                    group: ["web", "api", "payments-1", "db", "batch", "payments"][g as usize].into(),
                    zone: Some(["a", "b", "c"][z as usize].into()),
                    region: None,
                    url: None,
                    tags,
                }
            },
        )
    }

    proptest! {
        #[test]
        fn never_selects_ineligible_and_respects_limit(
            inv in prop::collection::vec(arb_instance(), 0..60),
            p in 0.0f64..=1.0,
            limit in prop::option::of(0u32..5),
            seed in any::<u64>(),
        ) {
            let excl = Exclusions::new(&ExcludeConfig {
                tags: [("simian:exempt".to_string(), "true".to_string())].into(),
                groups: vec!["payments*".into()],
                instances: vec![],
            }).unwrap();
            let part = partition(&inv, &default_opt_in, &excl);
            let params = ChaosParams { probability: p, min_time_between_kills: None, max_kills_per_run: limit };
            let d = plan(&part.eligible, &BTreeMap::new(), &params, Utc::now(), &mut ChaCha8Rng::seed_from_u64(seed));
            let mut kills = 0u32;
            let mut groups = std::collections::BTreeSet::new();
            for dec in &d {
                if let Decision::Kill { victim, .. } = dec {
                    kills += 1;
                    prop_assert_eq!(victim.tags.get("simian:opt-in").map(String::as_str), Some("true"));
                    prop_assert!(!victim.tags.contains_key("simian:exempt"));
                    prop_assert!(!victim.group.starts_with("payments"));
                    prop_assert!(groups.insert((victim.target.clone(), victim.group.clone())), "two kills in one group");
                }
            }
            if let Some(l) = limit { prop_assert!(kills <= l); }
            if p == 0.0 { prop_assert_eq!(kills, 0); }
        }
    }

    #[test]
    fn a_limit_below_the_groups_is_spread_over_every_group_by_the_seed() {
        let inv: Vec<Instance> = (0..5).map(|g| inst(&format!("i{g}"), &format!("g{g}"), &[IN])).collect();
        let part = partition(&inv, &default_opt_in, &Exclusions::new(&ExcludeConfig::default()).unwrap());
        let params =
            ChaosParams { probability: 1.0, min_time_between_kills: None, max_kills_per_run: Some(1) };
        let mut hits: BTreeMap<String, usize> = BTreeMap::new();
        for seed in 0..400u64 {
            let d = plan(
                &part.eligible,
                &BTreeMap::new(),
                &params,
                Utc::now(),
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            let killed: Vec<&Instance> = d
                .iter()
                .filter_map(|d| match d {
                    Decision::Kill { victim, .. } => Some(victim),
                    _ => None,
                })
                .collect();
            assert_eq!(killed.len(), 1);
            *hits.entry(killed[0].group.clone()).or_default() += 1;
        }
        // 400 draws over 5 groups: 80 each on average; 40..=120 is > 6 standard deviations wide.
        assert_eq!(hits.len(), 5, "{hits:?}");
        assert!(hits.values().all(|n| (40..=120).contains(n)), "{hits:?}");
    }

    proptest! {
        #[test]
        fn the_limit_holds_and_the_seed_replays(groups in 1usize..12, limit in 0u32..6, p in 0.0f64..=1.0, seed: u64) {
            let inv: Vec<Instance> = (0..groups).map(|g| inst(&format!("i{g}"), &format!("g{g:02}"), &[IN])).collect();
            let part = partition(&inv, &default_opt_in, &Exclusions::new(&ExcludeConfig::default()).unwrap());
            let params = ChaosParams { probability: p, min_time_between_kills: None, max_kills_per_run: Some(limit) };
            let now = Utc::now();
            let a = plan(&part.eligible, &BTreeMap::new(), &params, now, &mut ChaCha8Rng::seed_from_u64(seed));
            let b = plan(&part.eligible, &BTreeMap::new(), &params, now, &mut ChaCha8Rng::seed_from_u64(seed));
            prop_assert_eq!(&a, &b);
            let kills = a.iter().filter(|d| matches!(d, Decision::Kill { .. })).count();
            let won = a.iter().filter(|d| matches!(d, Decision::Kill { .. } | Decision::LimitReached { .. })).count();
            prop_assert!(kills <= limit as usize);
            prop_assert_eq!(kills, won.min(limit as usize), "the limit is spent while groups that won remain");
            prop_assert_eq!(a.len(), groups, "one decision per group, in group order");
        }
    }
}
