//! Interpreting a question: its parsed pieces read as an [`Intent`].

use std::collections::HashSet;

use super::extra::{extra_measures, split_return_clause};
use super::filters::{add_filters, literal_values};
use super::intent::{Filter, Group, Intent, Measure, Shape, group_name};
use super::lexicon::{looks_like_verb, word_score};
use super::parse::{Agg, DatePart, Dir, Implied, Mention, MentionKind, Parse, is_filler, parse};
use super::resolve::{
    choose, compound, date_cols, date_column, focus_after, group_after, implied_column, is_measure_mention,
    measure_cols, money_measure, revenue_measure, text_cols,
};
use super::schema::{Kind, Schema, qual_name};
use crate::catalog::retrieve;
use crate::generate::GenerateError;

/// Rows shown for "which customers have the highest …" when no number is given.
const DEFAULT_PLURAL_LIMIT: usize = 10;

pub(super) fn interpret(schema: &Schema, question: &str) -> Result<Intent, GenerateError> {
    // "What are the top 10 symbols by total amount? Return the symbol, number of transactions
    // and total amount.": the grouped question first, then the other aggregates it lists.
    if let Some((main, clause)) = split_return_clause(question)
        && let Ok(mut intent) = interpret_whole(schema, main)
        && intent.shape == Shape::Aggregate
        && !intent.groups.is_empty()
    {
        let (extra, groups) = extra_measures(schema, &intent, clause)?;
        intent.extra = extra;
        intent.groups.extend(groups);
        return Ok(intent);
    }
    interpret_whole(schema, question)
}

