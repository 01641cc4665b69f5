//! Shared AWS SDK plumbing for every AWS backend: one `SdkConfig` (region, credentials chain,
//! `--endpoint-url`), one client constructor per service, error classification, the caller's
//! STS identity and a call counter.
//!
//! # Why one place
//!
//! The store, catalog, engine and approval queues must agree on region, credentials and endpoint:
//! a controller pointed at an emulator with `--endpoint-url` must send *every* call there, never
//! some to the emulator and some to the real cloud. So clients are built only here, from one
//! loaded [`SdkConfig`], and the endpoint override is applied once.
//!
//! Credentials come from the standard chain (environment, shared profile, web identity, ECS task
//! role, instance metadata). Nothing in sqlctl reads or stores a secret itself.
//!
//! # Why a call counter
//!
//! AWS bills per call and Athena/DynamoDB throttle per call, so "calls per request" is a design
//! metric (target ≤ 20 for a request through approval). Every client carries an interceptor that
//! counts each HTTP attempt by service and operation, readable in-process with [`call_counts`] and
//! logged at debug level under the `sqlctl::aws::call` target, so a test can count the calls of a
//! separate controller process from its log.
//!
//! # Without the `aws` feature
//!
//! The SDK crates are optional (feature `aws`, on in the release binary and the image). What
//! needs no SDK stays in every build — the settings, `s3://` locations, error classes, principal
//! names — and [`unavailable`] is the one refusal everything AWS gives in a build without them.

#[cfg(feature = "aws")]
use std::collections::BTreeMap;
#[cfg(feature = "aws")]
use std::sync::{Arc, Mutex, OnceLock};

#[cfg(feature = "aws")]
use aws_config::{BehaviorVersion, SdkConfig};
#[cfg(feature = "aws")]
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
#[cfg(feature = "aws")]
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
/// The SDK's error type; every service crate re-exports this one definition.
#[cfg(feature = "aws")]
pub use aws_sdk_dynamodb::error::SdkError;

/// Is AWS support compiled in (the `aws` feature)?
pub const SUPPORTED: bool = cfg!(feature = "aws");

/// The refusal of `what` (e.g. `--backend aws`) in a build without the `aws` feature: a usage or
/// configuration error (exit 2) that says how to get a build with it.
pub fn unavailable(what: &str) -> anyhow::Error {
    crate::exit::Exit::usage(format!(
        "{what} needs AWS support, and this sqlctl was built without it (the `aws` cargo feature); \
         rebuild with `cargo install --locked --features aws …` (or `cargo run --profile quick --features aws -- …`), \
         or use the release binary or the container image, which include it"
    ))
}

/// Region used when neither flags, environment nor profile name one and an endpoint override is
/// set (emulators accept any region).
pub const EMULATOR_REGION: &str = "us-east-1";

/// Where AWS calls go and as which region: resolved from flags, `AWS_*` variables and profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Sends every client to this URL (moto, LocalStack, a test server). `AWS_ENDPOINT_URL` works
    /// too (the SDK reads it); the flag wins.
    pub endpoint_url: Option<String>,
    /// Region override; the standard chain (`AWS_REGION`, profile) otherwise.
    pub region: Option<String>,
}

#[cfg(feature = "aws")]
/// Loads the SDK configuration once. With an endpoint override and no region anywhere, the
/// emulator region is used instead of asking instance metadata (which an emulator never needs).
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    let endpoint =
        settings.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|s| !s.is_empty()));
    if let Some(url) = &endpoint {
        loader = loader.endpoint_url(url.clone());
    }
    let region = settings.region.clone().or_else(env_region);
    match (region, &endpoint) {
        (Some(r), _) => loader = loader.region(aws_config::Region::new(r)),
        (None, Some(_)) => loader = loader.region(aws_config::Region::new(EMULATOR_REGION)),
        (None, None) => {}
    }
    loader.load().await
}

#[cfg(feature = "aws")]
fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

