use std::path::Path;

use prost::Message;

use super::*;
use crate::formats::target::coverage;
use crate::ir::compare::compare;
use crate::ir::eval::run;
use crate::ir::text::{PrintOptions, parse, print};
use crate::passes::{RunOptions, run_stages};
use crate::progress::Silent;

fn fixture(name: &str) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.onnx"));
    crate::formats::onnx::import(&path, &Silent).unwrap()
}

fn opset_of(text: &str) -> i64 {
    required_opset(&parse(text).unwrap()).unwrap()
}

#[test]
fn the_hand_framed_file_decodes_to_the_message_prost_would_write() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cnn_bn", "transformer_block", "dynamic_batch"] {
        let g = fixture(name);
        let parts = build(&g).unwrap();
        let inits: Vec<stream::Initializer> = parts
            .initializers
            .iter()
            .map(|(header, v)| stream::Initializer {
                header: header.clone(),
                data: &g.weight_of(*v).unwrap().data,
            })
            .collect();
        let expected = stream::as_one_message(&parts.model, &parts.graph, &inits);
        let out = dir.path().join(format!("{name}.onnx"));
        let written = stream::write_model(
            &parts.model,
            &parts.graph,
            inits,
            &out,
            ExternalData::WhenTooLarge,
            &Silent,
        )
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(written.bytes, bytes.len() as u64, "{name}");
        assert_eq!(ModelProto::decode(&bytes[..]).unwrap(), expected, "{name}");
        assert_eq!(bytes.len(), expected.encoded_len(), "{name}");
    }
}

#[test]
fn exported_fixtures_import_back_to_the_same_ir() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "mlp",
        "cnn_bn",
        "mobilenet_block",
        "transformer_block",
        "dynamic_batch",
    ] {
        let g = fixture(name);
        let out = dir.path().join(format!("{name}.onnx"));
        OnnxTarget::default().emit(&g, &out, &Silent).unwrap();
        let back = crate::formats::onnx::import(&out, &Silent).unwrap();
        let options = PrintOptions::default();
        assert_eq!(print(&back, &options), print(&g, &options), "{name}");
    }
}

#[test]
fn the_opset_is_the_lowest_every_node_needs() {
    let unary = |op: &str| {
        format!(
            "graph g {{\n  input x: f32[2,4]\n  node n: y: f32[2,4] = {op} (x)\n  output y\n}}\n"
        )
    };
    assert_eq!(opset_of(&unary("Relu")), MIN_OPSET);
    assert_eq!(opset_of(&unary("HardSwish")), 14);
    assert_eq!(opset_of(&unary("Gelu {\"approximate\":\"Tanh\"}")), 20);
    assert_eq!(
        opset_of(&unary("Softmax {\"axis\":1,\"coerce_2d\":false}")),
        MIN_OPSET,
        "over the last axis"
    );
    assert_eq!(
        opset_of(&unary("Softmax {\"axis\":0,\"coerce_2d\":false}")),
        13
    );
    let layer_norm = "graph g {
  input x: f32[2,4]
  weight s: f32[4] = [1,1,1,1]
  node ln: y: f32[2,4] = LayerNormalization {\"axis\":-1,\"epsilon\":0.00001} (x, s)
  node r: z: f32[2,4] = Relu (y)
  output z
}
";
    assert_eq!(opset_of(layer_norm), 17);
    let reduce = |axes: &str| {
        format!(
            "graph g {{
  input x: f32[2,4]
  weight axes: i64[1] = [1]
  node m: y: f32[2,1] = ReduceMean {{\"keepdims\":true,\"noop_with_empty_axes\":false}} (x{axes})
  output y
}}
"
        )
    };
    assert_eq!(opset_of(&reduce(", axes")), 18);
    assert_eq!(opset_of(&reduce("")), MIN_OPSET);
    let bf16 = "graph g {
  input a: bf16[2]
  input b: bf16[2]
  node add: y: bf16[2] = Add (a, b)
  output y
}
";
    assert_eq!(opset_of(bf16), 13);
}

#[test]
fn every_unsupported_node_is_listed_and_nothing_is_written() {
    let g = parse(
        "graph g {
  input x: f32[2]
  node a: y: f32[2] = Custom {\"domain\":\"com.example\",\"name\":\"Frob\",\"attrs\":{}} (x)
  node b: z: f32[2] = Custom {\"domain\":\"\",\"name\":\"Blur\",\"attrs\":{}} (y)
  node c: w: f32[2] = Relu (z)
  output w
}
",
    )
    .unwrap();
    let support: Vec<bool> = coverage(&OnnxTarget::default(), &g)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s == Support::Native)
        .collect();
    assert_eq!(support, [false, false, true]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let err = OnnxTarget::default().emit(&g, &out, &Silent).unwrap_err();
    assert_eq!(err.exit_code(), crate::exit::UNSUPPORTED);
    let text = err.to_string();
    assert!(text.starts_with("2 nodes are unsupported"), "{text}");
    assert!(text.contains("node 'a' (com.example.Frob)"), "{text}");
    assert!(text.contains("node 'b' (Blur)"), "{text}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn legacy_softmax_over_several_axes_is_legalized_with_the_same_numbers() {
    let original = parse(
        "graph g {
  input x: f32[2,3,4]
  node sm: y: f32[2,3,4] = Softmax {\"axis\":1,\"coerce_2d\":true} (x)
  output y
}
",
    )
    .unwrap();
    let target = OnnxTarget::default();
    let mut g = original.clone();
    let sm = g.nodes().next().unwrap().0;
    assert!(matches!(target.support(&g, sm), Support::AfterLegalize(_)));
    run_stages(&mut g, &target.legalize(), &RunOptions::default()).unwrap();
    for (id, support) in coverage(&target, &g).unwrap() {
        assert_eq!(support, Support::Native, "{}", g.node(id).name);
    }
    let ops: Vec<&str> = g.nodes().map(|(_, n)| n.op.name()).collect();
    assert_eq!(ops, ["Flatten", "Softmax", "Shape", "Reshape"]);
    let x = crate::ir::Tensor::F32(ndarray::ArrayD::from_shape_fn(
        ndarray::IxDyn(&[2, 3, 4]),
        |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32 * 0.3 - 2.0,
    ));
    let before = run(&original, vec![x.clone()]).unwrap();
    let after = run(&g, vec![x]).unwrap();
    assert!(compare(&after[0], &before[0]).unwrap().within(1e-6));
    assert_eq!(g.value(g.outputs[0]).name, "y");
}

#[test]
fn ir_versions_follow_the_onnx_table() {
    assert_eq!(ir_version_for(7), 4);
    assert_eq!(ir_version_for(13), 7);
    assert_eq!(ir_version_for(17), 8);
    assert_eq!(ir_version_for(21), 10);
    assert_eq!(ir_version_for(28), 14);
}
