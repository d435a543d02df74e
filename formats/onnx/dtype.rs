//! ONNX `TensorProto.DataType` codes and their IR dtypes.

use crate::ir::DType;

use super::proto::tensor_proto::DataType;

/// Why an ONNX element type code has no IR dtype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DTypeError {
    /// Not an element type ONNX defines (or `UNDEFINED`): a malformed file.
    Undefined(i32),
    /// An ONNX element type edgeconv does not support (float8, float4, ...).
    Unsupported(&'static str),
}

impl std::fmt::Display for DTypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DTypeError::Undefined(code) => write!(f, "element type {code} is not defined by ONNX"),
            DTypeError::Unsupported(name) => write!(f, "element type {name} is not supported"),
        }
    }
}

/// The IR dtype of an ONNX element type code, or why there is none.
pub fn from_onnx(code: i32) -> Result<DType, DTypeError> {
    let known = DataType::try_from(code).map_err(|_| DTypeError::Undefined(code))?;
    Ok(match known {
        DataType::Float => DType::F32,
        DataType::Uint8 => DType::U8,
        DataType::Int8 => DType::I8,
        DataType::Uint16 => DType::U16,
        DataType::Int16 => DType::I16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::String => DType::String,
        DataType::Bool => DType::Bool,
        DataType::Float16 => DType::F16,
        DataType::Double => DType::F64,
        DataType::Uint32 => DType::U32,
        DataType::Uint64 => DType::U64,
        DataType::Bfloat16 => DType::BF16,
        DataType::Uint4 => DType::U4,
        DataType::Int4 => DType::I4,
        DataType::Undefined => return Err(DTypeError::Undefined(code)),
        other => return Err(DTypeError::Unsupported(other.as_str_name())),
    })
}

/// The ONNX element type code of an IR dtype, if ONNX has one.
pub fn to_onnx(dtype: DType) -> Option<DataType> {
    Some(match dtype {
        DType::F32 => DataType::Float,
        DType::U8 => DataType::Uint8,
        DType::I8 => DataType::Int8,
        DType::U16 => DataType::Uint16,
        DType::I16 => DataType::Int16,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::String => DataType::String,
        DType::Bool => DataType::Bool,
        DType::F16 => DataType::Float16,
        DType::F64 => DataType::Double,
        DType::U32 => DataType::Uint32,
        DType::U64 => DataType::Uint64,
        DType::BF16 => DataType::Bfloat16,
        DType::U4 => DataType::Uint4,
        DType::I4 => DataType::Int4,
        DType::Block(_) | DType::Palette { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..30 {
            if let Ok(d) = from_onnx(code) {
                assert_eq!(to_onnx(d).map(|t| t as i32), Some(code));
            }
        }
        assert_eq!(from_onnx(17), Err(DTypeError::Unsupported("FLOAT8E4M3FN")));
        assert_eq!(from_onnx(99), Err(DTypeError::Undefined(99)));
        assert_eq!(from_onnx(0), Err(DTypeError::Undefined(0)));
    }
}
