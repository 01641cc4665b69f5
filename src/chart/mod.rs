//! SVG charts of query results, drawn in Rust with no browser, Python or plotting crate.
//!
//! # Where a chart comes from
//!
//! After a query succeeds, the controller reads the full CSV result back from the result store
//! ([`ResultStore::read`], at most [`MAX_INPUT_BYTES`]), draws one chart from it on a
//! blocking thread, and stores the SVG next to the result through [`ResultStore::put_next_to`]
//! (`<result_key>.svg` in the results directory or in S3; next to Athena's CSV for Athena). Its
//! location is recorded in `status.execution.chartLocation`. Working from the CSV works the same
//! for every engine; redrawing on a replayed reconcile writes the same bytes to the same place.
//! A chart that cannot be drawn or stored never fails the request: see [`produce`].
//!
//! # What the columns are
//!
//! The roles come from the approved SQL ([`roles`]): group keys, non-aggregated select items and
//! `EXTRACT`/`date_trunc` of a time are **dimensions**, aggregates and arithmetic over them are
//! **measures**; in a query without aggregates a number that is not a key or a period is the
//! row's value (a measure). The types come from the engine (DataFusion's Arrow schema, Athena's
//! `ResultSetMetadata`; [`columns`]), checked against the CSV text: a `varchar` of digits stays
//! text. Both are recorded in `status.execution.columns`. When the SQL's shape cannot be read,
//! the *text rules* apply — a column whose cells all parse as numbers is numeric, one whose cells
//! are all dates or timestamps (`2024-01-31`, `2024-01-31 12:00:00[.fff]`, RFC 3339) temporal; a
//! number is a measure unless its name says key (`id`, `*_id`, `*key`, `*code`) or period (`year`,
//! `yr`, `month`, …) — and the `Charted` condition says so.
//!
//! # Which chart (`spec.chart.type: auto`, no columns named)
//!
//! A chart never computes what the query did not: no row is added to another, and every mark is
//! one cell of the result (or the stated "other" sum of bars beyond [`MAX_BARS`]). Dimensions
//! with one value (or NULL throughout) are fixed and named in the subtitle (`r_name = ASIA`);
//! of the ones that vary:
//!
//! * one row → no chart: the one-line answer ([`answer`]) says it;
//! * no dimension, two or more measures → **scatter** of the first against the others;
//! * one dimension whose values are unique per row: a date/timestamp/`date_trunc` → **line** over
//!   a time axis; an `EXTRACT` period → **line** over ordered period labels; a category or a
//!   numeric code with at most [`AUTO_BAR_MAX_CATEGORIES`] values → **bars** (one group per
//!   measure). Two dimensions that both identify the rows (a key and its name) count as one, the
//!   other named as following it;
//! * two dimensions, one measure, unique per pair → one series per value of the smaller
//!   dimension (at most [`MAX_SERIES`]), a time or period being the axis: **lines**, or grouped
//!   **bars** over a category;
//! * otherwise no chart, with the reason in the `Charted` condition (`NoFittingChart`): rows that
//!   repeat the only dimension, more than two varying dimensions, two dimensions with many
//!   values, a measure with NaN or infinite values or NULL in every row, too many categories.
//!
//! On a time axis the step is the `date_trunc` unit (or, for dates alone, years, months or days
//! as the values fall); a period missing between two present ones breaks the line: a gap, not a
//! straight line across it.
//!
//! `spec.chart` can force `bar`, `line` or `scatter`, name the `x` and `y` columns, or turn
//! charts off with `none`. A forced bar chart whose rows repeat a category adds them up and says
//! "Sum of …" in its title; dimensions it does not show are named in the subtitle.
//!
//! # Large results
//!
//! Bars keep `MAX_BARS - 1` categories and sum the rest as "other": the first ones when the
//! result is ordered by a measure (`ORDER BY total DESC`), else the largest. Auto-chosen series
//! too small to see next to the others (under 1/20 of the largest) are left out, and the
//! subtitle says so. Lines keep the first, last, smallest and largest point per pixel column (M4
//! downsampling, which draws the same picture as every point); scatters keep one point per 2×2
//! pixels. A 10,000-row result draws in milliseconds (`cargo bench --bench chart`).
//!
//! Every text in the SVG (title, labels, legend) is XML-escaped and stripped of characters XML
//! forbids, so a hostile category such as `</svg><script>` stays text. The SVG carries a
//! `<title>` and a `<desc>` naming its kind, axis and every series, for screen readers.

pub mod columns;
mod draw;
pub mod format;
mod plan;
pub mod png;
pub mod roles;
mod svg;

use std::collections::HashSet;

use crate::engine::QueryOutcome;
use crate::results::{Artifact, ResultStore};
use crate::spec::{
    Answer, ChartSpec, ChartType, ColumnRole, QueryRequest, QueryRequestStatus, ResultColumn, ValueKind,
};
pub use columns::{Analysis, RoleSource, analyse, answer};
use columns::{looks_like_identifier, looks_like_period};
use draw::*;
use plan::*;
use roles::TimeUse;
use svg::*;

/// Width and height of every chart (SVG user units, pixels at 100%).
pub const WIDTH: f64 = 800.0;
pub const HEIGHT: f64 = 450.0;
/// Results larger than this are not charted (the CSV is read into memory to draw it).
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Most series (lines, bar groups, point colours) in one chart.
pub const MAX_SERIES: usize = 8;
/// Most bars per series; beyond it the smallest categories are summed as "other".
pub const MAX_BARS: usize = 20;
/// `auto` draws bars only for text columns with at most this many distinct values.
pub const AUTO_BAR_MAX_CATEGORIES: usize = 100;
/// Labels longer than this are cut with an ellipsis.
const MAX_LABEL_CHARS: usize = 28;
/// Titles longer than this are cut with an ellipsis.
const MAX_TITLE_CHARS: usize = 90;
/// Approximate width of one character of 12px text, for layout decisions.
const CHAR_W: f64 = 6.6;
/// Series colours (Tableau 10), in order.
const PALETTE: [&str; MAX_SERIES] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"];
/// Condition recording what happened to the chart.
pub const CONDITION: &str = "Charted";

/// The kind of chart drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartKind {
    Bar,
    Line,
    Scatter,
}

impl ChartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChartKind::Bar => "bar",
            ChartKind::Line => "line",
            ChartKind::Scatter => "scatter",
        }
    }
}

/// A drawn chart.
#[derive(Clone, Debug)]
pub struct Chart {
    pub kind: ChartKind,
    pub svg: String,
    /// Marks drawn (bars, line vertices, points) after downsampling.
    pub marks: usize,
    /// The value of every drawn mark, and whether it is the stated "other" sum: what the tests
    /// hold against the result's cells (a chart never computes what the query did not).
    pub drawn: Vec<(f64, bool)>,
}

/// Why no chart was drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoChart {
    /// Nothing asked for one, or the result has no shape `auto` charts (not a problem).
    NotApplicable(String),
    /// The result's shape has no chart that draws only what it says (the reason is worth a
    /// condition: two dimensions with too many values, repeated x values, …).
    Declined(String),
    /// `spec.chart` asked for something the result cannot show, or the result is unreadable.
    Unfit(String),
}

