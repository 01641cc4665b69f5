//! `sqlctl config view`: the configuration in effect after flags, environment and defaults are
//! resolved — what each backend will be built from. Secrets are never printed: an access key id
//! shows its first and last four characters, secret keys and session tokens only whether they
//! are set, API keys only the name of the variable that holds them.

use std::collections::BTreeMap;
#[cfg(feature = "aws")]
use std::time::Duration;

use crate::config::Context;
use crate::config::generator::GeneratorOpts;
use crate::spec::quantity::format_duration;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the resolved configuration (secrets redacted).
    View(ViewArgs),
}

#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Output: yaml-like text or json.
    #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    #[command(flatten)]
    pub generator: GeneratorOpts,
}

impl Command {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        match self {
            Command::View(a) => a.run(g).await,
        }
    }
}

/// Hides all but the ends of an identifier (`AKIA…WXYZ`).
pub fn redact_id(s: &str) -> String {
    let n = s.chars().count();
    if n <= 8 {
        return "****".into();
    }
    let head: String = s.chars().take(4).collect();
    let tail: String = s.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

type Section = BTreeMap<&'static str, serde_json::Value>;

fn opt(v: &Option<String>) -> serde_json::Value {
    match v.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => serde_json::Value::String(s.to_string()),
        None => serde_json::Value::Null,
    }
}

impl ViewArgs {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let mut out: BTreeMap<&'static str, Section> = BTreeMap::new();
        let mut general = Section::new();
        general.insert("backend", g.backend.clone().into());
        general.insert("home", g.home().display().to_string().into());
        general.insert("dataDir", g.data_dir().display().to_string().into());
        general.insert("resultsDir", g.results_dir().display().to_string().into());
        general.insert("namespace", g.namespace.clone().into());
        general.insert("defaultEngine", g.default_engine().as_str().into());
        general.insert("logFormat", g.log_format.clone().into());
        general.insert("log", opt(&g.log_level));
        if !g.is_aws() {
            general.insert("stateDb", g.state_db().display().to_string().into());
        }
        out.insert("general", general);

        let a = &g.aws;
        let mut aws = Section::new();
        aws.insert("table", a.table.clone().into());
        aws.insert("requestQueueUrl", opt(&a.request_queue_url));
        aws.insert("responseQueueUrl", opt(&a.response_queue_url));
        aws.insert("athenaWorkgroup", a.athena_workgroup.clone().into());
        aws.insert("resultsS3", opt(&a.results_s3));
        aws.insert("glueCatalogId", opt(&a.glue_catalog_id));
        aws.insert("athenaMaxConcurrent", a.athena_max_concurrent.into());
        aws.insert("athenaPricePerTbUsd", a.athena_price_per_tb.into());
        aws.insert("retention", format_duration(a.retention).into());
        aws.insert("endpointUrl", opt(&a.endpoint_url));
        aws.insert(
            "support",
            if crate::aws::SUPPORTED { "built in" } else { "not in this build (rebuild with --features aws)" }.into(),
        );
        #[cfg(feature = "aws")]
        if g.is_aws() {
            let sdk = g.aws_sdk().await;
            aws.insert("region", sdk.conf.region().map(|r| r.to_string()).into());
            if let Some(e) = sdk.conf.endpoint_url() {
                aws.insert("endpointUrl", e.into());
            }
            aws.insert("credentials", credentials(&sdk.conf).await);
        } else {
            aws.insert("region", opt(&a.region));
        }
        #[cfg(not(feature = "aws"))]
        aws.insert("region", opt(&a.region));
        out.insert("aws", aws);

        let gen_ = &self.generator;
        let mut generator = Section::new();
        generator.insert("provider", format!("{:?}", gen_.provider(&g.backend)).to_ascii_lowercase().into());
        generator.insert("model", opt(&gen_.model));
        generator.insert("openaiBaseUrl", opt(&gen_.openai_base_url));
        generator.insert("bedrockRegion", opt(&gen_.bedrock_region));
        let key_var = gen_.openai_api_key_env.clone().unwrap_or_else(|| "SQLCTL_OPENAI_API_KEY".into());
        let key_set = std::env::var(&key_var).is_ok_and(|v| !v.is_empty());
        generator.insert(
            "openaiApiKey",
            format!("${key_var} {}", if key_set { "(set, redacted)" } else { "(not set)" }).into(),
        );
        generator.insert("maxSchemaTokens", gen_.max_schema_tokens.into());
        generator.insert("sampleValues", (!gen_.no_sample_values).into());
        out.insert("generator", generator);
        // Google Chat and message contents; the webhook only in its redacted form.
        out.insert("notify", g.notify.describe());

        if self.output == "json" {
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        for (section, values) in &out {
            println!("{section}:");
            for (k, v) in values {
                let shown = match v {
                    serde_json::Value::Null => "(unset)".to_string(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("  {k}: {shown}");
            }
        }
        Ok(())
    }
}

/// Where the credentials come from and which key, redacted; never a secret.
#[cfg(feature = "aws")]
async fn credentials(conf: &aws_config::SdkConfig) -> serde_json::Value {
    use aws_sdk_dynamodb::config::ProvideCredentials;
    let Some(provider) = conf.credentials_provider() else { return "none configured".into() };
    match tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials()).await {
        Ok(Ok(c)) => serde_json::json!({
            "accessKeyId": redact_id(c.access_key_id()),
            "secretAccessKey": "(set, redacted)",
            "sessionToken": if c.session_token().is_some() { "(set, redacted)" } else { "(none)" },
            "expires": c.expiry().map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()),
        }),
        Ok(Err(e)) => format!("unavailable: {e}").into(),
        Err(_) => "unavailable: timed out after 5s".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_keep_only_their_ends() {
        assert_eq!(redact_id("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(redact_id("short"), "****");
    }
}
