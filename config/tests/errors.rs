//! Snapshot tests of policy errors: every problem at once, each as `FILE:LINE:COL: message (hint: …)`.

use std::path::Path;

use simian_config::{load, load_str, LoadedPolicy, PolicyErrors};

fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
}

fn try_load(text: &str, vars: &[(&str, &str)]) -> Result<LoadedPolicy, PolicyErrors> {
    load_str("policy.yaml", text, Path::new("/etc/simian"), &env_of(vars))
}

/// The errors `text` produces, one per line (or `ok`).
fn errors(text: &str, vars: &[(&str, &str)]) -> String {
    match try_load(text, vars) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

const MANY: &str = r#"version: 2
mode: livee
timezone: America/Los_Angles
colour: blue
calendar:
  hours: "9-17"
  days: [mon, Tuesday, funday]
  holidays: [2025-12-25, 25/12/2025]
exclude:
  groups: ["pay[ments"]
  instances: ["ok-*", "{a,b"]
targets:
  - type: hosts
    name: web
    terminate: []
    hosts:
      - { id: a, group: web }
      - { id: a, group: web }
      - { id: "", group: web }
  - type: hosts
    name: web
    executor: { type: wrap, argv: [] }
    terminate: ["kill", "{pid}", "{tag:pid}"]
    timeout: 5x
    hosts:
      - { id: b, group: api, colour: red }
      - { id: c }
  - type: vms
    name: other
  - type: hosts
    name: ""
monkeys:
  chaos:
    schedule: "*/5 * * *"
    probability: 1.5
    mean_time_between_kills: 0s
    max_kills_per_run: -1
  gorila:
    schedule: "* * * * *"
"#;

#[test]
fn many_errors_at_once() {
    insta::assert_snapshot!("many_errors", errors(MANY, &[]));
}

#[test]
fn a_monkey_without_schedule_and_nan_probability() {
    let text = "version: 1\nmonkeys:\n  chaos:\n    probability: .nan\n";
    insta::assert_snapshot!("no_schedule_nan", errors(text, &[]));
}

#[test]
fn unknown_key_hint_names_the_closest_key() {
    let text = "version: 1\nmonkeys:\n  chaos:\n    schedul: \"* * * * *\"\n";
    insta::assert_snapshot!("unknown_key", errors(text, &[]));
}

#[test]
fn misspelt_timezone_gets_the_closest_iana_name() {
    let out = [
        errors("version: 1\ntimezone: America/Los_Angles\n", &[]),
        errors("version: 1\ntimezone: utc\n", &[]),
        errors("version: 1\ntimezone: Nowhere/Atlantis\n", &[]),
    ];
    insta::assert_snapshot!("timezone", out.join("\n"));
}

#[test]
fn yaml_syntax_error_has_a_location() {
    let out = [
        errors("version: 1\nmonkeys:\n  chaos:\n    schedule: \"* * * * *\n", &[]),
        errors("version: 1\ntargets: [\n  {name: a\n", &[]),
        errors("version: 1\n  mode: live\n", &[]),
        errors("version: 1\nmode: live\nmode: dry-run\n", &[]),
        errors("", &[]),
        errors("- a\n- b\n", &[]),
    ];
    insta::assert_snapshot!("syntax", out.join("\n"));
}

const ENV_POLICY: &str = r#"version: 1
# ${IN_COMMENT} is not expanded
store: ${STATE_DIR}/simian.db
kill_switch: "${STOP_FILE:-/run/simian/stop}"
targets:
  - type: hosts
    name: ${TARGET_NAME}
    terminate: ["kill", "$$HOME", "{tag:pid}"]
    hosts:
      - { id: "${HOST_ID}", group: web, tags: { pid: "${PID:-1}" } }
monkeys:
  chaos:
    schedule: "* * * * *"
    max_kills_per_run: ${MAX_KILLS:-2}
    probability: ${PROB:-1}
"#;

#[test]
fn env_expansion_set_unset_and_default() {
    let all = [
        ("STATE_DIR", "/var/lib/simian"),
        ("TARGET_NAME", "staging"),
        ("HOST_ID", "web-1"),
        ("MAX_KILLS", "7"),
    ];
    let p = try_load(ENV_POLICY, &all).expect("all variables set");
    assert_eq!(p.store.file(), Some(Path::new("/var/lib/simian/simian.db")));
    assert_eq!(p.kill_switch.as_deref(), Some(Path::new("/run/simian/stop")));
    let t = match &p.policy.targets[0] {
        simian_config::TargetConfig::Hosts(h) => h,
        other @ simian_config::TargetConfig::AwsEc2(_) => panic!("expected a hosts target, got {other:?}"),
    };
    assert_eq!(t.name, "staging");
    assert_eq!(
        t.terminate.as_deref(),
        Some(&["kill".to_string(), "$HOME".to_string(), "{tag:pid}".to_string()][..])
    );
    assert_eq!(t.hosts[0].id, "web-1");
    assert_eq!(t.hosts[0].tags["pid"], "1");
    let chaos = p.policy.monkeys.chaos.as_ref().expect("chaos");
    assert_eq!(chaos.max_kills_per_run, Some(7));

    let missing = [("STATE_DIR", "/var/lib/simian")];
    insta::assert_snapshot!("env_unset", errors(ENV_POLICY, &missing));
    let with_prob = [all.as_slice(), &[("PROB", "0.25")]].concat();
    let p = try_load(ENV_POLICY, &with_prob).expect("probability from env");
    assert_eq!(p.policy.monkeys.chaos.and_then(|c| c.probability), Some(0.25));
    // A quoted `${…}` stays a string, so it cannot fill a number.
    let quoted =
        "version: 1\nmonkeys:\n  chaos:\n    schedule: '* * * * *'\n    probability: \"${PROB:-1}\"\n";
    insta::assert_snapshot!("env_quoted_number", errors(quoted, &[]));
    insta::assert_snapshot!("env_malformed", errors("version: 1\nstore: ${STATE\ntimezone: ${1X}\n", &[]));
}

#[test]
fn resolves_paths_calendar_and_schedules() {
    let text = r#"version: 1
timezone: Europe/Berlin
store: state/simian.db
kill_switch: /run/stop
calendar:
  hours: "22:00-24:00"
  days: [Mon, friday]
  holidays: [2025-12-25]
monkeys:
  chaos:
    schedule: "*/30 9-17 * * mon-fri"
"#;
    let p = try_load(text, &[]).expect("valid");
    assert_eq!(p.path, Path::new("/etc/simian/policy.yaml"));
    assert_eq!(p.store.file(), Some(Path::new("/etc/simian/state/simian.db")));
    assert_eq!(p.kill_switch.as_deref(), Some(Path::new("/run/stop")));
    assert_eq!(p.tz, chrono_tz::Europe::Berlin);
    let cal = p.calendar.expect("calendar");
    let t = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).expect("time");
    assert_eq!(cal.hours, Some((t(22, 0), t(0, 0))));
    assert_eq!(cal.days, Some(vec![chrono::Weekday::Mon, chrono::Weekday::Fri]));
    assert_eq!(cal.holidays, vec![chrono::NaiveDate::from_ymd_opt(2025, 12, 25).expect("date")]);
    assert!(p.schedules.contains_key(&simian_config::MonkeyName::Chaos));

    let defaults = try_load("version: 1\n", &[]).expect("minimal policy");
    assert_eq!(defaults.store.file(), Some(Path::new("/etc/simian/simian.db")));
    assert_eq!(defaults.tz, chrono_tz::UTC);
    assert!(defaults.calendar.is_none() && defaults.schedules.is_empty());
}

