//! Numeric comparisons.

use super::{NumHit, Op, Parse, is_filler};

/// Comparisons with numbers: "over 9000", "at least 40", "between 10 and 20".
pub(super) fn find_numbers(p: &mut Parse) {
    let num_at = |p: &Parse, i: usize| -> Option<(f64, String)> {
        let t = p.toks.get(i)?;
        if p.used[i] {
            return None;
        }
        t.num.map(|v| (v, t.raw.replace([',', '$'], "")))
    };
    let mut i = 0;
    while let Some(at) = p.next_free(i) {
        i = at;
        let w = p.low(i).to_string();
        let next = p.low(i + 1).to_string();
        // "3 or more papers", "2 or fewer", "5 or less".
        if let Some((v, raw)) = num_at(p, i)
            && next == "or"
        {
            let op = match p.low(i + 2) {
                "more" | "greater" | "higher" | "above" | "over" => Some(Op::Ge),
                "fewer" | "less" | "lower" | "below" | "under" => Some(Op::Le),
                _ => None,
            };
            if let Some(op) = op {
                p.nums.push(NumHit { start: i, end: i + 3, op, value: v, raw });
                p.take(i, i + 3);
                i += 3;
                continue;
            }
        }
        let (op, len) = match (w.as_str(), next.as_str()) {
            (
                "more" | "greater" | "higher" | "larger" | "bigger" | "over" | "above" | "exceeding" | "exceeds"
                | "exceed",
                "than",
            ) => (Some(Op::Gt), 2),
            (
                "more" | "greater" | "higher" | "larger" | "bigger" | "over" | "above" | "exceeding" | "exceeds"
                | "exceed",
                _,
            ) => (Some(Op::Gt), 1),
            ("less" | "fewer" | "lower" | "smaller" | "below" | "under", "than") => (Some(Op::Lt), 2),
            ("less" | "fewer" | "lower" | "smaller" | "below" | "under", _) => (Some(Op::Lt), 1),
            ("at", "least") => (Some(Op::Ge), 2),
            ("at", "most") => (Some(Op::Le), 2),
            ("no", "more") if p.low(i + 2) == "than" => (Some(Op::Le), 3),
            ("no", "less" | "fewer") if p.low(i + 2) == "than" => (Some(Op::Ge), 3),
            ("exactly" | "equal" | "equals", _) => (Some(Op::Eq), if next == "to" { 2 } else { 1 }),
            (">", _) => (Some(Op::Gt), 1),
            (">=" | "≥" | "=>", _) => (Some(Op::Ge), 1),
            ("<", _) => (Some(Op::Lt), 1),
            ("<=" | "≤" | "=<", _) => (Some(Op::Le), 1),
            ("=" | "==", _) => (Some(Op::Eq), 1),

            ("between", _) => (Some(Op::Between(0.0)), 1),
            _ => (None, 0),
        };
        if let Some(op) = op
            && let Some((v, raw)) = num_at(p, i + len)
        {
            if let Op::Between(_) = op {
                if p.is(i + len + 1, &["and", "to"])
                    && let Some((v2, raw2)) = num_at(p, i + len + 2)
                {
                    p.nums.push(NumHit {
                        start: i,
                        end: i + len + 3,
                        op: Op::Between(v2),
                        value: v,
                        raw: format!("{raw} AND {raw2}"),
                    });
                    p.take(i, i + len + 3);
                    i += len + 3;
                    continue;
                }
            } else {
                p.nums.push(NumHit { start: i, end: i + len + 1, op, value: v, raw });
                p.take(i, i + len + 1);
                i += len + 1;
                continue;
            }
        }
        // "negative balance", "positive quantity": a comparison with zero.
        if p.free(i) && (w == "negative" || w == "positive") {
            let op = if w == "negative" { Op::Lt } else { Op::Gt };
            p.nums.push(NumHit { start: i, end: i + 1, op, value: 0.0, raw: "0".into() });
            p.take(i, i + 1);
            i += 1;
            continue;
        }
        // "size 15" / "of size 15": a bare number right after a column word is equality; decided
        // when mentions are known, so record it with Eq and let attachment judge.
        // Also "size of 15", "size is 15".
        let named_before = |k: usize| k < p.toks.len() && !p.used[k] && !is_filler(&p.toks[k]);
        let after_name =
            i > 0 && (named_before(i - 1) || (i > 1 && p.is(i - 1, &["of", "is", "="]) && named_before(i - 2)));
        if p.free(i) && p.toks[i].num.is_some() && after_name {
            let raw = p.toks[i].raw.replace([',', '$'], "");
            p.nums.push(NumHit { start: i, end: i + 1, op: Op::Eq, value: p.toks[i].num.unwrap_or(0.0), raw });
            p.take(i, i + 1);
        }
        i += 1;
    }
}
