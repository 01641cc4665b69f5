//! Values as people read them: numbers with thousands separators in the column's own precision
//! (a decimal keeps its scale: `21,356,596,030.63`, `10.50`), everything else as the engine wrote
//! it. Used for the one-line answer; previews keep the engine's text and align it by type.

use crate::spec::ValueKind;

/// `text` (a cell as the engine wrote it) formatted for its column's kind.
pub fn value(text: &str, kind: ValueKind) -> String {
    let t = text.trim();
    match kind {
        ValueKind::Integer | ValueKind::Decimal(_) if is_plain_number(t) => group(t),
        ValueKind::Float if is_plain_number(t) => {
            // Floating point prints with as many digits as it needs; keep at most 4 decimals.
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() && v.abs() < 1e15 => {
                    let s = format!("{v:.4}");
                    let s = s.trim_end_matches('0').trim_end_matches('.');
                    group(s)
                }
                _ => t.to_string(),
            }
        }
        // Text that looks like a number (no type known): grouped too.
        ValueKind::Other if is_plain_number(t) => group(t),
        _ => text.to_string(),
    }
}

/// `-?digits(.digits)?`: what grouping applies to (no exponent, no `NaN`).
pub fn is_plain_number(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Thousands separators in the integer part of a plain number; the fraction is kept as is.
pub fn group(t: &str) -> String {
    let (sign, rest) = t.strip_prefix('-').map(|r| ("-", r)).unwrap_or(("", t));
    let (int, frac) = rest.split_once('.').map(|(i, f)| (i, Some(f))).unwrap_or((rest, None));
    let mut out = String::with_capacity(t.len() + t.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_in_their_own_precision() {
        assert_eq!(value("21356596030.63", ValueKind::Decimal(2)), "21,356,596,030.63");
        assert_eq!(value("10.50", ValueKind::Decimal(2)), "10.50", "a decimal keeps its scale");
        assert_eq!(value("-1234567", ValueKind::Integer), "-1,234,567");
        assert_eq!(value("999", ValueKind::Integer), "999");
        assert_eq!(value("1234.567891", ValueKind::Float), "1,234.5679");
        assert_eq!(value("2.5e20", ValueKind::Float), "2.5e20");
        assert_eq!(value("NaN", ValueKind::Float), "NaN");
        assert_eq!(value("1992-01-01", ValueKind::Date), "1992-01-01");
        assert_eq!(value("12345", ValueKind::Text), "12345", "text stays text");
        assert!(!is_plain_number("1e3") && !is_plain_number("-") && is_plain_number("-0.5"));
    }
}