#[test]
fn load_reads_a_file_and_reports_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, "version: 1\nstore: s.db\n").expect("write");
    let p = load(&file).expect("valid");
    assert_eq!(p.path, file);
    assert_eq!(p.store.file(), Some(dir.path().join("s.db").as_path()));

    std::fs::write(&file, "version: 1\nmood: happy\n").expect("write");
    let e = load(&file).expect_err("invalid");
    assert_eq!(
        e.to_string(),
        format!("{}:2:1: unknown key `mood` (hint: did you mean `mode`? allowed keys: `version`, `enabled`, `mode`, `timezone`, `store`, `kill_switch`, `calendar`, `opt_in`, `exclude`, `targets`, `monkeys`, `name`, `sinks`, `steady_state`, `retention`, `api`)", file.display())
    );
    let e = load(&dir.path().join("missing.yaml")).expect_err("missing");
    assert!(e.to_string().contains("cannot read policy"), "{e}");
}

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    // The demo policy takes its pids and ports from `simian demo`; any number stands in here.
    let env = |k: &str| k.starts_with("DEMO_").then(|| "4242".to_string());
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.display().to_string();
        if let Err(e) = load_str(&name, &text, &dir, &env) {
            panic!("{name} does not load:\n{e}");
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the examples hosts.yaml, demo.yaml and aws.yaml");
}

