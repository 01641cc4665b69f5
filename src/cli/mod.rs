//! `sqlctl`, kubectl-style. One file per subcommand: a clap `Args` struct plus `run`; this file
//! only parses and dispatches.
//!
//! Exit codes: 0 ok, 1 refused or failed, 2 usage.

pub mod apply;
pub mod ask;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(not(feature = "aws"))]
#[path = "aws_unavailable.rs"]
pub mod aws;
pub mod completion;
pub mod config_cmd;
pub mod console;
pub mod controller;
pub mod decide;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod eval;
pub mod explain;
pub mod generate;
pub mod get;
pub mod healthcheck;
pub mod init;
pub mod jsonpath;
pub mod objects;
pub mod output;
pub mod results;
pub mod schema;
pub mod verify;
pub mod version;
pub mod wait;

use clap::{Parser, Subcommand};

use crate::config::{Context, GlobalOpts};
pub use crate::exit::Exit;
use crate::spec::ObjectKind;

#[derive(Parser, Debug)]
#[command(
    name = "sqlctl",
    version,
    about = "Ask a data lake questions in plain language; a human approves every query that runs.",
    long_about = "sqlctl manages QueryRequest resources: a question (or SQL) you apply, SQL the controller \
generates and guards, a decision a human makes on exactly that SQL, and the result.\n\n\
Quick start (no AWS account, no network):\n  sqlctl ask --sql \"select n_name from nation order by n_name limit 5\"\n\n\
Exit codes: 0 ok, 1 refused or failed, 2 usage.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update requests, semantic models and verified queries from YAML files,
    /// directories or stdin (-).
    Apply(apply::Args),
    /// List requests (or `get sm`, `get vq`: semantic models, verified queries), or show one.
    Get(get::Args),
    /// Show a request (or a semantic model, a verified query) in detail.
    Describe(describe::Args),
    /// Show what `apply` would change, without writing (exit 0 no changes, 1 changes).
    Diff(diff::Args),
    /// Delete a request (a running query is cancelled first), semantic model or verified query.
    Delete(delete::Args),
    /// Print a finished request's full result.
    Results(results::Args),
    /// Wait until a request reaches a phase.
    Wait(wait::Args),
    /// Approve the SQL awaiting approval (binds to its digest).
    Approve(decide::ApproveArgs),
    /// Ask for different SQL: regenerate with your feedback.
    Refine(decide::RefineArgs),
    /// Reject the SQL awaiting approval.
    Reject(decide::RejectArgs),
    /// Turn a request that ran into a VerifiedQuery (its question, the SQL that ran as a template).
    Verify(verify::Args),
    /// One shot: create a request, review its SQL, decide, and print the result.
    Ask(ask::Args),
    /// Run the controller (reconcile loop, leader election, metrics).
    Controller(controller::Args),
    /// Serve the approval web console.
    Console(console::Args),
    /// Probe a controller's /healthz (container HEALTHCHECK; no shell or curl needed).
    Healthcheck(healthcheck::Args),
    /// Write the TPC-H sample warehouse for the local engine.
    Init(init::Args),
    /// Print the JSON Schema of a kind (QueryRequest by default).
    Schema(schema::Args),
    /// Describe a field of a kind from its schema, e.g. queryrequest.spec.limits, sm.spec.metrics.
    Explain(explain::Args),
    /// Generate SQL for a question without creating a request.
    Generate(generate::Args),
    /// Run a question set and report execution accuracy.
    Eval(eval::Args),
    /// AWS helpers: bootstrap resources for emulators and sandboxes.
    #[command(subcommand)]
    Aws(aws::Command),
    /// Show the resolved configuration (secrets redacted).
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::Args),
    /// Print the client's version and the running controller's (from the lease it holds).
    Version(version::Args),
}

