//! The shape of the code, checked (issue 13): the files of each crate import each other without
//! a cycle, and only a backend names its driver (SQLite's, PostgreSQL's).
//!
//! `cargo test -p orders-daemon --test architecture` reads the sources of `daemon/`, `cli/` and
//! `shared/` as text. A file is a module (`foo/mod.rs` is `foo`); file A depends on file B when A
//! names B's module by a path (`crate::b::x`, `super::b`, `self::b`, or a child module's name) or
//! takes an item of B (`use super::{x, y}` from a child is a dependency on the parent). A
//! parent's `mod b;` declaring its child is not. Tests are left out: `tests.rs`, `testing.rs`, the
//! conformance suite, the in-memory store and every `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files that exist for tests only.
const TEST_FILES: [&str; 4] = ["tests.rs", "testing.rs", "conformance.rs", "memory.rs"];

/// A crate's modules: path (`store::sqlite`) to the file's code, comments and strings removed.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the source directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !name.ends_with(".rs") || TEST_FILES.contains(&name.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            // `pub(super)` is a visibility, not a path.
            let code = code_only(&text).replace("pub(super)", "pub").replace("pub(crate)", "pub");
            found.insert(module_of(src, &path), without_tests(&code));
        }
    }
    found
}

/// `store/sqlite/mod.rs` is `store::sqlite`; `lib.rs` and `main.rs` are the root, ``.
fn module_of(src: &Path, file: &Path) -> String {
    let relative: PathBuf = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code without comments, string and char literals.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3; // a char literal such as 'x' (lifetimes are left alone)
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code before its `#[cfg(test)]` test module, if any.
fn without_tests(code: &str) -> String {
    let mut kept = String::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.trim() == "mod tests {") {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// The paths the code names: `crate::a::b`, `super::a`, `self::a`, braces of `use` groups
/// expanded, and every other `a::b` (which may name a child module).
fn paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = (chars[i].is_alphabetic() || chars[i] == '_')
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let (mut prefixes, end) = path_at(&chars, i);
        found.append(&mut prefixes);
        i = end.max(i + 1);
    }
    found
}

/// The path starting at `start`, and with a `{...}` group each of its members; where it ends.
fn path_at(chars: &[char], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut i = start;
    loop {
        let from = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        segments.push(chars[from..i].iter().collect::<String>());
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
            if chars.get(i) == Some(&'{') {
                let close = matching_brace(chars, i);
                let inner: String = chars[i + 1..close].iter().collect();
                let mut all = Vec::new();
                for member in split_top_level(&inner) {
                    let member: Vec<char> = member.trim().chars().collect();
                    if member.is_empty() || !(member[0].is_alphabetic() || member[0] == '_') {
                        continue;
                    }
                    for tail in path_at(&member, 0).0 {
                        all.push(segments.iter().cloned().chain(tail).collect());
                    }
                }
                return (all, close + 1);
            }
            if !chars.get(i).is_some_and(|c| c.is_alphabetic() || *c == '_') {
                break;
            }
        } else {
            break;
        }
    }
    (vec![segments], i)
}

fn matching_brace(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// The module a path leads to from `module`, if it is one of `known` and not `module` itself.
fn target(module: &str, path: &[String], known: &BTreeMap<String, String>, is_dir: bool) -> Option<String> {
    let mut base: Vec<String> =
        if module.is_empty() { Vec::new() } else { module.split("::").map(String::from).collect() };
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self") => rest = &path[1..],
        Some("super") => {
            // In `foo/mod.rs` and `foo.rs` alike, `super` is foo's parent.
            let mut supers = 0;
            while path.get(supers).map(String::as_str) == Some("super") {
                supers += 1;
            }
            for _ in 0..supers {
                base.pop();
            }
            rest = &path[supers..];
            let parent = base.join("::");
            // An item of the parent itself (`use super::{open_reader}`) is a dependency on it.
            let named = rest.first().map(|first| join(&base, first));
            if named.as_ref().is_none_or(|named| !known.contains_key(named)) {
                return (parent != module).then_some(parent);
            }
        }
        // A child module named directly (`read_model::get`) from its parent; a lone name (`mod
        // sqlite;`, a variable) names no module.
        Some(_) if path.len() < 2 || (!is_dir && !module.is_empty()) => return None,
        _ => {}
    }
    let mut best = None;
    let mut current = base.clone();
    for segment in rest {
        current.push(segment.clone());
        let name = current.join("::");
        if known.contains_key(&name) {
            best = Some(name);
        } else {
            break;
        }
    }
    best.filter(|found| found != module)
}

