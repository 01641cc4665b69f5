//! Server-side SQL highlighting: a small tokenizer (keywords, strings, quoted identifiers,
//! numbers, comments) that writes HTML-escaped spans. No JavaScript library and no parser: the
//! output only colours what the reviewer reads, so an unusual token is simply left plain. Every
//! byte of the input appears in the output exactly once (escaped), so the highlighted text is
//! the SQL that will run.

use super::html::push_escaped;

/// Words shown as keywords (compared case-insensitively). Statements the guard refuses
/// (`insert`, `drop`, ...) are included so that hand-written SQL that slipped through review
/// would stand out, not hide.
const KEYWORDS: &[&str] = &[
    "all",
    "alter",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "between",
    "by",
    "case",
    "cast",
    "create",
    "cross",
    "cube",
    "current_date",
    "current_timestamp",
    "date",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "explain",
    "extract",
    "false",
    "fetch",
    "filter",
    "first",
    "following",
    "for",
    "from",
    "full",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "inner",
    "insert",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "last",
    "lateral",
    "left",
    "like",
    "limit",
    "merge",
    "natural",
    "not",
    "null",
    "nulls",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "partition",
    "preceding",
    "qualify",
    "range",
    "recursive",
    "right",
    "rollup",
    "row",
    "rows",
    "select",
    "set",
    "similar",
    "table",
    "then",
    "timestamp",
    "top",
    "true",
    "truncate",
    "unbounded",
    "union",
    "unload",
    "update",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

fn is_keyword(word: &str) -> bool {
    word.len() <= 17 && KEYWORDS.binary_search(&word.to_ascii_lowercase().as_str()).is_ok()
}

/// Appends `sql` to `out` as HTML with `<span class="…">` around keywords (`kw`), string literals
/// (`str`), quoted identifiers (`id`), numbers (`num`) and comments (`com`).
pub fn highlight_sql(out: &mut String, sql: &str) {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &sql[i..];
        let b = bytes[i];
        let (class, len) = if rest.starts_with("--") {
            ("com", rest.find('\n').unwrap_or(rest.len()))
        } else if let Some(body) = rest.strip_prefix("/*") {
            ("com", body.find("*/").map(|p| p + 4).unwrap_or(rest.len()))
        } else if b == b'\'' {
            ("str", quoted_len(rest, '\''))
        } else if b == b'"' || b == b'`' {
            ("id", quoted_len(rest, b as char))
        } else if b.is_ascii_digit() || (b == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            ("num", number_len(rest))
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')).unwrap_or(rest.len());
            (if is_keyword(&rest[..len]) { "kw" } else { "" }, len)
        } else {
            // Anything else (operators, whitespace, non-ASCII): one character, plain.
            ("", rest.chars().next().map(char::len_utf8).unwrap_or(1))
        };
        let token = &rest[..len];
        if class.is_empty() {
            push_escaped(out, token);
        } else {
            out.push_str("<span class=\"");
            out.push_str(class);
            out.push_str("\">");
            push_escaped(out, token);
            out.push_str("</span>");
        }
        i += len;
    }
}

/// Length of a literal opened by `quote` at the start of `s`, a doubled quote being an escaped
/// one; an unterminated literal runs to the end.
fn quoted_len(s: &str, quote: char) -> usize {
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|&(_, n)| n == quote) {
                chars.next();
                continue;
            }
            return i + c.len_utf8();
        }
    }
    s.len()
}

/// Length of a numeric literal: digits, one fraction, an optional exponent.
fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digits(i);
    if i < b.len() && b[i] == b'.' {
        i = digits(i + 1);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = digits(j);
        }
    }
    i.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hl(sql: &str) -> String {
        let mut s = String::new();
        highlight_sql(&mut s, sql);
        s
    }

    /// The visible text of highlighted HTML: tags removed, entities decoded.
    fn text(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    #[test]
    fn keyword_list_is_sorted_for_binary_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn tokens_get_classes_and_case_is_kept() {
        let h = hl("SELECT n_name, 1.5e3 FROM nation -- c\nwhere x = 'it''s' and \"Col\" /* b */");
        assert!(h.starts_with("<span class=\"kw\">SELECT</span> n_name, <span class=\"num\">1.5e3</span>"), "{h}");
        assert!(h.contains("<span class=\"com\">-- c</span>\n<span class=\"kw\">where</span>"), "{h}");
        assert!(h.contains("<span class=\"str\">&#39;it&#39;&#39;s&#39;</span>"), "{h}");
        assert!(h.contains("<span class=\"id\">&quot;Col&quot;</span>"), "{h}");
        assert!(h.ends_with("<span class=\"com\">/* b */</span>"), "{h}");
    }

    #[test]
    fn markup_in_sql_is_escaped_and_every_byte_survives() {
        for sql in [
            "select '<script>alert(1)</script>' as x",
            "select 1 where a < b and c > d -- </pre><b>",
            "select \"unterminated",
            "select 'ünïcödé ✓' /* unterminated",
            "select a&&b, x from t where y <> 'a\"b'",
        ] {
            let h = hl(sql);
            assert!(!h.contains("<script") && !h.contains("<b>") && !h.contains("</pre>"), "{h}");
            assert_eq!(text(&h), sql);
        }
    }
}
