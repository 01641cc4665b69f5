//! `sqlctl get [NAME]`: one request, or a list (filtered by phase and labels), as a table, YAML,
//! JSON, names, a JSONPath template or custom columns, optionally sorted.
//!
//! `-w` / `--watch` then streams changes as kubectl does: after the listing, every request
//! created, changed or deleted (that matches the name, namespace, phase and labels asked for) is
//! printed again in the same format, a table row per change without repeating the header. The
//! changes come from the store's change feed ([`Store::changes_since`]: the SQLite change log,
//! or the DynamoDB change index), polled every [`WATCH_POLL`]; the cursor is taken before the
//! listing, so nothing written in between is missed. A deleted request is printed as last seen.
//! `--watch-only` skips the listing; `--output-watch-events` prints `ADDED` / `MODIFIED` /
//! `DELETED` with each object (a column in tables, `{"type", "object"}` in JSON and YAML). It
//! runs until interrupted.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::jsonpath::{Columns, Path, Template};
use super::{get_request, output};
use crate::config::Context;
use crate::spec::Phase;
use crate::spec::{ObjectKey, QueryRequest};
use crate::store::{LabelSelector, Store};

/// How often `get -w` reads the change feed.
pub const WATCH_POLL: Duration = Duration::from_millis(250);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// [TYPE] [NAME]: a request (NAME, or queryrequest/NAME, qr/NAME), or TYPE (semanticmodels|sm,
    /// verifiedqueries|vq, queryrequests|qr) then an optional NAME (or TYPE/NAME); all requests
    /// when omitted.
    #[arg(value_parser = super::object_arg, num_args = 0..=2, value_name = "[TYPE] [NAME]")]
    pub args: Vec<String>,
    /// The request name resolved from `args` (set by `run`).
    #[arg(skip)]
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
    /// After listing, keep printing requests as they change (until interrupted).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Print only the changes from now on, not the current listing (implies --watch).
    #[arg(long)]
    pub watch_only: bool,
    /// With --watch: say what happened to each object printed (ADDED, MODIFIED, DELETED).
    #[arg(long)]
    pub output_watch_events: bool,
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
    pub async fn run(mut self, g: &Context) -> anyhow::Result<()> {
        let (kind, mut names) = super::typed_names(&self.args).map_err(super::Exit::usage)?;
        if names.len() > 1 {
            return Err(super::Exit::usage("get takes one name (list several with -l or without a name)"));
        }
        self.name = names.pop();
        let store = g.store().await?;
        if kind != crate::spec::ObjectKind::QueryRequest {
            return self.get_objects(g, store.as_ref(), kind).await;
        }
        if self.watch || self.watch_only {
            return self.watch(g, store.as_ref()).await;
        }
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

    /// `get sm|vq [NAME]`: semantic models or verified queries, in every output format `get`
    /// has (watching and `--phase` are for requests).
    async fn get_objects(&self, g: &Context, store: &dyn Store, kind: crate::spec::ObjectKind) -> anyhow::Result<()> {
        if self.watch || self.watch_only {
            return Err(super::Exit::usage(format!("--watch is for requests; list {} without it", kind.plural())));
        }
        if self.phase.is_some() {
            return Err(super::Exit::usage(format!("--phase is for requests; {} have no phase", kind.plural())));
        }
        if let Some(name) = &self.name {
            let obj = super::get_object_at(store, kind, &ObjectKey::new(&g.namespace, name)).await?;
            let value = serde_json::to_value(&obj)?;
            match &self.output {
                GetOutput::Plain(output::Format::Yaml) => print!("{}", output::to_yaml(&obj)),
                GetOutput::Plain(output::Format::Json) => print!("{}", output::to_json(&obj)),
                GetOutput::Plain(output::Format::Name) => println!("{}/{}", kind.resource(), obj.name()),
                GetOutput::JsonPath(t) => print!("{}", jsonpath_text(t, &value)),
                GetOutput::Columns(c) => self.print_table(&c.headers(), &[c.row(&value)]),
                GetOutput::Plain(f) => {
                    let (h, rows) = super::objects::rows(std::slice::from_ref(&obj), *f == output::Format::Wide);
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
        let mut items = store.list_objects(kind, ns, &selector).await?;
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
                items.iter().for_each(|o| println!("{}/{}", kind.resource(), o.name()))
            }
            GetOutput::JsonPath(t) => print!("{}", jsonpath_text(t, &serde_json::to_value(&list)?)),
            GetOutput::Columns(c) => {
                let rows: Vec<Vec<String>> =
                    items.iter().map(|o| serde_json::to_value(o).map(|v| c.row(&v))).collect::<Result<_, _>>()?;
                self.print_table(&c.headers(), &rows);
            }
            GetOutput::Plain(f) => {
                if items.is_empty() {
                    eprintln!(
                        "No {} found{}.",
                        kind.plural(),
                        ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
                    );
                    return Ok(());
                }
                let (mut h, mut rows) = super::objects::rows(&items, *f == output::Format::Wide);
                if self.all_namespaces {
                    h.insert(0, "NAMESPACE");
                    for (o, row) in items.iter().zip(rows.iter_mut()) {
                        row.insert(0, o.metadata().namespace().to_string());
                    }
                }
                self.print_table(&h, &rows);
            }
        }
        Ok(())
    }

    /// `-w`: the listing (unless --watch-only), then every matching change as it happens.
    async fn watch(&self, g: &Context, store: &dyn Store) -> anyhow::Result<()> {
        let selector = match &self.selector {
            Some(s) => parse_selector(s).map_err(super::Exit::usage)?,
            None => LabelSelector::new(),
        };
        let ns = if self.all_namespaces { None } else { Some(g.namespace.clone()) };
        let wanted = |key: &ObjectKey| {
            ns.as_deref().is_none_or(|n| key.namespace == n) && self.name.as_deref().is_none_or(|n| key.name == n)
        };
        let matches = |r: &QueryRequest| {
            self.phase.is_none_or(|p| r.phase() == p)
                && selector.iter().all(|(k, v)| r.metadata.labels.get(k).is_some_and(|have| have == v))
        };
        // The cursor first: whatever is written while listing shows up as a change.
        let mut cursor = store.change_cursor().await?;
        let mut seen: HashMap<ObjectKey, QueryRequest> = HashMap::new();
        let mut printer = WatchPrinter::new(self);
        for r in store.list(ns.as_deref(), &selector).await? {
            if !wanted(&r.key()) || !matches(&r) {
                continue;
            }
            if !self.watch_only {
                printer.print("ADDED", &r)?;
            }
            seen.insert(r.key(), r);
        }
        loop {
            tokio::time::sleep(WATCH_POLL).await;
            let (next, changes) = store.changes_since(cursor).await?;
            cursor = next;
            let mut keys: Vec<ObjectKey> = Vec::new();
            for c in changes {
                if wanted(&c.key) && !keys.contains(&c.key) {
                    keys.push(c.key);
                }
            }
            for key in keys {
                match store.get(&key).await? {
                    Some(r) => {
                        let before = seen.get(&key);
                        if before.is_some_and(|b| b.metadata.resource_version == r.metadata.resource_version) {
                            continue; // a decision record or a replayed change: nothing new to show
                        }
                        if !matches(&r) {
                            // Out of the selection now: shown once more as it left, then dropped.
                            if let Some(b) = seen.remove(&key) {
                                printer.print("DELETED", &b)?;
                            }
                            continue;
                        }
                        printer.print(if before.is_some() { "MODIFIED" } else { "ADDED" }, &r)?;
                        seen.insert(key, r);
                    }
                    None => {
                        if let Some(b) = seen.remove(&key) {
                            printer.print("DELETED", &b)?;
                        }
                    }
                }
            }
        }
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

/// Prints watched objects one at a time in `get`'s format; a table's header once, first.
struct WatchPrinter<'a> {
    args: &'a Args,
    header_done: bool,
    widths: Vec<usize>,
}

impl<'a> WatchPrinter<'a> {
    fn new(args: &'a Args) -> Self {
        WatchPrinter { args, header_done: args.no_headers, widths: Vec::new() }
    }

    fn print(&mut self, event: &str, r: &QueryRequest) -> anyhow::Result<()> {
        use std::io::Write as _;
        let events = self.args.output_watch_events;
        let wrapped = |r: &QueryRequest| -> anyhow::Result<Value> {
            let obj = serde_json::to_value(r)?;
            Ok(if events { serde_json::json!({"type": event, "object": obj}) } else { obj })
        };
        let text = match &self.args.output {
            GetOutput::Plain(output::Format::Yaml) => format!("---\n{}", output::to_yaml(&wrapped(r)?)),
            GetOutput::Plain(output::Format::Json) => output::to_json(&wrapped(r)?),
            GetOutput::Plain(output::Format::Name) if events => format!("{event} queryrequest/{}\n", r.metadata.name),
            GetOutput::Plain(output::Format::Name) => format!("queryrequest/{}\n", r.metadata.name),
            GetOutput::JsonPath(t) => jsonpath_text(t, &serde_json::to_value(r)?),
            GetOutput::Columns(c) => {
                self.row(c.headers().iter().map(|h| h.to_string()).collect(), c.row(&serde_json::to_value(r)?), event)
            }
            GetOutput::Plain(f) => {
                let (h, mut rows) = output::request_rows(std::slice::from_ref(r), *f == output::Format::Wide);
                let mut h = h;
                let mut row = rows.pop().unwrap_or_default();
                if self.args.all_namespaces {
                    h.insert(0, "NAMESPACE");
                    row.insert(0, r.metadata.namespace().to_string());
                }
                self.row(h.iter().map(|s| s.to_string()).collect(), row, event)
            }
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }

    /// One table row, aligned to the widths the first row set (later rows widen as needed).
    fn row(&mut self, mut header: Vec<String>, mut row: Vec<String>, event: &str) -> String {
        if self.args.output_watch_events {
            header.insert(0, "EVENT".into());
            row.insert(0, event.to_string());
        }
        let row: Vec<String> = row.iter().map(|c| crate::spec::text::escape_hidden(c).into_owned()).collect();
        if self.widths.is_empty() {
            self.widths = header.iter().zip(&row).map(|(h, c)| h.chars().count().max(c.chars().count())).collect();
        }
        let line = |cells: &[String], widths: &mut Vec<usize>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0).max(c.chars().count());
                if i < widths.len() {
                    widths[i] = w;
                }
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut text = String::new();
        if !self.header_done {
            self.header_done = true;
            text.push_str(&line(&header, &mut self.widths));
        }
        text.push_str(&line(&row, &mut self.widths));
        text
    }
}