#[test]
fn no_panic_on_odd_input() {
    for text in [
        "version: 1\ntargets: 3\n",
        "version: 1\ntargets: [3, [1], {type: [x]}, {name: a}]\n",
        "version: x\nmonkeys: [chaos]\n",
        "version: 1\nmonkeys: {chaos: 3}\n",
        "version: 1\nexclude: {tags: {a: [1]}}\n",
        "a: &x [*x]\n",
        "? [a, b]\n: c\nversion: 1\n",
        "version: 1\nmonkeys:\n  chaos: ~\n",
        "version: 1\n---\nversion: 2\n",
        "version: 1\nstore: !tagged x\n",
        "{",
        "\t",
    ] {
        let out = errors(text, &[]);
        // Each is rejected, and every line names the file and a location (or the file, for a document
        // that is not YAML at all).
        // A monkey set to null is simply not configured, and a YAML tag on a string is ignored: the two
        // inputs here that load.
        let loads = ["version: 1\nmonkeys:\n  chaos: ~\n", "version: 1\nstore: !tagged x\n"].contains(&text);
        assert_eq!(out == "ok", loads, "{text:?}: {out}");
        for line in out.lines().filter(|l| !loads && !l.starts_with("  ")) {
            assert!(line.starts_with("policy.yaml:"), "{text:?}: `{line}` has no location");
        }
    }
}

#[test]
fn locations_survive_removed_items() {
    let text = r#"version: 1
targets:
  - 42
  - type: hosts
    name: a
    hosts:
      - just-a-string
      - { id: x, group: g, extra: 1 }
      - { id: x, group: g }
    typo_key: 1
    executor: { type: wrap, argv: ["docker", "exec", "{ip}"], user: root }
  - type: hosts
    name: b
    executor: rsh
"#;
    insta::assert_snapshot!("removed_items", errors(text, &[]));
}

/// Hosts are read one by one (a list may be 100,000 long): errors in several hosts, and hosts dropped
/// before a later one, still come out located where the user wrote them.
#[test]
fn errors_in_many_hosts_are_each_located() {
    let text = r#"version: 1
targets:
  - type: hosts
    name: a
    hosts:
      - { id: h0, group: g }
      - 7
      - { id: h2, group: [g] }
      - [h3]
      - { id: h4, group: g, colour: red }
      - { id: h0, group: g }
      - { id: h6, group: g, adress: x }
"#;
    let got = errors(text, &[]);
    let want = [
        "policy.yaml:7:9: invalid type: integer `7`, expected struct HostConfig",
        "policy.yaml:8:26: invalid type: sequence, expected a string",
        "policy.yaml:9:9: invalid type: sequence, expected struct HostConfig",
        "policy.yaml:10:29: unknown key `colour`",
        "policy.yaml:11:15: duplicate host id `h0` in this target",
        "policy.yaml:12:29: unknown key `adress` (hint: did you mean `address`?",
    ];
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), want.len(), "{got}");
    for (line, want) in lines.iter().zip(want) {
        assert!(line.starts_with(want), "expected `{want}…`, got:\n{got}");
    }
}

/// A generated policy wrong in every host: every error is kept, the message shows the first hundred.
#[test]
fn a_message_shows_the_first_hundred_errors_and_counts_the_rest() {
    let mut text = String::from("version: 1\ntargets:\n  - type: hosts\n    name: a\n    hosts:\n");
    for i in 0..150 {
        text.push_str(&format!("      - {{ id: h{i}, group: [g] }}\n"));
    }
    let err = try_load(&text, &[]).expect_err("every host is wrong");
    assert_eq!(err.0.len(), 150);
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 101, "{shown}");
    assert!(lines[99].starts_with("policy.yaml:105:27: invalid type"), "{}", lines[99]);
    assert!(lines[100].starts_with("… and 50 more errors"), "{}", lines[100]);
}

