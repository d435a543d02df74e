//! `edgeconv run`: the reference interpreter on `.npy` inputs, outputs to `.npz`.

use std::path::Path;

use edgeconv::calibration::npy::write_npz;
use edgeconv::formats::tract_reference;
use edgeconv::ir::eval;
use edgeconv::ir::tensor::Tensor;
use edgeconv::progress::Progress;

use super::inputs::{self, InputArg};
use super::load;

/// The runtime that computes a model's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// edgeconv's reference interpreter.
    Edgeconv,
    /// tract, an independent ONNX runtime (ONNX models only).
    Tract,
}

/// Imports `model`, runs it on the `-i` arrays and writes every graph output
/// to `output`, keyed by output name, in graph order. Returns one line per
/// output (name, dtype, shape) for the user.
pub fn run(
    model: &Path,
    inputs: &[InputArg],
    output: &Path,
    engine: Engine,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<String>> {
    let g = load::import(model, progress)?;
    let tensors = inputs::bind(&g, inputs)?;
    let results = match engine {
        Engine::Edgeconv => eval::run(&g, tensors)?,
        Engine::Tract if g.metadata.source_format == "onnx" => {
            tract_reference::run(model, &tensors)?
        }
        Engine::Tract => anyhow::bail!("{}: --engine tract runs ONNX models only", model.display()),
    };
    let named: Vec<(&str, &Tensor)> = g
        .outputs
        .iter()
        .map(|&id| g.value(id).name.as_str())
        .zip(&results)
        .collect();
    write_npz(output, &named)?;
    Ok(named
        .iter()
        .map(|(name, t)| format!("{name}  {}{:?}", t.dtype(), t.shape()))
        .collect())
}
