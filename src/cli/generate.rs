//! `sqlctl generate "QUESTION" --database D [--engine local|athena] [-o sql|json]`: prints the SQL
//! the configured generator proposes, without creating a request.
//!
//! A way to try a generator (or a prompt change) in seconds: the proposal goes through the same
//! steps as in the controller — generate, guard, dry-run plan where the engine can, and up to
//! `--max-attempts` self-corrections with the error fed back — but nothing is stored, approved
//! or run. Exit 1 with the reason when the generator cannot answer.

use std::time::Instant;

use serde::Serialize;

use super::Exit;
use crate::config::Context;
use crate::config::generator::GeneratorOpts;
use crate::engine::{Engine, EngineError};
use crate::generate::{GenerateError, GenerateInput, Generator, SqlProposal};
use crate::guard;
use crate::spec::EngineKind;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Just the SQL (pipe it into `sqlctl ask --sql`).
    Sql,
    /// The whole proposal: sql, confidence, tablesUsed, explanation, assumptions, attempts.
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The question, in plain language.
    pub question: String,
    /// Database to ask.
    #[arg(short, long, default_value = "tpch")]
    pub database: String,
    /// Target engine, which decides the SQL dialect (default: the backend's).
    #[arg(long, value_parser = ["local", "athena"])]
    pub engine: Option<String>,
    /// Allow-list of tables, as `spec.catalog.tables` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "sql")]
    pub output: Output,
    /// Generation attempts (self-correction after a guard or planning error).
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub generator: GeneratorOpts,
}

/// One attempt, as `status.generated.attempts` records it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptReport {
    pub sql: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A proposal that passed the guard (and the planner, where there is one).
#[derive(Clone, Debug)]
pub struct Checked {
    pub proposal: SqlProposal,
    /// Tables the guard found in the SQL.
    pub tables_used: Vec<String>,
    pub attempts: Vec<AttemptReport>,
    /// Time spent in the generator itself (not the guard or the planner), in milliseconds.
    pub generation_ms: f64,
}

/// Why no usable SQL came out.
#[derive(Debug)]
pub enum Failure {
    /// The generator declined: the question is beyond it.
    Declined(String),
    /// Every attempt failed the guard or the planner, or the generator failed.
    Failed(String),
    /// Worth retrying later (throttling, network).
    Transient(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Declined(m) | Failure::Failed(m) | Failure::Transient(m) => m,
        }
    }
}

