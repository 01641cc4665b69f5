//! Reading objects (`QueryRequest`, `SemanticModel`, `VerifiedQuery`) from files, directories
//! and stdin: strict, whole, and safe on hostile input.
//!
//! * **Any kind.** A source may mix the kinds; each document's top-level `kind` decides which
//!   type it is read as (a missing `kind` reads as a `QueryRequest`, which then says `kind` is
//!   required), and an unknown kind is a problem naming the source, the document and the line.
//! * **Whole.** Every document of every source is parsed and validated, and every problem is
//!   returned at once ([`LoadError`]); if anything anywhere is wrong the caller gets no documents
//!   at all, so an `apply` of ten files writes all ten or nothing.
//! * **Located.** Each [`Problem`] names the source, the document (shown 1-based), the field path
//!   (`spec.limits.maxRows`) and, where known, line and column — for YAML syntax errors, serde
//!   errors (unknown field, wrong type, duplicate key) and [`validate`] errors alike.
//! * **Strict.** Unknown fields, duplicate mapping keys, merge keys (`<<`) and YAML tags other
//!   than the core ones (`!!str`, `!!int`, …) are errors, never silently dropped or last-wins.
//! * **Bounded.** A source is refused before parsing if it exceeds [`MAX_INPUT_BYTES`] (at most
//!   that many bytes plus one are ever read, stdin included), is not UTF-8 or looks binary. A
//!   cheap event pre-scan then caps documents ([`MAX_DOCUMENTS`]), nesting ([`MAX_DEPTH`]), nodes
//!   ([`MAX_NODES`]) and aliases ([`MAX_ALIASES`]) per source before anything is deserialized, and
//!   serde-saphyr's budget and alias-replay limits bound each document (alias bombs). Every
//!   hostile input is refused in milliseconds, with memory proportional to the input.
//!
//! How: the pre-scan (granit-parser events) finds each document's byte range; each non-empty
//! document is deserialized on its own with serde-saphyr, so one bad document does not hide the
//! problems of the next. Problem locations are mapped back to the whole source, and field paths
//! are found by walking the document's events (the same path syntax as [`validate`] uses, see
//! [`join_key`]).
//!
//! JSON is YAML, so `.json` files load the same way.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde_saphyr::granit_parser::{self, Event, Parser, ScalarStyle, Tag};
use serde_saphyr::{DuplicateKeyPolicy, MergeKeyPolicy, MessageFormatter};

use super::object::{Object, ObjectKind};
use super::semantic::SemanticModel;
use super::types::{ObjectMeta, QueryRequest};
use super::validate::{FieldError, join_key, push_index, push_key, validate};
use super::verified::VerifiedQuery;

/// Largest input accepted per source (file or stdin), in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Most YAML documents (`---` separated, empty ones included) in one source.
pub const MAX_DOCUMENTS: usize = 1000;
/// Deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;
/// Most YAML nodes (scalars, mappings, sequences, aliases) in one source.
pub const MAX_NODES: usize = 250_000;
/// Most aliases (`*name`) in one source. Requests have no use for them beyond the odd shared value.
pub const MAX_ALIASES: usize = 1000;
/// Most events replayed from aliases while deserializing one document.
const MAX_ALIAS_REPLAYED_EVENTS: usize = 10_000;

/// The source name used for stdin (`-`).
pub const STDIN: &str = "<stdin>";

/// One object read from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDoc {
    /// File path as given (or found in a directory), or `<stdin>`.
    pub source: String,
    /// 0-based index of the document in its source, counting empty documents too.
    pub index: usize,
    pub document: Document,
}

/// A document of any kind of the API group.
// A load holds a few documents, each moved once: boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    QueryRequest(QueryRequest),
    Object(Object),
}

impl Document {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Document::QueryRequest(_) => ObjectKind::QueryRequest,
            Document::Object(o) => o.kind(),
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Document::QueryRequest(r) => &r.metadata,
            Document::Object(o) => o.metadata(),
        }
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Document::QueryRequest(r) => &mut r.metadata,
            Document::Object(o) => o.metadata_mut(),
        }
    }

    pub fn request(&self) -> Option<&QueryRequest> {
        match self {
            Document::QueryRequest(r) => Some(r),
            Document::Object(_) => None,
        }
    }
}

impl LoadedDoc {
    /// The document as a request, if it is one.
    pub fn request(&self) -> Option<&QueryRequest> {
        self.document.request()
    }
}

/// Checks beyond [`validate`] that the caller can make and this module cannot (the guard's
/// parse of SQL and expressions), run on every document that passed its own validation; their
/// problems are located like every other.
pub type ExtraCheck<'a> = &'a dyn Fn(&Document) -> Vec<FieldError>;

/// Everything wrong with the inputs of one load; nothing was loaded.
#[derive(Debug)]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

/// One problem in one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// File path or `<stdin>`.
    pub source: String,
    /// 0-based document index in the source; `None` for problems with the source as a whole.
    pub index: Option<usize>,
    /// Field path such as `spec.limits.maxRows`, when the problem is about one field.
    pub path: Option<String>,
    /// 1-based line in the source.
    pub line: Option<usize>,
    /// 1-based column (in characters) in the source.
    pub column: Option<usize>,
    pub message: String,
}

impl Problem {
    fn source_wide(source: &str, message: impl Into<String>) -> Self {
        Problem { source: source.into(), index: None, path: None, line: None, column: None, message: message.into() }
    }
}

/// `FILE: document 2: spec.limits.maxRows (line 12, column 14): must be between 1 and 100000`
/// (the document number is 1-based, like lines and columns).
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(i) = self.index {
            write!(f, "document {}: ", i + 1)?;
        }
        let pos = match (self.line, self.column) {
            (Some(l), Some(c)) => Some(format!("line {l}, column {c}")),
            (Some(l), None) => Some(format!("line {l}")),
            _ => None,
        };
        match (&self.path, pos) {
            (Some(p), Some(pos)) => write!(f, "{p} ({pos}): ")?,
            (Some(p), None) => write!(f, "{p}: ")?,
            (None, Some(pos)) => write!(f, "{pos}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// Every problem on its own line.
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Parses and validates every document of one YAML (or JSON) text.
///
/// `source` names the text in problems. Duplicate `(namespace, name)` pairs are an error.
pub fn parse_str(text: &str, source: &str) -> Result<Vec<LoadedDoc>, LoadError> {
    parse_str_with(text, source, &|_| Vec::new())
}

/// [`parse_str`] with an [`ExtraCheck`].
pub fn parse_str_with(text: &str, source: &str, extra: ExtraCheck<'_>) -> Result<Vec<LoadedDoc>, LoadError> {
    let mut loader = Loader { extra: Some(extra), ..Loader::default() };
    if text.len() > MAX_INPUT_BYTES {
        loader.problems.push(too_large(source));
    } else {
        match check_text(text.as_bytes()) {
            Ok(t) => loader.parse_source(t, source),
            Err(m) => loader.problems.push(Problem::source_wide(source, m)),
        }
    }
    loader.finish()
}

/// Loads every path: a file, a directory (its `*.yaml`, `*.yml` and `*.json` files, not
/// recursively, in name order; dot-files skipped) or `-` for stdin. All or nothing: any problem
/// anywhere returns `Err` with every problem found.
pub fn load_paths(paths: &[String]) -> Result<Vec<LoadedDoc>, LoadError> {
    load_paths_with(paths, &|_| Vec::new())
}

/// [`load_paths`] with an [`ExtraCheck`].
pub fn load_paths_with(paths: &[String], extra: ExtraCheck<'_>) -> Result<Vec<LoadedDoc>, LoadError> {
    let mut loader = Loader { extra: Some(extra), ..Loader::default() };
    let mut stdin_used = false;
    for p in paths {
        if p == "-" {
            if stdin_used {
                loader.problems.push(Problem::source_wide(STDIN, "stdin (-) given more than once"));
                continue;
            }
            stdin_used = true;
            let read = read_bounded(std::io::stdin().lock());
            loader.load_bytes(read, STDIN);
            continue;
        }
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Err(e) => loader.problems.push(Problem::source_wide(p, io_message(&e))),
            Ok(m) if m.is_dir() => match list_dir(path) {
                Err(e) => loader.problems.push(Problem::source_wide(p, io_message(&e))),
                Ok(files) if files.is_empty() => {
                    loader.problems.push(Problem::source_wide(p, "directory contains no .yaml, .yml or .json files"))
                }
                Ok(files) => {
                    for f in files {
                        let name = f.display().to_string();
                        loader.load_file(&f, &name);
                    }
                }
            },
            Ok(_) => loader.load_file(path, p),
        }
    }
    loader.finish()
}

/// Serializes a value (a request, a list of them, a status) as YAML that [`parse_str`] reads back.
///
/// # Panics
/// If `value`'s `Serialize` implementation fails, which the types of this crate never do.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).expect("value serializes to YAML")
}

