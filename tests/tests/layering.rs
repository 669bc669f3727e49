//! Imports run downhill only (docs/design.md, "Layers"): a module may use the modules
//! upstream of it in the data flow, never one at its own level or downstream. This reads
//! every non-test source file of each binary and checks each `crate::` path against
//! the declared order, so a new upward import fails here with its file and line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tests::workspace::root;

/// The sensor, upstream first. Equal ranks are one level: they may not use each other.
/// `http` is a pure parser that `connection` feeds, so it sits beside `kernel`.
const TRACER: &[(&str, u32)] = &[
    ("diagnostics", 0),
    ("json", 0),
    ("kernel", 1),
    ("http", 1),
    ("connection", 2),
    ("identity", 3),
    ("enrich", 3),
    ("record", 4),
    ("audit", 5),
    ("sink", 6),
    ("config", 7),
    ("cli", 8),
    ("pipeline", 9),
    ("commands", 9),
    ("main", 10),
];

/// The hub, upstream first: lines come in, are verified, enriched and stored; the
/// queries, the web server and (later) the detections read the store. `pipeline` and
/// `commands` compose them; `cli` only settles arguments into their settings types.
const HUB: &[(&str, u32)] = &[
    ("when", 0),
    ("ingest", 1),
    ("verify", 2),
    ("enrich", 3),
    ("store", 4),
    ("query", 5),
    ("detect", 5),
    ("deliver", 5),
    ("serve", 6),
    ("pipeline", 7),
    ("cli", 7),
    ("commands", 8),
    ("main", 9),
];

#[test]
fn the_sensor_imports_only_downhill() {
    let violations = check(&root().join("tracer/src"), TRACER);
    assert!(
        violations.is_empty(),
        "imports against the data flow:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_hub_imports_only_downhill() {
    let violations = check(&root().join("hub/src"), HUB);
    assert!(
        violations.is_empty(),
        "imports against the data flow:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_catches_an_upward_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    fs::create_dir_all(src.join("kernel")).unwrap();
    fs::write(
        src.join("kernel/mod.rs"),
        "use crate::{\n    sink::Sinks,\n};\n",
    )
    .unwrap();
    fs::write(src.join("sink.rs"), "use crate::kernel::Event;\n").unwrap();
    fs::write(
        src.join("main.rs"),
        "mod kernel;\n#[cfg(test)]\nmod tests {\n    use crate::nowhere;\n}\n",
    )
    .unwrap();
    let violations = check(src, &[("kernel", 1), ("sink", 2), ("main", 3)]);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].contains("kernel/mod.rs:2") && violations[0].contains("`sink`"),
        "{violations:#?}"
    );
}

#[test]
fn every_module_has_a_layer() {
    for (dir, order) in [("tracer/src", TRACER), ("hub/src", HUB)] {
        let ranks: BTreeMap<&str, u32> = order.iter().copied().collect();
        let src = root().join(dir);
        for entry in fs::read_dir(&src).expect("source dir") {
            let path = entry.expect("entry").path();
            if is_test_file(&path) {
                continue;
            }
            let name = module_name(&src, &path);
            assert!(
                ranks.contains_key(name.as_str()),
                "{} has no layer in tests/tests/layering.rs",
                path.display()
            );
        }
    }
}

/// `file:line: module -> module` for every import that does not run downhill.
fn check(src: &Path, order: &[(&str, u32)]) -> Vec<String> {
    let ranks: BTreeMap<&str, u32> = order.iter().copied().collect();
    let mut violations = Vec::new();
    for file in rust_files(src) {
        let from = module_name(src, &file);
        let Some(&from_rank) = ranks.get(from.as_str()) else {
            violations.push(format!("{}: module `{from}` has no layer", file.display()));
            continue;
        };
        let text = fs::read_to_string(&file).expect("readable source");
        for (line, to) in crate_imports(production_part(&text)) {
            if to == from {
                continue;
            }
            match ranks.get(to.as_str()) {
                Some(&to_rank) if to_rank < from_rank => {}
                Some(_) => violations.push(format!(
                    "{}:{line}: `{from}` uses `{to}`, which is not upstream of it",
                    file.strip_prefix(src).unwrap_or(&file).display()
                )),
                None => violations.push(format!(
                    "{}:{line}: `{from}` uses `{to}`, which has no layer",
                    file.strip_prefix(src).unwrap_or(&file).display()
                )),
            }
        }
    }
    violations
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_test_file(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

/// The top-level module a file belongs to: `kernel` for `kernel/loader.rs`.
fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// The file without its unit tests, which may use anything (by convention the
/// `#[cfg(test)] mod tests` block ends the file).
fn production_part(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// (line, top-level module) for each `crate::module` path, also inside `crate::{a, b::c}`.
fn crate_imports(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(offset) = text[at..].find("crate::") {
        let start = at + offset;
        at = start + "crate::".len();
        let preceded_by_ident = start > 0 && is_ident(bytes[start - 1]);
        if preceded_by_ident {
            continue;
        }
        if bytes.get(at) == Some(&b'{') {
            let mut depth = 0;
            let mut expect_name = true;
            let mut i = at;
            while i < bytes.len() {
                match bytes[i] {
                    b'{' => {
                        depth += 1;
                        expect_name = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect_name = true,
                    b if expect_name && depth == 1 && is_ident(b) => {
                        let end = (i..bytes.len())
                            .find(|&j| !is_ident(bytes[j]))
                            .unwrap_or(bytes.len());
                        found.push((line_of(text, i), text[i..end].to_owned()));
                        expect_name = false;
                        i = end;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            let end = (at..bytes.len())
                .find(|&j| !is_ident(bytes[j]))
                .unwrap_or(bytes.len());
            found.push((line_of(text, at), text[at..end].to_owned()));
        }
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// The privileged sensor must not link the hub's database, web or GeoIP stack: a
/// vulnerability there would run as root on every host.
#[test]
fn the_sensor_links_no_hub_dependency() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "tree",
            "-p",
            "tracer",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("running cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        tree.lines().any(|l| l.starts_with("tracer-audit ")),
        "{tree}"
    );
    for crate_name in [
        "rusqlite",
        "libsqlite3-sys",
        "postgres",
        "tokio-postgres",
        "axum",
        "hyper",
        "maxminddb",
        "argon2",
    ] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{crate_name} "))),
            "the sensor links {crate_name}"
        );
    }
}
