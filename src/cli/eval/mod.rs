//! `sqlctl eval FILE [--database D] [-o table|json] [--min-accuracy X]`: execution accuracy of
//! the configured generator on a question set.
//!
//! Two formats of question set, told apart by their fields:
//!
//! - sqlctl's own: `{question, database?, gold, ordered?}` (a YAML or JSON list, or `{questions:
//!   [...]}`), as `examples/eval/tpch.yaml`;
//! - the defog sql-eval benchmark's (`tests/fixtures/defog/cases.json`): `{database,
//!   question, sql, alt_sql?, ordered?, instructions?, category?, date_dependent?}`, where a
//!   match with `sql` or any of `alt_sql` counts, and `--instructions` hands each case's
//!   instructions to the generator as notes to follow.
//!
//! The generator's SQL goes through the same guard, planner and self-correction as in the
//! controller ([`super::generate::generate_checked`]); then both it and the gold SQL run on the
//! local engine (`--data-dir` picks any directory of databases) and their results are compared.
//! sqlctl's format keeps its rule:
//!
//! - as multisets of rows, or in order when `ordered: true`;
//! - cells normalised so that `DECIMAL` and `DOUBLE` agree (numbers rounded to 2 decimals);
//! - columns matched by content, not by name or position, so `SELECT name, total` and
//!   `SELECT total AS t, name` agree. Extra columns in the generated result are tolerated (a
//!   label next to the asked-for number is not a wrong answer) unless `--strict-columns`.
//!
//! The benchmark's cases are scored by the benchmark's rule ([`compare`]): numbers within 1e-6
//! relative, a DATE equal to the TIMESTAMP at its midnight, rows tied on the gold `ORDER BY` keys
//! in any order and any tied rows at an `ORDER BY … LIMIT n` cut-off. Either way the report
//! counts right / declined / wrong per database.
//!
//! With `--estimates` it measures the scan estimate instead (no generator involved): for every
//! case's gold SQL, the local engine's pre-approval estimate (Parquet footers, projected column
//! chunks, row groups pruned by min/max statistics) against the bytes DataFusion then reads
//! running the same plan (its `bytes_scanned` metric: compressed bytes fetched), reporting
//! each case's error, the median, p90 and the worst case with its cause.
//!
//! Verdicts: `correct`, `wrong` (ran, different result), `declined` (the generator said it
//! cannot answer), `error` (no valid SQL, or it failed to run). Accuracy is correct / total:
//! a decline counts as not correct, but it is reported apart because declining beats a
//! confident wrong answer. Exit 0 unless `--min-accuracy` is given and not met, or more than
//! `--max-wrong` answers are wrong (exit 1): CI keeps a floor on right answers and a ceiling
//! on wrong ones.

mod compare;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Exit;
use super::generate::{Failure, generate_checked};
use crate::config::Context;
use crate::config::generator::GeneratorOpts;
use crate::engine::datafusion::{LocalEngine, run_sql_collect};
use crate::generate::GenerateInput;
use crate::spec::EngineKind;
use crate::spec::quantity::human_bytes;

/// Largest question file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Question set: YAML or JSON, a list of {question, database?, gold, ordered?}, or the
    /// defog benchmark's JSON cases {database, question, sql, alt_sql?, ordered?, …}.
    pub file: PathBuf,
    /// Database for cases that do not name one.
    #[arg(short, long, default_value = "tpch")]
    pub database: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Fail (exit 1) when accuracy is below this: a fraction (0.8) or a percentage (80).
    #[arg(long, value_name = "X")]
    pub min_accuracy: Option<f64>,
    /// Fail (exit 1) when more than this many answers are wrong (a wrong answer is worse than a
    /// decline).
    #[arg(long, value_name = "N")]
    pub max_wrong: Option<usize>,
    /// Hand each case's `instructions` (benchmark format) to the generator as notes to follow.
    #[arg(long)]
    pub instructions: bool,
    /// SemanticModel files (a file or a directory of YAML): each case's database gets its model
    /// (descriptions, synonyms and samples in the tables; metrics, filters, relationships and
    /// instructions in LLM prompts), as the controller gives it. Checked like `apply` checks them.
    #[arg(long, value_name = "FILE|DIR")]
    pub semantic_models: Option<PathBuf>,
    /// Generation attempts per question (self-correction).
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Require exactly the gold result's columns (by default extra generated columns are fine).
    #[arg(long)]
    pub strict_columns: bool,
    /// Measure the scan estimate of every case's gold SQL against the bytes the local engine
    /// reads running it, instead of generation accuracy (no generator is used).
    #[arg(long)]
    pub estimates: bool,
    /// With --estimates: fail (exit 1) when the median estimate error exceeds this, a fraction
    /// (0.25) or a percentage (25).
    #[arg(long, value_name = "X", requires = "estimates")]
    pub max_estimate_error: Option<f64>,
    #[command(flatten)]
    pub generator: GeneratorOpts,
}

