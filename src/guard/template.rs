//! Verified-query templates and semantic-model expressions, read with the guard's own parser.
//!
//! A template is one read-only query with named placeholders (`:region`) where the literals a
//! question supplies go, each declared once in `spec.parameters` with a type: `string` (a
//! single-quoted string), `number` (a numeric literal) or `date` (`DATE 'YYYY-MM-DD'`).
//!
//! * [`check_template`] proves a template sound: it parses, its placeholders and declarations
//!   agree, the query with every placeholder bound to its example passes the guard, and the
//!   canonical template (the guard's rendering, placeholders in place) matches that query back
//!   with exactly the examples. Its digest is [`crate::spec::verified::template_digest`].
//! * [`matches`] says whether a canonical SQL text is an instantiation of a template: the two
//!   ASTs are equal everywhere except that each placeholder position holds one literal of its
//!   declared type (the same literal wherever one placeholder appears twice). It compares
//!   parsed statements, never text, and evaluates nothing.
//! * [`instantiate`] binds values and returns the guard's canonical text of the result.
//! * [`propose`] turns SQL that ran into a template: which literals become parameters
//!   (`sqlctl verify`).
//!
//! How positions are compared: both statements are walked in the visitor's pre-order over
//! expressions. A placeholder and a literal are both leaves (no expression below them), so
//! binding one for the other never shifts the numbering of what follows: the template's
//! placeholder positions index the candidate's expressions directly. The candidate's literals at
//! those positions are swapped for the placeholders and the statements must then be equal, so a
//! candidate that differs anywhere else (a token, a table, an operator) is refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, Query, SelectItem, SetExpr, Statement, TypedString, Value, Visit, VisitMut,
    Visitor, VisitorMut,
};

use super::{GuardError, check_read_only, check_with, parse};
use crate::spec::load::Document;
use crate::spec::semantic::SemanticModel;
use crate::spec::validate::FieldError;
use crate::spec::verified::{ParameterType, TemplateParameter, VerifiedQuery, is_date, template_digest};
use crate::spec::{Object, text::escape_hidden};

/// A literal bound to a placeholder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Literal {
    /// A single-quoted string's value.
    Text(String),
    /// A number as written (`10`, `0.05`).
    Number(String),
    /// A date `YYYY-MM-DD`, written `DATE 'YYYY-MM-DD'`.
    Date(String),
}

impl Literal {
    pub fn type_(&self) -> ParameterType {
        match self {
            Literal::Text(_) => ParameterType::String,
            Literal::Number(_) => ParameterType::Number,
            Literal::Date(_) => ParameterType::Date,
        }
    }

    /// The value as `example` holds it (no quotes).
    pub fn value(&self) -> &str {
        match self {
            Literal::Text(s) | Literal::Number(s) | Literal::Date(s) => s,
        }
    }

    /// The literal of `type_` holding `value`, if `value` is one.
    pub fn typed(type_: ParameterType, value: &str) -> Option<Literal> {
        type_.admits(value).then(|| match type_ {
            ParameterType::String => Literal::Text(value.to_string()),
            ParameterType::Number => Literal::Number(value.to_string()),
            ParameterType::Date => Literal::Date(value.to_string()),
        })
    }

    fn to_expr(&self) -> Expr {
        match self {
            Literal::Text(s) => Expr::Value(Value::SingleQuotedString(s.clone()).with_empty_span()),
            Literal::Number(n) => Expr::Value(Value::Number(n.clone(), false).with_empty_span()),
            Literal::Date(d) => Expr::TypedString(TypedString {
                data_type: DataType::Date,
                value: Value::SingleQuotedString(d.clone()).with_empty_span(),
                uses_odbc_syntax: false,
            }),
        }
    }

    /// The literal `expr` is, if it is one of the three forms.
    fn from_expr(expr: &Expr) -> Option<Literal> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Some(Literal::Text(s.clone())),
                Value::Number(n, false) => Some(Literal::Number(n.clone())),
                _ => None,
            },
            Expr::TypedString(TypedString { data_type: DataType::Date, value, uses_odbc_syntax: false }) => {
                match &value.value {
                    Value::SingleQuotedString(s) if is_date(s) => Some(Literal::Date(s.clone())),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_expr().fmt(f)
    }
}

/// Values bound to a template's placeholders, by parameter name.
pub type Bindings = BTreeMap<String, Literal>;

