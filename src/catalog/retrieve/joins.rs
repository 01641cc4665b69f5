//! The join graph: which tables join to which ([`JoinGraph`], [`JoinEdge`]), inferred from
//! key concepts in column names ([`key_concept`], [`table_concept`]) and from `references t` in
//! column comments, and the cheapest join paths through it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::lexicon::{
    column_words, expand, is_abbreviation, is_word, segment, shared_table_prefix, stem, strip_prefix, table_prefix,
    words,
};
use crate::catalog::Table;

/// An edge of the join graph, by table index.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinEdge {
    pub from: usize,
    pub from_column: String,
    pub to: usize,
    pub to_column: String,
    /// `from` holds a foreign key to `to`'s key. `false`: the two only share a key concept
    /// (siblings, no owner in sight), a weaker and costlier link.
    pub many_to_one: bool,
    /// The two columns hold a name or code rather than a surrogate key (`lake.state_name` →
    /// `state.state_name`): the referencing column already carries the value the owner is
    /// known by, so it is still a column a question can name.
    pub natural: bool,
}

/// Which tables join to which, inferred from names: columns sharing a key concept
/// (`o_custkey`, `c_custkey`, `customer_id` and `customers.id` are all "customer") link to the
/// concept's owner (the table named for it), and a column comment `references t` links to `t`.
#[derive(Clone, Debug, Default)]
pub struct JoinGraph {
    pub edges: Vec<JoinEdge>,
    /// Edge indexes per table.
    adjacency: Vec<Vec<usize>>,
    /// The key column of each table (the column carrying the table's own concept), if any.
    pub primary_keys: Vec<Option<String>>,
}

/// The key concept a column carries, if it is a key (`custkey`, `customer_id`, `id`).
pub fn key_concept(table: &Table, column: &str, prefix: Option<&str>) -> Option<String> {
    let lower_end = |suffix: &str| {
        column.len() >= suffix.len()
            && column.get(column.len() - suffix.len()..).is_some_and(|t| t.eq_ignore_ascii_case(suffix))
    };
    if !(lower_end("id") || lower_end("key") || lower_end("sk") || lower_end("fk")) {
        return None;
    }
    let stripped = strip_prefix(column, prefix);
    let ws = words(stripped);
    let last = ws.last()?;
    // `oid`, `aid`, `pid`: the initials of a table and "id" (author.oid ↔ organization.oid).
    if ws.len() == 1
        && let Some(head) = last.strip_suffix("id")
        && (1..=3).contains(&head.len())
        && head.bytes().all(|b| b.is_ascii_lowercase())
    {
        return Some(format!("{head}{INITIALS_ID}"));
    }
    let base: Vec<String> = if ws.len() == 1 && (last == "id" || last == "key" || last == "sk") {
        return Some(table_concept(&table.name));
    } else if last == "id" || last == "key" || last == "sk" || last == "fk" {
        ws[..ws.len() - 1].to_vec()
    } else if last.len() > 3 && last.ends_with("key") {
        let mut b = ws[..ws.len() - 1].to_vec();
        b.push(last[..last.len() - 3].to_string());
        b
    } else if last.len() > 2 && last.ends_with("id") && stripped.ends_with("Id") {
        ws[..ws.len() - 1].to_vec()
    } else {
        joined_key_head(table, column, &ws)?
    };
    let concept = base.iter().flat_map(|w| segment(w)).map(|w| stem(expand(&w))).collect::<Vec<_>>().join("_");
    (!concept.is_empty()).then_some(concept)
}

/// `custid`, `ordkey`: one lower-case word that segments into known words (abbreviations
/// included) ending in `id` or `key`, as a camelCase name reads once folded to lower case. Not
/// for yes/no columns (`valid` is not `val` + `id`).
fn joined_key_head(table: &Table, column: &str, ws: &[String]) -> Option<Vec<String>> {
    let [word] = ws else { return None };
    let boolean = table
        .columns
        .iter()
        .find(|c| c.name == column)
        .is_some_and(|c| c.data_type.to_ascii_uppercase().starts_with("BOOL"));
    let pieces = segment(word);
    let (last, head) = pieces.split_last()?;
    (!boolean && (last == "id" || last == "key") && !head.is_empty() && head.iter().all(|p| is_word(p)))
        .then(|| head.to_vec())
}

