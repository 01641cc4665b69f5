//! `sqlctl diff -f FILE|DIR|-`: what `apply -f` would change, without writing anything.
//!
//! Like `kubectl diff`: every document is loaded, validated and guarded exactly as `apply` does
//! ([`apply::load_documents`], any kind), then planned with the same three-way merge against the
//! live object and its last-applied annotation ([`apply::plan`], [`apply::plan_object`]). Each object is reported as `created`,
//! `configured` (followed by a unified diff, live vs desired, of the user-owned part of the object
//! as YAML) or `unchanged`.
//!
//! Exit codes, as `kubectl diff`: 0 nothing would change, 1 something would, 2 the input or the
//! command line is wrong, or the store could not be read (nothing is written in any case). A CI job
//! can therefore gate on "no drift" with a plain exit-status check.

use serde::Serialize;

use super::apply::{self, Outcome, Plan};
use super::{Exit, output};
use crate::config::Context;
use crate::spec::load::Document;
use crate::spec::{LAST_APPLIED_ANNOTATION, Object, ObjectMeta, QueryRequest};
use crate::textdiff::{Line, diff_lines};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files, directories (their *.yaml, *.yml, *.json) or - for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE|DIR|-")]
    pub files: Vec<String>,
    /// Who would apply (the requester annotation changes with the spec); default: the OS user.
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    /// `diff`: a status line per object and unified diffs; `yaml`/`json`: the same as data.
    #[arg(short, long, value_enum, default_value = "diff")]
    pub output: Format,
}

/// `-o` formats of `diff`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Diff,
    Yaml,
    Json,
}

/// One object's entry in `-o yaml|json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    /// `queryrequest`, `semanticmodel` or `verifiedquery`.
    kind: &'static str,
    name: String,
    namespace: String,
    /// `created`, `configured` or `unchanged`.
    action: &'static str,
    /// Unified diff, live vs desired; empty when unchanged.
    diff: String,
    /// The user-owned part of the live object (None when it would be created).
    live: Option<Doc>,
    /// The user-owned part of what apply would write.
    desired: Doc,
}

/// An object of any kind, serialized as itself.
#[allow(clippy::large_enum_variant)] // one per object diffed
#[derive(Serialize)]
#[serde(untagged)]
enum Doc {
    Request(QueryRequest),
    Object(Object),
}

impl Doc {
    fn metadata(&self) -> &ObjectMeta {
        match self {
            Doc::Request(r) => &r.metadata,
            Doc::Object(o) => o.metadata(),
        }
    }
}

#[derive(Serialize)]
struct Report {
    /// True when `apply` would write something (exit 1).
    changed: bool,
    items: Vec<Entry>,
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let docs = apply::load_documents(&self.files, g)
            .map_err(|m| Exit::usage(format!("{m}\nnothing was compared; fix the input and run diff again")))?;
        let store = g.store().await.map_err(exit_2)?;
        let requester = g.decider(self.as_.as_deref()).await.map_err(exit_2)?;
        let policy = store.get_policy().await.map_err(|e| exit_2(e.into()))?.unwrap_or_default();
        let mut items = Vec::with_capacity(docs.len());
        for doc in docs {
            let entry = match doc {
                Document::QueryRequest(req) => {
                    let plan = apply::plan(store.as_ref(), &req, &requester).await.map_err(exit_2)?;
                    entry(
                        "queryrequest",
                        Plan {
                            outcome: plan.outcome,
                            live: plan.live.as_ref().map(user_view).map(Doc::Request),
                            desired: Doc::Request(user_view(&plan.desired)),
                        },
                    )
                }
                Document::Object(obj) => {
                    let kind = obj.kind().resource();
                    let plan = apply::plan_object(store.as_ref(), &obj, &requester, &policy).await.map_err(exit_2)?;
                    entry(
                        kind,
                        Plan {
                            outcome: plan.outcome,
                            live: plan.live.as_ref().map(object_view).map(Doc::Object),
                            desired: Doc::Object(object_view(&plan.desired)),
                        },
                    )
                }
            };
            items.push(entry);
        }
        let changed = items.iter().any(|e| e.action != Outcome::Unchanged.as_str());
        match self.output {
            Format::Diff => {
                let mut out = String::new();
                for e in &items {
                    out.push_str(&format!("{}/{} {}\n", e.kind, e.name, e.action));
                    out.push_str(&e.diff);
                }
                print!("{out}");
            }
            Format::Yaml => print!("{}", output::to_yaml(&Report { changed, items })),
            Format::Json => print!("{}", output::to_json(&Report { changed, items })),
        }
        if changed { Err(Exit::silent()) } else { Ok(()) }
    }
}

/// Any failure other than "there are differences" exits 2, like `kubectl diff`.
fn exit_2(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<Exit>() {
        Ok(exit) => Exit::usage(exit.message),
        Err(e) => Exit::usage(format!("{e:#}")),
    }
}

