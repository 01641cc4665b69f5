//! kubectl's JSONPath templates, for `get -o jsonpath=…`, `-o custom-columns=…` and
//! `--sort-by`: text with `{…}` actions. An action is a path (`.metadata.name`,
//! `.items[*].status.phase`, `.metadata.labels['team']`, `.items[0]`, `.items[-1]`,
//! `..name` for every `name` below, `[?(@.status.phase=="Done")]` to filter), a string literal
//! (`{"\n"}`), or `{range PATH}…{end}` to repeat the text between for every value of PATH. As in
//! kubectl, a missing key prints nothing, several values of one action are joined by a space,
//! strings print as they are and anything else as JSON.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Node>);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Path),
    Range(Path, Vec<Node>),
}

/// A path: steps applied left to right to a set of values.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(Vec<Step>);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    /// `..name`: every value named `name` at any depth below.
    Descend(String),
    Index(i64),
    All,
    /// `[?(@.a.b OP literal)]`, or `[?(@.a)]` for "has a".
    Filter(Path, Option<(Op, Value)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut chars = s.chars().peekable();
        let mut stack: Vec<(Option<Path>, Vec<Node>)> = vec![(None, Vec::new())];
        let mut text = String::new();
        while let Some(c) = chars.next() {
            if c != '{' {
                text.push(c);
                continue;
            }
            let mut action = String::new();
            let mut in_quote = None;
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed action in template {s:?}: a `{{` has no `}}`")),
                    Some('}') if in_quote.is_none() => break,
                    Some(q @ ('"' | '\'')) if in_quote.is_none() => {
                        in_quote = Some(q);
                        action.push(q);
                    }
                    Some(q) if Some(q) == in_quote => {
                        in_quote = None;
                        action.push(q);
                    }
                    Some('\\') if in_quote.is_some() => {
                        action.push('\\');
                        if let Some(n) = chars.next() {
                            action.push(n);
                        }
                    }
                    Some(other) => action.push(other),
                }
            }
            let top = &mut stack.last_mut().expect("the root frame").1;
            if !text.is_empty() {
                top.push(Node::Text(std::mem::take(&mut text)));
            }
            let action = action.trim();
            if let Some(rest) = action.strip_prefix("range ") {
                stack.push((Some(Path::parse(rest.trim())?), Vec::new()));
            } else if action == "end" {
                let (path, body) = stack.pop().expect("a frame");
                let Some(path) = path else { return Err(format!("`{{end}}` without `{{range}}` in {s:?}")) };
                stack.last_mut().ok_or("unbalanced {end}")?.1.push(Node::Range(path, body));
            } else if action.starts_with('"') || action.starts_with('\'') {
                top.push(Node::Text(unquote(action)?));
            } else {
                top.push(Node::Path(Path::parse(action)?));
            }
        }
        if stack.len() != 1 {
            return Err(format!("`{{range}}` without `{{end}}` in {s:?}"));
        }
        let mut nodes = stack.pop().expect("the root frame").1;
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok(Template(nodes))
    }

    /// The template applied to `v`.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        render(&self.0, v, &mut out);
        out
    }
}

fn render(nodes: &[Node], v: &Value, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let texts: Vec<String> = p.eval(v).into_iter().map(text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(p, body) => {
                for item in p.eval(v) {
                    render(body, item, out);
                }
            }
        }
    }
}

