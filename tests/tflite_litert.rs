//! The LiteRT oracle harness (tests/common/litert.rs + litert_run.py) on
//! hand-built .tflite files: values computed here in Rust, both resolvers,
//! model descriptions, and failures reported per run without stopping the batch.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::litert::{
    Job, Resolver, describe, describe_batch, run_batch, run_batch_ok, run_batch_with_env,
};
use common::tflite_build::TestModel;
use edgeconv::formats::tflite::schema as tfl;
use edgeconv::ir::Tensor;
use ndarray::{ArrayD, IxDyn};

const X: [f32; 6] = [-2.5, 0.5, 1.0, 3.0, -1.0, 0.25];

fn f32_tensor(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap())
}

fn f32_values(t: &Tensor) -> Vec<f32> {
    match t {
        Tensor::F32(a) => a.iter().copied().collect(),
        other => panic!("expected float32, got {:?}", other.dtype()),
    }
}

/// `y = relu(x + c)` for x [2, 3] and a constant c [3] (broadcast), with the
/// sum as a second output. Signature names: input `input`, outputs `sum`, `y`.
fn add_relu(c: &[f32; 3]) -> TestModel {
    let mut m = TestModel::new();
    let x = m.tensor("x", tfl::TensorType::FLOAT32, &[2, 3]);
    let c = m.constant_f32("c", &[3], c);
    let sum = m.tensor("sum_t", tfl::TensorType::FLOAT32, &[2, 3]);
    let y = m.tensor("y_t", tfl::TensorType::FLOAT32, &[2, 3]);
    m.op(
        tfl::BuiltinOperator::ADD,
        &[x, c],
        &[sum],
        tfl::BuiltinOptionsT::AddOptions(Box::default()),
    );
    m.op(
        tfl::BuiltinOperator::RELU,
        &[sum],
        &[y],
        tfl::BuiltinOptionsT::NONE,
    );
    m.input("input", x);
    m.output("sum", sum);
    m.output("y", y);
    m
}

/// The expected `(sum, y)` of [`add_relu`], computed here.
fn add_relu_expected(x: &[f32], c: &[f32; 3]) -> (Vec<f32>, Vec<f32>) {
    let sum: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + c[i % 3]).collect();
    let y = sum.iter().map(|v| v.max(0.0)).collect();
    (sum, y)
}

fn write_model(dir: &Path, name: &str, model: &TestModel) -> PathBuf {
    let path = dir.join(name);
    model.write(&path);
    path
}

#[test]
fn add_relu_models_match_hand_computed_values_with_both_resolvers() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 8;
    let cases: Vec<([f32; 3], Vec<f32>)> = (0..N)
        .map(|k| {
            let k = k as f32;
            let c = [1.0 - k, -2.0 + 0.5 * k, 0.5 * k];
            let x = X.iter().map(|v| v * (1.0 + 0.25 * k)).collect();
            (c, x)
        })
        .collect();
    let jobs: Vec<Job> = cases
        .iter()
        .enumerate()
        .map(|(k, (c, x))| {
            let model = write_model(dir.path(), &format!("add_relu{k}.tflite"), &add_relu(c));
            Job::new(model).input("input", f32_tensor(&[2, 3], x))
        })
        .collect();

    let start = Instant::now();
    let results = run_batch_ok(&jobs);
    eprintln!(
        "LiteRT ran {N} models x 2 resolvers in {:.2?}",
        start.elapsed()
    );

    for (result, (c, x)) in results.iter().zip(&cases) {
        let (sum, y) = add_relu_expected(x, c);
        assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0));
        for resolver in Resolver::BOTH {
            let out = result.ok(resolver);
            let names: Vec<&str> = out.outputs.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["sum", "y"], "{resolver}");
            for (name, expected) in [("sum", &sum), ("y", &y)] {
                let t = out.output(name);
                assert_eq!(t.shape(), [2, 3], "{resolver} {name}");
                // ADD and RELU are exact in float32, in every kernel.
                assert_eq!(&f32_values(t), expected, "{resolver} {name}, c = {c:?}");
            }
            assert_eq!(out.ops, ["ADD", "RELU"], "{resolver}");
        }
        assert!(result.ok(Resolver::Ref).delegated.is_empty());
        assert_eq!(
            result.ok(Resolver::Default).not_delegated(),
            Vec::<&str>::new(),
            "XNNPACK should take both ops"
        );
    }
}

#[test]
fn describe_reports_ops_tensors_and_signature() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), "m.tflite", &add_relu(&[1.0, 2.0, 3.0]));
    let d = describe(&model);
    assert_eq!(d.op_names(), ["ADD", "RELU"]);
    assert_eq!(d.count_op("ADD"), 1);
    assert_eq!(d.count_op("TRANSPOSE"), 0);
    assert_eq!(
        (d.ops[0].inputs.as_slice(), d.ops[0].outputs.as_slice()),
        (&[0, 1][..], &[2][..])
    );
    assert_eq!(d.tensor_count, 4);
    assert_eq!(d.subgraph_count, 1);
    assert_eq!(d.inputs.len(), 1);
    assert_eq!(
        (
            d.inputs[0].name.as_str(),
            d.inputs[0].index,
            d.inputs[0].dtype.as_str()
        ),
        ("x", 0, "float32")
    );
    assert_eq!(d.inputs[0].shape, [2, 3]);
    let outputs: Vec<(&str, usize)> = d
        .outputs
        .iter()
        .map(|t| (t.name.as_str(), t.index))
        .collect();
    assert_eq!(outputs, [("sum_t", 2), ("y_t", 3)]);
    let sig = &d.signatures["serving_default"];
    assert_eq!(sig.inputs, ["input"]);
    assert_eq!(sig.outputs, ["sum", "y"]);
    assert_eq!(d.signatures.len(), 1);
}

