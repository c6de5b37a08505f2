//! Validation of `targets:`: hosts and their executors (local, wrap, ssh), argv templates, aws_ec2.

use std::collections::HashSet;

use crate::locate::{key, Issue, Seg};
use crate::schema::{AwsEc2Target, ExecutorConfig, HostsTarget, SshExecutorConfig, TargetConfig};
use crate::template;

use super::{at_most, bound};

pub(super) fn targets(targets: &[TargetConfig], issues: &mut Vec<Issue>) {
    let mut names = HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let base = vec![key("targets"), Seg::Index(i)];
        let at = |f: &str| {
            let mut p = base.clone();
            p.push(key(f));
            p
        };
        let name = t.name();
        if name.trim().is_empty() {
            issues.push(Issue::at(at("name"), "a target name must not be empty"));
        } else if !names.insert(name) {
            issues.push(
                Issue::at(at("name"), format!("duplicate target name `{name}`"))
                    .hint("give each target its own name"),
            );
        }
        match t {
            TargetConfig::Hosts(h) => hosts_target(h, &base, issues),
            TargetConfig::AwsEc2(a) => aws_target(a, &base, issues),
        }
    }
}

/// One argv template of a hosts target (`terminate`, `isolate`, `restore`): not empty, placeholders known.
pub(super) fn command(argv: &[String], field: &str, example: &str, base: &[Seg], issues: &mut Vec<Issue>) {
    let mut p = base.to_vec();
    p.push(key(field));
    if argv.is_empty() {
        issues.push(
            Issue::at(p.clone(), format!("the {field} command is empty"))
                .hint(format!("give an argv list, e.g. {example}")),
        );
    }
    check_argv(argv, &p, issues);
}