/// The SemanticModels in `path` (a file or a directory), by database: parsed and checked as
/// `apply` does; two models of one database are refused.
fn load_semantic_models(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<String, crate::spec::SemanticModelSpec>> {
    use crate::spec::load::{Document, load_paths_with};
    let docs = load_paths_with(&[path.display().to_string()], &crate::guard::template::check_document)
        .map_err(|e| Exit::refused(format!("--semantic-models: {e}")))?;
    let mut out = std::collections::HashMap::new();
    for d in docs {
        let Document::Object(crate::spec::Object::SemanticModel(m)) = d.document else {
            return Err(Exit::refused(format!(
                "--semantic-models: {} (document {}) is not a SemanticModel",
                d.source,
                d.index + 1
            )));
        };
        let db = m.spec.database.clone();
        if out.insert(db.clone(), m.spec).is_some() {
            return Err(Exit::refused(format!("--semantic-models: two models of database {db}")));
        }
    }
    Ok(out)
}

/// One question of a set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub question: String,
    #[serde(default)]
    pub database: Option<String>,
    pub gold: String,
    #[serde(default)]
    pub ordered: bool,
    /// Free-form note (what the case exercises); ignored.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CaseFile<C> {
    List(Vec<C>),
    Wrapped { questions: Vec<C> },
}

/// One case of the defog sql-eval benchmark, as its converted `cases.json` writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkCase {
    pub database: String,
    pub question: String,
    pub sql: String,
    /// Other gold queries the benchmark accepts ("name or id").
    #[serde(default)]
    pub alt_sql: Option<Vec<String>>,
    #[serde(default)]
    pub ordered: Option<bool>,
    /// Notes for this question (definitions, matching rules), handed over with `--instructions`.
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// The gold answer depends on today's date.
    #[serde(default)]
    pub date_dependent: Option<bool>,
}

/// How a case's results are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// sqlctl's own: numbers to 2 decimals, strict order when ordered.
    Sqlctl,
    /// The benchmark's README rule ([`compare`]).
    Benchmark,
}

/// A case of either format, as the run uses it.
#[derive(Clone, Debug)]
pub struct EvalCase {
    pub question: String,
    pub database: Option<String>,
    /// Gold queries; a match with any counts (the first is the one shown).
    pub gold: Vec<String>,
    pub ordered: bool,
    pub instructions: Option<String>,
    pub category: Option<String>,
    pub date_dependent: bool,
    pub rule: Rule,
}

impl From<Case> for EvalCase {
    fn from(c: Case) -> Self {
        EvalCase {
            question: c.question,
            database: c.database,
            gold: vec![c.gold],
            ordered: c.ordered,
            instructions: None,
            category: None,
            date_dependent: false,
            rule: Rule::Sqlctl,
        }
    }
}

impl From<BenchmarkCase> for EvalCase {
    fn from(c: BenchmarkCase) -> Self {
        let mut gold = vec![c.sql];
        gold.extend(c.alt_sql.unwrap_or_default());
        EvalCase {
            question: c.question,
            database: Some(c.database),
            gold,
            ordered: c.ordered.unwrap_or(false),
            instructions: c.instructions.filter(|s| !s.trim().is_empty()),
            category: c.category,
            date_dependent: c.date_dependent.unwrap_or(false),
            rule: Rule::Benchmark,
        }
    }
}

/// Whether a parsed file is in the benchmark's format: its cases carry `sql`, not `gold`.
fn is_benchmark_format(v: &serde_json::Value) -> bool {
    let list = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("questions") {
            Some(serde_json::Value::Array(a)) => a,
            _ => return false,
        },
        _ => return false,
    };
    list.first().and_then(|c| c.as_object()).is_some_and(|c| c.contains_key("sql") && !c.contains_key("gold"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Correct,
    Wrong,
    Declined,
    Error,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Wrong => "wrong",
            Verdict::Declined => "declined",
            Verdict::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResult {
    pub question: String,
    pub database: String,
    pub verdict: Verdict,
    /// The benchmark's category of the question, when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Time in the generator (all attempts), milliseconds.
    pub generation_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Why it is not correct.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// First rows of the gold and the generated result, when they differ (for debugging).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Vec<Vec<Option<String>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub got: Option<Vec<Vec<Option<String>>>>,
}

/// Rows of a result shown when a case is wrong.
const PREVIEW_ROWS: usize = 5;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub model: String,
    pub total: usize,
    pub correct: usize,
    pub wrong: usize,
    pub declined: usize,
    pub errors: usize,
    pub accuracy: f64,
    pub declined_rate: f64,
    pub wrong_rate: f64,
    pub generation_p50_ms: f64,
    pub generation_p95_ms: f64,
    /// Whether the cases' instructions reached the generator (`--instructions`).
    pub instructions: bool,
    /// Right / declined / wrong per database, in the order the set first names them.
    pub by_database: Vec<DatabaseSummary>,
}

/// One database's line of the report.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSummary {
    pub database: String,
    pub total: usize,
    pub correct: usize,
    pub declined: usize,
    pub wrong: usize,
    pub errors: usize,
}

