//! Card building blocks (`cardsV2` widgets) and escaping: for Chat's card HTML subset ([`esc`])
//! and for its text format, so user content never becomes markup, links or mentions.

use serde_json::{Value, json};

pub(super) fn card(id: &str, title: &str, subtitle: &str, sections: Vec<Value>) -> Value {
    json!({
        "cardId": format!("sqlctl-{id}"),
        "card": {
            "header": {"title": title, "subtitle": subtitle},
            "sections": sections,
        }
    })
}

pub(super) fn section(header: Option<&str>, widgets: Vec<Value>) -> Value {
    match header {
        Some(h) => json!({"header": h, "widgets": widgets}),
        None => json!({ "widgets": widgets }),
    }
}

pub(super) fn para(html: &str) -> Value {
    json!({"textParagraph": {"text": html}})
}

pub(super) fn field(label: &str, html: &str) -> Value {
    json!({"decoratedText": {"topLabel": label, "text": html, "wrapText": true}})
}

pub(super) fn button(text: &str, url: &str) -> Value {
    json!({"buttonList": {"buttons": [{"text": text, "onClick": {"openLink": {"url": url}}}]}})
}

/// Escapes text for Chat's card HTML subset (`<b>`, `<i>`, `<code>`, `<a>`, `<font>`, `<br>`…):
/// user content can never add markup, links or mentions.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Prose: truncated to `max` characters (with an ellipsis), escaped, line breaks kept.
pub(super) fn html_text(s: &str, max: usize) -> String {
    let (t, cut) = truncate(s.trim(), max);
    let mut out = esc(&t).replace("\r\n", "\n").replace('\n', "<br>");
    if cut {
        out.push('…');
    }
    out
}

/// Plain text for Chat's text format: truncated, and `<` defused so user content cannot mention
/// (`<users/all>`) or link.
pub(super) fn plain(s: &str, max: usize) -> String {
    let (t, cut) = truncate(s.trim(), max);
    let mut out = t.replace('<', "<\u{200b}");
    if cut {
        out.push('…');
    }
    out
}

/// Code for a text-format fence: truncated, fences and `<` defused.
pub(super) fn plain_code(s: &str, max: usize) -> String {
    let s = crate::spec::text::escape_hidden(s);
    let (t, cut) = truncate(s.trim(), max);
    let mut out = t.replace("```", "`\u{200b}``").replace('<', "<\u{200b}");
    if cut {
        out.push_str("\n…");
    }
    out
}

/// The first `max` characters of `s`, and whether anything was cut.
pub(super) fn truncate(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (s[..i].to_string(), true),
        None => (s.to_string(), false),
    }
}
