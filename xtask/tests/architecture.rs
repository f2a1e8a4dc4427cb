//! The invariants of `docs/architecture.md`, checked on the source tree: the crate
//! graph (what may depend on what), `unsafe` confined to cxr-kernels, and no module that
//! imports from a module importing it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every crate of the workspace: its package name and folder.
fn crates() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.push(root().join("xtask"));
    dirs.sort();
    for dir in dirs {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{}: no package name", dir.display()))
            .to_string();
        out.push((name, dir));
    }
    out
}

/// The names in the `[dependencies]` table of a crate's manifest (not dev- or build-).
fn dependencies(dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let mut inside = false;
    let mut deps = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap().trim();
            deps.insert(name.to_string());
        }
    }
    deps
}

fn deps_of(name: &str) -> BTreeSet<String> {
    let (_, dir) = crates().into_iter().find(|(n, _)| n == name).unwrap();
    dependencies(&dir)
}

#[test]
fn the_crate_graph_fans_out() {
    let tensor = [
        "candle-core",
        "candle-nn",
        "safetensors",
        "cxr-kernels",
        "cxr-models",
    ];
    for name in ["cxr-report", "cxr-runfolder"] {
        let deps = deps_of(name);
        for t in tensor.iter().chain(&["cxr-train", "cxr-audit", "cxr-data"]) {
            assert!(
                !deps.contains(*t),
                "{name} depends on {t}: it must not touch tensors"
            );
        }
    }
    for name in ["cxr-metrics", "cxr-runfolder", "cxr-kernels"] {
        let ours: Vec<_> = deps_of(name)
            .into_iter()
            .filter(|d| d.starts_with("cxr"))
            .collect();
        assert!(
            ours.is_empty(),
            "{name} depends on {ours:?}: it must depend on none of ours"
        );
    }
    // The trainer does not audit, the audit does not train, and only `cxr` chains
    // the steps (xtask runs it).
    assert!(!deps_of("cxr-train").contains("cxr-audit"));
    assert!(!deps_of("cxr-audit").contains("cxr-train"));
    // Applying a model needs no trainer: a run folder's model.json and weights suffice.
    assert!(!deps_of("cxr-predict").contains("cxr-train"));
    for name in ["cxr-train", "cxr-audit"] {
        assert!(
            !deps_of(name).contains("cxr-predict"),
            "{name} depends on cxr-predict"
        );
    }
    // Evaluating needs no trainer either, and nothing but it needs polars (tables).
    assert!(!deps_of("cxr-evaluate").contains("cxr-train"));
    for (name, dir) in crates() {
        if name != "cxr-evaluate" {
            assert!(
                !dependencies(&dir).contains("polars"),
                "{name} depends on polars: only cxr-evaluate reads and writes tables with it"
            );
        }
    }
    for (name, dir) in crates() {
        if name != "cxr" && name != "xtask" {
            assert!(!dependencies(&dir).contains("cxr"), "{name} depends on cxr");
        }
    }
}

/// The Rust files under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn unsafe_code_lives_in_cxr_kernels_alone() {
    for (name, dir) in crates() {
        let roots = [dir.join("src/lib.rs"), dir.join("src/main.rs")];
        for r in roots.iter().filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(r).unwrap();
            let forbids = text.contains("#![forbid(unsafe_code)]");
            if name == "cxr-kernels" {
                assert!(!forbids, "cxr-kernels holds the unsafe code");
            } else {
                assert!(forbids, "{}: no #![forbid(unsafe_code)]", r.display());
            }
        }
        if name != "cxr-kernels" {
            // Spelled in two pieces so that this file does not match itself.
            let allow = concat!("allow(", "unsafe_code)");
            for f in rust_files(&dir) {
                let text = std::fs::read_to_string(&f).unwrap();
                assert!(!text.contains(allow), "{} allows unsafe code", f.display());
            }
        }
    }
}

/// The module (first path segment under `src/`) a file belongs to: `foo` for
/// `src/foo.rs` and `src/foo/…`, `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let m = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(m.as_str(), "lib" | "main")).then_some(m)
}

/// The paths named after `crate::` in `text`, brace groups expanded one level:
/// `use crate::{a::B, C}` gives `a::B` and `C`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            out.extend(group[..end].split(',').map(|s| s.trim().to_string()));
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

/// `item → module` for the items the crate root re-exports (`pub use foo::{A, B}`).
fn root_reexports(src: &Path) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        let Ok(text) = std::fs::read_to_string(src.join(root)) else {
            continue;
        };
        for stmt in text.split(';') {
            let Some(body) = stmt.trim().strip_prefix("pub use ") else {
                continue;
            };
            let Some((module, items)) = body.split_once("::") else {
                continue;
            };
            let items = items.trim().trim_start_matches('{').trim_end_matches('}');
            for item in items.split(',') {
                let item = item.split(" as ").last().unwrap().trim();
                if !item.is_empty() {
                    map.insert(item.to_string(), module.trim().to_string());
                }
            }
        }
    }
    map
}

#[test]
fn no_module_imports_from_a_module_that_imports_it_back() {
    for (name, dir) in crates() {
        let src = dir.join("src");
        let reexports = root_reexports(&src);
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in rust_files(&src) {
            let Some(from) = module_of(&src, &f) else {
                continue;
            };
            let text = std::fs::read_to_string(&f).unwrap();
            // Unit tests may reach anywhere; comments (doc links) import nothing.
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for path in crate_paths(&code) {
                let first = path.split("::").next().unwrap_or("").trim().to_string();
                let to = if src.join(format!("{first}.rs")).is_file()
                    || src.join(&first).join("mod.rs").is_file()
                {
                    Some(first)
                } else {
                    reexports.get(&first).cloned()
                };
                if let Some(to) = to.filter(|t| *t != from) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        for (a, targets) in &edges {
            for b in targets {
                assert!(
                    !edges.get(b).is_some_and(|t| t.contains(a)),
                    "{name}: modules `{a}` and `{b}` import from each other"
                );
            }
        }
    }
}