/// A template the guard accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The canonical template: the guard's rendering, with `:name` placeholders.
    pub canonical: String,
    /// sha256 of the canonical template ([`template_digest`]).
    pub digest: String,
    /// Tables the query reads.
    pub tables: Vec<String>,
    /// The examples, as bindings.
    pub examples: Bindings,
}

/// Why a template (or a binding of one) was refused, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// `spec.sql`, `spec.parameters[2].name`, …
    pub path: String,
    pub message: String,
}

impl TemplateError {
    fn sql(message: impl Into<String>) -> Self {
        TemplateError { path: "spec.sql".into(), message: message.into() }
    }
}

impl From<TemplateError> for FieldError {
    fn from(e: TemplateError) -> Self {
        FieldError::new(e.path, e.message)
    }
}

/// Parses one query statement.
fn parse_query(sql: &str) -> Result<Box<Query>, GuardError> {
    let mut statements = parse(sql)?;
    if statements.len() != 1 {
        return Err(GuardError::new(format!("{} statements; a template is exactly one query", statements.len())));
    }
    match statements.pop() {
        Some(DFStatement::Statement(s)) => match *s {
            Statement::Query(q) => Ok(q),
            _ => Err(GuardError::new("a template must be a SELECT query")),
        },
        _ => Err(GuardError::new("a template must be a SELECT query")),
    }
}

/// Runs `f` on a thread with the guard's large stack: ASTs of hostile input are deep.
fn on_guard_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sqlctl-template".into())
            .stack_size(super::GUARD_STACK_BYTES)
            .spawn_scoped(scope, f)
            .expect("template thread starts")
            .join()
            .expect("template thread does not panic")
    })
}

/// A placeholder expression `:name`.
fn placeholder(name: &str) -> Expr {
    Expr::Value(Value::Placeholder(format!(":{name}")).with_empty_span())
}

/// The parameter name of a `:name` placeholder; `Err` for other placeholder forms.
fn placeholder_name(expr: &Expr) -> Option<Result<String, String>> {
    let Expr::Value(v) = expr else { return None };
    let Value::Placeholder(p) = &v.value else { return None };
    Some(match p.strip_prefix(':') {
        Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Ok(name.to_string())
        }
        _ => Err(p.clone()),
    })
}

/// Pre-order positions of the placeholders in `q`: (index among all expressions, name).
fn placeholder_positions(q: &Query) -> Result<Vec<(usize, String)>, String> {
    struct Find {
        index: usize,
        found: Vec<(usize, String)>,
    }
    impl Visitor for Find {
        type Break = String;
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
            if let Some(p) = placeholder_name(expr) {
                match p {
                    Ok(name) => self.found.push((self.index, name)),
                    Err(other) => {
                        return ControlFlow::Break(format!(
                            "placeholder `{}` is not a named placeholder; write :name and declare name in spec.parameters",
                            escape_hidden(&other)
                        ));
                    }
                }
            }
            self.index += 1;
            ControlFlow::Continue(())
        }
    }
    let mut find = Find { index: 0, found: Vec::new() };
    match q.visit(&mut find) {
        ControlFlow::Break(m) => Err(m),
        ControlFlow::Continue(()) => Ok(find.found),
    }
}

