//! The `aws_ec2` target against moto's EC2 server on loopback (started per test by `testkit::Moto`).
#![allow(clippy::disallowed_methods)] // tests wait on real processes and servers in real time

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use simian_config::{AwsEc2Target, OptIn, TargetConfig};
use simian_monkeys::{Actuator, Instance, Undo};
use simian_targets::{Fleet, Target, TargetError};
use testkit::{Launch, Moto, GROUP_TAG, OPT_IN_TAG, REGION, ZONES};

fn config(name: &str, endpoint: &str) -> AwsEc2Target {
    AwsEc2Target {
        name: name.to_string(),
        regions: vec![REGION.to_string()],
        endpoint_url: Some(endpoint.to_string()),
        profile: None,
        group_by: GROUP_TAG.to_string(),
        opt_in: None,
        isolation_group: "simian-isolation".to_string(),
        terminate_batch: 100,
    }
}

fn target(config: AwsEc2Target) -> Target {
    Target::from_config(&TargetConfig::AwsEc2(config), &OptIn::default())
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

fn ids(insts: &[Instance]) -> BTreeSet<String> {
    insts.iter().map(|i| i.id.clone()).collect()
}

#[tokio::test]
async fn inventory_lists_running_opted_in_instances_over_three_zones() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    let mut web = Vec::new();
    for zone in ZONES {
        web.extend(net.launch(Launch::new(zone, 2).group("web").opted_in().tag("team", "blue")).await);
    }
    let mut api = net.launch(Launch::new(ZONES[0], 1).group("api").opted_in()).await;
    api.extend(net.launch(Launch::new(ZONES[1], 1).group("api").opted_in()).await);
    let ungrouped = net.launch(Launch::new(ZONES[2], 1).opted_in()).await;
    net.launch(Launch::new(ZONES[0], 2).group("batch")).await; // not opted in
    net.launch(Launch::new(ZONES[1], 1).group("batch").tag(OPT_IN_TAG, "false")).await;
    let stopped = net.launch(Launch::new(ZONES[2], 2).group("web").opted_in()).await;
    net.stop(&stopped).await;

    let target = target(config("aws", moto.endpoint()));
    let inv = target.inventory().await.expect("inventory");

    let want: BTreeSet<String> = web.iter().chain(&api).chain(&ungrouped).cloned().collect();
    assert_eq!(ids(&inv), want);
    assert_eq!(target.api_calls(), 1, "one DescribeInstances page");
    let by_id: BTreeMap<&str, &Instance> = inv.iter().map(|i| (i.id.as_str(), i)).collect();
    for (n, id) in web.iter().enumerate() {
        let i = by_id[id.as_str()];
        assert_eq!(i.target, "aws");
        assert_eq!(i.group, "web");
        assert_eq!(i.zone.as_deref(), Some(ZONES[n / 2]));
        assert_eq!(i.region.as_deref(), Some(REGION));
        assert!(
            i.address.as_deref().is_some_and(|a| a.starts_with("10.0.")),
            "private address: {:?}",
            i.address
        );
        assert_eq!(i.tags.get("team").map(String::as_str), Some("blue"));
        assert_eq!(i.tags.get(OPT_IN_TAG).map(String::as_str), Some("true"));
        assert_eq!(i.tags.get(GROUP_TAG).map(String::as_str), Some("web"));
    }
    assert_eq!(by_id[api[0].as_str()].group, "api");
    assert_eq!(by_id[api[1].as_str()].zone.as_deref(), Some(ZONES[1]));
    assert_eq!(by_id[ungrouped[0].as_str()].group, "", "no group tag: empty group");

    // A custom group_by tag.
    let mut by_team = config("aws", moto.endpoint());
    by_team.group_by = "team".to_string();
    let inv = target_inventory(by_team).await;
    assert!(inv.iter().filter(|i| web.contains(&i.id)).all(|i| i.group == "blue"));
    assert!(inv.iter().filter(|i| api.contains(&i.id)).all(|i| i.group.is_empty()));
}

async fn target_inventory(config: AwsEc2Target) -> Vec<Instance> {
    target(config).inventory().await.expect("inventory").to_vec()
}

