//! Property tests of the three places hostile input enters (issue "What you approve is what
//! runs"): the spec loader, the SQL guard and the SQS decision parser. They run in CI in seconds
//! (`cargo test --lib proptests`); `scripts/fuzz` runs the same properties for longer
//! (`PROPTEST_CASES`), outside CI.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
#[cfg(feature = "aws")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement, Visit, Visitor};
use proptest::prelude::*;

use crate::guard;
use crate::spec::{EffectiveLimits, EngineKind, sql_digest};

const DB: &str = "tpch";
const TABLES: &[&str] = &["customer", "orders", "lineitem", "nation", "region", "supplier", "part", "partsupp"];

fn known() -> Vec<String> {
    TABLES.iter().map(|t| t.to_string()).collect()
}

fn config() -> ProptestConfig {
    // CI default; `scripts/fuzz` raises it through PROPTEST_CASES.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Fragments a hostile or careless author combines: keywords, names of known and unknown tables,
/// comments of every lexer-dependent kind, string forms, hidden characters, punctuation.
fn fragment() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "select",
        "from",
        "where",
        "union",
        "all",
        "with",
        "as",
        "join",
        "on",
        "group",
        "by",
        "order",
        "limit",
        "insert",
        "into",
        "drop",
        "table",
        "delete",
        "copy",
        "to",
        "explain",
        "analyze",
        "set",
        "values",
        "and",
        "or",
        "not",
        "in",
        "exists",
        "case",
        "when",
        "then",
        "else",
        "end",
        "recursive",
        "lateral",
        "count(*)",
        "*",
        ",",
        "(",
        ")",
        ";",
        "=",
        "<",
        ">",
        "+",
        "-",
        "/",
        "||",
        "::int",
        ".",
        "1",
        "42",
        "1e3",
        "null",
        "nation",
        "region",
        "customer",
        "orders",
        "secrets",
        "tpch.nation",
        "other.nation",
        "n_name",
        "c_phone",
        "\"nation\"",
        "\"NATION\"",
        "`nation`",
        "t",
        "x",
        "read_parquet('/etc/passwd')",
        "--",
        "-- c\n",
        "--\r",
        "/*",
        "*/",
        "/* /* */",
        "*/ */",
        "$$",
        "$$ -- $$",
        "$tag$ x $tag$",
        "'",
        "'it''s'",
        "' -- '",
        "E'\\''",
        "N'x'",
        "U&'x'",
        "X'1f'",
        "$1",
        "?",
        "\r",
        "\n",
        "\t",
        "\u{1b}",
        "\u{202e}",
        "\u{200b}",
        "\u{85}",
        "\u{2028}",
        "\u{feff}",
        "é",
        "aé",
        " ",
    ]);
    prop_oneof![
        8 => words.prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

/// Whitespace and comments of every lexer-dependent kind, some holding a hidden second query.
fn trivia() -> impl Strategy<Value = String> {
    let odd = prop::sample::select(vec![
        "\n",
        "\t",
        " -- c\n",
        " -- union all select c_phone from customer\n",
        "/* x */",
        "/* /* */ union all select c_phone from customer */",
        "/* a /* b */ c */",
        " --\r union all select 1\n",
        "/**/",
        " /* -- */ ",
        "\u{202e}",
        "\u{200b}",
        " \r\n",
    ]);
    // Mostly plain spaces, so that many dressed queries are accepted and the property has teeth.
    prop_oneof![12 => Just(" ".to_string()), 1 => odd.prop_map(str::to_string)]
}

/// Real queries with trivia between their tokens and literal forms swapped in.
fn dressed_query() -> impl Strategy<Value = String> {
    let queries = prop::sample::select(vec![
        "select n_name , count ( * ) from nation join region on n_regionkey = r_regionkey group by n_name",
        "with t as ( select * from customer ) select c_name from t where c_acctbal > 0 order by 1 limit 5",
        "select c_name , 'LIT' from customer where c_custkey in ( select o_custkey from orders )",
        "select * from tpch.nation where n_name like 'LIT' union all select * from nation",
        "select ( select max ( o_totalprice ) from orders ) , r_name from region",
    ]);
    let literal = prop::sample::select(vec![
        "'x'",
        "$$ -- $$",
        "E'a\\''",
        "N'y'",
        "'it''s'",
        "'\u{1b}[2K'",
        "'\u{202e}'",
        "$t$ /* $t$",
    ]);
    (queries, prop::collection::vec(trivia(), 40), literal).prop_map(|(q, trivia, lit)| {
        let mut out = String::new();
        for (i, tok) in q.split(' ').enumerate() {
            out.push_str(if tok == "'LIT'" { lit } else { tok });
            out.push_str(&trivia[i % trivia.len()]);
        }
        out
    })
}

fn soup() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => dressed_query(),
        1 => prop::collection::vec(fragment(), 1..40).prop_map(|v| v.join(" ")),
        1 => prop::collection::vec(fragment(), 1..40).prop_map(|v| v.concat()),
        // Well-formed queries with hostile pieces spliced in.
        1 => (
            prop::sample::select(vec![
                "select n_name from nation",
                "select c_name, c_phone from customer where c_custkey < 10",
                "with t as (select * from nation) select * from t",
                "select count(*) from orders join customer on o_custkey = c_custkey",
            ]),
            fragment(),
            fragment()
        )
            .prop_map(|(q, a, b)| format!("{q} {a} {b}")),
    ]
}