/// An error that carries its exit code. Anything else exits 1.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global.resolve();
    match cli.command {
        Command::Apply(a) => a.run(&g).await,
        Command::Get(a) => a.run(&g).await,
        Command::Describe(a) => a.run(&g).await,
        Command::Diff(a) => a.run(&g).await,
        Command::Delete(a) => a.run(&g).await,
        Command::Results(a) => a.run(&g).await,
        Command::Wait(a) => a.run(&g).await,
        Command::Approve(a) => a.run(&g).await,
        Command::Refine(a) => a.run(&g).await,
        Command::Reject(a) => a.run(&g).await,
        Command::Verify(a) => a.run(&g).await,
        Command::Ask(a) => a.run(&g).await,
        Command::Controller(a) => a.run(&g).await,
        Command::Console(a) => a.run(&g).await,
        Command::Healthcheck(a) => a.run(&g).await,
        Command::Init(a) => a.run(&g).await,
        Command::Schema(a) => a.run(&g).await,
        Command::Explain(a) => a.run(&g).await,
        Command::Generate(a) => a.run(&g).await,
        Command::Eval(a) => a.run(&g).await,
        Command::Aws(a) => a.run(&g).await,
        Command::Config(a) => a.run(&g).await,
        Command::Completion(a) => a.run(&g).await,
        Command::Version(a) => a.run(&g).await,
    }
}

/// Reads a request by name or fails with exit 1 and a hint.
/// The type names a request can be given by, kubectl style: `NAME`, or `TYPE/NAME` with TYPE
/// one of these (so `sqlctl get -o name | xargs sqlctl delete` works).
pub const REQUEST_TYPE_NAMES: &[&str] = &["queryrequest", "queryrequests", "qr", "queryrequest.sqlctl.dev"];

/// A request name as typed: `x`, `qr/x`, `queryrequest/x`, `queryrequests/x` or
/// `queryrequest.sqlctl.dev/x` (types case-insensitive) → `x`. Another type, or an empty name,
/// is a usage error that says which forms are taken. The name itself is checked where it is
/// looked up (a name no request can have is simply not found).
pub fn request_name(s: &str) -> Result<String, String> {
    let Some((kind, name)) = s.split_once('/') else {
        return if s.is_empty() { Err("a request name must not be empty".into()) } else { Ok(s.to_string()) };
    };
    if !REQUEST_TYPE_NAMES.iter().any(|t| t.eq_ignore_ascii_case(kind)) {
        return Err(format!(
            "{s:?}: sqlctl has no resource type {kind:?} here; name a request as NAME or queryrequest/NAME (also qr/NAME)"
        ));
    }
    if name.is_empty() || name.contains('/') {
        return Err(format!("{s:?} is not TYPE/NAME: give one request name after the type"));
    }
    Ok(name.to_string())
}

/// A kind named as kubectl names resource types: plural, singular or short name, or the kind
/// itself, case-insensitive (`semanticmodels`, `semanticmodel`, `sm`, `SemanticModel`;
/// `queryrequest.sqlctl.dev` for requests too).
pub fn resource_type(s: &str) -> Option<ObjectKind> {
    if REQUEST_TYPE_NAMES.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        return Some(ObjectKind::QueryRequest);
    }
    ObjectKind::parse_resource(s.strip_suffix(".sqlctl.dev").unwrap_or(s))
}

/// An object as typed for `get`, `describe` and `delete`: `NAME` (a request, or an object of
/// the kind named first), `TYPE/NAME` of any kind, or a bare TYPE. Only the form is checked here.
pub(crate) fn object_arg(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        None if s.is_empty() => Err("a name must not be empty".into()),
        None => Ok(s.to_string()),
        Some((kind, name)) => {
            if resource_type(kind).is_none() {
                return Err(format!(
                    "{s:?}: sqlctl has no resource type {kind:?}; name an object as NAME (a request) or TYPE/NAME: queryrequest/NAME (qr/NAME), semanticmodel/NAME (sm/NAME), verifiedquery/NAME (vq/NAME)"
                ));
            }
            if name.is_empty() || name.contains('/') {
                return Err(format!("{s:?} is not TYPE/NAME: give one name after the type"));
            }
            Ok(s.to_string())
        }
    }
}

