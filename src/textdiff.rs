//! The one line diff (longest common subsequence): `sqlctl diff`'s unified text and the
//! console's view of what a refinement changed in a request's SQL, so the reviewer sees what
//! changed rather than re-reading all of it.

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Above this many cells (lines × lines after trimming the common ends) the LCS table is not
/// built and the changed middle is shown as removed-then-added: still correct, only less tight.
const MAX_CELLS: usize = 4_000_000;

/// Lines of `old` and `new` in order, each marked as kept, removed or added.
pub fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    diff_lines(&a, &b)
}

/// A shortest edit script from `a` to `b`: the common ends kept, the middle by LCS.
pub fn diff_lines<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Line<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out: Vec<Line> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        out.extend(am.iter().map(|l| Line::Removed(l)));
        out.extend(bm.iter().map(|l| Line::Added(l)));
    } else {
        lcs_middle(am, bm, &mut out);
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

/// Classic dynamic programme: `table[i][j]` = LCS length of `a[i..]` and `b[j..]`, then one
/// forward walk. Removals are listed before additions at each point of change.
fn lcs_middle<'a>(a: &[&'a str], b: &[&'a str], out: &mut Vec<Line<'a>>) {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut table = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * w + j] = if a[i] == b[j] {
                table[(i + 1) * w + j + 1] + 1
            } else {
                table[(i + 1) * w + j].max(table[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if table[(i + 1) * w + j] >= table[i * w + j + 1] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed(l)));
    out.extend(b[j..].iter().map(|l| Line::Added(l)));
}

#[cfg(test)]
mod tests {
    use super::Line::*;
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_and_the_rest_kept() {
        let old = "select c_name\nfrom customer\norder by total desc\nlimit 10";
        let new = "select c_name\nfrom customer\nwhere year = 1995\norder by total desc\nlimit 3";
        assert_eq!(
            line_diff(old, new),
            [
                Same("select c_name"),
                Same("from customer"),
                Added("where year = 1995"),
                Same("order by total desc"),
                Removed("limit 10"),
                Added("limit 3"),
            ]
        );
    }

    #[test]
    fn both_sides_are_reconstructed_exactly() {
        let old = "a\nb\nc\nd\ne\nb";
        let new = "b\nx\nc\ne\nb\nb\ny";
        let d = line_diff(old, new);
        let left: Vec<&str> = d
            .iter()
            .filter_map(|l| match l {
                Same(s) | Removed(s) => Some(*s),
                _ => None,
            })
            .collect();
        let right: Vec<&str> = d
            .iter()
            .filter_map(|l| match l {
                Same(s) | Added(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(left.join("\n"), old);
        assert_eq!(right.join("\n"), new);
        // LCS of the two is b, c, e, b: four lines kept.
        assert_eq!(d.iter().filter(|l| matches!(l, Same(_))).count(), 4);
    }

    #[test]
    fn identical_and_empty_inputs() {
        assert_eq!(line_diff("x\ny", "x\ny"), [Same("x"), Same("y")]);
        assert_eq!(line_diff("", "x"), [Added("x")]);
        assert_eq!(line_diff("x", ""), [Removed("x")]);
    }

    #[test]
    fn huge_inputs_fall_back_without_building_the_table() {
        let old: String = (0..3000).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("b{i}\n")).collect();
        let d = line_diff(&old, &new);
        assert_eq!(d.len(), 6000);
        assert!(matches!(d[0], Removed("a0")) && matches!(d[3000], Added("b0")));
    }
}