#[tokio::test]
async fn opt_in_comes_from_the_target_else_from_the_policy() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    let default_tag = net.launch(Launch::new(ZONES[0], 2).group("web").opted_in()).await;
    let team_tag = net.launch(Launch::new(ZONES[1], 3).group("web").tag("chaos", "yes")).await;
    let yaml = format!(
        r#"
version: 1
opt_in: {{ tag: chaos, value: "yes" }}
targets:
  - type: aws_ec2
    name: policy-default
    regions: [{REGION}]
    endpoint_url: {endpoint}
  - type: aws_ec2
    name: own
    regions: [{REGION}]
    endpoint_url: {endpoint}
    opt_in: {{ tag: "simian:opt-in", value: "true" }}
"#,
        endpoint = moto.endpoint()
    );
    let loaded = simian_config::load_str("policy.yaml", &yaml, Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("policy: {e:?}"));
    let fleet = Fleet::from_policy(&loaded.policy);
    let inv = fleet.inventory().await.expect("inventory");
    let of = |t: &str| inv.iter().filter(|i| i.target == t).map(|i| i.id.clone()).collect::<BTreeSet<_>>();
    assert_eq!(of("policy-default"), set(&team_tag));
    assert_eq!(of("own"), set(&default_tag));
    assert_eq!(fleet.api_calls(), 2, "one DescribeInstances per target");
}

#[tokio::test]
async fn inventory_pages_through_more_than_a_thousand_reservations() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    // moto pages by reservation: 1,005 single-instance reservations plus two of 100 make 1,007 reservations.
    let mut want = Vec::new();
    for (n, zone) in ZONES.iter().enumerate() {
        want.extend(net.launch(Launch::new(zone, 335).group(&format!("g{n}")).opted_in().per_call(1)).await);
    }
    want.extend(net.launch(Launch::new(ZONES[0], 200).group("big").opted_in()).await);
    net.launch(Launch::new(ZONES[1], 50).group("other")).await; // not opted in
    assert_eq!(want.len(), 1205);

    let target = target(config("aws", moto.endpoint()));
    let started = Instant::now();
    let inv = target.inventory().await.expect("inventory");
    eprintln!("inventory of {} instances took {:?}", inv.len(), started.elapsed());
    assert_eq!(ids(&inv), set(&want));
    assert_eq!(inv.len(), want.len(), "no duplicates across pages");
    assert_eq!(target.api_calls(), 2, "1,007 reservations at 1,000 per page");
}

#[tokio::test]
async fn terminate_many_terminates_in_batches() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    let victims = net.launch(Launch::new(ZONES[0], 10).group("web").opted_in()).await;
    let survivors = net.launch(Launch::new(ZONES[1], 3).group("web").opted_in()).await;
    let mut cfg = config("aws", moto.endpoint());
    cfg.terminate_batch = 4;
    let lab = simian_config::HostsTarget {
        name: "lab".to_string(),
        executor: Default::default(),
        terminate: Some(vec!["true".to_string()]),
        isolate: None,
        restore: None,
        timeout: None,
        opt_in: None,
        hosts: vec![simian_config::HostConfig {
            id: "h1".to_string(),
            address: None,
            group: "g".to_string(),
            zone: None,
            tags: BTreeMap::new(),
            url: None,
        }],
    };
    let fleet =
        Fleet::new(vec![Target::from_config(&TargetConfig::Hosts(lab), &OptIn::default()), target(cfg)]);
    let inv = fleet.inventory().await.expect("inventory");
    assert_eq!(fleet.api_calls(), 1);
    let host = inv.iter().find(|i| i.target == "lab").expect("host").clone();
    let mut order: Vec<Instance> = inv.iter().filter(|i| victims.contains(&i.id)).cloned().collect();
    order.insert(3, host.clone());
    let mut ghost = host.clone();
    ghost.target = "nowhere".to_string();
    order.insert(7, ghost);

    let results = fleet.terminate_many(&order).await;
    assert_eq!(results.len(), order.len());
    for (inst, r) in order.iter().zip(&results) {
        match inst.target.as_str() {
            "aws" => {
                assert!(r.as_ref().is_ok_and(|m| m.contains("TerminateInstances")), "{}: {r:?}", inst.id)
            }
            "lab" => assert!(r.as_ref().is_ok_and(|m| m.contains("ran `true`")), "{r:?}"),
            _ => assert!(r.as_ref().is_err_and(|e| e.0.contains("`nowhere` is not defined")), "{r:?}"),
        }
    }
    assert_eq!(fleet.api_calls(), 1 + 3, "10 instances in batches of 4");
    let states = net.states(&victims).await;
    assert!(states.values().all(|s| s == "terminated" || s == "shutting-down"), "{states:?}");
    let states = net.states(&survivors).await;
    assert!(states.values().all(|s| s == "running"), "{states:?}");
    let after = fleet.inventory().await.expect("inventory");
    assert_eq!(after.iter().filter(|i| i.target == "aws").count(), 3);
}

