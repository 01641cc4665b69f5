//! The module map holds: imports between modules run one way.
//!
//! Reads every file under `src/`, takes the paths its non-test code names (`crate::…` and
//! `super::…`, grouped imports included), and checks that among the children of every module
//! (the top-level modules under the crate, `engine::athena` and `engine::estimate` under
//! `engine`, …) those references form no cycle. A module and its own descendants may name each
//! other (a `mod.rs` declares the trait its children implement and re-exports them); siblings may
//! not, in both directions. Test modules are left out: a test may reach across.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments and without its `#[cfg(test)]` modules.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            if next.starts_with("mod ") || next.starts_with("pub mod ") || next.starts_with("pub(crate) mod ") {
                if next.ends_with(';') {
                    lines.next();
                    continue;
                }
                // Skip the module's block by brace depth.
                let mut depth = 0i32;
                let mut opened = false;
                for l in lines.by_ref() {
                    for c in l.chars() {
                        match c {
                            '{' => {
                                depth += 1;
                                opened = true;
                            }
                            '}' => depth -= 1,
                            _ => {}
                        }
                    }
                    if opened && depth <= 0 {
                        break;
                    }
                }
                continue;
            }
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Names of the modules a file declares as test code in files of their own
/// (`#[cfg(test)] mod name;`).
fn test_module_decls(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("#[cfg(test)]") && w[1].ends_with(';'))
        .filter_map(|w| w[1].trim_start_matches("pub(crate) ").trim_start_matches("pub ").strip_prefix("mod "))
        .map(|name| name.trim_end_matches(';').trim().to_string())
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses `a::b::{c, d::e}` at `s` into full paths (segments), appending to `out`.
fn parse_path(s: &[char], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == '{' {
            i += 1;
            loop {
                while i < s.len() && (s[i].is_whitespace() || s[i] == ',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == '}' {
                    return i + 1;
                }
                i = parse_path(s, i, path.clone(), out);
            }
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        if start == i {
            // `*` or the end of the path.
            while i < s.len() && s[i] == '*' {
                i += 1;
            }
            out.push(path);
            return i;
        }
        path.push(s[start..i].iter().collect());
        if s[i..].starts_with(&[':', ':']) {
            i += 2;
        } else {
            // ` as X` and the like end the path.
            out.push(path);
            return i;
        }
    }
}

fn references(module: &Module, code: &str) -> Vec<Vec<String>> {
    let s: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !is_ident(s[i - 1]) && s[i - 1] != ':';
        if boundary && s[i..].starts_with(&['c', 'r', 'a', 't', 'e', ':', ':']) {
            i = parse_path(&s, i + 7, Vec::new(), &mut out);
        } else if boundary && s[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
            // `super` of `a/b.rs` and of `a/b/mod.rs` (both `a::b`) is `a`.
            let mut base = module.clone();
            base.pop();
            i += 7;
            while s[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                base.pop();
                i += 7;
            }
            i = parse_path(&s, i, base, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], modules: &BTreeSet<Module>) -> Module {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap_or_default()
}

/// Edges between siblings: `from` and `to` lifted to the children of their common ancestor.
fn sibling_edges() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let test_only: BTreeSet<Module> = files
        .iter()
        .flat_map(|f| {
            let parent = module_of(&src, f);
            test_module_decls(&std::fs::read_to_string(f).unwrap()).into_iter().map(move |name| {
                let mut m = parent.clone();
                m.push(name);
                m
            })
        })
        .collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "main.rs" || n == "layering.rs") {
            continue; // the binary's root, and this check's own examples
        }
        let from = module_of(&src, file);
        if test_only.iter().any(|t| from.starts_with(t)) {
            continue; // a file of test code (`#[cfg(test)] mod name;`)
        }
        let code = production_code(&std::fs::read_to_string(file).unwrap());
        for path in references(&from, &code) {
            let to = resolve(&path, &modules);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // the same module, an ancestor or a descendant
            }
            edges.entry(from[..=common].to_vec()).or_default().insert(to[..=common].to_vec());
        }
    }
    edges
}

fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        v: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(v.clone(), 1);
        stack.push(v.clone());
        for w in edges.get(v).into_iter().flatten() {
            match state.get(w).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|m| m == w).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(w, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(v.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in edges.keys() {
        if state.get(v).copied().unwrap_or(0) == 0
            && let Some(c) = visit(v, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn imports_between_modules_run_one_way() {
    let edges = sibling_edges();
    assert!(edges.contains_key(&vec!["controller".to_string()]), "the scan found the controller's imports");
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        panic!("import loop between modules: {}", names.join(" -> "));
    }
}

#[test]
fn the_scan_sees_grouped_and_relative_imports() {
    let module = vec!["engine".to_string(), "athena".to_string()];
    let refs = references(
        &module,
        "use super::{estimate::LakeEstimator, Engine};\nuse crate::{spec::Phase, store::{Store, sqlite}};\nlet x = crate::aws::sqs(c);",
    );
    let joined: Vec<String> = refs.iter().map(|p| p.join("::")).collect();
    for want in [
        "engine::estimate::LakeEstimator",
        "engine::Engine",
        "spec::Phase",
        "store::Store",
        "store::sqlite",
        "aws::sqs",
    ] {
        assert!(joined.iter().any(|j| j == want), "{want} in {joined:?}");
    }
    let mut edges = BTreeMap::new();
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    edges.insert(a.clone(), BTreeSet::from([b.clone()]));
    assert!(find_cycle(&edges).is_none());
    edges.insert(b, BTreeSet::from([a]));
    assert!(find_cycle(&edges).is_some(), "a two-module loop is found");
    assert!(production_code("use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n").contains("crate::a"));
    assert!(!production_code("use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n").contains("crate::b"));
    assert_eq!(
        test_module_decls("mod a;\n#[cfg(test)]\npub(crate) mod conformance;\n#[cfg(test)]\nmod tests;\n"),
        ["conformance", "tests"]
    );
}
