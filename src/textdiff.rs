//! The one line diff (a shortest edit script, by the `similar` crate): `sqlctl diff`'s unified text and the
//! console's view of what a refinement changed in a request's SQL, so the reviewer sees what
//! changed rather than re-reading all of it.

use std::time::{Duration, Instant};

use similar::{Algorithm, DiffTag};

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// How long a diff may search for the shortest edit script; past it, `similar` finishes with a
/// correct but less tight diff (a huge or unrelated pair of texts must not stall a command or a
/// console page).
const DEADLINE: Duration = Duration::from_millis(500);

/// Lines of `old` and `new` in order, each marked as kept, removed or added.
pub fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    diff_lines(&a, &b)
}

/// A shortest edit script from `a` to `b` (Myers' algorithm, from the `similar` crate);
/// removals are listed before additions at each point of change.
pub fn diff_lines<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Line<'a>> {
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, a, b, Some(Instant::now() + DEADLINE));
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    // The additions of the current run of changes, held until its removals are out.
    let mut added: Vec<Line<'a>> = Vec::new();
    for op in ops {
        let (tag, old, new) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            out.append(&mut added);
            out.extend(a[old].iter().map(|l| Line::Same(l)));
        } else {
            out.extend(a[old].iter().map(|l| Line::Removed(l)));
            added.extend(b[new].iter().map(|l| Line::Added(l)));
        }
    }
    out.append(&mut added);
    out
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
    fn huge_unrelated_inputs_are_removed_then_added() {
        let old: String = (0..3000).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("b{i}\n")).collect();
        let d = line_diff(&old, &new);
        assert_eq!(d.len(), 6000);
        assert!(matches!(d[0], Removed("a0")) && matches!(d[3000], Added("b0")));
    }
}
