//! The daemon's folders import each other in one direction only: no import circle spans
//! more than a folder and its own children, the layers below the engines (runtime, storage,
//! env, catalog) import no engine, and no engine imports the shard or a front end. Read
//! from the sources, so a change that breaks the layering fails here with the edge named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ENGINES: &[&str] = &["queue", "topic", "stream", "firehose"];
/// What the engines may not import: the dispatch module and everything above it.
const ABOVE_ENGINES: &[&str] = &["shard", "serve", "net", "gateway"];
/// Layers below the engines.
const BELOW_ENGINES: &[&str] = &["runtime", "storage", "env", "catalog", "engine", "config", "kms"];

/// Top-level module -> (module it imports, file that imports it).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let tops: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).unwrap().to_string_lossy().into_owned();
        let top = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let code: String = text.lines().map(|line| line.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
        for named in crate_paths(&code) {
            if named != top && tops.contains(&named) {
                graph.entry(top.clone()).or_default().insert((named, relative.clone()));
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path, braced groups included.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: `{a::b, c, d::{e, f}}` names a, c and d.
            let (mut depth, mut start) = (0usize, 0usize);
            for (index, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(first_ident(&group[start..index]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_ident(&group[start..index]));
                        start = index + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(first_ident(rest));
        }
    }
    found.into_iter().filter(|name| !name.is_empty()).collect()
}

fn first_ident(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_reader_finds_grouped_and_nested_imports() {
    let code = "use crate::{a::b, c, d::{e, f}};\nuse crate::g::h;\nlet x = crate::i::j();";
    assert_eq!(crate_paths(code), ["a", "c", "d", "g", "i"]);
}

#[test]
fn folders_import_each_other_in_one_direction() {
    let graph = imports(&src());
    assert!(graph.contains_key("shard"), "the reader found no imports: {graph:?}");
    // A circle exists if some module reaches itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for (next, file) in graph.get(&at).into_iter().flatten() {
                let mut path = path.clone();
                path.push(format!("{next} (in {file})"));
                assert!(next != start, "import circle: {}", path.join(" -> "));
                if seen.insert(next.clone()) {
                    stack.push((next.clone(), path));
                }
            }
        }
    }
}

#[test]
fn layers_below_the_engines_import_no_engine_and_engines_import_nothing_above_them() {
    let graph = imports(&src());
    for (module, edges) in &graph {
        for (imported, file) in edges {
            if BELOW_ENGINES.contains(&module.as_str()) {
                assert!(!ENGINES.contains(&imported.as_str()), "{file} ({module}, below the engines) imports the engine {imported}");
            }
            if ENGINES.contains(&module.as_str()) {
                assert!(!ABOVE_ENGINES.contains(&imported.as_str()), "{file} (the {module} engine) imports {imported}");
            }
        }
    }
}