/// The per-database counts of a run, in first-seen order.
fn by_database(results: &[CaseResult]) -> Vec<DatabaseSummary> {
    let mut out: Vec<DatabaseSummary> = Vec::new();
    for r in results {
        let i = match out.iter().position(|d| d.database == r.database) {
            Some(i) => i,
            None => {
                out.push(DatabaseSummary { database: r.database.clone(), ..Default::default() });
                out.len() - 1
            }
        };
        let d = &mut out[i];
        d.total += 1;
        match r.verdict {
            Verdict::Correct => d.correct += 1,
            Verdict::Declined => d.declined += 1,
            Verdict::Wrong => d.wrong += 1,
            Verdict::Error => d.errors += 1,
        }
    }
    out
}

/// The per-database table printed above the summary line.
fn database_table(summary: &Summary) -> String {
    let mut rows: Vec<Vec<String>> = summary
        .by_database
        .iter()
        .map(|d| {
            vec![
                d.database.clone(),
                d.correct.to_string(),
                d.declined.to_string(),
                d.wrong.to_string(),
                d.errors.to_string(),
                d.total.to_string(),
            ]
        })
        .collect();
    rows.push(vec![
        "TOTAL".into(),
        summary.correct.to_string(),
        summary.declined.to_string(),
        summary.wrong.to_string(),
        summary.errors.to_string(),
        summary.total.to_string(),
    ]);
    super::output::table(&["DATABASE", "RIGHT", "DECLINED", "WRONG", "ERROR", "TOTAL"], &rows)
}

/// A gold query's result, ready for the benchmark rule: its plan, its rows and, for
/// `ORDER BY … LIMIT n`, every row without the limit.
struct GoldRun {
    plan: compare::GoldPlan,
    rows: compare::Rows,
    unlimited: Option<compare::Rows>,
}

/// Runs one gold query for the benchmark rule. When the keyed form (hidden `ORDER BY` columns
/// added) does not run, the query runs as written, with no keys.
async fn run_gold(data_dir: &std::path::Path, db: &str, sql: &str) -> Result<GoldRun, String> {
    let plan = compare::GoldPlan::of(sql);
    let (plan, rows) = match run_sql_collect(data_dir, db, &plan.sql).await {
        Ok((_, rows)) => (plan, rows),
        Err(_) if plan.sql != sql => {
            let plain =
                compare::GoldPlan { sql: sql.to_string(), unlimited_sql: None, limit: None, keys: vec![], hidden: 0 };
            let rows = run_sql_collect(data_dir, db, sql).await.map_err(|e| e.to_string())?.1;
            (plain, rows)
        }
        Err(e) => return Err(e.to_string()),
    };
    let unlimited = match plan.unlimited_sql.as_deref() {
        Some(u) => run_sql_collect(data_dir, db, u).await.ok().map(|(_, r)| r),
        None => None,
    };
    Ok(GoldRun { plan, rows, unlimited })
}

/// What `-o json` prints: every case, then the summary.
#[derive(Serialize)]
struct Report<'a, R, S> {
    results: &'a [R],
    summary: &'a S,
}

/// Prints a run: as JSON, or as a table of one row per case (numbered from 1) and the
/// summary line `footer` writes.
fn print_report<R: Serialize, S: Serialize>(
    output: Output,
    results: &[R],
    summary: &S,
    headers: &[&str],
    row: impl Fn(&R) -> Vec<String>,
    footer: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&Report { results, summary })?),
        Output::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .enumerate()
                .map(|(i, r)| std::iter::once((i + 1).to_string()).chain(row(r)).collect())
                .collect();
            print!("{}", super::output::table(headers, &rows));
            println!();
            println!("{}", footer());
        }
    }
    Ok(())
}