/// Every relation name in `sql`'s AST that is one of the catalog's tables (one-part, or
/// qualified with the database), lower-cased as DataFusion resolves unquoted names.
fn relations_read(sql: &str) -> BTreeSet<String> {
    struct Relations(BTreeSet<String>);
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(|i| if i.quote_style.is_some() { i.value.clone() } else { i.value.to_ascii_lowercase() })
                .collect();
            let table = match parts.as_slice() {
                [t] => Some(t.clone()),
                [db, t] if db == DB => Some(t.clone()),
                _ => None,
            };
            if let Some(t) = table.filter(|t| TABLES.contains(&t.as_str())) {
                self.0.insert(t);
            }
            ControlFlow::Continue(())
        }
    }
    let statements = guard::parse(sql).expect("canonical text parses");
    let mut v = Relations(BTreeSet::new());
    for s in &statements {
        if let DFStatement::Statement(s) = s {
            let _ = s.visit(&mut v);
        }
    }
    v.0
}

proptest! {
    #![proptest_config(config())]

    /// Accepted ⇒ the canonical text is comment-free, free of hidden characters outside string
    /// literals, re-parses to one query, is its own canonical form (same tables), the digest is
    /// over exactly that text, and `tablesUsed` names every catalog table its AST reads.
    #[test]
    fn guard_accepts_only_canonical_single_queries(sql in soup()) {
        let started = Instant::now();
        let result = guard::check(&sql, DB, &known(), &[]);
        prop_assert!(started.elapsed() < Duration::from_secs(5), "the guard took {:?}", started.elapsed());
        if let Ok(c) = result {
            let statements = guard::parse(&c.sql).expect("canonical text parses");
            prop_assert_eq!(statements.len(), 1);
            prop_assert!(matches!(&statements[0], DFStatement::Statement(s) if matches!(s.as_ref(), Statement::Query(_))));
            let again = guard::check(&c.sql, DB, &known(), &[]).expect("canonical text is accepted");
            prop_assert_eq!(&again, &c);
            let limits: EffectiveLimits = crate::spec::QueryRequestSpec::default().effective_limits();
            prop_assert_eq!(
                sql_digest(EngineKind::Local, DB, &c.sql, &limits),
                sql_digest(EngineKind::Local, DB, &again.sql, &limits)
            );
            let read = relations_read(&c.sql);
            for t in &read {
                prop_assert!(c.tables.contains(t), "{t} read but not in tablesUsed {:?} for {:?}", c.tables, c.sql);
            }
            for t in &c.tables {
                prop_assert!(TABLES.contains(&t.as_str()), "unknown table {t} accepted");
            }
        }
    }

    /// Arbitrary bytes, and YAML-shaped text, into the spec loader: never a panic, always an
    /// answer within a bound.
    #[test]
    fn the_spec_loader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let started = Instant::now();
        let text = String::from_utf8_lossy(&bytes);
        let _ = crate::spec::load::parse_str(&text, "fuzz");
        prop_assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn yaml_shaped_specs_never_panic_the_loader(
        name in "[a-z0-9.-]{0,70}",
        key in prop::sample::select(vec!["sql", "question", "limits", "catalog", "approval", "chart", "engine", "x"]),
        value in prop_oneof![
            Just("*a".to_string()), Just("&a [*a, *a]".to_string()), Just("{".to_string()), Just("!!binary AAAA".to_string()),
            Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".to_string()),
            "[ -~]{0,80}",
            any::<String>(),
        ],
        extra in "[ -~\n]{0,200}",
    ) {
        let doc = format!(
            "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n  {key}: {value}\n  catalog:\n    database: tpch\n{extra}\n---\n{extra}"
        );
        let started = Instant::now();
        let _ = crate::spec::load::parse_str(&doc, "fuzz");
        prop_assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// Arbitrary JSON into the SQS decision parser: never a panic, and everything that is not a
/// valid decision for the stored request goes to the dead-letter path with a reason.
#[cfg(feature = "aws")]
mod sqs {
    use super::*;
    use crate::approval::sqs::{Handled, ResponseConsumer, SenderPolicy};
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "q", "default", "approve", "refine", "reject", "alice", "", "\u{202e}", "APPROVE"
            ])
            .prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
        ];
        let field = prop::sample::select(vec![
            "name",
            "namespace",
            "uid",
            "generation",
            "round",
            "sqlDigest",
            "decision",
            "by",
            "comment",
            "feedback",
            "allowOverBudget",
            "extra",
        ]);
        leaf.prop_recursive(3, 32, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(field.clone(), inner, 0..12)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    fn consumer() -> (tokio::runtime::Runtime, ResponseConsumer, tempfile::TempDir) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
        // The client is never called by `handle` (only by polling); it points at nothing.
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let client = aws_sdk_sqs::Client::from_conf(conf);
        let senders = SenderPolicy::parse(Some("AIDAALICE=alice"), None).unwrap();
        (rt, ResponseConsumer::new(client, "http://127.0.0.1:9/q", store, senders), dir)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn decision_messages_never_panic_and_refusals_are_dead_lettered(
            body in prop_oneof![json().prop_map(|v| v.to_string()), ".{0,200}"],
            sender in prop::option::of(prop::sample::select(vec!["AIDAALICE", "AIDASTRANGER", "AROAX:alice", ""])),
        ) {
            let (rt, consumer, _dir) = consumer();
            let handled = rt.block_on(consumer.handle(&body, sender));
            // No request exists, so nothing can be recorded or retried: every message is refused
            // with a reason that names the problem.
            match handled {
                Handled::DeadLettered { reason } => prop_assert!(!reason.is_empty()),
                other => prop_assert!(false, "{body:?} was not dead-lettered: {other:?}"),
            }
        }
    }
}

