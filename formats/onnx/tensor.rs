//! `TensorProto` -> lazy [`Weight`] (zero-copy for `raw_data` and external
//! data) and -> dense [`Tensor`].
//!
//! String tensors are stored in a weight as, per element, its byte length
//! (u32 little-endian) followed by its UTF-8 bytes.

use std::path::Path;

use bytes::{BufMut, Bytes};

use crate::ir::error::{Error, Result, Unsupported};
use crate::ir::weights::expected_bytes;
use crate::ir::{DType, Tensor, Weight};

use super::dtype;
use super::external::ExternalFiles;
use super::proto::TensorProto;
use super::proto::tensor_proto::DataLocation;

/// An error about one tensor of a model file.
pub fn tensor_error(file: &Path, tensor: &str, msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("{}: tensor '{tensor}': {msg}", file.display()))
}

/// The IR dtype and dims of a tensor, checked (dims non-negative, byte size
/// representable).
fn dtype_and_shape(t: &TensorProto, file: &Path) -> Result<(DType, Vec<usize>)> {
    let dtype = dtype::from_onnx(t.data_type).map_err(|e| match e {
        dtype::DTypeError::Undefined(_) => tensor_error(file, &t.name, e),
        dtype::DTypeError::Unsupported(_) => Error::Unsupported(vec![Unsupported {
            node: t.name.clone(),
            op: "tensor".into(),
            reason: e.to_string(),
        }]),
    })?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| tensor_error(file, &t.name, format!("negative dim in {:?}", t.dims)))?;
    expected_bytes(dtype, &shape).ok_or_else(|| {
        tensor_error(
            file,
            &t.name,
            format!("shape {shape:?} of {dtype} overflows"),
        )
    })?;
    Ok((dtype, shape))
}

/// Converts a tensor to a weight named `name`. `raw_data` and external data
/// stay views of their (memory-mapped) source; typed fields are re-encoded.
pub fn to_weight(
    t: &TensorProto,
    name: &str,
    file: &Path,
    external: &mut ExternalFiles,
) -> Result<Weight> {
    let fail = |msg: String| tensor_error(file, name, msg);
    let (dtype, shape) = dtype_and_shape(t, file)?;
    if t.segment.is_some() {
        return Err(fail("segmented tensors are not supported".into()));
    }
    let count = shape.iter().product::<usize>();
    let data = if t.data_location == DataLocation::External as i32 {
        if dtype == DType::String {
            return Err(fail("string tensors cannot be stored externally".into()));
        }
        let expected = expected_bytes(dtype, &shape).unwrap_or(0);
        external.load(name, &t.external_data, expected)?
    } else if !t.raw_data.is_empty() {
        if dtype == DType::String {
            return Err(fail("string tensors cannot use raw_data".into()));
        }
        t.raw_data.clone()
    } else {
        typed_data(t, dtype, count).map_err(fail)?
    };
    Weight::new(name, dtype, shape, data).map_err(|e| fail(inner_message(e)))
}

fn inner_message(e: Error) -> String {
    match e {
        Error::Input(m) => m,
        other => other.to_string(),
    }
}

/// Re-encodes the typed `*_data` field that ONNX uses for `dtype` as
/// little-endian bytes, checking that it holds exactly `count` elements.
fn typed_data(t: &TensorProto, dtype: DType, count: usize) -> Result<Bytes, String> {
    fn check(len: usize, want: usize, field: &str) -> Result<(), String> {
        if len == want {
            Ok(())
        } else {
            Err(format!(
                "{field} holds {len} values, the shape needs {want}"
            ))
        }
    }
    fn encode<T: Copy>(values: &[T], width: usize, put: impl Fn(&mut Vec<u8>, T)) -> Bytes {
        let mut out = Vec::with_capacity(values.len() * width);
        for &v in values {
            put(&mut out, v);
        }
        Bytes::from(out)
    }
    if count == 0 {
        return Ok(Bytes::new());
    }
    let ints = &t.int32_data;
    Ok(match dtype {
        DType::F32 => {
            check(t.float_data.len(), count, "float_data")?;
            encode(&t.float_data, 4, |o, v| o.put_f32_le(v))
        }
        DType::F64 => {
            check(t.double_data.len(), count, "double_data")?;
            encode(&t.double_data, 8, |o, v| o.put_f64_le(v))
        }
        DType::I64 => {
            check(t.int64_data.len(), count, "int64_data")?;
            encode(&t.int64_data, 8, |o, v| o.put_i64_le(v))
        }
        DType::U64 => {
            check(t.uint64_data.len(), count, "uint64_data")?;
            encode(&t.uint64_data, 8, |o, v| o.put_u64_le(v))
        }
        DType::U32 => {
            check(t.uint64_data.len(), count, "uint64_data")?;
            encode(&t.uint64_data, 4, |o, v| o.put_u32_le(v as u32))
        }
        DType::I32 => {
            check(ints.len(), count, "int32_data")?;
            encode(ints, 4, |o, v| o.put_i32_le(v))
        }
        DType::I16 => {
            check(ints.len(), count, "int32_data")?;
            encode(ints, 2, |o, v| o.put_i16_le(v as i16))
        }
        DType::U16 | DType::F16 | DType::BF16 => {
            check(ints.len(), count, "int32_data")?;
            encode(ints, 2, |o, v| o.put_u16_le(v as u16))
        }
        DType::I8 | DType::U8 => {
            check(ints.len(), count, "int32_data")?;
            encode(ints, 1, |o, v| o.put_u8(v as u8))
        }
        DType::Bool => {
            check(ints.len(), count, "int32_data")?;
            encode(ints, 1, |o, v| o.put_u8(u8::from(v != 0)))
        }
        // Two 4-bit elements per int32_data entry, first in the low nibble.
        DType::I4 | DType::U4 => {
            check(ints.len(), count.div_ceil(2), "int32_data")?;
            encode(ints, 1, |o, v| o.put_u8(v as u8))
        }
        DType::String => {
            check(t.string_data.len(), count, "string_data")?;
            let total: usize = t.string_data.iter().map(|s| s.len() + 4).sum();
            let mut out = Vec::with_capacity(total);
            for s in &t.string_data {
                let len = u32::try_from(s.len()).map_err(|_| "string too long".to_string())?;
                out.put_u32_le(len);
                out.extend_from_slice(s);
            }
            Bytes::from(out)
        }
        DType::Block(_) | DType::Palette { .. } => {
            return Err(format!("{dtype} is not an ONNX type"));
        }
    })
}

