//! Choosing and building the SQL generator (`--generator`, `--model`, env).

use std::sync::Arc;

use crate::generate::Generator;

/// Which provider turns questions into SQL.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Deterministic, schema-driven, no model and no network (the local default).
    Offline,
    /// Claude (or another model) on Amazon Bedrock through the Converse API.
    Bedrock,
    /// Any OpenAI-compatible server (/v1/chat/completions): Ollama, llama.cpp, vLLM, OpenAI.
    Openai,
    /// No generator: question requests wait with Generated=False, reason NoGenerator.
    None,
}

/// Generator flags, shared by `controller`, `ask` and `generate`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GeneratorOpts {
    /// SQL generator (default: offline for --backend local, bedrock for --backend aws).
    #[arg(long, env = "SQLCTL_GENERATOR", value_enum)]
    pub generator: Option<Provider>,
    /// Model id (Bedrock model or inference profile id; OpenAI-compatible model name).
    #[arg(long, env = "SQLCTL_BEDROCK_MODEL")]
    pub model: Option<String>,
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1.
    #[arg(long, env = "SQLCTL_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// Token budget for the schema part of the prompt.
    #[arg(long, default_value_t = 6000)]
    pub max_schema_tokens: usize,
    /// Never put sample column values in prompts (they may be personal data).
    #[arg(long)]
    pub no_sample_values: bool,
    /// Name of the environment variable holding the OpenAI-compatible API key (default:
    /// SQLCTL_OPENAI_API_KEY, then OPENAI_API_KEY; none is fine for a local server). A name, not
    /// the key, so the key never appears in argv, `ps` or --help.
    #[arg(long, value_name = "VAR")]
    pub openai_api_key_env: Option<String>,
    /// Region of the Bedrock endpoint when it is not AWS_REGION (models are enabled per region).
    #[arg(long, env = "SQLCTL_BEDROCK_REGION")]
    pub bedrock_region: Option<String>,
    /// Timeout of one model call, e.g. 60s (default 60s).
    #[arg(long, env = "SQLCTL_MODEL_TIMEOUT", value_parser = crate::spec::quantity::parse_duration)]
    pub model_timeout: Option<std::time::Duration>,
    /// Connect timeout to the model endpoint, e.g. 5s (default 5s).
    #[arg(long, value_parser = crate::spec::quantity::parse_duration)]
    pub model_connect_timeout: Option<std::time::Duration>,
}

impl GeneratorOpts {
    /// The provider in effect for `backend`.
    pub fn provider(&self, backend: &str) -> Provider {
        self.generator.unwrap_or(if backend == "aws" { Provider::Bedrock } else { Provider::Offline })
    }

    /// Builds the generator; `None` for `--generator none`.
    pub async fn build(&self, backend: &str) -> anyhow::Result<Option<Arc<dyn Generator>>> {
        let _ = self.max_schema_tokens;
        match self.provider(backend) {
            Provider::None => Ok(None),
            Provider::Offline => Ok(Some(Arc::new(
                crate::generate::offline::OfflineGenerator::new().with_max_schema_tokens(self.max_schema_tokens),
            ))),
            #[cfg(not(feature = "aws"))]
            Provider::Bedrock => Err(crate::aws::unavailable("--generator bedrock (SQLCTL_GENERATOR=bedrock)")),
            #[cfg(feature = "aws")]
            Provider::Bedrock => {
                let Some(model) = self.model.clone().filter(|m| !m.trim().is_empty()) else {
                    anyhow::bail!(
                        "--generator bedrock needs a model id: pass --model or set SQLCTL_BEDROCK_MODEL (a Bedrock model or inference profile id enabled in your region, e.g. {})",
                        crate::generate::bedrock::EXAMPLE_MODEL
                    );
                };
                let opts = crate::generate::bedrock::BedrockOptions {
                    region: self.bedrock_region.clone(),
                    prompt: self.prompt_options(),
                    connect_timeout: self.model_connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                    request_timeout: self.model_timeout.unwrap_or(DEFAULT_MODEL_TIMEOUT),
                    ..Default::default()
                };
                let g = crate::generate::bedrock::BedrockGenerator::new(model, opts).await?;
                Ok(Some(Arc::new(g)))
            }
            Provider::Openai => {
                let Some(base_url) = self.openai_base_url.clone().filter(|u| !u.trim().is_empty()) else {
                    anyhow::bail!(
                        "--generator openai needs the server's base URL: pass --openai-base-url or set SQLCTL_OPENAI_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama)"
                    );
                };
                let Some(model) = self.model.clone().filter(|m| !m.trim().is_empty()) else {
                    anyhow::bail!(
                        "--generator openai needs a model name: pass --model or set SQLCTL_BEDROCK_MODEL (e.g. llama3.1 for Ollama)"
                    );
                };
                let opts = crate::generate::openai::OpenAiOptions {
                    api_key: self.openai_api_key()?,
                    prompt: self.prompt_options(),
                    connect_timeout: self.model_connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                    request_timeout: self.model_timeout.unwrap_or(DEFAULT_MODEL_TIMEOUT),
                    ..crate::generate::openai::OpenAiOptions::new(base_url)
                };
                let g = crate::generate::openai::OpenAiGenerator::new(model, opts)?;
                Ok(Some(Arc::new(g)))
            }
        }
    }
}

/// Default timeout of one model call (LLM providers).
const DEFAULT_MODEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Default connect timeout to a model endpoint (LLM providers).
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Helpers of the LLM providers (Bedrock, OpenAI-compatible).
impl GeneratorOpts {
    /// What goes into an LLM prompt. A zero budget (a `GeneratorOpts::default()` built in code
    /// rather than parsed by clap) means the flag's default, 6,000 tokens.
    pub fn prompt_options(&self) -> crate::generate::prompt::PromptOptions {
        crate::generate::prompt::PromptOptions {
            max_schema_tokens: if self.max_schema_tokens == 0 { 6000 } else { self.max_schema_tokens },
            sample_values: !self.no_sample_values,
        }
    }

    /// The OpenAI-compatible API key from the environment: the variable named by
    /// `--openai-api-key-env` (which must then be set), else SQLCTL_OPENAI_API_KEY, else
    /// OPENAI_API_KEY, else none (local servers need no key).
    pub fn openai_api_key(&self) -> anyhow::Result<Option<String>> {
        let read = |var: &str| std::env::var(var).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let Some(var) = &self.openai_api_key_env {
            return match read(var) {
                Some(k) => Ok(Some(k)),
                None => anyhow::bail!("--openai-api-key-env {var}: the environment variable {var} is not set"),
            };
        }
        Ok(read("SQLCTL_OPENAI_API_KEY").or_else(|| read("OPENAI_API_KEY")))
    }
}

/// The catalog as the generator should see it: on the local backend, sample values of
/// low-cardinality text columns are included unless `--no-sample-values` (they reach the model
/// and may be personal data).
pub async fn catalog_for(g: &super::Context, opts: &GeneratorOpts) -> anyhow::Result<Arc<dyn crate::catalog::Catalog>> {
    if g.backend == "local" {
        return Ok(Arc::new(
            crate::catalog::local::LocalCatalog::new(g.data_dir()).with_sample_values(!opts.no_sample_values),
        ));
    }
    g.catalog().await
}