fn interpret_whole(schema: &Schema, question: &str) -> Result<Intent, GenerateError> {
    let p = parse(schema, question);
    if let Some((_, u)) = p.unsupported.first() {
        return Err(GenerateError::CannotAnswer(format!(
            "the offline generator does not handle {u}; try a model-backed generator (--generator bedrock or openai)"
        )));
    }
    let mut doubts: Vec<(f64, String)> = Vec::new();
    let mut assumptions: Vec<String> = Vec::new();

    let named: Vec<usize> =
        p.mentions.iter().filter_map(|m| if let MentionKind::Table(t) = m.kind { Some(t) } else { None }).collect();

    // Focus: what "which/list/top N" asks for.
    let focus: Option<&Mention> = p.focus_cues.iter().find_map(|&i| focus_after(schema, &p, i));
    let focus_from_cue = focus.is_some();
    let focus = focus.or_else(|| {
        // "top 5 customers", "the 3 largest orders": what follows the superlative.
        p.sup.and_then(|(_, i, _)| focus_after(schema, &p, i))
    });
    let mut via: Vec<usize> = Vec::new();
    let focus = focus.map(|m| {
        let (m, passed) = compound(schema, &p, m);
        via.extend(passed);
        m
    });
    let mut focus_table = focus.and_then(|m| if let MentionKind::Table(t) = m.kind { Some(t) } else { None });
    // "the names of the conferences": the name column of the table named right after "of".
    let of_table = |m: &Mention| -> Option<usize> {
        if !p.is(m.end, &["of"]) {
            return None;
        }
        let k = if p.is(m.end + 1, &["the"]) { m.end + 2 } else { m.end + 1 };
        match p.mention_at(k)?.kind {
            MentionKind::Table(t) => Some(t),
            _ => None,
        }
    };
    // Among columns of one name, the one of a table the question names ("device types for user
    // sessions").
    let mut focus_col = focus
        .and_then(|m| {
            let tc = text_cols(schema, m);
            let best = tc.first().map(|c| c.1).unwrap_or(0.0);
            let in_named = tc.iter().find(|(c, s)| *s >= best - 1e-9 && named.contains(&c.t));
            of_table(m).and_then(|t| tc.iter().find(|(c, _)| c.t == t)).or(in_named).or(tc.first()).map(|c| c.0)
        })
        .filter(|_| focus_table.is_none());

    // Groups from by/per/each.
    let mut groups: Vec<Group> = Vec::new();
    let mut rank_measure: Option<&Mention> = None;
    let mut group_mentions: Vec<usize> = Vec::new();
    let mut pending_parts: Vec<DatePart> = Vec::new();
    let mut cues: Vec<usize> = p.group_cues.clone();
    let mut k = 0;
    while k < cues.len() {
        let g = cues[k];
        k += 1;
        let Some(first) = group_after(&p, g) else { continue };
        if group_mentions.contains(&first.start) {
            continue;
        }
        // "by customers in GERMANY" names who did it; "by customer" groups.
        let plural = (first.start..first.end).any(|j| p.toks[j].low != p.toks[j].stem && p.toks[j].low.ends_with('s'));
        if p.by_cues.contains(&g) && plural && matches!(first.kind, MentionKind::Table(_)) {
            continue;
        }
        // "per customer region": the region of the customer; the customer shapes the join path.
        let (m, passed) = compound(schema, &p, first);
        if !passed.is_empty() {
            group_mentions.push(first.start);
            via.extend(passed);
        }
        // "by return flag and line status": both.
        if p.is(m.end, &["and"]) {
            cues.push(m.end + 1);
        }
        let numeric_group = p.count.is_some()
            || p.aggs.iter().any(|(_, i)| p.mention_after(*i, 3).is_some_and(|mm| mm.start != m.start));
        match &m.kind {
            MentionKind::Table(t) => groups.push(Group::Entity(*t)),
            MentionKind::DatePart(part) => pending_parts.push(*part),
            MentionKind::Columns(_)
                if is_measure_mention(schema, m)
                    && text_cols(schema, m).is_empty()
                    && date_cols(schema, m).is_empty()
                    && !numeric_group =>
            {
                rank_measure = Some(m);
            }
            MentionKind::Columns(cs) => {
                let ds = date_cols(schema, m);
                if !ds.is_empty() && text_cols(schema, m).is_empty() {
                    // "by order date": group by the year of it.
                    let c = choose(schema, &ds, &named, "the date", &mut doubts).unwrap_or(ds[0].0);
                    groups.push(Group::Part(DatePart::Year, c));
                    assumptions.push(format!("grouped by the year of {}", qual_name(schema, c)));
                } else {
                    let tc = text_cols(schema, m);
                    let cands = if tc.is_empty() { cs.clone() } else { tc };
                    if let Some(c) = choose(schema, &cands, &named, "the grouping", &mut doubts) {
                        groups.push(Group::Column(c));
                    }
                }
            }
            MentionKind::Revenue | MentionKind::Money => rank_measure = Some(m),
        }
        group_mentions.push(m.start);
    }

    // The measure: after an aggregate cue or a superlative, else "by <measure>", else any.
    let cue_pos: Vec<usize> =
        p.aggs.iter().map(|a| a.1).chain(p.sup.iter().map(|s| s.1)).chain(p.count.iter().copied()).collect();
    let measure_mention: Option<&Mention> = cue_pos
        .iter()
        .filter_map(|&i| p.mention_after(i, 3))
        .find(|m| {
            is_measure_mention(schema, m)
                || (matches!(m.kind, MentionKind::Columns(_))
                    && !date_cols(schema, m).is_empty()
                    && (!p.aggs.is_empty() || matches!(p.sup, Some((_, _, Implied::Date)))))
        })
        .or(rank_measure)
        .or_else(|| {
            p.mentions.iter().find(|m| {
                is_measure_mention(schema, m)
                    && !group_mentions.contains(&m.start)
                    && !p.nums.iter().any(|n| n.start == m.end || n.start == m.end + 1)
            })
        });

    // No aggregate word, but a measure that only makes sense summed ("the yearly revenue",
    // "quantity by ship mode", "what is the total price of all orders"): a sum.
    let mut aggs = p.aggs.clone();
    if aggs.is_empty()
        && p.count.is_none()
        && p.sup.is_none()
        && p.limit.is_none()
        && let Some(m) = measure_mention
    {
        let summable = matches!(m.kind, MentionKind::Revenue | MentionKind::Money)
            || ((!groups.is_empty() || !pending_parts.is_empty()) && is_measure_mention(schema, m))
            || (p.toks[m.start].low == "total" && is_measure_mention(schema, m));
        if summable {
            aggs.push((Agg::Sum, m.start));
        }
    }

    // Superlative followed by a table: "most customers" counts them.
    let sup_table: Option<usize> = p
        .sup
        .and_then(|(_, i, _)| p.mention_after(i, 1))
        .and_then(|m| if let MentionKind::Table(t) = m.kind { Some(t) } else { None });
    let count_target: Option<&Mention> = p.count.and_then(|i| p.mention_after(i, 4));
    // "the most common statuses and their respective counts": the count is the frequency the
    // ranking already counts.
    let frequency = matches!(p.sup, Some((_, _, Implied::Frequency)));
    let p_count = if frequency && count_target.is_none() { None } else { p.count };

    let context: Vec<usize> = {
        let mut c: Vec<usize> = focus_table.into_iter().collect();
        c.extend(groups.iter().map(|g| g.table()));
        c.extend(via.iter().copied());
        c.extend(named.iter().copied());
        c
    };

    let money_subject = focus_table;
    let resolve_measure = |m: &Mention,
                           subject: Option<usize>,
                           doubts: &mut Vec<(f64, String)>,
                           assumptions: &mut Vec<String>|
     -> Option<Measure> {
        match &m.kind {
            MentionKind::Revenue => {
                let near: Vec<usize> = subject.into_iter().chain(context.iter().copied()).collect();
                revenue_measure(schema, &near).map(|(m, d)| {
                    assumptions.push(d);
                    m
                })
            }
            MentionKind::Money => money_measure(schema, subject.or(money_subject), &named).map(|c| {
                assumptions.push(format!("\"{}\" read as {}", p.toks[m.start].raw, qual_name(schema, c)));
                doubts.push((0.05, "money measure inferred".into()));
                Measure::Column(c)
            }),
            MentionKind::Columns(_) => {
                let mut cands = measure_cols(schema, m);
                if cands.is_empty() {
                    cands = date_cols(schema, m);
                }
                let ctx: Vec<usize> = subject.into_iter().chain(context.iter().copied()).collect();
                choose(schema, &cands, &ctx, "the measure", doubts).map(Measure::Column)
            }
            _ => None,
        }
    };

    if p_count.is_some() && aggs.iter().any(|a| a.0 != Agg::Sum) {
        return Err(GenerateError::CannotAnswer(
            "averages, minimums or maximums of counts (nested aggregates) are beyond the offline generator".into(),
        ));
    }
    let mut intent;
    let rank_dir = p.sup.map(|s| s.0);
    if p_count.is_some() && aggs.iter().all(|a| a.0 == Agg::Sum) {
        // Counting ("the total number of …" is a count too).
        let measure = match count_target.map(|m| &m.kind) {
            Some(MentionKind::Table(t)) => Measure::Rows(*t),
            Some(MentionKind::Columns(_)) => {
                let m = count_target.unwrap_or_else(|| unreachable!());
                let cands = text_cols(schema, m);
                let cands = if cands.is_empty() {
                    if let MentionKind::Columns(cs) = &m.kind { cs.clone() } else { vec![] }
                } else {
                    cands
                };
                let c = choose(schema, &cands, &context, "what to count", &mut doubts)
                    .ok_or_else(|| GenerateError::CannotAnswer("could not tell what to count".into()))?;
                distinct_count(schema, &p, c)?
            }
            _ => {
                // "how many" with nothing countable after it: count the one table named, if any.
                match named.first() {
                    Some(t) => {
                        doubts.push((0.15, "what to count was inferred".into()));
                        Measure::Rows(*t)
                    }
                    None => {
                        return Err(GenerateError::CannotAnswer(
                            "could not tell what to count: name a table (e.g. \"how many orders\")".into(),
                        ));
                    }
                }
            }
        };
        // "the total count of check-ins", "how many check-ins" over a table that keeps a count
        // of them per row (`checkin.count`): its sum, not the number of rows.
        let (agg, measure) = match measure {
            Measure::Rows(t) => match count_column(schema, t) {
                Some(c) => {
                    assumptions.push(format!("summed {} (the table keeps a count per row)", qual_name(schema, c)));
                    if aggs.is_empty() {
                        doubts.push((0.05, format!("counted {} by summing its count column", schema.tables[t].name)));
                    }
                    (Agg::Sum, Measure::Column(c))
                }
                None => (Agg::Count, Measure::Rows(t)),
            },
            m => (Agg::Count, m),
        };
        let subject = measure.table();
        intent = Intent::new(Shape::Aggregate, agg, subject, measure, named.clone());
        // "Which nation has the highest number of customers": group by the focus.
        if let Some(f) = focus_table.filter(|f| *f != subject) {
            if !groups.iter().any(|g| g.table() == f) {
                groups.insert(0, Group::Entity(f));
            }
        } else if let Some(fc) = focus_col {
            groups.insert(0, Group::Column(fc));
        }
        if !groups.is_empty() && (rank_dir.is_some() || p.limit.is_some()) {
            intent.rank = Some(rank_dir.unwrap_or(Dir::Desc));
            intent.limit = Some(p.limit.unwrap_or(1));
        }
    } else if let Some(&(agg, _)) = aggs.first() {
        // An aggregate of a measure.
        let m = measure_mention.ok_or_else(|| {
            GenerateError::CannotAnswer(format!("could not tell which value to take the {} of", agg.word()))
        })?;
        let measure = resolve_measure(m, focus_table, &mut doubts, &mut assumptions)
            .ok_or_else(|| GenerateError::CannotAnswer("could not find a numeric column for the measure".into()))?;
        let agg = if matches!(measure, Measure::Column(c) if matches!(schema.col(c).kind, Kind::Date | Kind::Timestamp))
            && matches!(agg, Agg::Sum | Agg::Avg)
        {
            return Err(GenerateError::CannotAnswer("sums and averages of dates are not meaningful".into()));
        } else {
            agg
        };
        intent = Intent::new(Shape::Aggregate, agg, measure.table(), measure, named.clone());
        if let Some(f) = focus_table.filter(|f| *f != intent.subject || rank_dir.is_some()) {
            if f != intent.subject && !groups.iter().any(|g| g.table() == f) {
                groups.insert(0, Group::Entity(f));
            }
        } else if let Some(fc) = focus_col
            && !groups.contains(&Group::Column(fc))
        {
            groups.insert(0, Group::Column(fc));
        }
        if !groups.is_empty() && (rank_dir.is_some() || p.limit.is_some()) {
            intent.rank = Some(rank_dir.unwrap_or(Dir::Desc));
            intent.limit = Some(p.limit.unwrap_or(1));
        }
    } else if let Some((dir, _, implied)) = p.sup.or_else(|| p.limit.map(|_| (Dir::Desc, 0, Implied::None))) {
        // Ranking.
        let subject_hint = focus_table.or(named.first().copied());
        let mut measure: Option<Measure> = None;
        if let Some(t) = sup_table.filter(|t| Some(*t) != focus_table) {
            measure = Some(Measure::Rows(t));
        } else if let Some(m) = measure_mention {
            measure = resolve_measure(m, subject_hint, &mut doubts, &mut assumptions);
        }
        if measure.is_none() {
            if implied == Implied::Frequency || (focus_col.is_some() && matches!(p.sup, Some((_, _, Implied::None)))) {
                let t = focus_col.map(|c| c.t).or(subject_hint);
                measure = t.map(Measure::Rows);
            } else if let Some(t) = subject_hint {
                measure = implied_column(schema, t, implied).map(Measure::Column);
                if let Some(Measure::Column(c)) = &measure {
                    assumptions.push(format!("ranked by {}", qual_name(schema, *c)));
                    doubts.push((0.1, "ranking measure inferred from the superlative".into()));
                }
            }
        }
        let Some(measure) = measure else {
            return Err(GenerateError::CannotAnswer(
                "could not tell what to rank by: name a measure (e.g. \"highest account balance\")".into(),
            ));
        };
        // "Which customer …" asks for one; "which customers …" for a short list.
        let plural = focus
            .is_some_and(|m| (m.start..m.end).any(|j| p.toks[j].low != p.toks[j].stem && p.toks[j].low.ends_with('s')));
        let limit = match p.limit {
            Some(l) => l,
            None if plural => {
                assumptions.push(format!("showing the top {DEFAULT_PLURAL_LIMIT}"));
                doubts.push((0.05, "no number of rows given".into()));
                DEFAULT_PLURAL_LIMIT
            }
            None => 1,
        };
        // "The highest order total price per segment" is a maximum per group, not a ranking.
        let per_group_extreme = !focus_from_cue
            && p.limit.is_none()
            && (!groups.is_empty() || !pending_parts.is_empty())
            && matches!(measure, Measure::Column(_) | Measure::Revenue { .. });
        if per_group_extreme {
            if let Some(t) = focus_table
                && !via.contains(&t)
            {
                via.push(t);
            }
            focus_table = None;
            focus_col = None;
        }
        // Without a focus ("what is the highest …") a ranking is a plain maximum or minimum.
        let ranked_subject = focus_table.or(if focus_col.is_none() && p.limit.is_some() { subject_hint } else { None });
        // "Which city has the highest-rated restaurant?": the superlative ranks the rows named
        // right after its measure (restaurants), and the focus is a column of those rows.
        let ranked_after = p.sup.and_then(|(_, i, _)| {
            let m = p.mention_after(i, 1)?;
            let next = p.mention_after(m.end, 1)?;
            match next.kind {
                MentionKind::Table(t) if focus_col.is_some_and(|fc| fc.t == t) => Some(t),
                _ => None,
            }
        });
        match (ranked_subject, focus_col) {
            (None, Some(fc))
                if ranked_after == Some(fc.t)
                    && groups.is_empty()
                    && matches!(measure, Measure::Column(c) if c.t == fc.t) =>
            {
                intent = Intent {
                    rank: Some(dir),
                    limit: Some(p.limit.unwrap_or(1)),
                    show: vec![fc],
                    ..Intent::new(Shape::RankRows, Agg::Max, fc.t, measure, named.clone())
                };
            }
            (Some(f), _) if matches!(measure, Measure::Column(c) if c.t == f) && groups.is_empty() => {
                intent = Intent {
                    rank: Some(dir),
                    limit: Some(limit),
                    ..Intent::new(Shape::RankRows, Agg::Max, f, measure, named.clone())
                };
            }
            (f, fc) => {
                let agg = match measure {
                    Measure::Rows(_) | Measure::Distinct(_) => Agg::Count,
                    _ => Agg::Sum,
                };
                if let Some(fc) = fc {
                    if !groups.contains(&Group::Column(fc)) {
                        groups.insert(0, Group::Column(fc));
                    }
                } else if let Some(f) = f
                    && !groups.iter().any(|g| g.table() == f)
                {
                    groups.insert(0, Group::Entity(f));
                }
                if groups.is_empty() || per_group_extreme {
                    // "the highest account balance": a plain maximum (per group, if grouped).
                    intent = Intent::new(
                        Shape::Aggregate,
                        if dir == Dir::Desc { Agg::Max } else { Agg::Min },
                        measure.table(),
                        measure,
                        named.clone(),
                    );
                } else {
                    if agg == Agg::Sum {
                        assumptions
                            .push(format!("ranked by the total of the measure per {}", group_name(schema, &groups[0])));
                    }
                    intent = Intent {
                        rank: Some(dir),
                        limit: Some(limit),
                        ..Intent::new(Shape::Aggregate, agg, measure.table(), measure, named.clone())
                    };
                }
            }
        }
    } else if let Some(t) = focus_table
        .or_else(|| (!p.focus_cues.is_empty() || !p.values.is_empty()).then(|| named.first().copied()).flatten())
    {
        // A list of rows.
        intent = Intent { limit: p.limit, ..Intent::new(Shape::List, Agg::Count, t, Measure::Rows(t), named.clone()) };
        if !groups.is_empty() {
            return Err(GenerateError::CannotAnswer(
                "a grouped list needs an aggregate (count, total, average …)".into(),
            ));
        }
    } else {
        return Err(GenerateError::CannotAnswer(
            "did not recognise the kind of question: the offline generator answers counts (\"how many …\"), totals/averages/minimums/maximums, top/bottom N and lists, optionally by a group and filtered by dates, numbers or known values".into(),
        ));
    }
    intent.groups.extend(groups);
    // "average quantity per line item" when line items hold the quantity: per row, no grouping
    // (a total "in each course" of a course's own column is that column, course by course).
    if intent.shape == Shape::Aggregate && intent.rank.is_none() && intent.agg != Agg::Sum {
        let own = intent.measure.table();
        intent.groups.retain(|g| *g != Group::Entity(own));
    }
    for t in via.into_iter().rev() {
        intent.named.retain(|n| *n != t);
        intent.named.insert(0, t);
    }
    // Year/month groups need a date column.
    for part in pending_parts {
        let (col, note) = date_column(schema, &p, intent.subject, &context, &mut doubts)
            .ok_or_else(|| GenerateError::CannotAnswer("grouping by year needs a date column".into()))?;
        intent.groups.push(Group::Part(part, col));
        if let Some(n) = note {
            assumptions.push(n);
        }
    }
    if p.order_dir.is_some()
        && let Some(r) = intent.rank.as_mut()
    {
        *r = p.order_dir.unwrap_or(*r);
    }
    // "… for each course, from highest to lowest", "ordered by the number of publications":
    // every group, ordered by the aggregate.
    let sorted_by_aggregate = p.sort_cues.iter().any(|&i| {
        i != usize::MAX && (i..i + 3).any(|j| p.is(j, &["number", "count", "total", "sum", "average", "amount"]))
    });
    if let Some(dir) = p.range_order.or(sorted_by_aggregate.then(|| p.order_dir.unwrap_or(Dir::Desc)))
        && intent.shape == Shape::Aggregate
        && !intent.groups.is_empty()
        && (intent.limit.is_none() || p.limit.is_none())
    {
        // "Which authors have the most papers, ordered by the number of papers": every group,
        // in that order (no number was asked for).
        intent.rank = Some(dir);
        intent.limit = None;
    }
    // "… for each paper, ordered by the paper ID": groups in the order of one of their columns.
    if intent.shape == Shape::Aggregate && intent.rank.is_none() && !intent.groups.is_empty() {
        let group_cols: Vec<super::schema::Col> = intent
            .groups
            .iter()
            .flat_map(|g| match g {
                Group::Entity(t) => {
                    let ti = &schema.tables[*t];
                    ti.pk.into_iter().chain(ti.label).map(|c| super::schema::Col { t: *t, c }).collect::<Vec<_>>()
                }
                Group::Column(c) => vec![*c],
                Group::Part(..) => vec![],
            })
            .collect();
        if let Some(c) =
            p.sort_cues.iter().filter(|&&i| i != usize::MAX).filter_map(|&i| p.mention_after(i, 2)).find_map(|m| {
                match &m.kind {
                    MentionKind::Columns(cs) => cs.iter().map(|(c, _)| *c).find(|c| group_cols.contains(c)),
                    _ => None,
                }
            })
        {
            intent.sort = Some((c, p.order_dir.unwrap_or(Dir::Asc)));
        }
    }
    // "lakes in each state" where the lakes name their state (a natural key to `state`): group
    // by that column, so no join drops a lake whose state the other table lacks.
    let root = intent.measure.table();
    if intent.shape == Shape::Aggregate {
        for g in intent.groups.iter_mut() {
            if let Group::Entity(t) = *g
                && t != root
                && let Some(label) = schema.tables[t].label
                && let Some(e) = schema.graph.edges.iter().find(|e| {
                    e.natural && e.from == root && e.to == t && e.to_column == schema.tables[t].cols[label].name
                })
            {
                *g = Group::Column(super::schema::Col {
                    t: root,
                    c: super::schema::col_index(schema, root, &e.from_column),
                });
            }
        }
    }

    add_filters(schema, &p, &mut intent, &context, &mut doubts, &mut assumptions)?;
    // "courses with exams", "closed businesses": yes/no columns as conditions.
    for f in &p.flags {
        let ctx: Vec<usize> = std::iter::once(intent.subject).chain(context.iter().copied()).collect();
        let col = choose(schema, &f.cols, &ctx, "the yes/no column", &mut doubts)
            .ok_or_else(|| GenerateError::CannotAnswer("internal: a flag without a column".into()))?;
        intent.filters.push(Filter::Flag { col, yes: f.yes });
    }
    // "customers who have not placed any orders": an anti-join on the rows asked about.
    for w in &p.without {
        let subject = if intent.shape == Shape::Aggregate { intent.measure.table() } else { intent.subject };
        if w.table == subject || !matches!(intent.measure, Measure::Rows(_)) && intent.shape == Shape::Aggregate {
            return Err(GenerateError::CannotAnswer(format!(
                "\"{}\" negates something the offline generator cannot place",
                p.toks[w.neg].raw
            )));
        }
        intent.filters.push(Filter::Without { child: w.table });
        intent.named.retain(|t| *t != w.table);
    }
    // Values the samples do not list, written in capitals or quotes right next to the name of
    // a text column ("the MED BAG container", "segment 'BUILDING'"): taken literally.
    let mut literal_tokens: HashSet<usize> = HashSet::new();
    let literal_ctx: Vec<usize> = std::iter::once(intent.subject).chain(context.iter().copied()).collect();
    for (col, value, toks) in literal_values(schema, &p, &literal_ctx, &mut doubts) {
        doubts.push((0.08, format!("'{value}' is not among the sample values of {}", qual_name(schema, col))));
        match intent.filters.iter_mut().find(|f| matches!(f, Filter::Values { col: c, .. } if *c == col)) {
            Some(Filter::Values { values, .. }) => values.push(value),
            _ => intent.filters.push(Filter::Values { col, values: vec![value], weak: true }),
        }
        literal_tokens.extend(toks);
    }

    // List: show the columns the question names that are not filters.
    if intent.shape == Shape::List {
        let filter_cols: Vec<super::schema::Col> = intent
            .filters
            .iter()
            .filter_map(|f| match f {
                Filter::Values { col, .. }
                | Filter::Compare { col, .. }
                | Filter::Dates { col, .. }
                | Filter::Flag { col, .. } => Some(*col),
                Filter::HavingCount { .. } | Filter::Without { .. } => None,
            })
            .collect();
        let times = |fc: super::schema::Col| {
            p.mentions
                .iter()
                .filter(|o| matches!(&o.kind, MentionKind::Columns(os) if os.iter().any(|(x, _)| *x == fc)))
                .count()
        };
        for m in &p.mentions {
            // A mention of a filtered column is the filter's own ("in the city of New York"),
            // unless the column is named again ("the name and rating of … with a rating over
            // 4"): then it is asked for too.
            if let MentionKind::Columns(cs) = &m.kind
                && let Some(fc) = cs.iter().map(|c| c.0).find(|c| filter_cols.contains(c))
            {
                if times(fc) >= 2
                    && !intent.show.contains(&fc)
                    && Some(fc.c) != schema.tables[fc.t].label.filter(|_| fc.t == intent.subject)
                {
                    intent.show.push(fc);
                }
                continue;
            }
            // "students who have declared a minor": "have (…) a <column>" is a condition on it
            // (that it holds a value), not a column to show.
            if matches!(m.kind, MentionKind::Columns(_))
                && m.start >= 2
                && p.is(m.start - 1, &["a", "an"])
                && (m.start.saturating_sub(4)..m.start - 1).any(|j| p.is(j, &["have", "has", "had", "having"]))
            {
                return Err(GenerateError::CannotAnswer(format!(
                    "\"{}\" reads as a condition (having one), which the offline generator does not build",
                    p.toks[m.start..m.end].iter().map(|t| t.raw.as_str()).collect::<Vec<_>>().join(" ")
                )));
            }
            // The subject's own column first ("customer ID" of customers is their key, not
            // the transactions' reference to it), else one of a table it joins.
            if let MentionKind::Columns(cs) = &m.kind
                && let Some(c) = cs
                    .iter()
                    .map(|c| c.0)
                    .find(|c| c.t == intent.subject)
                    .or_else(|| cs.iter().map(|c| c.0).find(|c| schema.distance(intent.subject, c.t) == Some(1)))
            {
                let filtered = intent.filters.iter().any(|f| matches!(f, Filter::Values { col, .. } | Filter::Compare { col, .. } | Filter::Dates { col, .. } if *col == c));
                if !filtered
                    && Some(c.c) != schema.tables[c.t].label.filter(|_| c.t == intent.subject)
                    && !intent.show.contains(&c)
                {
                    intent.show.push(c);
                }
            }
        }
        let ti = &schema.tables[intent.subject];
        if let Some(b) = intent.show.iter().find(|c| is_flag(schema, **c)) {
            return Err(GenerateError::CannotAnswer(format!(
                "{} is a yes/no column: \"have …\" is a condition on it, which the offline generator does not build",
                qual_name(schema, *b)
            )));
        }
        let wants_everything = p
            .toks
            .iter()
            .any(|t| matches!(t.stem.as_str(), "detail" | "everything" | "information" | "column" | "field"));
        if ti.label.is_none() && ti.pk.is_none() && !wants_everything {
            return Err(GenerateError::CannotAnswer(format!(
                "{} has no name or key column, and listing every column of it would not answer a question that names one",
                ti.name
            )));
        }
        intent.distinct_show = p.distinct && !intent.show.is_empty();
        if p.sort_cues.iter().any(|&i| i != usize::MAX) {
            // "sorted by X"
            if let Some(m) = p.sort_cues.iter().filter(|&&i| i != usize::MAX).find_map(|&i| p.mention_after(i, 2))
                && let Some(Measure::Column(c)) =
                    resolve_measure(m, Some(intent.subject), &mut doubts, &mut assumptions)
            {
                intent.shape = Shape::RankRows;
                intent.measure = Measure::Column(c);
                intent.rank = Some(p.order_dir.unwrap_or(Dir::Asc));
                intent.show.retain(|s| *s != c);
            }
        }
    }

    // Words nobody explained lower the confidence; many of them mean we did not understand.
    let unexplained: Vec<String> = (0..p.toks.len())
        .filter(|&i| {
            !p.used[i]
                && !literal_tokens.contains(&i)
                && !is_filler(&p.toks[i])
                && p.toks[i].num.is_none()
                && p.toks[i].low.chars().filter(|c| c.is_alphabetic()).count() >= 3
        })
        .map(|i| p.toks[i].raw.clone())
        .collect();
    for w in &unexplained {
        doubts.push((0.12, format!("did not understand \"{w}\"")));
    }
    // A number nobody used is a condition we would silently drop.
    if let Some(t) = p.toks.iter().enumerate().find(|(i, t)| t.num.is_some() && !p.used[*i]).map(|(_, t)| t) {
        return Err(GenerateError::CannotAnswer(format!("did not understand what the number {} refers to", t.raw)));
    }
    // An unknown word that is not a verb is probably a condition we would silently drop
    // ("orders shipped late"): better to say so than to answer another question.
    if let Some(w) = unexplained.iter().find(|w| !looks_like_verb(w)) {
        return Err(GenerateError::CannotAnswer(format!(
            "did not understand \"{w}\": it matches no table, column or known value"
        )));
    }
    let upper_unknown = unexplained.iter().find(|w| {
        w.len() >= 2
            && w.chars().all(|c| c.is_uppercase() || c.is_ascii_digit() || c == '#' || c == '-')
            && w.chars().any(|c| c.is_alphabetic())
    });
    if let Some(w) = upper_unknown {
        return Err(GenerateError::CannotAnswer(format!(
            "\"{w}\" looks like a value, but no column's sample values contain it (sample values may be disabled, or the column has too many distinct values)"
        )));
    }
    for (pen, why) in doubts {
        intent.doubt(pen, why);
    }
    intent.assumptions.extend(assumptions);
    intent.hints = hinted_tables(schema, &p);
    Ok(intent)
}