/// The entry of one planned object, `plan` already reduced to the user-owned views.
fn entry(kind: &'static str, plan: Plan<Doc>) -> Entry {
    let Plan { outcome, live, desired } = plan;
    let id = format!("{kind}/{}/{}", desired.metadata().namespace(), desired.metadata().name);
    let desired_yaml = output::to_yaml(&desired);
    let diff = match (outcome, &live) {
        (Outcome::Unchanged, _) => String::new(),
        (_, None) => unified("", &desired_yaml, "/dev/null", &format!("desired/{id}"), CONTEXT),
        (_, Some(live)) => {
            let d = unified(
                &output::to_yaml(live),
                &desired_yaml,
                &format!("live/{id}"),
                &format!("desired/{id}"),
                CONTEXT,
            );
            if d.is_empty() {
                // The visible object is the same; only apply's bookkeeping changes (the object was
                // created by `ask` or an older apply, so it has no or a different last-applied record).
                format!("# only the {LAST_APPLIED_ANNOTATION} annotation changes\n")
            } else {
                d
            }
        }
    };
    Entry {
        kind,
        name: desired.metadata().name.clone(),
        namespace: desired.metadata().namespace().to_string(),
        action: outcome.as_str(),
        diff,
        live,
        desired,
    }
}

/// The part of an object a diff should show: what users write (plus the requester annotation,
/// which apply sets and four-eyes reads). Server-set metadata, status and the last-applied
/// annotation (a JSON copy of the rest) would only be noise.
fn user_view(req: &QueryRequest) -> QueryRequest {
    let mut v = req.clone();
    v.status = None;
    v.metadata.uid = None;
    v.metadata.resource_version = None;
    v.metadata.generation = None;
    v.metadata.creation_timestamp = None;
    v.metadata.deletion_timestamp = None;
    v.metadata.finalizers.clear();
    v.metadata.annotations.remove(LAST_APPLIED_ANNOTATION);
    v
}

/// [`user_view`] of an object of the other kinds.
fn object_view(obj: &Object) -> Object {
    let mut v = obj.clone();
    *v.status_mut() = None;
    let m = v.metadata_mut();
    m.uid = None;
    m.resource_version = None;
    m.generation = None;
    m.creation_timestamp = None;
    m.deletion_timestamp = None;
    m.finalizers.clear();
    m.annotations.remove(LAST_APPLIED_ANNOTATION);
    v
}

// ---------------------------------------------------------------------------------------------
// Unified line diff

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;