/// Loads a question set (YAML or JSON, either format).
pub fn load_cases(path: &std::path::Path) -> anyhow::Result<Vec<EvalCase>> {
    let meta = std::fs::metadata(path).map_err(|e| Exit::refused(format!("reading {}: {e}", path.display())))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Exit::refused(format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display())));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Exit::refused(format!("reading {}: {e}", path.display())))?;
    let json = path.extension().is_some_and(|e| e == "json");
    fn parse<T: serde::de::DeserializeOwned>(text: &str, json: bool) -> Result<T, String> {
        if json {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())
        }
    }
    let refused = |e: String| Exit::refused(format!("{}: {e}", path.display()));
    // Told apart by fields; each format is then parsed strictly (unknown fields refused).
    let benchmark = parse::<serde_json::Value>(&text, json).is_ok_and(|v| is_benchmark_format(&v));
    let cases: Vec<EvalCase> = if benchmark {
        match parse::<CaseFile<BenchmarkCase>>(&text, json).map_err(refused)? {
            CaseFile::List(c) | CaseFile::Wrapped { questions: c } => c.into_iter().map(EvalCase::from).collect(),
        }
    } else {
        match parse::<CaseFile<Case>>(&text, json).map_err(refused)? {
            CaseFile::List(c) | CaseFile::Wrapped { questions: c } => c.into_iter().map(EvalCase::from).collect(),
        }
    };
    if cases.is_empty() {
        return Err(Exit::refused(format!("{} has no questions", path.display())));
    }
    Ok(cases)
}

/// A cell as compared: numbers rounded to two decimals (so DECIMAL and DOUBLE agree), NULL
/// distinct from the string "NULL", text as is.
fn norm(cell: &Option<String>) -> String {
    match cell {
        None => "\u{0}NULL".into(),
        Some(s) => {
            let t = s.trim();
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() && !t.is_empty() => {
                    let r = format!("{:.2}", v);
                    if r == "-0.00" { "0.00".into() } else { r }
                }
                _ => t.to_string(),
            }
        }
    }
}