impl std::fmt::Display for NoChart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoChart::NotApplicable(m) | NoChart::Declined(m) | NoChart::Unfit(m) => f.write_str(m),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The controller's entry point

/// What happened to the chart of a finished request.
#[derive(Clone, Debug, PartialEq)]
pub enum Produced {
    /// Drawn and stored at `location`.
    Stored { location: String, kind: ChartKind, marks: usize },
    /// Not drawn, and nobody should be told (type none, or no rows).
    NotApplicable(String),
    /// One row: the answer line says it, not a chart.
    Answered,
    /// `auto` found no chart that draws only what the result says; the reason is recorded.
    Declined(String),
    /// Not drawn or not stored, though one was asked for or could have been: worth a condition.
    Failed(String),
}

impl Produced {
    /// The stored chart's location.
    pub fn location(&self) -> Option<&str> {
        match self {
            Produced::Stored { location, .. } => Some(location),
            _ => None,
        }
    }

    /// Records the outcome as the `Charted` condition (see [`Charted::record`]).
    pub fn record(&self, status: &mut QueryRequestStatus) {
        Charted { produced: self.clone(), columns: Vec::new(), answer: None, roles_note: None }.record(status)
    }
}

/// The chart's outcome with what was learnt about the result on the way: the typed columns
/// with their roles and the one-line answer, recorded in `status.execution`.
#[derive(Clone, Debug, PartialEq)]
pub struct Charted {
    pub produced: Produced,
    pub columns: Vec<ResultColumn>,
    pub answer: Option<Answer>,
    /// Set when the roles were not read from the query (the text rules applied).
    pub roles_note: Option<String>,
}

impl Charted {
    /// The stored chart's location.
    pub fn location(&self) -> Option<&str> {
        self.produced.location()
    }

    /// Records the outcome as the `Charted` condition; when no chart applies, removes one left
    /// by an earlier generation.
    pub fn record(&self, status: &mut QueryRequestStatus) {
        let note = self.roles_note.as_deref().map(|n| format!("; {n}")).unwrap_or_default();
        match &self.produced {
            Produced::Stored { kind, marks, .. } => status.set_condition(
                CONDITION,
                "True",
                "Drawn",
                format!("{} chart, {marks} marks{note}", kind.as_str()),
            ),
            Produced::Answered => {
                status.set_condition(CONDITION, "False", "Answered", "one row: shown as the answer line, not a chart")
            }
            Produced::Declined(reason) => {
                status.set_condition(CONDITION, "False", "NoFittingChart", format!("{reason}{note}"))
            }
            Produced::Failed(reason) => status.set_condition(CONDITION, "False", "NotDrawn", format!("{reason}{note}")),
            Produced::NotApplicable(_) => status.conditions.retain(|c| c.type_ != CONDITION),
        }
    }
}

/// Draws the chart of `req`'s finished result `out` and stores it next to the result, with
/// roles read from the approved `sql`. Never fails: every problem becomes
/// [`Produced::Failed`] (and a log line), because a chart is a convenience and the result
/// itself is already safe.
pub async fn produce(results: &dyn ResultStore, req: &QueryRequest, sql: Option<&str>, out: &QueryOutcome) -> Charted {
    let analysis = {
        let (sql, engine, header) = (sql.map(str::to_string), out.columns.clone(), out.preview.columns.clone());
        tokio::task::spawn_blocking(move || analyse(sql.as_deref(), &engine, &header)).await.unwrap_or_else(|e| {
            Analysis {
                columns: out.columns.clone(),
                time: vec![None; out.columns.len()],
                source: RoleSource::Text(format!("reading the SQL's shape failed: {e}")),
            }
        })
    };
    let answer = answer(&analysis.columns, &out.preview);
    let produced = produce_chart(results, req, &out.output_location, &analysis, answer.is_some()).await;
    Charted { produced, columns: analysis.columns.clone(), answer, roles_note: analysis.note() }
}

