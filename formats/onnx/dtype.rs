//! ONNX `TensorProto.DataType` codes and their IR dtypes.

use crate::ir::DType;

use super::proto::tensor_proto::DataType;

/// The IR dtype of an ONNX element type code, or the reason there is none.
pub fn from_onnx(code: i32) -> Result<DType, String> {
    let known = DataType::try_from(code).map_err(|_| format!("unknown element type {code}"))?;
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
        other => {
            return Err(format!(
                "element type {} is not supported",
                other.as_str_name()
            ));
        }
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
        assert!(from_onnx(17).unwrap_err().contains("FLOAT8E4M3FN"));
        assert!(from_onnx(99).is_err());
    }
}
