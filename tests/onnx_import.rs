//! ONNX importer: fixtures, opset normalization, Constant nodes, external
//! data, hostile files, graph errors, symbolic inference. Models are built by
//! encoding the importer's own protobuf types.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use edgeconv::Error;
use edgeconv::formats::onnx;
use edgeconv::formats::onnx::proto::attribute_proto::AttributeType;
use edgeconv::formats::onnx::proto::tensor_proto::{DataLocation, DataType};
use edgeconv::formats::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use edgeconv::formats::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};
use edgeconv::ir::ops::SoftmaxAttrs;
use edgeconv::ir::verify::verify;
use edgeconv::ir::{DType, Graph, Op, Shape, Tensor};
use edgeconv::progress::Silent;

// ---- building models -------------------------------------------------------

fn attr(name: &str, t: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: t as i32,
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..attr(name, AttributeType::Int)
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: v,
        ..attr(name, AttributeType::Float)
    }
}

fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn tensor_f32(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: DataType::Float as i32,
        dims: dims.to_vec(),
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: DataType::Int64 as i32,
        dims: dims.to_vec(),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A tensor value; dims are numbers or `dim_param` names.
fn value(name: &str, dtype: DataType, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(n) => dimension::Value::DimValue(n),
                Err(_) => dimension::Value::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct ModelSpec {
    opset: i64,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<&'static str>,
    initializers: Vec<TensorProto>,
}

fn model(spec: ModelSpec) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "edgeconv-tests".into(),
        producer_version: "1".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: spec.opset,
        }],
        metadata_props: vec![StringStringEntryProto {
            key: "author".into(),
            value: "tests".into(),
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: spec.nodes,
            input: spec.inputs,
            output: spec
                .outputs
                .iter()
                .map(|o| ValueInfoProto {
                    name: o.to_string(),
                    ..Default::default()
                })
                .collect(),
            initializer: spec.initializers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn import(m: &ModelProto) -> Result<Graph, Error> {
    let g = onnx::import_bytes(Bytes::from(m.encode_to_vec()), Path::new("test.onnx"), None)?;
    verify(&g).expect("imported graphs verify");
    Ok(g)
}

/// A one-node model over a float input `x` of the given dims.
fn one_node(opset: i64, n: NodeProto, x_dims: &[&str]) -> ModelProto {
    model(ModelSpec {
        opset,
        nodes: vec![n],
        inputs: vec![value("x", DataType::Float, x_dims)],
        outputs: vec!["y"],
        initializers: vec![],
    })
}

fn only_node(g: &Graph) -> &edgeconv::ir::Node {
    let mut nodes = g.nodes();
    let (_, n) = nodes.next().expect("one node");
    assert!(nodes.next().is_none());
    n
}

fn out_shape(g: &Graph) -> String {
    g.fact(g.outputs[0]).shape.display(&g.symbols).to_string()
}

/// The constant values of node input `i`.
fn const_input(g: &Graph, n: &edgeconv::ir::Node, i: usize) -> Vec<f64> {
    let w = g
        .weight_of(n.input(i).expect("input present"))
        .expect("a weight");
    Tensor::from_bytes(w.dtype, &w.shape, &w.data)
        .unwrap()
        .to_f64_vec()
}

// ---- opset normalization ---------------------------------------------------

#[test]
fn softmax_before_opset_13_coerces_to_2d() {
    let n = || node("Softmax", &["x"], &["y"], vec![]);
    let old = import(&one_node(11, n(), &["2", "3", "4"])).unwrap();
    assert_eq!(
        only_node(&old).op,
        Op::Softmax(SoftmaxAttrs {
            axis: 1,
            coerce_2d: true
        })
    );
    let new = import(&one_node(13, n(), &["2", "3", "4"])).unwrap();
    assert_eq!(
        only_node(&new).op,
        Op::Softmax(SoftmaxAttrs {
            axis: -1,
            coerce_2d: false
        })
    );
    assert_eq!(out_shape(&new), "[2,3,4]");
}

#[test]
fn reshape_shape_attribute_becomes_an_input() {
    let n = node(
        "Reshape",
        &["x"],
        &["y"],
        vec![attr_ints("shape", &[0, -1])],
    );
    let g = import(&one_node(4, n, &["2", "3", "4"])).unwrap();
    let n = only_node(&g);
    assert_eq!(const_input(&g, n, 1), vec![0.0, -1.0]);
    assert_eq!(out_shape(&g), "[2,12]");

    let m = model(ModelSpec {
        opset: 14,
        nodes: vec![node("Reshape", &["x", "s"], &["y"], vec![])],
        inputs: vec![value("x", DataType::Float, &["2", "3", "4"])],
        outputs: vec!["y"],
        initializers: vec![tensor_i64("s", &[2], &[0, -1])],
    });
    assert_eq!(out_shape(&import(&m).unwrap()), "[2,12]");
}

#[test]
fn squeeze_axes_attribute_and_input_give_the_same_graph() {
    let old = node("Squeeze", &["x"], &["y"], vec![attr_ints("axes", &[1])]);
    let old = import(&one_node(11, old, &["N", "1", "4"])).unwrap();
    let new = model(ModelSpec {
        opset: 13,
        nodes: vec![node("Squeeze", &["x", "axes"], &["y"], vec![])],
        inputs: vec![value("x", DataType::Float, &["N", "1", "4"])],
        outputs: vec!["y"],
        initializers: vec![tensor_i64("axes", &[1], &[1])],
    });
    let new = import(&new).unwrap();
    for g in [&old, &new] {
        let n = only_node(g);
        assert_eq!(n.op, Op::Squeeze);
        assert_eq!(const_input(g, n, 1), vec![1.0]);
        assert_eq!(out_shape(g), "[N,4]");
    }
}

#[test]
fn clip_min_max_attributes_become_inputs() {
    let old = node(
        "Clip",
        &["x"],
        &["y"],
        vec![attr_float("min", -1.5), attr_float("max", 2.0)],
    );
    let g = import(&one_node(6, old, &["3"])).unwrap();
    let n = only_node(&g);
    assert_eq!(n.op, Op::Clip);
    assert_eq!(const_input(&g, n, 1), vec![-1.5]);
    assert_eq!(const_input(&g, n, 2), vec![2.0]);
    assert_eq!(g.fact(n.input(1).unwrap()).dtype, Some(DType::F32));

    let max_only = node("Clip", &["x"], &["y"], vec![attr_float("max", 6.0)]);
    let g = import(&one_node(6, max_only, &["3"])).unwrap();
    let n = only_node(&g);
    assert_eq!(n.input(1), None);
    assert_eq!(const_input(&g, n, 2), vec![6.0]);

    let new = model(ModelSpec {
        opset: 13,
        nodes: vec![node("Clip", &["x", "", "hi"], &["y"], vec![])],
        inputs: vec![value("x", DataType::Float, &["3"])],
        outputs: vec!["y"],
        initializers: vec![tensor_f32("hi", &[], &[6.0])],
    });
    let g = import(&new).unwrap();
    let n = only_node(&g);
    assert_eq!(n.input(1), None);
    assert_eq!(const_input(&g, n, 2), vec![6.0]);
}

#[test]
fn reduce_axes_attribute_becomes_an_input_before_opset_18() {
    let n = || {
        node(
            "ReduceMean",
            &["x"],
            &["y"],
            vec![attr_ints("axes", &[-1]), attr_int("keepdims", 0)],
        )
    };
    let g = import(&one_node(13, n(), &["N", "5"])).unwrap();
    assert_eq!(const_input(&g, only_node(&g), 1), vec![-1.0]);
    assert_eq!(out_shape(&g), "[N]");
}

#[test]
fn dropout_is_identity_unless_its_mask_is_read() {
    let g = import(&one_node(
        13,
        node("Dropout", &["x"], &["y", "mask"], vec![]),
        &["3"],
    ))
    .unwrap();
    let n = only_node(&g);
    assert_eq!(n.op, Op::Identity);
    assert_eq!(n.outputs.len(), 1);

    let mut m = one_node(13, node("Dropout", &["x"], &["y", "mask"], vec![]), &["3"]);
    m.graph.as_mut().unwrap().output.push(ValueInfoProto {
        name: "mask".into(),
        ..Default::default()
    });
    let g = import(&m).unwrap();
    assert!(matches!(only_node(&g).op, Op::Custom(_)));
}

#[test]
fn training_batch_norm_is_refused() {
    let m = model(ModelSpec {
        opset: 15,
        nodes: vec![node(
            "BatchNormalization",
            &["x", "s", "b", "m", "v"],
            &["y", "rm", "rv"],
            vec![attr_int("training_mode", 1)],
        )],
        inputs: ["x", "s", "b", "m", "v"]
            .iter()
            .map(|n| value(n, DataType::Float, &["2"]))
            .collect(),
        outputs: vec!["y", "rm"],
        initializers: vec![],
    });
    let e = import(&m).unwrap_err();
    assert!(e.to_string().contains("BatchNormalization"), "{e}");
}

// ---- constants, weights, names, metadata -----------------------------------

#[test]
fn constant_nodes_become_weights() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![
            node(
                "Constant",
                &[],
                &["t"],
                vec![attr_tensor("value", tensor_f32("", &[2], &[1.0, 2.0]))],
            ),
            node(
                "Constant",
                &[],
                &["f"],
                vec![attr_float("value_float", 0.5)],
            ),
            node(
                "Constant",
                &[],
                &["i"],
                vec![attr_ints("value_ints", &[3, 4])],
            ),
            node("Add", &["x", "t"], &["a"], vec![]),
            node("Mul", &["a", "f"], &["y"], vec![]),
            node("Reshape", &["y", "i"], &["r"], vec![]),
        ],
        inputs: vec![value("x", DataType::Float, &["6", "2"])],
        outputs: vec!["r"],
        initializers: vec![],
    });
    let g = import(&m).unwrap();
    assert_eq!(g.node_count(), 3);
    let names: Vec<&str> = g.weights.iter().map(|(_, w)| w.name.as_str()).collect();
    assert_eq!(names, ["t", "f", "i"]);
    assert_eq!(out_shape(&g), "[3,4]");
}

