//! Dependencies point one way (issue 22): the top-level modules of `src/` form no cycle, and
//! neither do the modules inside `src/send/` or `src/decode/`. Read from the source's `use crate::…`,
//! `use super::…` and relative `use` lines and from inline `crate::`/`super::` paths; test code
//! (`#[cfg(test)]` items, `*tests.rs` files) is left out, since a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where an edge was seen, for the failure message.
type Edges = BTreeMap<(String, String), String>;

#[test]
fn top_level_modules_form_no_cycle() {
    let edges = edges(|from, to| Some((from.first()?.clone(), to.first()?.clone())));
    assert_no_cycle("top-level modules of src/", &edges);
}

#[test]
fn only_the_binary_knows_the_command_line() {
    // The commands take their typed Config; clap's structs stay at the edge.
    let edges = edges(|from, to| Some((from.first()?.clone(), to.first()?.clone())));
    let importers: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| to == "cli" && from != "cli")
        .map(|((from, _), place)| format!("{from} ({place})"))
        .collect();
    assert!(importers.is_empty(), "cli is imported by {importers:?}");
}

#[test]
fn modules_inside_send_form_no_cycle() {
    assert_no_cycle("modules of src/send/", &edges_inside("send"));
}

#[test]
fn modules_inside_decode_form_no_cycle() {
    assert_no_cycle("modules of src/decode/", &edges_inside("decode"));
}

/// The dependencies between the modules of one top-level folder; a module with children
/// (`send/retry/`, `send/session/`) counts as one.
fn edges_inside(folder: &str) -> Edges {
    let dir = source_dir().join(folder);
    edges(|from, to| {
        if from.first()? != folder || to.first()? != folder {
            return None;
        }
        // `mod` is the folder's mod.rs itself: the command, on top of its parts.
        let node = |path: &[String]| match path.get(1) {
            Some(child) if module_file(&dir, child).is_some() => child.clone(),
            _ => "mod".to_string(),
        };
        Some((node(from), node(to)))
    })
}

#[test]
fn use_trees_are_expanded_and_resolved() {
    let module = ["send".to_string(), "settle".to_string()];
    let text = "use super::pipeline::{Ack, Job};\nuse crate::spool::{self, Limits};\n\
                pub(in crate::send) fn f() { crate::wire::encode(); }\n\
                #[cfg(test)]\nmod tests {\n    use crate::cli::Cli;\n}\n";
    let paths: Vec<Vec<String>> = paths_in(text, &module, |_| false)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let joined: Vec<String> = paths.iter().map(|path| path.join("::")).collect();
    assert_eq!(
        joined,
        [
            "send::pipeline::Ack",
            "send::pipeline::Job",
            "spool",
            "spool::Limits",
            "wire::encode",
        ]
    );
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `dir/name.rs` or `dir/name/mod.rs`, if there is one.
fn module_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|path| path.is_file())
}

/// The library's source files (not `main.rs`, `lib.rs` or test files), each with its module
/// path.
fn library_files() -> Vec<(PathBuf, Vec<String>)> {
    let src = source_dir();
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).expect("src/ is readable");
        for entry in entries {
            let path = entry.expect("src/ is readable").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(&src) else {
                continue;
            };
            let mut module: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            let is_test = module.iter().any(|part| part.ends_with("tests"));
            if path.extension().is_none_or(|ext| ext != "rs")
                || is_test
                || module == ["main"]
                || module == ["lib"]
            {
                continue;
            }
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            files.push((path, module));
        }
    }
    files.sort();
    files
}

/// Every dependency between two nodes, as `node_of` names them (from the importing module's
/// path and the imported path).
fn edges(node_of: impl Fn(&[String], &[String]) -> Option<(String, String)>) -> Edges {
    let mut edges = Edges::new();
    for (file, module) in library_files() {
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        let dir = match file.file_name().and_then(|name| name.to_str()) {
            Some("mod.rs") => file.parent().map(Path::to_path_buf),
            _ => Some(file.with_extension("")),
        };
        let is_child = |name: &str| {
            dir.as_deref()
                .is_some_and(|dir| module_file(dir, name).is_some())
        };
        for (path, line) in paths_in(&text, &module, is_child) {
            if let Some((from, to)) = node_of(&module, &path)
                && from != to
            {
                let place = format!("{}:{line}", file.display());
                edges.entry((from, to)).or_insert(place);
            }
        }
    }
    edges
}

