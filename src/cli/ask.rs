//! `sqlctl ask "QUESTION" | --sql SQL`: the one-shot interactive path. Creates a request, waits
//! for its SQL, shows it, lets you approve / refine / reject on a terminal (or waits for a
//! decision from elsewhere), runs it and prints the result. Runs a controller in-process when
//! none is up.

use std::time::Duration;

use tokio::sync::watch;

use super::{Exit, decide, output, wait::wait_for};
use crate::config::Context;
use crate::controller::lease::leader_alive;
use crate::spec::{
    DecisionKind, EngineKind, Limits, Phase, QueryRequest, REQUESTER_ANNOTATION, quantity::parse_duration,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The question, in plain language.
    pub question: Option<String>,
    /// Hand-written SQL instead of a question (still guarded and approved).
    #[arg(long, conflicts_with = "question")]
    pub sql: Option<String>,
    /// Database to ask (default: tpch, or the database of the request a follow-up follows).
    #[arg(short, long)]
    pub database: Option<String>,
    /// Ask a follow-up to the request NAME ("only 1995", "now by region", "top 3 instead"):
    /// generation sees its question, its SQL and its result columns.
    #[arg(long, value_name = "NAME", conflicts_with = "sql")]
    pub follow_up: Option<String>,
    /// Request name (default: ask-<random>).
    #[arg(long)]
    pub name: Option<String>,
    /// Engine (default: the backend's).
    #[arg(long, value_parser = ["local", "athena"])]
    pub engine: Option<String>,
    /// Rows kept in the preview and printed.
    #[arg(long)]
    pub max_rows: Option<u64>,
    /// Give up waiting after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Who asks (and, on a terminal, decides); default: the OS user.
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    #[command(flatten)]
    pub controller: AskControllerOpts,
}

/// Settings for the in-process controller `ask` starts when none is running.
#[derive(clap::Args, Debug)]
pub struct AskControllerOpts {
    /// Never start an in-process controller (wait for an external one).
    #[arg(long)]
    pub no_controller: bool,
    #[command(flatten)]
    pub generator: crate::config::generator::GeneratorOpts,
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let (question, sql) = match (self.question.clone(), self.sql.clone()) {
            (Some(q), None) => (Some(q), None),
            (None, Some(s)) => (None, Some(s)),
            _ => return Err(Exit::usage("ask needs a QUESTION or --sql SQL")),
        };
        let me = g.decider(self.as_.as_deref()).await?;
        let name =
            self.name.clone().unwrap_or_else(|| format!("ask-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        // A follow-up reads the database and engine of the request it follows unless told.
        let earlier = match &self.follow_up {
            None => None,
            Some(of) => {
                let key = crate::spec::ObjectKey::new(g.namespace.clone(), of.clone());
                match g.store().await?.get(&key).await? {
                    Some(r) => Some(r),
                    None => {
                        return Err(Exit::refused(format!(
                            "queryrequest {of} not found in namespace {}: --follow-up names an earlier request",
                            g.namespace
                        )));
                    }
                }
            }
        };
        let database = match (&self.database, &earlier) {
            (Some(d), _) => d.clone(),
            (None, Some(e)) => e.spec.catalog.database.clone(),
            (None, None) => "tpch".to_string(),
        };
        let mut req = QueryRequest::new(name.clone(), database.clone()).with_namespace(g.namespace.clone());
        req.spec.question = question;
        req.spec.sql = sql;
        req.spec.engine = match self.engine.as_deref() {
            Some("athena") => Some(EngineKind::Athena),
            Some(_) => Some(EngineKind::Local),
            None => earlier.as_ref().and_then(|e| e.spec.engine),
        };
        req.spec.follow_up = self.follow_up.clone().map(|of| crate::spec::FollowUpRef { of });
        req.spec.limits = Limits { max_rows: self.max_rows, ..Default::default() };
        let problems = crate::spec::validate::validate(&req);
        if !problems.is_empty() {
            let lines: Vec<String> = problems.iter().map(|p| format!("  {}: {}", p.path, p.message)).collect();
            return Err(Exit::refused(format!("the request is not valid:\n{}", lines.join("\n"))));
        }
        if let Some(sql) = &req.spec.sql {
            crate::guard::check_read_only(sql, &database, &[]).map_err(|e| Exit::refused(format!("refused: {e}")))?;
        }
        if g.backend == "local" && !g.data_dir().join(&database).exists() {
            if database == "tpch" {
                eprintln!(
                    "No local warehouse yet: writing the TPC-H sample once (`sqlctl init --scale N` to choose the size)."
                );
                super::init::write_warehouse(g, "tpch", 0.1).await?;
            } else {
                return Err(Exit::refused(format!(
                    "database {} not found under {}; put Parquet/CSV files in {}/<table>.parquet or run `sqlctl init`",
                    database,
                    g.data_dir().display(),
                    g.data_dir().join(&database).display()
                )));
            }
        }
        req.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), me.clone());
        super::apply::check_store_size(&req).map_err(|m| Exit::refused(format!("{m}\nnothing was written")))?;
        let store = g.store().await?;
        store.create(req).await?;
        eprintln!("queryrequest/{name} created");

