//! Latency Monkey's policy errors, each located and explained.

use std::path::Path;

use simian_config::load_str;

fn errors(text: &str) -> String {
    match load_str("policy.yaml", text, Path::new("/etc/simian"), &|_| None) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn latency_errors_are_located() {
    let text = r#"version: 1
monkeys:
  latency:
    schedule: "30 10 * * mon-fri"
    via: tc
    delay: 200x
    loss: 150%
    interface: ""
    duration: 0s
    hosts_per_group: 0
    proxies:
      - { listen: "127.0.0.1:18080", upstream: "127.0.0.1:8080" }
"#;
    insta::assert_snapshot!(errors(text), @r"
    policy.yaml:6:12: invalid duration `200x`: unknown unit; write a number and a unit ms, s, m, h, d or w, e.g. 200ms, 90s, 10m, 2h, 1d, 1w
    policy.yaml:7:11: invalid percentage `150%`: write a number from 0 to 100 followed by %, e.g. 5% or 0.5%
    policy.yaml:8:16: the interface must not be empty (hint: `auto` uses the interface of the default route)
    policy.yaml:9:15: the latency duration must be longer than 0s
    policy.yaml:10:22: hosts_per_group must be at least 1
    policy.yaml:12:7: `proxies` are used with `via: proxy` only (hint: set `via: proxy`, or remove `proxies`)
    ");
}

#[test]
fn proxy_mode_needs_proxies_with_addresses() {
    let text = r#"version: 1
monkeys:
  latency:
    schedule: "* * * * *"
    via: proxy
    delay: 100ms
    proxies:
      - { listen: "localhost:80", upstream: "127.0.0.1" }
      - { listen: "127.0.0.1:9000", upstream: "db.internal:5432" }
      - { listen: "127.0.0.1:9000", upstream: "127.0.0.1:5432" }
"#;
    insta::assert_snapshot!(errors(text), @r"
    policy.yaml:8:19: invalid listen address `localhost:80` (hint: an IP and a port, e.g. `127.0.0.1:18080`)
    policy.yaml:8:45: invalid upstream address `127.0.0.1` (hint: a host and a port, e.g. `127.0.0.1:8080`)
    policy.yaml:10:19: duplicate listen address `127.0.0.1:9000`
    ");
    let none =
        "version: 1\nmonkeys:\n  latency:\n    schedule: \"* * * * *\"\n    via: proxy\n    delay: 100ms\n";
    assert!(errors(none).contains("`via: proxy` needs at least one entry in `proxies`"), "{}", errors(none));
    let no_delay = "version: 1\nmonkeys:\n  latency:\n    schedule: \"* * * * *\"\n";
    assert!(errors(no_delay).contains("needs a `delay`"), "{}", errors(no_delay));
    let ok = "version: 1\nmonkeys:\n  latency:\n    schedule: \"* * * * *\"\n    delay: 200ms\n    jitter: 20ms\n    loss: 0.5%\n";
    assert_eq!(errors(ok), "ok");
}
