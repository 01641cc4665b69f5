//! `sqlctl describe NAME`: everything a decider needs: the SQL, its digest, conditions,
//! history and the preview; once done, where the result and its chart are.
//! `sqlctl describe sm|vq [NAME…]` describes semantic models and verified queries
//! ([`super::objects::describe`]).

use std::fmt::Write as _;

use super::{Selection, get_object_at, get_request_at, output};
use crate::config::Context;
use crate::spec::{Answer, ColumnRole, HistoryEntry, QueryRequest};

/// Which history `describe` shows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HistoryView {
    /// The entries kept in the record (the latest ones), with a count of the archived ones.
    #[default]
    Recent,
    /// The whole audit trail: the archived entries, then the recent ones.
    All,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub select: Selection,
    /// `all` also shows the history entries archived out of the record (the full audit trail).
    #[arg(long, value_enum, default_value = "recent")]
    pub history: HistoryView,
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        let objects = self.select.objects(store.as_ref(), g).await?;
        if objects.is_empty() {
            let (kind, _) =
                super::typed_names(&self.select.names).unwrap_or((crate::spec::ObjectKind::QueryRequest, vec![]));
            let what = if kind == crate::spec::ObjectKind::QueryRequest {
                "requests".to_string()
            } else {
                kind.plural().to_string()
            };
            eprintln!("No {what} found in namespace {}.", g.namespace);
        }
        for (i, (kind, key)) in objects.iter().enumerate() {
            if *kind != crate::spec::ObjectKind::QueryRequest {
                let obj = get_object_at(store.as_ref(), *kind, key).await?;
                if i > 0 {
                    println!();
                }
                print!("{}", crate::spec::text::escape_hidden(&super::objects::describe(&obj)));
                continue;
            }
            let r = get_request_at(store.as_ref(), key).await?;
            let text = match self.history {
                HistoryView::Recent => describe(&r),
                HistoryView::All => {
                    let archived = store.archived_history(&r.key(), r.uid()).await?;
                    let entries: Vec<HistoryEntry> = archived.into_iter().map(|a| a.entry).collect();
                    describe_with_archive(&r, Some(&entries))
                }
            };
            if i > 0 {
                println!();
            }
            // Every field a person reads shows hidden characters escaped (DESIGN §5).
            print!("{}", crate::spec::text::escape_hidden(&text));
        }
        Ok(())
    }
}

/// The one-line answer of a one-row result: `  Answer:       revenue: 21,356,596,030.63`, or one
/// labelled value per line when there are several measures.
fn write_answer(o: &mut String, a: &Answer) {
    let context = |a: &Answer| {
        let parts: Vec<String> =
            a.context.iter().map(|v| format!("{} {}", v.name, v.value.as_deref().unwrap_or("NULL"))).collect();
        parts.join(", ")
    };
    if a.values.len() == 1 {
        let _ = writeln!(o, "  Answer:       {}", output::short(&a.line(), 400));
        return;
    }
    let _ = writeln!(o, "  Answer:");
    let width = a.values.iter().map(|v| v.name.chars().count()).max().unwrap_or(0);
    for v in &a.values {
        let name = output::short(&v.name, 60);
        let pad = width.saturating_sub(name.chars().count());
        let _ =
            writeln!(o, "    {name}:{} {}", " ".repeat(pad), output::short(v.value.as_deref().unwrap_or("NULL"), 200));
    }
    if !a.context.is_empty() {
        let _ = writeln!(o, "    ({})", output::short(&context(a), 400));
    }
}

pub fn describe(r: &QueryRequest) -> String {
    describe_with_archive(r, None)
}

