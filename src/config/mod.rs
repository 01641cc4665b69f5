//! Resolving configuration into backends: the one place (with `cli`) that names concrete
//! implementations. Flags win over environment variables, which win over defaults.
//!
//! `--backend local` (the default) builds SQLite, the local catalog and DataFusion; `--backend
//! aws` builds DynamoDB, Glue and Athena from one AWS SDK configuration (standard credential
//! chain, `AWS_REGION`, `--endpoint-url` / `AWS_ENDPOINT_URL`), loaded once per process and
//! shared by every client so that an emulator endpoint applies to all of them.

use crate::results::ResultStore;
use crate::results::local::LocalResults;
#[cfg(feature = "aws")]
use crate::results::s3::S3Results;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

pub mod generator;

#[cfg(feature = "aws")]
use crate::approval::sqs::{ResponseConsumer, SenderPolicy, SqsNotifier};
#[cfg(feature = "aws")]
use crate::aws::Aws;
use crate::aws::{AwsSettings, S3Uri};
#[cfg(feature = "aws")]
use crate::catalog::glue::GlueCatalog;
use crate::catalog::{Catalog, local::LocalCatalog};
use crate::engine::preflight::{Budget, ChildCommand, Preflight};
use crate::engine::{Engine, datafusion::LocalEngine};
#[cfg(feature = "aws")]
use crate::notify::gchat::SecretWebhook;
use crate::notify::gchat::{ChatMetrics, GoogleChat, Webhook, WebhookSource};
use crate::notify::{Fanout, LogNotifier, Notifier, NotifyOpts};
use crate::spec::EngineKind;
use crate::spec::quantity::{parse_bytes, parse_duration};
use crate::store::{Store, sqlite::SqliteStore};
#[cfg(feature = "aws")]
use crate::store::{cached::CachedStore, dynamodb::DynamoStore};

/// The DynamoDB table `--backend aws` uses unless told otherwise: the one `sqlctl aws bootstrap`
/// creates (`store::dynamodb::DEFAULT_TABLE`; named here too so every build has the flag).
pub const DEFAULT_AWS_TABLE: &str = "sqlctl";

/// Global options shared by every subcommand.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// Where sqlctl keeps its state (state.db), warehouse (data/) and results (results/).
    #[arg(long, global = true, env = "SQLCTL_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Backend: `local` (SQLite, DataFusion, no network) or `aws`.
    #[arg(long, global = true, env = "SQLCTL_BACKEND", default_value = "local", value_parser = ["local", "aws"])]
    pub backend: String,
    /// Directory of databases for the local catalog and engine (default: $SQLCTL_HOME/data).
    #[arg(long, global = true, env = "SQLCTL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Namespace of the requests named on the command line.
    #[arg(short = 'n', long, global = true, env = "SQLCTL_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Log format: text (for people) or json (one object per line, for log pipelines).
    #[arg(long, global = true, env = "SQLCTL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log filter, e.g. info, debug, sqlctl=debug (RUST_LOG syntax).
    #[arg(long, global = true, env = "SQLCTL_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(flatten)]
    pub aws: AwsOpts,
    #[command(flatten)]
    pub notify: NotifyOpts,
    #[command(flatten)]
    pub local: LocalEngineOpts,
}

/// Bounds of the local (DataFusion) engine: what one query may use after approval, and what
/// planning a query before approval may use (in a child process; see `engine::preflight`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Local engine options (--backend local)")]
pub struct LocalEngineOpts {
    /// Memory pool of each query the local engine runs, e.g. 2GiB (default: a quarter of the
    /// machine's or container's memory, between 256MiB and 2GiB). A query that needs more
    /// (after spilling what can spill) fails with a message naming this setting.
    #[arg(long, global = true, env = "SQLCTL_MAX_QUERY_MEMORY", value_name = "SIZE", value_parser = parse_bytes)]
    pub max_query_memory: Option<u64>,
    /// Memory one pre-approval plan may use (the planner child's data segment).
    #[arg(long, global = true, env = "SQLCTL_PREFLIGHT_MEMORY", value_name = "SIZE", default_value = "1GiB", value_parser = parse_bytes)]
    pub preflight_memory: u64,
    /// CPU time one pre-approval plan may use (whole seconds).
    #[arg(long, global = true, env = "SQLCTL_PREFLIGHT_CPU", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub preflight_cpu: std::time::Duration,
    /// Wall-clock time one pre-approval plan may take.
    #[arg(long, global = true, env = "SQLCTL_PREFLIGHT_TIMEOUT", value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub preflight_timeout: std::time::Duration,
}