/// The concept a table is named for (`customers` → customer, `order_items` → order_item).
pub fn table_concept(name: &str) -> String {
    words(name).iter().map(|w| stem(expand(w))).collect::<Vec<_>>().join("_")
}

/// `paperid`, `journalkey`: a lower-case name ending in `id` or `key` whose head is the concept
/// of a table of the database (`paper`), as camelCase names read once folded to lower case.
fn named_table_key(column: &str, concepts: &[String]) -> Option<String> {
    let lower = column.to_ascii_lowercase();
    if !lower.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let head = lower.strip_suffix("id").or_else(|| lower.strip_suffix("key"))?;
    if head.len() < 3 {
        return None;
    }
    let head = stem(expand(head));
    concepts.iter().find(|c| c.replace('_', "") == head).cloned()
}

/// Marks a key concept read from initials (`oid` → `o` + this).
const INITIALS_ID: &str = "~id";

/// How strongly table `name` is the owner of `concept`: 3 exact, 2 abbreviation or last word.
/// A concept read from initials is owned by the table whose name starts with them: a one-word
/// name (`organization` for `oid`) before a compound one (`organization_type`).
fn owner_score(name: &str, concept: &str) -> u8 {
    if let Some(head) = concept.strip_suffix(INITIALS_ID) {
        let lower = name.to_ascii_lowercase();
        return match lower.strip_prefix(head) {
            Some(rest) if rest.len() >= 2 => {
                if words(name).len() == 1 {
                    3
                } else {
                    2
                }
            }
            _ => 0,
        };
    }
    let tc = table_concept(name);
    // Segmented like a key's words are (`salespersons` → sale_person for `salesperson_id`).
    let segmented = words(name).iter().flat_map(|w| segment(w)).map(|w| stem(expand(&w))).collect::<Vec<_>>().join("_");
    if tc == concept || tc.replace('_', "") == concept.replace('_', "") || segmented == concept {
        return 3;
    }
    let flat = tc.replace('_', "");
    let cflat = concept.replace('_', "");
    if tc.rsplit('_').next() == Some(concept)
        || is_abbreviation(&cflat, &flat) && !flat.contains('_') && segment(&flat).len() == 1
    {
        return 2;
    }
    0
}

impl JoinGraph {
    /// Builds the graph over `tables` (indexes into it).
    pub fn build(tables: &[Table]) -> JoinGraph {
        let refs: Vec<&Table> = tables.iter().collect();
        Self::build_refs(&refs)
    }

    fn build_refs(tables: &[&Table]) -> JoinGraph {
        let prefixes: Vec<Option<String>> = tables.iter().map(|t| table_prefix(t)).collect();
        Self::build_with(tables, &prefixes)
    }

