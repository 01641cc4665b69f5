//! Resolving configuration into backends: the one place (with `cli`) that names concrete
//! implementations. Flags win over environment variables, which win over defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

pub mod generator;

use crate::catalog::{Catalog, local::LocalCatalog};
use crate::engine::{Engine, datafusion::LocalEngine};
use crate::spec::EngineKind;
use crate::store::{Store, sqlite::SqliteStore};

/// Global options shared by every subcommand.
#[derive(clap::Args, Debug, Clone)]
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
}

impl GlobalOpts {
    pub fn home(&self) -> PathBuf {
        if let Some(h) = &self.home {
            return h.clone();
        }
        match std::env::var_os("HOME") {
            Some(h) => Path::new(&h).join(".sqlctl"),
            None => PathBuf::from(".sqlctl"),
        }
    }
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| self.home().join("data"))
    }
    pub fn results_dir(&self) -> PathBuf {
        self.home().join("results")
    }
    pub fn state_db(&self) -> PathBuf {
        self.home().join("state.db")
    }

    fn require_local(&self) -> anyhow::Result<()> {
        if self.backend != "local" {
            anyhow::bail!("--backend {} is not available in this build yet; use --backend local", self.backend);
        }
        Ok(())
    }

    /// Opens the store.
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.require_local()?;
        let path = self.state_db();
        let store = SqliteStore::open(&path).with_context(|| format!("opening the state database {}", path.display()))?;
        Ok(Arc::new(store))
    }

    pub async fn catalog(&self) -> anyhow::Result<Arc<dyn Catalog>> {
        self.require_local()?;
        Ok(Arc::new(LocalCatalog::new(self.data_dir())))
    }

    pub async fn engines(&self) -> anyhow::Result<HashMap<EngineKind, Arc<dyn Engine>>> {
        self.require_local()?;
        let mut m: HashMap<EngineKind, Arc<dyn Engine>> = HashMap::new();
        m.insert(EngineKind::Local, Arc::new(LocalEngine::new(self.data_dir(), self.results_dir())));
        Ok(m)
    }

    pub fn default_engine(&self) -> EngineKind {
        if self.backend == "aws" { EngineKind::Athena } else { EngineKind::Local }
    }
}