// ---------------------------------------------------------------------------------------------
// Reading sources

#[derive(Default)]
struct Loader<'a> {
    docs: Vec<LoadedDoc>,
    problems: Vec<Problem>,
    /// (kind, namespace, name) → (source, index) of its first definition.
    seen: HashMap<(ObjectKind, String, String), (String, usize)>,
    extra: Option<ExtraCheck<'a>>,
}

impl Loader<'_> {
    fn finish(self) -> Result<Vec<LoadedDoc>, LoadError> {
        if self.problems.is_empty() { Ok(self.docs) } else { Err(LoadError { problems: self.problems }) }
    }

    fn load_file(&mut self, path: &Path, name: &str) {
        let read = std::fs::File::open(path).and_then(|f| {
            if f.metadata().map(|m| m.len() > MAX_INPUT_BYTES as u64).unwrap_or(false) {
                return Ok(None);
            }
            read_bounded(f)
        });
        self.load_bytes(read, name);
    }

    fn load_bytes(&mut self, read: std::io::Result<Option<Vec<u8>>>, name: &str) {
        match read {
            Err(e) => self.problems.push(Problem::source_wide(name, io_message(&e))),
            Ok(None) => self.problems.push(too_large(name)),
            Ok(Some(bytes)) => match check_text(&bytes) {
                Ok(text) => self.parse_source(text, name),
                Err(m) => self.problems.push(Problem::source_wide(name, m)),
            },
        }
    }

    /// Parses every document of one source, recording documents and problems.
    fn parse_source(&mut self, text: &str, source: &str) {
        let scan = split_documents(text);
        if let Some(e) = scan.error {
            self.problems.push(Problem {
                source: source.into(),
                index: e.index,
                path: None,
                line: Some(e.line),
                column: Some(e.column),
                message: e.message,
            });
            if e.over_limit {
                // Hostile or absurd input: say so once, do not deserialize any of it.
                return;
            }
        }
        for span in &scan.docs {
            if span.empty {
                continue;
            }
            match text.get(span.start..span.end) {
                Some(doc) => self.parse_document(doc, span, source),
                // Cannot happen with the parser's own offsets; refuse rather than panic.
                None => self.problems.push(Problem {
                    index: Some(span.index),
                    ..Problem::source_wide(source, "cannot find the boundaries of this document")
                }),
            }
        }
    }

    fn parse_document(&mut self, doc: &str, span: &DocSpan, source: &str) {
        let problem = |path: Option<String>, pos: Option<(usize, usize)>, message: String| Problem {
            source: source.into(),
            index: Some(span.index),
            path,
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message,
        };
        if let Some(t) = &span.bad_tag {
            let at = nodes_at(doc, span.local(t.node));
            let path = at.exact.first().map(|n| n.path.clone()).or(at.before).filter(|p| !p.is_empty());
            self.problems.push(problem(path, Some(t.tag), t.message.clone()));
            return;
        }
        let kind = match top_level_kind(doc) {
            None => ObjectKind::QueryRequest,
            Some((k, pos)) => match ObjectKind::from_kind(&k) {
                Some(kind) => kind,
                None => {
                    let expected: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.as_str()).collect();
                    let message = format!("unknown kind {}; expected one of: {}", quote_short(&k), expected.join(", "));
                    self.problems.push(problem(Some("kind".into()), Some(span.global((pos.0, pos.1 + 1))), message));
                    return;
                }
            },
        };
        let parsed = match kind {
            ObjectKind::QueryRequest => deserialize::<QueryRequest>(doc).map(Document::QueryRequest),
            ObjectKind::SemanticModel => {
                deserialize::<SemanticModel>(doc).map(|m| Document::Object(Object::SemanticModel(m)))
            }
            ObjectKind::VerifiedQuery => {
                deserialize::<VerifiedQuery>(doc).map(|v| Document::Object(Object::VerifiedQuery(v)))
            }
        };
        let document = match parsed {
            Ok(d) => d,
            Err(e) => {
                let (path, pos, message) = describe_parse_error(&e, doc);
                self.problems.push(problem(path, pos.map(|p| span.global(p)), message));
                return;
            }
        };
        let mut errs = match &document {
            Document::QueryRequest(r) => validate(r),
            Document::Object(Object::SemanticModel(m)) => super::semantic::validate(m),
            Document::Object(Object::VerifiedQuery(v)) => super::verified::validate(v),
        };
        if errs.is_empty()
            && let Some(extra) = self.extra
        {
            errs = extra(&document);
        }
        let mut wanted: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        wanted.push("metadata.name");
        let positions = locate_paths(doc, &wanted);
        for (e, pos) in errs.iter().zip(&positions) {
            let pos = pos.map(|(l, c)| span.global((l, c + 1)));
            self.problems.push(problem(Some(e.path.clone()), pos, e.message.clone()));
        }
        let meta = document.metadata();
        let key = (kind, meta.namespace().to_string(), meta.name.clone());
        if let Some((first_source, first_index)) = self.seen.get(&key) {
            let pos = positions.last().copied().flatten().map(|(l, c)| span.global((l, c + 1)));
            let what = if kind == ObjectKind::QueryRequest { String::new() } else { format!("{} ", kind.resource()) };
            let msg = format!(
                "{what}{}/{} is defined more than once (first in {first_source}, document {})",
                key.1,
                key.2,
                first_index + 1
            );
            self.problems.push(problem(Some("metadata.name".into()), pos, msg));
        } else {
            self.seen.insert(key, (source.to_string(), span.index));
        }
        if errs.is_empty() {
            self.docs.push(LoadedDoc { source: source.into(), index: span.index, document });
        }
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<T>(doc, de_options())
}

/// The document's top-level `kind` when it is a scalar, with its document-local position
/// (1-based line, 0-based column).
fn top_level_kind(doc: &str) -> Option<(String, (usize, usize))> {
    let mut found = None;
    walk(doc, |path, kind, is_key, scalar, pos| {
        if path == "kind" && !is_key {
            if kind == NodeKind::Scalar {
                found = scalar.map(|s| (quote_free(s), pos));
            }
            return false;
        }
        true
    });
    found
}

fn too_large(source: &str) -> Problem {
    Problem::source_wide(
        source,
        format!("input is larger than {} MiB, the limit per input; split it into several files", MAX_INPUT_BYTES >> 20),
    )
}

/// Reads at most `MAX_INPUT_BYTES + 1` bytes; `None` if there were more than `MAX_INPUT_BYTES`.
fn read_bounded(r: impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT_BYTES as u64 + 1).read_to_end(&mut buf)?;
    Ok(if buf.len() > MAX_INPUT_BYTES { None } else { Some(buf) })
}