/// How one value prints: a string as it is, anything else as compact JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn unquote(s: &str) -> Result<String, String> {
    let q = s.chars().next().unwrap_or('"');
    let inner = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)).ok_or_else(|| format!("unterminated string {s}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

impl Path {
    /// A path as kubectl writes it: `.a.b[0]`, `{.a.b}` (braces allowed, as `--sort-by` and
    /// custom columns accept both), `a.b` (a leading dot is optional).
    pub fn parse(s: &str) -> Result<Path, String> {
        let s = s.trim();
        let s = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(s).trim();
        let s = s.strip_prefix('$').unwrap_or(s);
        let bad = |why: &str| format!("bad JSONPath {s:?}: {why}");
        let b = s.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        // A leading name without a dot (`metadata.name`) reads as `.metadata.name`.
        if i < b.len() && b[i] != b'.' && b[i] != b'[' {
            let end = name_end(b, i);
            steps.push(Step::Field(s[i..end].to_string()));
            i = end;
        }
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    let end = name_end(b, i + 2);
                    if end == i + 2 {
                        return Err(bad("`..` needs a name after it"));
                    }
                    steps.push(Step::Descend(s[i + 2..end].to_string()));
                    i = end;
                }
                b'.' => {
                    let end = name_end(b, i + 1);
                    if end == i + 1 {
                        // A lone `.` is the value itself.
                        i += 1;
                        continue;
                    }
                    steps.push(Step::Field(s[i + 1..end].to_string()));
                    i = end;
                }
                b'[' => {
                    let close = matching_bracket(s, i).ok_or_else(|| bad("a `[` has no `]`"))?;
                    let inner = s[i + 1..close].trim();
                    steps.push(if inner == "*" {
                        Step::All
                    } else if let Some(f) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
                        parse_filter(f.trim()).map_err(|w| bad(&w))?
                    } else if inner.starts_with('\'') || inner.starts_with('"') {
                        Step::Field(unquote(inner)?)
                    } else {
                        Step::Index(inner.parse().map_err(|_| bad("an index is a number, *, a quoted key or ?(…)"))?)
                    });
                    i = close + 1;
                }
                _ => return Err(bad("expected `.`, `..` or `[`")),
            }
        }
        Ok(Path(steps))
    }

    /// Every value the path reaches from `root`, in document order.
    pub fn eval<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut cur = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(f) => next.extend(v.get(f.as_str())),
                    Step::Descend(f) => descend(v, f, &mut next),
                    Step::Index(n) => {
                        if let Some(a) = v.as_array() {
                            let at = if *n < 0 { a.len() as i64 + n } else { *n };
                            next.extend(usize::try_from(at).ok().and_then(|k| a.get(k)));
                        }
                    }
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(o) => next.extend(o.values()),
                        _ => {}
                    },
                    Step::Filter(p, test) => {
                        if let Some(a) = v.as_array() {
                            next.extend(a.iter().filter(|item| matches(p, test, item)));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

fn name_end(b: &[u8], from: usize) -> usize {
    let mut j = from;
    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
        j += 1;
    }
    j
}

fn matching_bracket(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (k, c) in s[open..].char_indices() {
        match c {
            '"' | '\'' if quote.is_none() => quote = Some(c),
            c if Some(c) == quote => quote = None,
            '[' if quote.is_none() => depth += 1,
            ']' if quote.is_none() => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + k);
                }
            }
            _ => {}
        }
    }
    None
}

fn descend<'v>(v: &'v Value, name: &str, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                if k == name {
                    out.push(child);
                }
                descend(child, name, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|child| descend(child, name, out)),
        _ => {}
    }
}

fn parse_filter(f: &str) -> Result<Step, String> {
    let Some(rest) = f.strip_prefix('@') else { return Err("a filter starts with @".into()) };
    for (sym, op) in [("==", Op::Eq), ("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)] {
        if let Some((lhs, rhs)) = rest.split_once(sym) {
            let rhs = rhs.trim();
            let lit = if rhs.starts_with('"') || rhs.starts_with('\'') {
                Value::String(unquote(rhs)?)
            } else {
                serde_json::from_str(rhs)
                    .map_err(|_| format!("{rhs:?} is not a literal (a quoted string or a number)"))?
            };
            return Ok(Step::Filter(Path::parse(lhs.trim())?, Some((op, lit))));
        }
    }
    Ok(Step::Filter(Path::parse(rest.trim())?, None))
}

fn matches(p: &Path, test: &Option<(Op, Value)>, item: &Value) -> bool {
    let found = p.eval(item);
    let Some((op, lit)) = test else { return !found.is_empty() };
    found.iter().any(|v| {
        let ord = match (v.as_f64(), lit.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some(text(v).cmp(&text(lit))),
        };
        match (op, ord) {
            (Op::Eq, Some(o)) => o.is_eq(),
            (Op::Ne, Some(o)) => o.is_ne(),
            (Op::Lt, Some(o)) => o.is_lt(),
            (Op::Le, Some(o)) => o.is_le(),
            (Op::Gt, Some(o)) => o.is_gt(),
            (Op::Ge, Some(o)) => o.is_ge(),
            (_, None) => false,
        }
    })
}

/// kubectl's `-o custom-columns=HEADER:PATH,…`: one column per pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns(pub Vec<(String, Path)>);

impl Columns {
    pub fn parse(spec: &str) -> Result<Columns, String> {
        let mut cols = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (header, path) = part
                .split_once(':')
                .ok_or_else(|| format!("custom column {part:?} is not HEADER:PATH (e.g. NAME:.metadata.name)"))?;
            cols.push((header.trim().to_string(), Path::parse(path)?));
        }
        if cols.is_empty() {
            return Err("custom-columns needs at least one HEADER:PATH".into());
        }
        Ok(Columns(cols))
    }

    pub fn headers(&self) -> Vec<&str> {
        self.0.iter().map(|(h, _)| h.as_str()).collect()
    }

    /// One row for `item`: several values of a column joined by commas, none as `<none>`.
    pub fn row(&self, item: &Value) -> Vec<String> {
        self.0
            .iter()
            .map(|(_, p)| {
                let vals: Vec<String> = p.eval(item).into_iter().filter(|v| !v.is_null()).map(text).collect();
                if vals.is_empty() { "<none>".to_string() } else { vals.join(",") }
            })
            .collect()
    }
}