#[test]
fn initializers_listed_as_inputs_stay_weights_and_metadata_is_kept() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![node("Add", &["x", "w"], &["y"], vec![])],
        inputs: vec![
            value("x", DataType::Float, &["2"]),
            value("w", DataType::Float, &["2"]),
        ],
        outputs: vec!["y"],
        initializers: vec![tensor_f32("w", &[2], &[1.0, 2.0])],
    });
    let g = import(&m).unwrap();
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.weights.len(), 1);
    assert_eq!(g.metadata.ir_version, Some(8));
    assert_eq!(g.metadata.producer.as_deref(), Some("edgeconv-tests 1"));
    assert_eq!(g.metadata.opsets.get(""), Some(&13));
    assert_eq!(
        g.metadata.props.get("author").map(String::as_str),
        Some("tests")
    );
}

#[test]
fn unnamed_and_repeated_node_names_become_unique() {
    let mut a = node("Relu", &["x"], &["a"], vec![]);
    a.name = "act".into();
    let mut b = node("Relu", &["a"], &["b"], vec![]);
    b.name = "act".into();
    let c = node("Relu", &["b"], &["y"], vec![]);
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![a, b, c],
        inputs: vec![value("x", DataType::Float, &["2"])],
        outputs: vec!["y"],
        initializers: vec![],
    });
    let g = import(&m).unwrap();
    let names: Vec<&str> = g.nodes().map(|(_, n)| n.name.as_str()).collect();
    assert_eq!(names, ["act", "act_1", "Relu_2"]);
}