fn list_dir(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if name.starts_with('.') || !matches!(ext.as_str(), "yaml" | "yml" | "json") {
            continue;
        }
        // Follows symlinks: a link to a file counts, a subdirectory does not.
        if std::fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot read: {e}"),
    }
}

/// Refuses what is not YAML text before the parser sees it; strips a UTF-8 byte-order mark.
fn check_text(bytes: &[u8]) -> Result<&str, String> {
    if bytes.starts_with(&[0, 0, 0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE, 0, 0]) {
        return Err("not UTF-8 text: it starts with a UTF-32 byte-order mark; save it as UTF-8".into());
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err("not UTF-8 text: it starts with a UTF-16 byte-order mark; save it as UTF-8".into());
    }
    if let Some(i) = bytes.iter().position(|&b| b == 0) {
        return Err(format!("looks binary (NUL byte at offset {i}), not YAML text"));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (invalid byte at offset {}); save it as UTF-8", e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    // YAML allows tab, line breaks and NEL among the control characters; anything else is a
    // sign of a binary file (and the parser would refuse it with a less helpful message).
    if let Some((i, c)) =
        text.char_indices().find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}'))
    {
        let line = text[..i].bytes().filter(|&b| b == b'\n').count() + 1;
        return Err(format!("looks binary (control character U+{:04X} on line {line}), not YAML text", c as u32));
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Pre-scan: split a source into documents, enforcing the per-source limits

/// Where one document lies in its source.
#[derive(Debug)]
struct DocSpan {
    index: usize,
    /// Byte range of the document's text (from the end of the previous document).
    start: usize,
    end: usize,
    /// 1-based line and 0-based character column of `start` in the source.
    start_line: usize,
    start_col: usize,
    /// Only comments, or a null root: skipped.
    empty: bool,
    /// The first tag we refuse in this document: it is reported instead of deserializing.
    bad_tag: Option<BadTag>,
}

/// A refused YAML tag, with source positions of the tagged node (for its path) and of the tag.
#[derive(Debug)]
struct BadTag {
    /// 1-based line, 0-based column of the node.
    node: (usize, usize),
    /// 1-based line and column of the tag.
    tag: (usize, usize),
    message: String,
}

impl DocSpan {
    /// Maps a (1-based line, column) inside the document's text to the whole source.
    fn global(&self, (line, col): (usize, usize)) -> (usize, usize) {
        if line <= 1 { (self.start_line, self.start_col + col) } else { (self.start_line + line - 1, col) }
    }

    /// The inverse of [`DocSpan::global`].
    fn local(&self, (line, col): (usize, usize)) -> (usize, usize) {
        if line <= self.start_line {
            (1, col.saturating_sub(self.start_col))
        } else {
            (line - self.start_line + 1, col)
        }
    }
}

struct ScanError {
    /// A limit was exceeded (as opposed to a YAML syntax error).
    over_limit: bool,
    index: Option<usize>,
    line: usize,
    column: usize,
    message: String,
}

struct Scan {
    docs: Vec<DocSpan>,
    error: Option<ScanError>,
}

fn parser_options() -> granit_parser::Options {
    let mut o = granit_parser::Options::default();
    // The parser's own limits stop a `[[[[…` storm even before our depth check sees the events.
    o.flow_nesting_limit = MAX_DEPTH + 1;
    o.block_nesting_limit = MAX_DEPTH + 1;
    o
}

/// Is this a tag we let through? The YAML core schema (`!!str`, `!!int`, `!!float`, `!!bool`,
/// `!!null`, `!!map`, `!!seq`) and the non-specific `!`. Everything else (`!!binary`,
/// `!!timestamp`, `!!merge`, local `!foo` tags) is refused.
fn tag_allowed(tag: &Tag) -> bool {
    tag.is_yaml_core_schema() || (tag.handle().is_empty() && tag.suffix() == "!")
}

fn split_documents(text: &str) -> Scan {
    let mut parser = Parser::new_from_str_with_options(text, parser_options());
    let mut docs = Vec::new();
    let (mut prev_end, mut prev_line, mut prev_col) = (0usize, 1usize, 0usize);
    let (mut depth, mut nodes, mut aliases, mut count) = (0usize, 0usize, 0usize, 0usize);
    // Root of the current document: None before it is seen, Some(is_null) after.
    let mut root: Option<bool> = None;
    let mut bad_tag: Option<BadTag> = None;
    let fail = |index: Option<usize>, m: &granit_parser::Marker, message: String| ScanError {
        over_limit: true,
        index,
        line: m.line(),
        column: m.col() + 1,
        message,
    };
    let byte_at = |m: &granit_parser::Marker| m.byte_offset().unwrap_or_else(|| char_to_byte(text, m.index()));

    let error = loop {
        let (event, span) = match parser.next_event() {
            None => break None,
            Some(Err(e)) => {
                let index = (count > 0).then(|| count - 1);
                if e.info().contains("recursion limit") {
                    break Some(fail(index, e.marker(), format!("nested more than {MAX_DEPTH} levels deep")));
                }
                let error = fail(index, e.marker(), format!("invalid YAML: {}", e.info()));
                break Some(ScanError { over_limit: false, ..error });
            }
            Some(Ok(ev)) => ev,
        };
        let index = count.checked_sub(1);
        let mut tag: Option<&Tag> = None;
        let mut node = false;
        match &event {
            Event::DocumentStart(..) => {
                count += 1;
                root = None;
                bad_tag = None;
                if count > MAX_DOCUMENTS {
                    break Some(fail(None, &span.start, format!("more than {MAX_DOCUMENTS} documents in one input")));
                }
            }
            Event::DocumentEnd => {
                let end = byte_at(&span.end);
                docs.push(DocSpan {
                    index: count - 1,
                    start: prev_end,
                    end,
                    start_line: prev_line,
                    start_col: prev_col,
                    empty: root.unwrap_or(true),
                    bad_tag: bad_tag.take(),
                });
                (prev_end, prev_line, prev_col) = (end, span.end.line(), span.end.col());
            }
            Event::MappingStart(_, _, t) | Event::SequenceStart(_, _, t) => {
                tag = t.as_deref();
                node = true;
                root.get_or_insert(false);
                depth += 1;
                if depth > MAX_DEPTH {
                    break Some(fail(index, &span.start, format!("nested more than {MAX_DEPTH} levels deep")));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            Event::Scalar(value, style, anchor, t) => {
                tag = t.as_deref();
                node = true;
                let null = *style == ScalarStyle::Plain
                    && *anchor == 0
                    && t.is_none()
                    && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                root.get_or_insert(null);
            }
            Event::Alias(_) => {
                node = true;
                root.get_or_insert(false);
                aliases += 1;
                if aliases > MAX_ALIASES {
                    break Some(fail(
                        index,
                        &span.start,
                        format!("more than {MAX_ALIASES} aliases (*name) in one input"),
                    ));
                }
            }
            _ => {}
        }
        if let Some(t) = tag
            && !tag_allowed(t)
            && bad_tag.is_none()
        {
            let m = span.tag_start.unwrap_or(span.start);
            bad_tag = Some(BadTag {
                node: (span.start.line(), span.start.col()),
                tag: (m.line(), m.col() + 1),
                message: format!(
                    "YAML tag `{}` is not supported (only the core tags such as !!str and !!int are)",
                    t.original()
                ),
            });
        }
        if node {
            nodes += 1;
            if nodes > MAX_NODES {
                break Some(fail(index, &span.start, format!("more than {MAX_NODES} YAML nodes in one input")));
            }
        }
    };
    Scan { docs, error }
}

fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map(|(i, _)| i).unwrap_or(text.len())
}

// ---------------------------------------------------------------------------------------------
// Deserializing one document and explaining its errors

fn de_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_INPUT_BYTES),
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_documents: 2,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_merge_keys: 0,
            max_total_scalar_bytes: MAX_INPUT_BYTES,
            max_recorded_anchor_events: MAX_ALIAS_REPLAYED_EVENTS,
            max_recorded_anchor_bytes: MAX_INPUT_BYTES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAYED_EVENTS,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 1000,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        merge_keys: MergeKeyPolicy::Error,
        reject_unsupported_tags: true,
        reject_tagged_field_names: true,
        with_snippet: false,
    }
}

