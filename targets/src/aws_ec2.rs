//! The `aws_ec2` target: running, opted-in EC2 instances found with DescribeInstances, terminated with
//! TerminateInstances and isolated by swapping in an empty (deny-all) security group.
//!
//! SDK clients are created lazily, one per region, on first use (so building the target stays synchronous), from
//! the SDK's default credential chain (environment, shared profile — `profile:` picks one, SSO, assume-role,
//! instance metadata) with bounded timeouts and the SDK's standard retries. Every HTTP attempt to EC2 is counted
//! ([`Ec2Target::api_calls`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::config::{ProvideCredentials, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, Instance as Ec2Instance, IpPermission, ResourceType, SecurityGroup, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;
use simian_config::{AwsEc2Target, OptIn};
use simian_monkeys::{ActionError, Instance, Undo};
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use crate::TargetError;

/// Tag simian puts on the isolation group it creates; it never uses a same-named group without it.
pub const MANAGED_TAG: &str = "simian:managed";
/// Description of the isolation group simian creates.
pub const ISOLATION_DESCRIPTION: &str = "simian deny-all isolation group: no ingress, no egress rules";
/// Time to establish a connection (TCP and TLS) to EC2, per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time to wait for response bytes, per attempt.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound on one API operation, all attempts and backoffs included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per operation (the SDK's standard retry mode: throttling, 5xx and I/O errors are retried).
pub const MAX_ATTEMPTS: u32 = 3;
/// Cap on the backoff between attempts; with [`CONNECT_TIMEOUT`] it bounds an unreachable endpoint to < 10 s.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Upper bound on resolving credentials the first time a region is used.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(6);
/// DescribeInstances page size (moto re-filters everything per page, so large pages are cheaper).
pub const PAGE_SIZE: i32 = 1000;

/// Error codes that mean the credentials themselves were refused.
const CREDENTIAL_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "OptInRequired",
];

/// A `type: aws_ec2` target at runtime. Clones share SDK clients and the API call counter.
#[derive(Clone)]
pub struct Ec2Target {
    name: String,
    regions: Vec<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    group_by: String,
    opt_in: OptIn,
    isolation_group: String,
    terminate_batch: usize,
    shared: Arc<Shared>,
}

/// What clones of a target share.
#[derive(Default)]
struct Shared {
    clients: Mutex<BTreeMap<String, Arc<OnceCell<Client>>>>,
    api_calls: Arc<AtomicU64>,
}

impl fmt::Debug for Ec2Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Target")
            .field("name", &self.name)
            .field("regions", &self.regions)
            .field("endpoint_url", &self.endpoint_url)
            .field("profile", &self.profile)
            .field("group_by", &self.group_by)
            .field("opt_in", &self.opt_in)
            .field("isolation_group", &self.isolation_group)
            .field("terminate_batch", &self.terminate_batch)
            .field("api_calls", &self.api_calls())
            .finish()
    }
}

/// Equal when configured alike (clients and counters are not compared).
impl PartialEq for Ec2Target {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.regions == other.regions
            && self.endpoint_url == other.endpoint_url
            && self.profile == other.profile
            && self.group_by == other.group_by
            && self.opt_in == other.opt_in
            && self.isolation_group == other.isolation_group
            && self.terminate_batch == other.terminate_batch
    }
}

impl Eq for Ec2Target {}

