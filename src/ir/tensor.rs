//! Dense tensors as the reference interpreter computes on them.
//!
//! Sub-byte types (i4/u4) are unpacked to i8/u8 when decoded; block formats
//! must be dequantized by their codec before evaluation.

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use super::dtype::DType;
use super::error::{Error, Result};

/// A dense tensor of one of the interpreter's element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    Bool(ArrayD<bool>),
    U8(ArrayD<u8>),
    I8(ArrayD<i8>),
    U16(ArrayD<u16>),
    I16(ArrayD<i16>),
    U32(ArrayD<u32>),
    I32(ArrayD<i32>),
    U64(ArrayD<u64>),
    I64(ArrayD<i64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

/// Runs `$body` with `$a` bound to the inner array, whatever the element type.
#[macro_export]
macro_rules! with_tensor {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::ir::tensor::Tensor::Bool($a) => $body,
            $crate::ir::tensor::Tensor::U8($a) => $body,
            $crate::ir::tensor::Tensor::I8($a) => $body,
            $crate::ir::tensor::Tensor::U16($a) => $body,
            $crate::ir::tensor::Tensor::I16($a) => $body,
            $crate::ir::tensor::Tensor::U32($a) => $body,
            $crate::ir::tensor::Tensor::I32($a) => $body,
            $crate::ir::tensor::Tensor::U64($a) => $body,
            $crate::ir::tensor::Tensor::I64($a) => $body,
            $crate::ir::tensor::Tensor::F16($a) => $body,
            $crate::ir::tensor::Tensor::BF16($a) => $body,
            $crate::ir::tensor::Tensor::F32($a) => $body,
            $crate::ir::tensor::Tensor::F64($a) => $body,
        }
    };
}

/// An element type the interpreter stores: conversion to and from f64 and
/// little-endian bytes.
pub trait Element: Copy + Send + Sync + Default + PartialOrd + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    /// Converts with ONNX Cast semantics for in-range values (floats truncate toward zero).
    fn from_f64(v: f64) -> Self;
    fn wrap(a: ArrayD<Self>) -> Tensor;
    fn read_le(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut Vec<u8>);
}