/// Replaces the expressions at `positions` (pre-order indices) by the result of `f`, which
/// sees each one and may refuse it.
fn replace_at<F>(q: &mut Query, positions: &HashMap<usize, String>, mut f: F) -> Result<(), String>
where
    F: FnMut(&str, &Expr) -> Result<Expr, String>,
{
    struct Replace<'a, F> {
        index: usize,
        positions: &'a HashMap<usize, String>,
        f: &'a mut F,
    }
    impl<F: FnMut(&str, &Expr) -> Result<Expr, String>> VisitorMut for Replace<'_, F> {
        type Break = String;
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
            if let Some(name) = self.positions.get(&self.index) {
                match (self.f)(name, expr) {
                    Ok(new) => *expr = new,
                    Err(m) => return ControlFlow::Break(m),
                }
            }
            self.index += 1;
            ControlFlow::Continue(())
        }
    }
    let mut r = Replace { index: 0, positions, f: &mut f };
    match VisitMut::visit(q, &mut r) {
        ControlFlow::Break(m) => Err(m),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The template's placeholders, checked against its declarations: every placeholder declared,
/// every declaration used.
fn declared_positions(vq: &VerifiedQuery, q: &Query) -> Result<HashMap<usize, String>, TemplateError> {
    let found = placeholder_positions(q).map_err(TemplateError::sql)?;
    let used: BTreeSet<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    for name in &used {
        if vq.parameter(name).is_none() {
            return Err(TemplateError::sql(format!(
                "placeholder :{name} is not declared in spec.parameters (declare it with a type and an example)"
            )));
        }
    }
    for (i, p) in vq.spec.parameters.iter().enumerate() {
        if !used.contains(p.name.as_str()) {
            return Err(TemplateError {
                path: format!("spec.parameters[{i}].name"),
                message: format!(
                    "parameter {:?} does not appear in spec.sql (write :{} where it goes)",
                    p.name, p.name
                ),
            });
        }
    }
    Ok(found.into_iter().collect())
}

/// Binds `bindings` into the parsed template and returns the SQL text (not yet canonical).
fn bind(
    vq: &VerifiedQuery,
    q: &Query,
    positions: &HashMap<usize, String>,
    bindings: &Bindings,
) -> Result<String, TemplateError> {
    let mut q = q.clone();
    replace_at(&mut q, positions, |name, _| {
        let p = vq.parameter(name).ok_or_else(|| format!("placeholder :{name} is not declared"))?;
        let lit = bindings.get(name).ok_or_else(|| format!("no value for parameter {name:?}"))?;
        if lit.type_() != p.type_ || !p.type_.admits(lit.value()) {
            return Err(format!(
                "parameter {name:?} is a {}; {} is not one",
                p.type_.as_str(),
                escape_hidden(&lit.to_string())
            ));
        }
        Ok(lit.to_expr())
    })
    .map_err(TemplateError::sql)?;
    Ok(q.to_string())
}

/// The examples of `vq` as bindings.
pub fn examples(vq: &VerifiedQuery) -> Result<Bindings, TemplateError> {
    vq.spec
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Literal::typed(p.type_, &p.example).map(|l| (p.name.clone(), l)).ok_or_else(|| TemplateError {
                path: format!("spec.parameters[{i}].example"),
                message: format!("{:?} is not a {}", p.example, p.type_.as_str()),
            })
        })
        .collect()
}

/// Checks a template without a catalog (table existence is the controller's): see the module
/// docs. `apply` and `verify` refuse what this refuses.
pub fn check_template(vq: &VerifiedQuery) -> Result<Template, TemplateError> {
    check_template_with(vq, None)
}

/// [`check_template`] against the catalog's tables of the database (the controller's re-plan).
pub fn check_template_known(vq: &VerifiedQuery, known_tables: &[String]) -> Result<Template, TemplateError> {
    check_template_with(vq, Some(known_tables))
}

fn check_template_with(vq: &VerifiedQuery, known: Option<&[String]>) -> Result<Template, TemplateError> {
    let db = vq.spec.database.as_str();
    let examples = examples(vq)?;
    let (positions, bound) = on_guard_stack(|| {
        let q = parse_query(&vq.spec.sql).map_err(|e| TemplateError::sql(e.reason))?;
        let positions = declared_positions(vq, &q)?;
        let bound = bind(vq, &q, &positions, &examples)?;
        Ok::<_, TemplateError>((positions, bound))
    })?;
    // The query with its examples is what ran: the guard must accept it like any request.
    let checked = check_with(&bound, db, known, &[])
        .map_err(|e| TemplateError::sql(format!("with the examples bound, the query is refused: {}", e.reason)))?;
    let canonical = on_guard_stack(|| {
        let mut q = parse_query(&checked.sql).map_err(|e| TemplateError::sql(e.reason))?;
        replace_at(&mut q, &positions, |name, _| Ok(placeholder(name))).map_err(TemplateError::sql)?;
        let text = q.to_string();
        // The canonical template must read back as itself.
        let again = parse_query(&text).map_err(|e| TemplateError::sql(e.reason))?;
        if again != q {
            return Err(TemplateError::sql(
                "this template has no canonical form (re-rendered, it does not read back the same); write it more plainly",
            ));
        }
        Ok(text)
    })?;
    let digest = template_digest(db, &canonical, &vq.spec.parameters);
    let template = Template { canonical, digest, tables: checked.tables, examples };
    if matches_canonical(vq, &template.canonical, &checked.sql).as_ref() != Some(&template.examples) {
        return Err(TemplateError::sql(
            "the template does not match its own example query back (a placeholder sits where the examples cannot be told apart); move or rename the placeholders",
        ));
    }
    Ok(template)
}