        // An in-process controller when none is up.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut in_process = None;
        if !self.controller.no_controller && !leader_alive(store.as_ref(), Duration::from_millis(2500)).await {
            let args = super::controller::Args {
                workers: 2,
                generator: self.controller.generator.clone(),
                ..Default::default()
            };
            let controller = args.build(g).await?;
            in_process = Some(tokio::spawn(controller.run(stop_rx)));
        }
        let result = self.converse(g, store.as_ref(), &name, &me).await;
        if let Some(h) = in_process {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
        result
    }

    async fn converse(&self, g: &Context, store: &dyn crate::store::Store, name: &str, me: &str) -> anyhow::Result<()> {
        let name = name.to_string();
        let tty = output::stdin_is_tty();
        loop {
            let r = wait_for(store, g, &name, self.timeout, |r| {
                matches!(r.phase(), Phase::AwaitingApproval) || r.phase().is_terminal()
            })
            .await?;
            if r.phase().is_terminal() {
                return finish(g, &r);
            }
            decide::show_sql(&r);
            let digest =
                r.status.as_ref().and_then(|s| s.generated.as_ref()).map(|g| g.sql_digest.clone()).unwrap_or_default();
            let round = r.status.as_ref().map(|s| s.approval_round).unwrap_or(0);
            if !tty {
                eprintln!(
                    "waiting for a decision: `sqlctl approve {name} --digest {}{}` (or refine / reject)",
                    &digest[..digest.len().min(16)],
                    if crate::approval::over_budget(&r).is_some() { " --allow-over-budget" } else { "" }
                );
                let r = wait_for(store, g, &name, self.timeout, |r| {
                    r.phase() != Phase::AwaitingApproval || r.status.as_ref().is_some_and(|s| s.approval_round != round)
                })
                .await?;
                if r.phase().is_terminal() {
                    return finish(g, &r);
                }
                continue;
            }
            // Over budget, the approve option says so: choosing it is the explicit over-budget
            // approval (`approve --allow-over-budget`), still subject to the policy.
            let over_budget = crate::approval::over_budget(&r).is_some();
            let answer = output::prompt(if over_budget {
                "[a]pprove over budget, [r]efine, re[j]ect, or [q]uit and decide later? "
            } else {
                "[a]pprove, [r]efine, re[j]ect, or [q]uit and decide later? "
            })
            .unwrap_or_default();
            let (decision, feedback, comment) = match answer.to_ascii_lowercase().as_str() {
                "a" | "approve" | "y" | "yes" => (DecisionKind::Approve, None, None),
                "r" | "refine" => {
                    let f = output::prompt("What should change? ").unwrap_or_default();
                    if f.trim().is_empty() {
                        eprintln!("no feedback given; asking again");
                        continue;
                    }
                    (DecisionKind::Refine, Some(f), None)
                }
                "j" | "reject" => {
                    (DecisionKind::Reject, None, output::prompt("Why (optional)? ").filter(|s| !s.is_empty()))
                }
                _ => {
                    eprintln!("left {name} awaiting approval; decide later with `sqlctl approve|refine|reject {name}`");
                    return Ok(());
                }
            };
            let input = crate::approval::DecisionInput {
                decision,
                by: me.to_string(),
                digest: Some(digest.clone()),
                feedback,
                comment,
                source: "cli".into(),
                allow_over_budget: over_budget && decision == DecisionKind::Approve,
            };
            if let Err(e) = decide::decide(g, &r, input, &Default::default()).await {
                eprintln!("sqlctl: {e}");
                if decision != DecisionKind::Refine {
                    continue;
                }
            }
            // Wait for the controller to act on the decision before looking again.
            let r = wait_for(store, g, &name, self.timeout, |r| {
                r.phase() != Phase::AwaitingApproval || r.status.as_ref().is_some_and(|s| s.approval_round != round)
            })
            .await?;
            if r.phase().is_terminal() {
                return finish(g, &r);
            }
        }
    }
}

/// Prints the outcome: the result table for Done, the reason otherwise (exit 1).
fn finish(_g: &Context, r: &QueryRequest) -> anyhow::Result<()> {
    let st = r.status.clone().unwrap_or_default();
    if r.phase() == Phase::Done {
        if let Some(e) = &st.execution {
            // One row: the answer line first (`revenue: 21,356,596,030.63`), then the row.
            if let Some(a) = &e.answer {
                println!("{}", output::short(&a.line(), 400));
            }
            if let Some(p) = &e.preview {
                print!("{}", output::typed_preview_table(&p.columns, &p.rows, &e.columns));
            }
            eprintln!(
                "{} rows in {} ms{} · full result: {}",
                e.rows.unwrap_or(0),
                e.duration_ms.unwrap_or(0),
                e.preview.as_ref().filter(|p| p.truncated).map(|_| " (preview truncated)").unwrap_or(""),
                e.output_location.as_deref().unwrap_or("-")
            );
        }
        return Ok(());
    }
    let why = st
        .conditions
        .iter()
        .rev()
        .find(|c| c.status == "False")
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default();
    Err(Exit::refused(format!(
        "{} is {}: {why} (`sqlctl describe {}` for details)",
        r.metadata.name,
        r.phase(),
        r.metadata.name
    )))
}
