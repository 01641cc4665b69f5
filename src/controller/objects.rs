//! Drift: keeping `SemanticModel`s and `VerifiedQuery`s planned against the catalog.
//!
//! Every [`ControllerConfig::plan_interval`](super::ControllerConfig) the leader lists both
//! kinds and re-plans an object when its spec has a generation it has not planned, or when a
//! table it reads changed shape (column names, types, partition keys) since it was last planned
//! (`status.tableShapes`). Planning is what requests get before approval, never an execution:
//!
//! * a verified query: its template checked against the catalog's tables
//!   (`guard::template::check_template_known`), then its example instantiation planned by the
//!   engine; the status records the canonical template and its digest;
//! * a semantic model: every metric and filter as `SELECT <expression> FROM <table>`, every
//!   time dimension and described column as `SELECT <column> FROM <table>`, every relationship
//!   as a join on its keys; each planned by the engine.
//!
//! One that plans gets `Stale=False`; one that does not gets `Stale=True` with the errors, and
//! generation (and auto-approval) does not use it until it is fixed or the catalog changes back.
//! Status writes are fenced like every controller write. A transient catalog or engine failure
//! leaves the status alone and is retried on the next tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::watch;

use super::{Context, wait_true};
use crate::catalog::{CatalogError, Table};
use crate::engine::{Engine, EngineError};
use crate::guard::template::check_template_known;
use crate::spec::digest::token;
use crate::spec::{Object, ObjectKind, ObjectStatus, STALE_CONDITION, SemanticModel, VerifiedQuery};
use crate::store::LabelSelector;

/// Most planning errors quoted in a `Stale` condition.
const MAX_ERRORS_SHOWN: usize = 5;

/// The shape of a table as drift compares it: a digest of its columns and partition keys.
pub fn table_shape(t: &Table) -> String {
    let mut parts: Vec<String> = vec![t.name.clone()];
    parts.extend(t.columns.iter().map(|c| format!("c:{}:{}", c.name, c.data_type)));
    parts.extend(t.partition_keys.iter().map(|c| format!("p:{}:{}", c.name, c.data_type)));
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    token(&refs)
}

/// Shape of a table the catalog does not have.
const ABSENT: &str = "absent";

/// The shapes of `tables` now: each table's digest, or `absent`.
fn shapes(catalog: &[Table], tables: &[String]) -> BTreeMap<String, String> {
    tables
        .iter()
        .map(|name| {
            let shape = catalog.iter().find(|t| &t.name == name).map(table_shape).unwrap_or_else(|| ABSENT.into());
            (name.clone(), shape)
        })
        .collect()
}

/// Does `obj` need planning against `catalog` (its tables as they are now)?
pub fn needs_plan(obj: &Object, catalog: &[Table]) -> bool {
    let Some(st) = obj.status() else { return true };
    if st.observed_generation != obj.generation() || st.table_shapes.is_empty() {
        return true;
    }
    let tables: Vec<String> = st.table_shapes.keys().cloned().collect();
    shapes(catalog, &tables) != st.table_shapes
}

/// The outcome of planning one object: its new status, or a transient failure to retry.
pub async fn plan(obj: &Object, catalog: &[Table], engine: &dyn Engine) -> Result<ObjectStatus, String> {
    let mut st = obj.status().cloned().unwrap_or_default();
    let (tables, errors) = match obj {
        Object::VerifiedQuery(vq) => plan_verified(vq, catalog, engine, &mut st).await?,
        Object::SemanticModel(sm) => plan_model(sm, catalog, engine).await?,
    };
    st.observed_generation = obj.generation();
    st.planned_at = Some(chrono::Utc::now());
    st.table_shapes = shapes(catalog, &tables);
    if errors.is_empty() {
        st.set_condition(STALE_CONDITION, "False", "Planned", "plans against the catalog");
    } else {
        let mut shown: Vec<String> = errors.iter().take(MAX_ERRORS_SHOWN).cloned().collect();
        if errors.len() > MAX_ERRORS_SHOWN {
            shown.push(format!("and {} more", errors.len() - MAX_ERRORS_SHOWN));
        }
        st.set_condition(STALE_CONDITION, "True", "PlanFailed", shown.join("; "));
    }
    Ok(st)
}

/// Plans `sql` on `database`: `Ok(None)` when it plans, `Ok(Some(why))` when it does not,
/// `Err` when the engine cannot say now.
async fn plan_sql(engine: &dyn Engine, database: &str, sql: &str) -> Result<Option<String>, String> {
    match engine.plan(database, sql).await {
        Ok(()) => Ok(None),
        Err(EngineError::Permanent(m)) => Ok(Some(m)),
        Err(e @ (EngineError::Transient(_) | EngineError::Unavailable { .. })) => Err(e.to_string()),
    }
}

async fn plan_verified(
    vq: &VerifiedQuery,
    catalog: &[Table],
    engine: &dyn Engine,
    st: &mut ObjectStatus,
) -> Result<(Vec<String>, Vec<String>), String> {
    let known: Vec<String> = catalog.iter().map(|t| t.name.clone()).collect();
    // The tables the template reads (even when the catalog lost one): from the catalog-free check.
    let read = crate::guard::template::check_template(vq).map(|t| t.tables).unwrap_or_default();
    match check_template_known(vq, &known) {
        Err(e) => {
            st.canonical_sql = None;
            st.template_digest = None;
            Ok((read, vec![e.message]))
        }
        Ok(t) => {
            let example = crate::guard::template::instantiate(vq, &t.examples).map_err(|e| e.message);
            let errors = match example {
                Err(m) => vec![m],
                Ok(sql) => plan_sql(engine, &vq.spec.database, &sql).await?.into_iter().collect(),
            };
            st.canonical_sql = Some(t.canonical);
            st.template_digest = Some(t.digest);
            Ok((t.tables, errors))
        }
    }
}