pub(super) fn hosts_target(h: &HostsTarget, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &[Seg]| {
        let mut p = base.to_vec();
        p.extend_from_slice(f);
        p
    };
    let commands = [
        ("terminate", &h.terminate, r#"["systemctl", "stop", "app@{id}"]"#),
        ("isolate", &h.isolate, r#"["iptables", "-I", "INPUT", "-j", "DROP"]"#),
        ("restore", &h.restore, r#"["iptables", "-D", "INPUT", "-j", "DROP"]"#),
    ];
    for (field, argv, example) in commands {
        if let Some(argv) = argv {
            command(argv, field, example, base, issues);
        }
    }
    match (&h.isolate, &h.restore) {
        (Some(_), None) => {
            let mut issue = Issue::at(
                at(&[key("isolate")]),
                "`isolate` needs a matching `restore` so the fault can be undone",
            )
            .hint("add `restore: [...]`, an argv that reverses `isolate`");
            issue.at_key = true;
            issues.push(issue);
        }
        (None, Some(_)) => {
            let mut issue =
                Issue::at(at(&[key("restore")]), "`restore` without `isolate` has nothing to undo")
                    .hint("add the `isolate` command it reverses, or remove `restore`");
            issue.at_key = true;
            issues.push(issue);
        }
        (Some(_), Some(_)) | (None, None) => {}
    }
    match &h.executor {
        ExecutorConfig::Local => {}
        ExecutorConfig::Ssh(ssh) => ssh_executor(ssh, &at(&[key("executor")]), issues),
        ExecutorConfig::Wrap { argv } => {
            let p = at(&[key("executor"), key("argv")]);
            if argv.is_empty() {
                issues.push(
                    Issue::at(p.clone(), "the wrap executor's argv is empty")
                        .hint("give a prefix, e.g. [\"docker\", \"exec\", \"{id}\"]"),
                );
            }
            check_argv(argv, &p, issues);
        }
    }
    if h.timeout.is_some_and(|t| t.std().is_zero()) {
        issues.push(Issue::at(at(&[key("timeout")]), "the timeout must be longer than 0s"));
    }
    at_most(h.timeout, bound::TIMEOUT, at(&[key("timeout")]), issues);
    if let Some(o) = &h.opt_in {
        if o.tag.is_empty() {
            issues.push(Issue::at(at(&[key("opt_in"), key("tag")]), "the opt-in tag must not be empty"));
        }
    }
    let mut ids = HashSet::new();
    for (j, host) in h.hosts.iter().enumerate() {
        let hp = |f: &str| at(&[key("hosts"), Seg::Index(j), key(f)]);
        if host.id.trim().is_empty() {
            issues.push(Issue::at(hp("id"), "a host id must not be empty"));
        } else if !ids.insert(host.id.as_str()) {
            issues.push(
                Issue::at(hp("id"), format!("duplicate host id `{}` in this target", host.id))
                    .hint("host ids must be unique within a target"),
            );
        }
        if host.group.trim().is_empty() {
            issues.push(Issue::at(hp("group"), "a host group must not be empty"));
        }
    }
}

pub(super) fn aws_target(a: &AwsEc2Target, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &[Seg]| {
        let mut p = base.to_vec();
        p.extend_from_slice(f);
        p
    };
    if a.regions.is_empty() {
        issues.push(
            Issue::at(at(&[key("regions")]), "an aws_ec2 target needs at least one region")
                .hint("e.g. `regions: [us-east-1]`"),
        );
    }
    let mut seen = HashSet::new();
    for (i, r) in a.regions.iter().enumerate() {
        let p = at(&[key("regions"), Seg::Index(i)]);
        if !is_region(r) {
            let fixed = r.trim().to_lowercase();
            let hint = if is_region(&fixed) {
                format!("region names are lowercase without spaces: `{fixed}`")
            } else if let Some(region) =
                fixed.strip_suffix(|c: char| c.is_ascii_lowercase()).filter(|r| is_region(r))
            {
                format!("`{fixed}` is an availability zone; its region is `{region}`")
            } else {
                "write a region code such as `us-east-1`, `eu-central-1` or `us-gov-west-1`".to_string()
            };
            issues.push(Issue::at(p, format!("`{r}` is not an AWS region")).hint(hint));
        } else if !seen.insert(r.as_str()) {
            issues.push(Issue::at(p, format!("duplicate region `{r}`")).hint("list each region once"));
        }
    }
    if let Some(u) = &a.endpoint_url {
        if let Err(why) = check_endpoint_url(u) {
            issues.push(
                Issue::at(at(&[key("endpoint_url")]), format!("invalid endpoint_url `{u}`: {why}")).hint(
                    "e.g. `http://127.0.0.1:5000` for a local moto server; remove it to use AWS's endpoint",
                ),
            );
        }
    }
    if a.profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
        issues.push(Issue::at(at(&[key("profile")]), "the profile name must not be empty").hint(
            "name a profile of the shared AWS config, or remove the key for the default credential chain",
        ));
    }
    if a.group_by.trim().is_empty() {
        issues.push(
            Issue::at(at(&[key("group_by")]), "the group_by tag must not be empty")
                .hint("the default, `aws:autoscaling:groupName`, groups instances by Auto Scaling group"),
        );
    }
    if a.isolation_group.trim().is_empty() {
        issues.push(
            Issue::at(at(&[key("isolation_group")]), "the isolation security group name must not be empty")
                .hint("the default is `simian-isolation`"),
        );
    }
    if !(1..=1000).contains(&a.terminate_batch) {
        issues.push(
            Issue::at(
                at(&[key("terminate_batch")]),
                format!("terminate_batch {} is outside 1..=1000", a.terminate_batch),
            )
            .hint("one TerminateInstances call takes at most 1000 instances; the default is 100"),
        );
    }
    if let Some(o) = &a.opt_in {
        if o.tag.is_empty() {
            issues.push(Issue::at(at(&[key("opt_in"), key("tag")]), "the opt-in tag must not be empty"));
        }
    }
}

/// An AWS region code: `^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$` (`us-east-1`, `us-gov-west-1`, `us-isob-east-1`).
pub(crate) fn is_region(s: &str) -> bool {
    let letters = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let partition = |p: &str| {
        p == "gov" || p.strip_prefix("iso").is_some_and(|x| x.is_empty() || (x.len() == 1 && letters(x)))
    };
    let parts: Vec<&str> = s.split('-').collect();
    let cc = |p: &str| p.len() == 2 && letters(p);
    match parts.as_slice() {
        [c, area, n] => cc(c) && letters(area) && digits(n),
        [c, part, area, n] => cc(c) && partition(part) && letters(area) && digits(n),
        _ => false,
    }
}

/// An absolute `http://` or `https://` URL with a host (and maybe a port); `Err` says what is wrong.
pub(crate) fn check_endpoint_url(u: &str) -> Result<(), String> {
    if u.trim().is_empty() {
        return Err("it is empty".to_string());
    }
    if u.chars().any(char::is_whitespace) {
        return Err("a URL cannot contain whitespace".to_string());
    }
    let Some((scheme, rest)) = u.split_once("://") else {
        return Err("expected an absolute URL starting with `http://` or `https://`".to_string());
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!("unsupported scheme `{scheme}`; expected `http` or `https`"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials do not belong in the URL; use `profile` or the credential chain".to_string());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => match tail {
                "" => (authority, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (authority, Some(p)),
                    None => return Err(format!("unexpected `{t}` after the IPv6 address")),
                },
            },
            _ => return Err(format!("invalid IPv6 host `{authority}`")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host".to_string());
    }
    let host_ok = host.starts_with('[')
        || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !host_ok {
        return Err(format!("invalid host `{host}`"));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(format!("invalid port `{p}`; expected 1..=65535"));
        }
    }
    Ok(())
}

/// Checks an `executor: { type: ssh, … }` found at `base`.
pub(super) fn ssh_executor(ssh: &SshExecutorConfig, base: &[Seg], issues: &mut Vec<Issue>) {
    let at = |f: &str| {
        let mut p = base.to_vec();
        p.push(key(f));
        p
    };
    if ssh.port == Some(0) {
        issues
            .push(Issue::at(at("port"), "the ssh port must be 1..=65535, not 0").hint("22 is ssh's default"));
    }
    for (field, value, hint) in [
        ("user", &ssh.user, "remove `user` to use ssh's default (your ssh config, else your login name)"),
        (
            "identity_file",
            &ssh.identity_file,
            "remove `identity_file` to use your ssh agent and default keys",
        ),
        ("known_hosts", &ssh.known_hosts, "remove `known_hosts` to use ~/.ssh/known_hosts"),
    ] {
        let Some(value) = value else { continue };
        if value.trim().is_empty() {
            issues.push(Issue::at(at(field), format!("the ssh `{field}` must not be empty")).hint(hint));
        } else if value.chars().any(char::is_control) {
            issues
                .push(Issue::at(at(field), format!("the ssh `{field}` must not contain control characters")));
        }
    }
    if let Some(host) = &ssh.host {
        if host.trim().is_empty() {
            issues.push(
                Issue::at(at("host"), "the ssh `host` must not be empty").hint(
                    "remove `host` to connect to `{address}` (else `{id}`), or give e.g. `{id}.internal`",
                ),
            );
        } else if let Err(e) = template::pieces(host) {
            let mut issue = Issue::at(at("host"), e.to_string());
            if let Some(hint) = e.hint() {
                issue = issue.hint(hint);
            }
            issues.push(issue);
        }
    }
    at_most(ssh.connect_timeout, bound::TIMEOUT, at("connect_timeout"), issues);
    at_most(ssh.control_persist, bound::LONG, at("control_persist"), issues);
    if ssh.connect_timeout.is_some_and(|t| t.std().is_zero()) {
        issues.push(Issue::at(at("connect_timeout"), "the ssh connect timeout must be longer than 0s"));
    }
    if ssh.control_persist.is_some_and(|t| t.std().is_zero()) {
        issues.push(
            Issue::at(at("control_persist"), "`control_persist` must be longer than 0s")
                .hint("ssh would keep an idle shared connection open forever at 0; give e.g. 60s"),
        );
    }
}

/// Checks the placeholders of every element of an argv template.
pub(super) fn check_argv(argv: &[String], base: &[Seg], issues: &mut Vec<Issue>) {
    for (i, el) in argv.iter().enumerate() {
        if let Err(e) = template::pieces(el) {
            let mut p = base.to_vec();
            p.push(Seg::Index(i));
            let mut issue = Issue::at(p, e.to_string());
            if let Some(hint) = e.hint() {
                issue = issue.hint(hint);
            }
            issues.push(issue);
        }
    }
}