#[test]
fn a_model_without_signature_runs_by_tensor_names() {
    let dir = tempfile::tempdir().unwrap();
    let c = [0.5, -0.5, 2.0];
    let mut m = add_relu(&c);
    m.signature = false;
    let model = write_model(dir.path(), "nosig.tflite", &m);
    assert!(describe(&model).signatures.is_empty());
    let results = run_batch_ok(&[Job::new(&model).input("x", f32_tensor(&[2, 3], &X))]);
    let (sum, y) = add_relu_expected(&X, &c);
    for resolver in Resolver::BOTH {
        let out = results[0].ok(resolver);
        let names: Vec<&str> = out.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sum_t", "y_t"]);
        assert_eq!(f32_values(out.output("sum_t")), sum, "{resolver}");
        assert_eq!(f32_values(out.output("y_t")), y, "{resolver}");
    }
}

#[test]
fn broken_models_and_inputs_are_reported_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let c = [1.0, 2.0, 3.0];
    let good = write_model(dir.path(), "good.tflite", &add_relu(&c));
    let garbage = dir.path().join("garbage.tflite");
    std::fs::write(&garbage, b"TFL3 is not enough to make a model").unwrap();
    let truncated = dir.path().join("truncated.tflite");
    let bytes = add_relu(&c).to_bytes();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // ADD of [2, 3] and [4]: loads, but no kernel can prepare it.
    let mut m = add_relu(&c);
    m.tensors[1].shape = vec![4];
    m.tensors[1].data = Some([0f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect());
    let unbroadcastable = write_model(dir.path(), "unbroadcastable.tflite", &m);
    // A constant whose buffer is shorter than its shape.
    let mut m = add_relu(&c);
    m.tensors[1].data = Some(vec![0; 8]);
    let short_constant = write_model(dir.path(), "short_constant.tflite", &m);

    let x = || f32_tensor(&[2, 3], &X);
    let jobs = [
        Job::new(&garbage).input("input", x()),
        Job::new(&truncated).input("input", x()),
        Job::new(&unbroadcastable).input("input", x()),
        Job::new(&short_constant).input("input", x()),
        Job::new(dir.path().join("missing.tflite")).input("input", x()),
        Job::new(&good).input("wrong_name", x()),
        Job::new(&good).input("input", f32_tensor(&[3, 2], &X)),
        Job::new(&good).input("input", Tensor::from_i64(&[2, 3], vec![1; 6]).unwrap()),
        Job::new(&good).input("input", x()),
    ];
    let results = run_batch(&jobs);
    assert_eq!(results.len(), jobs.len());

    let expected_errors = [
        "not a valid Flatbuffer",
        "not a valid Flatbuffer",
        "not broadcastable",
        "Tensor 1 is invalidly specified",
        "Could not open",
        "signature inputs are ['input'], the job gives ['wrong_name']",
        "has shape [3, 2], the model declares [2, 3]",
        "expected type FLOAT32",
    ];
    for (k, expected) in expected_errors.iter().enumerate() {
        let result = &results[k];
        // XNNPACK reports a failed prepare in its own words.
        let resolvers: &[Resolver] = if k == 2 {
            &[Resolver::Ref]
        } else {
            &Resolver::BOTH
        };
        for &resolver in resolvers {
            let err = result.err(resolver);
            assert!(
                err.contains(expected),
                "job {k} ({}) [{resolver}]: error {err:?} does not mention {expected:?}",
                result.model.display()
            );
        }
        assert_eq!(result.failures().len(), 2, "job {k}");
    }
    assert!(
        results[2]
            .err(Resolver::Default)
            .contains("failed to prepare")
    );

    let last = results.last().unwrap();
    assert!(last.failures().is_empty(), "{:?}", last.failures());
    let (_, y) = add_relu_expected(&X, &c);
    for resolver in Resolver::BOTH {
        assert_eq!(f32_values(last.ok(resolver).output("y")), y);
    }

    let described = describe_batch(&[&garbage, &good]);
    let err = described[0].as_ref().unwrap_err();
    assert!(
        err.contains("garbage.tflite") && err.contains("not a valid Flatbuffer"),
        "{err}"
    );
    assert_eq!(described[1].as_ref().unwrap().op_names(), ["ADD", "RELU"]);
}

#[test]
fn a_run_that_kills_the_process_is_reported_and_the_batch_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let c = [-1.0, 0.0, 1.0];
    let good = write_model(dir.path(), "good.tflite", &add_relu(&c));
    let crash = write_model(dir.path(), "crash.tflite", &add_relu(&c));
    let x = || f32_tensor(&[2, 3], &X);
    let jobs = [
        Job::new(&good).input("input", x()),
        Job::new(&crash).input("input", x()),
        Job::new(&good)
            .input("input", x())
            .resolvers(&[Resolver::Default]),
    ];
    let abort_on: &OsStr = crash.as_os_str();
    let results = run_batch_with_env(&jobs, &[("EDGECONV_LITERT_ABORT_ON", abort_on)]);

    let (_, y) = add_relu_expected(&X, &c);
    for resolver in Resolver::BOTH {
        assert_eq!(f32_values(results[0].ok(resolver).output("y")), y);
        let err = results[1].err(resolver);
        assert!(err.contains("the LiteRT process died"), "{err}");
    }
    assert_eq!(results[2].runs.len(), 1);
    assert_eq!(f32_values(results[2].ok(Resolver::Default).output("y")), y);
}
