//! The SDK client per region: timeouts, retries, credentials resolved once, every HTTP attempt counted,
//! and AWS errors sorted into configuration problems and action failures.

use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::*;

/// Error codes that mean the credentials themselves were refused.
pub(super) const CREDENTIAL_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "OptInRequired",
];

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
pub(super) enum Failure {
    /// No credentials, or credentials AWS refused.
    Credentials(String),
    /// The endpoint could not be reached (connect error, timeout).
    Unreachable { endpoint: String, reason: String },
    /// EC2 answered with an error (`code` when it gave one).
    Api { code: Option<String>, text: String },
}

impl Failure {
    pub(super) fn action(self) -> ActionError {
        match self {
            Failure::Credentials(reason) => ActionError(format!("no usable AWS credentials: {reason}")),
            Failure::Unreachable { endpoint, reason } => {
                ActionError(format!("cannot reach {endpoint}: {reason}"))
            }
            Failure::Api { text, .. } => ActionError(text),
        }
    }

    pub(super) fn target(self, target: &str, region: &str) -> TargetError {
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

    pub(super) fn code(&self) -> Option<&str> {
        match self {
            Failure::Api { code, .. } => code.as_deref(),
            Failure::Credentials(_) | Failure::Unreachable { .. } => None,
        }
    }
}

/// True when a [`CredentialsError`] is somewhere in `err`'s source chain.
pub(super) fn caused_by_credentials(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// An error and its sources (the SDK's trailing debug dump, that [`DisplayErrorContext`] adds, goes to the
/// debug log instead).
pub(super) use simian_monkeys::error::chain;

/// The SDK's HTTP client: HTTPS through rustls with ring (the crypto provider reqwest uses too, so the binary
/// carries one TLS stack), the platform's root certificates, plain HTTP for a local `endpoint_url`. One per
/// process, so every region's client shares its connection pool.
pub fn https_client() -> SharedHttpClient {
    static CLIENT: std::sync::OnceLock<SharedHttpClient> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
                .build_https()
        })
        .clone()
}

impl Ec2Target {
    /// Where calls for `region` go, for messages.
    pub(super) fn endpoint(&self, region: &str) -> String {
        self.endpoint_url.clone().unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"))
    }

    /// The client for `region`, created (and its credentials resolved once) on first use.
    pub(super) async fn client(&self, region: &str) -> Result<Client, Failure> {
        let cell = {
            let mut clients = self.shared.clients.lock().unwrap_or_else(|e| e.into_inner());
            clients.entry(region.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.make_client(region)).await.cloned()
    }

    pub(super) async fn make_client(&self, region: &str) -> Result<Client, Failure> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
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
    pub(super) fn failure<E, R>(&self, op: &str, region: &str, err: &SdkError<E, R>) -> Failure
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
    pub(super) fn region_of(&self, inst: &Instance) -> Result<String, ActionError> {
        match (&inst.region, self.regions.as_slice()) {
            (Some(region), _) => Ok(region.clone()),
            (None, [only]) => Ok(only.clone()),
            (None, _) => Err(ActionError(format!(
                "instance `{}` has no region and target `{}` lists several",
                inst.id, self.name
            ))),
        }
    }

    /// `reason` followed by where credentials were looked for.
    pub(super) fn credentials_hint(&self, reason: &str) -> String {
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
