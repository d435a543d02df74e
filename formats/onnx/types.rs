//! `TypeProto` -> [`Fact`]: element type and shape, `dim_param` names as symbols.

use crate::ir::{DType, Dim, Fact, Shape, Symbols};

use super::dtype;
use super::proto::TypeProto;
use super::proto::tensor_shape_proto::dimension::Value as DimValue;
use super::proto::type_proto::Value as TypeValue;

/// Whether a `dim_param` names a dimension. Exporters also write placeholders
/// such as `?` or `-1` for "unknown", which must not tie unrelated dims together.
fn is_dim_name(p: &str) -> bool {
    p.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

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
                    Some(DimValue::DimParam(p)) if is_dim_name(p) => Dim::sym(symbols.intern(p)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::onnx::proto::tensor_shape_proto::Dimension;
    use crate::formats::onnx::proto::{TensorShapeProto, type_proto};

    fn tensor_type(dims: &[DimValue]) -> TypeProto {
        TypeProto {
            denotation: String::new(),
            value: Some(TypeValue::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            denotation: String::new(),
                            value: Some(d.clone()),
                        })
                        .collect(),
                }),
            })),
        }
    }

    #[test]
    fn placeholder_dim_params_are_distinct_unknowns() {
        let mut symbols = Symbols::default();
        let tp = tensor_type(&[
            DimValue::DimParam("batch".into()),
            DimValue::DimValue(3),
            DimValue::DimParam("?".into()),
            DimValue::DimParam("?".into()),
            DimValue::DimValue(-1),
            DimValue::DimParam("batch".into()),
        ]);
        let fact = fact_from_type(Some(&tp), &mut symbols).unwrap();
        let dims = fact.shape.dims().unwrap();
        assert_eq!(dims[0], dims[5], "the same name is the same dim");
        assert_eq!(dims[1], Dim::Fixed(3));
        assert_ne!(
            dims[2], dims[3],
            "`?` placeholders must not be tied together"
        );
        assert!(dims[4].as_symbol().is_some());
        assert_eq!(symbols.name(dims[0].as_symbol().unwrap()), "batch");
    }
}
