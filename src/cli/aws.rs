//! `sqlctl aws …`: AWS helpers for emulators and sandboxes.
//!
//! `sqlctl aws bootstrap` creates what `--backend aws` needs, idempotently: the DynamoDB table
//! (with its indexes and TTL), the approval request and response queues with their dead-letter
//! queues (`…-dlq`, redrive after 5 receives), the results bucket and the Athena workgroup (with
//! enforced settings and a bytes-scanned cutoff, the engine's second wall). It prints the
//! `export SQLCTL_…=…` lines that point sqlctl at them. The workgroup counts as existing only
//! when `GetWorkGroup` returns it by name (moto answers success with no `WorkGroup` for one
//! that does not exist); a workgroup still missing after the create, or disabled, fails the
//! bootstrap with what to do. These default names are the ones the
//! Terraform of the "Operate" issue uses. `--register-local DATABASE` also copies a local
//! warehouse database to the bucket and registers its tables in Glue, so Athena can query it.
//!
//! `sqlctl aws whoami` prints the caller's STS identity and the approver name it maps to.

use std::collections::HashMap;

use anyhow::Context as _;
use aws_sdk_athena::types::{ResultConfiguration, WorkGroup, WorkGroupConfiguration, WorkGroupState};
use aws_sdk_sqs::types::QueueAttributeName;

use super::Exit;
use crate::aws::{self, S3Uri};
use crate::catalog::Catalog;
use crate::config::Context;
use crate::spec::quantity::parse_bytes;
use crate::store::dynamodb::DynamoStore;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create the table, queues, bucket and workgroup (idempotent) and print `export` lines.
    Bootstrap(BootstrapArgs),
    /// Show who AWS says you are, and the approver name that maps to.
    Whoami,
}

#[derive(clap::Args, Debug)]
pub struct BootstrapArgs {
    /// Name prefix of everything created: table PREFIX, queues PREFIX-approval-requests and
    /// PREFIX-approval-responses (+ -dlq), workgroup PREFIX.
    #[arg(long, default_value = "sqlctl")]
    pub prefix: String,
    /// Results bucket (default: PREFIX-results-ACCOUNT-REGION, globally unique on AWS).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Workgroup-wide ceiling on bytes one query may scan (requests set lower limits).
    #[arg(long, default_value = "100GiB", value_parser = parse_bytes)]
    pub bytes_scanned_cutoff: u64,
    /// Receives before a message moves to its dead-letter queue.
    #[arg(long, default_value_t = 5)]
    pub max_receive_count: u32,
    /// Also copy this local warehouse database (from --data-dir) to the bucket and register its
    /// tables in Glue.
    #[arg(long, value_name = "DATABASE")]
    pub register_local: Option<String>,
    /// Output: `env` (export lines) or `json`.
    #[arg(short, long, default_value = "env", value_parser = ["env", "json"])]
    pub output: String,
}

impl Command {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        match self {
            Command::Bootstrap(a) => a.run(g).await,
            Command::Whoami => {
                let aws = g.aws_sdk().await;
                let who = aws::caller_identity(&aws.conf).await?;
                println!(
                    "arn:      {}\naccount:  {}\nuser id:  {}\napprover: {}",
                    who.arn,
                    who.account,
                    who.user_id,
                    who.name()
                );
                Ok(())
            }
        }
    }
}

/// What bootstrap created (or found), as printed.
#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrapped {
    pub table: String,
    pub request_queue_url: String,
    pub request_dlq_url: String,
    pub response_queue_url: String,
    pub response_dlq_url: String,
    pub bucket: String,
    pub results_s3: String,
    pub workgroup: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<String>,
}

