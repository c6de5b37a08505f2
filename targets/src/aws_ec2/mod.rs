//! The `aws_ec2` target: running, opted-in EC2 instances found with DescribeInstances, terminated with
//! TerminateInstances and isolated by swapping in an empty (deny-all) security group.
//!
//! SDK clients are created lazily, one per region, on first use (so building the target stays synchronous), from
//! the SDK's default credential chain (environment, shared profile — `profile:` picks one, SSO, assume-role,
//! instance metadata) with bounded timeouts and the SDK's standard retries. Every HTTP attempt to EC2 is counted
//! ([`Ec2Target::api_calls`]).

mod client;
mod inventory;
mod isolation;
mod terminate;

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
pub use client::https_client;
use client::Failure;

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
}