/// Issue 16: over generated result shapes (zero to three dimensions of text, `EXTRACT` years or
/// `date_trunc` months, one to three measures, NULLs, repeated rows), an `auto` chart draws only
/// the result's cells: every mark equals one measure cell (multiset inclusion) or is the stated
/// "other" sum, and every dimension is on an axis, in the legend or named in the subtitle. When
/// there is no chart, the reason is `NotApplicable` or `Declined`, never an error.
mod charts {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use crate::chart::{NoChart, analyse, draw_typed, parse_number};
    use crate::spec::{ChartSpec, ResultColumn};

    #[derive(Clone, Copy, Debug)]
    enum Dim {
        Text,
        Year,
        Month,
    }

    /// A result: its dimension kinds with how many distinct values each draws from, its
    /// measure count, and its rows as (dimension value indexes, measure cents), `None` for NULL.
    type Shape = (Vec<(Dim, usize)>, usize, Vec<(Vec<Option<usize>>, Vec<Option<i64>>)>);

    fn shape() -> impl Strategy<Value = Shape> {
        let dim = (prop_oneof![Just(Dim::Text), Just(Dim::Year), Just(Dim::Month)], 1usize..12);
        (prop::collection::vec(dim, 0..=3), 1usize..=3).prop_flat_map(|(dims, measures)| {
            let cells: Vec<BoxedStrategy<Option<usize>>> =
                dims.iter().map(|(_, n)| prop::option::weighted(0.9, 0..*n).boxed()).collect();
            let values = prop::collection::vec(prop::option::weighted(0.95, -100_000i64..1_000_000), measures);
            let rows = prop::collection::vec((cells, values), 1..40);
            (Just(dims), Just(measures), rows)
        })
    }