/// The error itself, without snippet and alias wrappers.
fn original(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } => e = error,
            _ => return e,
        }
    }
}

/// Path, document-local 1-based (line, column) and message for a deserialization error.
fn describe_parse_error(err: &serde_saphyr::Error, doc: &str) -> (Option<String>, Option<(usize, usize)>, String) {
    use serde_saphyr::Error as E;
    let inner = original(err);
    let loc = err.location().and_then(|l| {
        let (line, col) = (usize::try_from(l.line()).ok()?, usize::try_from(l.column()).ok()?);
        (line > 0 && col > 0).then_some((line, col))
    });
    let at = loc.map(|(l, c)| nodes_at(doc, (l, c - 1))).unwrap_or_default();
    let key_named = |name: &str| at.exact.iter().rev().find(|n| n.is_key && n.scalar.as_deref() == Some(name));
    let outer = at.exact.first();
    let generic_path = outer.map(|n| n.path.clone()).or_else(|| at.before.clone());

    let found = outer.map(|n| n.kind_name()).map(|k| format!(", found {k}")).unwrap_or_default();
    let (path, message) = match inner {
        E::SerdeUnknownField { field, expected, .. } => {
            let path = key_named(field).map(|n| n.path.clone()).or(generic_path);
            let message = if expected.is_empty() {
                format!("unknown field `{field}`")
            } else {
                format!("unknown field `{field}`; expected one of: {}", expected.join(", "))
            };
            (path, message)
        }
        E::SerdeMissingField { field, .. } => {
            // serde-saphyr points at the last key read from the mapping that lacks the field
            // (or at the mapping itself when it is empty).
            let key = at.exact.iter().find(|n| n.is_key).and_then(|n| parent_path(&n.path));
            let map = at.exact.iter().find(|n| n.kind == NodeKind::Mapping).map(|n| n.path.as_str());
            let parent = key.or(map).map(str::to_string).or(generic_path).unwrap_or_default();
            (Some(join_key(&parent, field)), "required field is missing".into())
        }
        E::DuplicateMappingKey { key, .. } => {
            let path = key.as_deref().and_then(key_named).map(|n| n.path.clone()).or(generic_path);
            let k = key.as_deref().map(|k| format!(" `{k}`")).unwrap_or_default();
            (path, format!("duplicate key{k}: each key may appear only once"))
        }
        E::SerdeUnknownVariant { variant, expected, .. } => {
            (generic_path, format!("unknown value `{variant}`; expected one of: {}", expected.join(", ")))
        }
        E::SerdeInvalidType { unexpected, expected, .. } | E::SerdeInvalidValue { unexpected, expected, .. } => {
            (generic_path, format!("expected {}, found {unexpected}", humanize_type(expected)))
        }
        E::InvalidScalar { ty, .. } => {
            let got = outer
                .and_then(|n| n.scalar.as_deref())
                .map(|s| format!(", found {}", quote_short(s)))
                .unwrap_or_default();
            (generic_path, format!("expected {}{got}", humanize_type(ty)))
        }
        E::Unexpected { expected, .. } => (generic_path, format!("expected {}{found}", humanize_type(expected))),
        E::NullIntoString { .. } => (
            generic_path,
            "a value is required here (found an empty value or null; quote it if you mean the text)".into(),
        ),
        E::MergeKeyNotAllowed { .. } => (generic_path, "YAML merge keys (<<) are not supported".into()),
        E::UnsupportedTag { tag, .. } | E::TaggedStructFieldName { tag, .. } => {
            (generic_path, format!("YAML tag `{tag}` is not supported"))
        }
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => {
            (generic_path, "aliases (*name) expand to too much data; refusing a possible alias bomb".into())
        }
        E::Budget { breach, .. } => (generic_path, describe_breach(breach)),
        E::Message { msg, .. } => (generic_path, msg.clone()),
        other => {
            let text = serde_saphyr::UserMessageFormatter.format_message(other).into_owned();
            (generic_path, text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
        }
    };
    (path.filter(|p| !p.is_empty()), loc, message)
}

fn describe_breach(b: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match b {
        B::Depth { .. } => format!("nested more than {MAX_DEPTH} levels deep"),
        B::Nodes { .. } | B::Events { .. } => format!("more than {MAX_NODES} YAML nodes"),
        B::ScalarBytes { .. } => format!(
            "more than {} MiB of text once aliases (*name) are expanded; refusing a possible alias bomb",
            MAX_INPUT_BYTES >> 20
        ),
        B::Aliases { .. } => format!("more than {MAX_ALIASES} aliases (*name)"),
        B::Anchors { .. } => format!("more than {MAX_ALIASES} anchors (&name)"),
        other => format!("document is too large or too complex ({other:?})"),
    }
}

fn humanize_type(t: &str) -> String {
    match t {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "bool" => "true or false".into(),
        "string scalar" | "scalar" => "a single value".into(),
        "string" | "a string" => "a string".into(),
        "sequence start" => "a list".into(),
        "mapping start" => "a mapping".into(),
        other => other.into(),
    }
}

fn quote_short(s: &str) -> String {
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    format!("{t:?}")
}

// ---------------------------------------------------------------------------------------------
// Walking a document's events with field paths

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeKind {
    Scalar,
    Mapping,
    Sequence,
    Alias,
}

/// A node found at a position.
#[derive(Debug)]
struct NodeAt {
    path: String,
    kind: NodeKind,
    is_key: bool,
    scalar: Option<String>,
}

impl NodeAt {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Scalar => "a scalar",
            NodeKind::Mapping => "a mapping",
            NodeKind::Sequence => "a sequence",
            NodeKind::Alias => "an alias",
        }
    }
}

#[derive(Default)]
struct NodesAt {
    /// Nodes starting exactly at the position, outermost first.
    exact: Vec<NodeAt>,
    /// Path of the last node starting before the position.
    before: Option<String>,
}

enum Frame {
    Map { base: usize, expect_key: bool, key: String },
    Seq { base: usize, next: usize },
}

/// Visits every node of a document with its path; stops when `visit` returns false.
///
/// `visit(path, kind, is_key, scalar text, (line 1-based, column 0-based))`.
fn walk(doc: &str, mut visit: impl FnMut(&str, NodeKind, bool, Option<&str>, (usize, usize)) -> bool) {
    let mut parser = Parser::new_from_str_with_options(doc, parser_options());
    let mut frames: Vec<Frame> = Vec::new();
    let mut path = String::new();
    while let Some(Ok((event, span))) = parser.next_event() {
        let (kind, scalar) = match &event {
            Event::Scalar(v, ..) => (NodeKind::Scalar, Some(v.as_ref())),
            Event::MappingStart(..) => (NodeKind::Mapping, None),
            Event::SequenceStart(..) => (NodeKind::Sequence, None),
            Event::Alias(_) => (NodeKind::Alias, None),
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                continue;
            }
            Event::DocumentEnd => return,
            _ => continue,
        };
        let mut is_key = false;
        match frames.last_mut() {
            None => path.clear(),
            Some(Frame::Map { base, expect_key, key }) => {
                path.truncate(*base);
                if *expect_key {
                    is_key = true;
                    key.clear();
                    key.push_str(scalar.unwrap_or("?"));
                }
                push_key(&mut path, key);
                *expect_key = !*expect_key;
            }
            Some(Frame::Seq { base, next }) => {
                path.truncate(*base);
                push_index(&mut path, *next);
                *next += 1;
            }
        }
        if !visit(&path, kind, is_key, scalar, (span.start.line(), span.start.col())) {
            return;
        }
        match kind {
            NodeKind::Mapping => frames.push(Frame::Map { base: path.len(), expect_key: true, key: String::new() }),
            NodeKind::Sequence => frames.push(Frame::Seq { base: path.len(), next: 0 }),
            _ => {}
        }
    }
}

