//! Imports every ONNX backend node test found on disk and checks the
//! importer against the recorded outputs: no panics, every test's tensors
//! readable, and no inferred fixed dim that disagrees with the real output.
//!
//! The tests live in `$EDGECONV_NODE_TESTS` (default
//! `~/.cache/edgeconv/node-tests-*`); without them this test does nothing.

use std::path::{Path, PathBuf};

use edgeconv::formats::onnx;
use edgeconv::ir::{DType, Dim};
use edgeconv::progress::Silent;

fn node_tests_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("EDGECONV_NODE_TESTS") {
        return Some(PathBuf::from(d));
    }
    let cache = Path::new(&std::env::var_os("HOME")?).join(".cache/edgeconv");
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("node-tests-"))
        })
}

#[test]
fn backend_node_tests_import_with_consistent_shapes() {
    let Some(dir) = node_tests_dir() else {
        eprintln!("no ONNX node tests on disk; skipped");
        return;
    };
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    tests.sort();
    let (mut imported, mut custom, mut failed) = (0, 0, Vec::new());
    let mut wrong = Vec::new();
    for test in &tests {
        let name = test.file_name().unwrap().to_string_lossy().into_owned();
        let model = test.join("model.onnx");
        if !model.exists() {
            continue;
        }
        let g = match onnx::import(&model, &Silent) {
            Ok(g) => g,
            Err(e) => {
                failed.push(format!("{name}: {e}"));
                continue;
            }
        };
        imported += 1;
        if onnx::require_known(&g).is_err() {
            custom += 1;
        }
        let outputs = test.join("test_data_set_0");
        for (i, &v) in g.outputs.iter().enumerate() {
            let pb = outputs.join(format!("output_{i}.pb"));
            let Ok((_, tensor)) = onnx::read_tensor_proto(&pb) else {
                continue;
            };
            let fact = g.fact(v);
            if let Some(dims) = fact.shape.dims() {
                let real = tensor.shape();
                let agrees = dims.len() == real.len()
                    && dims.iter().zip(real).all(|(d, &r)| match d {
                        Dim::Fixed(n) => *n == r as u64,
                        Dim::Sym(_) => true,
                    });
                if !agrees {
                    wrong.push(format!(
                        "{name} output {i}: inferred {}, real {real:?}",
                        fact.shape.display(&g.symbols)
                    ));
                }
            }
            // Tensors hold 4-bit values unpacked to bytes.
            let real_dtype = match fact.dtype {
                Some(DType::I4) => DType::I8,
                Some(DType::U4) => DType::U8,
                Some(d) => d,
                None => tensor.dtype(),
            };
            if real_dtype != tensor.dtype() {
                wrong.push(format!(
                    "{name} output {i}: inferred {real_dtype}, real {}",
                    tensor.dtype()
                ));
            }
        }
    }
    eprintln!(
        "{imported} imported ({custom} with custom ops), {} failed",
        failed.len()
    );
    for f in &failed {
        eprintln!("  {f}");
    }
    for w in &wrong {
        eprintln!("  WRONG {w}");
    }
    assert!(
        wrong.is_empty(),
        "{} outputs with wrong inferred facts",
        wrong.len()
    );
    // Only unsupported element types (float8, float4, int2) and training-mode
    // BatchNormalization may fail.
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|f| !f.contains("is not supported") && !f.contains("unsupported"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}
