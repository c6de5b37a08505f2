//! Latency Monkey's pure parts: which hosts get the delay, the exact `tc` argv, and reading `tc`/`ip` output.

use std::time::Duration;

use rand::seq::index::sample;
use rand::Rng;

use crate::model::Instance;

/// simian's root qdisc handles are `51xx:`; anything else at the root is somebody else's. Each injection
/// gets its own, so a late dead-man switch of an old injection never removes a newer one.
pub const HANDLE_PREFIX: &str = "51";

/// A fresh handle for one injection, e.g. `51a7:`.
pub fn new_handle<R: Rng>(rng: &mut R) -> String {
    format!("{HANDLE_PREFIX}{:02x}:", rng.random::<u8>())
}

fn is_simians(kind: &str, handle: &str) -> bool {
    kind == "netem" && handle.len() == 5 && handle.starts_with(HANDLE_PREFIX) && handle.ends_with(':')
}

/// Root qdiscs the kernel installs by itself (handle `0:`): replacing these takes nothing from anyone.
const DEFAULT_KINDS: [&str; 6] = ["pfifo_fast", "fq_codel", "mq", "noqueue", "fq", "pfifo"];

/// Pick `per_group` instances of each group uniformly (fewer if the group is smaller), in group order.
/// Every group draws from `rng` whatever its size, so replays stay aligned.
pub fn choose<R: Rng>(eligible: &crate::eligibility::Groups, per_group: u32, rng: &mut R) -> Vec<Instance> {
    let mut out = Vec::new();
    for members in eligible.values() {
        let k = (per_group as usize).min(members.len());
        let seed: u64 = rng.random();
        let mut local = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        let mut picked: Vec<usize> = sample(&mut local, members.len(), k).into_vec();
        picked.sort_unstable();
        out.extend(picked.into_iter().map(|i| (*members[i]).clone()));
    }
    out
}

/// What the delay looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Netem {
    /// Added delay.
    pub delay: Duration,
    /// Jitter (normal distribution) around it.
    pub jitter: Duration,
    /// Packet loss in percent.
    pub loss: f64,
}

fn ms(d: Duration) -> String {
    // tc accepts fractional milliseconds as `usec`; keep it exact.
    format!("{}us", d.as_micros())
}

/// `tc qdisc add|replace dev IF root handle 51xx: netem delay D [J distribution normal] [loss L%]`.
pub fn netem_argv(interface: &str, handle: &str, netem: &Netem, replace: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "tc",
        "qdisc",
        if replace { "replace" } else { "add" },
        "dev",
        interface,
        "root",
        "handle",
        handle,
        "netem",
        "delay",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(ms(netem.delay));
    if !netem.jitter.is_zero() {
        v.push(ms(netem.jitter));
        v.extend(["distribution".to_string(), "normal".to_string()]);
    }
    if netem.loss > 0.0 {
        v.extend(["loss".to_string(), format!("{}%", netem.loss)]);
    }
    v
}

/// `tc qdisc show dev IF`.
pub fn show_argv(interface: &str) -> Vec<String> {
    ["tc", "qdisc", "show", "dev", interface].iter().map(|s| s.to_string()).collect()
}

/// The root qdisc of an interface, from `tc qdisc show dev IF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// The kernel's default (e.g. `fq_codel 0:`), or none shown.
    Default(String),
    /// simian's netem, with its handle.
    Simians(String),
    /// Someone else's: kind and handle.
    Foreign(String, String),
}

/// Read the root qdisc from `tc qdisc show` output.
pub fn root_qdisc(show: &str) -> Root {
    for line in show.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // qdisc KIND HANDLE root …
        if words.len() >= 4 && words[0] == "qdisc" && words[3] == "root" {
            let (kind, handle) = (words[1], words[2]);
            if is_simians(kind, handle) {
                return Root::Simians(handle.to_string());
            }
            if handle == "0:" && DEFAULT_KINDS.contains(&kind) {
                return Root::Default(kind.to_string());
            }
            return Root::Foreign(kind.to_string(), handle.to_string());
        }
    }
    Root::Default("none".into())
}

/// The interface of the default route, from `ip -o route show default` (or `ip route show default`).
pub fn default_interface(route: &str) -> Option<String> {
    route.lines().filter(|l| l.trim_start().starts_with("default")).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.iter().position(|x| *x == "dev").and_then(|i| w.get(i + 1)).map(|s| s.to_string())
    })
}

/// The dead-man switch: a detached job on the host that removes simian's qdisc after `after`, but only
/// if it is still simian's. Arguments go in as positional parameters, never spliced into the script.
pub fn deadman_argv(interface: &str, handle: &str, after: Duration) -> Vec<String> {
    let script = "(sleep \"$1\"; if tc qdisc show dev \"$2\" | grep -q \"netem $3 root\"; then tc qdisc del dev \"$2\" root handle \"$3\"; fi) </dev/null >/dev/null 2>&1 &";
    vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "simian-deadman".into(),
        after.as_secs().max(1).to_string(),
        interface.into(),
        handle.into(),
    ]
}