macro_rules! int_element {
    ($t:ty, $variant:ident, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$variant(a)
            }
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element width"))
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

int_element!(u8, U8, DType::U8);
int_element!(i8, I8, DType::I8);
int_element!(u16, U16, DType::U16);
int_element!(i16, I16, DType::I16);
int_element!(u32, U32, DType::U32);
int_element!(i32, I32, DType::I32);
int_element!(u64, U64, DType::U64);
int_element!(i64, I64, DType::I64);
int_element!(f32, F32, DType::F32);
int_element!(f64, F64, DType::F64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::Bool(a)
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::F16(a)
    }
    fn read_le(bytes: &[u8]) -> Self {
        f16::from_le_bytes([bytes[0], bytes[1]])
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::BF16(a)
    }
    fn read_le(bytes: &[u8]) -> Self {
        bf16::from_le_bytes([bytes[0], bytes[1]])
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

fn decode<T: Element>(shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
    let width = T::DTYPE.size_of().expect("whole-byte element");
    let values: Vec<T> = bytes.chunks_exact(width).map(T::read_le).collect();
    array(shape, values)
}

fn array<T: Element>(shape: &[usize], values: Vec<T>) -> Result<Tensor> {
    let n = values.len();
    ArrayD::from_shape_vec(IxDyn(shape), values)
        .map(T::wrap)
        .map_err(|_| Error::Input(format!("{n} elements do not fill shape {shape:?}")))
}

impl Tensor {
    /// Decodes little-endian bytes of `dtype` (i4/u4 unpacked to i8/u8).
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Input(format!("shape {shape:?} overflows")))?;
        let expected = dtype
            .bytes_for(count as u64)
            .ok_or_else(|| Error::Input(format!("{dtype} tensors cannot be evaluated")))?;
        if bytes.len() as u64 != expected {
            return Err(Error::Input(format!(
                "{} bytes for {dtype} tensor of shape {shape:?}, expected {expected}",
                bytes.len()
            )));
        }
        match dtype {
            DType::Bool => decode::<bool>(shape, bytes),
            DType::U8 => decode::<u8>(shape, bytes),
            DType::I8 => decode::<i8>(shape, bytes),
            DType::U16 => decode::<u16>(shape, bytes),
            DType::I16 => decode::<i16>(shape, bytes),
            DType::U32 => decode::<u32>(shape, bytes),
            DType::I32 => decode::<i32>(shape, bytes),
            DType::U64 => decode::<u64>(shape, bytes),
            DType::I64 => decode::<i64>(shape, bytes),
            DType::F16 => decode::<f16>(shape, bytes),
            DType::BF16 => decode::<bf16>(shape, bytes),
            DType::F32 => decode::<f32>(shape, bytes),
            DType::F64 => decode::<f64>(shape, bytes),
            DType::I4 => {
                let v = unpack_nibbles(bytes, count, |n| ((n << 4) as i8) >> 4);
                array(shape, v)
            }
            DType::U4 => array(shape, unpack_nibbles(bytes, count, |n| n)),
            DType::String | DType::Block(_) | DType::Palette { .. } => Err(Error::Input(format!(
                "{dtype} tensors cannot be evaluated directly"
            ))),
        }
    }

    /// Little-endian bytes in this tensor's dtype, in logical (row-major) order.
    pub fn to_bytes(&self) -> Vec<u8> {
        with_tensor!(self, a => {
            let mut out = Vec::with_capacity(a.len() * self.dtype().size_of().unwrap_or(1));
            for v in a.iter() {
                v.write_le(&mut out);
            }
            out
        })
    }

    pub fn dtype(&self) -> DType {
        match self {
            Tensor::Bool(_) => DType::Bool,
            Tensor::U8(_) => DType::U8,
            Tensor::I8(_) => DType::I8,
            Tensor::U16(_) => DType::U16,
            Tensor::I16(_) => DType::I16,
            Tensor::U32(_) => DType::U32,
            Tensor::I32(_) => DType::I32,
            Tensor::U64(_) => DType::U64,
            Tensor::I64(_) => DType::I64,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        with_tensor!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        with_tensor!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element as f64, in row-major order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_tensor!(self, a => a.iter().map(|v| v.to_f64()).collect())
    }

    /// The tensor converted to f32 (for float compute).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            _ => with_tensor!(self, a => a.mapv(|v| v.to_f64() as f32)),
        }
    }

    /// Integer contents as i64 (shape-like inputs: axes, pads, shapes, indices).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        match self {
            Tensor::I64(a) => Ok(a.iter().copied().collect()),
            Tensor::I32(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
            Tensor::U8(_)
            | Tensor::I8(_)
            | Tensor::U16(_)
            | Tensor::I16(_)
            | Tensor::U32(_)
            | Tensor::U64(_)
            | Tensor::Bool(_) => Ok(self.to_f64_vec().into_iter().map(|v| v as i64).collect()),
            _ => Err(Error::Input(format!(
                "expected an integer tensor, got {}",
                self.dtype()
            ))),
        }
    }

    /// Converts element type (ONNX Cast semantics for in-range values).
    pub fn cast(&self, to: DType) -> Result<Tensor> {
        if self.dtype() == to {
            return Ok(self.clone());
        }
        fn conv<T: Element>(t: &Tensor) -> Tensor {
            T::wrap(with_tensor!(t, a => a.mapv(|v| T::from_f64(v.to_f64()))))
        }
        Ok(match to {
            DType::Bool => conv::<bool>(self),
            DType::U8 => conv::<u8>(self),
            DType::I8 => conv::<i8>(self),
            DType::U16 => conv::<u16>(self),
            DType::I16 => conv::<i16>(self),
            DType::U32 => conv::<u32>(self),
            DType::I32 => conv::<i32>(self),
            DType::U64 => conv::<u64>(self),
            DType::I64 => match self {
                // Avoid the f64 round trip, which loses precision above 2^53.
                Tensor::I32(a) => Tensor::I64(a.mapv(i64::from)),
                Tensor::U64(a) => Tensor::I64(a.mapv(|v| v as i64)),
                _ => conv::<i64>(self),
            },
            DType::F16 => conv::<f16>(self),
            DType::BF16 => conv::<bf16>(self),
            DType::F32 => Tensor::F32(self.to_f32()),
            DType::F64 => conv::<f64>(self),
            other => {
                return Err(Error::Input(format!("cannot cast to {other}")));
            }
        })
    }

    pub fn from_f32(a: ArrayD<f32>) -> Tensor {
        Tensor::F32(a)
    }

    pub fn from_i64(shape: &[usize], values: Vec<i64>) -> Result<Tensor> {
        array(shape, values)
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::I64(ArrayD::from_elem(IxDyn(&[]), v))
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v))
    }
}

fn unpack_nibbles<T>(bytes: &[u8], count: usize, f: impl Fn(u8) -> T) -> Vec<T> {
    (0..count)
        .map(|i| {
            let b = bytes[i / 2];
            f(if i % 2 == 0 { b & 0x0f } else { b >> 4 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_every_dtype() {
        for dtype in DType::DENSE {
            let width = dtype.size_of().unwrap();
            let bytes: Vec<u8> = (0..6 * width).map(|i| (i % 2) as u8).collect();
            let t = Tensor::from_bytes(dtype, &[2, 3], &bytes).unwrap();
            assert_eq!(t.dtype(), dtype);
            assert_eq!(t.to_bytes(), bytes, "{dtype}");
        }
    }

    #[test]
    fn int4_unpacks_sign_extended() {
        let t = Tensor::from_bytes(DType::I4, &[3], &[0xf7, 0x08]).unwrap();
        assert_eq!(
            t,
            Tensor::I8(ArrayD::from_shape_vec(IxDyn(&[3]), vec![7, -1, -8]).unwrap())
        );
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        assert!(Tensor::from_bytes(DType::F32, &[2], &[0; 7]).is_err());
    }
}