/// [`describe`], with the archived history entries (oldest first) shown before the recent
/// ones when `archived` is given.
pub fn describe_with_archive(r: &QueryRequest, archived: Option<&[HistoryEntry]>) -> String {
    let mut o = String::new();
    let st = r.status.clone().unwrap_or_default();
    let kv = |o: &mut String, k: &str, v: &str| {
        let _ = writeln!(o, "{:<20}{}", format!("{k}:"), v);
    };
    kv(&mut o, "Name", &r.metadata.name);
    kv(&mut o, "Namespace", r.metadata.namespace());
    kv(&mut o, "UID", r.uid());
    kv(&mut o, "Generation", &format!("{} (observed {})", r.generation(), st.observed_generation));
    kv(&mut o, "Phase", st.phase.as_str());
    if r.metadata.deletion_timestamp.is_some() {
        kv(&mut o, "Deleting", "yes (waiting for the running query to be cancelled)");
    }
    kv(&mut o, "Requester", r.requester().unwrap_or("-"));
    kv(&mut o, "Created", &r.metadata.creation_timestamp.map(|t| t.to_rfc3339()).unwrap_or_default());
    if !r.metadata.labels.is_empty() {
        kv(&mut o, "Labels", &r.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    }
    kv(&mut o, "Database", &r.spec.catalog.database);
    if !r.spec.catalog.tables.is_empty() {
        kv(&mut o, "Tables", &r.spec.catalog.tables.join(", "));
    }
    kv(&mut o, "Engine", r.spec.engine.map(|e| e.as_str()).unwrap_or("controller default"));
    let l = r.spec.effective_limits();
    kv(
        &mut o,
        "Limits",
        &format!(
            "maxRows={} timeout={}ms{}",
            l.max_rows,
            l.timeout_ms,
            l.max_bytes_scanned.map(|b| format!(" maxBytesScanned={b}")).unwrap_or_default()
        ),
    );
    if let Some(c) = &r.spec.chart {
        let mut chart = c.type_.as_str().to_string();
        if let Some(x) = &c.x {
            chart.push_str(&format!(" x={x}"));
        }
        if !c.y.is_empty() {
            chart.push_str(&format!(" y={}", c.y.join(",")));
        }
        kv(&mut o, "Chart spec", &chart);
    }
    if let Some(q) = &r.spec.question {
        kv(&mut o, "Question", q);
    }
    if let Some(f) = &r.spec.follow_up {
        let link = st.generated.as_ref().and_then(|g| g.follows.as_ref());
        let text = match link {
            Some(l) => format!(
                "{} (uid {}, generation {}, {} SQL {})",
                l.name,
                l.uid,
                l.generation,
                if l.ran { "ran" } else { "proposed" },
                l.sql_digest.get(..12).unwrap_or(&l.sql_digest)
            ),
            None => format!("{} (not read yet)", f.of),
        };
        kv(&mut o, "Follows up", &text);
    }
    if let Some(gn) = &st.generated {
        if !gn.sql.is_empty() {
            let _ = writeln!(o, "SQL:");
            for line in gn.sql.lines() {
                let _ = writeln!(o, "    {line}");
            }
            kv(&mut o, "SQL digest", &gn.sql_digest);
            if !gn.explanation.is_empty() {
                kv(&mut o, "Explanation", &gn.explanation);
            }
            kv(&mut o, "Confidence", &format!("{:.2}", gn.confidence));
            kv(&mut o, "Model", &gn.model);
            if let Some(src) = &gn.source {
                if let Some(label) = src.verified_label() {
                    let name = src.verified_query.as_deref().unwrap_or("-");
                    kv(&mut o, "Source", &format!("{label}: verified query {name}"));
                }
                if let Some(m) = &src.semantic_model {
                    kv(&mut o, "Semantic model", m);
                }
                if !src.examples.is_empty() {
                    kv(&mut o, "Examples shown", &src.examples.join(", "));
                }
            }
            if !gn.tables_used.is_empty() {
                kv(&mut o, "Tables used", &gn.tables_used.join(", "));
            }
        }
        if gn.attempts.len() > 1 || gn.attempts.iter().any(|a| a.error.is_some()) {
            let _ = writeln!(o, "Attempts:");
            for (i, a) in gn.attempts.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "  {}. {} {}",
                    i + 1,
                    output::short(&a.sql, 70),
                    a.error.as_deref().map(|e| format!("→ {e}")).unwrap_or_else(|| "→ ok".into())
                );
            }
        }
    }
    if let Some(e) = &st.estimate {
        kv(
            &mut o,
            "Estimate",
            &format!(
                "{} ({} bytes), ${:.4} ({})",
                crate::spec::quantity::human_bytes(e.bytes),
                e.bytes,
                e.cost_usd,
                e.method
            ),
        );
    }
    if st.approval_round > 0 {
        kv(&mut o, "Approval round", &st.approval_round.to_string());
    }
    if let Some(d) = st.approval_deadline {
        kv(&mut o, "Approval deadline", &d.to_rfc3339());
    }
    if let Some(a) = &st.approval {
        kv(
            &mut o,
            "Decision",
            &format!(
                "{} by {} at {}{}",
                a.decision.as_str(),
                a.by,
                a.at.to_rfc3339(),
                a.comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
            ),
        );
    }
    if let Some(e) = &st.execution {
        let _ = writeln!(o, "Execution:");
        let _ = writeln!(o, "  State:        {} (attempt {})", e.state, e.attempt);
        if let Some(id) = &e.id {
            let _ = writeln!(o, "  Id:           {id}");
        }
        if let Some(n) = e.rows {
            let _ = writeln!(o, "  Rows:         {n}");
        }
        if let Some(b) = e.bytes_scanned {
            let _ = writeln!(o, "  Bytes read:   {b} ({})", crate::spec::quantity::human_bytes(b));
        }
        if let Some(c) = e.cost_usd {
            let _ = writeln!(o, "  Cost:         ${c:.4}");
        }
        if let Some(ms) = e.duration_ms {
            let _ = writeln!(o, "  Duration:     {ms} ms");
        }
        if let Some(loc) = &e.output_location {
            let _ = writeln!(o, "  Output:       {loc}");
        }
        if let Some(loc) = &e.chart_location {
            let _ = writeln!(o, "  Chart:        {loc}  (`sqlctl results {} --chart` prints it)", r.metadata.name);
        }
        if let Some(err) = &e.error {
            let _ = writeln!(o, "  Error:        {err}");
        }
        if !e.columns.is_empty() {
            let cols: Vec<String> = e
                .columns
                .iter()
                .map(|c| {
                    let role = c.role.map(|r| if r == ColumnRole::Measure { " measure" } else { " dimension" });
                    format!("{} {}{}", c.name, if c.type_.is_empty() { "?" } else { &c.type_ }, role.unwrap_or(""))
                })
                .collect();
            let _ = writeln!(o, "  Columns:      {}", output::short(&cols.join(", "), 400));
        }
        if let Some(a) = &e.answer {
            write_answer(&mut o, a);
        }
        if let Some(p) = &e.preview {
            let _ = writeln!(o, "Preview{}:", if p.truncated { " (truncated)" } else { "" });
            let shown: Vec<Vec<Option<String>>> = p.rows.iter().take(20).cloned().collect();
            for line in output::typed_preview_table(&p.columns, &shown, &e.columns).lines() {
                let _ = writeln!(o, "  {line}");
            }
            if p.rows.len() > 20 {
                let _ = writeln!(
                    o,
                    "  … {} more rows in the preview; `sqlctl results {}` prints all",
                    p.rows.len() - 20,
                    r.metadata.name
                );
            }
        }
    }
    if !st.conditions.is_empty() {
        let _ = writeln!(o, "Conditions:");
        let rows: Vec<Vec<String>> = st
            .conditions
            .iter()
            .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()])
            .collect();
        for line in output::table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows).lines() {
            let _ = writeln!(o, "  {line}");
        }
    }
    if !st.history.is_empty() || st.history_archived > 0 {
        let name = &r.metadata.name;
        match archived {
            None if st.history_archived > 0 => {
                let _ = writeln!(
                    o,
                    "History:            (the latest {}; {} earlier archived: `sqlctl describe {name} --history all` shows them)",
                    st.history.len(),
                    st.history_archived
                );
            }
            Some(a) if st.history_archived > 0 => {
                let _ = writeln!(o, "History:            ({} archived, then the latest {})", a.len(), st.history.len());
            }
            _ => {
                let _ = writeln!(o, "History:");
            }
        }
        for h in archived.unwrap_or_default().iter().chain(&st.history) {
            let mut parts =
                vec![h.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(), format!("gen {}", h.generation), h.event.clone()];
            if let Some(d) = h.decision {
                parts.push(d.as_str().into());
            }
            if let Some(b) = &h.by {
                parts.push(format!("by {b}"));
            }
            if let Some(f) = &h.feedback {
                parts.push(format!("feedback: {f:?}"));
            }
            if let Some(s) = &h.sql_digest {
                // Shown for reading only (and a decision record's digest may be any text).
                parts.push(format!("digest {}", s.chars().take(12).collect::<String>()));
            }
            if let Some(m) = &h.message {
                parts.push(m.clone());
            }
            let _ = writeln!(o, "  {}", parts.join("  "));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ChartSpec, ChartType, Execution, Phase, QueryRequestStatus};

    #[test]
    fn describe_shows_where_the_result_and_its_chart_are() {
        let mut r = QueryRequest::new("sales", "").with_sql("select 1");
        r.spec.chart = Some(ChartSpec { type_: ChartType::Bar, x: Some("region".into()), y: vec!["total".into()] });
        r.status = Some(QueryRequestStatus {
            phase: Phase::Done,
            execution: Some(Execution {
                state: "Succeeded".into(),
                output_location: Some("s3://bucket/results/default/sales/1-1.csv".into()),
                chart_location: Some("s3://bucket/results/default/sales/1-1.svg".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = describe(&r);
        assert!(text.contains("Chart spec:         bar x=region y=total"), "{text}");
        assert!(text.contains("  Output:       s3://bucket/results/default/sales/1-1.csv\n"), "{text}");
        assert!(text.contains("  Chart:        s3://bucket/results/default/sales/1-1.svg"), "{text}");
        assert!(text.contains("sqlctl results sales --chart"), "{text}");
    }
}