/// The canonical SQL of `vq` with `bindings` bound (each value of its parameter's type): one
/// read-only query the guard accepted, ready for the approval digest.
pub fn instantiate(vq: &VerifiedQuery, bindings: &Bindings) -> Result<String, TemplateError> {
    let bound = on_guard_stack(|| {
        let q = parse_query(&vq.spec.sql).map_err(|e| TemplateError::sql(e.reason))?;
        let positions = declared_positions(vq, &q)?;
        bind(vq, &q, &positions, bindings)
    })?;
    check_read_only(&bound, &vq.spec.database, &[])
        .map(|c| c.sql)
        .map_err(|e| TemplateError::sql(format!("with these values bound, the query is refused: {}", e.reason)))
}

/// The bindings under which `canonical_sql` is exactly an instantiation of `vq`'s template (see
/// the module docs), or None. `canonical_sql` is what will run: the guard's canonical text.
///
/// The template is re-checked from the spec each time (never taken from a status that may
/// describe another generation).
pub fn matches(vq: &VerifiedQuery, canonical_sql: &str) -> Option<Bindings> {
    let template = check_template(vq).ok()?;
    matches_canonical(vq, &template.canonical, canonical_sql)
}

/// A cheap necessary condition for [`matches`], on text alone: `candidate` holds the text of
/// the canonical `template` between its placeholders, in order, starting with its first piece
/// and ending with its last. (A canonical rendering is compositional: an instantiation's text
/// differs from the template's only where a placeholder stands.) Lets the controller pass over
/// most verified queries without parsing anything.
pub fn could_match(template: &str, candidate: &str) -> bool {
    let b = template.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b':' && b.get(i + 1).is_some_and(|c| c.is_ascii_lowercase() || *c == b'_') {
            pieces.push(&template[start..i]);
            i += 1;
            while b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                i += 1;
            }
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&template[start..]);
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !candidate.starts_with(first) || !candidate[first.len()..].ends_with(last) {
        return pieces.len() == 1 && candidate == template;
    }
    if pieces.len() == 1 {
        return candidate == template;
    }
    let mut at = first.len();
    let end = candidate.len() - last.len();
    for piece in &pieces[1..pieces.len() - 1] {
        match candidate.get(at..end).and_then(|rest| rest.find(piece)) {
            Some(k) => at += k + piece.len(),
            None => return false,
        }
    }
    at <= end
}

fn matches_canonical(vq: &VerifiedQuery, template: &str, candidate: &str) -> Option<Bindings> {
    on_guard_stack(|| {
        let t = parse_query(template).ok()?;
        let positions: HashMap<usize, String> = placeholder_positions(&t).ok()?.into_iter().collect();
        let mut c = parse_query(candidate).ok()?;
        let mut bindings = Bindings::new();
        replace_at(&mut c, &positions, |name, expr| {
            let p = vq.parameter(name).ok_or_else(String::new)?;
            let lit = Literal::from_expr(expr).filter(|l| l.type_() == p.type_).ok_or_else(String::new)?;
            match bindings.get(name) {
                Some(prev) if *prev != lit => return Err(String::new()),
                _ => {
                    bindings.insert(name.to_string(), lit);
                }
            }
            Ok(placeholder(name))
        })
        .ok()?;
        (c == t).then_some(bindings)
    })
}

