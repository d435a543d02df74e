//! The module layering is one way: ir <- calibration <- passes <- formats <- cli.
//! This test reads every source file's paths (`use` lines and qualified paths)
//! and fails when a layer reaches into a layer above it.

use std::fs;
use std::path::{Path, PathBuf};

/// Layers from the bottom up; a file may only refer to its own layer or lower ones.
const LAYERS: [&str; 5] = ["ir", "calibration", "passes", "formats", "cli"];

fn layer_of(relative: &Path) -> Option<usize> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = match first {
        "src" => match relative.components().nth(1)?.as_os_str().to_str()? {
            "ir" => "ir",
            "main.rs" | "cli" => "cli",
            // lib.rs mounts the layers; progress.rs and output.rs are leaf utilities below them.
            _ => return None,
        },
        "calibration" | "passes" | "formats" => first,
        _ => return None,
    };
    LAYERS.iter().position(|l| *l == name)
}

/// Layers a piece of Rust source refers to through `crate::`, `super::` or
/// `edgeconv::` paths, with the line they appear on. Comments are skipped.
fn referenced_layers(source: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (line_no, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in ["crate::", "super::", "edgeconv::"] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let after = &rest[i + prefix.len()..];
                let ident: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let target = if ident == "main" {
                    "cli"
                } else {
                    ident.as_str()
                };
                if let Some(layer) = LAYERS.iter().position(|l| *l == target) {
                    found.push((line_no + 1, layer));
                }
                rest = after;
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for top in ["src", "calibration", "passes", "formats"] {
        rust_files(&root.join(top), &mut files);
    }
    let mut out = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap();
        let Some(own) = layer_of(relative) else {
            continue;
        };
        let source = fs::read_to_string(&file).unwrap();
        for (line, used) in referenced_layers(&source) {
            if used > own {
                out.push(format!(
                    "{}:{line}: layer '{}' uses higher layer '{}'",
                    relative.display(),
                    LAYERS[own],
                    LAYERS[used]
                ));
            }
        }
    }
    out
}

#[test]
fn layers_only_depend_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = violations(root);
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_upward_uses() {
    let source = "use crate::ir::Graph;\nuse crate::formats::onnx; // an upward use\n// use crate::passes;\nlet x = super::passes::dce::run();\n";
    assert_eq!(referenced_layers(source), vec![(1, 0), (2, 3), (4, 2)]);
    assert_eq!(layer_of(Path::new("passes/dce.rs")), Some(2));
    assert_eq!(layer_of(Path::new("src/ir/eval/conv.rs")), Some(0));
    assert_eq!(layer_of(Path::new("src/main.rs")), Some(4));
    assert_eq!(layer_of(Path::new("src/lib.rs")), None);
}