/// "The number of X" where X is a column: its distinct values — only when the question says
/// distinct, or X holds more than a yes/no worth of values. A number column counted ("the
/// number of credits") is an amount, and a flag counted is a count of rows where it holds:
/// neither is a count of distinct values, so both decline.
fn distinct_count(schema: &Schema, p: &Parse, c: super::schema::Col) -> Result<Measure, GenerateError> {
    let ci = schema.col(c);
    if p.distinct || ci.key {
        return Ok(Measure::Distinct(c));
    }
    if ci.kind == Kind::Number {
        return Err(GenerateError::CannotAnswer(format!(
            "\"number of\" {} reads as an amount (a sum) or a count of rows, not of distinct values; say which",
            qual_name(schema, c)
        )));
    }
    if ci.kind != Kind::Text || (!ci.samples.is_empty() && ci.samples.len() <= 2) {
        return Err(GenerateError::CannotAnswer(format!(
            "{} holds yes/no-like values: counting them is a count of rows where it holds, which the offline generator does not build",
            qual_name(schema, c)
        )));
    }
    Ok(Measure::Distinct(c))
}

/// A number column that keeps a count per row (`count`, `num_visits`, `checkin_count`), if the
/// table has one.
fn count_column(schema: &Schema, t: usize) -> Option<super::schema::Col> {
    let ti = &schema.tables[t];
    ti.cols
        .iter()
        .position(|c| {
            !c.key && c.kind == Kind::Number && {
                // Count words, plus at most the table's own words: `checkin.count` and
                // `checkin_count` count check-ins; `publication.citation_num` counts citations.
                let name = c.name.to_ascii_lowercase();
                let parts: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
                let counting = |w: &str| matches!(w, "count" | "cnt" | "num" | "number");
                parts.iter().any(|w| counting(w))
                    && parts
                        .iter()
                        .all(|w| counting(w) || ti.words.iter().any(|tw| retrieve::stem(w) == *tw || *w == tw.as_str()))
            }
        })
        .map(|c| super::schema::Col { t, c })
}