#[test]
fn unknown_ops_import_and_are_all_listed_by_require_known() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![
            node("Frobnicate", &["x"], &["a"], vec![attr_int("k", 3)]),
            node("Relu", &["a"], &["b"], vec![]),
            NodeProto {
                domain: "com.example".into(),
                ..node("Twiddle", &["b"], &["y"], vec![])
            },
        ],
        inputs: vec![value("x", DataType::Float, &["2"])],
        outputs: vec!["y"],
        initializers: vec![],
    });
    let g = import(&m).unwrap();
    let Err(Error::Unsupported(list)) = onnx::require_known(&g) else {
        panic!("custom ops must be reported");
    };
    let ops: Vec<&str> = list.iter().map(|u| u.op.as_str()).collect();
    assert_eq!(ops, ["Frobnicate", "com.example.Twiddle"]);
}

// ---- symbolic shape inference ----------------------------------------------

#[test]
fn reshape_through_shape_gather_concat_keeps_the_batch_symbol() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "zero"], &["n"], vec![attr_int("axis", 0)]),
            node("Unsqueeze", &["n", "axes0"], &["n1"], vec![]),
            node(
                "Concat",
                &["n1", "minus_one"],
                &["target"],
                vec![attr_int("axis", 0)],
            ),
            node("Reshape", &["x", "target"], &["flat"], vec![]),
            node("Gather", &["s", "one"], &["c"], vec![attr_int("axis", 0)]),
            node("Range", &["zero", "c", "one"], &["ids"], vec![]),
            node(
                "Concat",
                &["n1", "one1"],
                &["shape2"],
                vec![attr_int("axis", 0)],
            ),
            node("Expand", &["ids", "shape2"], &["y"], vec![]),
        ],
        inputs: vec![value("x", DataType::Float, &["batch", "3", "4", "5"])],
        outputs: vec!["flat", "y"],
        initializers: vec![
            tensor_i64("zero", &[], &[0]),
            tensor_i64("one", &[], &[1]),
            tensor_i64("one1", &[1], &[1]),
            tensor_i64("axes0", &[1], &[0]),
            tensor_i64("minus_one", &[1], &[-1]),
        ],
    });
    let g = import(&m).unwrap();
    let shape = |i: usize| g.fact(g.outputs[i]).shape.display(&g.symbols).to_string();
    assert_eq!(shape(0), "[batch,60]");
    assert_eq!(shape(1), "[batch,3]");
    assert_eq!(g.fact(g.outputs[1]).dtype, Some(DType::I64));
}