/// Whether `got` answers like `gold`: same number of rows, each gold column matched by a
/// distinct generated column, rows equal as multisets (or in order when `ordered`).
pub fn same_result(
    gold: &[Vec<Option<String>>],
    got: &[Vec<Option<String>>],
    ordered: bool,
    strict_columns: bool,
) -> Result<(), String> {
    if gold.len() != got.len() {
        return Err(format!("{} rows, expected {}", got.len(), gold.len()));
    }
    if gold.is_empty() {
        return Ok(());
    }
    let g_cols = gold[0].len();
    let o_cols = got[0].len();
    if o_cols < g_cols || (strict_columns && o_cols != g_cols) {
        return Err(format!("{o_cols} columns, expected {g_cols}"));
    }
    let gold_n: Vec<Vec<String>> = gold.iter().map(|r| r.iter().map(norm).collect()).collect();
    let got_n: Vec<Vec<String>> = got.iter().map(|r| r.iter().map(norm).collect()).collect();
    let column = |rows: &[Vec<String>], c: usize| -> Vec<String> {
        let mut v: Vec<String> = rows.iter().map(|r| r[c].clone()).collect();
        if !ordered {
            v.sort();
        }
        v
    };
    // Candidate generated columns for each gold column, by content.
    let candidates: Vec<Vec<usize>> = (0..g_cols)
        .map(|gc| {
            let want = column(&gold_n, gc);
            (0..o_cols).filter(|&oc| column(&got_n, oc) == want).collect()
        })
        .collect();
    if let Some(gc) = candidates.iter().position(|c| c.is_empty()) {
        return Err(format!("no generated column matches gold column {}", gc + 1));
    }
    let mut gold_rows = gold_n.clone();
    if !ordered {
        gold_rows.sort();
    }
    // Backtracking over assignments (tiny in practice: a handful of columns).
    use compare::search;
    let check = |mapping: &[usize]| -> bool {
        let mut projected: Vec<Vec<String>> =
            got_n.iter().map(|r| mapping.iter().map(|&c| r[c].clone()).collect()).collect();
        if !ordered {
            projected.sort();
        }
        projected == gold_rows
    };
    if search(0, &candidates, &mut Vec::new(), &check) {
        Ok(())
    } else {
        Err(if ordered { "rows differ (or differ in order)".into() } else { "rows differ".into() })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        if g.backend != "local" {
            return Err(Exit::refused(
                "eval runs gold and generated SQL on the local engine; use --backend local (the generator can still be bedrock or openai)",
            ));
        }
        let min_accuracy = match self.min_accuracy {
            Some(x) if !(0.0..=100.0).contains(&x) => {
                return Err(Exit::usage("--min-accuracy must be a fraction (0.8) or a percentage (80)"));
            }
            Some(x) if x > 1.0 => Some(x / 100.0),
            other => other,
        };
        let cases = load_cases(&self.file)?;
        if self.estimates {
            return self.run_estimates(g, &cases).await;
        }
        let Some(generator) = self.generator.build(&g.backend).await? else {
            return Err(Exit::refused(
                "no SQL generator is configured (--generator none); pick offline, bedrock or openai",
            ));
        };
        let models = match &self.semantic_models {
            None => Default::default(),
            Some(p) => load_semantic_models(p)?,
        };
        let catalog = crate::config::generator::catalog_for(g, &self.generator).await?;
        let data_dir = g.data_dir();
        let scratch = tempfile_dir()?;
        let engine = LocalEngine::new(&data_dir, scratch.path());
        let mut results: Vec<CaseResult> = Vec::with_capacity(cases.len());
        let mut tables_by_db: std::collections::HashMap<String, Vec<crate::catalog::Table>> = Default::default();
        for case in &cases {
            let db = case.database.clone().unwrap_or_else(|| self.database.clone());
            if !tables_by_db.contains_key(&db) {
                let t = catalog.tables(&db).await?;
                tables_by_db.insert(db.clone(), t);
            }
            let mut tables = tables_by_db[&db].clone();
            let known: Vec<String> = tables.iter().map(|t| t.name.to_ascii_lowercase()).collect();
            let mut instructions = match (&case.instructions, self.instructions) {
                (Some(i), true) => vec![i.clone()],
                _ => vec![],
            };
            let model: Option<&crate::spec::SemanticModelSpec> = models.get(&db);
            if let Some(m) = model {
                crate::generate::semantic::enrich(&mut tables, m);
                instructions.extend(crate::generate::semantic::instructions(m));
            }
            let input = GenerateInput {
                question: case.question.clone(),
                database: db.clone(),
                engine: EngineKind::Local,
                tables,
                history: vec![],
                last_error: None,
                instructions,
                follow_up: None,
                semantic: model.cloned(),
                examples: vec![],
            };
            let (outcome, gen_ms) =
                generate_checked(generator.as_ref(), input, &known, &[], Some(&engine), self.max_attempts).await;
            let mut result = CaseResult {
                question: case.question.clone(),
                database: db.clone(),
                verdict: Verdict::Error,
                category: case.category.clone(),
                confidence: None,
                generation_ms: (gen_ms * 1000.0).round() / 1000.0,
                sql: None,
                reason: None,
                expected: None,
                got: None,
            };
            match outcome {
                Err(Failure::Declined(m)) => {
                    result.verdict = Verdict::Declined;
                    result.reason = Some(m);
                }
                Err(f) => result.reason = Some(f.message().to_string()),
                Ok(checked) => {
                    result.confidence = Some((checked.proposal.confidence * 100.0).round() / 100.0);
                    result.sql = Some(checked.proposal.sql.clone());
                    if case.rule == Rule::Benchmark {
                        score_benchmark(&mut result, &data_dir, &db, case, &checked.proposal.sql).await;
                        results.push(result);
                        continue;
                    }
                    let gold = run_sql_collect(&data_dir, &db, &case.gold[0]).await;
                    let got = run_sql_collect(&data_dir, &db, &checked.proposal.sql).await;
                    match (gold, got) {
                        (Err(e), _) => result.reason = Some(format!("gold SQL failed: {e}")),
                        (_, Err(e)) => result.reason = Some(format!("generated SQL failed: {e}")),
                        (Ok((_, gold)), Ok((_, got))) => {
                            match same_result(&gold, &got, case.ordered, self.strict_columns) {
                                Ok(()) => result.verdict = Verdict::Correct,
                                Err(why) => {
                                    result.verdict = Verdict::Wrong;
                                    result.reason = Some(why);
                                    result.expected = Some(gold.into_iter().take(PREVIEW_ROWS).collect());
                                    result.got = Some(got.into_iter().take(PREVIEW_ROWS).collect());
                                }
                            }
                        }
                    }
                }
            }
            results.push(result);
        }

        let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
        let total = results.len();
        let mut latencies: Vec<f64> = results.iter().map(|r| r.generation_ms).collect();
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let summary = Summary {
            model: generator.model(),
            total,
            correct: count(Verdict::Correct),
            wrong: count(Verdict::Wrong),
            declined: count(Verdict::Declined),
            errors: count(Verdict::Error),
            accuracy: count(Verdict::Correct) as f64 / total as f64,
            declined_rate: count(Verdict::Declined) as f64 / total as f64,
            wrong_rate: count(Verdict::Wrong) as f64 / total as f64,
            generation_p50_ms: percentile(&latencies, 0.5),
            generation_p95_ms: percentile(&latencies, 0.95),
            instructions: self.instructions,
            by_database: by_database(&results),
        };
        let show_databases = summary.by_database.len() > 1 || cases.iter().any(|c| c.rule == Rule::Benchmark);
        print_report(
            self.output,
            &results,
            &summary,
            &["#", "VERDICT", "CONF", "MS", "QUESTION", "REASON"],
            |r| {
                vec![
                    r.verdict.as_str().to_string(),
                    r.confidence.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
                    format!("{:.1}", r.generation_ms),
                    super::output::short(&r.question, 70),
                    r.reason.as_deref().map(|s| super::output::short(s, 60)).unwrap_or_default(),
                ]
            },
            || {
                let databases = if show_databases { format!("{}\n", database_table(&summary)) } else { String::new() };
                format!(
                    "{databases}accuracy {}/{} = {:.1}%  declined {} ({:.1}%)  wrong {}  errors {}  generation p50 {:.2} ms, p95 {:.2} ms  ({})",
                    summary.correct,
                    summary.total,
                    summary.accuracy * 100.0,
                    summary.declined,
                    summary.declined_rate * 100.0,
                    summary.wrong,
                    summary.errors,
                    summary.generation_p50_ms,
                    summary.generation_p95_ms,
                    summary.model
                )
            },
        )?;
        if let Some(min) = min_accuracy
            && summary.accuracy + 1e-9 < min
        {
            return Err(Exit::refused(format!(
                "accuracy {:.1}% is below --min-accuracy {:.1}%",
                summary.accuracy * 100.0,
                min * 100.0
            )));
        }
        if let Some(max) = self.max_wrong
            && summary.wrong > max
        {
            return Err(Exit::refused(format!("{} wrong answers, more than --max-wrong {max}", summary.wrong)));
        }
        Ok(())
    }
}