#[cfg(feature = "aws")]
/// Is an endpoint override in force (emulator or test server)?
pub fn has_endpoint_override(conf: &SdkConfig) -> bool {
    conf.endpoint_url().is_some()
}

/// The service-specific endpoint override, `AWS_ENDPOINT_URL_<SERVICE>` (e.g.
/// `AWS_ENDPOINT_URL_ATHENA`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`). As the AWS SDKs document, it
/// wins over the global `AWS_ENDPOINT_URL` (and so over `--endpoint-url`, which sets the same
/// global override): one service can be sent to a test server while the rest go elsewhere.
pub fn service_endpoint(env_suffix: &str) -> Option<String> {
    std::env::var(format!("AWS_ENDPOINT_URL_{env_suffix}")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(feature = "aws")]
macro_rules! client {
    ($(#[$doc:meta])* $fn:ident, $krate:ident, $counter:literal, $env:literal) => {
        $(#[$doc])*
        pub fn $fn(conf: &SdkConfig) -> $krate::Client {
            let mut b = $krate::config::Builder::from(conf).interceptor(Counter($counter));
            if let Some(url) = service_endpoint($env) {
                b = b.endpoint_url(url);
            }
            $krate::Client::from_conf(b.build())
        }
    };
}

#[cfg(feature = "aws")]
client!(dynamodb, aws_sdk_dynamodb, "dynamodb", "DYNAMODB");
#[cfg(feature = "aws")]
client!(sqs, aws_sdk_sqs, "sqs", "SQS");
#[cfg(feature = "aws")]
client!(glue, aws_sdk_glue, "glue", "GLUE");
#[cfg(feature = "aws")]
client!(athena, aws_sdk_athena, "athena", "ATHENA");
#[cfg(feature = "aws")]
client!(sts, aws_sdk_sts, "sts", "STS");
#[cfg(feature = "aws")]
client!(
    /// Secrets Manager: where the Google Chat webhook URL may live (`SQLCTL_GCHAT_WEBHOOK_SECRET_ARN`).
    secretsmanager,
    aws_sdk_secretsmanager,
    "secretsmanager",
    "SECRETS_MANAGER"
);

#[cfg(feature = "aws")]
/// S3 with path-style addressing under an endpoint override (emulators on 127.0.0.1 have no
/// per-bucket host names).
pub fn s3(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let own = service_endpoint("S3");
    let mut b = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(has_endpoint_override(conf) || own.is_some())
        .interceptor(Counter("s3"));
    if let Some(url) = own {
        b = b.endpoint_url(url);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

// ---------------------------------------------------------------------------------------------
// Call counting

#[cfg(feature = "aws")]
type Counts = BTreeMap<(String, String), u64>;

#[cfg(feature = "aws")]
fn counts() -> &'static Mutex<Counts> {
    static COUNTS: OnceLock<Mutex<Counts>> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

#[cfg(feature = "aws")]
/// Calls (HTTP attempts, retries included) made by this process so far, by (service, operation).
pub fn call_counts() -> BTreeMap<(String, String), u64> {
    counts().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(feature = "aws")]
/// Calls so far per service.
pub fn calls_by_service() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for ((svc, _), n) in call_counts() {
        *m.entry(svc).or_insert(0) += n;
    }
    m
}

#[cfg(feature = "aws")]
/// Counts every attempt a client transmits. The operation is read from `X-Amz-Target` (JSON
/// protocols: DynamoDB, SQS, Glue, Athena), else the query `Action` (STS), else the HTTP method
/// (S3's REST protocol).
#[derive(Debug, Clone, Copy)]
struct Counter(&'static str);

#[cfg(feature = "aws")]
impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "sqlctl-call-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let req = context.request();
        let op = match req.headers().get("x-amz-target") {
            Some(t) => t.rsplit('.').next().unwrap_or(t).to_string(),
            None => req
                .body()
                .bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.split('&').find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string))
                .unwrap_or_else(|| req.method().to_string()),
        };
        tracing::debug!(target: "sqlctl::aws::call", service = self.0, operation = %op, "aws call");
        *counts().lock().unwrap_or_else(|p| p.into_inner()).entry((self.0.to_string(), op)).or_insert(0) += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What a failed AWS call means for the caller, independent of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection failures: retry with backoff.
    Transient,
    /// The caller lacks permission: a clear, permanent condition.
    AccessDenied,
    /// The named resource (table, queue, database, bucket) does not exist.
    NotFound,
    /// Anything else the service refused (validation, conflicts the caller handles itself).
    Other,
}

/// Error codes AWS services use for throttling and server-side trouble.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "InternalServerError",
    "InternalServerException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    "LimitExceededException",
];

#[cfg(feature = "aws")]
/// Classifies an SDK error by its kind and service error code.
pub fn classify<E, R>(err: &SdkError<E, R>) -> ErrorClass
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ErrorClass::Transient,
        SdkError::ConstructionFailure(_) => ErrorClass::Other,
        SdkError::ServiceError(se) => classify_code(se.err().code()),
        _ => ErrorClass::Other,
    }
}