#[test]
fn unnamed_unknown_dims_become_fresh_symbols() {
    let mut m = one_node(13, node("Relu", &["x"], &["y"], vec![]), &["N", "4"]);
    let input = &mut m.graph.as_mut().unwrap().input[0];
    if let Some(type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape.as_mut().unwrap().dim[1].value = None;
    }
    let g = import(&m).unwrap();
    let dims = g.fact(g.inputs[0]).shape.dims().unwrap().to_vec();
    assert_eq!(dims[0].display(&g.symbols).to_string(), "N");
    assert!(dims[1].fixed().is_none());
    assert_ne!(dims[0], dims[1]);
}

// ---- graph errors ----------------------------------------------------------

#[test]
fn cycles_are_located_errors() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![
            NodeProto {
                name: "first".into(),
                ..node("Add", &["x", "b"], &["a"], vec![])
            },
            NodeProto {
                name: "second".into(),
                ..node("Relu", &["a"], &["b"], vec![])
            },
        ],
        inputs: vec![value("x", DataType::Float, &["2"])],
        outputs: vec!["b"],
        initializers: vec![],
    });
    let e = import(&m).unwrap_err().to_string();
    assert!(
        e.contains("cycle") && e.contains("first") && e.contains("second"),
        "{e}"
    );
}

#[test]
fn undefined_inputs_and_duplicate_names_are_located_errors() {
    let m = one_node(13, node("Add", &["x", "nowhere"], &["y"], vec![]), &["2"]);
    let e = import(&m).unwrap_err().to_string();
    assert!(e.contains("Add") && e.contains("'nowhere'"), "{e}");

    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![
            node("Relu", &["x"], &["y"], vec![]),
            node("Neg", &["x"], &["y"], vec![]),
        ],
        inputs: vec![value("x", DataType::Float, &["2"])],
        outputs: vec!["y"],
        initializers: vec![],
    });
    let e = import(&m).unwrap_err().to_string();
    assert!(
        e.contains("Neg") && e.contains("'y' is already defined"),
        "{e}"
    );

    let m = one_node(13, node("Relu", &["x"], &["y"], vec![]), &["2"]);
    let mut bad = m.clone();
    bad.graph.as_mut().unwrap().output[0].name = "missing".into();
    assert!(import(&bad).unwrap_err().to_string().contains("'missing'"));
}

#[test]
fn inconsistent_shapes_are_errors_at_the_node() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![NodeProto {
            name: "mm".into(),
            ..node("MatMul", &["x", "w"], &["y"], vec![])
        }],
        inputs: vec![value("x", DataType::Float, &["2", "3"])],
        outputs: vec!["y"],
        initializers: vec![tensor_f32("w", &[4, 1], &[0.0; 4])],
    });
    let e = import(&m).unwrap_err().to_string();
    assert!(e.contains("node 'mm' (MatMul)"), "{e}");
}

// ---- hostile bytes ---------------------------------------------------------

fn small_model_bytes() -> Vec<u8> {
    model(ModelSpec {
        opset: 13,
        nodes: vec![
            node("Add", &["x", "w"], &["a"], vec![]),
            node("Softmax", &["a"], &["y"], vec![attr_int("axis", -1)]),
        ],
        inputs: vec![value("x", DataType::Float, &["N", "2"])],
        outputs: vec!["y"],
        initializers: vec![tensor_f32("w", &[2], &[1.0, 2.0])],
    })
    .encode_to_vec()
}