async fn plan_model(
    sm: &SemanticModel,
    catalog: &[Table],
    engine: &dyn Engine,
) -> Result<(Vec<String>, Vec<String>), String> {
    let db = sm.spec.database.as_str();
    let s = &sm.spec;
    let mut errors = Vec::new();
    let has = |t: &str| catalog.iter().any(|c| c.name == t);
    for t in sm.tables() {
        if !has(&t) {
            errors.push(format!("table {t:?} does not exist in database {db:?}"));
        }
    }
    // (what, SQL) pairs, each planned on its own so every broken part is named.
    let mut checks: Vec<(String, String)> = Vec::new();
    for t in s.tables.iter().filter(|t| has(&t.name)) {
        if !t.columns.is_empty() {
            let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            checks.push((format!("table {}", t.name), format!("SELECT {} FROM {}", cols.join(", "), t.name)));
        }
    }
    for r in s.relationships.iter().filter(|r| has(&r.left_table) && has(&r.right_table)) {
        let on: Vec<String> = r.columns.iter().map(|c| format!("l.{} = r.{}", c.left, c.right)).collect();
        let what = r.name.clone().unwrap_or_else(|| format!("{}-{}", r.left_table, r.right_table));
        checks.push((
            format!("relationship {what}"),
            format!("SELECT 1 FROM {} AS l JOIN {} AS r ON {}", r.left_table, r.right_table, on.join(" AND ")),
        ));
    }
    for m in &s.metrics {
        if let Some(t) = sm.expression_table(m.table.as_deref()).filter(|t| has(t)) {
            checks.push((format!("metric {}", m.name), format!("SELECT {} FROM {t}", m.expression)));
        }
    }
    for f in &s.filters {
        if let Some(t) = sm.expression_table(f.table.as_deref()).filter(|t| has(t)) {
            checks.push((format!("filter {}", f.name), format!("SELECT 1 FROM {t} WHERE {}", f.expression)));
        }
    }
    for d in s.time_dimensions.iter().filter(|d| has(&d.table)) {
        checks.push((format!("time dimension {}", d.name), format!("SELECT {} FROM {}", d.column, d.table)));
    }
    let known: Vec<String> = catalog.iter().map(|t| t.name.clone()).collect();
    for (what, sql) in checks {
        // The guard first (read-only, known tables), as for every SQL the engine sees.
        match crate::guard::check(&sql, db, &known, &[]) {
            Err(e) => errors.push(format!("{what}: {}", e.reason)),
            Ok(checked) => {
                if let Some(why) = plan_sql(engine, db, &checked.sql).await? {
                    errors.push(format!("{what}: {why}"));
                }
            }
        }
    }
    Ok((sm.tables(), errors))
}

/// One pass: every object of both kinds that needs it is planned and its status written.
/// Returns how many statuses were written.
pub async fn plan_all(ctx: &Context) -> Result<usize, String> {
    let Some(engine) = ctx.engines.get(&ctx.config.default_engine).cloned() else {
        return Err(format!("the default engine {} is not configured", ctx.config.default_engine.as_str()));
    };
    let fence = ctx.fence().map_err(|e| e.to_string())?;
    let mut catalogs: HashMap<String, Vec<Table>> = HashMap::new();
    let mut written = 0;
    for kind in [ObjectKind::SemanticModel, ObjectKind::VerifiedQuery] {
        let objects = ctx.store.list_objects(kind, None, &LabelSelector::new()).await.map_err(|e| e.to_string())?;
        for obj in objects {
            let db = obj.database().to_string();
            if !catalogs.contains_key(&db) {
                let tables = match ctx.catalog.tables(&db).await {
                    Ok(t) => t,
                    Err(CatalogError::Transient(m)) => return Err(m),
                    // A database the catalog does not have: every table is absent.
                    Err(_) => Vec::new(),
                };
                catalogs.insert(db.clone(), tables);
            }
            let catalog = &catalogs[&db];
            if !needs_plan(&obj, catalog) {
                continue;
            }
            let was_stale = obj.status().map(ObjectStatus::is_stale);
            let status = plan(&obj, catalog, engine.as_ref()).await?;
            let stale = status.is_stale();
            let mut updated = obj.clone();
            *updated.status_mut() = Some(status);
            match ctx.store.update_object_status(&updated, Some(&fence)).await {
                Ok(_) => {
                    written += 1;
                    let message =
                        updated.status().and_then(|s| s.condition(STALE_CONDITION)).map(|c| c.message.clone());
                    if stale && was_stale != Some(true) {
                        tracing::warn!(kind = %kind, key = %obj.key(), generation = obj.generation(), error = %message.unwrap_or_default(), "no longer plans: Stale");
                    } else {
                        tracing::info!(kind = %kind, key = %obj.key(), generation = obj.generation(), stale, "planned");
                    }
                }
                // Changed meanwhile: the next pass sees the new version.
                Err(crate::store::StoreError::Conflict { .. } | crate::store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(written)
}

/// The leader's planning loop: [`plan_all`] every `plan_interval`, until shutdown.
pub(super) async fn plan_loop(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ctx.config.plan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_true(&mut shutdown) => return,
        }
        if let Err(e) = plan_all(&ctx).await {
            ctx.metrics.store_error("plan_objects");
            tracing::warn!(error = %e, "planning semantic models and verified queries failed; will retry");
        }
    }
}
