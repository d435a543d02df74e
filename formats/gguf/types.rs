//! The tensor types a GGUF file stores, by llama.cpp's names (`Q4_K`) and
//! `ggml_type` ids, and how they map onto IR dtypes.

use std::fmt;

use crate::ir::dtype::{DType, GgmlType};
use crate::ir::quant::Codec;

/// GGUF dims (fastest first, at least one) of a row-major IR shape.
pub fn gguf_dims(shape: &[usize]) -> Vec<u64> {
    let mut ne: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
    if ne.is_empty() {
        ne.push(1);
    }
    ne
}

/// A GGUF tensor type edgeconv can read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl TensorType {
    pub const ALL: [TensorType; 13] = [
        TensorType::F32,
        TensorType::F16,
        TensorType::BF16,
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::Q5_0,
        TensorType::Q5_1,
        TensorType::Q8_0,
        TensorType::Q2K,
        TensorType::Q3K,
        TensorType::Q4K,
        TensorType::Q5K,
        TensorType::Q6K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::BF16 => "BF16",
            TensorType::Q4_0 => "Q4_0",
            TensorType::Q4_1 => "Q4_1",
            TensorType::Q5_0 => "Q5_0",
            TensorType::Q5_1 => "Q5_1",
            TensorType::Q8_0 => "Q8_0",
            TensorType::Q2K => "Q2_K",
            TensorType::Q3K => "Q3_K",
            TensorType::Q4K => "Q4_K",
            TensorType::Q5K => "Q5_K",
            TensorType::Q6K => "Q6_K",
        }
    }

    /// Case-insensitive.
    pub fn parse(name: &str) -> Option<TensorType> {
        TensorType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    pub fn writable_names() -> String {
        TensorType::ALL.map(TensorType::name).join(", ")
    }

    /// The `ggml_type` id in tensor infos.
    pub fn id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::BF16 => 30,
            other => other.block().map_or(0, GgmlType::ggml_id),
        }
    }

    pub fn from_id(id: u32) -> Option<TensorType> {
        TensorType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The GGML block format, for the quantized types.
    pub fn block(self) -> Option<GgmlType> {
        Some(match self {
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => return None,
            TensorType::Q4_0 => GgmlType::Q4_0,
            TensorType::Q4_1 => GgmlType::Q4_1,
            TensorType::Q5_0 => GgmlType::Q5_0,
            TensorType::Q5_1 => GgmlType::Q5_1,
            TensorType::Q8_0 => GgmlType::Q8_0,
            TensorType::Q2K => GgmlType::Q2K,
            TensorType::Q3K => GgmlType::Q3K,
            TensorType::Q4K => GgmlType::Q4K,
            TensorType::Q5K => GgmlType::Q5K,
            TensorType::Q6K => GgmlType::Q6K,
        })
    }

    pub fn is_block(self) -> bool {
        self.block().is_some()
    }

    /// Elements per block (1 for the float types).
    pub fn block_elems(self) -> usize {
        self.block().map_or(1, |b| b.layout().elems)
    }

    /// Bytes of a tensor of dims `ne` (fastest first); `None` when the element
    /// count overflows (or passes ggml's i64), or the block does not divide a row.
    pub fn tensor_bytes(self, ne: &[u64]) -> Option<u64> {
        let elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)?;
        let row = ne.first().copied().unwrap_or(1);
        (row % self.block_elems() as u64 == 0)
            .then(|| self.dtype().bytes_for(elements))
            .flatten()
    }

    /// Bytes of a row of `n` elements, `None` when the block does not divide `n`.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        self.dtype().bytes_for(n)
    }

    /// The codec that reads and writes this type's rows.
    pub fn quant_type(self) -> Codec {
        match self {
            TensorType::F32 => Codec::F32,
            TensorType::F16 => Codec::F16,
            TensorType::BF16 => Codec::BF16,
            other => Codec::Block(other.block().unwrap_or(GgmlType::Q8_0)),
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            TensorType::F32 => DType::F32,
            TensorType::F16 => DType::F16,
            TensorType::BF16 => DType::BF16,
            other => DType::Block(other.block().unwrap_or(GgmlType::Q8_0)),
        }
    }

    pub fn from_dtype(dtype: DType) -> Option<TensorType> {
        TensorType::ALL.into_iter().find(|t| t.dtype() == dtype)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