const AWS_AND_HOSTS: &str = r#"version: 1
targets:
  - type: aws_ec2
    name: fleet
    regions: [us-east-1, US-East-1, us-east-1a, mars-1, us-gov-west-1, us-east-1]
    endpoint_url: "localhost:5000"
    profile: ""
    group_by: ""
    isolation_group: " "
    terminate_batch: 0
    opt_in: { tag: "", value: "true" }
  - type: aws_ec2
    name: fleet
    regions: []
    endpoint_url: "ftp://127.0.0.1:5000"
    terminate_batch: 1001
  - type: aws_ec2
    name: local-moto
    regions: [eu-west-1]
    endpoint_url: "http://127.0.0.1:99999"
  - type: aws_ec2
    name: no-host
    regions: [eu-west-1]
    endpoint_url: "https:///path"
  - type: aws_ec2
    name: no-regions
    regionz: [eu-west-1]
  - type: hosts
    name: half-isolate
    isolate: ["iptables", "-I", "INPUT", "-s", "{adress}", "-j", "DROP"]
    hosts: [{ id: a, group: web }]
  - type: hosts
    name: half-restore
    restore: ["iptables", "-D", "INPUT", "-j", "DROP"]
  - type: hosts
    name: empty-commands
    isolate: []
    restore: ["unclosed-{id"]
"#;

#[test]
fn aws_and_gorilla_errors() {
    let gorilla = |monkey: &str, targets: &str| {
        format!(
            "version: 1\ntargets:\n{targets}monkeys:\n  gorilla:\n    schedule: \"0 10 * * tue\"\n{monkey}"
        )
    };
    let plain_hosts =
        "  - { type: hosts, name: a, terminate: [kill, \"{tag:pid}\"] }\n  - { type: hosts, name: b }\n";
    let isolating_hosts =
        "  - { type: hosts, name: c, isolate: [drop, \"{id}\"], restore: [undrop, \"{id}\"] }\n";
    let aws = "  - { type: aws_ec2, name: e, regions: [us-east-1] }\n";
    let cases = [
        ("aws_ec2 and hosts targets", AWS_AND_HOSTS.to_string()),
        (
            "gorilla: terminate with a duration, empty zone",
            gorilla("    zone: \"\"\n    action: terminate\n    duration: 30m\n", plain_hosts),
        ),
        ("gorilla: zero duration", gorilla("    action: isolate\n    duration: 0s\n", isolating_hosts)),
        ("gorilla: unknown action", gorilla("    action: terminat\n", aws)),
        ("gorilla: no target can isolate", gorilla("    action: isolate\n    duration: 30m\n", plain_hosts)),
        ("gorilla: isolate by default, no target can", gorilla("    zone: random\n", plain_hosts)),
        ("gorilla: one hosts target can isolate", gorilla("", &format!("{plain_hosts}{isolating_hosts}"))),
        ("gorilla: an aws_ec2 target can isolate", gorilla("", &format!("{plain_hosts}{aws}"))),
        ("gorilla: terminate needs no isolate", gorilla("    action: terminate\n", plain_hosts)),
        ("gorilla: disabled", gorilla("    enabled: false\n", plain_hosts)),
        ("gorilla: no targets", gorilla("", "  []\n")),
        (
            "gorilla: an unreadable target might have isolated",
            gorilla("", &format!("{plain_hosts}  - {{ type: aws_ec3, name: e }}\n")),
        ),
    ];
    let out: Vec<String> =
        cases.iter().map(|(label, text)| format!("# {label}\n{}", errors(text, &[]))).collect();
    insta::assert_snapshot!("aws_and_gorilla_errors", out.join("\n\n"));
}