#[test]
fn truncated_models_never_panic_and_parse_errors_are_located() {
    let bytes = small_model_bytes();
    let mut parse_errors = 0;
    for cut in 0..bytes.len() {
        let data = Bytes::copy_from_slice(&bytes[..cut]);
        match onnx::import_bytes(data, Path::new("cut.onnx"), None) {
            Ok(g) => verify(&g).unwrap(),
            Err(Error::Parse { path, offset, .. }) => {
                parse_errors += 1;
                assert_eq!(path, PathBuf::from("cut.onnx"));
                assert!(offset <= cut as u64);
            }
            Err(_) => {}
        }
    }
    assert!(parse_errors > bytes.len() / 2, "{parse_errors}");
}

#[test]
fn corrupted_models_never_panic() {
    let bytes = small_model_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % b.len() as u64) as usize;
            b[at] = next() as u8;
        }
        if let Ok(g) = onnx::import_bytes(Bytes::from(b), Path::new("x.onnx"), None) {
            verify(&g).unwrap();
        }
    }
}

#[test]
fn huge_declared_sizes_are_refused_without_allocating() {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![node("Identity", &["w"], &["y"], vec![])],
        inputs: vec![],
        outputs: vec!["y"],
        initializers: vec![tensor_f32("w", &[1 << 40, 1 << 40], &[])],
    });
    let e = import(&m).unwrap_err().to_string();
    assert!(e.contains("'w'"), "{e}");
}

// ---- external data ---------------------------------------------------------

fn external_tensor(location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
    let mut entries = vec![StringStringEntryProto {
        key: "location".into(),
        value: location.into(),
    }];
    if let Some(o) = offset {
        entries.push(StringStringEntryProto {
            key: "offset".into(),
            value: o.to_string(),
        });
    }
    if let Some(l) = length {
        entries.push(StringStringEntryProto {
            key: "length".into(),
            value: l.to_string(),
        });
    }
    TensorProto {
        name: "w".into(),
        data_type: DataType::Float as i32,
        dims: vec![2],
        data_location: DataLocation::External as i32,
        external_data: entries,
        ..Default::default()
    }
}

fn write_external_model(dir: &Path, t: TensorProto) -> PathBuf {
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![node("Add", &["x", "w"], &["y"], vec![])],
        inputs: vec![value("x", DataType::Float, &["2"])],
        outputs: vec!["y"],
        initializers: vec![t],
    });
    let path = dir.join("model.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

#[test]
fn external_data_is_read_from_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 8];
    data.extend_from_slice(&1.5f32.to_le_bytes());
    data.extend_from_slice(&(-2.0f32).to_le_bytes());
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/w.bin"), &data).unwrap();
    let path = write_external_model(dir.path(), external_tensor("data/w.bin", Some(8), Some(8)));
    let g = onnx::import(&path, &Silent).unwrap();
    let w = g.weights.iter().next().unwrap().1;
    assert_eq!(&w.data[..], &data[8..]);

    let path = write_external_model(dir.path(), external_tensor("data/w.bin", Some(8), None));
    assert!(onnx::import(&path, &Silent).is_ok());
}

#[test]
fn external_data_may_not_leave_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.bin"), [0u8; 8]).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        outside.path().join("secret.bin"),
        dir.path().join("link.bin"),
    )
    .unwrap();
    let secret = outside.path().join("secret.bin");
    let mut cases = vec![
        ("../../etc/passwd".to_string(), "'..'"),
        (secret.display().to_string(), "absolute"),
        ("missing.bin".to_string(), "missing.bin"),
    ];
    if cfg!(unix) {
        cases.push(("link.bin".to_string(), "outside the model's folder"));
    }
    for (location, why) in cases {
        let path = write_external_model(dir.path(), external_tensor(&location, None, None));
        let e = onnx::import(&path, &Silent).unwrap_err().to_string();
        assert!(
            e.contains("tensor 'w'") && e.contains(&location) && e.contains(why),
            "{e}"
        );
        assert!(e.contains("model.onnx"), "{e}");
    }
}

#[test]
fn external_data_ranges_are_checked_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), [0u8; 8]).unwrap();
    for (offset, length) in [
        (Some(4), Some(8)),
        (Some(u64::MAX), Some(8)),
        (None, Some(4)),
    ] {
        let path = write_external_model(dir.path(), external_tensor("w.bin", offset, length));
        let e = onnx::import(&path, &Silent).unwrap_err().to_string();
        assert!(e.contains("tensor 'w'"), "{e}");
    }
    let bytes = Bytes::from(
        model(ModelSpec {
            opset: 13,
            nodes: vec![node("Identity", &["w"], &["y"], vec![])],
            inputs: vec![],
            outputs: vec!["y"],
            initializers: vec![external_tensor("w.bin", None, None)],
        })
        .encode_to_vec(),
    );
    let e = onnx::import_bytes(bytes, Path::new("mem.onnx"), None).unwrap_err();
    assert!(e.to_string().contains("no folder"), "{e}");
}