impl LocalEngineOpts {
    /// Where and under which budget the local engine plans before approval: a child of this
    /// very binary (the real binary always isolates).
    pub fn preflight(&self) -> Preflight {
        Preflight::Isolated {
            command: ChildCommand::this_binary(),
            budget: Budget {
                memory_bytes: self.preflight_memory.max(64 << 20),
                cpu: self.preflight_cpu.max(std::time::Duration::from_secs(1)),
                wall: self.preflight_timeout.max(std::time::Duration::from_millis(100)),
            },
        }
    }
}

/// Where the AWS backends live (`--backend aws`). Defaults are the names `sqlctl aws bootstrap`
/// creates (and the Terraform uses).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "AWS options (--backend aws, S3 results)")]
pub struct AwsOpts {
    /// Send every AWS call to this URL (an emulator such as moto or LocalStack).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: the standard chain — AWS_REGION, then the profile).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// DynamoDB table holding requests, decisions, the policy and the leader lease.
    #[arg(long, global = true, env = "SQLCTL_TABLE", default_value = DEFAULT_AWS_TABLE)]
    pub table: String,
    /// SQS queue the controller sends approval requests to.
    #[arg(long, global = true, env = "SQLCTL_REQUEST_QUEUE_URL", value_name = "URL")]
    pub request_queue_url: Option<String>,
    /// SQS queue the controller reads decisions from.
    #[arg(long, global = true, env = "SQLCTL_RESPONSE_QUEUE_URL", value_name = "URL")]
    pub response_queue_url: Option<String>,
    /// Athena workgroup queries run in (its enforced settings are the second wall).
    #[arg(long, global = true, env = "SQLCTL_ATHENA_WORKGROUP", default_value = "sqlctl")]
    pub athena_workgroup: String,
    /// Where results go in S3: s3://bucket/prefix. Athena writes each result there; the local
    /// engine uploads each finished CSV (and chart) to `<prefix>/<namespace>/<name>/<generation>-<attempt>.csv`.
    /// Unset: local results stay under $SQLCTL_HOME/results and no AWS call is made.
    #[arg(
        long = "results",
        visible_alias = "results-s3",
        global = true,
        env = "SQLCTL_RESULTS_S3",
        value_name = "S3URI"
    )]
    pub results_s3: Option<String>,
    /// Glue Data Catalog id (an account id) when it is not the caller's account.
    #[arg(long, global = true, env = "SQLCTL_GLUE_CATALOG_ID")]
    pub glue_catalog_id: Option<String>,
    /// Athena queries running at once, across this controller (Athena's account quota is the
    /// real ceiling); approved requests beyond it wait in Executing.
    #[arg(long, global = true, env = "SQLCTL_ATHENA_MAX_CONCURRENT", default_value_t = 20)]
    pub athena_max_concurrent: usize,
    /// Dry-run each SQL with Athena `EXPLAIN` before asking for approval, so a missing column
    /// or table fails early (or is corrected by the generator): `true` (default) or `false`.
    #[arg(long, global = true, env = "SQLCTL_ATHENA_EXPLAIN", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub athena_explain: bool,
    /// Athena price per TB scanned, in US$ (10 MB minimum per query).
    #[arg(long, global = true, env = "SQLCTL_ATHENA_PRICE_PER_TB", default_value_t = 5.0)]
    pub athena_price_per_tb: f64,
    /// How long finished requests are kept in DynamoDB before its TTL removes them.
    #[arg(long, global = true, env = "SQLCTL_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: std::time::Duration,
    /// SQS sender ids mapped to approver names: `SENDER_ID=name,…` (role sessions map to their
    /// session name without an entry).
    #[arg(long, global = true, env = "SQLCTL_SQS_SENDERS", value_name = "ID=NAME,…")]
    pub sqs_senders: Option<String>,
    /// SQS senders trusted to say who decided (`by`), e.g. a chat bot's role: comma list, `*`
    /// for every sender (emulators only).
    #[arg(long, global = true, env = "SQLCTL_SQS_TRUSTED_RELAYS", value_name = "ID,…")]
    pub sqs_trusted_relays: Option<String>,
}