#[test]
fn aws_target_defaults_and_gorilla_settings() {
    let text = r#"version: 1
targets:
  - type: aws_ec2
    name: staging
    regions: [us-east-1, eu-central-1, us-isob-east-1]
    endpoint_url: "http://127.0.0.1:5000"
monkeys:
  gorilla:
    schedule: "0 10 * * tue"
    duration: 45m
"#;
    let p = try_load(text, &[]).expect("valid");
    let a = match &p.policy.targets[0] {
        simian_config::TargetConfig::AwsEc2(a) => a,
        other @ simian_config::TargetConfig::Hosts(_) => panic!("expected an aws_ec2 target, got {other:?}"),
    };
    assert_eq!(a.group_by, "aws:autoscaling:groupName");
    assert_eq!(a.isolation_group, "simian-isolation");
    assert_eq!(a.terminate_batch, 100);
    assert_eq!(a.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    let g = p.policy.monkeys.gorilla.as_ref().expect("gorilla");
    assert!(g.enabled && !g.allow_total_loss);
    assert_eq!(g.zone, "random");
    assert_eq!(g.action, simian_config::GorillaAction::Isolate);
    assert_eq!(g.duration.map(|d| d.as_secs()), Some(45 * 60));
    assert!(p.schedules.contains_key(&simian_config::MonkeyName::Gorilla));
}

#[test]
fn ssh_executor_errors() {
    let text = r#"version: 1
targets:
  - type: hosts
    name: a
    executor:
      type: ssh
      user: ""
      port: 0
      identity_file: " "
      known_hosts: ""
      connect_timeout: 0s
      control_persist: 0s
      host: "{adress}.internal"
  - type: hosts
    name: b
    executor: { user: root, type: ssh, argv: [sudo], prot: 22 }
  - type: hosts
    name: c
    executor: { type: ssh, port: 70000, connect_timeout: soon, host: "{id" }
  - type: hosts
    name: d
    executor: { type: wrap, argv: [sudo], user: root }
  - type: hosts
    name: e
    executor: { type: ssh, host: "" }
"#;
    insta::assert_snapshot!("ssh_executor_errors", errors(text, &[]));
}

#[test]
fn ssh_executor_accepted() {
    let text = r#"version: 1
targets:
  - type: hosts
    name: a
    executor: { type: ssh, user: root, port: 22, identity_file: ~/.ssh/simian, known_hosts: ~/.ssh/known_hosts }
  - type: hosts
    name: b
    executor: { type: ssh, host: "{id}.lab", connect_timeout: 3s, control_persist: 5m }
  - type: hosts
    name: c
    executor: ssh
"#;
    let loaded = try_load(text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let executors: Vec<_> = loaded
        .policy
        .targets
        .iter()
        .map(|t| match t {
            simian_config::TargetConfig::Hosts(h) => h.executor.clone(),
            other => panic!("not hosts: {other:?}"),
        })
        .collect();
    let simian_config::ExecutorConfig::Ssh(a) = &executors[0] else { panic!("{:?}", executors[0]) };
    assert_eq!(a.user.as_deref(), Some("root"));
    assert_eq!(a.port, Some(22));
    assert_eq!(a.identity_file.as_deref(), Some("~/.ssh/simian"));
    assert_eq!(a.known_hosts.as_deref(), Some("~/.ssh/known_hosts"));
    let simian_config::ExecutorConfig::Ssh(b) = &executors[1] else { panic!("{:?}", executors[1]) };
    assert_eq!(b.host.as_deref(), Some("{id}.lab"));
    assert_eq!(b.connect_timeout.map(|d| d.as_secs()), Some(3));
    assert_eq!(b.control_persist.map(|d| d.as_secs()), Some(300));
    assert_eq!(executors[2], simian_config::ExecutorConfig::Ssh(Default::default()));
}

#[test]
fn sink_errors_name_the_place_and_never_echo_a_secret() {
    let text = "version: 1
sinks:
  - type: log
  - { type: slak, webhook_url: x }
  - { type: slack, webhook_url: \"${HOOK}\", min_severity: loud, announce: 0s }
  - { type: webhook, url: \"ftp://hooks/T0KEN\", secret: \"${SECRET}\", headers: { \"Bad Header\": v } }
  - { type: slack, webhook_url: \"https://hooks.example/T0KEN\", colour: red }
  - { type: jsonl }
  - { type: prometheus, pushgateway: \"127.0.0.1:9091\" }
  - type: log
";
    let vars = [("HOOK", "not-a-url-T0KEN"), ("SECRET", "s3cret")];
    let out = errors(text, &vars);
    assert!(!out.contains("T0KEN") && !out.contains("s3cret"), "{out}");
    insta::assert_snapshot!("sink_errors", out);
    // Valid sinks load, with the policy name defaulting to the file's stem.
    let ok = "version: 1\nsinks:\n  - { type: slack, webhook_url: \"${HOOK}\", min_severity: warning, announce: 30m }\n  - { type: webhook, name: audit, url: \"https://h.example/x\", secret: s, headers: { Authorization: \"Bearer t\" } }\n  - { type: jsonl, path: f.jsonl }\n  - { type: prometheus, pushgateway: \"http://127.0.0.1:9091\" }\n";
    let p = try_load(ok, &[("HOOK", "https://hooks.example/services/T0KEN")]).unwrap();
    assert_eq!(p.policy.sinks.len(), 4);
    assert_eq!(p.name, "policy");
    assert_eq!(p.policy.sinks[1].name(), "audit");
    assert!(!format!("{:?}", p.policy).contains("T0KEN"), "Debug must redact secrets");
}

#[test]
fn huge_durations_are_refused_with_the_bound() {
    let text = "version: 1\nmonkeys:\n  gorilla:\n    zone: a\n    duration: 20000000w\n  latency:\n    delay: 100ms\n    duration: 15000000w\n";
    let out = errors(text, &[]);
    assert!(out.contains("policy.yaml:5:15"), "{out}");
    assert!(out.contains("more than 100 years"), "{out}");
    assert!(out.contains("policy.yaml:8:15"), "{out}");
    let text = "version: 1\nmonkeys:\n  gorilla:\n    zone: a\n    duration: 8d\n  latency:\n    delay: 100ms\n    duration: 2d\n    grace: 2h\n  chaos:\n    min_time_between_kills: 400d\n";
    let out = errors(text, &[]);
    for want in [
        "policy.yaml:5:15: `duration: 1w1d` is too long; at most 1w is allowed",
        "policy.yaml:8:15: `duration: 2d` is too long; at most 1d is allowed",
        "policy.yaml:9:12: `grace: 2h` is too long; at most 1h is allowed",
        "policy.yaml:11:29: `min_time_between_kills: 57w1d` is too long; at most 52w2d is allowed",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    let at_bound =
        "version: 1\nmonkeys:\n  gorilla:\n    schedule: \"0 11 * * wed\"\n    zone: a\n    duration: 7d\n";
    assert_eq!(errors(at_bound, &[]), "ok");
}

#[test]
fn retention_defaults_to_90_days_and_refuses_hostile_values_at_their_place() {
    let base = "version: 1\ntargets:\n  - { type: hosts, name: t, terminate: [\"true\"], hosts: [{ id: a, group: g }] }\n";
    let p = try_load(base, &[]).expect("valid");
    assert_eq!(p.policy.retention(), std::time::Duration::from_secs(90 * 86_400));
    let e = errors(&format!("{base}retention: 10m\n"), &[]);
    assert!(e.contains("policy.yaml:4:12: a retention under an hour"), "{e}");
    let e = errors(&format!("{base}retention: 600w\n"), &[]);
    assert!(e.contains("policy.yaml:4:12: `retention: 600w` is too long"), "{e}");
    for bad in ["20000000w", "-1d", "0", "[1d]", "{a: 1}", "\"\""] {
        let e = errors(&format!("{base}retention: {bad}\n"), &[]);
        assert!(e.starts_with("policy.yaml:4:"), "{bad}: {e}");
    }
}

#[test]
fn a_postgres_store_takes_its_password_from_the_environment_and_never_shows_it() {
    let text = "version: 1\nstore: postgres://simian:${PG_PASSWORD}@db.lab:5432/simian?sslmode=require\n";
    let p = try_load(text, &[("PG_PASSWORD", "hunter2")]).expect("a valid URL");
    match &p.store {
        simian_config::StoreAt::Postgres(u) => assert_eq!(u.secret_url().password(), Some("hunter2")),
        other => panic!("expected PostgreSQL, got {other:?}"),
    }
    assert_eq!(p.store.to_string(), "postgres://simian:***@db.lab:5432/simian?sslmode=require");
    assert!(!format!("{p:?}").contains("hunter2"), "the loaded policy's Debug shows the password");

    let bad = "version: 1\nmode: dry-run\nstore: \"postgres://simian:${PG_PASSWORD}@db.lab/simian?sslmode=sometimes\"\n";
    let e = errors(bad, &[("PG_PASSWORD", "hunter2")]);
    assert!(e.contains(":3:8: sslmode `sometimes` is not one of disable, prefer, require"), "{e}");
    assert!(e.contains("postgres://user@host:5432/db"), "the hint shows the form: {e}");
    assert!(!e.contains("hunter2"), "{e}");
}