/// Scores one generated answer by the benchmark rule against every gold query of the case: right
/// when any matches; an error only when no gold query runs.
async fn score_benchmark(result: &mut CaseResult, data_dir: &std::path::Path, db: &str, case: &EvalCase, sql: &str) {
    let got = match run_sql_collect(data_dir, db, sql).await {
        Ok((_, rows)) => rows,
        Err(e) => {
            result.reason = Some(format!("generated SQL failed: {e}"));
            return;
        }
    };
    let mut first_miss: Option<(String, compare::Rows)> = None;
    let mut gold_error: Option<String> = None;
    for gold_sql in &case.gold {
        match run_gold(data_dir, db, gold_sql).await {
            Err(e) => {
                gold_error.get_or_insert(e);
            }
            Ok(gold) => {
                let g = compare::Gold { plan: &gold.plan, rows: &gold.rows, unlimited: gold.unlimited.as_ref() };
                match compare::matches(&g, &got, case.ordered) {
                    Ok(()) => {
                        result.verdict = Verdict::Correct;
                        return;
                    }
                    Err(why) => {
                        if first_miss.is_none() {
                            let width = gold.rows.first().map_or(0, |r| r.len() - gold.plan.hidden);
                            let shown = gold.rows.iter().take(PREVIEW_ROWS).map(|r| r[..width].to_vec()).collect();
                            first_miss = Some((why, shown));
                        }
                    }
                }
            }
        }
    }
    match first_miss {
        Some((why, expected)) => {
            result.verdict = Verdict::Wrong;
            result.reason = Some(why);
            result.expected = Some(expected);
            result.got = Some(got.into_iter().take(PREVIEW_ROWS).collect());
        }
        None => result.reason = Some(format!("gold SQL failed: {}", gold_error.unwrap_or_default())),
    }
}

/// One case of `--estimates`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateResult {
    pub question: String,
    pub database: String,
    pub estimate_bytes: u64,
    pub scanned_bytes: u64,
    /// (estimate − scanned) / scanned; 0 when both are 0; absent when only the run read nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<f64>,
    pub method: String,
    /// Why the two differ, as far as the run's metrics tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The gold SQL failed to plan or run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateSummary {
    pub cases: usize,
    pub measured: usize,
    /// Of |error|, over the measured cases.
    pub median_error: f64,
    pub p90_error: f64,
    pub worst_error: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_case: Option<usize>,
}

/// Why an estimate and a measurement differ, from the run's pruning metrics and the direction.
fn estimate_cause(estimate: u64, scanned: u64, runtime_pruning: &[String]) -> Option<String> {
    if estimate == scanned {
        return None;
    }
    if !runtime_pruning.is_empty() {
        return Some(format!("skipped at run time: {}", runtime_pruning.join(", ")));
    }
    Some(if estimate > scanned {
        "the run read fewer bytes than the kept column chunks (a scan stopped early)".into()
    } else {
        "the run read more than the column chunks (page index or bloom filter reads)".into()
    })
}