impl BootstrapArgs {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let ok = !self.prefix.is_empty()
            && self.prefix.len() <= 40
            && self.prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(Exit::usage(format!(
                "--prefix {:?}: use lower-case letters, digits and - (at most 40)",
                self.prefix
            )));
        }
        let aws = g.aws_sdk().await;
        let conf = &aws.conf;
        let region = conf.region().map(|r| r.to_string()).unwrap_or_else(|| aws::EMULATOR_REGION.into());
        let who = aws::caller_identity(conf).await.context("checking the AWS credentials before creating anything")?;
        eprintln!("bootstrapping as {} in {region}", who.arn);

        let table = self.prefix.clone();
        let created = DynamoStore::create_table(&aws::dynamodb(conf), &table).await?;
        eprintln!(
            "dynamodb table {table}: {}",
            if created { "created (indexes active, list, changes; TTL on ttl)" } else { "exists" }
        );

        let sqs = aws::sqs(conf);
        let (request_queue_url, request_dlq_url) =
            queue_with_dlq(&sqs, &format!("{}-approval-requests", self.prefix), self.max_receive_count).await?;
        let (response_queue_url, response_dlq_url) =
            queue_with_dlq(&sqs, &format!("{}-approval-responses", self.prefix), self.max_receive_count).await?;
        eprintln!("sqs queues: {request_queue_url}, {response_queue_url} (+ dead-letter queues)");

        let bucket = self.bucket.clone().unwrap_or_else(|| format!("{}-results-{}-{region}", self.prefix, who.account));
        ensure_bucket(&aws::s3(conf), &bucket, &region).await?;
        let results = S3Uri { bucket: bucket.clone(), key: "results".into() };
        eprintln!("s3 bucket {bucket}");

        let workgroup = self.prefix.clone();
        let found = ensure_workgroup(&aws::athena(conf), &workgroup, &results, self.bytes_scanned_cutoff).await?;
        eprintln!("athena workgroup {workgroup}: {found}");

        let registered = match &self.register_local {
            Some(db) => {
                let n = register_local(g, conf, &bucket, db).await?;
                eprintln!("glue database {db}: {n} tables registered over s3://{bucket}/warehouse/{db}/");
                Some(db.clone())
            }
            None => None,
        };

        let out = Bootstrapped {
            table,
            request_queue_url,
            request_dlq_url,
            response_queue_url,
            response_dlq_url,
            bucket,
            results_s3: results.to_string(),
            workgroup,
            endpoint_url: conf.endpoint_url().map(str::to_string),
            registered,
        };
        if self.output == "json" {
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("export SQLCTL_BACKEND=aws");
            println!("export SQLCTL_TABLE={}", out.table);
            println!("export SQLCTL_REQUEST_QUEUE_URL={}", out.request_queue_url);
            println!("export SQLCTL_RESPONSE_QUEUE_URL={}", out.response_queue_url);
            println!("export SQLCTL_ATHENA_WORKGROUP={}", out.workgroup);
            println!("export SQLCTL_RESULTS_S3={}", out.results_s3);
            println!("export AWS_REGION={region}");
            if let Some(e) = &out.endpoint_url {
                println!("export AWS_ENDPOINT_URL={e}");
            }
        }
        Ok(())
    }
}

/// Creates `name` and `name-dlq` (idempotent) and sets the redrive policy. Returns both URLs.
async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
) -> anyhow::Result<(String, String)> {
    let dlq_name = format!("{name}-dlq");
    let dlq = sqs
        .create_queue()
        .queue_name(&dlq_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SQS CreateQueue {dlq_name}: {}", aws::describe(&e)))?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SQS GetQueueAttributes {dlq_name}: {}", aws::describe(&e)))?;
    let dlq_arn = attrs.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().unwrap_or_default();
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string()})
        .to_string();
    let q = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SQS CreateQueue {name}: {}", aws::describe(&e)))?;
    let url = q.queue_url().unwrap_or_default().to_string();
    let mut set: HashMap<QueueAttributeName, String> = HashMap::new();
    set.insert(QueueAttributeName::RedrivePolicy, redrive);
    // Long enough for the controller to write a decision record before the message reappears.
    set.insert(QueueAttributeName::VisibilityTimeout, "60".into());
    set.insert(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20".into());
    sqs.set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(set))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SQS SetQueueAttributes {name}: {}", aws::describe(&e)))?;
    Ok((url, dlq_url))
}

async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: &str) -> anyhow::Result<()> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    let mut req = s3.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("BucketAlreadyOwnedByYou") => Ok(()),
        Err(e) => anyhow::bail!("S3 CreateBucket {bucket}: {}", aws::describe(&e)),
    }
}

/// Makes sure workgroup `name` exists and is enabled (creating it with enforced settings and
/// `cutoff` when it does not), and says what it found. A `GetWorkGroup` success alone proves
/// nothing — moto answers success with no `WorkGroup` for a workgroup that does not exist — so
/// the answer must name the workgroup, before and after a create.
async fn ensure_workgroup(
    athena: &aws_sdk_athena::Client,
    name: &str,
    results: &S3Uri,
    cutoff: u64,
) -> anyhow::Result<String> {
    if let Ok(Some(wg)) = get_workgroup(athena, name).await {
        return usable_workgroup(&wg, "exists");
    }
    let config = WorkGroupConfiguration::builder()
        .result_configuration(ResultConfiguration::builder().output_location(format!("{results}/")).build())
        .enforce_work_group_configuration(true)
        .bytes_scanned_cutoff_per_query(cutoff.min(i64::MAX as u64) as i64)
        .publish_cloud_watch_metrics_enabled(true)
        .build();
    let created = match athena
        .create_work_group()
        .name(name)
        .description("sqlctl: approved queries only")
        .configuration(config)
        .send()
        .await
    {
        Ok(_) => None,
        Err(e) if aws::describe(&e).contains("already") => Some(aws::describe(&e)),
        Err(e) => anyhow::bail!("Athena CreateWorkGroup {name}: {}", aws::describe(&e)),
    };
    let what = if created.is_none() { "created" } else { "exists" };
    match get_workgroup(athena, name).await {
        Ok(Some(wg)) => usable_workgroup(&wg, what),
        Ok(None) => Err(missing_workgroup(name, created.as_deref().unwrap_or("CreateWorkGroup succeeded"))),
        Err(e) => Err(missing_workgroup(name, &e)),
    }
}