/// Which objects a command acts on, as kubectl selects them: `[TYPE] NAME…` or `TYPE/NAME…`, a
/// label selector, every object of the type in the namespace, or the objects that spec files
/// name. The type is `queryrequest` unless named.
#[derive(clap::Args, Debug)]
pub struct Selection {
    /// The objects: [TYPE] NAME…, or TYPE/NAME… (TYPE: queryrequest|qr, semanticmodel|sm,
    /// verifiedquery|vq; requests when omitted).
    #[arg(value_parser = object_arg, value_name = "[TYPE] NAME")]
    pub names: Vec<String>,
    /// Every object (of the type, in the namespace) whose labels match: key=value[,key=value…].
    #[arg(short = 'l', long = "selector", conflicts_with_all = ["all", "files"])]
    pub selector: Option<String>,
    /// Every object of the type in the namespace.
    #[arg(long, conflicts_with_all = ["files"])]
    pub all: bool,
    /// The objects that the specs in these files, directories or stdin (-) name.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", conflicts_with = "names")]
    pub files: Vec<String>,
}

/// The type a list of object arguments names and the names in it: a leading bare TYPE word,
/// else the TYPE of `TYPE/NAME` forms (which must agree), else requests.
pub fn typed_names(args: &[String]) -> Result<(ObjectKind, Vec<String>), String> {
    let mut kind = None;
    let mut rest = args;
    if let Some(first) = args.first()
        && !first.contains('/')
        && let Some(k) = resource_type(first)
    {
        kind = Some(k);
        rest = &args[1..];
    }
    let mut names = Vec::new();
    for a in rest {
        let (k, name) = match a.split_once('/') {
            Some((t, n)) => (resource_type(t), n.to_string()),
            None => (None, a.clone()),
        };
        if let Some(k) = k {
            match kind {
                Some(have) if have != k => {
                    return Err(format!(
                        "{a:?} is a {}, but the others are {}: name one type at a time",
                        k.resource(),
                        have.plural()
                    ));
                }
                _ => kind = Some(k),
            }
        }
        names.push(name);
    }
    Ok((kind.unwrap_or(ObjectKind::QueryRequest), names))
}

impl Selection {
    /// The request keys selected, in the order named (files: document order; a selector or
    /// --all: key order). For commands that act on requests only: another type is refused.
    pub async fn keys(
        &self,
        store: &dyn crate::store::Store,
        g: &Context,
    ) -> anyhow::Result<Vec<crate::spec::ObjectKey>> {
        let objects = self.objects(store, g).await?;
        if let Some((kind, key)) = objects.iter().find(|(k, _)| *k != ObjectKind::QueryRequest) {
            return Err(Exit::usage(format!(
                "{}/{} is not a request; this command acts on requests only",
                kind.resource(),
                key.name
            )));
        }
        Ok(objects.into_iter().map(|(_, k)| k).collect())
    }

    /// The objects selected, each with its kind, in the order named.
    pub async fn objects(
        &self,
        store: &dyn crate::store::Store,
        g: &Context,
    ) -> anyhow::Result<Vec<(ObjectKind, crate::spec::ObjectKey)>> {
        use crate::spec::ObjectKey;
        let (kind, names) = typed_names(&self.names).map_err(Exit::usage)?;
        if !names.is_empty() {
            if self.all || self.selector.is_some() {
                return Err(Exit::usage("name objects, or select them with -l or --all, not both"));
            }
            return Ok(names.iter().map(|n| (kind, ObjectKey::new(&g.namespace, n))).collect());
        }
        if !self.files.is_empty() {
            let docs = crate::spec::load::load_paths(&self.files).map_err(|e| Exit::refused(e.to_string()))?;
            if docs.is_empty() {
                return Err(Exit::refused("no documents found in the given input"));
            }
            return Ok(docs
                .iter()
                .map(|d| {
                    let m = d.document.metadata();
                    (d.document.kind(), ObjectKey::new(m.namespace.as_deref().unwrap_or(&g.namespace), &m.name))
                })
                .collect());
        }
        if self.all || self.selector.is_some() {
            let selector = match &self.selector {
                Some(s) => get::parse_selector(s).map_err(Exit::usage)?,
                None => crate::store::LabelSelector::new(),
            };
            let keys: Vec<ObjectKey> = if kind == ObjectKind::QueryRequest {
                store.list(Some(&g.namespace), &selector).await?.iter().map(|r| r.key()).collect()
            } else {
                store.list_objects(kind, Some(&g.namespace), &selector).await?.iter().map(|o| o.key()).collect()
            };
            return Ok(keys.into_iter().map(|k| (kind, k)).collect());
        }
        if self.names.is_empty() {
            return Err(Exit::usage("name the objects, or select them with -l KEY=VALUE, --all or -f FILE"));
        }
        // A bare TYPE: every object of it, as `kubectl describe TYPE`.
        let keys: Vec<ObjectKey> = if kind == ObjectKind::QueryRequest {
            store.list(Some(&g.namespace), &crate::store::LabelSelector::new()).await?.iter().map(|r| r.key()).collect()
        } else {
            store
                .list_objects(kind, Some(&g.namespace), &crate::store::LabelSelector::new())
                .await?
                .iter()
                .map(|o| o.key())
                .collect()
        };
        Ok(keys.into_iter().map(|k| (kind, k)).collect())
    }
}

