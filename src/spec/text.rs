//! Characters that read differently to different lexers or terminals, and how every view escapes
//! them (DESIGN §5, "One canonical SQL").
//!
//! A character is *hidden* when a person cannot see it, or when it changes how the text around it
//! is lexed or drawn: C0 controls other than tab and newline, DEL, C1 controls (NEL U+0085 ends a
//! line for some lexers, CSI U+009B starts a terminal escape), the line and paragraph separators,
//! bidirectional embeddings, overrides, isolates and marks (the "Trojan Source" class), zero-width
//! spaces, joiners and other default-ignorable code points, and the variation selectors and tags.
//!
//! The guard refuses hidden characters anywhere in SQL except inside string literals, where they
//! are data (a Persian word needs its zero-width non-joiner). Every human view of SQL (`describe`,
//! the interactive approve, tables, the console, chat cards) shows them escaped with
//! [`escape_hidden`], so what a person reads is what the engine runs.

use std::borrow::Cow;

/// Is `c` a character that must never reach a lexer outside a string literal, nor a person
/// unescaped? See the module docs for the classes.
pub fn is_hidden(c: char) -> bool {
    match c {
        '\t' | '\n' => false,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Soft hyphen, combining grapheme joiner, Arabic letter mark, Hangul fillers, Mongolian
        // vowel separator.
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180e}' => true,
        '\u{180b}'..='\u{180f}' => true,
        // Zero-width space/non-joiner/joiner, LRM/RLM, line/paragraph separators, bidi
        // embeddings and overrides, word joiner and invisible operators, bidi isolates,
        // deprecated format characters.
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' => true,
        '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' => true,
        '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}' => true,
        _ => false,
    }
}

/// A short name for a hidden character, for messages (`U+202E (right-to-left override)`).
pub fn describe_char(c: char) -> String {
    let name = match c {
        '\r' => Some("carriage return"),
        '\u{1b}' => Some("escape"),
        '\0' => Some("NUL"),
        '\u{7f}' => Some("delete"),
        '\u{85}' => Some("next line"),
        '\u{9b}' => Some("control sequence introducer"),
        '\u{200b}' => Some("zero-width space"),
        '\u{200c}' => Some("zero-width non-joiner"),
        '\u{200d}' => Some("zero-width joiner"),
        '\u{200e}' | '\u{200f}' | '\u{61c}' => Some("bidirectional mark"),
        '\u{2028}' => Some("line separator"),
        '\u{2029}' => Some("paragraph separator"),
        '\u{202a}'..='\u{202e}' => Some("bidirectional embedding or override"),
        '\u{2066}'..='\u{2069}' => Some("bidirectional isolate"),
        '\u{feff}' => Some("byte order mark"),
        '\u{ad}' => Some("soft hyphen"),
        c if c.is_control() => Some("control character"),
        _ => None,
    };
    match name {
        Some(n) => format!("U+{:04X} ({n})", c as u32),
        None => format!("U+{:04X} (invisible or format character)", c as u32),
    }
}

/// `s` with every hidden character written as `\u{XXXX}` (and a literal backslash before a `u{`
/// doubled, so an escape can never be forged by the text itself). Borrowed when nothing needed
/// escaping, which is the common case.
pub fn escape_hidden(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) && !s.contains("\\u{") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if is_hidden(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else if c == '\\' && chars.peek() == Some(&'u') {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The first hidden character of `s` with its 1-based line and column (in characters).
pub fn first_hidden(s: &str) -> Option<(char, usize, usize)> {
    let (mut line, mut col) = (1, 0);
    for c in s.chars() {
        col += 1;
        if is_hidden(c) {
            return Some((c, line, col));
        }
        if c == '\n' {
            line += 1;
            col = 0;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_classes() {
        for c in ['\r', '\u{1b}', '\0', '\u{7f}', '\u{85}', '\u{9b}', '\u{200b}', '\u{202e}', '\u{2066}', '\u{feff}'] {
            assert!(is_hidden(c), "{:?}", c);
        }
        for c in ['\t', '\n', ' ', 'a', 'é', 'ｍ', 'ب', '😀'] {
            assert!(!is_hidden(c), "{:?}", c);
        }
    }

    #[test]
    fn escaping_is_visible_and_cannot_be_forged() {
        assert!(matches!(escape_hidden("select 1\nfrom t"), Cow::Borrowed(_)));
        assert_eq!(escape_hidden("a\u{1b}[2Kb"), "a\\u{001B}[2Kb");
        assert_eq!(escape_hidden("x\u{202e}y"), "x\\u{202E}y");
        // Text that already looks like an escape is not confusable with a real one.
        assert_eq!(escape_hidden("'\\u{202E}'"), "'\\\\u{202E}'");
        assert_eq!(first_hidden("ab\ncd\re"), Some(('\r', 2, 3)));
    }
}