/// `GetWorkGroup name`: the workgroup, `None` when the answer names none (or says not found).
async fn get_workgroup(athena: &aws_sdk_athena::Client, name: &str) -> Result<Option<WorkGroup>, String> {
    match athena.get_work_group().work_group(name).send().await {
        Ok(out) => Ok(out.work_group().filter(|w| w.name() == name).cloned()),
        Err(e) => {
            let text = aws::describe(&e);
            let lower = text.to_ascii_lowercase();
            if lower.contains("not found") || lower.contains("does not exist") { Ok(None) } else { Err(text) }
        }
    }
}

fn missing_workgroup(name: &str, why: &str) -> anyhow::Error {
    Exit::refused(format!(
        "Athena workgroup {name} does not exist: GetWorkGroup returned no workgroup named {name} ({why}). \
         Create it (`aws athena create-work-group --name {name}` with an enforced result location), \
         check that these credentials may call athena:GetWorkGroup and athena:CreateWorkGroup, \
         or point sqlctl at an existing workgroup with --athena-workgroup / SQLCTL_ATHENA_WORKGROUP"
    ))
}

/// A found workgroup is usable when enabled; one that does not enforce its settings works, but
/// without the engine's second wall, which is said.
fn usable_workgroup(wg: &WorkGroup, what: &str) -> anyhow::Result<String> {
    let name = wg.name();
    if wg.state() == Some(&WorkGroupState::Disabled) {
        return Err(Exit::refused(format!(
            "Athena workgroup {name} exists but is DISABLED, so no query can run in it: enable it \
             (`aws athena update-work-group --work-group {name} --state ENABLED`) or bootstrap with another --prefix"
        )));
    }
    let config = wg.configuration();
    let enforced = config.and_then(|c| c.enforce_work_group_configuration()).unwrap_or(false);
    let cutoff = config.and_then(|c| c.bytes_scanned_cutoff_per_query());
    if !enforced {
        eprintln!(
            "warning: Athena workgroup {name} does not enforce its settings: clients may override its result location and scan cutoff (the engine's second wall); enable EnforceWorkGroupConfiguration"
        );
    }
    Ok(format!(
        "{what} ({}, {})",
        if enforced { "enforced settings" } else { "settings NOT enforced" },
        match cutoff {
            Some(c) => format!("{c} bytes per query at most"),
            None => "no bytes-scanned cutoff".to_string(),
        }
    ))
}

/// Copies the local `database` to `s3://bucket/warehouse/<db>/<table>/` and registers it in Glue.
async fn register_local(
    g: &Context,
    conf: &aws_config::SdkConfig,
    bucket: &str,
    database: &str,
) -> anyhow::Result<usize> {
    let data_dir = g.data_dir();
    let local = crate::catalog::local::LocalCatalog::new(&data_dir);
    let tables =
        local.tables(database).await.map_err(|e| Exit::refused(format!("--register-local {database}: {e}")))?;
    let found = crate::warehouse::discover_tables(&data_dir, database)
        .map_err(|e| Exit::refused(format!("--register-local {database}: {e}")))?;
    let s3 = aws::s3(conf);
    for t in &found {
        if t.format == crate::warehouse::TableFormat::Csv {
            return Err(Exit::refused(format!(
                "--register-local {database}: table {} is CSV; only Parquet tables are registered (Athena reads them as external Parquet tables)",
                t.name
            )));
        }
        for f in t.data_files()? {
            let file = f.path.file_name().and_then(|n| n.to_str()).unwrap_or("data.parquet").to_string();
            let key = format!("warehouse/{database}/{}/{file}", t.name);
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&f.path)
                .await
                .with_context(|| format!("reading {}", f.path.display()))?;
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(body)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("S3 PutObject s3://{bucket}/{key}: {}", aws::describe(&e)))?;
        }
    }
    let glue = aws::glue(conf);
    let catalog_id = g.aws.glue_catalog_id.as_deref().filter(|s| !s.is_empty());
    crate::catalog::glue::register_tables(
        &glue,
        catalog_id,
        database,
        &tables,
        &format!("s3://{bucket}/warehouse/{database}"),
    )
    .await
}
