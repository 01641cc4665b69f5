//! `sqlctl wait NAME… --for phase=P|condition=TYPE[=STATUS]|delete`: exit 0 once every named
//! request meets it; 1 on timeout, when a request waited for by phase ends in another terminal
//! phase, or when one is gone (except for `--for delete`).

use std::time::{Duration, Instant};

use super::{Exit, get_request, output};
use crate::config::Context;
use crate::spec::{ObjectKey, Phase, QueryRequest, quantity::parse_duration};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The requests: NAME, or TYPE/NAME (queryrequest/NAME, qr/NAME); all must meet --for.
    #[arg(value_parser = super::request_name, required = true)]
    pub names: Vec<String>,
    /// What to wait for: phase=PHASE (e.g. phase=Done), condition=TYPE (status True, e.g.
    /// condition=Approved), condition=TYPE=STATUS (e.g. condition=Ready=False), or delete.
    #[arg(long = "for", value_parser = parse_for, value_name = "CONDITION")]
    pub for_: For,
    /// Give up after this long in all (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// What `--for` waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum For {
    Phase(Phase),
    /// A condition of this type with this status (compared without regard to case).
    Condition(String, String),
    Delete,
}

fn parse_for(s: &str) -> Result<For, String> {
    if s == "delete" {
        return Ok(For::Delete);
    }
    if let Some(v) = s.strip_prefix("phase=") {
        return super::get::parse_phase(v).map(For::Phase);
    }
    if let Some(v) = s.strip_prefix("condition=") {
        let (type_, status) = v.split_once('=').unwrap_or((v, "True"));
        if type_.is_empty() || status.is_empty() {
            return Err(format!(
                "--for condition= needs a type, e.g. condition=Approved or condition=Ready=False, not {s:?}"
            ));
        }
        return Ok(For::Condition(type_.to_string(), status.to_string()));
    }
    Err(format!("--for takes phase=PHASE, condition=TYPE[=STATUS] or delete, not {s:?}"))
}

impl For {
    fn met(&self, r: &QueryRequest) -> bool {
        match self {
            For::Phase(p) => r.phase() == *p,
            For::Condition(type_, status) => r
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_.eq_ignore_ascii_case(type_)))
                .is_some_and(|c| c.status.eq_ignore_ascii_case(status)),
            For::Delete => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            For::Phase(p) => format!("phase={p}"),
            For::Condition(t, s) => format!("condition={t}={s}"),
            For::Delete => "delete".into(),
        }
    }
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        let deadline = Instant::now() + self.timeout;
        for name in &self.names {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.for_ == For::Delete {
                wait_gone(store.as_ref(), g, name, left).await?;
                println!("queryrequest/{name} deleted");
                continue;
            }
            get_request(store.as_ref(), g, name).await?;
            let by_phase = matches!(self.for_, For::Phase(_));
            let r =
                wait_for(store.as_ref(), g, name, left, |r| self.for_.met(r) || (by_phase && r.phase().is_terminal()))
                    .await?;
            if !self.for_.met(&r) {
                let why = r
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().rev().find(|c| c.status == "False"))
                    .map(|c| format!(": {} {}", c.reason, c.message))
                    .unwrap_or_default();
                return Err(Exit::refused(format!(
                    "{name} ended in phase {}{why} (waited for {})",
                    r.phase(),
                    self.for_.describe()
                )));
            }
            println!("queryrequest/{name} condition met: {}", self.for_.describe());
        }
        Ok(())
    }
}

/// Polls until request `name` is gone from the store; refuses with exit 1 on timeout.
async fn wait_gone(store: &dyn Store, g: &Context, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let key = ObjectKey::new(&g.namespace, name);
    loop {
        let Some(r) = store.get(&key).await? else { return Ok(()) };
        if started.elapsed() >= timeout {
            let marked = if r.metadata.deletion_timestamp.is_some() {
                "it is marked for deletion; is a controller running to cancel its query? (`sqlctl controller`)"
            } else {
                "it is not being deleted (`sqlctl delete` it first)"
            };
            return Err(Exit::refused(format!(
                "timed out after {} waiting for {name} to be deleted: {marked}",
                crate::spec::quantity::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `done(record)` holds; refuses with exit 1 on timeout or when the record is gone.
/// Shows progress on stderr when it is a terminal.
pub async fn wait_for(
    store: &dyn Store,
    g: &Context,
    name: &str,
    timeout: Duration,
    done: impl Fn(&QueryRequest) -> bool,
) -> anyhow::Result<QueryRequest> {
    let started = Instant::now();
    let tty = output::stderr_is_tty();
    let mut last_phase = None;
    loop {
        let r = get_request(store, g, name).await?;
        if done(&r) {
            if tty && last_phase.is_some() {
                eprintln!();
            }
            return Ok(r);
        }
        if tty && last_phase != Some(r.phase()) {
            eprint!("\rwaiting for {name}: {} ({:.0}s)        ", r.phase(), started.elapsed().as_secs_f64());
            last_phase = Some(r.phase());
        }
        if started.elapsed() >= timeout {
            if tty {
                eprintln!();
            }
            return Err(Exit::refused(format!(
                "timed out after {} waiting for {name} (phase {}); is a controller running? (`sqlctl controller`)",
                crate::spec::quantity::format_duration(timeout),
                r.phase()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