impl AwsOpts {
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            endpoint_url: self.endpoint_url.clone().filter(|s| !s.is_empty()),
            region: self.region.clone().filter(|s| !s.is_empty()),
        }
    }

    /// `--results` (`SQLCTL_RESULTS_S3`), parsed.
    pub fn results(&self) -> anyhow::Result<Option<S3Uri>> {
        self.results_s3
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                S3Uri::parse(s).map_err(|e| {
                    anyhow::anyhow!("--results / SQLCTL_RESULTS_S3: {e}; give s3://bucket/prefix, or leave it unset")
                })
            })
            .transpose()
    }
}

/// The resolved configuration every command runs with: parse, then resolve (ripgrep's
/// low-level and high-level arguments). [`GlobalOpts`] is only what clap parsed;
/// [`GlobalOpts::resolve`] turns it into this once (paths worked out, the backend chosen), and
/// each command's `run(self, ctx)` builds the backends it needs from it on first use, all
/// sharing one AWS SDK configuration.
#[derive(Debug, Clone)]
pub struct Context {
    /// `local` or `aws` (clap allows no other value).
    pub backend: String,
    pub namespace: String,
    pub log_format: String,
    pub log_level: Option<String>,
    pub aws: AwsOpts,
    pub notify: NotifyOpts,
    pub local: LocalEngineOpts,
    home: PathBuf,
    data_dir: PathBuf,
    /// The loaded SDK configuration, shared by every client of this process.
    #[cfg(feature = "aws")]
    sdk: Arc<tokio::sync::OnceCell<Aws>>,
}

impl GlobalOpts {
    /// The one step from parsed flags to the context commands run with.
    pub fn resolve(&self) -> Context {
        let home = match (&self.home, std::env::var_os("HOME")) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => Path::new(&h).join(".sqlctl"),
            (None, None) => PathBuf::from(".sqlctl"),
        };
        Context {
            backend: self.backend.clone(),
            namespace: self.namespace.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            aws: self.aws.clone(),
            notify: self.notify.clone(),
            local: self.local.clone(),
            data_dir: self.data_dir.clone().unwrap_or_else(|| home.join("data")),
            home,
            #[cfg(feature = "aws")]
            sdk: Arc::default(),
        }
    }
}

impl Context {
    pub fn home(&self) -> PathBuf {
        self.home.clone()
    }
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// The AWS SDK configuration, loaded on first use (so the local default never touches AWS).
    #[cfg(feature = "aws")]
    pub async fn aws_sdk(&self) -> &Aws {
        let settings = self.aws.settings();
        self.sdk.get_or_init(|| async move { Aws::load(&settings).await }).await
    }

    /// Uses `aws` as this context's SDK configuration (tests point it at an emulator).
    #[cfg(all(test, feature = "aws"))]
    pub fn with_aws(self, aws: Aws) -> Self {
        assert!(self.sdk.set(aws).is_ok(), "the SDK configuration is set before first use");
        self
    }
    pub fn results_dir(&self) -> PathBuf {
        self.home().join("results")
    }
    pub fn state_db(&self) -> PathBuf {
        self.home().join("state.db")
    }

    pub fn is_aws(&self) -> bool {
        self.backend == "aws"
    }

    /// The refusal of `--backend aws` in a build without the `aws` feature.
    #[cfg(not(feature = "aws"))]
    fn aws_backend_unavailable<T>(&self) -> anyhow::Result<T> {
        Err(crate::aws::unavailable("--backend aws (SQLCTL_BACKEND=aws)"))
    }

