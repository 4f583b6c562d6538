//! The module dependency picture of the README ("Layers"), checked against the source:
//! every `crate::<module>` path in `src/` (comments aside) between top-level modules
//! must point down the layers below, so there is no import circle, and the data plane
//! (`routing`, `proxy`) never names Kubernetes types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer: a module may use only modules of lower layers.
/// `main.rs` (which wires everything) and `src/bin/` are above all of them.
const LAYERS: &[&[&str]] = &[
    &["routing", "config", "metrics"],
    &["translate", "admin"],
    &["source", "drain", "status"],
    &["proxy", "publish", "check"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
}

/// Source text without `//` comments (doc comments name modules freely).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None`: main, lib, bin).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).unwrap().components().next()?;
    let name = first.as_os_str().to_str()?;
    match name {
        "main.rs" | "lib.rs" | "bin" => None,
        n => Some(n.trim_end_matches(".rs").to_string()),
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut bad = Vec::new();
    for file in &files {
        let Some(me) = module_of(&src, file) else {
            continue;
        };
        let text = code(file);
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() || name == me {
                continue;
            }
            if layer(&name) >= layer(&me) {
                bad.push(format!("{} uses crate::{name}", file.display()));
            }
            edges.entry(me.clone()).or_default().insert(name);
        }
        if me == "routing" || me == "proxy" {
            for forbidden in ["kube::", "k8s_openapi"] {
                if text.contains(forbidden) {
                    bad.push(format!("{} names {forbidden}", file.display()));
                }
            }
        }
    }
    let picture: Vec<String> = edges
        .iter()
        .map(|(m, to)| {
            format!(
                "{m} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}\nedges:\n{}",
        bad.join("\n"),
        picture.join("\n")
    );
    // The README's picture, arrow for arrow: a new edge must be drawn there too.
    let readme = [
        "admin -> metrics, routing",
        "check -> config, source, translate",
        "drain -> admin, routing",
        "proxy -> drain, metrics, routing",
        "publish -> config, metrics, routing, source, status, translate",
        "source -> config, translate",
        "status -> config, metrics, translate",
        "translate -> config, routing",
    ];
    assert_eq!(picture, readme, "update the README's Layers picture");
}
