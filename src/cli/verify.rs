//! `sqlctl verify NAME`: turn a request that ran into a `VerifiedQuery`.
//!
//! The verified query holds the request's question (or `--question` for hand-written SQL), the
//! exact SQL that ran (`status.generated.sql`, the canonical text the approval named) as a
//! template, the approver of that run as `verifiedBy`, now as `verifiedAt`, and the request's
//! namespace, name, uid, generation and sqlDigest as provenance. The literals a question
//! supplies become proposed parameters (`guard::template::propose`): a string compared with a
//! column (named `table.column` when the catalog knows the table), a number compared with one,
//! a date, the number of a `LIMIT`.
//!
//! Who may verify follows the approval policy of the database: the identity running `verify`
//! must be one allowed to approve there (`approval::may_verify`). The console's Verify form
//! builds the same object with the same [`crate::approval::verify::build`].

use super::{Exit, get_request, output};
use crate::approval::verify::build;
use crate::config::Context;
use crate::store::StoreError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The request that ran: NAME, or TYPE/NAME (queryrequest/NAME, qr/NAME).
    #[arg(value_parser = super::request_name)]
    pub name: String,
    /// Name of the VerifiedQuery (default: the request's name).
    #[arg(long = "name", value_name = "VQ_NAME")]
    pub vq_name: Option<String>,
    /// The question the SQL answers, when the request had hand-written SQL (or to word it
    /// better than the request did).
    #[arg(long)]
    pub question: Option<String>,
    /// Verify as this identity (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    /// Show the VerifiedQuery without writing it.
    #[arg(long)]
    pub dry_run: bool,
    /// table (one line), yaml, json or name.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: output::Format,
}

/// A lookup from a bare column name to its table, from the catalog's tables of `database`
/// (only columns that exactly one table has).
pub async fn column_tables(g: &Context, database: &str) -> impl Fn(&str) -> Option<String> + Sync {
    let mut owners: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    if let Ok(catalog) = g.catalog().await
        && let Ok(tables) = catalog.tables(database).await
    {
        for t in tables {
            for c in t.columns {
                owners.entry(c.name.to_ascii_lowercase()).or_default().push(t.name.clone());
            }
        }
    }
    move |column: &str| match owners.get(column) {
        Some(tables) if tables.len() == 1 => Some(tables[0].clone()),
        _ => None,
    }
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        let req = get_request(store.as_ref(), g, &self.name).await?;
        let by = g.decider(self.as_.as_deref()).await?;
        let policy = store.get_policy().await?.unwrap_or_default();
        let vq_name = self.vq_name.clone().unwrap_or_else(|| req.metadata.name.clone());
        let column_table = column_tables(g, &req.spec.catalog.database).await;
        let vq = build(&req, &vq_name, self.question.as_deref(), &by, &policy, &column_table)
            .map_err(|e| Exit::refused(e.to_string()))?;
        let obj = crate::spec::Object::VerifiedQuery(vq);
        let written = if self.dry_run {
            obj
        } else {
            match store.create_object(obj).await {
                Ok(o) => o,
                Err(StoreError::AlreadyExists(key)) => {
                    return Err(Exit::refused(format!(
                        "verifiedquery {key} already exists; pick another with --name, or `sqlctl delete vq {}` first",
                        key.name
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let suffix = if self.dry_run { " (dry run)" } else { "" };
        match self.output {
            output::Format::Yaml => print!("{}", output::to_yaml(&written)),
            output::Format::Json => print!("{}", output::to_json(&written)),
            output::Format::Name => println!("verifiedquery/{}", written.name()),
            _ => {
                let Some(v) = written.as_verified_query() else { unreachable!("built a verified query") };
                let params: Vec<String> = v
                    .spec
                    .parameters
                    .iter()
                    .map(|p| format!(":{} {} = {}", p.name, p.type_.as_str(), p.example))
                    .collect();
                println!(
                    "verifiedquery/{} created{suffix} from queryrequest/{} (verified by {}; parameters: {})",
                    written.name(),
                    req.metadata.name,
                    v.spec.verified_by.as_deref().unwrap_or("-"),
                    if params.is_empty() { "none".to_string() } else { params.join(", ") }
                );
            }
        }
        Ok(())
    }
}