/// `--sort-by PATH`: sorts items by the first value the path reaches (numbers by value, then
/// everything else as text; items without one last, in their order).
pub fn sort_by(items: &mut [(Value, usize)], path: &Path) {
    items.sort_by(|(a, ia), (b, ib)| {
        let (ka, kb) = (p_first(path, a), p_first(path, b));
        let ord = match (ka, kb) {
            (Some(x), Some(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
                _ => text(x).cmp(&text(y)),
            },
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        ord.then(ia.cmp(ib))
    });
}

fn p_first<'v>(p: &Path, v: &'v Value) -> Option<&'v Value> {
    p.eval(v).into_iter().find(|x| !x.is_null())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "b", "labels": {"team": "x", "a.b/c": "dotted"}}, "status": {"phase": "Done", "n": 10}},
            {"metadata": {"name": "a", "labels": {}}, "status": {"phase": "Failed", "n": 2}},
            {"metadata": {"name": "c"}, "status": {"phase": "Done", "n": 7.5}},
        ]})
    }

    fn run(t: &str) -> String {
        Template::parse(t).unwrap().render(&doc())
    }

    #[test]
    fn paths_reach_fields_indexes_wildcards_and_descendants() {
        assert_eq!(run("{.kind}"), "List");
        assert_eq!(run("{.items[*].metadata.name}"), "b a c");
        assert_eq!(run("{.items[0].status.n}{\"/\"}{.items[-1].status.n}"), "10/7.5");
        assert_eq!(run("{.items[0].metadata.labels['a.b/c']}"), "dotted");
        assert_eq!(run("{..phase}"), "Done Failed Done");
        assert_eq!(run("{.items[0].metadata.labels}"), r#"{"a.b/c":"dotted","team":"x"}"#);
        assert_eq!(run("{.nothing.here}"), "", "a missing key prints nothing");
        assert_eq!(run("names: {.items[*].metadata.name}!"), "names: b a c!");
    }

    #[test]
    fn filters_and_ranges() {
        assert_eq!(run(r#"{.items[?(@.status.phase=="Done")].metadata.name}"#), "b c");
        assert_eq!(run("{.items[?(@.status.n>5)].metadata.name}"), "b c");
        assert_eq!(run("{.items[?(@.metadata.labels.team)].metadata.name}"), "b");
        assert_eq!(
            run(r#"{range .items[*]}{.metadata.name}={.status.phase}{"\n"}{end}"#),
            "b=Done\na=Failed\nc=Done\n"
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        for (t, says) in [
            ("{.items[}", "has no `]`"),
            ("{.a", "no `}`"),
            ("{range .items[*]}{.x}", "without `{end}`"),
            ("{end}", "without `{range}`"),
            ("{.items[x]}", "an index is a number"),
            ("{.items[?(status)]}", "starts with @"),
        ] {
            let e = Template::parse(t).unwrap_err();
            assert!(e.contains(says), "{t}: {e}");
        }
    }

    #[test]
    fn custom_columns_and_sorting() {
        let c = Columns::parse("NAME:.metadata.name, TEAM:.metadata.labels.team").unwrap();
        assert_eq!(c.headers(), ["NAME", "TEAM"]);
        let items: Vec<Value> = doc()["items"].as_array().unwrap().clone();
        assert_eq!(c.row(&items[0]), ["b", "x"]);
        assert_eq!(c.row(&items[1]), ["a", "<none>"]);
        assert!(Columns::parse("NAME").unwrap_err().contains("HEADER:PATH"));

        let mut keyed: Vec<(Value, usize)> = items.iter().cloned().zip(0..).collect();
        sort_by(&mut keyed, &Path::parse(".status.n").unwrap());
        let names: Vec<&str> = keyed.iter().map(|(v, _)| v["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "c", "b"], "numbers sort by value");
        sort_by(&mut keyed, &Path::parse("{.metadata.name}").unwrap());
        let names: Vec<&str> = keyed.iter().map(|(v, _)| v["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // A key some items lack: those go last, in their order.
        sort_by(&mut keyed, &Path::parse(".metadata.labels.team").unwrap());
        let names: Vec<&str> = keyed.iter().map(|(v, _)| v["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["b", "a", "c"]);
    }
}
