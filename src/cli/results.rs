//! `sqlctl results NAME`: the full result of a finished request (CSV with a header row), read
//! from the result store (the results directory, or S3); `--chart` prints its SVG chart, or
//! writes it to a file (`--chart chart.svg`).
//!
//! `-o json` is typed by the columns the status records (`status.execution.columns`, the
//! engine's types): numbers are JSON numbers written as the engine wrote them (a decimal keeps
//! its scale: `10.50`), booleans are booleans, dates and timestamps ISO 8601 strings, NULL is
//! `null`, and `NaN`/infinite values (which JSON cannot hold) stay strings. A result recorded
//! without column types is written as strings, as before. `-o table` right-aligns numbers.

use std::fmt::Write as _;
use std::io::Write;

use super::{Exit, get_request, output};
use crate::config::Context;
use crate::spec::{Phase, ResultColumn, ValueKind};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultFormat {
    Csv,
    Json,
    Table,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The request: NAME, or TYPE/NAME (queryrequest/NAME, qr/NAME).
    #[arg(value_parser = super::request_name)]
    pub name: String,
    #[arg(short, long, value_enum, default_value = "csv")]
    pub output: ResultFormat,
    /// Print the result's SVG chart instead (`sqlctl results NAME --chart > chart.svg`), or
    /// write it to FILE (`--chart chart.svg`).
    #[arg(long, conflicts_with = "output", value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub chart: Option<String>,
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        let r = get_request(store.as_ref(), g, &self.name).await?;
        let exec = r.status.as_ref().and_then(|s| s.execution.clone());
        let Some(loc) = exec.as_ref().and_then(|e| e.output_location.clone()).filter(|_| r.phase() == Phase::Done)
        else {
            return Err(Exit::refused(format!(
                "{} has no result: it is {}; `sqlctl wait {} --for phase=Done` waits for one",
                self.name,
                r.phase(),
                self.name
            )));
        };
        let loc = if self.chart.is_some() {
            match exec.as_ref().and_then(|e| e.chart_location.clone()) {
                Some(chart) => chart,
                None => {
                    let why = r
                        .status
                        .as_ref()
                        .and_then(|s| s.condition(crate::chart::CONDITION))
                        .filter(|c| c.status != "True")
                        .map(|c| format!(": {}", c.message))
                        .unwrap_or_else(|| {
                            " (spec.chart.type is none, or the result has no rows or no measure to draw)".into()
                        });
                    return Err(Exit::refused(format!("{} has no chart{why}", self.name)));
                }
            }
        } else {
            loc
        };
        // Only the result store: reading a result builds no engine (no Athena, no Glue).
        let results = g.results().await?;
        let bytes = crate::results::read_all(results.as_ref(), &loc)
            .await
            .map_err(|e| Exit::refused(format!("reading {loc}: {e}")))?;
        let mut out = std::io::stdout().lock();
        match self.chart.as_deref() {
            Some("-") => {
                out.write_all(&bytes)?;
                return Ok(());
            }
            Some(file) => {
                // A PNG stored next to the result (a controller built with `png`) is written as
                // is; otherwise this build renders the SVG, if it can.
                let stored = match exec.as_ref().and_then(|e| e.output_location.as_deref()) {
                    Some(csv) => match crate::results::sibling_location(csv, crate::results::Artifact::ChartPng) {
                        Some(png) => results.read(&png, None).await.ok().flatten(),
                        None => None,
                    },
                    None => None,
                };
                return write_chart(file, &bytes, stored);
            }
            None => {}
        }
        let typed = exec.as_ref().map(|e| e.columns.clone()).unwrap_or_default();
        match self.output {
            ResultFormat::Csv => out.write_all(&bytes)?,
            ResultFormat::Json | ResultFormat::Table => {
                let (header, rows) = parse_csv(&bytes).map_err(|e| Exit::refused(format!("reading {loc}: {e}")))?;
                if self.output == ResultFormat::Table {
                    let h: Vec<&str> = header.iter().map(String::as_str).collect();
                    let rows: Vec<Vec<String>> =
                        rows.into_iter().map(|r| r.into_iter().map(Option::unwrap_or_default).collect()).collect();
                    let right = output::numeric_columns(&header, &typed);
                    out.write_all(output::table_aligned(&h, &rows, &right).as_bytes())?;
                } else {
                    out.write_all(typed_json(&header, &rows, &typed).as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// Writes the chart to `file`: the stored SVG for `.svg`; for `.png` the stored PNG, else the SVG
/// rendered by this build (with the `png` feature); other extensions are refused.
fn write_chart(file: &str, svg: &[u8], stored_png: Option<Vec<u8>>) -> anyhow::Result<()> {
    let ext = std::path::Path::new(file).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("svg") => svg.to_vec(),
        Some("png") => match stored_png {
            Some(png) => png,
            None => crate::chart::png::render(svg).map_err(Exit::refused)?,
        },
        _ => return Err(Exit::usage(format!("--chart {file}: the file must end in .svg or .png"))),
    };
    std::fs::write(file, bytes).map_err(|e| Exit::refused(format!("writing {file}: {e}")))?;
    Ok(())
}

/// Rows of cells, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// RFC 4180 CSV with a header row, keeping what the csv crate loses: an unquoted empty field is
/// NULL (`None`), a quoted one (`""`) the empty string.
pub fn parse_csv(bytes: &[u8]) -> Result<(Vec<String>, Rows), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the result is not UTF-8: {e}"))?;
    let mut records: Vec<Vec<Option<String>>> = Vec::new();
    let mut record: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut in_quotes, mut at_start) = (false, false, true);
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_start => {
                (quoted, in_quotes, at_start) = (true, true, false);
            }
            ',' => {
                record.push((quoted || !field.is_empty()).then(|| std::mem::take(&mut field)));
                (quoted, at_start) = (false, true);
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push((quoted || !field.is_empty()).then(|| std::mem::take(&mut field)));
                records.push(std::mem::take(&mut record));
                (quoted, at_start, any) = (false, true, false);
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if in_quotes {
        return Err("the result ends inside a quoted field".into());
    }
    if any {
        record.push((quoted || !field.is_empty()).then_some(field));
        records.push(record);
    }
    let mut records = records.into_iter();
    let header = records.next().unwrap_or_default().into_iter().map(Option::unwrap_or_default).collect();
    Ok((header, records.collect()))
}

/// A JSON number as JSON writes one (`-12`, `0.50`, `1e-7`): what an engine's numeric text is
/// unless it is `NaN` or infinite.
fn is_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    if digits(&mut i) == 0 || (b[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A timestamp as engines print it (`2024-01-31 12:00:00.000`, Athena's `… UTC`) in ISO 8601
/// (`2024-01-31T12:00:00.000`, `…Z`).
fn iso_timestamp(t: &str) -> String {
    let t = t.strip_suffix(" UTC").map(|s| format!("{s}Z")).unwrap_or_else(|| t.to_string());
    match t.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &t[..10], &t[11..]),
        _ => t,
    }
}

/// One cell as a JSON value of its column's kind.
fn json_cell(cell: Option<&str>, kind: Option<ValueKind>) -> String {
    let string = |s: &str| serde_json::to_string(s).expect("a string");
    let Some(t) = cell else { return "null".into() };
    match kind {
        None => string(t),
        Some(k) if k.is_numeric() && is_json_number(t) => t.to_string(),
        Some(k) if k.is_numeric() && t.is_empty() => "null".into(),
        Some(ValueKind::Boolean) if matches!(t, "true" | "false") => t.to_string(),
        Some(ValueKind::Timestamp) => string(&iso_timestamp(t)),
        Some(_) => string(t),
    }
}

/// The rows as a pretty JSON array of objects, each value typed by `typed` (see the module
/// docs); written by hand so a decimal's text is kept exactly.
pub fn typed_json(header: &[String], rows: &[Vec<Option<String>>], typed: &[ResultColumn]) -> String {
    let kinds: Vec<Option<ValueKind>> =
        if typed.len() == header.len() && typed.iter().zip(header).all(|(t, h)| &t.name == h) {
            typed.iter().map(|t| (!t.type_.is_empty()).then(|| t.kind())).collect()
        } else {
            vec![None; header.len()]
        };
    if rows.is_empty() {
        return "[]\n".into();
    }
    let mut out = String::from("[\n");
    for (r, row) in rows.iter().enumerate() {
        out.push_str("  {\n");
        for (i, name) in header.iter().enumerate() {
            let key = serde_json::to_string(name).expect("a string");
            let cell = row.get(i).and_then(|c| c.as_deref());
            let _ = write!(out, "    {key}: {}", json_cell(cell, kinds[i]));
            out.push_str(if i + 1 < header.len() { ",\n" } else { "\n" });
        }
        out.push_str(if r + 1 < rows.len() { "  },\n" } else { "  }\n" });
    }
    out.push_str("]\n");
    output::escape_hidden_json(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, type_: &str) -> ResultColumn {
        ResultColumn { name: name.into(), type_: type_.into(), role: None }
    }

    #[test]
    fn json_rows_are_typed_by_the_recorded_columns() {
        let csv = b"yr,revenue,n,day,at,flag,name,ratio\n1992,638363428.86,3,1992-01-01,2024-01-31 12:00:00.000 UTC,true,\"\",NaN\n,10.50,,,,,,\n";
        let (header, rows) = parse_csv(csv).unwrap();
        assert_eq!(rows[0][6].as_deref(), Some(""), "a quoted empty field is the empty string");
        assert_eq!(rows[1][0], None, "an unquoted one is NULL");
        let typed = [
            col("yr", "integer"),
            col("revenue", "decimal(25,2)"),
            col("n", "bigint"),
            col("day", "date"),
            col("at", "timestamp"),
            col("flag", "boolean"),
            col("name", "varchar"),
            col("ratio", "double"),
        ];
        let json = typed_json(&header, &rows, &typed);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["yr"], serde_json::json!(1992));
        assert_eq!(v[0]["n"], serde_json::json!(3));
        assert_eq!(v[0]["day"], "1992-01-01");
        assert_eq!(v[0]["at"], "2024-01-31T12:00:00.000Z");
        assert_eq!(v[0]["flag"], true);
        assert_eq!(v[0]["name"], "");
        assert_eq!(v[0]["ratio"], "NaN", "JSON has no NaN: kept as a string");
        assert!(v[0]["revenue"].is_number());
        assert!(json.contains("\"revenue\": 638363428.86,") && json.contains("\"revenue\": 10.50,"), "{json}");
        assert_eq!(v[1]["yr"], serde_json::Value::Null);
        assert_eq!(v[1]["name"], serde_json::Value::Null);
        // Without recorded types: strings, as before.
        let v: serde_json::Value = serde_json::from_str(&typed_json(&header, &rows, &[])).unwrap();
        assert_eq!(v[0]["yr"], "1992");
        assert_eq!(typed_json(&header, &[], &typed), "[]\n");
        for (t, ok) in
            [("0", true), ("-1.5e-7", true), ("10.50", true), ("01", false), ("1.", false), ("NaN", false), ("", false)]
        {
            assert_eq!(is_json_number(t), ok, "{t}");
        }
    }
}