/// Classifies a service error code.
pub fn classify_code(code: Option<&str>) -> ErrorClass {
    let Some(code) = code else { return ErrorClass::Transient };
    if TRANSIENT_CODES.contains(&code) {
        return ErrorClass::Transient;
    }
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken" => ErrorClass::AccessDenied,
        "ResourceNotFoundException"
        | "EntityNotFoundException"
        | "NoSuchBucket"
        | "NoSuchKey"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "QueueDoesNotExist"
        | "NotFound" => ErrorClass::NotFound,
        _ => ErrorClass::Other,
    }
}

#[cfg(feature = "aws")]
/// One line for logs and conditions: `Code: message` when the service said something, the
/// error chain otherwise (connection refused, timeouts).
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let SdkError::ServiceError(se) = err {
        let e = se.err();
        return match (e.code(), e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            _ => aws_smithy_types::error::display::DisplayErrorContext(err).to_string(),
        };
    }
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

// ---------------------------------------------------------------------------------------------
// Identity

/// Who AWS says the caller is (STS `GetCallerIdentity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

impl CallerIdentity {
    /// The short name a policy lists approvers by: the IAM user name, or the session name of an
    /// assumed role (SSO and federated sessions carry the person's name there).
    pub fn name(&self) -> String {
        principal_name(&self.arn)
    }
}

/// `arn:aws:iam::1:user/path/alice` → `alice`; `arn:aws:sts::1:assumed-role/Role/bob` → `bob`;
/// `arn:aws:iam::1:root` → `root`. Anything unparsable is returned whole.
pub fn principal_name(arn: &str) -> String {
    crate::identity::short_name(arn)
}

/// Does `claimed` (a `--as` value or a policy entry) name `who`? The full ARN, or its short name,
/// compared under the identity rule ([`crate::identity::same`]).
pub fn names_identity(who: &CallerIdentity, claimed: &str) -> bool {
    use crate::identity::same;
    same(claimed, &who.arn) || same(claimed, &who.name())
}

#[cfg(feature = "aws")]
/// Asks STS who the caller is.
pub async fn caller_identity(conf: &SdkConfig) -> anyhow::Result<CallerIdentity> {
    let out = sts(conf)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("asking AWS STS who you are (GetCallerIdentity): {}", describe(&e)))?;
    Ok(CallerIdentity {
        account: out.account().unwrap_or_default().to_string(),
        arn: out.arn().unwrap_or_default().to_string(),
        user_id: out.user_id().unwrap_or_default().to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// S3 locations

/// `s3://bucket/prefix` split into bucket and key (prefix without leading or trailing `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    pub fn parse(s: &str) -> Result<S3Uri, String> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| format!("{s:?} is not an s3://bucket/prefix URI"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s:?} names no bucket"));
        }
        Ok(S3Uri { bucket: bucket.to_string(), key: key.trim_matches('/').to_string() })
    }

    /// `prefix/child` (no double slashes).
    pub fn join(&self, child: &str) -> S3Uri {
        let child = child.trim_matches('/');
        let key = if self.key.is_empty() { child.to_string() } else { format!("{}/{child}", self.key) };
        S3Uri { bucket: self.bucket.clone(), key }
    }
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "s3://{}/", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.key)
        }
    }
}