    pub(super) fn build_with(tables: &[&Table], prefixes: &[Option<String>]) -> JoinGraph {
        let n = tables.len();
        // Table names without a prefix every table of the database shares (`sb` in
        // `sbcustomer`): what key columns refer to.
        let db_prefix = shared_table_prefix(tables.iter().map(|t| t.name.as_str()));
        let names: Vec<String> = tables
            .iter()
            .map(|t| match &db_prefix {
                Some(p) => t.name[p.len()..].to_string(),
                None => t.name.clone(),
            })
            .collect();
        let owned: Vec<String> = names.iter().map(|n| table_concept(n)).collect();
        // concept -> [(table, column)]
        let mut by_concept: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        // Columns that are no key: candidates for a natural key (a shared name or code column).
        let mut plain: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        for (i, t) in tables.iter().enumerate() {
            let prefix = &prefixes[i];
            for (pos, c) in t.columns.iter().chain(&t.partition_keys).enumerate() {
                let concept = key_concept(t, &c.name, prefix.as_deref())
                    .map(|k| if db_prefix.is_some() && k == table_concept(&t.name) { owned[i].clone() } else { k })
                    .or_else(|| named_table_key(strip_prefix(&c.name, prefix.as_deref()), &owned));
                match concept {
                    Some(k) => by_concept.entry(k).or_default().push((i, c.name.clone())),
                    None => {
                        let ws = column_words(&c.name, prefix.as_deref());
                        if ws.len() >= 2 && ws.last().is_some_and(|w| w == "name" || w == "code") {
                            // The position rides along: a table that leads with the column is
                            // the one known by it.
                            plain
                                .entry(c.name.to_ascii_lowercase())
                                .or_default()
                                .push((i, format!("{pos}:{}", c.name)));
                        }
                    }
                }
            }
        }
        let mut g = JoinGraph { edges: Vec::new(), adjacency: vec![Vec::new(); n], primary_keys: vec![None; n] };
        let mut concepts: Vec<(&String, &Vec<(usize, String)>)> = by_concept.iter().collect();
        concepts.sort_by(|a, b| a.0.cmp(b.0));
        let mut unowned: Vec<(&String, &Vec<(usize, String)>)> = Vec::new();
        for (concept, members) in concepts {
            let mut best: Option<(u8, usize)> = None;
            let mut tie = false;
            for (k, (t, _)) in members.iter().enumerate() {
                let s = owner_score(&names[*t], concept);
                if s == 0 {
                    continue;
                }
                match best {
                    Some((b, bk)) if s == b && members[bk].0 != *t => tie = true,
                    Some((b, _)) if s <= b => {}
                    _ => {
                        best = Some((s, k));
                        tie = false;
                    }
                }
            }
            match best.filter(|_| !tie) {
                Some((_, k)) => {
                    let (owner, owner_col) = &members[k];
                    if g.primary_keys[*owner].is_none() {
                        g.primary_keys[*owner] = Some(owner_col.clone());
                    }
                    for (t, col) in members {
                        if t != owner {
                            g.add(JoinEdge {
                                from: *t,
                                from_column: col.clone(),
                                to: *owner,
                                to_column: owner_col.clone(),
                                many_to_one: true,
                                natural: false,
                            });
                        }
                    }
                }
                None if !tie => unowned.push((concept, members)),
                None => {}
            }
        }
        // A concept none of its columns' tables owns (`notifications.user_id` while `users`
        // keys on `uid`): the table named for it, by its own key. Else siblings.
        for (concept, members) in unowned {
            let owners: Vec<usize> = (0..n)
                .filter(|&t| {
                    !members.iter().any(|m| m.0 == t)
                        && owner_score(&names[t], concept) == 3
                        && g.primary_keys[t].is_some()
                })
                .collect();
            match owners.as_slice() {
                [owner] => {
                    let owner_col = g.primary_keys[*owner].clone().unwrap_or_default();
                    for (t, col) in members {
                        g.add(JoinEdge {
                            from: *t,
                            from_column: col.clone(),
                            to: *owner,
                            to_column: owner_col.clone(),
                            many_to_one: true,
                            natural: false,
                        });
                    }
                }
                _ if members.len() <= 6 => {
                    for (a, (ta, ca)) in members.iter().enumerate() {
                        for (tb, cb) in &members[a + 1..] {
                            if ta != tb {
                                g.add(JoinEdge {
                                    from: *ta,
                                    from_column: ca.clone(),
                                    to: *tb,
                                    to_column: cb.clone(),
                                    many_to_one: false,
                                    natural: false,
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        // Natural keys: a `<concept>_name` or `<concept>_code` column several tables share, owned
        // by the table named for the concept (`state.state_name` for `lake.state_name`), else by
        // the one table that leads with it (`geographic.city_name`, its first column).
        let mut shared: Vec<(&String, &Vec<(usize, String)>)> = plain.iter().collect();
        shared.sort_by(|a, b| a.0.cmp(b.0));
        for (name, members) in shared {
            let tabs: Vec<usize> = members.iter().map(|m| m.0).collect();
            if tabs.len() < 2 || (1..tabs.len()).any(|k| tabs[..k].contains(&tabs[k])) {
                continue;
            }
            let types: Vec<String> = members
                .iter()
                .map(|(t, _)| {
                    tables[*t]
                        .columns
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(name))
                        .map(|c| c.data_type.to_ascii_uppercase())
                        .unwrap_or_default()
                })
                .collect();
            if types.iter().any(|ty| *ty != types[0]) {
                continue;
            }
            let ws = column_words(name, None);
            let concept = ws[..ws.len() - 1].join("_");
            let named: Vec<usize> = (0..members.len()).filter(|&k| owned[members[k].0] == concept).collect();
            let leading: Vec<usize> = (0..members.len()).filter(|&k| members[k].1.starts_with("0:")).collect();
            let owner = match (named.as_slice(), leading.as_slice()) {
                ([k], _) => *k,
                ([], [k]) => *k,
                _ => continue,
            };
            let col = |k: usize| members[k].1.split_once(':').map(|x| x.1.to_string()).unwrap_or_default();
            for k in 0..members.len() {
                if k != owner {
                    g.add(JoinEdge {
                        from: members[k].0,
                        from_column: col(k),
                        to: members[owner].0,
                        to_column: col(owner),
                        many_to_one: true,
                        natural: true,
                    });
                }
            }
        }
        // Declared references in comments: "references customer" / "foreign key to customer".
        let by_name: HashMap<String, usize> =
            tables.iter().enumerate().map(|(i, t)| (t.name.to_ascii_lowercase(), i)).collect();
        for (i, t) in tables.iter().enumerate() {
            for c in &t.columns {
                let Some(comment) = c.comment.as_deref() else { continue };
                let lower = comment.to_ascii_lowercase();
                for cue in ["references ", "foreign key to ", "fk to "] {
                    let Some(pos) = lower.find(cue) else { continue };
                    let target: String = lower[pos + cue.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                        .collect();
                    let target = target.rsplit('.').next().unwrap_or("").to_string();
                    if let Some(&j) = by_name.get(&target) {
                        let to_col =
                            g.primary_keys[j].clone().or_else(|| tables[j].columns.first().map(|c| c.name.clone()));
                        if let (true, Some(to_col)) = (j != i, to_col)
                            && !g.edges.iter().any(|e| e.from == i && e.to == j && e.from_column == c.name)
                        {
                            g.add(JoinEdge {
                                from: i,
                                from_column: c.name.clone(),
                                to: j,
                                to_column: to_col,
                                many_to_one: true,
                                natural: false,
                            });
                        }
                    }
                }
            }
        }
        g
    }

    /// The graph with only the edges `keep` accepts (indexes change; keys stay).
    #[must_use]
    pub fn filtered(&self, keep: impl Fn(&JoinEdge) -> bool) -> JoinGraph {
        let mut g = JoinGraph {
            edges: Vec::new(),
            adjacency: vec![Vec::new(); self.adjacency.len()],
            primary_keys: self.primary_keys.clone(),
        };
        for e in self.edges.iter().filter(|e| keep(e)) {
            g.add(e.clone());
        }
        g
    }

    fn add(&mut self, e: JoinEdge) {
        let k = self.edges.len();
        self.adjacency[e.from].push(k);
        self.adjacency[e.to].push(k);
        self.edges.push(e);
    }

    /// Tables joined to `t`, with the edge index.
    pub fn neighbours(&self, t: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.adjacency.get(t).into_iter().flatten().map(move |&k| {
            let e = &self.edges[k];
            (if e.from == t { e.to } else { e.from }, k)
        })
    }

    /// Cost of walking edge `k` away from table `at`: following a foreign key is cheapest,
    /// walking back from a key to the rows that reference it a little dearer (it multiplies
    /// rows), and sibling links dearest.
    pub fn cost(&self, k: usize, at: usize) -> f64 {
        let e = &self.edges[k];
        match (e.many_to_one, e.from == at) {
            (true, true) => 1.0,
            (true, false) => 1.3,
            (false, _) => 3.0,
        }
    }

    /// The cheapest path (edge indexes, from the tree outwards) joining table `target` to any
    /// table of `tree`, at most `max_edges` long.
    pub fn path_to_tree(&self, tree: &[usize], target: usize, max_edges: usize) -> Option<Vec<usize>> {
        self.path_to_tree_with(tree, target, max_edges, &|_| 0.0)
    }

    /// [`Self::path_to_tree`] where entering table `t` costs `bonus(t)` less (at most 0.5), so
    /// that among equally short paths the one through tables the question hints at wins.
    pub fn path_to_tree_with(
        &self,
        tree: &[usize],
        target: usize,
        max_edges: usize,
        bonus: &dyn Fn(usize) -> f64,
    ) -> Option<Vec<usize>> {
        if tree.contains(&target) {
            return Some(Vec::new());
        }
        #[derive(PartialEq)]
        struct State(f64, usize);
        impl Eq for State {}
        impl PartialOrd for State {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for State {
            fn cmp(&self, o: &Self) -> Ordering {
                o.0.partial_cmp(&self.0).unwrap_or(Ordering::Equal).then(o.1.cmp(&self.1))
            }
        }
        let mut dist: HashMap<usize, (f64, Option<usize>, usize)> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for &t in tree {
            dist.insert(t, (0.0, None, 0));
            heap.push(State(0.0, t));
        }
        while let Some(State(d, t)) = heap.pop() {
            if dist.get(&t).is_some_and(|x| x.0 < d) {
                continue;
            }
            if t == target {
                let mut path = Vec::new();
                let mut cur = t;
                while let Some((_, Some(k), _)) = dist.get(&cur) {
                    path.push(*k);
                    let e = &self.edges[*k];
                    cur = if e.from == cur { e.to } else { e.from };
                }
                path.reverse();
                return Some(path);
            }
            let hops = dist[&t].2;
            if hops >= max_edges {
                continue;
            }
            for (o, k) in self.neighbours(t) {
                let nd = d + self.cost(k, t) - bonus(o).clamp(0.0, 0.5);
                if dist.get(&o).is_none_or(|x| nd < x.0) {
                    dist.insert(o, (nd, Some(k), hops + 1));
                    heap.push(State(nd, o));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::retrieve::tests::{table, tpch};

    #[test]
    fn join_keys_link_to_the_table_named_for_them() {
        let t = tpch();
        let g = JoinGraph::build(&t);
        let has = |a: &str, ac: &str, b: &str, bc: &str| {
            g.edges.iter().any(|e| {
                t[e.from].name == a && e.from_column == ac && t[e.to].name == b && e.to_column == bc && e.many_to_one
            })
        };
        assert!(has("orders", "o_custkey", "customer", "c_custkey"));
        assert!(has("customer", "c_nationkey", "nation", "n_nationkey"));
        assert!(has("nation", "n_regionkey", "region", "r_regionkey"));
        assert!(has("lineitem", "l_orderkey", "orders", "o_orderkey"));
        assert!(has("lineitem", "l_suppkey", "supplier", "s_suppkey"));
        assert!(has("partsupp", "ps_partkey", "part", "p_partkey"));
        assert!(has("partsupp", "ps_suppkey", "supplier", "s_suppkey"));
        assert_eq!(g.primary_keys[0].as_deref(), Some("c_custkey"));
        assert_eq!(g.primary_keys[5], None, "partsupp has no key of its own");

        // *_id to a table named for it.
        let t2 = vec![
            table("customers", &[("id", "BIGINT"), ("name", "VARCHAR")]),
            table("orders", &[("id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "DOUBLE")]),
        ];
        let g2 = JoinGraph::build(&t2);
        assert_eq!(g2.edges.len(), 1);
        assert_eq!(
            (g2.edges[0].from, g2.edges[0].from_column.as_str(), g2.edges[0].to, g2.edges[0].to_column.as_str()),
            (1, "customer_id", 0, "id")
        );
    }

    #[test]
    fn keys_named_by_initials_link_to_the_table_they_abbreviate() {
        let t = vec![
            table("author", &[("aid", "BIGINT"), ("name", "VARCHAR"), ("oid", "BIGINT")]),
            table("organization", &[("oid", "BIGINT"), ("name", "VARCHAR")]),
            table("writes", &[("aid", "BIGINT"), ("pid", "BIGINT")]),
            table("publication", &[("pid", "BIGINT"), ("title", "VARCHAR")]),
            table("publication_keyword", &[("pid", "BIGINT"), ("kid", "BIGINT")]),
        ];
        let g = JoinGraph::build(&t);
        let has = |a: usize, ac: &str, b: usize, bc: &str| {
            g.edges
                .iter()
                .any(|e| e.from == a && e.from_column == ac && e.to == b && e.to_column == bc && e.many_to_one)
        };
        assert!(has(0, "oid", 1, "oid"), "{:?}", g.edges);
        assert!(has(2, "aid", 0, "aid"));
        assert!(has(2, "pid", 3, "pid"));
        assert!(has(4, "pid", 3, "pid"), "the one-word name owns the key");
        assert_eq!(g.primary_keys[1].as_deref(), Some("oid"));
        // No table starts with k: no owner, and a lone kid joins nothing.
        assert!(!g.edges.iter().any(|e| e.from_column == "kid" || e.to_column == "kid"));
    }

    #[test]
    fn declared_references_in_comments_are_joins() {
        let mut t = vec![
            table("accounts", &[("acc_no", "BIGINT"), ("holder", "VARCHAR")]),
            table("ledger", &[("entry", "BIGINT"), ("owner", "BIGINT")]),
        ];
        t[1].columns[1].comment = Some("references accounts(acc_no)".into());
        let g = JoinGraph::build(&t);
        assert!(
            g.edges.iter().any(|e| e.from == 1 && e.from_column == "owner" && e.to == 0 && e.to_column == "acc_no")
        );
    }
}