/// Counts every HTTP attempt (retries included) a client makes.
#[derive(Debug)]
struct CountAttempts(Arc<AtomicU64>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "simian-count-attempts"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Why a call failed, sorted by what the user has to fix.
#[derive(Debug, Clone)]
enum Failure {
    /// No credentials, or credentials AWS refused.
    Credentials(String),
    /// The endpoint could not be reached (connect error, timeout).
    Unreachable { endpoint: String, reason: String },
    /// EC2 answered with an error (`code` when it gave one).
    Api { code: Option<String>, text: String },
}

impl Failure {
    fn action(self) -> ActionError {
        match self {
            Failure::Credentials(reason) => ActionError(format!("no usable AWS credentials: {reason}")),
            Failure::Unreachable { endpoint, reason } => {
                ActionError(format!("cannot reach {endpoint}: {reason}"))
            }
            Failure::Api { text, .. } => ActionError(text),
        }
    }

    fn target(self, target: &str, region: &str) -> TargetError {
        let target = target.to_string();
        match self {
            Failure::Credentials(reason) => TargetError::Credentials { target, reason },
            Failure::Unreachable { endpoint, reason } => {
                TargetError::Unreachable { target, endpoint, reason }
            }
            Failure::Api { text, .. } => {
                TargetError::Inventory { target, reason: format!("in {region}: {text}") }
            }
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            Failure::Api { code, .. } => code.as_deref(),
            Failure::Credentials(_) | Failure::Unreachable { .. } => None,
        }
    }
}

/// True when a [`CredentialsError`] is somewhere in `err`'s source chain.
fn caused_by_credentials(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl Ec2Target {
    /// Builds the target from its configuration and the opt-in rule in force for it (its own, else the
    /// policy's). No I/O: clients are created on first use.
    pub fn from_config(config: &AwsEc2Target, opt_in: &OptIn) -> Self {
        Ec2Target {
            name: config.name.clone(),
            regions: config.regions.clone(),
            endpoint_url: config.endpoint_url.clone(),
            profile: config.profile.clone(),
            group_by: config.group_by.clone(),
            opt_in: opt_in.clone(),
            isolation_group: config.isolation_group.clone(),
            terminate_batch: (config.terminate_batch as usize).clamp(1, 1000),
            shared: Arc::new(Shared::default()),
        }
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The regions it lists.
    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    /// The opt-in rule its inventory filters on.
    pub fn opt_in(&self) -> &OptIn {
        &self.opt_in
    }

    /// HTTP attempts made to EC2 so far (every retry counts), over all clones of this target.
    pub fn api_calls(&self) -> u64 {
        self.shared.api_calls.load(Ordering::Relaxed)
    }

    /// Where calls for `region` go, for messages.
    fn endpoint(&self, region: &str) -> String {
        self.endpoint_url.clone().unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"))
    }

    /// The client for `region`, created (and its credentials resolved once) on first use.
    async fn client(&self, region: &str) -> Result<Client, Failure> {
        let cell = {
            let mut clients = self.shared.clients.lock().unwrap_or_else(|e| e.into_inner());
            clients.entry(region.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.make_client(region)).await.cloned()
    }

    async fn make_client(&self, region: &str) -> Result<Client, Failure> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .retry_config(
                RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS).with_max_backoff(MAX_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        // Resolve credentials once up front, so that "no credentials" is told apart from an unreachable endpoint
        // and never waits longer than CREDENTIALS_TIMEOUT (e.g. on an instance metadata service that is not there).
        let Some(provider) = sdk.credentials_provider() else {
            return Err(Failure::Credentials("no credential provider is configured".to_string()));
        };
        match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(target_name = %self.name, error = %DisplayErrorContext(&e), "cannot resolve credentials");
                return Err(Failure::Credentials(self.credentials_hint(&chain(&e))));
            }
            Err(_) => {
                return Err(Failure::Credentials(self.credentials_hint(&format!(
                    "resolving credentials took longer than {CREDENTIALS_TIMEOUT:?}"
                ))))
            }
        }
        let config = aws_sdk_ec2::config::Builder::from(&sdk)
            .interceptor(CountAttempts(self.shared.api_calls.clone()))
            .build();
        Ok(Client::from_conf(config))
    }

    /// Sorts an SDK error of operation `op` in `region` into a [`Failure`].
    fn failure<E, R>(&self, op: &str, region: &str, err: &SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + 'static,
    {
        debug!(target_name = %self.name, region = %region, operation = %op, error = %DisplayErrorContext(err), "EC2 call failed");
        let shown = chain(err);
        if caused_by_credentials(err) {
            return Failure::Credentials(format!("{op}: {}", self.credentials_hint(&shown)));
        }
        match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                Failure::Unreachable { endpoint: self.endpoint(region), reason: format!("{op}: {shown}") }
            }
            _ => match err.code() {
                Some(code) if CREDENTIAL_CODES.contains(&code) => {
                    Failure::Credentials(format!("{op}: {code}: {}", err.message().unwrap_or("refused")))
                }
                Some(code) => Failure::Api {
                    code: Some(code.to_string()),
                    text: format!("{op} failed: {code}: {}", err.message().unwrap_or("(no message)")),
                },
                None => Failure::Api { code: None, text: format!("{op} failed: {shown}") },
            },
        }
    }

    /// The region an instance lives in: its own, else the target's only region.
    fn region_of(&self, inst: &Instance) -> Result<String, ActionError> {
        match (&inst.region, self.regions.as_slice()) {
            (Some(region), _) => Ok(region.clone()),
            (None, [only]) => Ok(only.clone()),
            (None, _) => Err(ActionError(format!(
                "instance `{}` has no region and target `{}` lists several",
                inst.id, self.name
            ))),
        }
    }

    /// Running instances carrying the opt-in tag, in every region of the target.
    pub async fn inventory(&self) -> Result<Vec<Instance>, TargetError> {
        let mut all = Vec::new();
        for region in &self.regions {
            let client = self.client(region).await.map_err(|f| f.target(&self.name, region))?;
            let mut pages = client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{}", self.opt_in.tag))
                        .values(&self.opt_in.value)
                        .build(),
                )
                .filters(Filter::builder().name("instance-state-name").values("running").build())
                .max_results(PAGE_SIZE)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| self.failure("DescribeInstances", region, &e).target(&self.name, region))?;
                for reservation in page.reservations() {
                    all.extend(reservation.instances().iter().filter_map(|i| self.instance(region, i)));
                }
            }
        }
        Ok(all)
    }

    /// Our view of an EC2 instance (`None` without an id).
    fn instance(&self, region: &str, i: &Ec2Instance) -> Option<Instance> {
        let tags: BTreeMap<String, String> = i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect();
        Some(Instance {
            target: self.name.clone(),
            id: i.instance_id()?.to_string(),
            address: i.private_ip_address().map(str::to_string),
            group: tags.get(&self.group_by).cloned().unwrap_or_default(),
            zone: i.placement().and_then(|p| p.availability_zone()).map(str::to_string),
            region: Some(region.to_string()),
            url: None,
            tags,
        })
    }

    /// Terminates one instance.
    pub async fn terminate(&self, inst: &Instance) -> Result<String, ActionError> {
        self.terminate_many(std::slice::from_ref(inst))
            .await
            .pop()
            .unwrap_or_else(|| Err(ActionError("no result".into())))
    }

    /// Terminates instances with TerminateInstances, `terminate_batch` per call and region; one result per
    /// instance, in order. When a batch fails because of an unknown instance id, its instances are retried one
    /// by one so that the others are still terminated.
    pub async fn terminate_many(&self, insts: &[Instance]) -> Vec<Result<String, ActionError>> {
        let mut out: Vec<Option<Result<String, ActionError>>> = vec![None; insts.len()];
        let mut by_region: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, inst) in insts.iter().enumerate() {
            match self.region_of(inst) {
                Ok(region) => match by_region.iter_mut().find(|(r, _)| *r == region) {
                    Some((_, idxs)) => idxs.push(i),
                    None => by_region.push((region, vec![i])),
                },
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        for (region, idxs) in by_region {
            let client = match self.client(&region).await {
                Ok(c) => c,
                Err(f) => {
                    for &i in &idxs {
                        out[i] = Some(Err(f.clone().action()));
                    }
                    continue;
                }
            };
            for chunk in idxs.chunks(self.terminate_batch) {
                let ids: Vec<String> = chunk.iter().map(|&i| insts[i].id.clone()).collect();
                let results = self.terminate_ids(&client, &region, &ids).await;
                for (&i, result) in chunk.iter().zip(results) {
                    if result.is_ok() {
                        let inst = &insts[i];
                        info!(target_name = %self.name, instance = %inst.id, group = %inst.group, region = %region, "terminated instance");
                    }
                    out[i] = Some(result);
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(ActionError("not attempted".into())))).collect()
    }

    async fn terminate_ids(
        &self,
        client: &Client,
        region: &str,
        ids: &[String],
    ) -> Vec<Result<String, ActionError>> {
        match self.terminate_call(client, region, ids).await {
            Ok(results) => results,
            Err(f) if ids.len() > 1 && f.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => {
                warn!(target_name = %self.name, region = %region, error = %f.clone().action(), "a batch failed on an instance id; terminating one by one");
                let mut results = Vec::with_capacity(ids.len());
                for id in ids {
                    results.push(match self.terminate_call(client, region, std::slice::from_ref(id)).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err(ActionError("no result".into()))),
                        Err(f) => Err(f.action()),
                    });
                }
                results
            }
            Err(f) => ids.iter().map(|_| Err(f.clone().action())).collect(),
        }
    }

    async fn terminate_call(
        &self,
        client: &Client,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<Result<String, ActionError>>, Failure> {
        let out = client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| self.failure("TerminateInstances", region, &e))?;
        let changes = out.terminating_instances();
        Ok(ids
            .iter()
            .map(|id| {
                let change =
                    changes.iter().find(|c| c.instance_id() == Some(id.as_str())).ok_or_else(|| {
                        ActionError(format!("TerminateInstances did not report instance `{id}`"))
                    })?;
                let state = |s: Option<&aws_sdk_ec2::types::InstanceState>| {
                    s.and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_else(|| "?".into())
                };
                Ok(format!(
                    "TerminateInstances in {region}: {} → {}",
                    state(change.previous_state()),
                    state(change.current_state())
                ))
            })
            .collect())
    }

    /// Reads the instance's security groups and finds (or creates) the deny-all isolation group of its VPC.
    pub async fn prepare_isolation(&self, inst: &Instance) -> Result<Undo, ActionError> {
        let region = self.region_of(inst)?;
        let client = self.client(&region).await.map_err(Failure::action)?;
        let out = client
            .describe_instances()
            .instance_ids(&inst.id)
            .send()
            .await
            .map_err(|e| self.failure("DescribeInstances", &region, &e).action())?;
        let Some(ec2) =
            out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(&inst.id))
        else {
            return Err(ActionError(format!("instance `{}` not found in {region}", inst.id)));
        };
        if let Some(state) = ec2.state().and_then(|s| s.name()) {
            if matches!(state.as_str(), "shutting-down" | "terminated") {
                return Err(ActionError(format!("instance `{}` is {}", inst.id, state.as_str())));
            }
        }
        let Some(vpc) = ec2.vpc_id() else {
            return Err(ActionError(format!("instance `{}` is not in a VPC", inst.id)));
        };
        if ec2.network_interfaces().len() > 1 {
            return Err(ActionError(format!(
                "instance `{}` has {} network interfaces; isolation swaps only the instance's (primary interface's) \
                 security groups, so it would stay reachable: refusing",
                inst.id,
                ec2.network_interfaces().len()
            )));
        }
        let isolation_group = self.isolation_group_id(&client, &region, vpc).await?;
        let groups: Vec<String> = ec2
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .filter(|g| *g != isolation_group)
            .map(str::to_string)
            .collect();
        if groups.is_empty() {
            return Err(ActionError(format!(
                "instance `{}` has no security group but the isolation group `{isolation_group}`: already isolated",
                inst.id
            )));
        }
        Ok(Undo::Ec2Groups { region, instance_id: inst.id.clone(), groups, isolation_group })
    }

    /// The id of the isolation group in `vpc`, created (tagged, with no rules) when missing.
    async fn isolation_group_id(
        &self,
        client: &Client,
        region: &str,
        vpc: &str,
    ) -> Result<String, ActionError> {
        if let Some(sg) = self.find_isolation_group(client, region, vpc).await? {
            return self.ensure_empty(client, region, &sg).await;
        }
        let created = client
            .create_security_group()
            .group_name(&self.isolation_group)
            .description(ISOLATION_DESCRIPTION)
            .vpc_id(vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .tags(Tag::builder().key(MANAGED_TAG).value("true").build())
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(out) => {
                let id = out.group_id().unwrap_or_default().to_string();
                info!(target_name = %self.name, region = %region, vpc = %vpc, group = %id, "created isolation security group");
            }
            // Someone created it between our look and our create: use theirs (checked below).
            Err(e) if e.code() == Some("InvalidGroup.Duplicate") => {}
            Err(e) => return Err(self.failure("CreateSecurityGroup", region, &e).action()),
        }
        match self.find_isolation_group(client, region, vpc).await? {
            Some(sg) => self.ensure_empty(client, region, &sg).await,
            None => Err(ActionError(format!(
                "created security group `{}` in {vpc} but cannot find it again",
                self.isolation_group
            ))),
        }
    }

    /// The isolation group of `vpc`, if it exists; an untagged group of that name is an error, never used.
    async fn find_isolation_group(
        &self,
        client: &Client,
        region: &str,
        vpc: &str,
    ) -> Result<Option<SecurityGroup>, ActionError> {
        let out = client
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values(&self.isolation_group).build())
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .map_err(|e| self.failure("DescribeSecurityGroups", region, &e).action())?;
        let Some(sg) = out.security_groups().iter().find(|g| g.group_name() == Some(&self.isolation_group))
        else {
            return Ok(None);
        };
        let managed = sg.tags().iter().any(|t| t.key() == Some(MANAGED_TAG) && t.value() == Some("true"));
        if !managed {
            return Err(ActionError(format!(
                "security group `{}` ({}) in {vpc} is not tagged {MANAGED_TAG}=true; simian isolates only with a group \
                 it created: delete or rename it, or set `isolation_group`",
                self.isolation_group,
                sg.group_id().unwrap_or_default()
            )));
        }
        Ok(Some(sg.clone()))
    }

    /// Revokes every ingress and egress rule of `sg` (a new group comes with an allow-all egress rule); its id.
    async fn ensure_empty(
        &self,
        client: &Client,
        region: &str,
        sg: &SecurityGroup,
    ) -> Result<String, ActionError> {
        let id = sg.group_id().unwrap_or_default().to_string();
        let ingress: Vec<IpPermission> = sg.ip_permissions().to_vec();
        let egress: Vec<IpPermission> = sg.ip_permissions_egress().to_vec();
        if !ingress.is_empty() {
            client
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(ingress))
                .send()
                .await
                .map_err(|e| self.failure("RevokeSecurityGroupIngress", region, &e).action())?;
        }
        if !egress.is_empty() {
            client
                .revoke_security_group_egress()
                .group_id(&id)
                .set_ip_permissions(Some(egress))
                .send()
                .await
                .map_err(|e| self.failure("RevokeSecurityGroupEgress", region, &e).action())?;
        }
        Ok(id)
    }

    /// Replaces the instance's security groups with the isolation group recorded in `undo`.
    pub async fn isolate(&self, inst: &Instance, undo: &Undo) -> Result<String, ActionError> {
        let Undo::Ec2Groups { region, instance_id, groups, isolation_group } = undo else {
            return Err(ActionError(format!(
                "target `{}` cannot isolate with a hosts undo record",
                self.name
            )));
        };
        if *instance_id != inst.id {
            return Err(ActionError(format!(
                "undo record is for instance `{instance_id}`, not `{}`",
                inst.id
            )));
        }
        self.set_groups(region, instance_id, std::slice::from_ref(isolation_group)).await?;
        info!(target_name = %self.name, instance = %inst.id, region = %region, group = %isolation_group, "isolated instance");
        Ok(format!("replaced security groups {} with {isolation_group}", groups.join(", ")))
    }

    /// Puts back the security groups recorded in `undo`; repeating it is harmless.
    pub async fn restore(&self, undo: &Undo) -> Result<String, ActionError> {
        let (region, instance_id, groups, isolation_group) = match undo {
            Undo::Ec2Groups { region, instance_id, groups, isolation_group } => {
                (region, instance_id, groups, isolation_group)
            }
            Undo::HostsCommand { .. } => {
                return Err(ActionError(format!("target `{}` cannot restore a hosts undo record", self.name)))
            }
            Undo::Netem { .. } => {
                return Err(ActionError(format!(
                    "target `{}` (aws_ec2) cannot remove a netem qdisc: it cannot run commands on instances",
                    self.name
                )))
            }
        };
        self.set_groups(region, instance_id, groups).await?;
        info!(target_name = %self.name, instance = %instance_id, region = %region, "restored instance");
        Ok(format!("restored security groups {} (replacing {isolation_group})", groups.join(", ")))
    }

    async fn set_groups(
        &self,
        region: &str,
        instance_id: &str,
        groups: &[String],
    ) -> Result<(), ActionError> {
        let client = self.client(region).await.map_err(Failure::action)?;
        client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_groups(Some(groups.to_vec()))
            .send()
            .await
            .map_err(|e| self.failure("ModifyInstanceAttribute", region, &e).action())?;
        Ok(())
    }
}

/// An error and its sources, `: `-separated, without the SDK's trailing debug dump (that
/// [`DisplayErrorContext`] adds; it goes to the debug log instead).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out
}

impl Ec2Target {
    /// `reason` followed by where credentials were looked for.
    fn credentials_hint(&self, reason: &str) -> String {
        let profile = match &self.profile {
            Some(p) => format!("profile `{p}` (the target's `profile`)"),
            None => "AWS_PROFILE or the `default` profile".to_string(),
        };
        format!(
            "{reason}\n(looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, {profile} of the shared AWS config and \
             credentials files, web identity, ECS and instance metadata)"
        )
    }
}