#[cfg(feature = "aws")]
/// A cheaply cloneable bundle of the loaded config, shared by the backends of one process.
#[derive(Clone, Debug)]
pub struct Aws {
    pub conf: Arc<SdkConfig>,
}

#[cfg(feature = "aws")]
impl Aws {
    pub async fn load(settings: &AwsSettings) -> Aws {
        Aws { conf: Arc::new(load(settings).await) }
    }
}

/// Test support: clients for the moto server the test script starts.
#[cfg(all(test, feature = "aws"))]
pub(crate) mod testing {
    use super::*;

    /// The moto server's URL (`SQLCTL_TEST_MOTO_URL`, set by `scripts/test`). Without it the AWS
    /// tests fail loudly rather than pass without testing anything; `SQLCTL_SKIP_AWS_TESTS=1`
    /// skips them explicitly.
    pub fn moto_url() -> Option<String> {
        if let Ok(url) = std::env::var("SQLCTL_TEST_MOTO_URL")
            && !url.is_empty()
        {
            return Some(url);
        }
        if std::env::var("SQLCTL_SKIP_AWS_TESTS").as_deref() == Ok("1") {
            eprintln!("skipping: SQLCTL_SKIP_AWS_TESTS=1");
            return None;
        }
        panic!(
            "SQLCTL_TEST_MOTO_URL is not set: run the AWS tests through scripts/test (it starts moto), or set SQLCTL_SKIP_AWS_TESTS=1 to skip them explicitly"
        );
    }

    /// An SDK config for `url` with static test credentials (no credential chain, no network
    /// beyond `url`).
    pub async fn config_for(url: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_config::Region::new(EMULATOR_REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "sqlctl-tests",
            ))
            .load()
            .await
    }

    /// A unique resource name for one test.
    pub fn unique(prefix: &str) -> String {
        format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_names_come_from_the_arn_resource() {
        assert_eq!(principal_name("arn:aws:iam::123456789012:user/alice"), "alice");
        assert_eq!(principal_name("arn:aws:iam::123456789012:user/team/bob"), "bob");
        assert_eq!(
            principal_name("arn:aws:sts::123456789012:assumed-role/Approvers/carol@example.com"),
            "carol@example.com"
        );
        assert_eq!(principal_name("arn:aws:iam::123456789012:root"), "root");
        assert_eq!(principal_name("not-an-arn"), "not-an-arn");
        let who =
            CallerIdentity { account: "1".into(), arn: "arn:aws:iam::1:user/alice".into(), user_id: "AID".into() };
        assert!(names_identity(&who, "alice"));
        assert!(names_identity(&who, "arn:aws:iam::1:user/alice"));
        assert!(!names_identity(&who, "mallory"));
    }

    #[test]
    fn s3_uris_parse_and_join() {
        let u = S3Uri::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("bucket", "some/prefix"));
        assert_eq!(u.join("/a/b").to_string(), "s3://bucket/some/prefix/a/b");
        let root = S3Uri::parse("s3://bucket").unwrap();
        assert_eq!(root.join("x").to_string(), "s3://bucket/x");
        assert_eq!(root.to_string(), "s3://bucket/");
        assert!(S3Uri::parse("https://bucket/x").is_err());
        assert!(S3Uri::parse("s3:///x").is_err());
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(classify_code(Some("ThrottlingException")), ErrorClass::Transient);
        assert_eq!(classify_code(Some("TooManyRequestsException")), ErrorClass::Transient);
        assert_eq!(classify_code(Some("AccessDeniedException")), ErrorClass::AccessDenied);
        assert_eq!(classify_code(Some("EntityNotFoundException")), ErrorClass::NotFound);
        assert_eq!(classify_code(Some("ValidationException")), ErrorClass::Other);
        assert_eq!(classify_code(None), ErrorClass::Transient);
    }
}