/// Decodes a weight into a dense tensor (not for strings).
pub fn weight_to_tensor(w: &Weight) -> Result<Tensor> {
    Tensor::from_bytes(w.dtype, &w.shape, &w.data)
}

/// Reads a file holding one serialized `TensorProto` (the ONNX backend tests'
/// `input_0.pb`, `output_0.pb`): its name and values. External data is looked
/// up next to the file.
pub fn read_tensor_proto(path: &Path) -> Result<(String, Tensor)> {
    let data = crate::ir::weights::map_file(path)?;
    let proto: TensorProto = super::decode::decode(data, path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut external = ExternalFiles::new(path, Some(base));
    let weight = to_weight(&proto, &proto.name, path, &mut external)?;
    let tensor = weight_to_tensor(&weight).map_err(|e| tensor_error(path, &proto.name, e))?;
    Ok((proto.name, tensor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::onnx::proto::tensor_proto::DataType;

    fn convert(t: &TensorProto) -> Result<Weight> {
        let mut ext = ExternalFiles::new(Path::new("m.onnx"), None);
        to_weight(t, &t.name, Path::new("m.onnx"), &mut ext)
    }

    fn proto(dtype: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: "t".into(),
            data_type: dtype as i32,
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn typed_fields_become_little_endian_bytes() {
        let t = TensorProto {
            int32_data: vec![0x3c00, 0xc000],
            ..proto(DataType::Float16, &[2])
        };
        let w = convert(&t).unwrap();
        assert_eq!(&w.data[..], &[0x00, 0x3c, 0x00, 0xc0]);
        let t = TensorProto {
            int32_data: vec![1, 0, 5],
            ..proto(DataType::Bool, &[3])
        };
        assert_eq!(&convert(&t).unwrap().data[..], &[1, 0, 1]);
        let t = TensorProto {
            int32_data: vec![0x21, 0x03],
            ..proto(DataType::Uint4, &[3])
        };
        let w = convert(&t).unwrap();
        assert_eq!(
            weight_to_tensor(&w).unwrap().to_i64_vec().unwrap(),
            vec![1, 2, 3]
        );
        let t = TensorProto {
            uint64_data: vec![7, 8],
            ..proto(DataType::Uint32, &[2])
        };
        assert_eq!(&convert(&t).unwrap().data[..], &[7, 0, 0, 0, 8, 0, 0, 0]);
        let t = TensorProto {
            string_data: vec![Bytes::from_static(b"ab")],
            ..proto(DataType::String, &[1])
        };
        assert_eq!(&convert(&t).unwrap().data[..], &[2, 0, 0, 0, b'a', b'b']);
    }

    #[test]
    fn raw_data_is_shared_not_copied() {
        let raw = Bytes::from(vec![0u8; 16]);
        let t = TensorProto {
            raw_data: raw.clone(),
            ..proto(DataType::Float, &[2, 2])
        };
        let w = convert(&t).unwrap();
        assert_eq!(w.data.as_ptr(), raw.as_ptr());
    }

    #[test]
    fn hostile_tensors_are_located_errors() {
        let t = TensorProto {
            float_data: vec![1.0],
            ..proto(DataType::Float, &[3])
        };
        assert!(convert(&t).unwrap_err().to_string().contains("tensor 't'"));
        let t = proto(DataType::Float, &[-1]);
        assert!(convert(&t).unwrap_err().to_string().contains("negative"));
        let t = proto(DataType::Double, &[i64::MAX, i64::MAX]);
        assert!(convert(&t).unwrap_err().to_string().contains("overflows"));
        let t = TensorProto {
            raw_data: Bytes::from(vec![0u8; 3]),
            ..proto(DataType::Float, &[1])
        };
        assert!(convert(&t).unwrap_err().to_string().contains("expected 4"));
        let t = proto(DataType::Float8e4m3fn, &[1]);
        assert!(matches!(convert(&t), Err(Error::Unsupported(_))));
    }
}