/// Nodes at a document-local position (1-based line, 0-based column).
fn nodes_at(doc: &str, target: (usize, usize)) -> NodesAt {
    let mut out = NodesAt::default();
    walk(doc, |path, kind, is_key, scalar, pos| {
        if pos == target {
            out.exact.push(NodeAt { path: path.into(), kind, is_key, scalar: scalar.map(quote_free) });
            true
        } else if pos < target {
            out.before = Some(path.into());
            true
        } else {
            false
        }
    });
    out
}

/// Bounded copy of a scalar for messages.
fn quote_free(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Document-local positions (1-based line, 0-based column) of the given paths: the value when
/// it is a scalar, else its key, else the nearest enclosing field that exists.
fn locate_paths(doc: &str, paths: &[&str]) -> Vec<Option<(usize, usize)>> {
    let mut want: HashMap<&str, Option<(usize, usize)>> = HashMap::new();
    for p in paths {
        let mut p = *p;
        loop {
            want.insert(p, None);
            match parent_path(p) {
                Some(parent) => p = parent,
                None => break,
            }
        }
    }
    walk(doc, |path, kind, is_key, _, pos| {
        if let Some(slot) = want.get_mut(path)
            && (slot.is_none() || (!is_key && matches!(kind, NodeKind::Scalar | NodeKind::Alias)))
        {
            *slot = Some(pos);
        }
        true
    });
    paths
        .iter()
        .map(|p| {
            let mut p = *p;
            loop {
                if let Some(Some(pos)) = want.get(p) {
                    return Some(*pos);
                }
                p = parent_path(p)?;
            }
        })
        .collect()
}

/// `spec.limits.maxRows` → `spec.limits`; `metadata.labels["a.b/c"]` → `metadata.labels`;
/// `spec` → `""`; `""` → None.
fn parent_path(p: &str) -> Option<&str> {
    if p.is_empty() {
        return None;
    }
    let (mut in_quote, mut escaped, mut cut) = (false, false, 0);
    for (i, c) in p.char_indices() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                _ => {}
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '.' || c == '[' {
            cut = i;
        }
    }
    Some(&p[..cut])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::spec::API_VERSION;

    const GOOD: &str = "\
apiVersion: sqlctl.dev/v1alpha1
kind: QueryRequest
metadata:
  name: top-customers-2024
  labels: {team: growth}
spec:
  question: Which 10 customers spent the most in 2024?
  catalog: {database: sales, tables: [orders, customer]}
  engine: athena
  approval: {approvers: [alice], timeout: 30m}
  limits: {maxRows: 1000, maxBytesScanned: 10GiB, timeout: 10m}
";

    fn doc(name: &str) -> String {
        GOOD.replace("top-customers-2024", name)
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse_str(text, "f.yaml") {
            Ok(d) => panic!("expected an error, loaded {d:?}"),
            Err(e) => e.problems,
        }
    }

    fn one_problem(text: &str) -> Problem {
        let p = problems(text);
        assert_eq!(p.len(), 1, "expected one problem, got:\n{}", LoadError { problems: p.clone() });
        p.into_iter().next().unwrap()
    }

    /// Replaces `from` (which must occur once) with `to` in the good request.
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(GOOD.matches(from).count(), 1, "{from}");
        GOOD.replace(from, to)
    }

    /// Hostile input must fail, and fast: a safety bound, not a benchmark.
    fn refused_quickly(text: &str) -> Vec<Problem> {
        let t = Instant::now();
        let r = parse_str(text, "f.yaml");
        let took = t.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        r.expect_err("hostile input must be refused").problems
    }

    #[test]
    fn a_good_request_loads_and_round_trips() {
        let docs = parse_str(GOOD, "f.yaml").unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!((docs[0].source.as_str(), docs[0].index), ("f.yaml", 0));
        let r = docs[0].request().unwrap();
        assert_eq!(r.api_version, API_VERSION);
        assert_eq!(r.spec.limits.max_rows, Some(1000));
        assert_eq!(r.spec.limits.max_bytes_scanned.as_ref().unwrap().bytes(), 10 << 30);
        let yaml = to_yaml(r);
        let again = parse_str(&yaml, "again.yaml").unwrap();
        assert_eq!(&again[0].request().unwrap(), &r, "{yaml}");
    }

    #[test]
    fn awkward_strings_round_trip() {
        let mut r = parse_str(GOOD, "f.yaml").unwrap().remove(0).document.request().unwrap().clone();
        r.spec.question = Some("yes: no? \"quoted\" 'single' # not a comment\n\tsecond line: 123\n".into());
        r.metadata.labels.insert("example.com/flag".into(), "true".into());
        r.metadata.annotations.insert("note".into(), "null".into());
        let yaml = to_yaml(&r);
        assert_eq!(parse_str(&yaml, "x").unwrap()[0].request().unwrap(), &r, "{yaml}");
        r.spec.question = None;
        r.spec.sql = Some("SELECT c.name, sum(o.total)\nFROM orders o JOIN customer c ON o.cid = c.id\n".into());
        let yaml = to_yaml(&r);
        assert_eq!(parse_str(&yaml, "x").unwrap()[0].request().unwrap(), &r, "{yaml}");
    }

    #[test]
    fn get_output_with_a_full_status_round_trips() {
        use crate::spec::{Execution, Phase, Preview, QueryRequestStatus};
        let mut r = parse_str(GOOD, "f.yaml").unwrap().remove(0).document.request().unwrap().clone();
        r.metadata.uid = Some("3f1c".into());
        r.metadata.resource_version = Some("42".into());
        r.metadata.generation = Some(2);
        r.metadata.creation_timestamp = Some(chrono::Utc::now());
        let mut st = QueryRequestStatus { phase: Phase::Done, observed_generation: 2, ..Default::default() };
        st.set_condition("Ready", "True", "Done", "query finished: 2 rows");
        st.execution = Some(Execution {
            token: "t".into(),
            attempt: 1,
            state: "Succeeded".into(),
            rows: Some(2),
            cost_usd: Some(0.000_05),
            preview: Some(Preview {
                columns: vec!["name".into(), "total".into()],
                rows: vec![vec![Some("ACME".into()), None], vec![Some("null".into()), Some("12.50".into())]],
                truncated: false,
            }),
            ..Default::default()
        });
        r.status = Some(st);
        let yaml = to_yaml(&r);
        assert_eq!(parse_str(&yaml, "get.yaml").unwrap()[0].request().unwrap(), &r, "{yaml}");
    }

    #[test]
    fn server_set_fields_and_status_are_accepted() {
        let text = edit(
            "  labels: {team: growth}\n",
            "  labels: {team: growth}\n  uid: 5b0c\n  resourceVersion: \"12\"\n  generation: 3\n  creationTimestamp: 2024-05-01T10:00:00Z\n  finalizers: [sqlctl.dev/cancel-query]\n",
        ) + "status:\n  phase: AwaitingApproval\n  observedGeneration: 3\n";
        let docs = parse_str(&text, "f.yaml").unwrap();
        assert_eq!(docs[0].request().unwrap().metadata.generation, Some(3));
        assert_eq!(docs[0].request().unwrap().phase(), crate::spec::Phase::AwaitingApproval);
    }

    #[test]
    fn json_is_accepted() {
        let r = parse_str(GOOD, "f.yaml").unwrap().remove(0).document.request().unwrap().clone();
        let json = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(parse_str(&json, "f.json").unwrap()[0].request().unwrap(), &r);
    }

    #[test]
    fn multiple_documents_and_empty_ones() {
        let text = format!("# leading comment\n---\n{}---\n# only a comment\n---\n{}...\n", doc("a"), doc("b"));
        let docs = parse_str(&text, "f.yaml").unwrap();
        let got: Vec<_> = docs.iter().map(|d| (d.index, d.request().unwrap().metadata.name.as_str())).collect();
        assert_eq!(got, [(0, "a"), (2, "b")]);
        assert!(parse_str("", "e").unwrap().is_empty());
        assert!(parse_str("# nothing\n---\n---\n", "e").unwrap().is_empty());
    }

    #[test]
    fn one_bad_document_fails_the_whole_input_and_is_named() {
        let text = format!("{}---\n{}", doc("a"), doc("b").replace("maxRows: 1000", "maxRows: 0"));
        let err = parse_str(&text, "f.yaml").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let p = &err.problems[0];
        assert_eq!((p.index, p.path.as_deref()), (Some(1), Some("spec.limits.maxRows")));
        // Line 11 of the second document is line 23 of the file.
        assert_eq!((p.line, p.column), (Some(23), Some(21)));
        assert_eq!(
            err.to_string(),
            "f.yaml: document 2: spec.limits.maxRows (line 23, column 21): must be between 1 and 100000 (got 0)"
        );
    }

    #[test]
    fn every_bad_document_is_reported() {
        let text = format!(
            "{}---\n{}---\n{}",
            doc("Bad"),
            doc("b").replace("engine: athena", "engine: athena\n  bogus: 1"),
            doc("c").replace("apiVersion: sqlctl.dev/v1alpha1", "apiVersion: v1")
        );
        let text = format!("{text}---\n{}", doc("d").replace("kind: QueryRequest", "kind: Query"));
        let ps = problems(&text);
        let got: Vec<_> = ps.iter().map(|p| (p.index.unwrap(), p.path.clone().unwrap())).collect();
        assert_eq!(
            got,
            [(0, "metadata.name".into()), (1, "spec.bogus".into()), (2, "apiVersion".into()), (3, "kind".into())]
        );
        assert!(ps[2].message.contains("sqlctl.dev/v1alpha1"));
        assert_eq!((ps[0].line, ps[0].column), (Some(4), Some(9)));
        assert_eq!((ps[2].line, ps[2].column), (Some(26), Some(13)));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let text = format!("{}---\n{}---\n{}", doc("a"), doc("b"), doc("a"));
        let p = one_problem(&text);
        assert_eq!((p.index, p.path.as_deref(), p.line), (Some(2), Some("metadata.name"), Some(28)));
        assert!(p.message.contains("default/a") && p.message.contains("document 1"), "{}", p.message);
        // Another namespace is another object.
        let other = doc("a").replace("  name: a\n", "  name: a\n  namespace: team-x\n");
        assert_eq!(parse_str(&format!("{}---\n{other}", doc("a")), "f").unwrap().len(), 2);
    }

    #[test]
    fn unknown_fields_are_named_at_every_level() {
        let cases = [
            (edit("kind: QueryRequest\n", "kind: QueryRequest\nextra: 1\n"), "extra", 3, 1),
            (edit("  name: top-customers-2024\n", "  name: top-customers-2024\n  nmae: x\n"), "metadata.nmae", 5, 3),
            (edit("  engine: athena\n", "  engine: athena\n  Question: x\n"), "spec.Question", 10, 3),
            (edit("timeout: 10m}", "timeout: 10m, maxrows: 5}"), "spec.limits.maxrows", 11, 65),
        ];
        for (text, path, line, col) in cases {
            let p = one_problem(&text);
            assert_eq!(p.path.as_deref(), Some(path), "{p}");
            assert_eq!((p.line, p.column), (Some(line), Some(col)), "{p}");
            let field = path.rsplit('.').next().unwrap();
            assert!(p.message.contains(&format!("unknown field `{field}`")), "{p}");
            assert!(p.message.contains("expected one of"), "{p}");
        }
        let p = one_problem(&edit("  engine: athena\n", "  engine: athena\n  Question: x\n"));
        assert!(p.message.contains("question") && p.message.contains("limits"), "{p}");
    }

    #[test]
    fn missing_fields_are_named() {
        let p = one_problem(&edit("  name: top-customers-2024\n", ""));
        assert_eq!(p.path.as_deref(), Some("metadata.name"), "{p}");
        let p = one_problem(&edit("apiVersion: sqlctl.dev/v1alpha1\n", ""));
        assert_eq!(p.path.as_deref(), Some("apiVersion"), "{p}");
    }

    #[test]
    fn bad_names() {
        for name in ["Top-Customers", "-leading", "", "café", &"a".repeat(64)] {
            let text = doc(&format!("{name:?}"));
            let p = one_problem(&text);
            assert_eq!(p.path.as_deref(), Some("metadata.name"), "{name:?}: {p}");
        }
        assert!(one_problem(&doc(&"a".repeat(64))).message.contains("63"));
    }

    #[test]
    fn question_and_sql_exclusivity() {
        let p = one_problem(&edit("  engine: athena\n", "  engine: athena\n  sql: select 1\n"));
        assert_eq!(p.path.as_deref(), Some("spec"));
        assert_eq!(p.message, "set either spec.question or spec.sql, not both");
        assert_eq!(p.line, Some(6), "points at the spec: key");
        let p = one_problem(&edit("  question: Which 10 customers spent the most in 2024?\n", ""));
        assert!(p.message.contains("neither"), "{p}");
    }

    #[test]
    fn question_length_and_blankness() {
        let q = "  question: Which 10 customers spent the most in 2024?\n";
        let p = one_problem(&edit(q, "  question: \"\"\n"));
        assert_eq!((p.path.as_deref(), p.message.as_str()), (Some("spec.question"), "must not be blank"));
        // An empty value is null: no question at all.
        let p = one_problem(&edit(q, "  question:\n"));
        assert_eq!(p.path.as_deref(), Some("spec"), "{p}");
        assert!(p.message.contains("neither"), "{p}");
        let ok = "ü".repeat(4000);
        assert!(parse_str(&edit(q, &format!("  question: {ok}\n")), "f").is_ok());
        let p = one_problem(&edit(q, &format!("  question: {}\n", "q".repeat(4001))));
        assert_eq!(p.path.as_deref(), Some("spec.question"));
        assert!(p.message.contains("4000"), "{p}");
        let p = one_problem(&edit(q, "  question: \"a\\x01b\"\n"));
        assert!(p.message.contains("U+0001"), "{p}");
    }

    #[test]
    fn bad_quantities() {
        let cases = [
            ("timeout: 10m}", "timeout: 10 minutes}", "spec.limits.timeout", "invalid duration"),
            ("timeout: 10m}", "timeout: -5m}", "spec.limits.timeout", "invalid duration"),
            ("timeout: 30m}", "timeout: 1h30}", "spec.approval.timeout", "missing unit"),
            ("maxBytesScanned: 10GiB", "maxBytesScanned: 5XB", "spec.limits.maxBytesScanned", "unknown unit"),
            ("maxBytesScanned: 10GiB", "maxBytesScanned: -1", "spec.limits.maxBytesScanned", "negative"),
            ("maxRows: 1000", "maxRows: -5", "spec.limits.maxRows", "whole number"),
            ("maxRows: 1000", "maxRows: many", "spec.limits.maxRows", "whole number"),
            ("maxRows: 1000", "maxRows: 1.5", "spec.limits.maxRows", "whole number"),
            ("maxRows: 1000", "maxRows: 0", "spec.limits.maxRows", "between 1 and 100000"),
            ("maxRows: 1000", "maxRows: 1000000000000", "spec.limits.maxRows", "between 1 and 100000"),
            ("maxRows: 1000", "maxRows: [1]", "spec.limits.maxRows", ""),
            ("engine: athena", "engine: spark", "spec.engine", "athena, local"),
            ("  labels: {team: growth}", "  labels: {team: {a: b}}", "metadata.labels.team", "found a mapping"),
            (
                "  name: top-customers-2024",
                "  name: {a: 1}",
                "metadata.name",
                "expected a single value, found a mapping",
            ),
            ("tables: [orders, customer]", "tables: orders", "spec.catalog.tables", "expected a list, found a scalar"),
            ("tables: [orders, customer]", "tables: [orders, [x]]", "spec.catalog.tables[1]", ""),
        ];
        for (from, to, path, msg) in cases {
            let p = one_problem(&edit(from, to));
            assert_eq!(p.path.as_deref(), Some(path), "{to}: {p}");
            assert!(p.message.contains(msg), "{to}: {p}");
            assert!(p.line.is_some() && p.column.is_some(), "{to}: {p}");
        }
    }

    #[test]
    fn duplicate_keys_are_errors_not_last_wins() {
        let p = one_problem(&edit("  name: top-customers-2024\n", "  name: top-customers-2024\n  name: other\n"));
        assert_eq!((p.path.as_deref(), p.line), (Some("metadata.name"), Some(5)), "{p}");
        assert!(p.message.contains("duplicate key `name`"), "{p}");
        let p = one_problem(&edit("{team: growth}", "{team: growth, team: ops}"));
        assert_eq!(p.path.as_deref(), Some("metadata.labels.team"), "{p}");
    }

    #[test]
    fn tags_and_merge_keys_are_refused() {
        for (from, to, path, col) in [
            ("engine: athena", "engine: !local athena", "spec.engine", 11),
            ("  name: top-customers-2024", "  name: !!binary dG9w", "metadata.name", 9),
            ("  engine: athena\n", "  engine: athena\n  <<: {sql: select 1}\n", r#"spec["<<"]"#, 3),
            ("kind: QueryRequest", "kind: !!python/object QueryRequest", "kind", 7),
            ("timeout: 10m}", "timeout: !!timestamp 10m}", "spec.limits.timeout", 60),
        ] {
            let p = one_problem(&edit(from, to));
            assert_eq!((p.path.as_deref(), p.column), (Some(path), Some(col)), "{to}: {p}");
            assert!(p.message.contains("tag") || p.message.contains("merge"), "{to}: {p}");
        }
        // Core tags are fine.
        assert!(parse_str(&edit("maxRows: 1000", "maxRows: !!int 1000"), "f").is_ok());
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let p = one_problem(&edit("  labels: {team: growth}\n", "  labels: {team: growth\n"));
        assert!(p.line.is_some() && p.message.contains("invalid YAML"), "{p}");
        let p = one_problem("- just\n- a list\n");
        assert_eq!(p.message, "expected a mapping, found a sequence");
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut bomb =
            String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        refused_quickly(&bomb);
        // The same bomb where the request accepts a list of strings.
        let mut inside = String::from(
            "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata: {name: x}\nspec:\n  question: q\n  catalog:\n    database: d\n    tables: [&a0 [t,t,t,t,t,t,t,t,t,t]",
        );
        for i in 1..10 {
            inside.push_str(&format!(", &a{i} [{}]", vec![format!("*a{}", i - 1); 10].join(",")));
        }
        inside.push_str("]\n");
        refused_quickly(&inside);
        // Many aliases of a scalar.
        let many = format!("a: &x y\nb: [{}]\n", vec!["*x"; 5000].join(","));
        let p = refused_quickly(&many);
        assert!(p[0].message.contains("aliases"), "{}", p[0]);
        // A long scalar aliased many times where strings are accepted.
        let mut big = String::from(
            "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata: {name: x}\nspec:\n  question: &q ",
        );
        big.push_str(&"y".repeat(1_000_000));
        big.push_str(&format!("\n  catalog: {{database: d, tables: [{}]}}\n", vec!["*q"; 900].join(",")));
        let p = refused_quickly(&big);
        assert!(p[0].message.contains("alias bomb"), "{}", p[0]);
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        for deep in ["[".repeat(100_000), "{a: ".repeat(100_000), "- ".repeat(100_000)] {
            let p = refused_quickly(&deep);
            assert!(p[0].message.contains("nested more than 64 levels"), "{}", p[0]);
        }
        let mut block = String::new();
        for i in 0..200 {
            block.push_str(&" ".repeat(i));
            block.push_str("a:\n");
        }
        refused_quickly(&block);
    }

    #[test]
    fn too_many_documents_or_nodes_are_refused_quickly() {
        let p = refused_quickly(&"---\n".repeat(1_000_000));
        assert!(p.iter().any(|p| p.message.contains("too large") || p.message.contains("documents")), "{}", p[0]);
        let p = refused_quickly(&"--- {}\n".repeat(2000));
        assert!(p[0].message.contains("more than 1000 documents"), "{}", p[0]);
        let p = refused_quickly(&format!("[{}]", "1,".repeat(1_000_000)));
        assert!(p[0].message.contains("too large") || p[0].message.contains("nodes"), "{}", p[0]);
        let p = refused_quickly(&format!("[{}]", "1,".repeat(300_000)));
        assert!(p[0].message.contains("more than 250000 YAML nodes"), "{}", p[0]);
    }

    #[test]
    fn oversized_and_binary_input_is_refused_before_parsing() {
        let big = format!("{GOOD}# {}\n", "x".repeat(5 * 1024 * 1024));
        let p = refused_quickly(&big);
        assert!(p[0].message.contains("larger than 4 MiB"), "{}", p[0]);

        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..100_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p.display().to_string()
        };
        let t = Instant::now();
        let random_path = write("random.yaml", &random);
        let nul_path = write("nul.yaml", &[GOOD.as_bytes(), b"\0"].concat());
        let utf16: Vec<u8> =
            [0xFF, 0xFE].into_iter().chain(GOOD.encode_utf16().flat_map(|u| u.to_le_bytes())).collect();
        let utf16_path = write("utf16.yaml", &utf16);
        let latin1_path = write(
            "latin1.yaml",
            &GOOD.replace("Which", "Caf\u{e9}").bytes().map(|b| if b == 0xC3 { b'?' } else { b }).collect::<Vec<_>>(),
        );
        let ctrl_path = write("ctrl.yaml", format!("{GOOD}\u{1b}[31m\n").as_bytes());
        let big_path = write("big.yaml", big.as_bytes());
        let err = load_paths(&[random_path, nul_path, utf16_path, latin1_path, ctrl_path, big_path]).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        let msgs: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(msgs.len(), 6, "{err}");
        assert!(msgs[0].contains("looks binary") || msgs[0].contains("not UTF-8"), "{}", msgs[0]);
        assert!(msgs[1].contains("looks binary (NUL byte"), "{}", msgs[1]);
        assert!(msgs[2].contains("UTF-16"), "{}", msgs[2]);
        assert!(msgs[3].contains("not UTF-8 text"), "{}", msgs[3]);
        assert!(msgs[4].contains("looks binary (control character U+001B on line 12)"), "{}", msgs[4]);
        assert!(msgs[5].contains("larger than 4 MiB"), "{}", msgs[5]);
    }

    #[test]
    fn a_utf8_bom_is_fine() {
        assert_eq!(parse_str(&format!("\u{FEFF}{GOOD}"), "f").unwrap().len(), 1);
    }

    #[test]
    fn a_directory_loads_in_name_order_and_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (file, name) in [("b.yaml", "bee"), ("a.yml", "ay"), ("c.json", "see")] {
            let text = if file.ends_with(".json") {
                let r = parse_str(&doc(name), "x").unwrap().remove(0).document.request().unwrap().clone();
                serde_json::to_string(&r).unwrap()
            } else {
                doc(name)
            };
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").unwrap();
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let d = dir.path().display().to_string();
        let docs = load_paths(std::slice::from_ref(&d)).unwrap();
        let names: Vec<_> = docs.iter().map(|d| d.request().unwrap().metadata.name.as_str()).collect();
        assert_eq!(names, ["ay", "bee", "see"]);
        assert!(docs[0].source.ends_with("a.yml"));

        // The same names again from another path: duplicates, so nothing loads.
        let extra = dir.path().join("b.yaml").display().to_string();
        let err = load_paths(&[d.clone(), extra]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].message.contains("more than once"));

        // One bad file in the directory: the good ones are not returned either.
        std::fs::write(dir.path().join("d.yaml"), doc("dee").replace("maxRows: 1000", "maxRows: -1")).unwrap();
        let err = load_paths(&[d]).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].source.ends_with("d.yaml"));
    }

    #[test]
    fn missing_paths_and_empty_directories_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml").display().to_string();
        let empty = dir.path().display().to_string();
        let err = load_paths(&[missing.clone(), empty]).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        assert_eq!(err.problems[0].to_string(), format!("{missing}: no such file or directory"));
        assert!(err.problems[1].message.contains("no .yaml, .yml or .json files"));
    }

    #[test]
    fn problems_display_one_per_line() {
        let text = format!("{}---\n{}", doc("a").replace("maxRows: 1000", "maxRows: 0"), doc("Bad"));
        let s = parse_str(&text, "q.yaml").unwrap_err().to_string();
        let lines: Vec<_> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(lines[0].starts_with("q.yaml: document 1: spec.limits.maxRows (line 11, column 21): "), "{s}");
        assert!(lines[1].starts_with("q.yaml: document 2: metadata.name (line 16, column 9): "), "{s}");
    }

    #[test]
    fn fixture_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/specs");
        let docs = load_paths(&[format!("{dir}/good.yaml")]).unwrap();
        let keys: Vec<String> = docs.iter().map(|d| d.request().unwrap().key().to_string()).collect();
        assert_eq!(keys, ["default/top-customers-2024", "analytics/orders-per-day"]);
        let err = load_paths(&[format!("{dir}/bad.yaml")]).unwrap_err();
        let got: Vec<_> = err.problems.iter().map(|p| (p.index, p.path.as_deref().unwrap_or(""), p.line)).collect();
        assert_eq!(
            got,
            [
                (Some(1), "metadata.name", Some(13)),
                (Some(1), "spec", Some(14)),
                (Some(1), "spec.limits.maxRows", Some(19))
            ],
            "{err}"
        );
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("spec.limits.maxRows"), Some("spec.limits"));
        assert_eq!(parent_path(r#"metadata.labels["a.b/c[1]"]"#), Some("metadata.labels"));
        assert_eq!(parent_path("spec.catalog.tables[3]"), Some("spec.catalog.tables"));
        assert_eq!(parent_path("spec"), Some(""));
        assert_eq!(parent_path(""), None);
    }

    const MODEL: &str = "\
apiVersion: sqlctl.dev/v1alpha1
kind: SemanticModel
metadata: {name: tpch}
spec:
  database: tpch
  tables:
    - name: lineitem
      columns: [{name: l_shipmode, sampleValues: [AIR, MAIL]}]
  metrics:
    - {name: revenue, expression: 'sum(l_extendedprice * (1 - l_discount))'}
";

    const VERIFIED: &str = "\
apiVersion: sqlctl.dev/v1alpha1
kind: VerifiedQuery
metadata: {name: top-customers}
spec:
  question: Which 10 customers have the highest balance?
  database: tpch
  sql: select c_name from customer order by c_acctbal desc limit :n
  parameters: [{name: n, type: number, example: '10'}]
";

    #[test]
    fn one_source_mixes_kinds_and_a_name_may_repeat_across_kinds() {
        let text =
            format!("{}---\n{MODEL}---\n{VERIFIED}---\n{}", doc("tpch"), MODEL.replace("name: tpch}", "name: other}"));
        let docs = parse_str(&text, "f.yaml").unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| (d.document.kind(), d.document.metadata().name.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ObjectKind::QueryRequest, "tpch"),
                (ObjectKind::SemanticModel, "tpch"),
                (ObjectKind::VerifiedQuery, "top-customers"),
                (ObjectKind::SemanticModel, "other"),
            ]
        );
        // The same kind and name twice is refused, naming the kind.
        let p = one_problem(&format!("{MODEL}---\n{MODEL}"));
        assert!(p.message.contains("semanticmodel default/tpch is defined more than once"), "{p}");
    }

    #[test]
    fn an_unknown_kind_names_the_document_and_line() {
        let text = format!("{MODEL}---\n{}", MODEL.replace("kind: SemanticModel", "kind: SemanticModels"));
        let p = one_problem(&text);
        assert_eq!((p.index, p.path.as_deref(), p.line, p.column), (Some(1), Some("kind"), Some(13), Some(7)));
        assert!(
            p.to_string().starts_with("f.yaml: document 2: kind (line 13, column 7): unknown kind \"SemanticModels\""),
            "{p}"
        );
        assert!(p.message.contains("QueryRequest, SemanticModel, VerifiedQuery"), "{p}");
    }

    #[test]
    fn new_kinds_are_strict_and_validated_with_locations() {
        let p = one_problem(&MODEL.replace("  database: tpch", "  database: tpch\n  bogus: 1"));
        assert_eq!((p.path.as_deref(), p.line), (Some("spec.bogus"), Some(6)));
        let p = one_problem(&VERIFIED.replace("example: '10'", "example: ten"));
        assert_eq!((p.path.as_deref(), p.line), (Some("spec.parameters[0].example"), Some(8)));
        // The caller's extra check (the guard's) is located the same way.
        let extra = |_: &Document| vec![FieldError::new("spec.metrics[0].expression", "not an SQL expression")];
        let e = parse_str_with(MODEL, "m.yaml", &extra).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert_eq!((e.problems[0].line, e.problems[0].column), (Some(10), Some(35)), "{e}");
        // A document of any kind round-trips through YAML.
        for text in [MODEL, VERIFIED] {
            let d = parse_str(text, "x").unwrap().remove(0).document;
            let Document::Object(o) = &d else { panic!() };
            let yaml = match o {
                Object::SemanticModel(m) => to_yaml(m),
                Object::VerifiedQuery(v) => to_yaml(v),
            };
            assert_eq!(parse_str(&yaml, "y").unwrap().remove(0).document, d, "{yaml}");
        }
    }

    #[test]
    fn hostile_yaml_of_the_new_kinds_is_refused_quickly() {
        // An alias bomb where a model takes lists of strings (sample values).
        let mut bomb = String::from(
            "apiVersion: sqlctl.dev/v1alpha1\nkind: SemanticModel\nmetadata: {name: x}\nspec:\n  database: d\n  tables:\n    - name: t\n      columns:\n        - name: c\n          sampleValues: &a0 [v,v,v,v,v,v,v,v,v,v]\n",
        );
        for i in 1..12 {
            bomb.push_str(&format!("        - {{name: c{i}, sampleValues: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]}}\n", p = i - 1));
        }
        assert!(!refused_quickly(&bomb).is_empty());
        // Deep nesting under a verified query's parameters.
        let deep = format!(
            "apiVersion: sqlctl.dev/v1alpha1\nkind: VerifiedQuery\nmetadata: {{name: x}}\nspec:\n  parameters: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let p = refused_quickly(&deep);
        assert!(p[0].message.contains("nested"), "{p:?}");
    }
}
