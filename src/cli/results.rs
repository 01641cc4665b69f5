//! `sqlctl results NAME`: the full result of a finished request (CSV with a header row), read
//! from the result store (the results directory, or S3); `--chart` prints its SVG chart.

use std::io::Write;

use super::{Exit, get_request, output};
use crate::config::Context;
use crate::spec::Phase;

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
    /// Print the result's SVG chart instead (`sqlctl results NAME --chart > chart.svg`).
    #[arg(long, conflicts_with = "output")]
    pub chart: bool,
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
        let loc = if self.chart {
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
                            " (spec.chart.type is none, or the result has no date/time or category column with numbers)"
                                .into()
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
        if self.chart {
            out.write_all(&bytes)?;
            return Ok(());
        }
        match self.output {
            ResultFormat::Csv => out.write_all(&bytes)?,
            ResultFormat::Json | ResultFormat::Table => {
                let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
                let header: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
                let mut rows: Vec<Vec<String>> = Vec::new();
                for rec in rdr.records() {
                    rows.push(rec?.iter().map(str::to_string).collect());
                }
                if self.output == ResultFormat::Table {
                    let h: Vec<&str> = header.iter().map(String::as_str).collect();
                    out.write_all(output::table(&h, &rows).as_bytes())?;
                } else {
                    let items: Vec<serde_json::Map<String, serde_json::Value>> = rows
                        .into_iter()
                        .map(|r| header.iter().cloned().zip(r.into_iter().map(serde_json::Value::String)).collect())
                        .collect();
                    out.write_all(output::to_json(&items).as_bytes())?;
                }
            }
        }
        Ok(())
    }
}