fn assert_no_cycle(what: &str, edges: &Edges) {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().insert(to);
    }
    let reachable = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = next.get(from).into_iter().flatten().copied().collect();
        while let Some(node) = todo.pop() {
            if seen.insert(node) {
                todo.extend(next.get(node).into_iter().flatten().copied());
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<&str>> =
        next.keys().map(|node| (*node, reachable(node))).collect();
    // An edge is on a cycle when its end leads back to its start.
    let on_cycles: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| {
            reach
                .get(to.as_str())
                .is_some_and(|back| back.contains(from.as_str()))
        })
        .map(|((from, to), place)| format!("{from} -> {to} ({place})"))
        .collect();
    assert!(
        on_cycles.is_empty(),
        "the {what} form cycles; the imports on them:\n  {}",
        on_cycles.join("\n  ")
    );
}

/// The absolute module paths (without `crate`) named in `text`, with their line numbers:
/// `use` trees expanded, `super`/`self` and child modules resolved against `module`.
fn paths_in(
    text: &str,
    module: &[String],
    is_child: impl Fn(&str) -> bool,
) -> Vec<(Vec<String>, usize)> {
    let code = without_tests_and_comments(text);
    let mut found = Vec::new();
    for (index, line) in code.iter().enumerate() {
        let line = line.as_str();
        let number = index + 1;
        let trimmed = line.trim_start();
        let statement = trimmed
            .strip_prefix("use ")
            .or_else(|| trimmed.strip_prefix("pub use "))
            .or_else(|| trimmed.strip_prefix("pub(crate) use "))
            .or_else(|| trimmed.strip_prefix("pub(super) use "));
        if let Some(rest) = statement {
            // A `use` may span lines: read on to its `;`.
            let mut tree: String = rest.to_string();
            let mut more = code.iter().skip(index + 1);
            while !tree.contains(';') {
                let Some(next) = more.next() else { break };
                tree.push_str(next);
            }
            let tree: String = tree
                .split(';')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            for path in expand(&tree) {
                if let Some(resolved) = resolve(&path, module, &is_child) {
                    found.push((resolved, number));
                }
            }
            continue;
        }
        for path in inline_paths(line) {
            if let Some(resolved) = resolve(&path, module, &is_child) {
                found.push((resolved, number));
            }
        }
    }
    found
}

/// The lines of `text` with comments blanked, and `#[cfg(test)]` items and `pub(in …)`
/// visibilities removed; line numbers are kept.
fn without_tests_and_comments(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut skipping_test = false;
    let mut depth = 0i32;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        if code.trim() == "#[cfg(test)]" {
            skipping_test = true;
            depth = 0;
            lines.push(String::new());
            continue;
        }
        if skipping_test {
            depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
            // The item ends with its closing brace, or with a `;` outside any brace.
            if depth <= 0 && (code.contains('}') || code.trim_end().ends_with(';')) {
                skipping_test = false;
            }
            lines.push(String::new());
            continue;
        }
        let mut kept = code.to_string();
        while let Some(start) = kept.find("pub(in ") {
            let end = kept[start..]
                .find(')')
                .map_or(kept.len(), |end| start + end + 1);
            kept.replace_range(start..end, "pub");
        }
        lines.push(kept);
    }
    lines
}

/// `a::{b, c::{d, self}}` into `a::b`, `a::c::d`, `a::c` (renames dropped).
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn split_top(text: &str) -> Vec<&str> {
        let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
        for (at, c) in text.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..at]);
                    start = at + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        parts.into_iter().filter(|part| !part.is_empty()).collect()
    }
    let Some(open) = tree.find('{') else {
        let plain = tree.split("as").next().unwrap_or(tree);
        let mut path: Vec<String> = plain.split("::").map(str::to_string).collect();
        if path
            .last()
            .is_some_and(|last| last == "self" || last == "*")
        {
            path.pop();
        }
        return vec![path];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect();
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    split_top(inner)
        .into_iter()
        .flat_map(expand)
        .map(|rest| prefix.iter().cloned().chain(rest).collect())
        .collect()
}

/// `crate::…`, `super::…` and `self::…` paths written outside `use` lines.
fn inline_paths(line: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in line.match_indices(start) {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = line[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(
                path.split("::")
                    .filter(|part| !part.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    paths
}

/// An absolute module path (without `crate`), or `None` for one outside the crate.
fn resolve(
    path: &[String],
    module: &[String],
    is_child: &impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String> = module.to_vec();
    let mut rest = path;
    match first.as_str() {
        "crate" => return Some(path[1..].to_vec()),
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|part| part == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        name if is_child(name) => {}
        _ => return None,
    }
    Some(base.into_iter().chain(rest.iter().cloned()).collect())
}
