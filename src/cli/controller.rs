//! `sqlctl controller`: the reconcile loop, leader election, metrics and graceful drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Exit;
use crate::config::Context;
use crate::config::generator::GeneratorOpts;
use crate::controller::{Controller, ControllerConfig, Parts, emf, metrics};
use crate::notify::gchat::ChatMetrics;
use crate::spec::{DurationSpec, EngineKind, Policy, quantity::parse_duration};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Serve /healthz, /readyz and /metrics here (e.g. 127.0.0.1:9090; port 0 picks one).
    #[arg(long, env = "SQLCTL_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Write CloudWatch Embedded Metric Format lines to stdout (namespace `sqlctl`; see
    /// `controller::emf` for the metric names).
    #[arg(long, env = "SQLCTL_METRICS_EMF", value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_emf: bool,
    /// How often an EMF line is written (with --metrics-emf).
    #[arg(long, env = "SQLCTL_METRICS_EMF_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub metrics_emf_interval: Duration,
    /// Approval policy file (YAML): approvers, per-database admin approvers, fourEyes, approvalTimeout.
    #[arg(long, env = "SQLCTL_POLICY")]
    pub policy: Option<PathBuf>,
    /// Four-eyes: a requester may not approve their own request.
    #[arg(long)]
    pub four_eyes: bool,
    /// Default and maximum approval wait (specs may only shorten it).
    #[arg(long, value_parser = DurationSpec::parse)]
    pub approval_timeout: Option<DurationSpec>,
    /// Engine for requests that do not name one.
    #[arg(long, value_parser = ["local", "athena"])]
    pub engine: Option<String>,
    /// Full resync period of active records.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,
    /// How often semantic models and verified queries are checked against the catalog
    /// (re-planned when their spec or a table they read changed; Stale when they no longer plan).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub plan_interval: Duration,
    /// Leader lease duration; a standby takes over after this long without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// The leader steps down if it could not renew for this long (must be < lease duration).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How often the lease is renewed (and a standby looks at it).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// Generation attempts per round (self-correction).
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Identity in the lease (default: hostname-pid-random).
    #[arg(long, env = "SQLCTL_IDENTITY")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub generator: GeneratorOpts,
    /// The approval console beside the controller (`--console-addr` and friends).
    #[command(flatten)]
    pub console: super::console::ControllerConsoleArgs,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            workers: 8,
            metrics_addr: None,
            metrics_emf: false,
            metrics_emf_interval: crate::controller::emf::DEFAULT_INTERVAL,
            policy: None,
            four_eyes: false,
            approval_timeout: None,
            engine: None,
            resync: Duration::from_secs(30),
            plan_interval: Duration::from_secs(10),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            max_attempts: 3,
            identity: None,
            generator: GeneratorOpts::default(),
            console: Default::default(),
        }
    }
}

impl Args {
    /// Resolves flags and the policy file into a ready controller.
    pub async fn build(&self, g: &Context) -> anyhow::Result<Controller> {
        if self.renew_deadline >= self.lease_duration {
            return Err(Exit::usage("--renew-deadline must be shorter than --lease-duration"));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(Exit::usage("--retry-period must be shorter than --renew-deadline"));
        }
        if self.metrics_emf && self.metrics_emf_interval.is_zero() {
            return Err(Exit::usage("--metrics-emf-interval must be longer than 0s (CloudWatch resolves 1s at best)"));
        }
        let store = g.controller_store().await?;
        let mut policy = match &self.policy {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Exit::refused(format!("reading --policy {}: {e}", p.display())))?;
                serde_saphyr::from_str::<Policy>(&text)
                    .map_err(|e| Exit::refused(format!("--policy {}: {e}", p.display())))?
            }
            // No --policy: keep (and use) the stored policy; without --four-eyes or
            // --approval-timeout it is never overwritten.
            None => store.get_policy().await?.unwrap_or_default(),
        };
        if self.four_eyes {
            policy.four_eyes = true;
        }
        if let Some(t) = &self.approval_timeout {
            policy.approval_timeout = Some(t.clone());
        }
        let default_engine = match self.engine.as_deref() {
            Some("athena") => EngineKind::Athena,
            Some(_) => EngineKind::Local,
            None => g.default_engine(),
        };
        let mut config = ControllerConfig {
            default_engine,
            workers: self.workers.max(1),
            resync: self.resync,
            plan_interval: self.plan_interval.max(Duration::from_millis(100)),
            max_attempts: self.max_attempts.max(1),
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
            ..ControllerConfig::default()
        };
        if let Some(id) = &self.identity {
            config.identity = id.clone();
        }
        // The chat notifier counts into this handle, and /metrics renders it.
        let chat_metrics = Arc::new(ChatMetrics::default());
        let controller = Controller::new(Parts {
            store,
            catalog: crate::config::generator::catalog_for(g, &self.generator).await?,
            engines: g.engines().await?,
            results: g.results().await?,
            generator: self.generator.build(&g.backend).await?,
            notifier: g.notifier(&chat_metrics).await?,
            policy,
            // Only explicit policy flags change the shared record (audited when written).
            write_policy: self.policy.is_some() || self.four_eyes || self.approval_timeout.is_some(),
            config,
        });
        controller.metrics.register_chat(chat_metrics);
        Ok(controller)
    }

    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let controller = self.build(g).await?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(super::shutdown_on_signal(tx));
        if let Some(addr) = self.metrics_addr {
            let store = g.store().await?;
            let probe = Arc::new(metrics::ReadyProbe::new(controller.context().config.identity.clone()));
            let (local, _h) = metrics::serve(addr, controller.metrics.clone(), store, probe, rx.clone()).await?;
            tracing::info!(addr = %local, "serving /healthz, /livez, /readyz and /metrics");
        }
        self.console.start(g, rx.clone()).await?;
        // --backend aws: decisions from the SQS response queue wake requests at once.
        #[cfg(feature = "aws")]
        if let Some(consumer) =
            g.decision_consumer(controller.context().store.clone(), controller.context().waker.clone()).await?
        {
            tokio::spawn(consumer.run(rx.clone()));
        }
        let emf = self.metrics_emf.then(|| {
            let ctx = controller.context();
            tracing::info!(interval = ?self.metrics_emf_interval, "writing CloudWatch EMF metrics to stdout");
            emf::spawn(
                emf::Emitter::new(controller.metrics.clone(), ctx.config.identity.clone()),
                self.metrics_emf_interval,
                emf::Stdout,
            )
        });
        tracing::info!(identity = %controller.context().config.identity, workers = self.workers, home = %g.home().display(), "controller starting");
        let result = controller.run(rx).await;
        if let Some(emf) = emf {
            emf.stop().await; // the last interval's counts, also when leadership was lost
        }
        result?;
        tracing::info!("controller stopped");
        Ok(())
    }
}