/// Which literals of `sql` (SQL that ran) a question supplies, as a template: `(template SQL,
/// parameters)`. Dates (`DATE '…'`) anywhere; strings and numbers compared with a column
/// (`=`, `<>`, `<`, `>`, `<=`, `>=`, `LIKE`, `IN (…)`, `BETWEEN`); the number of a `LIMIT`.
/// Other literals (`1 - l_discount`, `date_trunc('month', …)`) stay as they are. `column_table`
/// names the table of a bare column when the caller knows it (from the catalog).
pub fn propose(
    sql: &str,
    column_table: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<(String, Vec<TemplateParameter>), GuardError> {
    on_guard_stack(|| {
        let mut q = parse_query(sql)?;
        let mut p = Proposer { params: Vec::new(), column_table };
        if let Some(datafusion::sql::sqlparser::ast::LimitClause::LimitOffset { limit: Some(limit), .. }) =
            q.limit_clause.as_mut()
            && let Some(Literal::Number(n)) = Literal::from_expr(limit)
        {
            let name = p.name_for("limit");
            p.params.push(TemplateParameter {
                name: name.clone(),
                type_: ParameterType::Number,
                column: None,
                example: n,
                description: Some("how many rows".into()),
            });
            *limit = placeholder(&name);
        }
        let _ = VisitMut::visit(&mut *q, &mut p);
        Ok((q.to_string(), p.params))
    })
}

struct Proposer<'a> {
    params: Vec<TemplateParameter>,
    column_table: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

impl Proposer<'_> {
    fn name_for(&self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect::<String>()
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '_')
            .to_string();
        let base = if base.is_empty() { "p".to_string() } else { base };
        let taken = |n: &str| self.params.iter().any(|p| p.name == n);
        if !taken(&base) {
            return base;
        }
        (2..).map(|i| format!("{base}_{i}")).find(|n| !taken(n)).expect("a free name")
    }

    /// Makes `expr` a parameter if it is a literal worth one (`column` is what it is compared
    /// with, if anything).
    fn take(&mut self, expr: &mut Expr, column: Option<String>) {
        let Some(lit) = Literal::from_expr(expr) else { return };
        if column.is_none() && !matches!(lit, Literal::Date(_)) {
            return;
        }
        let bare = column.as_deref().map(|c| c.rsplit('.').next().unwrap_or(c).to_string());
        let name = self.name_for(bare.as_deref().unwrap_or(match lit {
            Literal::Date(_) => "date",
            _ => "p",
        }));
        let column = bare.map(|b| match (self.column_table)(&b) {
            Some(t) => format!("{t}.{b}"),
            None => b,
        });
        self.params.push(TemplateParameter {
            name: name.clone(),
            type_: lit.type_(),
            column,
            example: lit.value().to_string(),
            description: None,
        });
        *expr = placeholder(&name);
    }
}

/// The column an expression names (`c_name`, `c.c_name`), if it is one.
fn column_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        Expr::Nested(e) => column_of(e),
        _ => None,
    }
}

impl VisitorMut for Proposer<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::BinaryOp {
                left,
                op:
                    BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq,
                right,
            } => {
                if let Some(c) = column_of(left) {
                    self.take(right, Some(c));
                } else if let Some(c) = column_of(right) {
                    self.take(left, Some(c));
                }
            }
            Expr::Like { expr: col, pattern, .. } | Expr::ILike { expr: col, pattern, .. } => {
                if let Some(c) = column_of(col) {
                    self.take(pattern, Some(c));
                }
            }
            Expr::InList { expr: col, list, .. } => {
                if let Some(c) = column_of(col) {
                    for item in list.iter_mut() {
                        self.take(item, Some(c.clone()));
                    }
                }
            }
            Expr::Between { expr: col, low, high, .. } => {
                if let Some(c) = column_of(col) {
                    self.take(low, Some(c.clone()));
                    self.take(high, Some(c));
                }
            }
            other => self.take(other, None),
        }
        ControlFlow::Continue(())
    }
}

/// One SQL expression, alone: what a metric or filter of a semantic model must be. Parsed as
/// the projection of `SELECT <expr>`, which must then hold exactly that one expression (no
/// alias, no `FROM`, no other clause) and no subquery; and `SELECT <expr> FROM <table>` must
/// pass the guard (no hidden characters, nothing but reads of `database`).
pub fn check_expression(expr: &str, database: &str, table: Option<&str>) -> Result<(), GuardError> {
    let wrapped = format!("SELECT {expr}");
    on_guard_stack(|| {
        let q = parse_query(&wrapped).map_err(|e| GuardError::new(format!("not an SQL expression: {}", e.reason)))?;
        let lone = match &*q.body {
            SetExpr::Select(s) => {
                q.with.is_none()
                    && q.order_by.is_none()
                    && q.limit_clause.is_none()
                    && s.from.is_empty()
                    && s.selection.is_none()
                    && s.having.is_none()
                    && s.projection.len() == 1
                    && matches!(s.projection[0], SelectItem::UnnamedExpr(_))
                    && s.distinct.is_none()
            }
            _ => false,
        };
        if !lone {
            return Err(GuardError::new("must be one SQL expression (no alias, FROM, other clauses or commas)"));
        }
        struct NoQuery;
        impl Visitor for NoQuery {
            type Break = ();
            fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
                ControlFlow::Break(())
            }
        }
        let SetExpr::Select(s) = &*q.body else { unreachable!("checked above") };
        if s.projection[0].visit(&mut NoQuery).is_break() {
            return Err(GuardError::new("must not contain a subquery"));
        }
        Ok(())
    })?;
    let from = table.map(|t| format!(" FROM {t}")).unwrap_or_default();
    check_read_only(&format!("{wrapped}{from}"), database, &[]).map(|_| ())
}