    const DIM_NAMES: [&str; 3] = ["dim_a", "dim_b", "dim_c"];

    fn render((dims, measures, rows): &Shape) -> (String, String, Vec<ResultColumn>) {
        let mut select = Vec::new();
        let mut columns = Vec::new();
        for (i, (kind, _)) in dims.iter().enumerate() {
            let name = DIM_NAMES[i];
            let (expr, type_) = match kind {
                Dim::Text => (format!("c{i} AS {name}"), "varchar"),
                Dim::Year => (format!("EXTRACT(YEAR FROM t{i}) AS {name}"), "integer"),
                Dim::Month => (format!("date_trunc('month', t{i}) AS {name}"), "timestamp"),
            };
            select.push(expr);
            columns.push(ResultColumn { name: name.into(), type_: type_.into(), role: None });
        }
        for m in 0..*measures {
            select.push(format!("SUM(x{m}) AS measure_{m}"));
            columns.push(ResultColumn { name: format!("measure_{m}"), type_: "decimal(20,2)".into(), role: None });
        }
        let group: Vec<String> = (1..=dims.len()).map(|i| i.to_string()).collect();
        let mut sql = format!("SELECT {} FROM t", select.join(", "));
        if !group.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
        }
        let mut csv = columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(",") + "\n";
        for (cells, values) in rows {
            let mut line: Vec<String> = dims
                .iter()
                .zip(cells)
                .map(|((kind, _), c)| match (kind, c) {
                    (_, None) => String::new(),
                    (Dim::Text, Some(v)) => format!("cat {v}"),
                    (Dim::Year, Some(v)) => (1990 + v).to_string(),
                    (Dim::Month, Some(v)) => format!("{}-{:02}-01T00:00:00", 2020 + v / 12, v % 12 + 1),
                })
                .collect();
            let amount = |c: i64| format!("{}{}.{:02}", if c < 0 { "-" } else { "" }, c.abs() / 100, c.abs() % 100);
            line.extend(values.iter().map(|v| v.map(amount).unwrap_or_default()));
            csv.push_str(&line.join(","));
            csv.push('\n');
        }
        (sql, csv, columns)
    }

    proptest! {
        #![proptest_config(super::config())]

        #[test]
        fn auto_charts_draw_only_cells_and_name_every_dimension(s in shape()) {
            let (sql, csv, engine) = render(&s);
            let header: Vec<String> = engine.iter().map(|c| c.name.clone()).collect();
            let analysis = analyse(Some(&sql), &engine, &header);
            let chart = match draw_typed(csv.as_bytes(), &ChartSpec::default(), "t", Some(&analysis)) {
                Ok(chart) => chart,
                Err(NoChart::NotApplicable(_) | NoChart::Declined(_)) => return Ok(()),
                Err(NoChart::Unfit(why)) => return Err(TestCaseError::fail(format!("auto failed: {why}\n{csv}"))),
            };
            crate::chart::tests::check_well_formed(&chart.svg).map_err(TestCaseError::fail)?;
            // Every mark is one cell of a measure (each cell used at most once), or "other".
            let mut cells: HashMap<u64, usize> = HashMap::new();
            for line in csv.lines().skip(1) {
                for cell in line.split(',').skip(s.0.len()) {
                    if let Some(v) = parse_number(cell) {
                        *cells.entry(v.to_bits()).or_default() += 1;
                    }
                }
            }
            let mut others = 0;
            for (v, other) in &chart.drawn {
                if *other {
                    others += 1;
                    continue;
                }
                let left = cells.get_mut(&v.to_bits()).filter(|n| **n > 0);
                prop_assert!(left.is_some(), "mark {v} is no cell of the result\n{csv}\n{}", chart.svg);
                *left.unwrap() -= 1;
            }
            prop_assert!(others <= 3, "at most one \"other\" per series");
            prop_assert!(others == 0 || chart.svg.contains("summed as other"));
            prop_assert_eq!(chart.drawn.len(), chart.marks);
            for name in &DIM_NAMES[..s.0.len()] {
                prop_assert!(chart.svg.contains(name), "{name} is neither shown nor named\n{csv}\n{}", chart.svg);
            }
        }
    }
}
