//! The console's pages, rendered into `String`s: the request list (from the in-memory index)
//! and the detail page (from the stored record), each with the fragment `console.js` swaps in
//! on a live update.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::highlight::highlight_sql;
use super::html::{Esc, age, banner, bytes, one_line, phase_badge, push_escaped, timestamp, url_encode};
use super::index::Row;
use crate::approval::allowed_deciders;
use crate::spec::{Decision, DecisionKind, Phase, Policy, QueryRequest};
use crate::textdiff::{Line, line_diff};

/// Requests per list page.
pub const PAGE_SIZE: usize = 100;
/// Preview rows shown on the detail page (the full result is one `sqlctl results` away).
const PREVIEW_ROWS: usize = 200;

/// The list page's filters, from its query string.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub phase: Option<Phase>,
    pub namespace: Option<String>,
    /// 1-based.
    pub page: usize,
}

impl ListFilter {
    fn query(&self, phase: Option<Phase>, page: usize) -> String {
        let mut parts = Vec::new();
        if let Some(p) = phase {
            parts.push(format!("phase={p}"));
        }
        if let Some(ns) = &self.namespace {
            parts.push(format!("namespace={}", url_encode(ns)));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() { "/".to_string() } else { format!("/?{}", parts.join("&amp;")) }
    }
}

/// The list: phase tabs with counts, a namespace filter, one page of requests (newest first)
/// and a pager, all inside `<div id="list">` (the live-update fragment).
pub fn list(out: &mut String, rows: &[Arc<Row>], f: &ListFilter, now: &DateTime<Utc>) {
    let mut namespaces: Vec<&str> = Vec::new();
    let mut counts = [0usize; Phase::ALL.len()];
    let mut shown: Vec<&Row> = Vec::new();
    let mut in_ns = 0usize;
    for r in rows {
        let ns = r.key.namespace.as_str();
        if namespaces.last() != Some(&ns) && !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
        if f.namespace.as_deref().is_some_and(|want| want != ns) {
            continue;
        }
        in_ns += 1;
        counts[r.phase as usize] += 1;
        if f.phase.is_none_or(|p| p == r.phase) {
            shown.push(r);
        }
    }
    namespaces.sort_unstable();
    // Newest first; ties (and records without a timestamp) by key.
    shown.sort_unstable_by(|a, b| b.created.cmp(&a.created).then_with(|| a.key.cmp(&b.key)));
    let pages = shown.len().div_ceil(PAGE_SIZE).max(1);
    let page = f.page.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    let slice = &shown[start.min(shown.len())..(start + PAGE_SIZE).min(shown.len())];

    out.push_str("<div id=\"list\"><nav class=\"tabs\">");
    let tab = |out: &mut String, p: Option<Phase>, n: usize| {
        let current = f.phase == p;
        let _ = write!(
            out,
            "<a href=\"{}\" class=\"tab{}{}\">{}<span class=\"count\">{n}</span></a>",
            f.query(p, 1),
            if current { " current" } else { "" },
            p.map(|p| format!(" p-{p}")).unwrap_or_default(),
            p.map(|p| p.as_str()).unwrap_or("All"),
        );
    };
    tab(out, None, in_ns);
    for p in Phase::ALL {
        let n = counts[p as usize];
        if n > 0 || p == Phase::AwaitingApproval || f.phase == Some(p) {
            tab(out, Some(p), n);
        }
    }
    out.push_str("</nav><form method=\"get\" action=\"/\" class=\"filter\">");
    if let Some(p) = f.phase {
        let _ = write!(out, "<input type=\"hidden\" name=\"phase\" value=\"{p}\">");
    }
    out.push_str("<label>Namespace <select name=\"namespace\"><option value=\"\">all</option>");
    for ns in &namespaces {
        let sel = if f.namespace.as_deref() == Some(*ns) { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{}</option>", Esc(ns));
    }
    out.push_str("</select></label> <button type=\"submit\">Filter</button></form>");

    if slice.is_empty() {
        out.push_str("<p class=\"empty\">No requests");
        if let Some(p) = f.phase {
            let _ = write!(out, " in {p}");
        }
        out.push_str(". <code>sqlctl apply -f request.yaml</code> or <code>sqlctl ask</code> creates one.</p></div>");
        return;
    }
    out.push_str(
        "<table class=\"requests\"><thead><tr><th>Request</th><th>Phase</th><th>Question / SQL</th>\
<th>Requester</th><th>Age</th><th title=\"generation · approval round\">Gen</th></tr></thead><tbody>",
    );
    for r in slice {
        out.push_str("<tr><td class=\"name\"><a href=\"/requests/");
        push_escaped(out, &url_encode(&r.key.namespace));
        out.push('/');
        push_escaped(out, &url_encode(&r.key.name));
        out.push_str("\">");
        if r.key.namespace != crate::spec::DEFAULT_NAMESPACE {
            push_escaped(out, &r.key.namespace);
            out.push('/');
        }
        push_escaped(out, &r.key.name);
        out.push_str("</a></td><td>");
        phase_badge(out, r.phase);
        out.push_str("</td><td class=\"summary\">");
        if r.sql {
            out.push_str("<code>");
            push_escaped(out, &r.summary);
            out.push_str("</code>");
        } else {
            push_escaped(out, &r.summary);
        }
        out.push_str("</td><td>");
        push_escaped(out, &r.requester);
        out.push_str("</td><td>");
        if let Some(c) = &r.created {
            let _ =
                write!(out, "<time datetime=\"{}\" title=\"{}\">{}</time>", c.to_rfc3339(), timestamp(c), age(c, now));
        }
        let _ = write!(out, "</td><td>{}·{}</td></tr>", r.generation, r.round);
    }
    out.push_str("</tbody></table>");
    let _ = write!(out, "<nav class=\"pager\"><span>{}–{} of {}</span>", start + 1, start + slice.len(), shown.len());
    if page > 1 {
        let _ = write!(out, " <a href=\"{}\" rel=\"prev\">← newer</a>", f.query(f.phase, page - 1));
    }
    if page < pages {
        let _ = write!(out, " <a href=\"{}\" rel=\"next\">older →</a>", f.query(f.phase, page + 1));
    }
    out.push_str("</nav></div>");
}

/// A message for the top of the detail page.
pub struct Flash {
    /// ok | warn | error
    pub kind: &'static str,
    pub text: String,
}

/// The chart of a finished request, if one was drawn.
pub enum Chart {
    /// The SVG, read through the engine (embedded as an image: an `<img>` never runs scripts).
    Svg(Vec<u8>),
    /// Drawn, but this console could not read it: say where it is and why.
    Unreadable { location: String, why: String },
}

/// Everything the detail page shows.
pub struct Detail<'a> {
    pub r: &'a QueryRequest,
    pub decisions: Vec<Decision>,
    pub policy: Policy,
    pub user: &'a str,
    pub csrf: &'a str,
    pub chart: Option<Chart>,
    pub flash: Option<Flash>,
}

impl Detail<'_> {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        self.r.key().to_string()
    }

    fn path(&self) -> String {
        format!("/requests/{}/{}", url_encode(self.r.metadata.namespace()), url_encode(&self.r.metadata.name))
    }

    /// What a decision form binds to: the exact record state the reviewer saw.
    fn binding(&self) -> String {
        let st = self.r.status.clone().unwrap_or_default();
        format!(
            "{}|{}|{}|{}|{}",
            self.r.uid(),
            self.r.generation(),
            st.approval_round,
            st.generated.as_ref().map(|g| g.sql_digest.as_str()).unwrap_or(""),
            st.phase
        )
    }

    /// The user's own decision on the current round, if they made one already.
    fn own_decision(&self) -> Option<&Decision> {
        let st = self.r.status.as_ref()?;
        self.decisions.iter().find(|d| {
            d.by == self.user
                && d.uid == self.r.uid()
                && d.generation == self.r.generation()
                && d.round == st.approval_round
        })
    }

    /// Forms are offered when the request awaits a decision and this user has not made one.
    fn decidable(&self) -> bool {
        self.r.phase() == Phase::AwaitingApproval && self.own_decision().is_none()
    }

    /// The whole page body.
    pub fn page(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("<h1><a href=\"/\" class=\"up\">requests</a> / ");
        push_escaped(&mut out, &self.key());
        out.push_str("</h1>");
        if let Some(f) = &self.flash {
            banner(&mut out, f.kind, &f.text);
        }
        let _ = write!(
            out,
            "<div id=\"stale\" class=\"banner warn\" hidden>This request changed since this page was loaded \
(new SQL, a new round or a decision): the forms below are out of date and would be refused. \
<a href=\"{}\">Reload</a> to review what is there now.</div>",
            self.path()
        );
        self.fragment_into(&mut out);
        out
    }

    /// The live parts: `#status`, `#review` and `#trail`.
    pub fn fragment(&self) -> String {
        let mut out = String::with_capacity(12 * 1024);
        self.fragment_into(&mut out);
        out
    }

    fn fragment_into(&self, out: &mut String) {
        self.status(out);
        self.review(out);
        self.trail(out);
    }

    fn status(&self, out: &mut String) {
        let r = self.r;
        let st = r.status.clone().unwrap_or_default();
        out.push_str("<section id=\"status\"><div class=\"meta\">");
        phase_badge(out, st.phase);
        let _ = write!(out, " <span>generation {} · round {}</span>", r.generation(), st.approval_round);
        if let Some(who) = r.requester() {
            let _ = write!(out, " <span>requested by <b>{}</b></span>", Esc(who));
        }
        if let Some(c) = &r.metadata.creation_timestamp {
            let _ = write!(out, " <span>created {}</span>", timestamp(c));
        }
        let _ = write!(
            out,
            " <span>database <b>{}</b></span> <span>engine {}</span>",
            Esc(&r.spec.catalog.database),
            r.spec.engine.map(|e| e.as_str()).unwrap_or("default")
        );
        if st.phase == Phase::AwaitingApproval
            && let Some(d) = &st.approval_deadline
        {
            let _ = write!(out, " <span>decide by {}</span>", timestamp(d));
        }
        if r.metadata.deletion_timestamp.is_some() {
            out.push_str(" <span class=\"warn\">being deleted</span>");
        }
        out.push_str("</div>");
        match (&r.spec.question, &r.spec.sql) {
            (Some(q), _) => {
                out.push_str("<blockquote class=\"question\">");
                push_escaped(out, q);
                out.push_str("</blockquote>");
            }
            _ => {
                out.push_str("<p class=\"note\">Hand-written SQL (<code>spec.sql</code>): no question, no refine.</p>")
            }
        }
        // Conditions that explain a problem, in words (the budget is shown with the SQL).
        let mut shown: Vec<&str> = Vec::new();
        for c in &st.conditions {
            let kind = match (c.type_.as_str(), c.status.as_str()) {
                ("DecisionRefused", "True") => "error",
                ("Generated" | "Executed" | "Ready", "False") if st.phase == Phase::Failed => "error",
                ("Ready", "False") if st.phase == Phase::TimedOut => "warn",
                ("Notified" | "Estimated", "False") => "warn",
                _ => continue,
            };
            if !c.message.is_empty() && !shown.contains(&c.message.as_str()) {
                shown.push(&c.message);
                banner(out, kind, &format!("{} ({}): {}", c.type_, c.reason, c.message));
            }
        }
        if let Some(a) = &st.approval {
            let _ = write!(
                out,
                "<p class=\"approval\">{} by <b>{}</b> at {}",
                match a.decision {
                    DecisionKind::Approve => "Approved",
                    DecisionKind::Reject => "Rejected",
                    DecisionKind::Refine => "Refined",
                },
                Esc(&a.by),
                timestamp(&a.at)
            );
            if let Some(c) = a.comment.as_deref().filter(|c| !c.is_empty()) {
                let _ = write!(out, ": “{}”", Esc(c));
            }
            out.push_str("</p>");
        }
        if let Some(x) = &st.execution {
            out.push_str("<h2>Result</h2><dl class=\"facts\">");
            let _ = write!(out, "<dt>state</dt><dd>{}</dd>", Esc(&x.state));
            if let Some(n) = x.rows {
                let _ = write!(out, "<dt>rows</dt><dd>{n}</dd>");
            }
            if let Some(b) = x.bytes_scanned {
                let _ = write!(out, "<dt>scanned</dt><dd>{}</dd>", bytes(b));
            }
            if let Some(c) = x.cost_usd {
                let _ = write!(out, "<dt>cost</dt><dd>${c:.4}</dd>");
            }
            if let Some(ms) = x.duration_ms {
                let _ = write!(out, "<dt>took</dt><dd>{:.2} s</dd>", ms as f64 / 1000.0);
            }
            if let Some(loc) = &x.output_location {
                let _ = write!(out, "<dt>full result</dt><dd><code>{}</code></dd>", Esc(loc));
            }
            out.push_str("</dl>");
            if let Some(e) = &x.error {
                banner(out, "error", e);
            }
            // One row: the answer, formatted for its types, instead of a chart.
            if let Some(a) = &x.answer {
                if a.values.len() == 1 {
                    let _ = write!(out, "<p class=\"answer\"><strong>{}</strong></p>", Esc(&a.line()));
                } else {
                    out.push_str("<dl class=\"answer\">");
                    for v in &a.values {
                        let _ = write!(
                            out,
                            "<dt>{}</dt><dd>{}</dd>",
                            Esc(&v.name),
                            Esc(v.value.as_deref().unwrap_or("NULL"))
                        );
                    }
                    out.push_str("</dl>");
                }
            }
            match &self.chart {
                Some(Chart::Svg(svg)) => {
                    // The chart's own description (kind, axis, every series) is the image's text.
                    let alt = svg_desc(svg).unwrap_or_else(|| "chart of the result".into());
                    let _ = write!(
                        out,
                        "<figure class=\"chart\"><img alt=\"{}\" src=\"data:image/svg+xml;base64,",
                        Esc(&alt)
                    );
                    out.push_str(&base64(svg));
                    out.push_str("\"></figure>");
                }
                Some(Chart::Unreadable { location, why }) => {
                    let _ = write!(
                        out,
                        "<p class=\"note\">A chart was drawn at <code>{}</code>, but this console cannot read it: {}</p>",
                        Esc(location),
                        Esc(why)
                    );
                }
                None => {}
            }
            if let Some(p) = &x.preview {
                // Numbers right-aligned by the result's recorded types, as the engine wrote them.
                let typed =
                    x.columns.len() == p.columns.len() && x.columns.iter().zip(&p.columns).all(|(t, c)| &t.name == c);
                let num: Vec<bool> =
                    p.columns.iter().enumerate().map(|(i, _)| typed && x.columns[i].kind().is_numeric()).collect();
                out.push_str("<div class=\"scroll\"><table class=\"preview\"><thead><tr>");
                for (i, c) in p.columns.iter().enumerate() {
                    let class = if num[i] { " class=\"num\"" } else { "" };
                    let _ = write!(out, "<th{class}>{}</th>", Esc(c));
                }
                out.push_str("</tr></thead><tbody>");
                for row in p.rows.iter().take(PREVIEW_ROWS) {
                    out.push_str("<tr>");
                    for (i, cell) in row.iter().enumerate() {
                        match cell {
                            Some(v) => {
                                out.push_str(if num.get(i).copied().unwrap_or(false) {
                                    "<td class=\"num\">"
                                } else {
                                    "<td>"
                                });
                                push_escaped(out, v);
                                out.push_str("</td>");
                            }
                            None => out.push_str("<td class=\"null\">NULL</td>"),
                        }
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</tbody></table></div>");
                let more = p.rows.len().saturating_sub(PREVIEW_ROWS);
                if more > 0 || p.truncated {
                    let _ = write!(
                        out,
                        "<p class=\"note\">Preview only; <code>sqlctl results -n {} {}</code> prints the full result.</p>",
                        Esc(r.metadata.namespace()),
                        Esc(&r.metadata.name)
                    );
                }
            }
        }
        out.push_str("</section>");
    }

    fn review(&self, out: &mut String) {
        let r = self.r;
        let st = r.status.clone().unwrap_or_default();
        let decidable = self.decidable();
        let _ = write!(
            out,
            "<section id=\"review\" data-binding=\"{}\" data-decidable=\"{}\">",
            Esc(&self.binding()),
            if decidable { "1" } else { "0" }
        );
        let Some(g) = st.generated.as_ref().filter(|g| !g.sql.is_empty()) else {
            if let Some(g) = &st.generated {
                // Generation failed: show the attempts, which say why.
                if !g.attempts.is_empty() {
                    out.push_str("<h2>Attempts</h2><ol class=\"attempts\">");
                    for a in &g.attempts {
                        out.push_str("<li><pre class=\"sql\"><code>");
                        highlight_sql(out, &a.sql);
                        out.push_str("</code></pre>");
                        if let Some(e) = &a.error {
                            let _ = write!(out, "<p class=\"error\">{}</p>", Esc(e));
                        }
                        out.push_str("</li>");
                    }
                    out.push_str("</ol>");
                }
            } else if !st.phase.is_terminal() {
                out.push_str("<p class=\"note\">No SQL yet: the controller is generating it.</p>");
            }
            out.push_str("</section>");
            return;
        };
        let _ = write!(
            out,
            "<h2>SQL <small>digest <code class=\"digest\" title=\"{0}\">{1}</code></small></h2><pre class=\"sql\"><code>",
            Esc(&g.sql_digest),
            Esc(&g.sql_digest[..g.sql_digest.len().min(12)])
        );
        highlight_sql(out, &g.sql);
        out.push_str("</code></pre><dl class=\"facts\">");
        if let Some((label, name)) =
            g.source.as_ref().and_then(|s| Some((s.verified_label()?, s.verified_query.clone()?)))
        {
            let _ = write!(
                out,
                "<dt>source</dt><dd><strong class=\"verified\">{}</strong> · verified query {}</dd>",
                Esc(&label),
                Esc(&name)
            );
        }
        if !g.explanation.is_empty() {
            let _ = write!(out, "<dt>explanation</dt><dd>{}</dd>", Esc(&g.explanation));
        }
        if g.model != "user" {
            let _ = write!(out, "<dt>confidence</dt><dd>{:.0}%</dd>", g.confidence * 100.0);
        }
        if !g.model.is_empty() {
            let _ = write!(out, "<dt>model</dt><dd>{}</dd>", Esc(&g.model));
        }
        if !g.tables_used.is_empty() {
            let _ = write!(out, "<dt>tables</dt><dd>{}</dd>", Esc(&g.tables_used.join(", ")));
        }
        for a in &g.assumptions {
            let _ = write!(out, "<dt>assumes</dt><dd>{}</dd>", Esc(a));
        }
        let budget = r.spec.effective_limits().max_bytes_scanned;
        match &st.estimate {
            Some(e) => {
                let _ = write!(out, "<dt>estimate</dt><dd>{} scanned, ${:.4}", bytes(e.bytes), e.cost_usd);
                if !e.method.is_empty() {
                    let _ = write!(out, " <small>({})</small>", Esc(&e.method));
                }
                out.push_str("</dd>");
            }
            None => out.push_str("<dt>estimate</dt><dd>none</dd>"),
        }
        if let Some(b) = budget {
            let _ = write!(out, "<dt>budget</dt><dd>{}</dd>", bytes(b));
        }
        out.push_str("</dl>");
        match previous_sql(r, &g.sql_digest) {
            Some((old, _)) if old == g.sql => {
                out.push_str("<p class=\"note\">Same SQL as before; the digest changed with the engine or limits.</p>");
            }
            Some(prev) => self.diff(out, prev, &g.sql),
            None => {}
        }
        let over = over_budget(r);
        if let Some(why) = &over {
            banner(out, "warn", why);
        }
        if st.phase == Phase::AwaitingApproval {
            self.decide(out, decidable, over.as_deref());
        }
        if st.phase == Phase::Done && st.approval.is_some() {
            self.verify_form(out);
        }
        out.push_str("</section>");
    }

    /// The Verify form of a request that ran: save it as a `VerifiedQuery` (what `sqlctl verify`
    /// does), bound to the uid, generation and digest shown. The server checks the approval
    /// policy again on submit.
    fn verify_form(&self, out: &mut String) {
        let r = self.r;
        let st = r.status.clone().unwrap_or_default();
        let digest = st.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
        let db = &r.spec.catalog.database;
        if let Err(why) = crate::approval::may_verify(&self.policy, db, self.user) {
            let _ = write!(out, r#"<p class="note">Verify: {}</p>"#, Esc(&why));
            return;
        }
        let question = r.spec.question.clone().unwrap_or_default();
        let _ = write!(
            out,
            concat!(
                r#"<details class="verify"><summary>Verify: save as a verified query</summary>"#,
                r#"<form method="post" action="{}/verify" class="decide verify">"#,
                r#"<input type="hidden" name="csrf" value="{}"><input type="hidden" name="uid" value="{}">"#,
                r#"<input type="hidden" name="generation" value="{}"><input type="hidden" name="digest" value="{}">"#,
                r#"<p class="note">The SQL that ran becomes a template (the literals a question supplies become "#,
                r#"parameters), verified by its approver. Under a policy that trusts verified queries, requests "#,
                r#"that instantiate it exactly run without a new decision.</p>"#,
                r#"<label>Name <input type="text" name="name" value="{}" maxlength="63" required autocomplete="off"></label>"#,
                r#"<label>Question <textarea name="question" rows="2" maxlength="4000" required>{}</textarea></label>"#,
                r#"<button type="submit">Verify</button></form></details>"#
            ),
            self.path(),
            Esc(self.csrf),
            Esc(r.uid()),
            r.generation(),
            Esc(&digest),
            Esc(&r.metadata.name),
            Esc(&question)
        );
    }

    fn diff(&self, out: &mut String, prev: (&str, u64), new: &str) {
        let (old, generation) = prev;
        let _ = write!(
            out,
            "<details class=\"diff\" open><summary>Changes since the previous SQL (generation {generation})</summary><pre class=\"diff\">"
        );
        for l in line_diff(old, new) {
            let (class, mark, text) = match l {
                Line::Same(t) => ("same", ' ', t),
                Line::Removed(t) => ("del", '-', t),
                Line::Added(t) => ("add", '+', t),
            };
            let _ = write!(out, "<span class=\"{class}\">{mark} ");
            push_escaped(out, text);
            out.push_str("</span>");
        }
        out.push_str("</pre></details>");
    }

    fn decide(&self, out: &mut String, decidable: bool, over_budget: Option<&str>) {
        let r = self.r;
        out.push_str("<div id=\"decide\">");
        if let Some(d) = self.own_decision() {
            let _ = write!(
                out,
                "<p class=\"note\">You decided <b>{}</b> on this SQL at {}; the controller applies it shortly.</p></div>",
                d.decision.as_str(),
                timestamp(&d.at)
            );
            return;
        }
        debug_assert!(decidable);
        // Who may decide, and whether that includes this user: the server checks again on submit.
        match allowed_deciders(&self.policy, r) {
            None => out.push_str("<p class=\"note\">Anyone may decide on this request.</p>"),
            Some(list) => {
                let _ = write!(
                    out,
                    "<p class=\"note\">May decide: {}.</p>",
                    if list.is_empty() {
                        "nobody (policy and spec leave no approver)".to_string()
                    } else {
                        list.join(", ")
                    }
                );
                if !crate::identity::listed(&list, self.user) {
                    banner(out, "warn", &format!("You ({}) are not among the allowed deciders.", self.user));
                }
            }
        }
        if self.policy.four_eyes && r.requester().is_some_and(|who| crate::identity::same(who, self.user)) {
            banner(out, "warn", "Four-eyes policy: you requested this and may not approve it; ask another approver.");
        }
        let st = r.status.clone().unwrap_or_default();
        let digest = st.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
        let hidden = format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"uid\" value=\"{}\">\
<input type=\"hidden\" name=\"generation\" value=\"{}\"><input type=\"hidden\" name=\"round\" value=\"{}\">\
<input type=\"hidden\" name=\"digest\" value=\"{}\">",
            Esc(self.csrf),
            Esc(r.uid()),
            r.generation(),
            st.approval_round,
            Esc(&digest)
        );
        let path = self.path();
        let _ = write!(
            out,
            "<div class=\"forms\"><form method=\"post\" action=\"{path}/approve\" class=\"decide approve\">{hidden}\
<label>Comment <input type=\"text\" name=\"comment\" maxlength=\"1000\" autocomplete=\"off\"></label>"
        );
        if let Some(why) = over_budget {
            let approvers = &self.policy.over_budget_approvers;
            if !approvers.is_empty() && !approvers.iter().any(|a| a == self.user) {
                banner(
                    out,
                    "warn",
                    &format!("Only {} may approve over the budget; you may refine or reject.", approvers.join(", ")),
                );
            }
            let _ = write!(
                out,
                "<label class=\"check\"><input type=\"checkbox\" name=\"allow_over_budget\" value=\"1\" required> \
Allow over budget ({})</label>",
                Esc(why)
            );
        }
        let _ = write!(
            out,
            "<button type=\"submit\" class=\"approve\">Approve and run</button></form>\
<form method=\"post\" action=\"{path}/refine\" class=\"decide refine\">{hidden}\
<label>What should change <textarea name=\"feedback\" rows=\"3\" maxlength=\"4000\" required placeholder=\"e.g. only 1995, top 3 instead\"></textarea></label>\
<button type=\"submit\">Refine</button></form>\
<form method=\"post\" action=\"{path}/reject\" class=\"decide reject\">{hidden}\
<label>Reason <input type=\"text\" name=\"reason\" maxlength=\"1000\" autocomplete=\"off\"></label>\
<button type=\"submit\" class=\"reject\">Reject</button></form></div></div>"
        );
    }

    fn trail(&self, out: &mut String) {
        let st = self.r.status.clone().unwrap_or_default();
        out.push_str("<section id=\"trail\">");
        let pending: Vec<&Decision> = self
            .decisions
            .iter()
            .filter(|d| !st.history.iter().any(|h| h.decision_id.as_deref() == Some(d.id.as_str())))
            .collect();
        if !pending.is_empty() {
            out.push_str("<h2>Decisions not yet applied</h2><ul class=\"decisions\">");
            for d in pending {
                let _ = write!(
                    out,
                    "<li>{} by <b>{}</b> ({}) at {} for generation {} round {}",
                    d.decision.as_str(),
                    Esc(&d.by),
                    Esc(&d.source),
                    timestamp(&d.at),
                    d.generation,
                    d.round
                );
                if let Some(f) = &d.feedback {
                    let _ = write!(out, ": “{}”", Esc(f));
                }
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        if !st.conditions.is_empty() {
            out.push_str("<details><summary>Conditions</summary><table class=\"conditions\"><thead><tr><th>Type</th><th>Status</th><th>Reason</th><th>Message</th><th>Since</th></tr></thead><tbody>");
            for c in &st.conditions {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    Esc(&c.type_),
                    Esc(&c.status),
                    Esc(&c.reason),
                    Esc(&c.message),
                    timestamp(&c.last_transition_time)
                );
            }
            out.push_str("</tbody></table></details>");
        }
        if !st.history.is_empty() {
            out.push_str("<h2>History <small>newest first</small></h2><ul class=\"history\">");
            for h in st.history.iter().rev() {
                let _ = write!(
                    out,
                    "<li><time>{}</time> <b>{}</b> <small>gen {}</small>",
                    timestamp(&h.at),
                    Esc(&h.event),
                    h.generation
                );
                if let Some(d) = h.decision {
                    let _ = write!(out, " {}", d.as_str());
                }
                if let Some(by) = &h.by {
                    let _ = write!(out, " by {}", Esc(by));
                }
                if let Some(f) = &h.feedback {
                    let _ = write!(out, " — feedback: “{}”", Esc(f));
                }
                if let Some(m) = &h.message {
                    let _ = write!(out, " — {}", Esc(m));
                }
                if let Some(sql) = &h.sql {
                    let _ = write!(
                        out,
                        "<details><summary>SQL {}</summary><pre class=\"sql\"><code>",
                        Esc(&one_line(sql, 60))
                    );
                    highlight_sql(out, sql);
                    out.push_str("</code></pre></details>");
                }
                out.push_str("</li>");
            }
            out.push_str("</ul>");
        }
        out.push_str("</section>");
    }
}

/// The SQL shown before the current one (and its generation), from the history: the newest
/// entry carrying SQL whose digest is not the current digest.
pub fn previous_sql<'a>(r: &'a QueryRequest, current_digest: &str) -> Option<(&'a str, u64)> {
    let st = r.status.as_ref()?;
    st.history
        .iter()
        .rev()
        .filter(|h| h.sql.is_some() && h.sql_digest.as_deref() != Some(current_digest))
        .map(|h| (h.sql.as_deref().unwrap_or(""), h.generation))
        .next()
}

/// Why the SQL awaiting approval is over its budget, if it is: its estimate is above
/// `limits.maxBytesScanned` ([`crate::approval::over_budget`]).
pub fn over_budget(r: &QueryRequest) -> Option<String> {
    if r.phase() != Phase::AwaitingApproval {
        return None;
    }
    // The approval path's own rule, so the page and the refusal never disagree.
    let o = crate::approval::over_budget(r)?;
    Some(format!("estimated {} scanned exceeds limits.maxBytesScanned {}", bytes(o.estimate), bytes(o.budget)))
}

/// The text of a chart's `<desc>` (what the chart module writes for screen readers), unescaped.
fn svg_desc(svg: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(svg).ok()?;
    let start = text.find("<desc>")? + "<desc>".len();
    let end = start + text[start..].find("</desc>")?;
    Some(
        text[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Standard base64 (RFC 4648), for embedding the chart as a data URI.
pub(crate) fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