/// The object of `kind` at `key`, or a refusal that says how to find them.
pub async fn get_object_at(
    store: &dyn crate::store::Store,
    kind: ObjectKind,
    key: &crate::spec::ObjectKey,
) -> anyhow::Result<crate::spec::Object> {
    match store.get_object(kind, key).await? {
        Some(o) => Ok(o),
        None => Err(Exit::refused(format!(
            "{} {key} not found; `sqlctl get {}` lists them{}",
            kind.resource(),
            kind.plural(),
            if key.namespace == "default" { "" } else { " (check -n/--namespace)" }
        ))),
    }
}

/// The request at `key`, or a refusal that says how to find requests.
pub async fn get_request_at(
    store: &dyn crate::store::Store,
    key: &crate::spec::ObjectKey,
) -> anyhow::Result<crate::spec::QueryRequest> {
    match store.get(key).await? {
        Some(r) => Ok(r),
        None => Err(Exit::refused(format!(
            "queryrequest {key} not found; `sqlctl get` lists requests{}",
            if key.namespace == "default" { "" } else { " (check -n/--namespace)" }
        ))),
    }
}

pub async fn get_request(
    store: &dyn crate::store::Store,
    g: &Context,
    name: &str,
) -> anyhow::Result<crate::spec::QueryRequest> {
    get_request_at(store, &crate::spec::ObjectKey::new(&g.namespace, name)).await
}

/// Turns SIGTERM / SIGINT into a graceful drain (Fargate gives 30 s before SIGKILL).
pub(crate) async fn shutdown_on_signal(tx: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    let _ = tx.send(true);
}

#[cfg(test)]
mod tests {
    use super::request_name;

    #[test]
    fn every_subcommand_groups_the_global_flags_under_headings_after_its_own() {
        use clap::CommandFactory;
        let mut cli = super::Cli::command();
        cli.build();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let help = sub.clone().render_long_help().to_string();
            let at = |heading: &str| help.find(&format!("\n{heading}:\n"));
            let (own, global, aws, notify, local) = (
                at("Options").unwrap_or_else(|| panic!("{}: {help}", sub.get_name())),
                at("Global options"),
                at("AWS options (--backend aws, S3 results)"),
                at("Notification options"),
                at("Local engine options (--backend local)"),
            );
            let order = [Some(own), global, aws, notify, local];
            assert!(order.iter().all(Option::is_some), "{}: a heading is missing:\n{help}", sub.get_name());
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{}: headings out of order:\n{help}", sub.get_name());
            // A backend flag is under its heading, not among the command's own options.
            let table = help.find("--table <").unwrap();
            assert!(table > aws.unwrap() && table < notify.unwrap(), "{}", sub.get_name());
        }
    }

    #[test]
    fn a_request_is_named_by_its_name_or_type_slash_name() {
        for typed in ["x", "qr/x", "queryrequest/x", "QueryRequests/x", "queryrequest.sqlctl.dev/x"] {
            assert_eq!(request_name(typed).as_deref(), Ok("x"), "{typed}");
        }
        let e = request_name("semanticmodel/x").unwrap_err();
        assert!(e.contains("no resource type") && e.contains("qr/NAME"), "{e}");
        assert!(request_name("qr/").is_err());
        assert!(request_name("qr/a/b").is_err());
        assert!(request_name("").is_err());
    }
}
