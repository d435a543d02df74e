//! `edgeconv run`: the reference interpreter on `.npy` inputs, outputs to `.npz`.

use std::path::Path;

use edgeconv::calibration::npy::write_npz;
use edgeconv::ir::eval;
use edgeconv::ir::tensor::Tensor;
use edgeconv::progress::Progress;

use super::inputs::{self, InputArg};
use super::load;

/// Imports `model`, runs it on the `-i` arrays and writes every graph output
/// to `output`, keyed by output name, in graph order.
pub fn run(
    model: &Path,
    inputs: &[InputArg],
    output: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    let g = load::import(model, progress)?;
    let tensors = inputs::bind(&g, inputs)?;
    let results = eval::run(&g, tensors)?;
    let named: Vec<(&str, &Tensor)> = g
        .outputs
        .iter()
        .map(|&id| g.value(id).name.as_str())
        .zip(&results)
        .collect();
    write_npz(output, &named)?;
    Ok(())
}
