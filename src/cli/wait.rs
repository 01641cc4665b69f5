//! `sqlctl wait NAME --for phase=P`: exit 0 once the request is in phase P, 1 on timeout or when
//! it ends in another terminal phase.

use std::time::{Duration, Instant};

use super::{Exit, get_request, output};
use crate::config::Context;
use crate::spec::{Phase, QueryRequest, quantity::parse_duration};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The request: NAME, or TYPE/NAME (queryrequest/NAME, qr/NAME).
    #[arg(value_parser = super::request_name)]
    pub name: String,
    /// The condition to wait for: phase=PHASE (e.g. phase=Done, phase=AwaitingApproval).
    #[arg(long = "for", value_parser = parse_for)]
    pub for_: Phase,
    /// Give up after this long (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_for(s: &str) -> Result<Phase, String> {
    let v = s.strip_prefix("phase=").ok_or_else(|| format!("--for takes phase=PHASE, not {s:?}"))?;
    super::get::parse_phase(v)
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        get_request(store.as_ref(), g, &self.name).await?;
        let r = wait_for(store.as_ref(), g, &self.name, self.timeout, |r| {
            r.phase() == self.for_ || r.phase().is_terminal()
        })
        .await?;
        if r.phase() == self.for_ {
            println!("queryrequest/{} condition met: phase={}", self.name, r.phase());
            return Ok(());
        }
        let why = r
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().rev().find(|c| c.status == "False"))
            .map(|c| format!(": {} {}", c.reason, c.message))
            .unwrap_or_default();
        Err(Exit::refused(format!("{} ended in phase {}{why} (waited for {})", self.name, r.phase(), self.for_)))
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