async fn produce_chart(
    results: &dyn ResultStore,
    req: &QueryRequest,
    output_location: &str,
    analysis: &Analysis,
    answered: bool,
) -> Produced {
    let spec = req.spec.chart.clone().unwrap_or_default();
    let key = req.key();
    if spec.type_ == ChartType::None {
        return Produced::NotApplicable("spec.chart.type is none".into());
    }
    if answered && spec.type_ == ChartType::Auto {
        return Produced::Answered;
    }
    let csv = match results.read(output_location, Some(MAX_INPUT_BYTES)).await {
        Ok(Some(csv)) => csv,
        Ok(None) => {
            let why = format!(
                "the result is larger than {} MiB, the most a chart is drawn from",
                MAX_INPUT_BYTES / (1024 * 1024)
            );
            tracing::info!(request = %key, location = output_location, "no chart: {why}");
            return Produced::Failed(why);
        }
        Err(e) => {
            tracing::warn!(request = %key, location = output_location, error = %e, "no chart: reading the result failed");
            return Produced::Failed(format!("reading the result: {e}"));
        }
    };
    let title = req.spec.question.clone().unwrap_or_else(|| key.to_string());
    let started = std::time::Instant::now();
    let analysis = analysis.clone();
    let drawn = tokio::task::spawn_blocking(move || draw_typed(&csv, &spec, &title, Some(&analysis))).await;
    let chart = match drawn {
        Ok(Ok(chart)) => chart,
        Ok(Err(NoChart::NotApplicable(why))) => {
            tracing::debug!(request = %key, "no chart: {why}");
            return Produced::NotApplicable(why);
        }
        Ok(Err(NoChart::Declined(why))) => {
            tracing::info!(request = %key, "no chart: {why}");
            return Produced::Declined(why);
        }
        Ok(Err(NoChart::Unfit(why))) => {
            tracing::info!(request = %key, "no chart: {why}");
            return Produced::Failed(why);
        }
        Err(e) => {
            tracing::warn!(request = %key, error = %e, "no chart: drawing it panicked");
            return Produced::Failed(format!("drawing the chart failed: {e}"));
        }
    };
    let draw_ms = started.elapsed().as_millis() as u64;
    let (kind, marks) = (chart.kind, chart.marks);
    if png::AVAILABLE {
        // The PNG first, so a stored SVG means its PNG is there too (when the build has one).
        let svg = chart.svg.clone().into_bytes();
        match tokio::task::spawn_blocking(move || png::render(&svg)).await {
            Ok(Ok(bytes)) => {
                if let Err(e) = results.put_next_to(output_location, Artifact::ChartPng, bytes).await {
                    tracing::warn!(request = %key, error = %e, "PNG chart not stored");
                }
            }
            Ok(Err(why)) => tracing::warn!(request = %key, "no PNG chart: {why}"),
            Err(e) => tracing::warn!(request = %key, error = %e, "no PNG chart: rendering panicked"),
        }
    }
    match results.put_next_to(output_location, Artifact::Chart, chart.svg.into_bytes()).await {
        Ok(location) => {
            tracing::info!(request = %key, kind = kind.as_str(), marks, draw_ms, location = %location, "chart stored");
            Produced::Stored { location, kind, marks }
        }
        Err(e) => {
            tracing::warn!(request = %key, error = %e, "chart drawn but not stored");
            Produced::Failed(format!("storing the chart: {e}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the CSV: column profiles

/// What a column holds, inferred from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Number,
    Time,
    Text,
    /// No non-empty cell at all.
    Empty,
}

/// One column's type, role and shape (one pass over the CSV).
#[derive(Clone, Debug)]
struct Profile {
    name: String,
    kind: ColumnKind,
    /// What the query says the column is (or the text rules, without roles).
    role: ColumnRole,
    /// How the SQL made it from a time (`date_trunc`, `EXTRACT`).
    time: Option<TimeUse>,
    /// Distinct non-empty values, counted up to `AUTO_BAR_MAX_CATEGORIES + 1`.
    distinct: usize,
    /// Non-empty cells.
    non_empty: usize,
    /// The first non-empty value (what a fixed dimension is fixed at).
    first: Option<String>,
    /// Cells that are `NaN` or infinite (a numeric type's text that is not a finite number).
    non_finite: usize,
    /// Numeric and strictly increasing in row order (an ordered x axis).
    increasing: bool,
    /// Temporal with dates only (no time of day): ticks are at least a day apart.
    dates_only: bool,
}

struct Table<'a> {
    csv: &'a [u8],
    columns: Vec<Profile>,
    rows: usize,
    /// Roles came from the query (false: the text rules).
    typed: bool,
}

fn reader(csv: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(true).from_reader(csv)
}

/// `NaN`, `inf`, `-Infinity`, …: what engines print for values that are not finite numbers.
fn is_non_finite(cell: &str) -> bool {
    let c = cell.trim_start_matches(['+', '-']).to_ascii_lowercase();
    matches!(c.as_str(), "nan" | "inf" | "infinity")
}

impl<'a> Table<'a> {
    fn profile(csv: &'a [u8], analysis: Option<&Analysis>) -> Result<Table<'a>, NoChart> {
        let unreadable = |e: csv::Error| NoChart::Unfit(format!("the result is not readable CSV: {e}"));
        let mut rdr = reader(csv);
        let names: Vec<String> = rdr.headers().map_err(unreadable)?.iter().map(str::to_string).collect();
        let n = names.len();
        let mut numeric = vec![true; n];
        let mut time = vec![true; n];
        let mut non_empty = vec![0usize; n];
        let mut non_finite = vec![0usize; n];
        let mut increasing = vec![true; n];
        let mut dates_only = vec![true; n];
        let mut last = vec![f64::NEG_INFINITY; n];
        let mut distinct: Vec<HashSet<String>> = vec![HashSet::new(); n];
        let mut first: Vec<Option<String>> = vec![None; n];
        let mut rows = 0usize;
        for rec in rdr.records() {
            let rec = rec.map_err(unreadable)?;
            rows += 1;
            for (i, cell) in rec.iter().enumerate().take(n) {
                let cell = cell.trim();
                if cell.is_empty() {
                    continue;
                }
                non_empty[i] += 1;
                if first[i].is_none() {
                    first[i] = Some(cell.to_string());
                }
                if numeric[i] {
                    match parse_number(cell) {
                        Some(v) => {
                            increasing[i] &= v > last[i];
                            last[i] = v;
                        }
                        None if is_non_finite(cell) => non_finite[i] += 1,
                        None => numeric[i] = false,
                    }
                }
                if time[i] && parse_time(cell).is_none() {
                    time[i] = false;
                }
                dates_only[i] &= cell.len() == 10;
                if distinct[i].len() <= AUTO_BAR_MAX_CATEGORIES && !distinct[i].contains(cell) {
                    distinct[i].insert(cell.to_string());
                }
            }
        }
        // Types and roles from the engine and the query, when they line up with the header.
        let typed =
            analysis.filter(|a| a.columns.len() == n && a.columns.iter().zip(&names).all(|(c, h)| &c.name == h));
        let columns = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let text_kind = if non_empty[i] == 0 {
                    ColumnKind::Empty
                } else if numeric[i] && non_finite[i] < non_empty[i] {
                    ColumnKind::Number
                } else if time[i] {
                    ColumnKind::Time
                } else {
                    ColumnKind::Text
                };
                let column = typed.map(|a| &a.columns[i]);
                let time_use = typed.and_then(|a| a.time[i].clone());
                let value = column.filter(|c| !c.type_.is_empty()).map(ResultColumn::kind);
                let kind = match (text_kind, value) {
                    (ColumnKind::Empty, _) | (_, None | Some(ValueKind::Other)) => text_kind,
                    // The engine's type decides, where the text agrees it can be read so: a
                    // varchar of digits (a zip code) stays text.
                    (ColumnKind::Number, Some(v)) if v.is_numeric() => ColumnKind::Number,
                    (ColumnKind::Time, Some(v)) if v.is_temporal() => ColumnKind::Time,
                    // A measure's cells that all read as numbers are numbers whatever the
                    // engine called them (an emulator that says varchar for everything).
                    (ColumnKind::Number, _) if column.and_then(|c| c.role) == Some(ColumnRole::Measure) => {
                        ColumnKind::Number
                    }
                    _ => ColumnKind::Text,
                };
                let role = match column.and_then(|c| c.role) {
                    Some(r) => r,
                    // The text rules: a number that is not a key or a period is a measure.
                    None if kind == ColumnKind::Number
                        && time_use.is_none()
                        && !looks_like_identifier(&name)
                        && !looks_like_period(&name) =>
                    {
                        ColumnRole::Measure
                    }
                    None => ColumnRole::Dimension,
                };
                Profile {
                    kind,
                    role,
                    time: time_use,
                    distinct: distinct[i].len(),
                    non_empty: non_empty[i],
                    first: first[i].take(),
                    non_finite: non_finite[i],
                    increasing: numeric[i] && increasing[i] && non_empty[i] > 1,
                    dates_only: time[i] && dates_only[i],
                    name,
                }
            })
            .collect();
        let typed = typed.is_some_and(|a| a.source == RoleSource::Query);
        Ok(Table { csv, columns, rows, typed })
    }

    fn find(&self, name: &str, field: &str) -> Result<usize, NoChart> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .or_else(|| self.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
                NoChart::Unfit(format!("{field} names no result column {name:?} (columns: {})", names.join(", ")))
            })
    }

    fn kind(&self, i: usize) -> ColumnKind {
        self.columns[i].kind
    }

    /// Distinct values of column `i`, NULL counted as one (capped like `distinct`).
    fn values(&self, i: usize) -> usize {
        let c = &self.columns[i];
        c.distinct + usize::from(c.non_empty < self.rows)
    }

    fn first(&self, kind: ColumnKind, except: &[usize]) -> Option<usize> {
        (0..self.columns.len()).find(|i| self.kind(*i) == kind && !except.contains(i))
    }
}

/// A finite number written plainly (`-12`, `3.5`, `1e6`); not `NaN`, `inf` or `0x10`.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty()
        || !s.bytes().any(|b| b.is_ascii_digit())
        || !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Seconds since the epoch (UTC) of a date or timestamp as engines print them: `2024-01-31`,
