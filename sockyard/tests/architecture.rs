//! The shape of the library, checked: the layering rule written in ARCHITECTURE.md (read from
//! its table), dialect names kept behind the dialects, file sizes and module docs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The most code a library file may hold before its tests.
const MAX_CODE_LINES: usize = 600;

/// Directories whose files may name the dialects and their event literals.
const WIRE_DIRS: [&str; 3] = ["protocol", "codec", "client"];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((relative, fs::read_to_string(&path).unwrap()));
        }
    }
}

fn library_files() -> Vec<(String, String)> {
    let root = source_dir();
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    files
}

/// The top-level module a file belongs to: `peer/outbox.rs` → `peer`, `metrics.rs` →
/// `metrics`.
fn module_of(path: &str) -> &str {
    let first = path.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The lines that are code: comments and doc comments left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(i, line)| (i + 1, line))
}

/// The layer of each module, from the table under "The layering rule" in ARCHITECTURE.md:
/// rows `| <layer> | `a`, `b` | … |`.
fn layers() -> BTreeMap<String, u32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let text = fs::read_to_string(&path).expect("ARCHITECTURE.md at the workspace root");
    let section = text
        .split("## The layering rule")
        .nth(1)
        .expect("a section `## The layering rule`");
    let mut layers = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue;
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                layers.insert(module.to_owned(), layer).is_none(),
                "{module} is listed twice in ARCHITECTURE.md"
            );
        }
    }
    assert!(
        layers.len() > 10,
        "the layer table lists {} modules",
        layers.len()
    );
    layers
}

/// The modules of the crate a line names through `crate::<module>`, and whether it names a
/// root re-export (`crate::Config`) instead.
fn crate_paths(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        found.push(&after[..end]);
        rest = &after[end..];
    }
    found
}

#[test]
fn modules_use_only_lower_layers() {
    let layers = layers();
    let mut violations = Vec::new();
    for (path, text) in library_files() {
        if path == "lib.rs" {
            continue;
        }
        let module = module_of(&path);
        let Some(&layer) = layers.get(module) else {
            violations.push(format!(
                "{path}: module `{module}` is not in ARCHITECTURE.md's table"
            ));
            continue;
        };
        for (number, line) in code_lines(&text) {
            for used in crate_paths(line) {
                if used == module {
                    continue;
                }
                if used.starts_with(|c: char| c.is_ascii_uppercase()) {
                    violations.push(format!(
                        "{path}:{number}: `crate::{used}` names a root re-export; name its module"
                    ));
                    continue;
                }
                match layers.get(used) {
                    None => violations.push(format!(
                        "{path}:{number}: `crate::{used}` is not in ARCHITECTURE.md's table"
                    )),
                    Some(&other) if other >= layer => violations.push(format!(
                        "{path}:{number}: `{module}` (layer {layer}) uses `{used}` (layer {other})"
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );
}

/// Whether a file holds only tests (`connection/tests.rs`, `room/framing/test_decode.rs`).
fn is_test_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "tests.rs" || name.starts_with("test_")
}

/// Dialect decisions are code's business; tests drive the code with literal frames.
#[test]
fn dialect_names_stay_behind_the_dialects() {
    let mut violations = Vec::new();
    for (path, text) in library_files() {
        if WIRE_DIRS.contains(&module_of(&path)) || path == "lib.rs" || is_test_file(&path) {
            continue;
        }
        let before_tests = text.split("\n#[cfg(test)]").next().unwrap_or(&text);
        for (number, line) in code_lines(before_tests) {
            let event_literal = line
                .match_indices("\"#")
                .any(|(at, _)| line[at + 2..].starts_with(|c: char| c.is_ascii_lowercase()));
            if line.contains("socketcluster::") || line.contains("ctproto::") || event_literal {
                violations.push(format!("{path}:{number}: {}", line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "wire decisions outside protocol/:\n{}",
        violations.join("\n")
    );
}

#[test]
fn files_are_small_and_say_what_they_are() {
    let mut violations = Vec::new();
    for (path, text) in library_files() {
        if !text.starts_with("//!") {
            violations.push(format!("{path}: does not open with a `//!` line"));
        }
        let code = text
            .lines()
            .take_while(|line| !line.starts_with("#[cfg(test)]"))
            .count();
        if code > MAX_CODE_LINES {
            violations.push(format!(
                "{path}: {code} lines before its tests (at most {MAX_CODE_LINES})"
            ));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    assert_eq!(module_of("peer/outbox.rs"), "peer");
    assert_eq!(module_of("metrics.rs"), "metrics");
    assert_eq!(
        crate_paths("use crate::peer::ConnectionHandle; crate::Config::default()"),
        ["peer", "Config"]
    );
    let layers = layers();
    assert!(layers["error"] < layers["protocol"]);
    assert!(layers["protocol"] < layers["service"]);
    assert!(layers["service"] < layers["connection"]);
    assert!(layers["connection"] < layers["server"]);
}
