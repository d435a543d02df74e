//! ONNX importer: fixtures, opset normalization, hostile inputs.

use std::path::{Path, PathBuf};

use edgeconv::formats::onnx;
use edgeconv::ir::verify::verify;
use edgeconv::ir::{Graph, Shape};
use edgeconv::progress::Silent;

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new("/work/main/fixtures");
    dir.is_dir().then(|| dir.to_path_buf())
}

fn output_shape(g: &Graph, i: usize) -> String {
    g.fact(g.outputs[i]).shape.display(&g.symbols).to_string()
}

#[test]
fn fixtures_import_and_verify() {
    let Some(dir) = fixtures() else {
        eprintln!("no fixtures folder; skipped");
        return;
    };
    let expected = [
        ("mlp.onnx", vec!["[1,8]"]),
        ("cnn_bn.onnx", vec!["[1,10]"]),
        ("mobilenet_block.onnx", vec!["[1,16,16,16]"]),
        ("transformer_block.onnx", vec!["[1,8,32]"]),
        ("dynamic_batch.onnx", vec!["[N,10]", "[N,3]"]),
    ];
    for (file, shapes) in expected {
        let path = dir.join(file);
        if !path.exists() {
            eprintln!("{file} missing; skipped");
            continue;
        }
        let g = onnx::import(&path, &Silent).unwrap_or_else(|e| panic!("{file}: {e}"));
        verify(&g).unwrap();
        onnx::require_known(&g).unwrap();
        for (i, want) in shapes.iter().enumerate() {
            assert_eq!(&output_shape(&g, i), want, "{file} output {i}\n{g}");
        }
        assert_eq!(g.metadata.opsets.get(""), Some(&17), "{file}");
    }
}

#[test]
fn dynamic_batch_keeps_symbols_through_shape_arithmetic() {
    let Some(dir) = fixtures() else { return };
    let path = dir.join("dynamic_batch.onnx");
    if !path.exists() {
        return;
    }
    let g = onnx::import(&path, &Silent).unwrap();
    for (_, node) in g.nodes() {
        for &v in &node.outputs {
            let shape = &g.fact(v).shape;
            assert!(
                !matches!(shape, Shape::Unranked),
                "{} is unranked\n{g}",
                g.value(v).name
            );
        }
    }
}
