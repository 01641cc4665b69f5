//! Checks on a `QueryRequest` that serde cannot express: names, label syntax, reserved
//! annotations, "exactly one of question / sql", identifier syntax and the ranges of every limit.
//!
//! [`validate`] never stops at the first problem: it returns every [`FieldError`], each naming the
//! field by its YAML path (`spec.limits.maxRows`, `metadata.labels["team/x"]`), so a user fixes a
//! file in one round trip. [`super::load`] attaches file, document, line and column to them.
//!
//! What is *not* checked here, on purpose: server-set metadata (`uid`, `resourceVersion`,
//! `generation`, timestamps, `finalizers`) and `status`. They are accepted in input so that
//! `sqlctl get -o yaml > f && sqlctl apply -f f` works, and `apply` ignores them.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use super::quantity::format_duration;
use super::types::{
    API_VERSION, ChartSpec, ChartType, KIND, LAST_APPLIED_ANNOTATION, ObjectMeta, QueryRequest, REQUESTER_ANNOTATION,
};
use super::{MAX_APPROVAL_TIMEOUT, MAX_MAX_ROWS, MAX_QUERY_TIMEOUT, MAX_QUESTION_CHARS, MAX_SQL_BYTES};

/// Most labels (and, separately, annotations) one request may carry.
pub const MAX_LABELS: usize = 64;
/// Most annotations one request may carry.
pub const MAX_ANNOTATIONS: usize = 64;
/// Total bytes of all annotation values.
pub const MAX_ANNOTATION_VALUE_BYTES: usize = 64 * 1024;
/// Most entries in `spec.catalog.tables`.
pub const MAX_TABLES: usize = 256;
/// Most entries in `spec.approval.approvers`.
pub const MAX_APPROVERS: usize = 64;
/// Longest approver identity, in characters.
pub const MAX_APPROVER_CHARS: usize = 128;
/// Upper bound for `limits.maxBytesScanned`: 1 PiB. Anything beyond is a typo, not a budget.
pub const MAX_BYTES_SCANNED: u64 = 1 << 50;
/// Upper bound for `limits.maxResultBytes`: 1 PiB.
pub const MAX_RESULT_BYTES: u64 = 1 << 50;
/// Shortest query or approval timeout accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Most y columns in `spec.chart.y` (series beyond a handful are unreadable).
pub const MAX_CHART_SERIES: usize = 8;
/// Longest column name in `spec.chart`, in characters.
pub const MAX_CHART_COLUMN_CHARS: usize = 128;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// YAML path of the field, e.g. `spec.limits.maxRows` or `spec.catalog.tables[2]`
    /// (see [`join_key`] for keys that are not plain words).
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Appends a mapping key to a YAML path: `.key` for plain words (letters, digits, `_`, `-`),
/// `["key"]` (JSON-escaped) for anything else, such as label keys with `.` or `/`.
///
/// The loader builds paths from the YAML events with the same function, so the paths of
/// [`FieldError`]s and of parse errors agree and can be mapped back to lines.
pub fn join_key(parent: &str, key: &str) -> String {
    let mut out = String::with_capacity(parent.len() + key.len() + 4);
    out.push_str(parent);
    push_key(&mut out, key);
    out
}

/// In-place form of [`join_key`].
pub(crate) fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&serde_json::to_string(key).unwrap_or_else(|_| "\"?\"".into()));
        path.push(']');
    }
}

/// Appends a sequence index to a YAML path: `tables[3]`.
pub(crate) fn push_index(path: &mut String, index: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{index}]");
}

pub(crate) fn index_path(parent: &str, index: usize) -> String {
    let mut p = parent.to_string();
    push_index(&mut p, index);
    p
}