/// The guard's checks of a semantic model: every metric and filter is one expression.
pub fn check_semantic_model(model: &SemanticModel) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let db = model.spec.database.as_str();
    for (i, m) in model.spec.metrics.iter().enumerate() {
        if let Err(e) = check_expression(&m.expression, db, model.expression_table(m.table.as_deref())) {
            errs.push(FieldError::new(format!("spec.metrics[{i}].expression"), e.reason));
        }
    }
    for (i, f) in model.spec.filters.iter().enumerate() {
        if let Err(e) = check_expression(&f.expression, db, model.expression_table(f.table.as_deref())) {
            errs.push(FieldError::new(format!("spec.filters[{i}].expression"), e.reason));
        }
    }
    errs
}

/// The guard's checks of a verified query: [`check_template`].
pub fn check_verified_query(vq: &VerifiedQuery) -> Vec<FieldError> {
    check_template(vq).err().map(FieldError::from).into_iter().collect()
}

/// The loader's [`crate::spec::load::ExtraCheck`]: the guard's reading of every kind's SQL.
pub fn check_document(doc: &Document) -> Vec<FieldError> {
    match doc {
        Document::QueryRequest(_) => Vec::new(),
        Document::Object(Object::SemanticModel(m)) => check_semantic_model(m),
        Document::Object(Object::VerifiedQuery(v)) => check_verified_query(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vq(sql: &str, params: &[(&str, ParameterType, &str)]) -> VerifiedQuery {
        let mut v = VerifiedQuery::new("t", "tpch", "q?", sql);
        v.spec.parameters = params
            .iter()
            .map(|(n, t, e)| TemplateParameter {
                name: n.to_string(),
                type_: *t,
                column: None,
                example: e.to_string(),
                description: None,
            })
            .collect();
        v
    }

    fn revenue() -> VerifiedQuery {
        vq(
            "select r_name, sum(l_extendedprice * (1 - l_discount)) as revenue from lineitem join orders on l_orderkey = o_orderkey \
             join customer on o_custkey = c_custkey join nation on c_nationkey = n_nationkey join region on n_regionkey = r_regionkey \
             where r_name = :region and o_orderdate >= :start and o_orderdate < :end group by r_name order by revenue desc limit :n",
            &[
                ("region", ParameterType::String, "ASIA"),
                ("start", ParameterType::Date, "1995-01-01"),
                ("end", ParameterType::Date, "1996-01-01"),
                ("n", ParameterType::Number, "10"),
            ],
        )
    }

    fn bindings(pairs: &[(&str, Literal)]) -> Bindings {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn a_template_checks_and_its_canonical_form_has_the_placeholders() {
        let t = check_template(&revenue()).unwrap();
        assert!(t.canonical.contains("r_name = :region"), "{}", t.canonical);
        assert!(t.canonical.contains("LIMIT :n"), "{}", t.canonical);
        assert_eq!(t.tables, ["customer", "lineitem", "nation", "orders", "region"]);
        assert_eq!(t.digest.len(), 64);
        assert_eq!(t.examples["start"], Literal::Date("1995-01-01".into()));
    }

    #[test]
    fn instantiate_then_match_gives_the_bindings_back() {
        let v = revenue();
        let b = bindings(&[
            ("region", Literal::Text("EUROPE".into())),
            ("start", Literal::Date("1997-01-01".into())),
            ("end", Literal::Date("1998-01-01".into())),
            ("n", Literal::Number("5".into())),
        ]);
        let sql = instantiate(&v, &b).unwrap();
        assert!(
            sql.contains("r_name = 'EUROPE'") && sql.contains("DATE '1997-01-01'") && sql.contains("LIMIT 5"),
            "{sql}"
        );
        assert_eq!(matches(&v, &sql), Some(b));
        // The canonical text of a differently written instantiation matches too.
        let written = sql.replace("'EUROPE'", "'O''Hara'");
        assert_eq!(matches(&v, &written).unwrap()["region"], Literal::Text("O'Hara".into()));
    }

    #[test]
    fn a_one_token_difference_does_not_match() {
        let v = revenue();
        let sql = instantiate(&v, &examples(&v).unwrap()).unwrap();
        assert!(matches(&v, &sql).is_some());
        for (from, to) in [
            ("desc", "asc"),
            ("GROUP BY r_name", "GROUP BY r_name, n_name"),
            (">= DATE '1995-01-01'", "> DATE '1995-01-01'"),
            ("(1 - l_discount)", "(2 - l_discount)"),
            ("r_name = 'ASIA'", "r_name = 'ASIA' OR 1 = 1"),
            ("r_name = 'ASIA'", "r_name = r_comment"),
            ("LIMIT 10", "LIMIT '10'"),
            ("DATE '1995-01-01'", "'1995-01-01'"),
            ("lineitem", "lineitem AS l"),
        ] {
            let low = sql.to_ascii_lowercase();
            let at = low.find(&from.to_ascii_lowercase()).unwrap_or_else(|| panic!("{from} in {sql}"));
            let changed = format!("{}{to}{}", &sql[..at], &sql[at + from.len()..]);
            assert_eq!(matches(&v, &changed), None, "{changed}");
        }
    }

    #[test]
    fn one_placeholder_twice_must_hold_one_value() {
        let v = vq(
            "select n_name from nation where n_name = :x or n_comment = :x",
            &[("x", ParameterType::String, "FRANCE")],
        );
        let t = check_template(&v).unwrap();
        assert!(t.canonical.matches(":x").count() == 2, "{}", t.canonical);
        let same = "SELECT n_name FROM nation WHERE n_name = 'PERU' OR n_comment = 'PERU'";
        assert!(matches(&v, same).is_some());
        assert_eq!(matches(&v, "SELECT n_name FROM nation WHERE n_name = 'PERU' OR n_comment = 'CHAD'"), None);
    }

    #[test]
    fn declarations_and_placeholders_must_agree() {
        let undeclared = vq("select * from nation where n_name = :x", &[]);
        assert!(check_template(&undeclared).unwrap_err().message.contains(":x is not declared"));
        let unused = vq("select * from nation", &[("x", ParameterType::String, "A")]);
        assert_eq!(check_template(&unused).unwrap_err().path, "spec.parameters[0].name");
        let positional = vq("select * from nation where n_nationkey = $1", &[]);
        assert!(check_template(&positional).unwrap_err().message.contains("not a named placeholder"));
        let wrong_type = vq("select * from nation where n_name = :x", &[("x", ParameterType::Number, "ten")]);
        assert_eq!(check_template(&wrong_type).unwrap_err().path, "spec.parameters[0].example");
        let write = vq("delete from nation where n_name = :x", &[("x", ParameterType::String, "A")]);
        assert!(check_template(&write).is_err());
        let other_db = vq("select * from other.t where a = :x", &[("x", ParameterType::String, "A")]);
        assert!(check_template(&other_db).unwrap_err().message.contains("refused"));
    }

    #[test]
    fn a_binding_of_the_wrong_type_is_refused() {
        let v = revenue();
        let mut b = examples(&v).unwrap();
        b.insert("n".into(), Literal::Text("10".into()));
        assert!(instantiate(&v, &b).is_err());
        b.insert("n".into(), Literal::Number("1; drop table x".into()));
        assert!(instantiate(&v, &b).is_err());
        b.remove("n");
        assert!(instantiate(&v, &b).unwrap_err().message.contains("no value"));
    }

    #[test]
    fn propose_parameterises_question_literals_only() {
        let sql = "SELECT r_name, sum(l_extendedprice * (1 - l_discount)) AS revenue FROM lineitem JOIN region ON true \
                   WHERE r_name = 'ASIA' AND o_orderdate >= DATE '1995-01-01' AND l_shipmode IN ('AIR', 'MAIL') \
                   AND date_trunc('month', o_orderdate) > o_orderdate GROUP BY r_name LIMIT 10";
        let table = |c: &str| (c == "r_name").then(|| "region".to_string());
        let (template, params) = propose(sql, &table).unwrap();
        let got: Vec<(&str, ParameterType, Option<&str>, &str)> =
            params.iter().map(|p| (p.name.as_str(), p.type_, p.column.as_deref(), p.example.as_str())).collect();
        assert_eq!(
            got,
            [
                ("limit", ParameterType::Number, None, "10"),
                ("r_name", ParameterType::String, Some("region.r_name"), "ASIA"),
                ("o_orderdate", ParameterType::Date, Some("o_orderdate"), "1995-01-01"),
                ("l_shipmode", ParameterType::String, Some("l_shipmode"), "AIR"),
                ("l_shipmode_2", ParameterType::String, Some("l_shipmode"), "MAIL"),
            ]
        );
        assert!(template.contains("(1 - l_discount)") && template.contains("date_trunc('month'"), "{template}");
        // The proposal is a sound template that matches the SQL it came from.
        let mut v = vq(&template, &[]);
        v.spec.parameters = params;
        let t = check_template(&v).unwrap();
        let checked = check_read_only(sql, "tpch", &[]).unwrap();
        assert_eq!(matches_canonical(&v, &t.canonical, &checked.sql), Some(t.examples));
    }

    #[test]
    fn expressions_are_one_expression_and_read_only() {
        for ok in ["sum(l_extendedprice * (1 - l_discount))", "count(*)", "l_receiptdate > l_commitdate", "avg(x) / 2"]
        {
            assert_eq!(check_expression(ok, "tpch", Some("lineitem")).map_err(|e| e.reason), Ok(()), "{ok}");
        }
        for bad in [
            "1 FROM orders",
            "x AS y",
            "a, b",
            "(select max(x) from orders)",
            "1; drop table orders",
            "sum(x) -- c\u{202e}",
            "",
        ] {
            assert!(check_expression(bad, "tpch", Some("lineitem")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_text_prefilter_never_refuses_a_match() {
        let v = revenue();
        let t = check_template(&v).unwrap();
        let sql = instantiate(&v, &examples(&v).unwrap()).unwrap();
        assert!(could_match(&t.canonical, &sql));
        let other = sql.replace("'ASIA'", "'it''s: odd'").replace("LIMIT 10", "LIMIT 1000");
        assert!(could_match(&t.canonical, &other) && matches(&v, &other).is_some());
        assert!(!could_match(&t.canonical, &sql.replace("DESC", "ASC")));
        assert!(!could_match(&t.canonical, &sql.replacen("SELECT", "SELECT DISTINCT", 1)));
        // Only a necessary condition: text where a placeholder stands is the parser's to judge.
        assert!(could_match(&t.canonical, &format!("{sql} ")) && matches(&v, &format!("{sql} + 1")).is_none());
        assert!(!could_match(&t.canonical, "SELECT 1"));
        assert!(could_match("SELECT 1", "SELECT 1") && !could_match("SELECT 1", "SELECT 2"));
        // A colon inside a literal of the template is no placeholder, and is harmless.
        assert!(could_match("SELECT 'a:b' FROM t WHERE x = :p", "SELECT 'a:b' FROM t WHERE x = 5"));
    }

    /// `cargo test --lib measure_template_matching -- --ignored --nocapture`: what a match costs
    /// (the controller runs one per verified query of the namespace when a request opens a round).
    #[test]
    #[ignore]
    fn measure_template_matching() {
        let v = revenue();
        let sql = instantiate(&v, &examples(&v).unwrap()).unwrap();
        let n = 200;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(matches(&v, &sql).is_some());
        }
        let per_match = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            check_template(&v).unwrap();
        }
        let per_check = t.elapsed() / n;
        let canonical = check_template(&v).unwrap().canonical;
        let other = sql.replace("DESC", "ASC");
        let t = std::time::Instant::now();
        for _ in 0..n * 100 {
            assert!(!could_match(&canonical, std::hint::black_box(&other)));
        }
        let per_prefilter = t.elapsed() / (n * 100);
        println!(
            "matches: {per_match:?} per call (check_template alone: {per_check:?}); the text prefilter refusing another shape: {per_prefilter:?}; a 5-table, 4-parameter template"
        );
    }
}