/// Does the host have `tc` and a kernel with netem (loaded, loadable or built in)? Runs `sh` with a fixed
/// script (no user data) and changes nothing: `tc qdisc add … netem` loads the module by itself.
pub fn precheck_argv() -> Vec<String> {
    let script = "command -v tc >/dev/null 2>&1 || { echo 'tc not found (install iproute2)'; exit 3; }; \
test -d /sys/module/sch_netem || modinfo sch_netem >/dev/null 2>&1 || \
grep -qs sch_netem \"/lib/modules/$(uname -r)/modules.builtin\" || \
{ echo \"the kernel $(uname -r) has no sch_netem (netem qdisc) module: install the kernel's extra modules or use via: proxy\"; exit 4; }";
    vec!["sh".into(), "-c".into(), script.into()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::{partition, Exclusions};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use simian_config::{ExcludeConfig, OptIn};

    #[test]
    fn netem_argv_is_exact() {
        let n = Netem { delay: Duration::from_millis(200), jitter: Duration::from_millis(20), loss: 1.5 };
        assert_eq!(
            netem_argv("eth0", "5117:", &n, false).join(" "),
            "tc qdisc add dev eth0 root handle 5117: netem delay 200000us 20000us distribution normal loss 1.5%"
        );
        let plain = Netem { delay: Duration::from_millis(100), jitter: Duration::ZERO, loss: 0.0 };
        assert_eq!(
            netem_argv("ens3", "51a0:", &plain, true).join(" "),
            "tc qdisc replace dev ens3 root handle 51a0: netem delay 100000us"
        );
        let h = new_handle(&mut ChaCha8Rng::seed_from_u64(3));
        assert!(
            matches!(root_qdisc(&format!("qdisc netem {h} root refcnt 2 delay 1ms\n")), Root::Simians(x) if x == h)
        );
    }

    #[test]
    fn reads_root_qdiscs() {
        assert_eq!(
            root_qdisc("qdisc fq_codel 0: root refcnt 2 limit 10240p flows 1024\n"),
            Root::Default("fq_codel".into())
        );
        assert_eq!(root_qdisc("qdisc noqueue 0: root refcnt 2\n"), Root::Default("noqueue".into()));
        assert_eq!(
            root_qdisc("qdisc netem 5117: root refcnt 2 limit 1000 delay 200ms  20ms\n"),
            Root::Simians("5117:".into())
        );
        assert_eq!(
            root_qdisc("qdisc tbf 1: root refcnt 2 rate 1Mbit\n"),
            Root::Foreign("tbf".into(), "1:".into())
        );
        assert_eq!(
            root_qdisc("qdisc netem 8001: root refcnt 2 delay 5ms\n"),
            Root::Foreign("netem".into(), "8001:".into())
        );
        assert_eq!(root_qdisc(""), Root::Default("none".into()));
    }

    #[test]
    fn reads_the_default_route() {
        assert_eq!(
            default_interface("default via 10.0.2.2 dev eth0 proto static\n").as_deref(),
            Some("eth0")
        );
        assert_eq!(default_interface("10.0.2.0/24 dev eth1 scope link\n"), None);
    }

    fn inst(id: usize, group: usize) -> Instance {
        Instance {
            target: "lab".into(),
            id: format!("h{id:02}"),
            address: None,
            group: format!("g{group}"),
            zone: None,
            region: None,
            url: None,
            tags: [("simian:opt-in".to_string(), "true".to_string())].into(),
        }
    }

    proptest! {
        #[test]
        fn chooses_at_most_n_distinct_per_group_and_replays(groups in prop::collection::vec(0usize..5, 0..40), n in 0u32..4, seed in any::<u64>()) {
            let inv: Vec<_> = groups.iter().enumerate().map(|(i, g)| inst(i, *g)).collect();
            let part = partition(&inv, &|_| OptIn::default(), &Exclusions::new(&ExcludeConfig::default()).unwrap());
            let a = choose(&part.eligible, n, &mut ChaCha8Rng::seed_from_u64(seed));
            let b = choose(&part.eligible, n, &mut ChaCha8Rng::seed_from_u64(seed));
            prop_assert_eq!(&a, &b);
            for (key, members) in &part.eligible {
                let got: Vec<_> = a.iter().filter(|i| i.group == key.1).collect();
                prop_assert_eq!(got.len(), (n as usize).min(members.len()));
                let mut ids: Vec<_> = got.iter().map(|i| &i.id).collect();
                ids.sort();
                ids.dedup();
                prop_assert_eq!(ids.len(), got.len());
            }
        }
    }
}
