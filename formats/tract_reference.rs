//! An independent in-process reference for ONNX models: runs the source file
//! with tract, an ONNX runtime edgeconv did not write. `edgeconv run --engine
//! tract` uses it, and the tests hold the interpreter to it beside onnxruntime.

use std::path::Path;

use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TValue, TVec,
    Tensor as TractTensor,
};

use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;

fn datum_type(dtype: DType) -> Option<DatumType> {
    Some(match dtype {
        DType::Bool => DatumType::Bool,
        DType::U8 => DatumType::U8,
        DType::I8 => DatumType::I8,
        DType::U16 => DatumType::U16,
        DType::I16 => DatumType::I16,
        DType::U32 => DatumType::U32,
        DType::I32 => DatumType::I32,
        DType::U64 => DatumType::U64,
        DType::I64 => DatumType::I64,
        DType::F16 => DatumType::F16,
        DType::F32 => DatumType::F32,
        DType::F64 => DatumType::F64,
        _ => return None,
    })
}

fn dtype_of(dt: DatumType) -> Option<DType> {
    DType::DENSE
        .into_iter()
        .find(|d| datum_type(*d) == Some(dt))
}

fn tract_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("{}: tract: {e}", path.display()))
}

fn to_tract(path: &Path, t: &Tensor) -> Result<TractTensor> {
    let dt = datum_type(t.dtype())
        .ok_or_else(|| tract_error(path, format!("{} inputs are not supported", t.dtype())))?;
    let bytes = t.to_bytes();
    // SAFETY: `bytes` are little-endian elements of `dt` in row-major order, as
    // tract expects; tract checks the length against the shape before copying.
    unsafe { TractTensor::from_raw_dt(dt, t.shape(), &bytes) }.map_err(|e| tract_error(path, e))
}

fn from_tract(path: &Path, t: &TractTensor) -> Result<Tensor> {
    let t = if t.datum_type() == DatumType::TDim {
        t.cast_to::<i64>()
            .map_err(|e| tract_error(path, e))?
            .into_owned()
    } else {
        t.clone()
    };
    let dtype = dtype_of(t.datum_type()).ok_or_else(|| {
        tract_error(
            path,
            format!("{:?} outputs are not supported", t.datum_type()),
        )
    })?;
    Tensor::from_bytes(dtype, t.shape(), t.as_bytes())
}

/// Runs the ONNX file at `path` with tract on `inputs` (in graph input order)
/// and returns the graph outputs in order.
pub fn run(path: &Path, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(|e| tract_error(path, format!("{e:#}")))?;
    let mut values: TVec<TValue> = TVec::new();
    for (i, t) in inputs.iter().enumerate() {
        let tensor = to_tract(path, t)?;
        let fact = InferenceFact::dt_shape(tensor.datum_type(), tensor.shape());
        model = model
            .with_input_fact(i, fact)
            .map_err(|e| tract_error(path, format!("{e:#}")))?;
        values.push(tensor.into());
    }
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| tract_error(path, format!("{e:#}")))?;
    let outputs = plan
        .run(values)
        .map_err(|e| tract_error(path, format!("{e:#}")))?;
    outputs.iter().map(|v| from_tract(path, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn runs_the_mlp_fixture() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mlp.onnx");
        let x = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[1, 16]), |i| {
            i[1] as f32 / 8.0 - 1.0
        }));
        let out = run(&path, &[x]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].shape(), &[1, 8]);
        let sum: f64 = out[0].to_f64_vec().iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "softmax output sums to {sum}");
    }

    #[test]
    fn a_missing_file_is_a_located_error() {
        let err = run(Path::new("/nonexistent/model.onnx"), &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/model.onnx"), "{err}");
        assert_eq!(err.exit_code(), crate::exit::BAD_INPUT);
    }
}
