//! `edgeconv run` agrees with onnxruntime within 1e-4 relative to the output
//! magnitude on every fixture sample and every real ONNX model, and the
//! interpreter agrees with tract (a second, in-process reference) on the
//! fixtures. `inspect` works on every model, the safetensors ones included.
//!
//! Run with `--nocapture` to see the measured agreement per model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::samples::{FIXTURES, REAL_MODELS, Sample, all_fixture_samples, real_sample};
use edgeconv::calibration::npy::read_npz;
use edgeconv::formats::{onnx, tract_reference};
use edgeconv::ir::compare::{Agreement, compare};
use edgeconv::ir::{Tensor, eval};
use edgeconv::progress::Silent;

const TOLERANCE: f64 = 1e-4;

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
        let expected = common::onnxruntime(
            &sample.model,
            &sample.inputs,
            &dir.path().join(format!("{i}-ort.npz")),
        );
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
    check_against_onnxruntime(&all_fixture_samples());
}

#[test]
fn real_models_match_onnxruntime() {
    let samples: Vec<Sample> = REAL_MODELS.iter().map(|m| real_sample(m)).collect();
    check_against_onnxruntime(&samples);
}

#[test]
fn fixtures_match_tract() {
    let mut failures = Vec::new();
    for sample in all_fixture_samples() {
        let g = onnx::import(&sample.model, &Silent).unwrap();
        let inputs = sample.tensors(&g);
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