impl Args {
    /// `--estimates`: the local engine's estimate against what running the same plan reads.
    async fn run_estimates(&self, g: &Context, cases: &[EvalCase]) -> anyhow::Result<()> {
        let max_error = match self.max_estimate_error {
            Some(x) if !(0.0..=100.0).contains(&x) => {
                return Err(Exit::usage("--max-estimate-error must be a fraction (0.25) or a percentage (25)"));
            }
            Some(x) if x > 1.0 => Some(x / 100.0),
            other => other,
        };
        let data_dir = g.data_dir();
        let mut results = Vec::with_capacity(cases.len());
        for case in cases {
            let db = case.database.clone().unwrap_or_else(|| self.database.clone());
            let mut r = EstimateResult {
                question: case.question.clone(),
                database: db.clone(),
                estimate_bytes: 0,
                scanned_bytes: 0,
                error: None,
                method: String::new(),
                cause: None,
                failure: None,
            };
            match crate::engine::datafusion::measure_scan(&data_dir, &db, &case.gold[0]).await {
                Err(e) => r.failure = Some(e.to_string()),
                Ok(m) => {
                    r.estimate_bytes = m.estimate.bytes;
                    r.scanned_bytes = m.scanned;
                    r.method = m.estimate.method();
                    r.error = match (m.estimate.bytes, m.scanned) {
                        (0, 0) => Some(0.0),
                        (_, 0) => None,
                        (e, s) => Some((e as f64 - s as f64) / s as f64),
                    };
                    r.cause = estimate_cause(m.estimate.bytes, m.scanned, &m.runtime_pruning);
                }
            }
            results.push(r);
        }
        let mut errors: Vec<(f64, usize)> =
            results.iter().enumerate().filter_map(|(i, r)| r.error.map(|e| (e.abs(), i))).collect();
        errors.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let sorted: Vec<f64> = errors.iter().map(|(e, _)| *e).collect();
        let summary = EstimateSummary {
            cases: results.len(),
            measured: sorted.len(),
            median_error: percentile(&sorted, 0.5),
            p90_error: percentile(&sorted, 0.9),
            worst_error: sorted.last().copied().unwrap_or(0.0),
            worst_case: errors.last().filter(|(e, _)| *e > 0.0).map(|(_, i)| i + 1),
        };
        print_report(
            self.output,
            &results,
            &summary,
            &["#", "ESTIMATE", "SCANNED", "ERROR", "QUESTION", "CAUSE"],
            |r| {
                vec![
                    human_bytes(r.estimate_bytes),
                    human_bytes(r.scanned_bytes),
                    match (&r.failure, r.error) {
                        (Some(_), _) => "failed".into(),
                        (None, Some(e)) => format!("{:+.1}%", e * 100.0),
                        (None, None) => "n/a".into(),
                    },
                    super::output::short(&r.question, 60),
                    super::output::short(r.failure.as_deref().or(r.cause.as_deref()).unwrap_or(""), 70),
                ]
            },
            || {
                let worst = summary
                    .worst_case
                    .map(|n| {
                        let r = &results[n - 1];
                        format!(
                            " (#{n} {:?}: {})",
                            super::output::short(&r.question, 50),
                            r.cause.as_deref().unwrap_or("exact")
                        )
                    })
                    .unwrap_or_else(|| " (every estimate exact)".into());
                format!(
                    "estimate error over {}/{} cases: median {:.1}%, p90 {:.1}%, worst {:.1}%{worst}",
                    summary.measured,
                    summary.cases,
                    summary.median_error * 100.0,
                    summary.p90_error * 100.0,
                    summary.worst_error * 100.0,
                )
            },
        )?;
        if let Some(max) = max_error
            && summary.median_error > max + 1e-9
        {
            return Err(Exit::refused(format!(
                "median estimate error {:.1}% is above --max-estimate-error {:.1}%",
                summary.median_error * 100.0,
                max * 100.0
            )));
        }
        Ok(())
    }
}

