//! Imports every ONNX backend node test found on disk and checks the
//! importer against the recorded outputs: no panics, every test's tensors
//! readable, and no inferred fixed dim that disagrees with the real output.
//!
//! The tests are provisioned by `common::node_tests_dir` (never skipped).

mod common;

use std::path::PathBuf;

use edgeconv::formats::onnx;
use edgeconv::ir::{DType, Dim};
use edgeconv::progress::Silent;

#[test]
fn backend_node_tests_import_with_consistent_shapes() {
    let dir = common::node_tests_dir();
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
