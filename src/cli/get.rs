//! `sqlctl get [NAME]`: one request, or a list (filtered by phase and labels).

use super::{get_request, output};
use crate::config::Context;
use crate::spec::Phase;
use crate::store::LabelSelector;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A request (NAME, or TYPE/NAME: queryrequest/NAME, qr/NAME); all requests when omitted.
    #[arg(value_parser = super::request_name)]
    pub name: Option<String>,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: output::Format,
    /// Only requests in this phase (e.g. AwaitingApproval: what needs a decision).
    #[arg(long, value_parser = parse_phase)]
    pub phase: Option<Phase>,
    /// Label selector: key=value[,key=value…].
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// List requests in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

pub fn parse_phase(s: &str) -> Result<Phase, String> {
    Phase::parse(s).ok_or_else(|| {
        format!("unknown phase {s:?}; one of {}", Phase::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "))
    })
}

pub fn parse_selector(s: &str) -> Result<LabelSelector, String> {
    let mut sel = LabelSelector::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once("==")
            .or_else(|| part.split_once('='))
            .ok_or_else(|| format!("selector term {part:?} is not key=value"))?;
        sel.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(sel)
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        if let Some(name) = &self.name {
            let r = get_request(store.as_ref(), g, name).await?;
            match self.output {
                output::Format::Yaml => print!("{}", output::to_yaml(&r)),
                output::Format::Json => print!("{}", output::to_json(&r)),
                output::Format::Name => println!("queryrequest/{}", r.metadata.name),
                f => {
                    let (h, rows) = output::request_rows(std::slice::from_ref(&r), f == output::Format::Wide);
                    print!("{}", output::table(&h, &rows));
                }
            }
            return Ok(());
        }
        let selector = match &self.selector {
            Some(s) => parse_selector(s).map_err(super::Exit::usage)?,
            None => LabelSelector::new(),
        };
        let ns = if self.all_namespaces { None } else { Some(g.namespace.as_str()) };
        let mut items = store.list(ns, &selector).await?;
        if let Some(p) = self.phase {
            items.retain(|r| r.phase() == p);
        }
        match self.output {
            output::Format::Yaml => {
                print!("{}", output::to_yaml(&output::List { api_version: "v1", kind: "List", items: &items }))
            }
            output::Format::Json => {
                print!("{}", output::to_json(&output::List { api_version: "v1", kind: "List", items: &items }))
            }
            output::Format::Name => items.iter().for_each(|r| println!("queryrequest/{}", r.metadata.name)),
            f => {
                if items.is_empty() {
                    eprintln!("No requests found{}.", ns.map(|n| format!(" in namespace {n}")).unwrap_or_default());
                    return Ok(());
                }
                let (mut h, mut rows) = output::request_rows(&items, f == output::Format::Wide);
                if self.all_namespaces {
                    h.insert(0, "NAMESPACE");
                    for (r, row) in items.iter().zip(rows.iter_mut()) {
                        row.insert(0, r.metadata.namespace().to_string());
                    }
                }
                print!("{}", output::table(&h, &rows));
            }
        }
        Ok(())
    }
}
