//! `sqlctl get [NAME]`: one request, or a list (filtered by phase and labels), as a table, YAML,
//! JSON, names, a JSONPath template or custom columns, optionally sorted.

use serde_json::Value;

use super::jsonpath::{Columns, Path, Template};
use super::{get_request, output};
use crate::config::Context;
use crate::spec::Phase;
use crate::store::LabelSelector;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A request (NAME, or TYPE/NAME: queryrequest/NAME, qr/NAME); all requests when omitted.
    #[arg(value_parser = super::request_name)]
    pub name: Option<String>,
    /// table, wide, yaml, json, name, jsonpath=TEMPLATE (e.g. jsonpath='{.status.phase}'), or
    /// custom-columns=HEADER:PATH,… (e.g. custom-columns=NAME:.metadata.name,PHASE:.status.phase).
    #[arg(short, long, default_value = "table", value_parser = parse_output, value_name = "FORMAT")]
    pub output: GetOutput,
    /// Sort the list by the value at a JSONPath (e.g. .metadata.creationTimestamp).
    #[arg(long, value_name = "PATH", value_parser = Path::parse)]
    pub sort_by: Option<Path>,
    /// Print tables (table, wide, custom-columns) without their header line.
    #[arg(long)]
    pub no_headers: bool,
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

/// What `get -o` prints.
#[derive(Debug, Clone)]
pub enum GetOutput {
    Plain(output::Format),
    JsonPath(Template),
    Columns(Columns),
}

pub fn parse_output(s: &str) -> Result<GetOutput, String> {
    if let Some(t) = s.strip_prefix("jsonpath=") {
        return Template::parse(t).map(GetOutput::JsonPath);
    }
    if let Some(c) = s.strip_prefix("custom-columns=") {
        return Columns::parse(c).map(GetOutput::Columns);
    }
    <output::Format as clap::ValueEnum>::from_str(s, true).map(GetOutput::Plain).map_err(|_| {
        format!(
            "unknown output format {s:?}; one of table, wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,…"
        )
    })
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
            match &self.output {
                GetOutput::Plain(output::Format::Yaml) => print!("{}", output::to_yaml(&r)),
                GetOutput::Plain(output::Format::Json) => print!("{}", output::to_json(&r)),
                GetOutput::Plain(output::Format::Name) => println!("queryrequest/{}", r.metadata.name),
                GetOutput::JsonPath(t) => print!("{}", jsonpath_text(t, &serde_json::to_value(&r)?)),
                GetOutput::Columns(c) => {
                    self.print_table(&c.headers(), &[c.row(&serde_json::to_value(&r)?)]);
                }
                GetOutput::Plain(f) => {
                    let (h, rows) = output::request_rows(std::slice::from_ref(&r), *f == output::Format::Wide);
                    self.print_table(&h, &rows);
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
        if let Some(path) = &self.sort_by {
            let mut keyed: Vec<(Value, usize)> =
                items.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?.into_iter().zip(0..).collect();
            super::jsonpath::sort_by(&mut keyed, path);
            let mut slots: Vec<Option<_>> = items.into_iter().map(Some).collect();
            items = keyed.into_iter().map(|(_, i)| slots[i].take().expect("each item once")).collect();
        }
        let list = output::List { api_version: "v1", kind: "List", items: &items };
        match &self.output {
            GetOutput::Plain(output::Format::Yaml) => print!("{}", output::to_yaml(&list)),
            GetOutput::Plain(output::Format::Json) => print!("{}", output::to_json(&list)),
            GetOutput::Plain(output::Format::Name) => {
                items.iter().for_each(|r| println!("queryrequest/{}", r.metadata.name))
            }
            GetOutput::JsonPath(t) => print!("{}", jsonpath_text(t, &serde_json::to_value(&list)?)),
            GetOutput::Columns(c) => {
                let rows: Vec<Vec<String>> =
                    items.iter().map(|r| serde_json::to_value(r).map(|v| c.row(&v))).collect::<Result<_, _>>()?;
                self.print_table(&c.headers(), &rows);
            }
            GetOutput::Plain(f) => {
                let f = *f;
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
                self.print_table(&h, &rows);
            }
        }
        Ok(())
    }

    fn print_table(&self, header: &[&str], rows: &[Vec<String>]) {
        let t = output::table(header, rows);
        match t.split_once('\n') {
            Some((_, body)) if self.no_headers => print!("{body}"),
            _ => print!("{t}"),
        }
    }
}

/// A template's text, with hidden characters (bidi overrides, zero-width, controls other than
/// newlines and tabs) shown escaped, as everywhere sqlctl prints for people.
fn jsonpath_text(t: &Template, v: &Value) -> String {
    crate::spec::text::escape_hidden(&t.render(v)).into_owned()
}