/// A scratch results directory for the engine (eval never writes results, but the engine
/// wants somewhere to put them).
fn tempfile_dir() -> anyhow::Result<TempDir> {
    let path =
        std::env::temp_dir().join(format!("sqlctl-eval-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[&str]]) -> Vec<Vec<Option<String>>> {
        v.iter().map(|r| r.iter().map(|c| if *c == "NULL" { None } else { Some(c.to_string()) }).collect()).collect()
    }

    #[test]
    fn results_compare_as_multisets_with_numeric_tolerance() {
        let gold = rows(&[&["ASIA", "12.5"], &["EUROPE", "3"]]);
        assert!(same_result(&gold, &rows(&[&["EUROPE", "3.0000"], &["ASIA", "12.50"]]), false, false).is_ok());
        assert!(
            same_result(&gold, &rows(&[&["EUROPE", "3.0000"], &["ASIA", "12.50"]]), true, false).is_err(),
            "order matters when ordered"
        );
        assert!(same_result(&gold, &rows(&[&["ASIA", "12.5"]]), false, false).is_err());
        assert!(same_result(&gold, &rows(&[&["ASIA", "12.6"], &["EUROPE", "3"]]), false, false).is_err());
        // DECIMAL vs DOUBLE noise.
        assert!(same_result(&rows(&[&["4487.845235"]]), &rows(&[&["4487.8452350000001"]]), false, false).is_ok());
        assert!(same_result(&rows(&[&["NULL"]]), &rows(&[&["NULL"]]), false, false).is_ok());
        assert!(same_result(&rows(&[&["NULL"]]), &rows(&[&["0"]]), false, false).is_err());
    }

    #[test]
    fn columns_match_by_content_and_extra_ones_are_tolerated_unless_strict() {
        let gold = rows(&[&["5", "a"], &["7", "b"]]);
        let swapped = rows(&[&["a", "5"], &["b", "7"]]);
        assert!(same_result(&gold, &swapped, false, true).is_ok());
        let extra = rows(&[&["x1", "a", "5"], &["x2", "b", "7"]]);
        assert!(same_result(&gold, &extra, false, false).is_ok());
        assert!(same_result(&gold, &extra, false, true).is_err());
        // Columns that match one by one but pair rows differently are not the same result.
        let crossed = rows(&[&["5", "b"], &["7", "a"]]);
        assert!(same_result(&gold, &crossed, false, false).is_err());
    }

    #[test]
    fn question_files_load_as_yaml_lists_or_wrapped_json() {
        let dir = tempfile::tempdir().unwrap();
        let y = dir.path().join("q.yaml");
        std::fs::write(&y, "- question: how many nations?\n  gold: select count(*) from nation\n- question: x\n  database: other\n  gold: select 1\n  ordered: true\n").unwrap();
        let c = load_cases(&y).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c[1].ordered && c[1].database.as_deref() == Some("other"));
        let j = dir.path().join("q.json");
        std::fs::write(&j, r#"{"questions": [{"question": "q", "gold": "select 1"}]}"#).unwrap();
        assert_eq!(load_cases(&j).unwrap().len(), 1);
        std::fs::write(&y, "- question: q\n  gold: select 1\n  golden: typo\n").unwrap();
        assert!(load_cases(&y).is_err(), "unknown fields are refused");
    }

    #[test]
    fn benchmark_cases_are_told_apart_by_their_fields_and_parsed_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("cases.json");
        std::fs::write(
            &j,
            r#"[{"database": "shop", "question": "q", "sql": "select 1", "alt_sql": ["select 2"], "ordered": true,
                 "instructions": "Use ILIKE", "category": "instruct", "date_dependent": null},
                {"database": "shop", "question": "r", "sql": "select 3", "alt_sql": null}]"#,
        )
        .unwrap();
        let c = load_cases(&j).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].rule, Rule::Benchmark);
        assert_eq!(c[0].gold, vec!["select 1".to_string(), "select 2".to_string()]);
        assert!(c[0].ordered && c[0].instructions.as_deref() == Some("Use ILIKE"));
        assert_eq!((c[1].gold.len(), c[1].ordered, c[1].database.as_deref()), (1, false, Some("shop")));
        std::fs::write(&j, r#"[{"database": "shop", "question": "q", "sql": "select 1", "golden": 1}]"#).unwrap();
        assert!(load_cases(&j).is_err(), "unknown fields are refused");
        std::fs::write(&j, r#"[{"question": "q", "gold": "select 1"}]"#).unwrap();
        assert_eq!(load_cases(&j).unwrap()[0].rule, Rule::Sqlctl);
    }

    #[test]
    fn the_report_counts_verdicts_per_database_in_first_seen_order() {
        let r = |db: &str, v: Verdict| CaseResult {
            question: "q".into(),
            database: db.into(),
            verdict: v,
            category: None,
            confidence: None,
            generation_ms: 0.0,
            sql: None,
            reason: None,
            expected: None,
            got: None,
        };
        let d = by_database(&[
            r("b", Verdict::Correct),
            r("a", Verdict::Wrong),
            r("b", Verdict::Declined),
            r("b", Verdict::Error),
        ]);
        assert_eq!(d.iter().map(|x| x.database.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!((d[0].total, d[0].correct, d[0].declined, d[0].errors, d[0].wrong), (3, 1, 1, 1, 0));
        assert_eq!((d[1].total, d[1].wrong), (1, 1));
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.95), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