/// Checks everything serde could not: returns every problem found, or an empty vector.
pub fn validate(req: &QueryRequest) -> Vec<FieldError> {
    let mut errs = Vec::new();

    check_header(&req.api_version, &req.kind, KIND, &mut errs);
    check_metadata(&req.metadata, &mut errs);

    // spec: exactly one of question / sql
    let spec = &req.spec;
    match (&spec.question, &spec.sql) {
        (Some(_), Some(_)) => errs.push(FieldError::new("spec", "set either spec.question or spec.sql, not both")),
        (None, None) => errs.push(FieldError::new("spec", "set either spec.question or spec.sql (neither is set)")),
        _ => {}
    }
    if let Some(q) = &spec.question {
        check_question(q, &mut errs);
    }
    if let Some(sql) = &spec.sql {
        check_sql(sql, &mut errs);
    }
    if let Some(f) = &spec.follow_up {
        if spec.sql.is_some() {
            errs.push(FieldError::new(
                "spec.followUp",
                "a follow-up needs spec.question (hand-written spec.sql follows nothing)",
            ));
        }
        if let Err(m) = validate_name(&f.of) {
            errs.push(FieldError::new("spec.followUp.of", m));
        } else if f.of == req.metadata.name {
            errs.push(FieldError::new("spec.followUp.of", "a request cannot follow up on itself"));
        }
    }

    // spec.catalog
    if let Err(m) = validate_identifier(&spec.catalog.database) {
        errs.push(FieldError::new("spec.catalog.database", m));
    }
    let tables = &spec.catalog.tables;
    if tables.len() > MAX_TABLES {
        errs.push(FieldError::new(
            "spec.catalog.tables",
            format!("at most {MAX_TABLES} tables may be listed (got {})", tables.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, t) in tables.iter().enumerate() {
        let path = index_path("spec.catalog.tables", i);
        if let Err(m) = validate_identifier(t) {
            errs.push(FieldError::new(path, m));
        } else if !seen.insert(t.as_str()) {
            errs.push(FieldError::new(path, format!("table {t:?} is listed more than once")));
        }
    }

    // spec.approval
    let approvers = &spec.approval.approvers;
    if approvers.len() > MAX_APPROVERS {
        errs.push(FieldError::new(
            "spec.approval.approvers",
            format!("at most {MAX_APPROVERS} approvers may be listed (got {})", approvers.len()),
        ));
    }
    for (i, a) in approvers.iter().enumerate() {
        if let Err(m) = validate_approver(a) {
            errs.push(FieldError::new(index_path("spec.approval.approvers", i), m));
        }
    }
    if let Some(t) = &spec.approval.timeout {
        check_duration("spec.approval.timeout", t.as_duration(), MAX_APPROVAL_TIMEOUT, &mut errs);
    }

    // spec.limits
    let limits = &spec.limits;
    if let Some(n) = limits.max_rows
        && !(1..=MAX_MAX_ROWS).contains(&n)
    {
        errs.push(FieldError::new("spec.limits.maxRows", format!("must be between 1 and {MAX_MAX_ROWS} (got {n})")));
    }
    if let Some(b) = &limits.max_bytes_scanned
        && !(1..=MAX_BYTES_SCANNED).contains(&b.bytes())
    {
        errs.push(FieldError::new(
            "spec.limits.maxBytesScanned",
            format!("must be between 1 byte and 1PiB (got {b}, {} bytes)", b.bytes()),
        ));
    }
    if let Some(t) = &limits.timeout {
        check_duration("spec.limits.timeout", t.as_duration(), MAX_QUERY_TIMEOUT, &mut errs);
    }
    if let Some(b) = &limits.max_result_bytes
        && !(1..=MAX_RESULT_BYTES).contains(&b.bytes())
    {
        errs.push(FieldError::new(
            "spec.limits.maxResultBytes",
            format!("must be between 1 byte and 1PiB (got {b}, {} bytes)", b.bytes()),
        ));
    }

    if let Some(chart) = &spec.chart {
        check_chart(chart, &mut errs);
    }

    errs
}

/// `apiVersion` and `kind` of a document that must be a `kind`.
pub(crate) fn check_header(api_version: &str, kind: &str, expected_kind: &str, errs: &mut Vec<FieldError>) {
    if api_version != API_VERSION {
        errs.push(FieldError::new("apiVersion", format!("must be {API_VERSION} (got {api_version:?})")));
    }
    if kind != expected_kind {
        errs.push(FieldError::new("kind", format!("must be {expected_kind} (got {kind:?})")));
    }
}

/// The user-settable metadata every kind shares: name, namespace, labels, annotations (the
/// ones sqlctl sets are refused).
pub(crate) fn check_metadata(meta: &ObjectMeta, errs: &mut Vec<FieldError>) {
    if let Err(m) = validate_name(&meta.name) {
        errs.push(FieldError::new("metadata.name", m));
    }
    if let Some(ns) = &meta.namespace
        && let Err(m) = validate_name(ns)
    {
        errs.push(FieldError::new("metadata.namespace", m));
    }
    if meta.labels.len() > MAX_LABELS {
        errs.push(FieldError::new(
            "metadata.labels",
            format!("at most {MAX_LABELS} labels are allowed (got {})", meta.labels.len()),
        ));
    }
    for (k, v) in &meta.labels {
        let path = join_key("metadata.labels", k);
        if let Err(m) = validate_qualified_key(k) {
            errs.push(FieldError::new(&path, format!("invalid label key: {m}")));
        }
        if let Err(m) = validate_label_value(v) {
            errs.push(FieldError::new(&path, format!("invalid label value: {m}")));
        }
    }
    if meta.annotations.len() > MAX_ANNOTATIONS {
        errs.push(FieldError::new(
            "metadata.annotations",
            format!("at most {MAX_ANNOTATIONS} annotations are allowed (got {})", meta.annotations.len()),
        ));
    }
    let mut value_bytes = 0usize;
    for (k, v) in &meta.annotations {
        let path = join_key("metadata.annotations", k);
        value_bytes = value_bytes.saturating_add(v.len());
        if k == REQUESTER_ANNOTATION || k == LAST_APPLIED_ANNOTATION {
            errs.push(FieldError::new(&path, format!("annotation {k} is set by sqlctl and may not be set in a file")));
        } else if let Err(m) = validate_qualified_key(k) {
            errs.push(FieldError::new(&path, format!("invalid annotation key: {m}")));
        }
    }
    if value_bytes > MAX_ANNOTATION_VALUE_BYTES {
        errs.push(FieldError::new(
            "metadata.annotations",
            format!("annotation values may total at most {MAX_ANNOTATION_VALUE_BYTES} bytes (got {value_bytes})"),
        ));
    }
}

/// `spec.chart`: column names that can name a result column, at most [`MAX_CHART_SERIES`] y
/// columns, none repeated, and no columns with `type: none`.
fn check_chart(chart: &ChartSpec, errs: &mut Vec<FieldError>) {
    if chart.type_ == ChartType::None && (chart.x.is_some() || !chart.y.is_empty()) {
        errs.push(FieldError::new("spec.chart", "type none draws no chart: remove x and y, or pick another type"));
    }
    if let Some(x) = &chart.x
        && let Err(m) = validate_column_name(x)
    {
        errs.push(FieldError::new("spec.chart.x", m));
    }
    if chart.y.len() > MAX_CHART_SERIES {
        errs.push(FieldError::new(
            "spec.chart.y",
            format!("at most {MAX_CHART_SERIES} columns may be charted (got {})", chart.y.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, y) in chart.y.iter().enumerate() {
        let path = index_path("spec.chart.y", i);
        if let Err(m) = validate_column_name(y) {
            errs.push(FieldError::new(path, m));
        } else if chart.x.as_deref() == Some(y.as_str()) {
            errs.push(FieldError::new(path, format!("column {y:?} is already the x axis")));
        } else if !seen.insert(y.as_str()) {
            errs.push(FieldError::new(path, format!("column {y:?} is listed more than once")));
        }
    }
}

/// A result column name as written in `spec.chart`: not blank, at most
/// [`MAX_CHART_COLUMN_CHARS`] characters, no control characters.
fn validate_column_name(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must name a result column (it is blank)".into());
    }
    let chars = s.chars().count();
    if chars > MAX_CHART_COLUMN_CHARS {
        return Err(format!("must be at most {MAX_CHART_COLUMN_CHARS} characters (got {chars})"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("must not contain control characters (found U+{:04X})", c as u32));
    }
    Ok(())
}

fn check_question(q: &str, errs: &mut Vec<FieldError>) {
    const PATH: &str = "spec.question";
    if q.trim().is_empty() {
        errs.push(FieldError::new(PATH, "must not be blank"));
        return;
    }
    let chars = q.chars().count();
    if chars > MAX_QUESTION_CHARS {
        errs.push(FieldError::new(PATH, format!("must be at most {MAX_QUESTION_CHARS} characters (got {chars})")));
    }
    if let Some(c) = q.chars().find(|&c| c.is_control() && c != '\n' && c != '\t') {
        errs.push(FieldError::new(
            PATH,
            format!("must not contain control characters other than newline and tab (found U+{:04X})", c as u32),
        ));
    }
}

fn check_sql(sql: &str, errs: &mut Vec<FieldError>) {
    const PATH: &str = "spec.sql";
    if sql.trim().is_empty() {
        errs.push(FieldError::new(PATH, "must not be blank"));
        return;
    }
    if sql.len() > MAX_SQL_BYTES {
        errs.push(FieldError::new(PATH, format!("must be at most {MAX_SQL_BYTES} bytes (got {})", sql.len())));
    }
    if sql.contains('\0') {
        errs.push(FieldError::new(PATH, "must not contain NUL characters"));
    }
}

fn check_duration(path: &str, d: Duration, max: Duration, errs: &mut Vec<FieldError>) {
    if d < MIN_TIMEOUT || d > max {
        errs.push(FieldError::new(
            path,
            format!(
                "must be between {} and {} (got {})",
                format_duration(MIN_TIMEOUT),
                format_duration(max),
                format_duration(d)
            ),
        ));
    }
}

/// A DNS-1123 label, as Kubernetes requires of names: 1 to 63 characters, lower-case letters,
/// digits and `-`, starting and ending with a letter or digit.
pub fn validate_name(s: &str) -> Result<(), String> {
    const RULE: &str = "a name must consist of lower-case letters, digits and '-', and start and end with a letter or digit, e.g. top-customers-2024";
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let chars = s.chars().count();
    if chars > 63 {
        return Err(format!("must be at most 63 characters (got {chars})"));
    }
    if let Some(c) = s.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) {
        return Err(format!("invalid character {c:?}: {RULE}"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("must start and end with a letter or digit: {RULE}"));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
fn validate_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("prefix must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("prefix must be at most 253 characters (got {})", s.len()));
    }
    for part in s.split('.') {
        validate_name(part).map_err(|m| format!("prefix {s:?} must be a DNS subdomain ({m})"))?;
    }
    Ok(())
}

/// `[A-Za-z0-9_.-]`, 1..=63, starting and ending alphanumeric: the name part of label keys and
/// the whole of non-empty label values.
fn validate_label_text(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some(c) = s.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("{what} may contain only letters, digits, '-', '_' and '.' (found {c:?})"));
    }
    if s.len() > 63 {
        return Err(format!("{what} must be at most 63 characters (got {})", s.len()));
    }
    let first = s.chars().next().unwrap_or('-');
    let last = s.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!("{what} must start and end with a letter or digit"));
    }
    Ok(())
}

/// A Kubernetes qualified name: `[prefix/]name`, prefix a DNS subdomain.
fn validate_qualified_key(k: &str) -> Result<(), String> {
    match k.split_once('/') {
        Some((prefix, name)) => {
            validate_subdomain(prefix)?;
            validate_label_text(name, "name after the '/'")
        }
        None => validate_label_text(k, "key"),
    }
}

fn validate_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() { Ok(()) } else { validate_label_text(v, "value") }
}

/// A simple SQL identifier as Glue and the local warehouse name databases and tables.
pub(crate) fn validate_identifier(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a simple identifier: 1 to 128 lower-case letters, digits and '_', not starting with a digit"
        ))
    }
}

