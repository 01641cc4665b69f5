//! HTML building blocks: escaping, the page layout and small formatters. Pages are rendered into
//! one `String` buffer; every value that came from a request, a user or the store goes through
//! [`push_escaped`] (or [`Esc`]), and attribute values are always double-quoted.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};

use crate::spec::Phase;

/// Appends `s` with `& < > " '` escaped: safe in element content and in quoted attributes.
/// Hidden characters (controls, bidi overrides, zero-width; see [`crate::spec::text`]) are
/// written as visible `\u{…}` escapes, so no page can draw text other than what is stored.
pub fn push_escaped(out: &mut String, s: &str) {
    let s = crate::spec::text::escape_hidden(s);
    let s = s.as_ref();
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

/// `Display` wrapper that escapes, for `write!`.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.0.len() + 8);
        push_escaped(&mut s, self.0);
        f.write_str(&s)
    }
}

/// Percent-encodes a query or path component (names are DNS labels, but phases, namespaces and
/// `next` paths pass through here too).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The page kinds `console.js` knows how to refresh.
#[derive(Clone, Copy)]
pub enum PageKind {
    List,
    Detail,
    Other,
}

/// Everything the layout needs besides the body.
pub struct Layout<'a> {
    pub title: &'a str,
    pub kind: PageKind,
    /// `namespace/name` of a detail page (the SSE events it listens for).
    pub key: Option<&'a str>,
    /// Signed-in user, shown in the header.
    pub user: Option<&'a str>,
    /// CSRF token for the logout form (token sessions only).
    pub logout_csrf: Option<&'a str>,
}

/// Wraps `body` in the common page: stylesheet, script (no inline script or style anywhere, so
/// the CSP can forbid both), header with the user and the live-update indicator.
pub fn page(l: &Layout, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>",
    );
    push_escaped(&mut out, l.title);
    out.push_str(
        " · sqlctl</title><link rel=\"stylesheet\" href=\"/static/console.css\">\
<script src=\"/static/console.js\" defer></script></head>\n<body data-page=\"",
    );
    out.push_str(match l.kind {
        PageKind::List => "list",
        PageKind::Detail => "detail",
        PageKind::Other => "other",
    });
    out.push('"');
    if let Some(k) = l.key {
        out.push_str(" data-key=\"");
        push_escaped(&mut out, k);
        out.push('"');
    }
    out.push_str("><header class=\"top\"><a class=\"brand\" href=\"/\">sqlctl</a><span class=\"sub\">approvals</span>");
    if let Some(u) = l.user {
        out.push_str("<span class=\"spacer\"></span><span id=\"live\" class=\"live\" title=\"live updates\"></span><span class=\"who\">");
        push_escaped(&mut out, u);
        out.push_str("</span>");
        if let Some(csrf) = l.logout_csrf {
            out.push_str("<form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"");
            push_escaped(&mut out, csrf);
            out.push_str("\"><button type=\"submit\" class=\"link\">log out</button></form>");
        }
    }
    out.push_str("</header>\n<main>");
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// `<span class="phase p-Done">Done</span>`.
pub fn phase_badge(out: &mut String, p: Phase) {
    let _ = write!(out, "<span class=\"phase p-{p}\">{p}</span>");
}

/// A banner (`kind`: ok | warn | error) with escaped text.
pub fn banner(out: &mut String, kind: &str, text: &str) {
    let _ = write!(out, "<div class=\"banner {kind}\" role=\"status\">{}</div>", Esc(text));
}

/// 1.5 GiB, 12.0 MiB, 900 B.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// `2026-11-29 07:34:12Z`.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Compact age: `45s`, `12m`, `3h`, `5d`.
pub fn age(t: &DateTime<Utc>, now: &DateTime<Utc>) -> String {
    let s = (*now - *t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// First line of `s`, at most `max` characters, with `…` when cut.
pub fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let more = s.trim().lines().nth(1).is_some();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || more {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        let mut s = String::new();
        push_escaped(&mut s, "<a href=\"x\" onclick='y'>&amp;</a> ✓");
        assert_eq!(s, "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt; ✓");
        assert_eq!(Esc("a<b").to_string(), "a&lt;b");
        assert_eq!(url_encode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
    }

    #[test]
    fn formatters() {
        assert_eq!(bytes(900), "900 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(one_line("  \nselect a,\n b", 100), "select a,…");
        assert_eq!(one_line("abcdef", 3), "abc…");
        let now = Utc::now();
        assert_eq!(age(&(now - chrono::Duration::minutes(90)), &now), "1h");
    }
}