/// `2024-01-31 12:00[:00[.123456]]` or with `T`, followed by nothing (UTC), `Z`, ` UTC`
/// (Athena) or an offset (`+01:00`, `+0100`, `+01`). Parsed by hand: every cell of a candidate
/// column goes through here twice, and a general format parser is several times slower.
pub fn parse_time(s: &str) -> Option<f64> {
    let b = s.trim().as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) as f64 * DAY;
    let mut rest = &b[10..];
    if rest.is_empty() {
        return Some(secs);
    }
    if !matches!(rest[0], b' ' | b'T' | b't') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (hour, minute) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
    rest = &rest[6..];
    let mut second = 0.0;
    if rest.first() == Some(&b':') {
        second = digits(rest.get(1..3)?)? as f64;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            second += digits(&rest[1..1 + n])? as f64 / 10f64.powi(n as i32);
            rest = &rest[1 + n..];
        }
    }
    if hour > 23 || minute > 59 || second >= 61.0 {
        return None;
    }
    secs += (hour * 3600 + minute * 60) as f64 + second;
    let offset = match rest {
        b"" | b"Z" | b"z" | b" UTC" => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (h, m) = match tz {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let o = (h * 3600 + m * 60) as i64;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(secs - offset as f64)
}

/// ASCII digits as a number (at most 9 of them).
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Calls `f` with every record of the result (the second pass, after profiling).
fn for_each_row(t: &Table, mut f: impl FnMut(&csv::StringRecord)) -> Result<(), NoChart> {
    let mut rdr = reader(t.csv);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| NoChart::Unfit(format!("the result is not readable CSV: {e}")))?;
        f(&rec);
    }
    Ok(())
}

fn cell(rec: &csv::StringRecord, i: usize) -> &str {
    rec.get(i).map(str::trim).unwrap_or("")
}