/// `diff -u`-style text from `old` to `new` with `context` lines around changes; empty when the
/// texts have the same lines. Headers name the two sides `old_name` and `new_name`.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = diff_lines(&a, &b);
    let changes: Vec<usize> = (0..ops.len()).filter(|&k| !matches!(ops[k], Line::Same(_))).collect();
    if changes.is_empty() {
        return String::new();
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    let mut c = 0;
    while c < changes.len() {
        // Grow the hunk while the next change is close enough for the contexts to touch.
        let first = changes[c];
        let mut last = first;
        c += 1;
        while c < changes.len() && changes[c] - last - 1 <= 2 * context {
            last = changes[c];
            c += 1;
        }
        let start = first.saturating_sub(context);
        let end = (last + 1 + context).min(ops.len());
        let old_before = ops[..start].iter().filter(|o| !matches!(o, Line::Added(_))).count();
        let new_before = ops[..start].iter().filter(|o| !matches!(o, Line::Removed(_))).count();
        let old_len = ops[start..end].iter().filter(|o| !matches!(o, Line::Added(_))).count();
        let new_len = ops[start..end].iter().filter(|o| !matches!(o, Line::Removed(_))).count();
        out.push_str(&format!("@@ -{} +{} @@\n", range(old_before, old_len), range(new_before, new_len)));
        for op in &ops[start..end] {
            let (sign, line) = match op {
                Line::Same(l) => (' ', l),
                Line::Removed(l) => ('-', l),
                Line::Added(l) => ('+', l),
            };
            out.push(sign);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A hunk range as GNU diff writes it: `start,len`, `start` alone for one line, and for an empty
/// range the line before it (`0,0` at the top of a file).
fn range(before: usize, len: usize) -> String {
    match len {
        0 => format!("{before},0"),
        1 => format!("{}", before + 1),
        _ => format!("{},{len}", before + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a unified diff to `old` (a tiny `patch`), to check hunks are self-consistent.
    fn patch(old: &str, diff: &str) -> String {
        let a: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut pos = 0; // next unconsumed old line (0-based)
        for line in diff.lines().skip(2) {
            if let Some(h) = line.strip_prefix("@@ -") {
                let old_range = h.split(' ').next().unwrap();
                let mut it = old_range.split(',');
                let start: usize = it.next().unwrap().parse().unwrap();
                let len: usize = it.next().map(|l| l.parse().unwrap()).unwrap_or(1);
                let start0 = if len == 0 { start } else { start - 1 };
                out.extend(a[pos..start0].iter().map(|s| s.to_string()));
                pos = start0;
            } else if let Some(l) = line.strip_prefix(' ') {
                assert_eq!(a[pos], l, "context line mismatch");
                out.push(l.to_string());
                pos += 1;
            } else if let Some(l) = line.strip_prefix('-') {
                assert_eq!(a[pos], l, "deleted line mismatch");
                pos += 1;
            } else if let Some(l) = line.strip_prefix('+') {
                out.push(l.to_string());
            }
        }
        out.extend(a[pos..].iter().map(|s| s.to_string()));
        out.iter().map(|l| format!("{l}\n")).collect()
    }

    fn lines(n: std::ops::Range<usize>) -> String {
        n.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn equal_texts_have_an_empty_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y", 3), "");
        assert_eq!(unified("", "", "x", "y", 3), "");
    }

    #[test]
    fn a_changed_line_is_shown_with_three_lines_of_context() {
        let old = lines(0..10);
        let new = old.replace("line 5\n", "line five\n");
        let d = unified(&old, &new, "live/q", "desired/q", 3);
        assert_eq!(
            d,
            "--- live/q\n+++ desired/q\n@@ -3,7 +3,7 @@\n line 2\n line 3\n line 4\n-line 5\n+line five\n line 6\n line 7\n line 8\n"
        );
    }

    #[test]
    fn creation_is_all_insertions_from_line_zero() {
        let d = unified("", "a\nb\n", "/dev/null", "desired/q", 3);
        assert_eq!(d, "--- /dev/null\n+++ desired/q\n@@ -0,0 +1,2 @@\n+a\n+b\n");
    }

    #[test]
    fn distant_changes_make_separate_hunks_and_close_ones_merge() {
        let old = lines(0..30);
        let far = old.replace("line 2\n", "two\n").replace("line 25\n", "twenty-five\n");
        let d = unified(&old, &far, "a", "b", 3);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -1,6 +1,6 @@\n"), "{d}");
        assert!(d.contains("@@ -23,7 +23,7 @@\n"), "{d}");
        // Six unchanged lines between two changes: the contexts touch, one hunk.
        let near = old.replace("line 10\n", "ten\n").replace("line 17\n", "seventeen\n");
        assert_eq!(unified(&old, &near, "a", "b", 3).matches("@@ -").count(), 1);
        // Seven: two hunks.
        let apart = old.replace("line 10\n", "ten\n").replace("line 18\n", "eighteen\n");
        assert_eq!(unified(&old, &apart, "a", "b", 3).matches("@@ -").count(), 2);
    }

    #[test]
    fn insertions_and_deletions_use_the_longest_common_subsequence() {
        let ops = diff_lines(&["a", "b", "c", "d"], &["a", "c", "d", "e"]);
        assert_eq!(ops, vec![Line::Same("a"), Line::Removed("b"), Line::Same("c"), Line::Same("d"), Line::Added("e")]);
        let d = unified("a\nb\nc\n", "a\nc\n", "x", "y", 0);
        assert_eq!(d, "--- x\n+++ y\n@@ -2 +1,0 @@\n-b\n");
    }

    #[test]
    fn every_diff_patches_old_into_new() {
        // Pseudo-random edits over small texts, checked by applying the diff back.
        let mut seed = 0x2545_f491_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let old: Vec<String> = (0..next() % 25).map(|_| format!("l{}", next() % 6)).collect();
            let mut new = old.clone();
            for _ in 0..next() % 6 {
                let at = if new.is_empty() { 0 } else { (next() as usize) % new.len() };
                match next() % 3 {
                    0 if !new.is_empty() => {
                        new.remove(at);
                    }
                    1 => new.insert(at, format!("n{}", next() % 6)),
                    _ if !new.is_empty() => new[at] = format!("r{}", next() % 6),
                    _ => {}
                }
            }
            let (o, n) = (
                old.iter().map(|l| format!("{l}\n")).collect::<String>(),
                new.iter().map(|l| format!("{l}\n")).collect::<String>(),
            );
            let ctx = (next() % 4) as usize;
            let d = unified(&o, &n, "a", "b", ctx);
            assert_eq!(d.is_empty(), o == n);
            if !d.is_empty() {
                assert_eq!(patch(&o, &d), n, "old:\n{o}\nnew:\n{n}\ndiff:\n{d}");
            }
        }
    }

    #[test]
    fn huge_inputs_fall_back_to_a_replacement_and_stay_correct() {
        let old = lines(0..3000);
        let new: String = (0..3000).map(|i| format!("other {i}\n")).collect();
        let d = unified(&old, &new, "a", "b", 3);
        assert!(d.starts_with("--- a\n+++ b\n@@ -1,3000 +1,3000 @@\n"));
        assert_eq!(patch(&old, &d), new);
    }
}
