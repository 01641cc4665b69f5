//! The messages: an approval card per round, a result card, a failure, rejection or timeout card,
//! each with its plain-text form, built within size budgets until it fits
//! [`MAX_MESSAGE_BYTES`]; and the thread and idempotency ids that keep one request's messages in
//! one thread, each posted once.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::html::{button, card, esc, field, html_text, para, plain, plain_code, section, truncate};
use super::{ChatOptions, MAX_MESSAGE_BYTES};
use crate::spec::quantity::{format_duration, human_bytes};
use crate::spec::{DEFAULT_NAMESPACE, Phase, Preview, QueryRequest, ResultColumn};

// ---------------------------------------------------------------------------------------------
// Identity of threads and messages

/// One thread per request (a deleted and recreated request starts a new one).
pub fn thread_key(req: &QueryRequest) -> String {
    format!("sqlctl-{}-{}-{}", req.metadata.namespace(), req.metadata.name, req.uid())
}

/// A deterministic UUID-shaped id from `parts` (Chat's `requestId`: the same id returns the
/// message already created instead of posting another).
pub fn request_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let x = hex::encode(&h.finalize()[..16]);
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}

// ---------------------------------------------------------------------------------------------
// Messages

/// One message in its two forms, with its idempotency id.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// Chat's `requestId` for this message.
    pub request_id: String,
    /// The card message (`cardsV2` and `fallbackText`).
    pub card: Value,
    /// The same as plain text (`text`), sent when Chat refuses the card.
    pub text: Value,
}

/// How much of the user's content a message carries; smaller budgets are tried until the message
/// fits [`MAX_MESSAGE_BYTES`].
#[derive(Clone, Copy, Debug)]
struct Budget {
    sql: usize,
    text: usize,
    rows: usize,
    cols: usize,
    cell: usize,
}

const BUDGETS: [Budget; 4] = [
    Budget { sql: 8_000, text: 2_000, rows: 10, cols: 8, cell: 32 },
    Budget { sql: 3_000, text: 800, rows: 5, cols: 6, cell: 20 },
    Budget { sql: 1_000, text: 300, rows: 3, cols: 4, cell: 12 },
    Budget { sql: 300, text: 100, rows: 0, cols: 0, cell: 0 },
];

/// The approval card for `req` (in AwaitingApproval).
pub fn approval_message(req: &QueryRequest, opts: &ChatOptions) -> ChatMessage {
    let st = req.status.clone().unwrap_or_default();
    let sql_digest = st.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
    let id = request_id(&[
        "sqlctl-gchat-v1",
        req.uid(),
        "approval",
        &req.generation().to_string(),
        &st.approval_round.to_string(),
        &sql_digest,
    ]);
    fit(id, |b| approval_parts(req, opts, b))
}

/// The result, failure, rejection or timeout card for `req` (in a terminal phase).
pub fn finished_message(req: &QueryRequest, opts: &ChatOptions) -> ChatMessage {
    finished_message_with_image(req, opts, None)
}

/// [`finished_message`] with the chart shown as an image from `image` (a presigned URL).
pub fn finished_message_with_image(req: &QueryRequest, opts: &ChatOptions, image: Option<&str>) -> ChatMessage {
    let id =
        request_id(&["sqlctl-gchat-v1", req.uid(), "finished", &req.generation().to_string(), req.phase().as_str()]);
    fit(id, |b| finished_parts(req, opts, b, image))
}

/// Builds with shrinking budgets until the card message fits.
fn fit(request_id: String, build: impl Fn(Budget) -> (Value, String)) -> ChatMessage {
    let mut last = None;
    for b in BUDGETS {
        let (card, text) = build(b);
        let card_msg = json!({"fallbackText": text, "cardsV2": [card]});
        if card_msg.to_string().len() > MAX_MESSAGE_BYTES {
            last = Some(text);
            continue;
        }
        return ChatMessage { request_id, card: card_msg, text: json!({ "text": text }) };
    }
    // Unreachable with the smallest budget (a few KiB at most); keep the text only if not.
    let text = last.expect("at least one budget");
    let (text, _) = truncate(&text, 4_000);
    ChatMessage { request_id, card: json!({ "text": text }), text: json!({ "text": text }) }
}

