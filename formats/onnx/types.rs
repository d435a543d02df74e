//! `TypeProto` -> [`Fact`]: element type and shape, `dim_param` names as symbols.

use crate::ir::{DType, Dim, Fact, Shape, Symbols};

use super::dtype;
use super::proto::TypeProto;
use super::proto::tensor_shape_proto::dimension::Value as DimValue;
use super::proto::type_proto::Value as TypeValue;

/// The fact a declared type gives. Named dims become symbols of that name,
/// unnamed unknown dims fresh symbols; non-tensor types are unknown facts.
pub fn fact_from_type(tp: Option<&TypeProto>, symbols: &mut Symbols) -> Result<Fact, String> {
    let Some(TypeValue::TensorType(t)) = tp.and_then(|t| t.value.as_ref()) else {
        return Ok(Fact::unknown());
    };
    let dtype: Option<DType> = match t.elem_type {
        0 => None,
        code => Some(dtype::from_onnx(code)?),
    };
    let shape = match &t.shape {
        None => Shape::Unranked,
        Some(s) => Shape::Ranked(
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as u64),
                    Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::sym(symbols.intern(p)),
                    _ => Dim::sym(symbols.fresh("unk")),
                })
                .collect(),
        ),
    };
    Ok(Fact {
        dtype,
        shape,
        quant: None,
    })
}