    /// Opens the store: SQLite under `--home`, or the DynamoDB table on `--backend aws`.
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        if self.is_aws() {
            #[cfg(feature = "aws")]
            return Ok(Arc::new(self.dynamo_store().await?));
            #[cfg(not(feature = "aws"))]
            return self.aws_backend_unavailable();
        }
        let path = self.state_db();
        let store =
            SqliteStore::open(&path).with_context(|| format!("opening the state database {}", path.display()))?;
        Ok(Arc::new(store))
    }

    /// The store a controller uses: on `--backend aws` with the read cache (an informer-like
    /// view of the active records; see `store::cached`). The CLI uses [`Context::store`].
    pub async fn controller_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        #[cfg(feature = "aws")]
        if self.is_aws() {
            return Ok(Arc::new(CachedStore::new(self.dynamo_store().await?)));
        }
        self.store().await
    }

    /// The DynamoDB store (`--backend aws`).
    #[cfg(feature = "aws")]
    pub async fn dynamo_store(&self) -> anyhow::Result<DynamoStore> {
        let aws = self.aws_sdk().await;
        Ok(DynamoStore::new(crate::aws::dynamodb(&aws.conf), &self.aws.table).with_retention(self.aws.retention))
    }

    pub async fn catalog(&self) -> anyhow::Result<Arc<dyn Catalog>> {
        if self.is_aws() {
            #[cfg(feature = "aws")]
            {
                let aws = self.aws_sdk().await;
                return Ok(Arc::new(GlueCatalog::new(
                    crate::aws::glue(&aws.conf),
                    self.aws.glue_catalog_id.clone().filter(|s| !s.is_empty()),
                )));
            }
            #[cfg(not(feature = "aws"))]
            return self.aws_backend_unavailable();
        }
        Ok(Arc::new(LocalCatalog::new(self.data_dir())))
    }

    /// Engines this process can run: DataFusion locally; Athena on `--backend aws` (which needs
    /// `--results` unless the workgroup enforces its own output location).
    pub async fn engines(&self) -> anyhow::Result<HashMap<EngineKind, Arc<dyn Engine>>> {
        let mut m: HashMap<EngineKind, Arc<dyn Engine>> = HashMap::new();
        if self.is_aws() {
            #[cfg(feature = "aws")]
            {
                m.insert(EngineKind::Athena, Arc::new(self.athena().await?));
                return Ok(m);
            }
            #[cfg(not(feature = "aws"))]
            return self.aws_backend_unavailable();
        }
        m.insert(EngineKind::Local, Arc::new(self.local_engine().await?));
        Ok(m)
    }

    /// The local engine, writing into [`Context::results`].
    pub async fn local_engine(&self) -> anyhow::Result<LocalEngine> {
        let mut engine = LocalEngine::new(self.data_dir(), self.results_dir())
            .with_preflight(self.local.preflight())
            .with_results(self.results().await?);
        if let Some(bytes) = self.local.max_query_memory {
            engine = engine.with_max_query_memory(bytes);
        }
        Ok(engine)
    }

    /// Where results live (see [`crate::results`]): where Athena wrote them on `--backend aws`;
    /// else the results directory, uploaded to S3 with `--results s3://…`. The AWS configuration
    /// is loaded only in those two cases, so the default local setup never touches AWS, and
    /// reading a result never builds an engine.
    pub async fn results(&self) -> anyhow::Result<Arc<dyn ResultStore>> {
        if self.is_aws() {
            #[cfg(feature = "aws")]
            {
                let aws = self.aws_sdk().await;
                return Ok(Arc::new(S3Results::athena(crate::aws::s3(&aws.conf))));
            }
            #[cfg(not(feature = "aws"))]
            return self.aws_backend_unavailable();
        }
        let local = LocalResults::new(self.results_dir());
        match self.aws.results()? {
            #[cfg(feature = "aws")]
            Some(root) => {
                let aws = self.aws_sdk().await;
                Ok(Arc::new(S3Results::upload_from(crate::aws::s3(&aws.conf), root, local)))
            }
            #[cfg(not(feature = "aws"))]
            Some(root) => Err(crate::aws::unavailable(&format!("--results {root} (SQLCTL_RESULTS_S3)"))),
            None => Ok(Arc::new(local)),
        }
    }

    /// The Athena engine (`--backend aws`).
    #[cfg(feature = "aws")]
    pub async fn athena(&self) -> anyhow::Result<crate::engine::athena::AthenaEngine> {
        let aws = self.aws_sdk().await;
        let opts = crate::engine::athena::AthenaOptions {
            workgroup: self.aws.athena_workgroup.clone(),
            output: self.aws.results()?,
            max_concurrent: self.aws.athena_max_concurrent.max(1),
            price_per_tb_usd: self.aws.athena_price_per_tb,
            catalog: None,
            explain: self.aws.athena_explain,
        };
        // The catalog (Glue) lets the engine estimate scans before approval.
        Ok(crate::engine::athena::AthenaEngine::new(crate::aws::athena(&aws.conf), crate::aws::s3(&aws.conf), opts)
            .with_catalog(self.catalog().await?))
    }

    /// Where approval requests and finished notices go: the SQS request queue on `--backend aws`
    /// when `SQLCTL_REQUEST_QUEUE_URL` is set (required: its errors are retried), then the log,
    /// then Google Chat when a webhook is configured (best effort: see `notify::gchat`), counting
    /// into `chat_metrics`.
    pub async fn notifier(&self, chat_metrics: &Arc<ChatMetrics>) -> anyhow::Result<Arc<dyn Notifier>> {
        let log: Arc<dyn Notifier> = Arc::new(LogNotifier);
        let people: Arc<dyn Notifier> = match self.google_chat(chat_metrics.clone()).await? {
            Some(chat) => Arc::new(Fanout(vec![log, Arc::new(chat)])),
            None => log,
        };
        match self.aws.request_queue_url.as_deref().filter(|u| self.is_aws() && !u.is_empty()) {
            #[cfg(feature = "aws")]
            Some(url) => {
                let aws = self.aws_sdk().await;
                Ok(Arc::new(SqsNotifier::new(crate::aws::sqs(&aws.conf), url, people)))
            }
            #[cfg(not(feature = "aws"))]
            Some(_) => self.aws_backend_unavailable(),
            None => Ok(people),
        }
    }

    /// The Google Chat notifier, when `SQLCTL_GCHAT_WEBHOOK` or `SQLCTL_GCHAT_WEBHOOK_SECRET_ARN`
    /// is set (on either backend). A malformed URL or setting is refused here; a secret that
    /// cannot be read now is only warned about (chat is best effort; each message retries it).
    /// The notifier counts into `metrics`.
    pub async fn google_chat(&self, metrics: Arc<ChatMetrics>) -> anyhow::Result<Option<GoogleChat>> {
        let n = &self.notify;
        let source = match (n.webhook(), n.secret_arn()) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => anyhow::bail!(
                "both SQLCTL_GCHAT_WEBHOOK (--gchat-webhook) and SQLCTL_GCHAT_WEBHOOK_SECRET_ARN (--gchat-webhook-secret-arn) are set: keep one"
            ),
            (Some(url), None) => WebhookSource::Fixed(
                Webhook::parse(url).map_err(|e| anyhow::anyhow!("SQLCTL_GCHAT_WEBHOOK / --gchat-webhook: {e}"))?,
            ),
            #[cfg(feature = "aws")]
            (None, Some(arn)) => {
                let aws = self.aws_sdk().await;
                WebhookSource::SecretsManager(SecretWebhook::new(crate::aws::secretsmanager(&aws.conf), arn))
            }
            #[cfg(not(feature = "aws"))]
            (None, Some(_)) => {
                return Err(crate::aws::unavailable(
                    "--gchat-webhook-secret-arn (SQLCTL_GCHAT_WEBHOOK_SECRET_ARN, a webhook in Secrets Manager)",
                ));
            }
        };
        let mut chat = GoogleChat::new(source, n.chat_options().map_err(|e| anyhow::anyhow!(e))?, metrics)
            .map_err(|e| anyhow::anyhow!(e))?;
        if n.gchat_chart_image.is_some() {
            // Chart images are presigned where results are stored (S3 only).
            chat = chat.with_chart_images(self.results().await?);
        }
        match chat.check().await {
            Ok(webhook) => tracing::info!(webhook = %webhook, "google chat notifications enabled"),
            Err(e) => {
                tracing::warn!(error = %e, "google chat webhook unavailable; chat notifications fail until it can be read")
            }
        }
        Ok(Some(chat))
    }

    /// The SQS response-queue consumer (`--backend aws` with `SQLCTL_RESPONSE_QUEUE_URL`), writing
    /// decisions into `store` and waking the controller through `waker`.
    #[cfg(feature = "aws")]
    pub async fn decision_consumer(
        &self,
        store: Arc<dyn Store>,
        waker: crate::engine::Waker,
    ) -> anyhow::Result<Option<ResponseConsumer>> {
        let Some(url) = self.aws.response_queue_url.as_deref().filter(|u| self.is_aws() && !u.is_empty()) else {
            return Ok(None);
        };
        let senders = SenderPolicy::parse(self.aws.sqs_senders.as_deref(), self.aws.sqs_trusted_relays.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
        let aws = self.aws_sdk().await;
        Ok(Some(ResponseConsumer::new(crate::aws::sqs(&aws.conf), url, store, senders).with_waker(waker)))
    }

    /// Who is deciding (or requesting) from the CLI. Locally: `--as` or the OS user. On
    /// `--backend aws`: who AWS says the caller is (STS `GetCallerIdentity`), as its full ARN, so
    /// a policy's `identities` map can name the role as well as the session; without a map it
    /// counts by its short name (IAM user or role session name). `--as` is refused unless it
    /// names that same identity (short name or ARN).
    pub async fn decider(&self, as_: Option<&str>) -> anyhow::Result<String> {
        if !self.is_aws() {
            return Ok(crate::identity::local_user(as_));
        }
        #[cfg(not(feature = "aws"))]
        return self.aws_backend_unavailable();
        #[cfg(feature = "aws")]
        {
            let aws = self.aws_sdk().await;
            let who = crate::aws::caller_identity(&aws.conf).await?;
            match as_ {
                Some(claimed) if !crate::aws::names_identity(&who, claimed) => {
                    Err(crate::exit::Exit::refused(format!(
                        "--as {claimed} refused on --backend aws: AWS says you are {} ({}); decide as yourself, or run with that identity's credentials",
                        who.name(),
                        who.arn
                    )))
                }
                _ => Ok(who.arn),
            }
        }
    }

    pub fn default_engine(&self) -> EngineKind {
        if self.backend == "aws" { EngineKind::Athena } else { EngineKind::Local }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    #[cfg(feature = "aws")]
    use crate::aws::testing::{config_for, moto_url};

    fn parse(args: &[&str]) -> Context {
        let mut argv = vec!["sqlctl"];
        argv.extend_from_slice(args);
        argv.extend(["config", "view"]);
        crate::cli::Cli::try_parse_from(argv).unwrap().global.resolve()
    }

    #[test]
    fn aws_flags_resolve_and_local_stays_the_default() {
        let g = parse(&["--results", "s3://b/p", "--athena-max-concurrent", "3", "--retention", "7d"]);
        assert!(!g.is_aws() || std::env::var("SQLCTL_BACKEND").as_deref() == Ok("aws"));
        assert_eq!(g.aws.results().unwrap().unwrap().to_string(), "s3://b/p");
        assert_eq!(g.aws.athena_max_concurrent, 3);
        if std::env::var_os("SQLCTL_ATHENA_EXPLAIN").is_none() {
            assert!(g.aws.athena_explain, "EXPLAIN before approval is on by default");
        }
        assert!(!parse(&["--athena-explain", "false"]).aws.athena_explain);
        assert_eq!(g.aws.retention, std::time::Duration::from_secs(7 * 86_400));
        assert!(parse(&["--results-s3", "http://x"]).aws.results().is_err());
        // The old flag name still works.
        assert_eq!(parse(&["--results-s3", "s3://b"]).aws.results().unwrap().unwrap().to_string(), "s3://b/");
    }

    #[test]
    fn local_engine_bounds_resolve_and_the_binary_always_isolates() {
        let g = parse(&["--max-query-memory", "512MiB", "--preflight-memory", "768MiB", "--preflight-cpu", "3s"]);
        assert_eq!(g.local.max_query_memory, Some(512 << 20));
        match g.local.preflight() {
            Preflight::Isolated { command, budget } => {
                assert_eq!(command.args, [crate::engine::preflight::SUBCOMMAND]);
                assert_eq!(budget.memory_bytes, 768 << 20);
                assert_eq!(budget.cpu, std::time::Duration::from_secs(3));
            }
            other => panic!("the configured engine plans in a child: {other:?}"),
        }
        assert!(crate::cli::Cli::try_parse_from(["sqlctl", "--max-query-memory", "lots", "config", "view"]).is_err());
    }

    #[cfg(feature = "aws")]
    #[test]
    fn the_default_table_is_the_one_the_dynamodb_store_names() {
        assert_eq!(DEFAULT_AWS_TABLE, crate::store::dynamodb::DEFAULT_TABLE);
    }

    /// Without the `aws` feature, each AWS choice is a usage error (exit 2) that names the choice
    /// and how to get a build with AWS support; the local default still builds everything.
    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn aws_choices_are_refused_in_a_build_without_aws() {
        let code_and_message = |e: anyhow::Error| match e.downcast_ref::<crate::exit::Exit>() {
            Some(x) => (x.code, x.message.clone()),
            None => panic!("not an Exit: {e:#}"),
        };
        let says_how = |(code, m): (u8, String), what: &str| {
            assert_eq!(code, 2, "{m}");
            assert!(m.contains(what) && m.contains("--features aws") && m.contains("release binary"), "{m}");
        };
        let home = tempfile::tempdir().unwrap();
        let home = home.path().to_str().unwrap();
        let aws = parse(&["--home", home, "--backend", "aws"]);
        says_how(code_and_message(aws.store().await.err().unwrap()), "--backend aws");
        says_how(code_and_message(aws.controller_store().await.err().unwrap()), "--backend aws");
        says_how(code_and_message(aws.catalog().await.err().unwrap()), "--backend aws");
        says_how(code_and_message(aws.engines().await.err().unwrap()), "--backend aws");
        says_how(code_and_message(aws.results().await.err().unwrap()), "--backend aws");
        says_how(code_and_message(aws.decider(None).await.err().unwrap()), "--backend aws");
        let s3 = parse(&["--home", home, "--results", "s3://b/p"]);
        says_how(code_and_message(s3.results().await.err().unwrap()), "--results s3://b/p");
        let bedrock = generator::GeneratorOpts { generator: Some(generator::Provider::Bedrock), ..Default::default() };
        says_how(code_and_message(bedrock.build("local").await.err().unwrap()), "--generator bedrock");
        // The local default needs none of it.
        let local = parse(&["--home", home]);
        assert!(local.store().await.is_ok() && local.results().await.is_ok() && local.engines().await.is_ok());
    }

    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn the_cli_decider_on_aws_is_who_sts_says_and_as_must_match() {
        let Some(url) = moto_url() else { return };
        let g = parse(&["--backend", "aws"]).with_aws(Aws { conf: Arc::new(config_for(&url).await) });
        // moto answers GetCallerIdentity with arn:aws:sts::123456789012:user/moto: the full ARN
        // is who decides (an identities map can name it); its short name is `moto`.
        let moto = "arn:aws:sts::123456789012:user/moto";
        assert_eq!(g.decider(None).await.unwrap(), moto);
        assert_eq!(g.decider(Some("moto")).await.unwrap(), moto);
        assert_eq!(g.decider(Some("MOTO")).await.unwrap(), moto, "compared under the identity rule");
        assert_eq!(g.decider(Some(moto)).await.unwrap(), moto);
        let e = g.decider(Some("alice")).await.unwrap_err().to_string();
        assert!(e.contains("--as alice refused") && e.contains("moto"), "{e}");
        // Locally --as is taken as given.
        assert_eq!(parse(&["--backend", "local"]).decider(Some("alice")).await.unwrap(), "alice");
    }
}