fn join(base: &[String], last: &str) -> String {
    base.iter().map(String::as_str).chain([last]).collect::<Vec<_>>().join("::")
}

/// Each module's dependencies on the others of its crate.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(src);
    let mut edges = BTreeMap::new();
    for (module, code) in &known {
        // Only a `mod.rs`, `lib.rs` or `main.rs` has children it may name without `self::`.
        let is_dir = module.is_empty() || src.join(module.replace("::", "/")).join("mod.rs").exists();
        let depends: BTreeSet<String> =
            paths(code).iter().filter_map(|path| target(module, path, &known, is_dir)).collect();
        edges.insert(module.clone(), depends);
    }
    edges
}

/// A cycle of the graph, as the modules around it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut around = stack[at..].to_vec();
            around.push(node.to_owned());
            return Some(around);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, stack) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn name(module: &str) -> &str {
    if module.is_empty() { "the crate root" } else { module }
}

fn crate_src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir).join("src")
}

#[test]
fn the_files_of_each_crate_import_each_other_without_a_cycle() {
    for dir in ["daemon", "cli", "shared"] {
        let graph = graph(&crate_src(dir));
        assert!(graph.len() > 3, "{dir}: too few modules found: {graph:?}");
        if let Some(around) = cycle(&graph) {
            let around: Vec<&str> = around.iter().map(|m| name(m)).collect();
            panic!(
                "{dir}/src: these modules import each other in a circle: {}. Move what both need into a \
                 module below them, or let one reach the other through a trait it defines.",
                around.join(" -> ")
            );
        }
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut graph = graph(&crate_src("daemon"));
    assert!(
        graph["writer"].contains("store"),
        "the writer's dependency on the store is seen: {:?}",
        graph["writer"]
    );
    assert!(
        graph["store::sqlite::write"].contains("store::sqlite::events"),
        "{:?}",
        graph["store::sqlite::write"]
    );
    graph.get_mut("store").expect("store").insert("writer".to_owned());
    assert!(cycle(&graph).is_some(), "a cycle made on purpose is found");
}

/// Every Rust file under `src`.
fn rust_files(src: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![src.to_path_buf()];
    let mut found = Vec::new();
    while let Some(path) = dirs.pop() {
        if path.is_dir() {
            dirs.extend(std::fs::read_dir(&path).expect("read").map(|e| e.expect("entry").path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

#[test]
fn only_the_sqlite_backend_names_rusqlite() {
    for dir in ["daemon", "cli", "shared"] {
        let src = crate_src(dir);
        let naming: Vec<String> = rust_files(&src)
            .into_iter()
            .filter(|path| !path.starts_with(src.join("store/sqlite")))
            .filter(|path| std::fs::read_to_string(path).expect("read").contains("rusqlite"))
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            naming.is_empty(),
            "{dir}: only daemon/src/store/sqlite/ may name rusqlite; move this code behind the store \
             interface (daemon/src/store/mod.rs): {naming:?}"
        );
    }
    let cli = std::fs::read_to_string(crate_src("cli").join("../Cargo.toml")).expect("cli/Cargo.toml");
    let (normal, dev) = cli.split_once("[dev-dependencies]").expect("cli has dev-dependencies");
    assert!(
        !normal.contains("rusqlite") && dev.contains("rusqlite"),
        "the CLI uses rusqlite in its tests only"
    );
}

/// Whether code names the PostgreSQL driver or its TLS: `postgres::...` as a path of its own
/// (not `store::postgres::...`, the backend's module), `tokio_postgres`, `rustls`.
fn names_the_postgres_driver(code: &str) -> bool {
    let bare_path = code.match_indices("postgres::").any(|(at, _)| {
        code[..at].chars().next_back().is_none_or(|c| !(c == ':' || c == '_' || c.is_alphanumeric()))
    });
    bare_path || code.contains("tokio_postgres") || code.contains("rustls")
}

#[test]
fn only_the_postgres_backend_names_its_driver() {
    assert!(names_the_postgres_driver("use postgres::Client;"));
    assert!(!names_the_postgres_driver("use crate::store::postgres::Target;"));
    for dir in ["daemon", "cli", "shared"] {
        let src = crate_src(dir);
        let naming: Vec<String> = rust_files(&src)
            .into_iter()
            .filter(|path| !path.starts_with(src.join("store/postgres")))
            .filter(|path| {
                names_the_postgres_driver(&code_only(&std::fs::read_to_string(path).expect("read")))
            })
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            naming.is_empty(),
            "{dir}: only daemon/src/store/postgres/ may name the PostgreSQL driver; move this code behind \
             the store interface (daemon/src/store/mod.rs): {naming:?}"
        );
    }
}