/// A yes/no column (BOOLEAN).
fn is_flag(schema: &Schema, c: super::schema::Col) -> bool {
    schema.col(c).flag
}

/// Tables with a (non-key) column or a name word that some content word of the text matches.
fn hinted_tables(schema: &Schema, p: &Parse) -> Vec<usize> {
    // Verbs count here ("parts supplied by" hints at a supply table), so only plain stopwords go.
    const STOP: &[&str] = &[
        "what", "which", "many", "much", "have", "there", "their", "each", "every", "with", "from", "that", "this",
        "these", "those", "does", "were", "been", "being", "show", "list", "give", "find", "tell", "total", "average",
        "number", "count", "most", "least", "than", "into", "over", "under",
    ];
    let words: Vec<&str> = p
        .toks
        .iter()
        .filter(|t| t.stem.len() >= 4 && t.num.is_none() && !t.quoted && !STOP.contains(&t.stem.as_str()))
        .map(|t| t.stem.as_str())
        .collect();
    (0..schema.tables.len())
        .filter(|&t| {
            let ti = &schema.tables[t];
            words.iter().any(|q| {
                ti.words.iter().any(|w| word_score(q, w) >= 0.8)
                    || ti.cols.iter().filter(|c| !c.key).any(|c| c.words.iter().any(|w| word_score(q, w) >= 0.8))
            })
        })
        .collect()
}