#[test]
fn tensor_proto_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input_0.pb");
    std::fs::write(
        &path,
        tensor_f32("x", &[2, 2], &[1.0, 2.0, 3.0, 4.0]).encode_to_vec(),
    )
    .unwrap();
    let (name, t) = onnx::read_tensor_proto(&path).unwrap();
    assert_eq!(name, "x");
    assert_eq!(t.shape(), [2, 2]);
    assert_eq!(t.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    std::fs::write(&path, [0x0a, 0xff]).unwrap();
    assert!(matches!(
        onnx::read_tensor_proto(&path),
        Err(Error::Parse { .. })
    ));
}

// ---- fixtures --------------------------------------------------------------

fn fixtures() -> Option<PathBuf> {
    let dir = Path::new("/work/main/fixtures");
    dir.is_dir().then(|| dir.to_path_buf())
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
            let got = g.fact(g.outputs[i]).shape.display(&g.symbols).to_string();
            assert_eq!(&got, want, "{file} output {i}\n{g}");
        }
        for (_, n) in g.nodes() {
            for &v in &n.outputs {
                let shape = &g.fact(v).shape;
                assert!(
                    shape.is_static() || file == "dynamic_batch.onnx",
                    "{file}\n{g}"
                );
                assert!(!matches!(shape, Shape::Unranked), "{file}\n{g}");
            }
        }
        assert_eq!(g.metadata.opsets.get(""), Some(&17), "{file}");
    }
}

#[test]
fn hostile_attributes_and_declared_sizes_are_errors_not_panics() {
    let pool = node(
        "MaxPool",
        &["x"],
        &["y"],
        vec![
            attr_ints("kernel_shape", &[1 << 62]),
            attr_ints("dilations", &[8]),
        ],
    );
    assert!(import(&one_node(13, pool, &["1", "1", "4"])).is_err());
    let pads = node(
        "AveragePool",
        &["x"],
        &["y"],
        vec![
            attr_ints("kernel_shape", &[1]),
            attr_ints("pads", &[i64::MAX, i64::MAX]),
        ],
    );
    assert!(import(&one_node(13, pads, &["1", "1", "4"])).is_err());
    let split = node(
        "Split",
        &["x"],
        &["y"],
        vec![attr_int("num_outputs", 1 << 40)],
    );
    assert!(import(&one_node(18, split, &["4"])).is_err());
    let d2s = node(
        "DepthToSpace",
        &["x"],
        &["y"],
        vec![attr_int("blocksize", 1 << 40)],
    );
    assert!(import(&one_node(13, d2s, &["1", "4", "2", "2"])).is_err());

    let huge = (1u64 << 40).to_string();
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![
            node("Reshape", &["x", "s"], &["r"], vec![]),
            node("ConstantOfShape", &["s"], &["c"], vec![]),
            node("Expand", &["x", "s"], &["y"], vec![]),
        ],
        inputs: vec![
            value("x", DataType::Float, &["2"]),
            value("s", DataType::Int64, &[huge.as_str()]),
        ],
        outputs: vec!["r", "c", "y"],
        initializers: vec![],
    });
    let g = import(&m).unwrap();
    for &o in &g.outputs {
        assert_eq!(g.fact(o).shape, Shape::Unranked);
    }
}

#[test]
fn raw_initializer_data_stays_in_the_input_buffer() {
    let raw: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let w = TensorProto {
        name: "w".into(),
        data_type: DataType::Float as i32,
        dims: vec![4],
        raw_data: Bytes::from(raw.clone()),
        ..Default::default()
    };
    let m = model(ModelSpec {
        opset: 13,
        nodes: vec![node("Add", &["x", "w"], &["y"], vec![])],
        inputs: vec![value("x", DataType::Float, &["4"])],
        outputs: vec!["y"],
        initializers: vec![w],
    });
    let input = Bytes::from(m.encode_to_vec());
    let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    let g = onnx::import_bytes(input.clone(), Path::new("m.onnx"), None).unwrap();
    let data = &g.weights.iter().next().unwrap().1.data;
    assert_eq!(&data[..], &raw[..]);
    assert!(
        range.contains(&(data.as_ptr() as usize)),
        "weight bytes were copied"
    );
}