fn approval_parts(req: &QueryRequest, opts: &ChatOptions, b: Budget) -> (Value, String) {
    let st = req.status.clone().unwrap_or_default();
    let g = st.generated.clone().unwrap_or_default();
    let (name, ns) = (req.metadata.name.as_str(), req.metadata.namespace());
    let cmds = decide_commands(req, &g.sql_digest);
    let subtitle = format!("{ns} · generation {} · round {}", req.generation(), st.approval_round);

    let mut sections = Vec::new();
    if let Some(q) = req.spec.question.as_deref().filter(|q| !q.trim().is_empty()) {
        sections.push(section(Some("Question"), vec![para(&html_text(q, b.text))]));
    }
    let (sql_html, sql_note) = sql_block(&g.sql, b.sql, name, ns);
    let mut sql_widgets = vec![para(&sql_html)];
    if let Some(n) = sql_note {
        sql_widgets.push(para(&n));
    }
    let sql_header = if req.spec.sql.is_some() { "SQL (hand-written)" } else { "SQL" };
    sections.push(section(Some(sql_header), sql_widgets));

    let mut details = Vec::new();
    if let Some(s) = &g.source
        && let Some(label) = s.verified_label()
    {
        let name = s.verified_query.as_deref().unwrap_or("-");
        details.push(field("Source", &format!("<b>{}</b> · verified query {}", esc(&label), esc(name))));
    }
    if !g.explanation.trim().is_empty() {
        details.push(field("Explanation", &html_text(&g.explanation, b.text)));
    }
    if !g.assumptions.is_empty() {
        details.push(field("Assumptions", &html_text(&g.assumptions.join("\n"), b.text)));
    }
    if req.spec.sql.is_none() {
        details.push(field("Confidence", &format!("{:.0}%", g.confidence.clamp(0.0, 1.0) * 100.0)));
    }
    let tables = if g.tables_used.is_empty() { "—".to_string() } else { g.tables_used.join(", ") };
    details.push(field("Tables", &esc(&format!("{} · {}", req.spec.catalog.database, tables))));
    details.push(field("Estimated scan", &esc(&estimate_text(&st.estimate))));
    details.push(field("Requested by", &esc(req.requester().unwrap_or("unknown"))));
    let model = if g.model.is_empty() { String::new() } else { format!(" · {}", g.model) };
    details.push(field("Generation", &esc(&format!("{} (round {}){model}", req.generation(), st.approval_round))));
    details.push(field("Digest", &format!("<code>{}</code>", esc(short_digest(&g.sql_digest)))));
    if let Some(d) = st.approval_deadline {
        details.push(field("Decide before", &esc(&d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    }
    sections.push(section(Some("Details"), details));

    let how = cmds
        .iter()
        .map(|(label, cmd)| format!("<b>{label}</b><br><code>{}</code>", esc(cmd)))
        .collect::<Vec<_>>()
        .join("<br>");
    let mut decide = vec![para(&how)];
    if let Some(link) = console_link(opts, ns, name) {
        decide.push(button("Open in console", &link));
    }
    sections.push(section(Some("How to decide"), decide));

    let card = card("approval", &format!("Approval needed: {name}"), &subtitle, sections);

    let mut text =
        format!("*Approval needed*: {ns}/{name} (generation {}, round {})\n", req.generation(), st.approval_round);
    if let Some(q) = req.spec.question.as_deref() {
        text.push_str(&format!("Question: {}\n", plain(q, b.text.min(500))));
    }
    text.push_str(&format!("```\n{}\n```\n", plain_code(&g.sql, b.sql.min(1_500))));
    text.push_str(&format!("Estimated scan: {}\n", estimate_text(&st.estimate)));
    text.push_str(&format!("Requested by: {}\n", plain(req.requester().unwrap_or("unknown"), 100)));
    for (label, cmd) in &cmds {
        text.push_str(&format!("{label}: `{cmd}`\n"));
    }
    if let Some(link) = console_link(opts, ns, name) {
        text.push_str(&format!("Console: {link}\n"));
    }
    (card, text.trim_end().to_string())
}

fn finished_parts(req: &QueryRequest, opts: &ChatOptions, b: Budget, image: Option<&str>) -> (Value, String) {
    let st = req.status.clone().unwrap_or_default();
    let (name, ns) = (req.metadata.name.as_str(), req.metadata.namespace());
    let phase = st.phase;
    let subtitle = format!("{ns} · generation {}", req.generation());
    let mut sections = Vec::new();
    if let Some(q) = req.spec.question.as_deref().filter(|q| !q.trim().is_empty()) {
        sections.push(section(Some("Question"), vec![para(&html_text(q, b.text.min(500)))]));
    }
    let mut text;
    let title;
    if phase == Phase::Done {
        title = format!("Done: {name}");
        let ex = st.execution.clone().unwrap_or_default();
        let mut stats = vec![
            field("Rows", &ex.rows.map(|r| r.to_string()).unwrap_or_else(|| "—".into())),
            field("Bytes scanned", &esc(&ex.bytes_scanned.map(human_bytes).unwrap_or_else(|| "—".into()))),
            field("Cost", &esc(&ex.cost_usd.map(usd).unwrap_or_else(|| "—".into()))),
            field(
                "Duration",
                &esc(&ex
                    .duration_ms
                    .map(|ms| format_duration(Duration::from_millis(ms)))
                    .unwrap_or_else(|| "—".into())),
            ),
        ];
        if let Some(a) = &st.approval {
            stats.push(field("Approved by", &esc(&a.by)));
        }
        sections.push(section(Some("Result"), stats));
        let mut preview_text = String::new();
        let mut answer_text = String::new();
        // One row: its answer, formatted for its types (`revenue: 21,356,596,030.63`).
        if let Some(a) = &ex.answer {
            let line = a.line();
            answer_text = format!("*Answer*: {}\n", plain(&line, 500));
            sections.push(section(Some("Answer"), vec![para(&format!("<b>{}</b>", esc(&line)))]));
        }
        // The chart, when the operator turned images on and a PNG is stored.
        if let Some(url) = image.filter(|_| ex.chart_location.is_some()) {
            sections.push(section(
                Some("Chart"),
                vec![json!({"image": {"imageUrl": url, "altText": format!("chart of {name}")}})],
            ));
        }
        if let Some(p) = ex.preview.as_ref().filter(|p| opts.preview && b.rows > 0 && !p.columns.is_empty()) {
            let (table, note) = preview_table(p, ex.rows, b, &ex.columns);
            let plain_table = plain_code(&table.replace('\u{a0}', " "), usize::MAX);
            preview_text = format!("```\n{plain_table}\n```\n{note}\n");
            sections.push(section(
                Some("Preview"),
                vec![
                    para(&format!("<code>{}</code>", esc(&table).replace('\n', "<br>"))),
                    para(&format!("<i>{}</i>", esc(&note))),
                ],
            ));
        }
        let mut full = Vec::new();
        if let Some(loc) = &ex.output_location {
            full.push(field("Full result", &esc(loc)));
        }
        if let Some(loc) = &ex.chart_location {
            full.push(field("Chart", &esc(loc)));
        }
        full.push(para(&format!("<code>{}</code>", esc(&format!("sqlctl results {name}{}", ns_flag(ns))))));
        if let Some(link) = console_link(opts, ns, name) {
            full.push(button("Open in console", &link));
        }
        sections.push(section(Some("Where the result is"), full));
        text = format!(
            "*Done*: {ns}/{name}: {} rows, {} scanned, {}, {}\n",
            ex.rows.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
            ex.bytes_scanned.map(human_bytes).unwrap_or_else(|| "?".into()),
            ex.cost_usd.map(usd).unwrap_or_else(|| "cost unknown".into()),
            ex.duration_ms.map(|ms| format_duration(Duration::from_millis(ms))).unwrap_or_else(|| "?".into()),
        );
        text.push_str(&answer_text);
        text.push_str(&preview_text);
        if let Some(loc) = &ex.output_location {
            text.push_str(&format!("Full result: {}\n", plain(loc, 500)));
        }
        if let Some(loc) = &ex.chart_location {
            text.push_str(&format!("Chart: {}\n", plain(loc, 500)));
        }
        text.push_str(&format!("`sqlctl results {name}{}`\n", ns_flag(ns)));
    } else {
        let (label, reason, message) = outcome(&st);
        title = format!("{label}: {name}");
        let mut w = vec![field("Reason", &esc(&reason))];
        if !message.is_empty() {
            w.push(field("Details", &html_text(&message, b.text)));
        }
        if let Some(a) = st.approval.as_ref().filter(|_| phase == Phase::Rejected) {
            w.push(field("Rejected by", &esc(&a.by)));
        }
        sections.push(section(Some(label), w));
        if let Some(g) = st.generated.as_ref().filter(|g| !g.sql.is_empty()) {
            let (sql_html, note) = sql_block(&g.sql, b.sql.min(2_000), name, ns);
            let mut ws = vec![para(&sql_html)];
            if let Some(n) = note {
                ws.push(para(&n));
            }
            sections.push(section(Some("SQL"), ws));
        }
        let mut more = vec![para(&format!("<code>{}</code>", esc(&format!("sqlctl describe {name}{}", ns_flag(ns)))))];
        if let Some(link) = console_link(opts, ns, name) {
            more.push(button("Open in console", &link));
        }
        sections.push(section(Some("More"), more));
        text = format!("*{label}*: {ns}/{name}: {reason}\n");
        if !message.is_empty() {
            text.push_str(&format!("{}\n", plain(&message, b.text.min(1_000))));
        }
        text.push_str(&format!("`sqlctl describe {name}{}`\n", ns_flag(ns)));
    }
    if let Some(link) = console_link(opts, ns, name) {
        text.push_str(&format!("Console: {link}\n"));
    }
    let card = card(&format!("finished-{}", phase.as_str().to_ascii_lowercase()), &title, &subtitle, sections);
    (card, text.trim_end().to_string())
}

/// Label, reason and message of a request that did not finish Done.
fn outcome(st: &crate::spec::QueryRequestStatus) -> (&'static str, String, String) {
    let ready = st.condition("Ready");
    let approved = st.condition("Approved");
    let label = match st.phase {
        Phase::Rejected => "Rejected",
        Phase::TimedOut => "Timed out",
        _ => "Failed",
    };
    let reason = ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| st.phase.to_string());
    let mut message = ready.map(|c| c.message.clone()).unwrap_or_default();
    if message.is_empty() && matches!(st.phase, Phase::Rejected | Phase::TimedOut) {
        message = approved.map(|c| c.message.clone()).unwrap_or_default();
    }
    if message.is_empty() {
        message = st.execution.as_ref().and_then(|e| e.error.clone()).unwrap_or_default();
    }
    (label, reason, message)
}

/// The three decisions as exact commands, for the digest under review.
fn decide_commands(req: &QueryRequest, digest: &str) -> [(&'static str, String); 3] {
    let name = &req.metadata.name;
    let n = ns_flag(req.metadata.namespace());
    // The full digest: a prefix is for reading only and is refused as an approval.
    let d = digest;
    [
        ("Approve", format!("sqlctl approve {name}{n} --digest {d}")),
        ("Refine", format!("sqlctl refine {name}{n} --digest {d} --feedback '…'")),
        ("Reject", format!("sqlctl reject {name}{n} --digest {d} --reason '…'")),
    ]
}

fn ns_flag(ns: &str) -> String {
    if ns == DEFAULT_NAMESPACE { String::new() } else { format!(" -n {ns}") }
}

fn short_digest(d: &str) -> &str {
    &d[..d.len().min(12)]
}

fn usd(v: f64) -> String {
    if v > 0.0 && v < 0.0001 {
        "<$0.0001".into()
    } else if v > 0.0 && v < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

fn estimate_text(e: &Option<crate::spec::Estimate>) -> String {
    match e {
        None => "not estimated".into(),
        Some(e) => {
            let method = if e.method.is_empty() { String::new() } else { format!(" ({})", e.method) };
            format!("{} scanned, about {}{method}", human_bytes(e.bytes), usd(e.cost_usd))
        }
    }
}

/// `<console-url>/requests/<namespace>/<name>`.
fn console_link(opts: &ChatOptions, ns: &str, name: &str) -> Option<String> {
    let mut u = opts.console_url.clone()?;
    u.path_segments_mut().ok()?.pop_if_empty().extend(["requests", ns, name]);
    Some(u.to_string())
}

// ---------------------------------------------------------------------------------------------
// SQL and result previews

/// SQL in monospace: escaped, line breaks and indentation kept, truncated to `max` characters
/// with a note saying where the whole SQL is.
fn sql_block(sql: &str, max: usize, name: &str, ns: &str) -> (String, Option<String>) {
    // Hidden characters (controls, bidi overrides, zero-width) are shown escaped: the approver
    // reads what runs.
    let sql = crate::spec::text::escape_hidden(sql);
    let sql = sql.as_ref();
    let (t, cut) = truncate(sql.trim_end(), max);
    let lines: Vec<String> = t
        .replace("\r\n", "\n")
        .split('\n')
        .map(|l| {
            let indent = l.len() - l.trim_start_matches(' ').len();
            format!("{}{}", "\u{a0}".repeat(indent), esc(&l[indent..]).replace('\t', "\u{a0}\u{a0}\u{a0}\u{a0}"))
        })
        .collect();
    let html = format!("<code>{}</code>", lines.join("<br>"));
    let note = cut.then(|| {
        format!(
            "<i>SQL truncated: {} of {} characters shown; the whole SQL: </i><code>{}</code>",
            t.chars().count(),
            sql.chars().count(),
            esc(&format!("sqlctl describe {name}{}", ns_flag(ns)))
        )
    });
    (html, note)
}

/// The preview as a fixed-width table (cells padded with no-break spaces) and a note on what it
/// leaves out.
fn preview_table(p: &Preview, total_rows: Option<u64>, b: Budget, typed: &[ResultColumn]) -> (String, String) {
    // Numbers right-aligned, by the result's recorded types.
    let right: Vec<bool> = if typed.len() == p.columns.len() && typed.iter().zip(&p.columns).all(|(t, c)| &t.name == c)
    {
        typed.iter().map(|t| t.kind().is_numeric()).collect()
    } else {
        vec![false; p.columns.len()]
    };
    let cols = p.columns.len().min(b.cols);
    let rows = p.rows.len().min(b.rows);
    let cell = |s: &str| -> String {
        let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let (t, cut) = truncate(&s, b.cell.max(2) - 1);
        if cut { format!("{t}…") } else { t }
    };
    let header: Vec<String> = p.columns.iter().take(cols).map(|c| cell(c)).collect();
    let body: Vec<Vec<String>> = p
        .rows
        .iter()
        .take(rows)
        .map(|r| (0..cols).map(|i| cell(r.get(i).and_then(|v| v.as_deref()).unwrap_or("NULL"))).collect())
        .collect();
    let widths: Vec<usize> = (0..cols)
        .map(|i| body.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(1))
        .collect();
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = "\u{a0}".repeat(w - c.chars().count());
                if right[i] { format!("{pad}{c}") } else { format!("{c}{pad}") }
            })
            .collect::<Vec<_>>()
            .join("\u{a0}\u{a0}")
            .trim_end_matches('\u{a0}')
            .to_string()
    };
    let mut out = vec![line(&header)];
    out.push(widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("\u{a0}\u{a0}"));
    out.extend(body.iter().map(|r| line(r)));
    let total = total_rows.unwrap_or(p.rows.len() as u64);
    let mut note = format!("{rows} of {total} rows");
    if cols < p.columns.len() {
        note.push_str(&format!(", {cols} of {} columns", p.columns.len()));
    }
    note.push_str(" shown");
    if p.truncated && total_rows.is_none() {
        note.push_str(" (the result has more)");
    }
    (out.join("\n"), note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::gchat::parse_console_url;
    use crate::notify::gchat::testing::{done, request};

    fn texts(v: &Value) -> String {
        v.to_string()
    }

    #[test]
    fn the_approval_card_has_everything_needed_to_decide_and_escapes_user_content() {
        let opts = ChatOptions {
            console_url: Some(parse_console_url("https://console.example.com/sqlctl/").unwrap()),
            ..Default::default()
        };
        let m = approval_message(&request(Phase::AwaitingApproval), &opts);
        let card = &m.card["cardsV2"][0];
        assert_eq!(card["cardId"], "sqlctl-approval");
        assert_eq!(card["card"]["header"]["title"], "Approval needed: top-customers");
        assert_eq!(card["card"]["header"]["subtitle"], "growth · generation 2 · round 1");
        let all = texts(&m.card);
        assert!(all.contains("Who spent the most &lt;b&gt;&amp; why&lt;/b&gt;? &lt;users/all&gt;"), "{all}");
        assert!(!all.contains("<users/all>") && !all.contains("<b>&"), "user content never becomes markup: {all}");
        assert!(all.contains("<code>select c_name"), "SQL in monospace: {all}");
        assert!(all.contains("<br>\u{a0}\u{a0}join customer"), "line breaks and indentation kept: {all}");
        assert!(all.contains("o_comment &lt;&gt; &#39;x&#39; and 1 &lt; 2"), "{all}");
        assert!(all.contains("Sums &lt;totals&gt; per customer"), "{all}");
        assert!(all.contains("87%"), "{all}");
        assert!(all.contains("tpch · orders, customer"), "{all}");
        assert!(all.contains("3.0 MiB scanned, about &lt;$0.0001 (footer)"), "{all}");
        assert!(all.contains("alice"), "{all}");
        assert!(all.contains("sqlctl approve top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "{all}");
        assert!(
            all.contains("sqlctl refine top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --feedback &#39;…&#39;"),
            "{all}"
        );
        assert!(all.contains("sqlctl reject top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "{all}");
        let buttons: Vec<&Value> = card["card"]["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["widgets"].as_array().unwrap())
            .filter_map(|w| w.get("buttonList"))
            .collect();
        assert_eq!(buttons.len(), 1);
        assert_eq!(
            buttons[0]["buttons"][0]["onClick"]["openLink"]["url"],
            "https://console.example.com/sqlctl/requests/growth/top-customers"
        );
        // The text forms: the fallback and the plain-text message say the same, mentions defused.
        let text = m.text["text"].as_str().unwrap();
        assert_eq!(m.card["fallbackText"], text);
        assert!(text.contains("`sqlctl approve top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef`"), "{text}");
        assert!(text.contains("```\nselect c_name"), "{text}");
        assert!(!text.contains("<users/all>"), "{text}");
        // No console URL: no button.
        let plain = approval_message(&request(Phase::AwaitingApproval), &ChatOptions::default());
        assert!(!texts(&plain.card).contains("buttonList"));
        // The id is stable for the same round and changes with the next.
        assert_eq!(plain.request_id, m.request_id);
        let mut next = request(Phase::AwaitingApproval);
        next.status.as_mut().unwrap().approval_round = 2;
        assert_ne!(approval_message(&next, &opts).request_id, m.request_id);
    }

    #[test]
    fn the_result_card_shows_the_answer_and_when_turned_on_the_chart_as_an_image() {
        // Off (no URL): no image widget.
        let m = finished_message(&done(25, 3), &ChatOptions::default());
        assert!(!m.card.to_string().contains("imageUrl"));
        let url = "https://results.s3.amazonaws.com/growth/abc.png?X-Amz-Expires=3600&X-Amz-Signature=x";
        let m = finished_message_with_image(&done(25, 3), &ChatOptions::default(), Some(url));
        let card = m.card.to_string();
        assert!(card.contains("\"imageUrl\"") && card.contains("X-Amz-Expires=3600"), "{card}");
        // One row: the answer line, typed, right at the top of the result.
        let mut r = done(1, 1);
        let ex = r.status.as_mut().unwrap().execution.as_mut().unwrap();
        ex.answer = Some(crate::spec::Answer {
            values: vec![crate::spec::AnswerValue { name: "revenue".into(), value: Some("21,356,596,030.63".into()) }],
            context: vec![],
        });
        let m = finished_message(&r, &ChatOptions::default());
        assert!(texts(&m.card).contains("revenue: 21,356,596,030.63"), "{}", m.card);
        assert!(m.text["text"].as_str().unwrap().contains("*Answer*: revenue: 21,356,596,030.63"));
    }

    #[test]
    fn the_result_card_shows_stats_a_small_preview_and_where_the_result_is() {
        let m = finished_message(&done(25, 3), &ChatOptions::default());
        let card = &m.card["cardsV2"][0]["card"];
        assert_eq!(card["header"]["title"], "Done: top-customers");
        let all = texts(&m.card);
        for needle in [
            "\"Rows\"",
            "25",
            "5.0 MiB",
            "$0.03",
            "1s500ms",
            "bob",
            "s3://results/growth/top-customers/abc.csv",
            "abc.svg",
            "sqlctl results top-customers -n growth",
            "10 of 25 rows shown",
            "&lt;v0.0&gt;",
            "NULL",
        ] {
            assert!(all.contains(needle), "{needle} missing: {all}");
        }
        assert!(!all.contains("<v9.0>") && all.contains("&lt;v9.0&gt;") && !all.contains("v10.0"), "{all}");
        // Preview off: no row leaves for chat.
        let off = finished_message(&done(25, 3), &ChatOptions { preview: false, ..Default::default() });
        let all = texts(&off.card) + &texts(&off.text);
        assert!(!all.contains("v0.0") && !all.contains("Preview"), "{all}");
        assert!(all.contains("25") && all.contains("abc.csv"), "{all}");
    }

    #[test]
    fn failure_rejection_and_timeout_cards_say_why() {
        let mut f = request(Phase::Failed);
        f.status.as_mut().unwrap().set_condition("Ready", "False", "QueryFailed", "column x does not exist");
        let all = texts(&finished_message(&f, &ChatOptions::default()).card);
        assert!(
            all.contains("Failed: top-customers")
                && all.contains("QueryFailed")
                && all.contains("column x does not exist"),
            "{all}"
        );
        assert!(all.contains("sqlctl describe top-customers -n growth"), "{all}");

        let mut r = request(Phase::Rejected);
        let st = r.status.as_mut().unwrap();
        st.set_condition("Approved", "False", "Rejected", "rejected by carol: too <expensive>");
        st.set_condition("Ready", "False", "Rejected", "");
        let m = finished_message(&r, &ChatOptions::default());
        let all = texts(&m.card);
        assert!(
            all.contains("Rejected: top-customers") && all.contains("rejected by carol: too &lt;expensive&gt;"),
            "{all}"
        );
        assert!(m.text["text"].as_str().unwrap().starts_with("*Rejected*: growth/top-customers: Rejected"), "{m:?}");

        let mut t = request(Phase::TimedOut);
        let st = t.status.as_mut().unwrap();
        st.set_condition("Approved", "False", "ApprovalTimeout", "no valid decision before the approval deadline");
        st.set_condition("Ready", "False", "ApprovalTimeout", "");
        let all = texts(&finished_message(&t, &ChatOptions::default()).card);
        assert!(
            all.contains("Timed out: top-customers") && all.contains("ApprovalTimeout") && all.contains("deadline"),
            "{all}"
        );
        let ids: std::collections::HashSet<String> =
            [&f, &r, &t].iter().map(|q| finished_message(q, &ChatOptions::default()).request_id).collect();
        assert_eq!(ids.len(), 3, "one id per terminal phase");
    }

    #[test]
    fn huge_content_is_truncated_to_fit_a_chat_message() {
        let mut r = done(200, 40);
        let st = r.status.as_mut().unwrap();
        st.generated.as_mut().unwrap().sql = "select '<&>' as x, ".repeat(5_000);
        st.execution.as_mut().unwrap().preview.as_mut().unwrap().rows.iter_mut().for_each(|row| {
            row.iter_mut().for_each(|c| *c = Some("&".repeat(500)));
        });
        r.spec.question = Some("why? ".repeat(5_000));
        let a = approval_message(&r, &ChatOptions::default());
        let size = a.card.to_string().len();
        assert!(size <= MAX_MESSAGE_BYTES, "{size}");
        assert!(texts(&a.card).contains("SQL truncated"), "a note says so");
        assert!(a.text.to_string().len() <= MAX_MESSAGE_BYTES);
        let f = finished_message(&r, &ChatOptions::default());
        let size = f.card.to_string().len();
        assert!(size <= MAX_MESSAGE_BYTES, "{size}");
        assert!(texts(&f.card).contains("columns shown"), "{}", texts(&f.card));
    }
}