/// A column name as catalogs spell them: 1 to 128 ASCII letters, digits and `_`, not starting
/// with a digit (upper case allowed: CSV headers keep theirs).
pub(crate) fn validate_column(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a column name: 1 to 128 letters, digits and '_', not starting with a digit"))
    }
}

/// Free text a person wrote (a description, a synonym, a question): not blank, at most `max`
/// characters, no control characters (newline and tab allowed where `multiline`), no hidden
/// characters that would read differently to a person and to a model.
pub(crate) fn check_text(path: &str, text: &str, max: usize, multiline: bool, errs: &mut Vec<FieldError>) {
    if text.trim().is_empty() {
        errs.push(FieldError::new(path, "must not be blank"));
        return;
    }
    let chars = text.chars().count();
    if chars > max {
        errs.push(FieldError::new(path, format!("must be at most {max} characters (got {chars})")));
    }
    let bad = text.chars().find(|&c| {
        let allowed = multiline && (c == '\n' || c == '\t');
        !allowed && (c.is_control() || super::text::is_hidden(c))
    });
    if let Some(c) = bad {
        errs.push(FieldError::new(path, format!("must not contain {}", super::text::describe_char(c))));
    }
}

pub(crate) fn validate_approver(a: &str) -> Result<(), String> {
    let n = a.chars().count();
    if n == 0 || n > MAX_APPROVER_CHARS {
        return Err(format!("must be 1 to {MAX_APPROVER_CHARS} characters (got {n})"));
    }
    if let Some(c) = a.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'))) {
        return Err(format!("invalid character {c:?}: use letters, digits and . _ @ + -"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::{ByteSize, DurationSpec, FollowUpRef};

    fn good() -> QueryRequest {
        let mut r = QueryRequest::new("top-customers-2024", "sales")
            .with_labels(&[("team", "growth")])
            .with_question("Which 10 customers spent the most in 2024?");
        r.spec.catalog.tables = vec!["orders".into(), "customer".into()];
        r
    }

    fn paths(req: &QueryRequest) -> Vec<String> {
        validate(req).into_iter().map(|e| e.path).collect()
    }

    fn only_error(req: &QueryRequest) -> FieldError {
        let errs = validate(req);
        assert_eq!(errs.len(), 1, "expected one error, got {errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn a_good_request_has_no_errors() {
        assert_eq!(validate(&good()), vec![]);
    }

    #[test]
    fn api_version_and_kind_must_match_and_say_what_is_expected() {
        let mut r = good();
        r.api_version = "v1".into();
        r.kind = "Pod".into();
        let errs = validate(&r);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].path, "apiVersion");
        assert!(errs[0].message.contains("sqlctl.dev/v1alpha1"), "{}", errs[0].message);
        assert_eq!(errs[1].path, "kind");
        assert!(errs[1].message.contains("QueryRequest"));
    }

    #[test]
    fn names_follow_dns_1123_labels() {
        for ok in ["a", "top-customers-2024", "0abc", &"a".repeat(63)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Top", "-a", "a-", "a_b", "a.b", "café", "a b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_name(&"a".repeat(64)).unwrap_err().contains("63"));
        let mut r = good();
        r.metadata.name = "Bad".into();
        r.metadata.namespace = Some("-x".into());
        assert_eq!(paths(&r), ["metadata.name", "metadata.namespace"]);
    }

    #[test]
    fn labels_follow_kubernetes_rules() {
        let mut r = good();
        r.metadata.labels = BTreeMap::from([
            ("app.kubernetes.io/name".into(), "x".into()),
            ("team".into(), "".into()),
            ("Under_Score.ok".into(), "A-b_c.9".into()),
        ]);
        assert_eq!(validate(&r), vec![]);
        r.metadata.labels = BTreeMap::from([
            ("Bad.Prefix/name".into(), "x".into()),
            ("-k".into(), "x".into()),
            ("k".into(), "bad value!".into()),
            ("a/b/c".into(), "x".into()),
        ]);
        assert_eq!(
            paths(&r),
            [
                "metadata.labels.-k",
                r#"metadata.labels["Bad.Prefix/name"]"#,
                r#"metadata.labels["a/b/c"]"#,
                "metadata.labels.k"
            ]
        );
        r.metadata.labels = (0..65).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert_eq!(paths(&r), ["metadata.labels"]);
    }

    #[test]
    fn reserved_annotations_are_refused_and_values_are_capped() {
        let mut r = good();
        r.metadata.annotations = BTreeMap::from([
            (REQUESTER_ANNOTATION.into(), "mallory".into()),
            (LAST_APPLIED_ANNOTATION.into(), "{}".into()),
            ("example.com/note".into(), "fine".into()),
        ]);
        let errs = validate(&r);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.message.contains("set by sqlctl")));
        assert_eq!(errs[0].path, r#"metadata.annotations["sqlctl.dev/last-applied-configuration"]"#);
        r.metadata.annotations = BTreeMap::from([("a".into(), "x".repeat(40_000)), ("b".into(), "y".repeat(40_000))]);
        assert_eq!(paths(&r), ["metadata.annotations"]);
    }

    #[test]
    fn follow_up_needs_a_question_and_another_valid_name() {
        let mut r = good();
        r.spec.follow_up = Some(FollowUpRef { of: "earlier".into() });
        assert!(validate(&r).is_empty(), "{:?}", validate(&r));
        r.spec.follow_up = Some(FollowUpRef { of: r.metadata.name.clone() });
        let e = validate(&r);
        assert_eq!(
            (e[0].path.as_str(), e[0].message.as_str()),
            ("spec.followUp.of", "a request cannot follow up on itself")
        );
        r.spec.follow_up = Some(FollowUpRef { of: "Not_A-Name".into() });
        assert_eq!(validate(&r)[0].path, "spec.followUp.of");
        r.spec.follow_up = Some(FollowUpRef { of: "earlier".into() });
        r.spec.question = None;
        r.spec.sql = Some("select 1".into());
        let e = validate(&r);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("needs spec.question"), "{}", e[0].message);
    }

    #[test]
    fn exactly_one_of_question_and_sql() {
        let mut r = good();
        r.spec.sql = Some("select 1".into());
        let e = only_error(&r);
        assert_eq!((e.path.as_str(), e.message.as_str()), ("spec", "set either spec.question or spec.sql, not both"));
        r.spec.sql = None;
        r.spec.question = None;
        let e = only_error(&r);
        assert!(e.message.contains("neither"), "{}", e.message);
        r.spec.sql = Some("select 1".into());
        assert_eq!(validate(&r), vec![]);
    }

    #[test]
    fn question_length_counts_characters_not_bytes() {
        let mut r = good();
        r.spec.question = Some("é".repeat(MAX_QUESTION_CHARS)); // 8,000 bytes, 4,000 characters
        assert_eq!(validate(&r), vec![]);
        r.spec.question = Some("x".repeat(MAX_QUESTION_CHARS + 1));
        let e = only_error(&r);
        assert_eq!(e.path, "spec.question");
        assert!(e.message.contains("4000") && e.message.contains("4001"), "{}", e.message);
        for blank in ["", "  \n\t "] {
            r.spec.question = Some(blank.into());
            assert_eq!(only_error(&r).message, "must not be blank");
        }
        r.spec.question = Some("a\u{0}b".into());
        assert!(only_error(&r).message.contains("U+0000"));
        r.spec.question = Some("line one\n\tline two".into());
        assert_eq!(validate(&r), vec![]);
    }

    #[test]
    fn sql_is_checked_in_bytes() {
        let mut r = good();
        r.spec.question = None;
        r.spec.sql = Some(" ".into());
        assert_eq!(only_error(&r).path, "spec.sql");
        r.spec.sql = Some("x".repeat(MAX_SQL_BYTES + 1));
        assert!(only_error(&r).message.contains("bytes"));
        r.spec.sql = Some("select '\0'".into());
        assert!(only_error(&r).message.contains("NUL"));
    }

    #[test]
    fn catalog_names_are_simple_identifiers() {
        let mut r = good();
        r.spec.catalog.database = "Sales-DB".into();
        r.spec.catalog.tables = vec!["orders".into(), "1x".into(), "orders".into(), "a.b".into()];
        assert_eq!(
            paths(&r),
            ["spec.catalog.database", "spec.catalog.tables[1]", "spec.catalog.tables[2]", "spec.catalog.tables[3]"]
        );
        r.spec.catalog.database = "_ok_1".into();
        r.spec.catalog.tables = (0..257).map(|i| format!("t{i}")).collect();
        assert_eq!(paths(&r), ["spec.catalog.tables"]);
        r.spec.catalog.database = "".into();
        r.spec.catalog.tables = vec![];
        assert_eq!(paths(&r), ["spec.catalog.database"]);
    }

    #[test]
    fn approvers_and_approval_timeout() {
        let mut r = good();
        r.spec.approval.approvers = vec!["alice".into(), "bob+sql@example.com".into(), "".into(), "eve smith".into()];
        assert_eq!(paths(&r), ["spec.approval.approvers[2]", "spec.approval.approvers[3]"]);
        r.spec.approval.approvers = vec!["x".repeat(129)];
        assert_eq!(paths(&r), ["spec.approval.approvers[0]"]);
        r.spec.approval.approvers = (0..65).map(|i| format!("a{i}")).collect();
        assert_eq!(paths(&r), ["spec.approval.approvers"]);
        r.spec.approval.approvers = vec![];
        r.spec.approval.timeout = Some(DurationSpec::parse("500ms").unwrap());
        assert_eq!(paths(&r), ["spec.approval.timeout"]);
        r.spec.approval.timeout = Some(DurationSpec::parse("31d").unwrap());
        let e = only_error(&r);
        assert!(e.message.contains("30d") && e.message.contains("31d"), "{}", e.message);
        r.spec.approval.timeout = Some(DurationSpec::parse("30d").unwrap());
        assert_eq!(validate(&r), vec![]);
    }

    #[test]
    fn limits_ranges() {
        let mut r = good();
        for (rows, ok) in
            [(0, false), (1, true), (MAX_MAX_ROWS, true), (MAX_MAX_ROWS + 1, false), (1_000_000_000_000, false)]
        {
            r.spec.limits.max_rows = Some(rows);
            assert_eq!(validate(&r).is_empty(), ok, "maxRows {rows}");
        }
        r.spec.limits.max_rows = Some(0);
        assert_eq!(only_error(&r).message, "must be between 1 and 100000 (got 0)");
        r.spec.limits.max_rows = None;
        for (size, ok) in
            [("0", false), ("1", true), ("10GiB", true), ("1PiB", true), ("1.5PiB", false), ("2000PB", false)]
        {
            r.spec.limits.max_bytes_scanned = Some(ByteSize::parse(size).unwrap());
            assert_eq!(validate(&r).is_empty(), ok, "maxBytesScanned {size}");
        }
        r.spec.limits.max_bytes_scanned = None;
        for (t, ok) in [("0s", false), ("999ms", false), ("1s", true), ("24h", true), ("24h1s", false)] {
            r.spec.limits.timeout = Some(DurationSpec::parse(t).unwrap());
            assert_eq!(paths(&r).is_empty(), ok, "timeout {t}");
        }
        r.spec.limits.timeout = None;
        for (size, ok) in [("0", false), ("1", true), ("100MiB", true), ("1PiB", true), ("1.5PiB", false)] {
            r.spec.limits.max_result_bytes = Some(ByteSize::parse(size).unwrap());
            assert_eq!(paths(&r).is_empty(), ok, "maxResultBytes {size}");
        }
        r.spec.limits.max_result_bytes = Some(ByteSize::parse("0").unwrap());
        assert_eq!(paths(&r), ["spec.limits.maxResultBytes"]);
        // Absent: the default applies, and it is what the digest (and the engine) sees.
        r.spec.limits.max_result_bytes = None;
        assert_eq!(r.spec.effective_limits().max_result_bytes, crate::spec::DEFAULT_MAX_RESULT_BYTES);
        r.spec.limits.max_result_bytes = Some(ByteSize::parse("5MiB").unwrap());
        assert_eq!(r.spec.effective_limits().max_result_bytes, 5 << 20);
    }

    #[test]
    fn chart_columns_are_checked() {
        use crate::spec::{ChartSpec, ChartType};
        let mut r = good();
        r.spec.chart = Some(ChartSpec { type_: ChartType::Line, x: Some("day".into()), y: vec!["total".into()] });
        assert_eq!(validate(&r), vec![]);
        r.spec.chart = Some(ChartSpec { type_: ChartType::None, x: Some("day".into()), y: vec![] });
        assert_eq!(only_error(&r).path, "spec.chart");
        r.spec.chart = Some(ChartSpec { type_: ChartType::None, x: None, y: vec![] });
        assert_eq!(validate(&r), vec![]);
        r.spec.chart = Some(ChartSpec {
            type_: ChartType::Auto,
            x: Some(" ".into()),
            y: vec!["a".into(), "a".into(), "b\u{7}".into(), "x".into()],
        });
        assert_eq!(paths(&r), ["spec.chart.x", "spec.chart.y[1]", "spec.chart.y[2]"]);
        r.spec.chart = Some(ChartSpec { type_: ChartType::Bar, x: Some("x".into()), y: vec!["x".into()] });
        assert!(only_error(&r).message.contains("already the x axis"));
        r.spec.chart =
            Some(ChartSpec { y: (0..=MAX_CHART_SERIES).map(|i| format!("c{i}")).collect(), ..Default::default() });
        assert_eq!(only_error(&r).path, "spec.chart.y");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let mut r = good();
        r.api_version = "x".into();
        r.metadata.name = "".into();
        r.spec.question = Some("".into());
        r.spec.catalog.database = "".into();
        r.spec.limits.max_rows = Some(0);
        r.spec.limits.timeout = Some(DurationSpec::parse("48h").unwrap());
        assert_eq!(
            paths(&r),
            [
                "apiVersion",
                "metadata.name",
                "spec.question",
                "spec.catalog.database",
                "spec.limits.maxRows",
                "spec.limits.timeout"
            ]
        );
    }

    #[test]
    fn server_set_metadata_and_status_are_ignored() {
        let mut r = good();
        r.metadata.uid = Some("anything".into());
        r.metadata.resource_version = Some("7".into());
        r.metadata.generation = Some(3);
        r.metadata.finalizers = vec!["whatever/x".into()];
        r.status = Some(Default::default());
        assert_eq!(validate(&r), vec![]);
    }

    #[test]
    fn join_key_quotes_what_is_not_a_plain_word() {
        assert_eq!(join_key("", "spec"), "spec");
        assert_eq!(join_key("spec", "maxRows"), "spec.maxRows");
        assert_eq!(join_key("metadata.labels", "a.b/c"), r#"metadata.labels["a.b/c"]"#);
        assert_eq!(join_key("m", "say \"hi\""), r#"m["say \"hi\""]"#);
        assert_eq!(join_key("m", ""), r#"m[""]"#);
    }

    #[test]
    fn schema_file_is_current() {
        for kind in crate::spec::ObjectKind::ALL {
            let want = crate::spec::json_schema_of(kind);
            let file = crate::spec::schema_file(kind);
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&file);
            if std::env::var("SQLCTL_BLESS").as_deref() == Ok("1") {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &want).unwrap();
                continue;
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == want,
                "{file} is stale: run `cargo run -- schema {} > {file}` (or SQLCTL_BLESS=1 cargo test --lib schema_file_is_current)",
                kind.resource()
            );
        }
    }
}
