//! Server-side SQL highlighting with the guard's own tokenizer and dialect (keywords, strings,
//! quoted identifiers, numbers, comments), written as HTML-escaped spans. No JavaScript library
//! and no lexer of our own that could drift from the engine's: what is coloured as a string or a
//! comment is what the engine reads as one. Every byte of the input appears in the output exactly
//! once (escaped; hidden characters as visible escapes), so the highlighted text is the SQL that
//! will run.

use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

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
///
/// Token boundaries come from sqlparser's tokenizer in the guard's own dialect
/// ([`crate::guard::dialect`]), so a `$$ -- $$` string, a nested comment or a quoted identifier is
/// coloured as what the engine reads, never as what a hand-written lexer guesses. Every byte of
/// the input appears in the output once, HTML-escaped, with hidden characters (controls, bidi
/// overrides, zero-width) shown as `\u{…}` escapes. Text the tokenizer refuses is shown plain.
pub fn highlight_sql(out: &mut String, sql: &str) {
    let dialect = crate::guard::dialect();
    let tokens = match Tokenizer::new(dialect.as_ref(), sql).tokenize_with_location() {
        Ok(t) => t,
        Err(_) => {
            push_text(out, sql);
            return;
        }
    };
    // Token starts as byte offsets: the tokenizer reports 1-based (line, column in characters),
    // counting lines at '\n' only.
    let mut starts = Vec::with_capacity(tokens.len());
    let (mut line, mut col, mut chars) = (1u64, 1u64, sql.char_indices().peekable());
    for t in &tokens {
        let want = (t.span.start.line, t.span.start.column);
        while (line, col) < want {
            match chars.next() {
                Some((_, '\n')) => {
                    line += 1;
                    col = 1;
                }
                Some(_) => col += 1,
                None => break,
            }
        }
        starts.push(chars.peek().map(|&(i, _)| i).unwrap_or(sql.len()));
    }
    if starts.first().is_some_and(|&s| s != 0) || starts.windows(2).any(|w| w[0] > w[1]) {
        push_text(out, sql);
        return;
    }
    for (i, t) in tokens.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(sql.len());
        let text = &sql[starts[i]..end];
        let class = match &t.token {
            Token::Word(w) if w.quote_style.is_some() => "id",
            Token::Word(w) if is_keyword(&w.value) => "kw",
            Token::Number(..) => "num",
            Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => "com",
            Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => "str",
            _ => "",
        };
        // A `--` comment token ends with its line break; keep the break outside the span.
        let (text, tail) = match text.strip_suffix('\n') {
            Some(t) if class == "com" => (t, "\n"),
            _ => (text, ""),
        };
        if class.is_empty() {
            push_text(out, text);
        } else {
            out.push_str("<span class=\"");
            out.push_str(class);
            out.push_str("\">");
            push_text(out, text);
            out.push_str("</span>");
        }
        out.push_str(tail);
    }
}

/// HTML-escaped, hidden characters written as visible escapes (by [`push_escaped`]).
fn push_text(out: &mut String, s: &str) {
    push_escaped(out, s);
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
    fn strings_and_comments_are_what_the_engine_reads() {
        // `$$ -- $$` is a string to sqlparser and DataFusion: c_phone is a column, not a comment.
        let h = hl("select c_name, $$ -- $$, c_phone from customer");
        assert!(h.contains("<span class=\"str\">$$ -- $$</span>, c_phone"), "{h}");
        assert!(!h.contains("class=\"com\""), "{h}");
        // Nested comments: the whole nest is one comment, and what follows is code.
        let h = hl("select 1 /* a /* b */ c */ , secret from t");
        assert!(h.contains("<span class=\"com\">/* a /* b */ c */</span> , secret"), "{h}");
        // Hidden characters are visible.
        let h = hl("select 'a\u{202e}b' from t");
        assert!(h.contains("\\u{202E}") && !h.contains('\u{202e}'), "{h}");
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