fn names(t: &Table, cols: &[usize]) -> Vec<String> {
    cols.iter().map(|i| t.columns[*i].name.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Drawing

/// Draws the chart `spec` asks for from a CSV result with a header row, with column roles from
/// the text rules (no query at hand: benchmarks, tests).
pub fn draw(csv: &[u8], spec: &ChartSpec, title: &str) -> Result<Chart, NoChart> {
    draw_typed(csv, spec, title, None)
}

/// What every drawing function is given besides its columns.
struct Ctx<'a> {
    title: &'a str,
    /// `spec.chart.y` named the series.
    explicit: bool,
    /// Where the dimensions not on an axis or in the legend are (the subtitle says it).
    notes: Vec<String>,
}

/// The drawn SVG, its mark count and the value of every mark.
struct Out {
    svg: String,
    marks: usize,
    drawn: Vec<(f64, bool)>,
}

/// Draws the chart `spec` asks for from a CSV result with a header row, with the result's
/// types and roles from `analysis` (the text rules without it).
pub fn draw_typed(csv: &[u8], spec: &ChartSpec, title: &str, analysis: Option<&Analysis>) -> Result<Chart, NoChart> {
    if spec.type_ == ChartType::None {
        return Err(NoChart::NotApplicable("spec.chart.type is none".into()));
    }
    let table = Table::profile(csv, analysis)?;
    if table.rows == 0 {
        let why = "the result has no rows".to_string();
        return Err(if spec.type_ == ChartType::Auto { NoChart::NotApplicable(why) } else { NoChart::Unfit(why) });
    }
    let plan = choose(&table, spec)?;
    let kind = plan.kind();
    let auto = spec.type_ == ChartType::Auto && spec.x.is_none() && spec.y.is_empty();
    let notes = dimension_notes(&table, &plan, auto);
    let ctx = Ctx { title, explicit: !spec.y.is_empty(), notes };
    let out = match plan {
        Plan::Bar { x, ys } => draw_bars(&table, x, &ys, None, &ctx)?,
        Plan::SplitBar { x, y, split } => draw_bars(&table, x, &[y], Some(split), &ctx)?,
        Plan::Line { x, time, ys, split } => {
            draw_lines(&table, x, if time { Axis::Time } else { Axis::Number }, &ys, split, &ctx)?
        }
        Plan::Period { x, ys, split } => draw_lines(&table, x, Axis::Period, &ys, split, &ctx)?,
        Plan::Scatter { x, ys } => draw_scatter(&table, x, &ys, &ctx)?,
    };
    Ok(Chart { kind, svg: out.svg, marks: out.marks, drawn: out.drawn })
}

/// Says where each dimension that is neither on an axis nor in the legend is: fixed at one
/// value (`r_name = ASIA`), NULL throughout, following a shown one (`auto` only draws results
/// whose rows the shown dimensions tell apart), or not shown at all (a forced chart).
fn dimension_notes(t: &Table, plan: &Plan, auto: bool) -> Vec<String> {
    let shown = plan.shown();
    let x = shown[0];
    (0..t.columns.len())
        .filter(|i| t.columns[*i].role == ColumnRole::Dimension && !shown.contains(i))
        .map(|i| {
            let c = &t.columns[i];
            match (c.distinct, c.first.as_deref()) {
                (0, _) | (_, None) => format!("{} is NULL", c.name),
                (1, Some(v)) if c.non_empty == t.rows => format!("{} = {v}", c.name),
                (1, Some(v)) => format!("{} = {v} or NULL", c.name),
                _ if auto => format!("one {} per {}", c.name, t.columns[x].name),
                _ => format!("{} not shown", c.name),
            }
        })
        .collect()
}

/// What the x axis of a line chart holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    Time,
    Number,
    /// Ordered period numbers (`EXTRACT`): one slot per period, labelled with whole numbers.
    Period,
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    /// A structural check that an SVG is well-formed XML (balanced tags, quoted attributes, only
    /// known entities, no stray `<`), with `svg` as the single root. Returns the element names in
    /// document order.
    pub(crate) fn check_well_formed(svg: &str) -> Result<Vec<String>, String> {
        fn check_text(t: &str) -> Result<(), String> {
            if t.contains('<') || t.contains('>') {
                return Err(format!("unescaped markup in text {t:?}"));
            }
            let mut rest = t;
            while let Some(i) = rest.find('&') {
                let after = &rest[i + 1..];
                let end = after.find(';').ok_or_else(|| format!("unterminated entity in {t:?}"))?;
                let name = &after[..end];
                let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                    || name.strip_prefix('#').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(format!("unknown entity &{name};"));
                }
                rest = &after[end + 1..];
            }
            Ok(())
        }
        let mut stack: Vec<String> = Vec::new();
        let mut elements = Vec::new();
        let mut roots = 0;
        let mut rest = svg.trim();
        while !rest.is_empty() {
            let Some(lt) = rest.find('<') else {
                check_text(rest)?;
                break;
            };
            check_text(&rest[..lt])?;
            if lt > 0 && stack.is_empty() && !rest[..lt].trim().is_empty() {
                return Err("text outside the root element".into());
            }
            rest = &rest[lt..];
            let gt = rest.find('>').ok_or("unterminated tag")?;
            let tag = &rest[1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or_else(|| format!("closing </{name}> with nothing open"))?;
                if open != name.trim() {
                    return Err(format!("</{name}> closes <{open}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                return Err(format!("bad element name {name:?}"));
            }
            // Attributes: name="value" pairs.
            let mut attrs = body[name_end..].trim();
            while !attrs.is_empty() {
                let eq = attrs.find('=').ok_or_else(|| format!("attribute without value in <{name}>"))?;
                let aname = attrs[..eq].trim();
                if aname.is_empty() || !aname.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                    return Err(format!("bad attribute name {aname:?} in <{name}>"));
                }
                let v = attrs[eq + 1..].trim_start();
                let q = v.chars().next().filter(|c| *c == '"' || *c == '\'').ok_or("unquoted attribute")?;
                let close = v[1..].find(q).ok_or("unterminated attribute")?;
                let value = &v[1..1 + close];
                if value.contains('<') {
                    return Err(format!("'<' in attribute {aname}"));
                }
                check_text(&value.replace('>', ""))?;
                attrs = v[close + 2..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            elements.push(name.to_string());
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        if let Some(open) = stack.pop() {
            return Err(format!("<{open}> is never closed"));
        }
        if roots != 1 || elements.first().map(String::as_str) != Some("svg") {
            return Err(format!("expected one <svg> root, found {roots} roots starting with {:?}", elements.first()));
        }
        Ok(elements)
    }

    fn auto() -> ChartSpec {
        ChartSpec::default()
    }

    fn spec(type_: ChartType, x: Option<&str>, y: &[&str]) -> ChartSpec {
        ChartSpec { type_, x: x.map(str::to_string), y: y.iter().map(|s| s.to_string()).collect() }
    }

    fn kind_of(csv: &str, spec: &ChartSpec) -> Result<ChartKind, NoChart> {
        let chart = draw(csv.as_bytes(), spec, "t")?;
        check_well_formed(&chart.svg).unwrap_or_else(|e| panic!("{e}\n{}", chart.svg));
        Ok(chart.kind)
    }

    #[test]
    fn the_chart_type_follows_the_result_shape() {
        // date + number → line
        assert_eq!(kind_of("day,total\n2024-01-01,3\n2024-01-02,5\n", &auto()), Ok(ChartKind::Line));
        // timestamp (DataFusion and Athena forms) + number → line
        let ts = "at,n\n2024-01-01T10:00:00,1\n2024-01-01T11:00:00,2\n";
        assert_eq!(kind_of(ts, &auto()), Ok(ChartKind::Line));
        let athena = "at,n\n\"2024-01-01 10:00:00.000 UTC\",\"1\"\n\"2024-01-01 11:00:00.000 UTC\",\"2\"\n";
        assert_eq!(kind_of(athena, &auto()), Ok(ChartKind::Line));
        // category + number → bar
        assert_eq!(kind_of("n_name,balance\nFRANCE,10.5\nBRAZIL,-3\n", &auto()), Ok(ChartKind::Bar));
        // two unordered numbers → scatter; an increasing first column → line
        assert_eq!(kind_of("a,b\n3,1\n1,2\n2,5\n", &auto()), Ok(ChartKind::Scatter));
        assert_eq!(kind_of("year,total\n1995,1\n1996,3\n1997,2\n", &auto()), Ok(ChartKind::Line));
        // a single number, only text, no rows → nothing (and that is not a problem)
        for csv in ["count\n42\n", "a,b\nx,y\n", "day,total\n"] {
            assert!(matches!(draw(csv.as_bytes(), &auto(), "t"), Err(NoChart::NotApplicable(_))), "{csv}");
        }
        // High-cardinality text is not a bar chart under auto, but can be forced.
        let mut many = String::from("name,total\n");
        for i in 0..=AUTO_BAR_MAX_CATEGORIES {
            many.push_str(&format!("customer-{i},{i}\n"));
        }
        // (Issue 16: declined with the reason, which the condition records.)
        match draw(many.as_bytes(), &auto(), "t") {
            Err(NoChart::Declined(why)) => assert!(why.contains("more than 100 values"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(kind_of(&many, &spec(ChartType::Bar, None, &[])), Ok(ChartKind::Bar));
    }

    #[test]
    fn series_too_small_to_see_are_left_out_unless_named() {
        let csv = "n_name,customers,balance\nA,60,250000\nB,70,310000\n";
        let chart = draw(csv.as_bytes(), &auto(), "t").unwrap();
        assert_eq!(chart.marks, 2);
        assert!(chart.svg.contains("customers left out"), "{}", chart.svg);
        let both = draw(csv.as_bytes(), &spec(ChartType::Bar, None, &["customers", "balance"]), "t").unwrap();
        assert_eq!(both.marks, 4);
        assert_eq!(visible(&[1.0, 0.05, 0.049, 0.0]), [0, 1]);
        assert_eq!(visible(&[0.0, 0.0]), [0, 1]);
        assert!(monotonic([3.0, 2.0, 2.0].into_iter()) && !monotonic([1.0, 3.0, 2.0].into_iter()));
    }

    #[test]
    fn keys_are_not_plotted_as_measures() {
        let t = Table::profile(b"n_nationkey,n_name,customers\n1,A,5\n2,B,7\n", None).unwrap();
        assert_eq!(choose(&t, &auto()), Ok(Plan::Bar { x: 1, ys: vec![2] }));
        // Only keys: issue 16 makes integer codes dimensions, never measures, so auto draws
        // nothing (it used to draw the keys as bars); a forced bar chart still uses them.
        let t = Table::profile(b"n_name,n_regionkey\nA,5\nB,7\n", None).unwrap();
        assert!(matches!(choose(&t, &auto()), Err(NoChart::NotApplicable(_))));
        assert_eq!(choose(&t, &spec(ChartType::Bar, None, &[])), Ok(Plan::Bar { x: 0, ys: vec![1] }));
    }

    #[test]
    fn the_long_shape_splits_lines_by_category() {
        let csv = "day,region,total\n2024-01-01,EU,1\n2024-01-01,US,2\n2024-01-02,EU,3\n2024-01-02,US,4\n";
        let t = Table::profile(csv.as_bytes(), None).unwrap();
        assert_eq!(choose(&t, &auto()), Ok(Plan::Line { x: 0, time: true, ys: vec![2], split: Some(1) }));
        let chart = draw(csv.as_bytes(), &auto(), "t").unwrap();
        assert_eq!(chart.svg.matches("<polyline").count(), 2);
        assert!(chart.svg.contains(">EU</text>") && chart.svg.contains(">US</text>"), "legend");
    }

    #[test]
    fn spec_chart_picks_type_and_columns_or_says_why_not() {
        let csv = "d,cat,a,b\n2024-01-01,x,1,2\n2024-01-02,y,3,1\n";
        assert_eq!(kind_of(csv, &spec(ChartType::Bar, Some("cat"), &["b"])), Ok(ChartKind::Bar));
        assert_eq!(kind_of(csv, &spec(ChartType::Scatter, Some("a"), &["b"])), Ok(ChartKind::Scatter));
        assert_eq!(kind_of(csv, &spec(ChartType::Line, None, &["a", "b"])), Ok(ChartKind::Line));
        // Column names match case-insensitively when not exactly.
        assert_eq!(kind_of(csv, &spec(ChartType::Bar, Some("CAT"), &[])), Ok(ChartKind::Bar));
        let err = |s: ChartSpec| match draw(csv.as_bytes(), &s, "t") {
            Err(NoChart::Unfit(m)) => m,
            other => panic!("expected Unfit, got {other:?}"),
        };
        assert!(err(spec(ChartType::Auto, Some("nope"), &[])).contains("columns: d, cat, a, b"));
        assert!(err(spec(ChartType::Bar, None, &["cat"])).contains("not numeric"));
        assert!(err(spec(ChartType::Line, Some("cat"), &[])).contains("holds text"));
        assert!(err(spec(ChartType::Scatter, Some("d"), &[])).contains("not numeric"));
        assert!(matches!(draw(csv.as_bytes(), &spec(ChartType::None, None, &[]), "t"), Err(NoChart::NotApplicable(_))));
    }

    #[test]
    fn hostile_labels_stay_text() {
        let csv = "name,v\n\"</svg><script>alert(1)</script>\",1\n\"a & b \"\"q\"\" 'x'\",2\n\"bell\u{7}\",3\n";
        let chart = draw(csv.as_bytes(), &auto(), "<title>&\"").unwrap();
        let elements = check_well_formed(&chart.svg).unwrap_or_else(|e| panic!("{e}\n{}", chart.svg));
        assert!(!elements.iter().any(|e| e == "script"), "{elements:?}");
        assert!(chart.svg.contains("&lt;/svg&gt;&lt;script&gt;"));
        assert!(chart.svg.contains("a &amp; b &quot;q&quot; &apos;x&apos;"));
        assert!(!chart.svg.contains('\u{7}'));
        assert_eq!(escape("abcdefgh", 5), "abcd…");
        assert_eq!(escape("abcde", 5), "abcde");
        assert_eq!(escape("a\u{0}b\nc", 10), "ab c");
    }

    #[test]
    fn the_checker_rejects_broken_svg() {
        for bad in [
            "<svg><g></svg>",
            "<svg>a < b</svg>",
            "<svg x=1></svg>",
            "<svg>&bogus;</svg>",
            "<svg/><svg/>",
            "<g></g>",
            "<svg><text>x</g></svg>",
        ] {
            assert!(check_well_formed(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_well_formed(r#"<svg a="1"><g><text>&amp;&#38;</text></g><rect/></svg>"#).unwrap(),
            ["svg", "g", "text", "rect"]
        );
    }

    #[test]
    fn numeric_ticks_are_round_and_cover_the_range() {
        let t = nice_ticks(0.0, 97.0, 5);
        assert_eq!(t.values, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(t.labels, ["0", "20", "40", "60", "80", "100"]);
        let t = nice_ticks(-3.2, 4.1, 6);
        assert_eq!((t.lo, t.hi), (-4.0, 6.0));
        assert!(t.values.contains(&0.0));
        let t = nice_ticks(0.0, 0.35, 5);
        assert_eq!(t.labels, ["0", "0.1", "0.2", "0.3", "0.4"]);
        let t = nice_ticks(0.0, 2_400_000.0, 5);
        assert_eq!(t.labels, ["0", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"]);
        assert_eq!(nice_ticks(0.0, 1000.0, 5).labels.last().unwrap(), "1000");
        let t = nice_ticks(0.0, 45_000.0, 5);
        assert_eq!(t.labels.last().unwrap(), "50k");
        // Degenerate and non-finite ranges still give an axis.
        let t = nice_ticks(5.0, 5.0, 5);
        assert!(t.lo < 5.0 && t.hi > 5.0);
        assert!(nice_ticks(0.0, 0.0, 5).values.len() >= 2);
        assert!(nice_ticks(f64::NAN, 1.0, 5).values.len() >= 2);
        assert_eq!(value_text(1234567.5), "1,234,567.5");
        assert_eq!(value_text(-1000.0), "-1,000");
    }

    #[test]
    fn time_ticks_fall_on_calendar_boundaries() {
        let day = |s: &str| parse_time(s).unwrap();
        let t = time_ticks(day("2024-01-01"), day("2024-01-07"), 7, true);
        assert_eq!(t.labels.first().unwrap(), "2024-01-01");
        assert_eq!(t.labels.len(), 7);
        let t = time_ticks(day("1992-01-01"), day("1998-08-02"), 7, true);
        assert_eq!(t.labels, ["1992", "1993", "1994", "1995", "1996", "1997", "1998"]);
        let t = time_ticks(day("2024-01-15"), day("2024-07-15"), 7, true);
        assert_eq!(t.labels, ["2024-02", "2024-03", "2024-04", "2024-05", "2024-06", "2024-07"]);
        let t = time_ticks(day("2024-03-01 10:00:00"), day("2024-03-01 16:00:00"), 7, false);
        assert_eq!(t.labels.first().unwrap(), "10:00");
        // Dates alone never get ticks within a day.
        let t = time_ticks(day("2024-01-01"), day("2024-01-03"), 7, true);
        assert_eq!(t.labels, ["2024-01-01", "2024-01-02", "2024-01-03"]);
        assert_eq!(time_ticks(day("2024-01-01"), day("2024-01-03"), 7, false).labels[1], "01-01 12:00");
        // Weeks start on Mondays (2024-01-01 was one).
        let t = time_ticks(day("2023-12-28"), day("2024-02-20"), 9, true);
        assert_eq!(t.labels.first().unwrap(), "2024-01-01");
        assert_eq!(parse_time("2024-02-30"), None);
        assert_eq!(parse_time("2023-02-29"), None);
        assert_eq!(parse_time("2024-02-29"), Some(day("2024-02-28") + DAY));
        for bad in
            ["2024-01-01X", "2024-01-01 25:00", "2024-01-01 10:00:00+1", "2024-1-01", "abcd-ef-gh", "2024-01-01 10"]
        {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        // The same instants chrono computes, across eras and forms.
        for (text, rfc3339) in [
            ("1970-01-01", "1970-01-01T00:00:00Z"),
            ("1899-12-31 23:59:59", "1899-12-31T23:59:59Z"),
            ("2000-02-29T12:30", "2000-02-29T12:30:00Z"),
            ("2024-07-15 08:00:00.250 UTC", "2024-07-15T08:00:00.250Z"),
            ("2024-07-15T08:00:00-0530", "2024-07-15T13:30:00Z"),
            ("2024-07-15 08:00:00+02", "2024-07-15T06:00:00Z"),
        ] {
            let want = DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis() as f64 / 1000.0;
            assert_eq!(parse_time(text), Some(want), "{text}");
        }
        assert_eq!(parse_time("2024-01-01T00:00:00Z"), Some(day("2024-01-01")));
        assert_eq!(parse_time("2024-01-01 01:00:00+01:00"), Some(day("2024-01-01")));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        for s in ["NaN", "inf", "0x10", "1,000", "", "-"] {
            assert_eq!(parse_number(s), None, "{s}");
        }
    }

    #[test]
    fn downsampling_keeps_extremes_and_bounds_the_points() {
        let points: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, ((i * 7919) % 1000) as f64)).collect();
        let kept = downsample(&points, 0.0, 99_999.0, 700);
        assert!(kept.len() <= 4 * 700, "{}", kept.len());
        assert_eq!(kept.first(), points.first());
        assert_eq!(kept.last(), points.last());
        assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0), "stays in x order");
        let (lo, hi) = bounds(kept.iter().map(|p| p.1));
        assert_eq!((lo, hi), (0.0, 999.0), "every extreme survives");
        // Small inputs are untouched.
        assert_eq!(downsample(&points[..10], 0.0, 9.0, 700), points[..10].to_vec());
    }

    #[test]
    fn many_categories_become_the_largest_and_other() {
        // Unordered: the largest are kept.
        let mut csv = String::from("cat,v\n");
        for i in 0..50 {
            csv.push_str(&format!("c{i},{}\n", (i * 7) % 50));
        }
        let chart = draw(csv.as_bytes(), &spec(ChartType::Bar, None, &[]), "t").unwrap();
        assert_eq!(chart.marks, MAX_BARS);
        assert!(chart.svg.contains("other (31 more)"), "{}", chart.svg);
        assert!(chart.svg.contains("the 19 largest of 50 categories"));
        assert!(chart.svg.contains(">c7: 49</title>"));
        assert!(!chart.svg.contains(">c0: 0</title>"));
        // Ordered by a measure (ORDER BY v): the first rows are kept, in order.
        let mut csv = String::from("cat,v\n");
        for i in 0..50 {
            csv.push_str(&format!("c{i},{i}\n"));
        }
        let chart = draw(csv.as_bytes(), &spec(ChartType::Bar, None, &[]), "t").unwrap();
        assert!(chart.svg.contains("the first 19 of 50 categories"), "{}", chart.svg);
        assert!(chart.svg.contains(">c0: 0</title>") && !chart.svg.contains(">c49: 49</title>"));
        // Repeated categories: auto adds nothing up (issue 16) and says why; a forced bar
        // chart sums them and its title says so. NULL categories get a name.
        match draw(b"cat,v\na,1\na,2\n,4\n", &auto(), "t") {
            Err(NoChart::Declined(why)) => assert!(why.contains("rows repeat values of cat"), "{why}"),
            other => panic!("{other:?}"),
        }
        let chart = draw(b"cat,v\na,1\na,2\n,4\n", &spec(ChartType::Bar, None, &[]), "t").unwrap();
        assert!(chart.svg.contains(">a: 3</title>") && chart.svg.contains(">(null): 4</title>"), "{}", chart.svg);
        assert!(chart.svg.contains("<title>Sum of v by cat · t</title>"), "{}", chart.svg);
    }

    /// Draws `csv` with roles from `sql` and the engine types `types` (one per column).
    fn typed(csv: &str, sql: &str, types: &[&str]) -> Result<Chart, NoChart> {
        let header: Vec<String> = csv.lines().next().unwrap().split(',').map(str::to_string).collect();
        let engine: Vec<ResultColumn> = header
            .iter()
            .zip(types)
            .map(|(n, t)| ResultColumn { name: n.clone(), type_: t.to_string(), role: None })
            .collect();
        let analysis = analyse(Some(sql), &engine, &header);
        assert_eq!(analysis.source, RoleSource::Query, "{sql}");
        let chart = draw_typed(csv.as_bytes(), &auto(), "t", Some(&analysis))?;
        check_well_formed(&chart.svg).unwrap_or_else(|e| panic!("{e}\n{}", chart.svg));
        Ok(chart)
    }

    /// The cells of column `col` of `csv` that are numbers.
    fn cells(csv: &str, col: usize) -> Vec<f64> {
        csv.lines().skip(1).filter_map(|l| parse_number(l.split(',').nth(col)?)).collect()
    }

    const REGIONS: [&str; 5] = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"];

    #[test]
    fn issue_16_a_year_is_an_axis_never_a_measure_and_nothing_is_added_up() {
        // yr, r_name, revenue: one line per region over the years, every mark one cell.
        let mut csv = String::from("yr,r_name,revenue\n");
        for y in 1992..=1998 {
            for (i, r) in REGIONS.iter().enumerate() {
                csv.push_str(&format!("{y},{r},{}.25\n", 1000 + y * 10 + i as i32));
            }
        }
        let sql = "SELECT EXTRACT(YEAR FROM o_orderdate) AS yr, r_name, SUM(o_totalprice) AS revenue FROM orders GROUP BY 1, 2";
        let chart = typed(&csv, sql, &["integer", "varchar", "decimal(25,2)"]).unwrap();
        assert_eq!(chart.kind, ChartKind::Line);
        assert_eq!(chart.marks, 35);
        let mut want = cells(&csv, 2);
        let mut got: Vec<f64> = chart.drawn.iter().map(|d| d.0).collect();
        want.sort_by(f64::total_cmp);
        got.sort_by(f64::total_cmp);
        assert_eq!(got, want, "every mark is one cell");
        for r in REGIONS {
            assert!(chart.svg.contains(&format!(">{r}</text>")), "{r} in the legend");
        }
        for y in ["1992", "1995", "1998"] {
            assert!(chart.svg.contains(&format!(">{y}</text>")), "{y} on the axis");
        }
        assert!(!chart.svg.contains("left out") && !chart.svg.contains("13,965"), "{}", chart.svg);
        assert!(chart.svg.contains("<desc>line chart over yr; series: AFRICA, AMERICA"), "{}", chart.svg);

        // priority, yr, n: lines per priority over the years (the smaller dimension).
        let mut csv = String::from("o_orderpriority,yr,n\n");
        for p in ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"] {
            for y in 1992..=1998 {
                csv.push_str(&format!("{p},{y},{}\n", y - 1900));
            }
        }
        let sql =
            "SELECT o_orderpriority, EXTRACT(YEAR FROM o_orderdate) AS yr, COUNT(*) AS n FROM orders GROUP BY 1, 2";
        let chart = typed(&csv, sql, &["varchar", "integer", "bigint"]).unwrap();
        assert_eq!((chart.kind, chart.marks), (ChartKind::Line, 35));
        assert!(chart.drawn.iter().all(|(v, _)| (92.0..=98.0).contains(v)), "n values only, never a year");
        assert!(chart.svg.contains(">1-URGENT</text>"));

        // Two dimensions with many values each: no chart, and why.
        let mut csv = String::from("c_name,n_name,total\n");
        for c in 0..12 {
            for n in 0..12 {
                csv.push_str(&format!("c{c},n{n},{}\n", c * n));
            }
        }
        let sql = "SELECT c_name, n_name, SUM(x) AS total FROM t GROUP BY 1, 2";
        match typed(&csv, sql, &["varchar", "varchar", "bigint"]) {
            Err(NoChart::Declined(why)) => assert!(why.contains("more than 8 series"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Rows that repeat the only dimension: no auto chart.
        let csv = "r_name,revenue\nASIA,1\nASIA,2\nEUROPE,3\n";
        match typed(csv, "SELECT r_name, o_totalprice AS revenue FROM orders", &["varchar", "decimal(15,2)"]) {
            Err(NoChart::Declined(why)) => assert!(why.contains("rows repeat values of r_name"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn issue_16_fixed_dimensions_are_named_and_bad_measures_say_why() {
        let csv = "r_name,n_name,revenue\nASIA,CHINA,10\nASIA,INDIA,20\nASIA,JAPAN,5\n";
        let sql = "SELECT r_name, n_name, SUM(x) AS revenue FROM t WHERE r_name = 'ASIA' GROUP BY 1, 2";
        let chart = typed(csv, sql, &["varchar", "varchar", "bigint"]).unwrap();
        assert_eq!((chart.kind, chart.marks), (ChartKind::Bar, 3));
        assert!(chart.svg.contains("r_name = ASIA"), "{}", chart.svg);
        // A key beside its name: the name is the axis, the key follows it.
        let csv = "n_nationkey,n_name,revenue\n1,A,10\n2,B,20\n";
        let chart = typed(
            csv,
            "SELECT n_nationkey, n_name, SUM(x) AS revenue FROM t GROUP BY 1, 2",
            &["bigint", "varchar", "bigint"],
        )
        .unwrap();
        assert!(chart.svg.contains("one n_nationkey per n_name") && chart.svg.contains(">A</text>"), "{}", chart.svg);
        // NaN measures, all-NULL measures: no chart, with the reason.
        let csv = "r_name,ratio\nA,NaN\nB,1.5\n";
        match typed(csv, "SELECT r_name, AVG(x) AS ratio FROM t GROUP BY 1", &["varchar", "double"]) {
            Err(NoChart::Declined(why)) => assert!(why.contains("NaN or infinite"), "{why}"),
            other => panic!("{other:?}"),
        }
        let csv = "r_name,m\nA,\nB,\n";
        match typed(csv, "SELECT r_name, MAX(x) AS m FROM t GROUP BY 1", &["varchar", "double"]) {
            Err(NoChart::Declined(why)) => assert!(why.contains("NULL in every row"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A varchar of digits stays text (a category), even though it reads as numbers.
        let csv = "zip,n\n02139,5\n10001,7\n";
        let chart = typed(csv, "SELECT zip, COUNT(*) AS n FROM t GROUP BY zip", &["varchar", "bigint"]).unwrap();
        assert!(chart.svg.contains(">02139</text>"), "{}", chart.svg);
    }

    #[test]
    fn issue_16_time_axes_break_at_missing_periods() {
        // date_trunc by month with March missing: two runs, not one line across the gap.
        let csv = "m,n\n2024-01-01,5\n2024-02-01,7\n2024-04-01,6\n2024-05-01,9\n";
        let sql = "SELECT date_trunc('month', o_orderdate) AS m, COUNT(*) AS n FROM orders GROUP BY 1 ORDER BY 1";
        let chart = typed(csv, sql, &["timestamp", "bigint"]).unwrap();
        assert_eq!((chart.kind, chart.marks), (ChartKind::Line, 4));
        assert_eq!(chart.svg.matches("<polyline").count(), 2, "{}", chart.svg);
        // Every month present: one line.
        let csv = "m,n\n2024-01-01,5\n2024-02-01,7\n2024-03-01,6\n";
        assert_eq!(typed(csv, sql, &["timestamp", "bigint"]).unwrap().svg.matches("<polyline").count(), 1);
        // EXTRACT periods: whole-number labels, a gap for a missing year.
        let csv = "yr,n\n1992,5\n1993,7\n1995,6\n";
        let sql = "SELECT EXTRACT(YEAR FROM o_orderdate) AS yr, COUNT(*) AS n FROM orders GROUP BY 1 ORDER BY 1";
        let chart = typed(csv, sql, &["integer", "bigint"]).unwrap();
        assert_eq!(chart.svg.matches("<polyline").count(), 1, "1992–1993, then 1995 alone");
        assert!(chart.svg.contains(">1994</text>") && !chart.svg.contains("1992.5"), "{}", chart.svg);
    }

    #[test]
    fn issue_16_top_n_and_raw_rows_are_bars_of_their_own_cells() {
        let csv = "c_name,c_acctbal\nCustomer#1,9987.71\nCustomer#2,9983.38\nCustomer#3,9977.62\n";
        let chart = typed(
            csv,
            "SELECT c_name, c_acctbal FROM customer ORDER BY c_acctbal DESC LIMIT 3",
            &["varchar", "decimal(15,2)"],
        )
        .unwrap();
        assert_eq!((chart.kind, chart.marks), (ChartKind::Bar, 3));
        assert_eq!(chart.drawn.iter().map(|d| d.0).collect::<Vec<_>>(), [9987.71, 9983.38, 9977.62]);
        // One row: the answer says it.
        assert!(matches!(
            typed("revenue\n21356596030.63\n", "SELECT SUM(o_totalprice) AS revenue FROM orders", &["decimal(25,2)"]),
            Err(NoChart::NotApplicable(_))
        ));
    }

    #[test]
    fn ten_thousand_rows_draw_a_bounded_svg() {
        let mut csv = String::from("at,price,volume\n");
        let start = parse_time("2024-01-01").unwrap();
        for i in 0..10_000 {
            let t = Utc.timestamp_opt((start + i as f64 * 60.0) as i64, 0).unwrap();
            csv.push_str(&format!(
                "{},{},{}\n",
                t.format("%Y-%m-%dT%H:%M:%S"),
                (i as f64 / 50.0).sin() * 100.0,
                i % 97
            ));
        }
        let chart = draw(csv.as_bytes(), &auto(), "prices").unwrap();
        assert_eq!(chart.kind, ChartKind::Line);
        assert!(chart.marks <= 2 * 4 * WIDTH as usize, "{}", chart.marks);
        assert!(chart.svg.len() < 200_000, "{} bytes", chart.svg.len());
        check_well_formed(&chart.svg).unwrap();
        let scatter = draw(csv.as_bytes(), &spec(ChartType::Scatter, Some("volume"), &["price"]), "t").unwrap();
        assert!(scatter.marks <= 10_000);
        check_well_formed(&scatter.svg).unwrap();
        // Points on the same pixel are drawn once.
        let same = "a,b
"
        .to_string()
            + &"1,2
"
            .repeat(10_000)
            + "3,4
";
        assert_eq!(draw(same.as_bytes(), &auto(), "t").unwrap().marks, 2);
    }

    #[test]
    fn the_outcome_is_recorded_as_a_condition() {
        let mut st = QueryRequestStatus::default();
        Produced::NotApplicable("x".into()).record(&mut st);
        assert!(st.condition(CONDITION).is_none());
        Produced::Failed("too big".into()).record(&mut st);
        assert_eq!(st.condition(CONDITION).unwrap().status, "False");
        Produced::Stored { location: "l".into(), kind: ChartKind::Bar, marks: 3 }.record(&mut st);
        let c = st.condition(CONDITION).unwrap();
        assert_eq!((c.status.as_str(), c.message.as_str()), ("True", "bar chart, 3 marks"));
        // A later generation without a chart drops the stale condition.
        Produced::NotApplicable("type none".into()).record(&mut st);
        assert!(st.condition(CONDITION).is_none());
    }
}