#[tokio::test]
async fn terminate_reports_the_aws_error_code_and_still_terminates_the_rest() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    net.launch(Launch::new(ZONES[0], 2).group("web").opted_in()).await;
    let target = target(config("aws", moto.endpoint()));
    let inv = target.inventory().await.expect("inventory");
    let mut ghost = inv[0].clone();
    ghost.id = "i-0123456789abcdef0".to_string();

    let err = target.terminate(&ghost).await.expect_err("unknown instance");
    assert!(err.0.contains("InvalidInstanceID.NotFound"), "{err}");

    let batch = [inv[0].clone(), ghost, inv[1].clone()];
    let results = target.terminate_many(&batch).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(results[1].as_ref().is_err_and(|e| e.0.contains("InvalidInstanceID.NotFound")), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    assert!(target.inventory().await.expect("inventory").is_empty());
}

#[tokio::test]
async fn isolate_swaps_in_an_empty_group_and_restore_brings_the_original_groups_back() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    let (app, web) = (net.security_groups[0].clone(), net.security_groups[1].clone());
    net.launch(Launch::new(ZONES[0], 1).group("web").opted_in().security_groups(&[&web, &app])).await;
    net.launch(Launch::new(ZONES[1], 1).group("api").opted_in().security_groups(&[&app])).await;
    let fleet = Fleet::new(vec![target(config("aws", moto.endpoint()))]);
    let inv = fleet.inventory().await.expect("inventory");
    let a = inv.iter().find(|i| i.group == "web").expect("web instance").clone();
    let b = inv.iter().find(|i| i.group == "api").expect("api instance").clone();
    let before = net.groups_of(&a.id).await;
    assert_eq!(set(&before), set(&[app.clone(), web.clone()]));

    let undo = fleet.prepare_isolation(&a).await.expect("prepare");
    let Undo::Ec2Groups { region, instance_id, groups, isolation_group } = undo.clone() else {
        panic!("not an EC2 undo: {undo:?}")
    };
    assert_eq!((region.as_str(), instance_id.as_str()), (REGION, a.id.as_str()));
    assert_eq!(set(&groups), set(&before));
    assert_eq!(net.groups_of(&a.id).await, before, "prepare changes nothing on the instance");

    // The isolation group: simian's, in the instance's VPC, with no rules at all.
    let sgs = net
        .client
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values("simian-isolation").build())
        .send()
        .await
        .expect("DescribeSecurityGroups");
    let [sg] = sgs.security_groups() else { panic!("one isolation group: {sgs:?}") };
    assert_eq!(sg.group_id(), Some(isolation_group.as_str()));
    assert_eq!(sg.vpc_id(), Some(net.vpc_id.as_str()));
    assert!(sg.tags().iter().any(|t| t.key() == Some("simian:managed") && t.value() == Some("true")));
    assert!(sg.ip_permissions().is_empty(), "ingress: {:?}", sg.ip_permissions());
    assert!(sg.ip_permissions_egress().is_empty(), "egress: {:?}", sg.ip_permissions_egress());

    let note = fleet.isolate(&a, &undo).await.expect("isolate");
    assert!(note.contains(&isolation_group), "{note}");
    assert_eq!(net.groups_of(&a.id).await, vec![isolation_group.clone()]);

    // A second prepare reuses the group; an isolated instance cannot be prepared again.
    let undo_b = fleet.prepare_isolation(&b).await.expect("prepare b");
    let Undo::Ec2Groups { isolation_group: again, groups: groups_b, .. } = &undo_b else {
        panic!("{undo_b:?}")
    };
    assert_eq!(again, &isolation_group);
    assert_eq!(groups_b, &vec![app.clone()]);
    let err = fleet.prepare_isolation(&a).await.expect_err("already isolated");
    assert!(err.0.contains("already isolated"), "{err}");
    assert_eq!(count_isolation_groups(&net).await, 1);

    fleet.restore("aws", &undo).await.expect("restore");
    assert_eq!(set(&net.groups_of(&a.id).await), set(&before));
    fleet.restore("aws", &undo).await.expect("restore twice");
    assert_eq!(set(&net.groups_of(&a.id).await), set(&before));
    assert_eq!(net.groups_of(&b.id).await, vec![app.clone()], "b was never isolated");

    // Restoring an instance that is gone fails with the AWS code; the caller decides.
    let gone = Undo::Ec2Groups {
        region: REGION.to_string(),
        instance_id: "i-0123456789abcdef0".to_string(),
        groups: vec![app.clone()],
        isolation_group: isolation_group.clone(),
    };
    let err = fleet.restore("aws", &gone).await.expect_err("gone");
    assert!(err.0.contains("InvalidInstanceID.NotFound"), "{err}");
    let err = fleet.restore("elsewhere", &undo).await.expect_err("unknown target");
    assert!(err.0.contains("`elsewhere` is not defined"), "{err}");
}