/// Generates with self-correction exactly as the controller does: each proposal is guarded
/// against `known` tables and the allow-list, then planned by `engine` when given; an error goes
/// back to the generator as `last_error`, up to `max_attempts` times.
pub async fn generate_checked(
    generator: &dyn Generator,
    mut input: GenerateInput,
    known: &[String],
    allowed: &[String],
    engine: Option<&dyn Engine>,
    max_attempts: u32,
) -> (Result<Checked, Failure>, f64) {
    let mut attempts = Vec::new();
    let mut generation_ms = 0.0;
    for _ in 0..max_attempts.max(1) {
        let start = Instant::now();
        let result = generator.generate(&input).await;
        generation_ms += start.elapsed().as_secs_f64() * 1000.0;
        let proposal = match result {
            Ok((p, _)) => p,
            Err(GenerateError::CannotAnswer(m)) => return (Err(Failure::Declined(m)), generation_ms),
            Err(GenerateError::Transient(m)) => return (Err(Failure::Transient(m)), generation_ms),
            Err(GenerateError::Malformed(m)) => {
                attempts.push(AttemptReport { sql: String::new(), error: Some(m.clone()) });
                input.last_error = Some(m);
                continue;
            }
        };
        let sql = proposal.sql.trim().trim_end_matches(';').trim().to_string();
        let checked = match guard::check(&sql, &input.database, known, allowed) {
            Err(e) => Err(format!("guard: {}", e.reason)),
            // The canonical text is what is planned, reported and scored (DESIGN §5).
            Ok(c) => match engine {
                Some(engine) => match engine.plan(&input.database, &c.sql).await {
                    Ok(()) => Ok(c),
                    Err(EngineError::Transient(m)) => return (Err(Failure::Transient(m)), generation_ms),
                    // The engine's setup, not the SQL: not for the model to correct.
                    Err(e @ EngineError::Unavailable { .. }) => {
                        return (Err(Failure::Transient(e.to_string())), generation_ms);
                    }
                    Err(EngineError::Permanent(m)) => Err(format!("planning: {m}")),
                },
                None => Ok(c),
            },
        };
        match checked {
            Ok(c) => {
                attempts.push(AttemptReport { sql: c.sql.clone(), error: None });
                let used = c.tables;
                let proposal = SqlProposal { sql: c.sql, ..proposal };
                return (Ok(Checked { proposal, tables_used: used, attempts, generation_ms }), generation_ms);
            }
            Err(msg) => {
                attempts.push(AttemptReport { sql, error: Some(msg.clone()) });
                input.last_error = Some(msg);
            }
        }
    }
    let last = input.last_error.unwrap_or_else(|| "no usable SQL".into());
    (
        Err(Failure::Failed(format!("no valid SQL after {} attempts; last error: {last}", max_attempts.max(1)))),
        generation_ms,
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    sql: &'a str,
    confidence: f64,
    tables_used: &'a [String],
    explanation: &'a str,
    assumptions: &'a [String],
    model: String,
    engine: &'a str,
    database: &'a str,
    attempts: &'a [AttemptReport],
    generation_ms: f64,
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let question = self.question.trim();
        if question.is_empty() {
            return Err(Exit::usage("generate needs a QUESTION"));
        }
        let kind = match self.engine.as_deref() {
            Some("athena") => EngineKind::Athena,
            Some(_) => EngineKind::Local,
            None => g.default_engine(),
        };
        let Some(generator) = self.generator.build(&g.backend).await? else {
            return Err(Exit::refused(
                "no SQL generator is configured (--generator none); pick offline, bedrock or openai",
            ));
        };
        let catalog = crate::config::generator::catalog_for(g, &self.generator).await?;
        let tables = catalog.tables(&self.database).await?;
        let known: Vec<String> = tables.iter().map(|t| t.name.to_ascii_lowercase()).collect();
        let engines = g.engines().await?;
        let engine = engines.get(&kind).cloned();
        let input = GenerateInput {
            question: question.to_string(),
            database: self.database.clone(),
            engine: kind,
            tables,
            history: vec![],
            last_error: None,
            instructions: vec![],
            follow_up: None,
            semantic: None,
            examples: vec![],
        };
        let (result, _) =
            generate_checked(generator.as_ref(), input, &known, &self.tables, engine.as_deref(), self.max_attempts)
                .await;
        let checked = match result {
            Ok(c) => c,
            Err(Failure::Declined(m)) => return Err(Exit::refused(format!("cannot answer: {m}"))),
            Err(f) => return Err(Exit::refused(f.message().to_string())),
        };
        match self.output {
            Output::Sql => println!("{}", checked.proposal.sql),
            Output::Json => {
                let report = Report {
                    sql: &checked.proposal.sql,
                    confidence: checked.proposal.confidence.clamp(0.0, 1.0),
                    tables_used: &checked.tables_used,
                    explanation: &checked.proposal.explanation,
                    assumptions: &checked.proposal.assumptions,
                    model: generator.model(),
                    engine: kind.as_str(),
                    database: &self.database,
                    attempts: &checked.attempts,
                    generation_ms: (checked.generation_ms * 1000.0).round() / 1000.0,
                };
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use async_trait::async_trait;

    /// A generator that replays canned answers and records the errors it was shown.
    struct Scripted {
        answers: Mutex<Vec<Result<&'static str, GenerateError>>>,
        seen_errors: Mutex<Vec<Option<String>>>,
    }

    #[async_trait]
    impl Generator for Scripted {
        fn model(&self) -> String {
            "test/scripted".into()
        }
        async fn generate(&self, input: &GenerateInput) -> Result<(SqlProposal, Option<(u64, u64)>), GenerateError> {
            self.seen_errors.lock().unwrap().push(input.last_error.clone());
            let next = self.answers.lock().unwrap().remove(0)?;
            Ok((
                SqlProposal {
                    sql: next.into(),
                    explanation: String::new(),
                    tables_used: vec![],
                    confidence: 0.5,
                    assumptions: vec![],
                },
                None,
            ))
        }
    }

    fn input() -> GenerateInput {
        GenerateInput {
            question: "q".into(),
            database: "tpch".into(),
            engine: EngineKind::Local,
            tables: vec![],
            history: vec![],
            last_error: None,
            instructions: vec![],
            follow_up: None,
            semantic: None,
            examples: vec![],
        }
    }

    #[tokio::test]
    async fn a_guard_refusal_goes_back_to_the_generator_once_per_attempt() {
        let g = Scripted {
            answers: Mutex::new(vec![Ok("delete from orders"), Ok("select count(*) from orders")]),
            seen_errors: Mutex::default(),
        };
        let known = vec!["orders".to_string()];
        let (r, _) = generate_checked(&g, input(), &known, &[], None, 3).await;
        let c = r.unwrap();
        // What is reported (and would be digested and run) is the guard's canonical text.
        assert_eq!(c.proposal.sql, "SELECT count(*) FROM orders");
        assert_eq!(c.attempts.len(), 2);
        assert!(c.attempts[0].error.as_deref().unwrap().starts_with("guard: "));
        let seen = g.seen_errors.lock().unwrap();
        assert_eq!(seen[0], None);
        assert!(seen[1].as_deref().unwrap().contains("DML"), "{seen:?}");
    }

    #[tokio::test]
    async fn declines_and_exhausted_attempts_are_told_apart() {
        let g = Scripted {
            answers: Mutex::new(vec![Err(GenerateError::CannotAnswer("no idea".into()))]),
            seen_errors: Mutex::default(),
        };
        let (r, _) = generate_checked(&g, input(), &[], &[], None, 3).await;
        assert!(matches!(r, Err(Failure::Declined(m)) if m == "no idea"));

        let g = Scripted {
            answers: Mutex::new(vec![Ok("select * from nope"), Ok("select * from nope")]),
            seen_errors: Mutex::default(),
        };
        let (r, _) = generate_checked(&g, input(), &["orders".to_string()], &[], None, 2).await;
        match r {
            Err(Failure::Failed(m)) => assert!(m.contains("after 2 attempts") && m.contains("does not exist"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
