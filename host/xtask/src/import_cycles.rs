//! The check that no file imports another that imports it back.
//!
//! Owns: reading a crate's `src/` as a graph of files (an edge where a file
//! names an item of another: `crate::a::b`, `super::c`, or `child::d` from a
//! module's own file), and finding the circles in it (strongly connected
//! components of more than one file). Layers call down; where something
//! lower must reach up, it takes a hook, and this check keeps it so.
//! Test modules (`#[cfg(test)] mod tests`, at a file's end) are left out.

use std::collections::{BTreeMap, BTreeSet};

/// `a/b.rs` -> `["a", "b"]`; `a/mod.rs`, `lib.rs`, `main.rs` name their folder.
fn module_path(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_module_root(file: &str) -> bool {
    file.ends_with("mod.rs") || file == "lib.rs" || file == "main.rs"
}

/// The file the longest prefix of `path` names, if any.
fn resolve<'a>(mods: &'a BTreeMap<Vec<String>, String>, path: &[String]) -> Option<&'a String> {
    (1..=path.len()).rev().find_map(|n| mods.get(&path[..n]))
}

/// Every path `a::b::c` (two words or more) that starts a word in `code`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    let mut chars = code.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts = (c.is_ascii_lowercase() || c == '_')
            && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_' || p == ':');
        prev = Some(c);
        if !starts {
            continue;
        }
        let path: String = code[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':')
            .collect();
        // Skip what was read (ASCII only, so bytes are chars).
        for _ in 1..path.len() {
            if let Some((_, c)) = chars.next() {
                prev = Some(c);
            }
        }
        let words: Vec<String> = path
            .split("::")
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        if words.len() > 1 {
            out.push(words);
        }
    }
    out
}

/// Each file's code without comments and without its test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The circles among `files` (path relative to `src/`, text): each a
/// sorted list of files.
pub fn cycles(files: &[(String, String)]) -> Vec<Vec<String>> {
    let mods: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|(f, _)| (module_path(f), f.clone()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in files {
        let code = code_of(text);
        let me = module_path(file);
        let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
        let mut targets = Vec::new();
        for p in paths(&code) {
            match p[0].as_str() {
                "crate" => targets.extend(resolve(&mods, &p[1..]).cloned()),
                "super" => {
                    let full: Vec<String> = parent.iter().chain(&p[1..]).cloned().collect();
                    targets.extend(resolve(&mods, &full).cloned());
                }
                // A child of a module's own file, named without a prefix.
                first if is_module_root(file) => {
                    let child: Vec<String> =
                        me.iter().cloned().chain([first.to_string()]).collect();
                    targets.extend(mods.get(&child).cloned());
                }
                _ => {}
            }
        }
        let e = edges.entry(file.clone()).or_default();
        e.extend(targets.into_iter().filter(|t| t != file));
    }
    strongly_connected(&edges)
}

/// Tarjan's algorithm; components of two files or more.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_circle_through_crate_and_super_paths_is_found() {
        let found = cycles(&files(&[
            ("main.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::f;\n"),
            ("b/mod.rs", "mod c;\n"),
            (
                "b/c.rs",
                "fn g() { super::super::a::h() }\nuse crate::a::x;",
            ),
            ("b/d.rs", "use super::c;"),
        ]));
        assert!(found.is_empty(), "{found:?}");
        let found = cycles(&files(&[
            ("main.rs", ""),
            ("a.rs", "use crate::b::f;\n"),
            (
                "b.rs",
                "// crate::a is only a comment\nfn g() { crate::a::h() }",
            ),
        ]));
        assert_eq!(found, [["a.rs", "b.rs"]]);
    }

    #[test]
    fn a_module_and_its_child_that_name_each_other_are_a_circle() {
        let found = cycles(&files(&[
            ("lib.rs", ""),
            ("hc/mod.rs", "mod rights;\nfn route() { rights::check() }"),
            ("hc/rights.rs", "fn check() { super::route() }"),
        ]));
        assert_eq!(found, [["hc/mod.rs", "hc/rights.rs"]]);
        // A test module's `super::` is the file itself: no circle.
        let found = cycles(&files(&[
            ("lib.rs", ""),
            ("x/mod.rs", "mod y;\nfn f() { y::g() }"),
            (
                "x/y.rs",
                "fn g() {}\n#[cfg(test)]\nmod tests {\n    use super::g;\n}\n",
            ),
        ]));
        assert!(found.is_empty(), "{found:?}");
    }
}