async fn count_isolation_groups(net: &testkit::Network) -> usize {
    let out = net
        .client
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values("simian-isolation").build())
        .send()
        .await
        .expect("DescribeSecurityGroups");
    out.security_groups().len()
}

#[tokio::test]
async fn an_untagged_group_named_like_the_isolation_group_is_never_used() {
    testkit::fake_aws_env();
    let moto = Moto::start();
    let net = moto.network().await;
    net.client
        .create_security_group()
        .group_name("simian-isolation")
        .description("somebody else's")
        .vpc_id(&net.vpc_id)
        .send()
        .await
        .expect("CreateSecurityGroup");
    net.launch(Launch::new(ZONES[0], 1).group("web").opted_in()).await;
    let target = target(config("aws", moto.endpoint()));
    let inv = target.inventory().await.expect("inventory");
    let err = target.prepare_isolation(&inv[0]).await.expect_err("untagged group");
    assert!(err.0.contains("not tagged simian:managed=true"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_with_one_unreachable_error() {
    testkit::fake_aws_env();
    let target = target(config("aws", "http://127.0.0.1:1"));
    let started = Instant::now();
    let err = target.inventory().await.expect_err("nothing listens on port 1");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let TargetError::Unreachable { target: name, endpoint, reason } = &err else {
        panic!("wrong kind: {err:?}")
    };
    assert_eq!((name.as_str(), endpoint.as_str()), ("aws", "http://127.0.0.1:1"));
    assert!(reason.contains("DescribeInstances"), "{reason}");
    assert_eq!(target.api_calls(), 3, "the SDK's standard retries: 3 attempts");
    eprintln!("{err} (after {took:?})");

    let victim = Instance {
        target: "aws".into(),
        id: "i-0123456789abcdef0".into(),
        address: None,
        group: "web".into(),
        zone: None,
        region: Some(REGION.into()),
        url: None,
        tags: BTreeMap::new(),
    };
    let err = target.terminate(&victim).await.expect_err("unreachable");
    assert!(err.0.contains("cannot reach http://127.0.0.1:1"), "{err}");
}

/// Env var that turns [`no_credentials_child`] from a no-op into the real check (run in a child process, so the
/// rest of this binary keeps its fake credentials in the environment).
const CHILD: &str = "SIMIAN_TEST_NO_CREDENTIALS_CHILD";

#[tokio::test]
async fn missing_credentials_fail_fast_with_one_credentials_error() {
    let exe = std::env::current_exe().expect("test binary");
    let nothing = std::env::temp_dir().join("simian-testkit-no-aws-config");
    let out = std::process::Command::new(exe)
        .args(["--exact", "aws::no_credentials_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &nothing)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nothing)
        .output()
        .expect("run the child test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
}

#[tokio::test]
async fn no_credentials_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    // No credentials anywhere: the endpoint is never contacted, so it need not exist.
    let target = target(config("aws", "http://127.0.0.1:1"));
    let started = Instant::now();
    let err = target.inventory().await.expect_err("no credentials");
    let took = started.elapsed();
    eprintln!("{err} (after {took:?})");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        matches!(&err, TargetError::Credentials { target, .. } if target == "aws"),
        "wrong kind: {err:?}"
    );
    assert_eq!(target.api_calls(), 0, "nothing was sent");

    // A named profile that does not exist is a credentials error too.
    let mut cfg = config("aws", "http://127.0.0.1:1");
    cfg.profile = Some("absent".to_string());
    let err = self::target(cfg).inventory().await.expect_err("no such profile");
    eprintln!("{err}");
    assert!(matches!(&err, TargetError::Credentials { .. }), "wrong kind: {err:?}");
    assert!(err.to_string().contains("absent"), "{err}");
}
