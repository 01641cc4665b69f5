//! Planning joins: a Steiner-style tree over the join graph from the table that holds the
//! measure (or the rows counted) to every table holding a group, a filter or a shown column. A
//! filter reached through a one-to-many edge becomes a semi-join, so totals never count a row
//! twice.

use std::collections::HashSet;

use super::intent::{Intent, Measure, Shape};
use super::parse::Agg;
use super::schema::{Schema, Step, walk};
use crate::generate::GenerateError;

/// The tables a query reads and how they join.
pub(super) struct Joins {
    /// The table that holds the measure (or the rows counted).
    pub(super) root: usize,
    /// The table the main query reads rows of (the root for aggregates).
    pub(super) subject: usize,
    /// Every table reached, `subject` first.
    pub(super) tree: Vec<usize>,
    /// The joins that reach them, in the order they were added.
    pub(super) steps: Vec<Step>,
    /// Subtrees behind a fan-out edge that hold filters only, as (step index, subtree tables):
    /// rendered as semi-joins (`IN (SELECT …)`).
    pub(super) semi: Vec<(usize, Vec<usize>)>,
    /// A group or a shown column lies behind a fan-out edge, so rows are multiplied.
    pub(super) fanned_join: bool,
    /// The main query reads more than one table: columns are qualified.
    pub(super) multi: bool,
    /// What the join path assumed ("joined a → b → c along key columns").
    pub(super) assumptions: Vec<String>,
    /// What a long join path costs in confidence.
    pub(super) penalty: f64,
}

impl Joins {
    /// Whether table `t` is read inside a semi-join rather than by the main query.
    pub(super) fn in_semi(&self, t: usize) -> bool {
        self.semi.iter().any(|(_, sub)| sub.contains(&t))
    }
}

/// The join tree for `intent`, or why its tables cannot be joined without counting rows twice.
pub(super) fn joins(schema: &Schema, intent: &Intent) -> Result<Joins, GenerateError> {
    let root = intent.measure.table();
    let subject = if intent.shape == Shape::Aggregate { root } else { intent.subject };
    let mut penalty = 0.0;
    let mut assumptions = Vec::new();

    // Tables to reach, in the order that shapes the tree: named tables first (they pick the
    // path: "revenue from customers in ASIA" goes through customer), then groups and filters.
    let mut required: Vec<usize> = Vec::new();
    for g in &intent.groups {
        required.push(g.table());
    }
    for f in &intent.filters {
        if let Some(t) = f.table() {
            required.push(t);
        }
    }
    for s in &intent.show {
        required.push(s.t);
    }
    let mut tree: Vec<usize> = vec![subject];
    let mut steps: Vec<Step> = Vec::new();
    let mut order: Vec<usize> = Vec::new();
    // Named tables only when they join without multiplying rows and lie towards a required table.
    // Entities the text qualifies ("customers in the AUTOMOBILE segment") before the groups, so a
    // group is reached through them ("revenue per nation for customers": the customers' nation).
    let group_tables: Vec<usize> = intent.groups.iter().map(|g| g.table()).collect();
    let mut named: Vec<usize> = intent.named.clone();
    named.sort_by_key(|t| group_tables.contains(t));
    for &t in &named {
        if tree.contains(&t) {
            continue;
        }
        if let Some(path) = schema.graph.path_to_tree(&tree, t, 4) {
            let fans = walk(schema, &tree, &path).iter().any(|s| s.fans_out);
            // Useful when it lies on (or one step off) a shortest way to a table we need:
            // "revenue from customers in ASIA" goes through customer, not supplier.
            let useful = required.iter().any(|r| {
                *r != t
                    && match (schema.distance(subject, t), schema.distance(t, *r), schema.distance(subject, *r)) {
                        (Some(a), Some(b), Some(direct)) => a + b <= direct + 1,
                        _ => false,
                    }
            });
            if !fans && useful {
                order.push(t);
            }
        }
    }
    order.extend(required.iter().copied());
    for t in order {
        if tree.contains(&t) {
            continue;
        }
        let bonus = |x: usize| if intent.hints.contains(&x) { 0.25 } else { 0.0 };
        let path = schema.graph.path_to_tree_with(&tree, t, 5, &bonus).ok_or_else(|| {
            GenerateError::CannotAnswer(format!(
                "found no join path between {} and {} (no shared key columns)",
                schema.tables[subject].name, schema.tables[t].name
            ))
        })?;
        for s in walk(schema, &tree, &path) {
            tree.push(s.child);
            steps.push(s);
        }
    }
    if steps.len() > 2 {
        penalty += 0.03 * (steps.len() - 2) as f64;
    }
    if !steps.is_empty() {
        let mut path_desc: Vec<String> = vec![schema.tables[subject].name.clone()];
        for s in &steps {
            path_desc.push(schema.tables[s.child].name.clone());
        }
        if steps.len() >= 2 {
            assumptions.push(format!("joined {} along key columns", path_desc.join(" → ")));
        }
    }

    // Subtrees reached through a fan-out edge: filters only → semi-join; otherwise joined.
    let subtree_of = |first: usize| -> Vec<usize> {
        let mut nodes = vec![steps[first].child];
        let mut changed = true;
        while changed {
            changed = false;
            for s in &steps {
                if nodes.contains(&s.parent) && !nodes.contains(&s.child) {
                    nodes.push(s.child);
                    changed = true;
                }
            }
        }
        nodes
    };
    let mut semi: Vec<(usize, Vec<usize>)> = Vec::new(); // (step index, subtree tables)
    let mut fanned_join = false;
    let group_tables: HashSet<usize> =
        intent.groups.iter().map(|g| g.table()).chain(intent.show.iter().map(|c| c.t)).collect();
    for (k, s) in steps.iter().enumerate() {
        if !s.fans_out || semi.iter().any(|(_, sub)| sub.contains(&s.parent)) {
            continue;
        }
        let sub = subtree_of(k);
        if sub.iter().any(|t| group_tables.contains(t)) {
            fanned_join = true;
        } else {
            semi.push((k, sub));
        }
    }
    let in_semi = |t: usize| semi.iter().any(|(_, sub)| sub.contains(&t));
    let main_tables: Vec<usize> = tree.iter().copied().filter(|t| !in_semi(*t)).collect();
    let multi = main_tables.len() > 1;
    if fanned_join
        && let (Shape::Aggregate, Agg::Sum | Agg::Avg, Measure::Column(_) | Measure::Revenue { .. }) =
            (intent.shape, intent.agg, &intent.measure)
    {
        return Err(GenerateError::CannotAnswer(
            "the grouping lies on the many side of the measure's table, so a total would count rows more than once"
                .into(),
        ));
    }
    // "the average weight of patients treated with X": once per patient or once per treatment
    // are two answers, and people ask both ways.
    if !semi.is_empty()
        && let (Shape::Aggregate, Agg::Avg, Measure::Column(_)) = (intent.shape, intent.agg, &intent.measure)
    {
        return Err(GenerateError::CannotAnswer(format!(
            "an average of {} over rows picked through {} could count each row once or once per match; say which",
            schema.tables[root].name, schema.tables[steps[semi[0].0].child].name
        )));
    }
    Ok(Joins { root, subject, tree, steps, semi, fanned_join, multi, assumptions, penalty })
}
