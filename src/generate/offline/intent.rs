//! What the question asks for ([`Intent`]): a count, an aggregate, a ranking of rows, a ranking
//! of groups or a list, with its measure, groups, filters, order and limit.

use super::parse::{Agg, DatePart, DateSpan, Dir, Op};
use super::schema::{Col, Schema};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Measure {
    Column(Col),
    /// price × (1 − discount), summed.
    Revenue {
        price: Col,
        discount: Option<Col>,
    },
    /// COUNT(*) of a table's rows.
    Rows(usize),
    /// COUNT(DISTINCT col).
    Distinct(Col),
}

impl Measure {
    pub(super) fn table(&self) -> usize {
        match self {
            Measure::Column(c) | Measure::Distinct(c) => c.t,
            Measure::Revenue { price, .. } => price.t,
            Measure::Rows(t) => *t,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Group {
    /// Rows of a table, named by its label column (grouped by its key too).
    Entity(usize),
    Column(Col),
    Part(DatePart, Col),
}

impl Group {
    pub(super) fn table(&self) -> usize {
        match self {
            Group::Entity(t) => *t,
            Group::Column(c) | Group::Part(_, c) => c.t,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Filter {
    Values {
        col: Col,
        values: Vec<String>,
        weak: bool,
    },
    Dates {
        col: Col,
        span: DateSpan,
    },
    Compare {
        col: Col,
        op: Op,
        raw: String,
    },
    /// The subject's rows with `op value` rows of `child`.
    HavingCount {
        child: usize,
        op: Op,
        raw: String,
    },
    /// The subject's rows without any row of `child` (an anti-join).
    Without {
        child: usize,
    },
    /// A yes/no column holds yes (or no).
    Flag {
        col: Col,
        yes: bool,
    },
}

impl Filter {
    pub(super) fn table(&self) -> Option<usize> {
        match self {
            Filter::Values { col, .. }
            | Filter::Dates { col, .. }
            | Filter::Compare { col, .. }
            | Filter::Flag { col, .. } => Some(col.t),
            Filter::HavingCount { .. } | Filter::Without { .. } => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// One aggregate (COUNT/SUM/AVG/MIN/MAX), optionally grouped and ranked.
    Aggregate,
    /// Rows of the subject ordered by a measure (top/bottom N).
    RankRows,
    /// Rows of the subject.
    List,
}

#[derive(Clone, Debug)]
pub(super) struct Intent {
    pub(super) shape: Shape,
    pub(super) agg: Agg,
    pub(super) measure: Measure,
    pub(super) subject: usize,
    pub(super) groups: Vec<Group>,
    pub(super) filters: Vec<Filter>,
    /// Rank by the measure in this direction (aggregates: by the aggregate).
    pub(super) rank: Option<Dir>,
    /// "… for each paper, ordered by the paper id": a group's column to order the groups by
    /// when they are not ranked by the aggregate.
    pub(super) sort: Option<(Col, Dir)>,
    pub(super) limit: Option<usize>,
    /// Extra columns to show in a list.
    pub(super) show: Vec<Col>,
    /// Other aggregates to return beside the measure ("Return the symbol, the number of
    /// transactions and the total amount"), over the same rows.
    pub(super) extra: Vec<(Measure, Agg)>,
    /// "the distinct list of user ids …": a list of exactly the shown columns, deduplicated
    /// (without the subject's own name or key, which would keep every row apart).
    pub(super) distinct_show: bool,
    /// Tables the text named, joined when they can be reached without multiplying rows.
    pub(super) named: Vec<usize>,
    /// Tables whose column names the text uses: preferred among equally short join paths.
    pub(super) hints: Vec<usize>,
    pub(super) assumptions: Vec<String>,
    pub(super) doubts: Vec<String>,
    pub(super) penalty: f64,
}

impl Intent {
    /// An intent of `shape`: the `agg` of `measure` over the rows of `subject`, with the tables
    /// the text `named`; nothing grouped, filtered, ranked, limited or shown yet, and no doubts.
    pub(super) fn new(shape: Shape, agg: Agg, subject: usize, measure: Measure, named: Vec<usize>) -> Intent {
        Intent {
            shape,
            agg,
            measure,
            subject,
            groups: Vec::new(),
            filters: Vec::new(),
            rank: None,
            sort: None,
            limit: None,
            show: Vec::new(),
            extra: Vec::new(),
            distinct_show: false,
            named,
            hints: Vec::new(),
            assumptions: Vec::new(),
            doubts: Vec::new(),
            penalty: 0.0,
        }
    }

    pub(super) fn confidence(&self) -> f64 {
        0.92 - self.penalty
    }

    pub(super) fn doubt(&mut self, penalty: f64, why: impl Into<String>) {
        self.penalty += penalty;
        self.doubts.push(why.into());
    }
}

pub(super) fn group_name(schema: &Schema, g: &Group) -> String {
    match g {
        Group::Entity(t) => schema.tables[*t].name.clone(),
        Group::Column(c) => schema.col(*c).name.clone(),
        Group::Part(part, c) => {
            format!("{} of {}", if *part == DatePart::Year { "year" } else { "month" }, schema.col(*c).name)
        }
    }
}
