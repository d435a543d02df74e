//! One tensor's bytes in the output file: the source weight's rows decoded to
//! f32 (reordered where the architecture asks), then encoded in the chosen
//! type, a slab of rows at a time so memory stays bounded whatever the size.

use std::io::Write;

use rayon::prelude::*;

use super::llm::RowOrder;
use super::types::TensorType;
use crate::ir::error::{Error, Result};
use crate::ir::quant;
use crate::ir::weights::{Weight, release_mapped_pages};

/// Elements decoded at once (16 MiB of f32).
const SLAB_ELEMS: usize = 1 << 22;

/// How to produce one output tensor from a weight.
#[derive(Clone, Debug)]
pub struct Encode<'a> {
    pub weight: &'a Weight,
    /// GGUF name, for messages.
    pub name: &'a str,
    /// Elements per row (`ne[0]`).
    pub row_len: usize,
    pub rows: RowOrder,
    pub ty: TensorType,
    /// Importance per column, for the K-quant and legacy searches.
    pub imatrix: Option<&'a [f32]>,
}

impl Encode<'_> {
    /// Writes the encoded tensor to `out`.
    pub fn write(&self, out: &mut dyn Write) -> Result<()> {
        let source = TensorType::from_dtype(self.weight.dtype).ok_or_else(|| {
            Error::Input(format!(
                "tensor '{}': {} weights cannot be written as {}",
                self.name,
                self.weight.dtype.name(),
                self.ty
            ))
        })?;
        let io = |e: std::io::Error| Error::Input(format!("writing tensor '{}': {e}", self.name));
        if source == self.ty && self.rows == RowOrder::Same {
            out.write_all(&self.weight.data).map_err(io)?;
            release_mapped_pages(&self.weight.data);
            return Ok(());
        }
        if self.weight.element_count() == 0 {
            return Ok(());
        }
        let n = self.row_len;
        let rows = (self.weight.element_count() / n as u64) as usize;
        let src_row = source
            .row_bytes(n as u64)
            .ok_or_else(|| self.shape_error(source))? as usize;
        let dst_row = self
            .ty
            .row_bytes(n as u64)
            .ok_or_else(|| self.shape_error(self.ty))? as usize;
        let slab_rows = (SLAB_ELEMS / n).clamp(1, rows.max(1));
        let mut values = vec![0f32; slab_rows * n];
        let mut encoded = vec![0u8; slab_rows * dst_row];
        let data: &[u8] = &self.weight.data;
        let mut first = 0;
        while first < rows {
            let count = slab_rows.min(rows - first);
            let values = &mut values[..count * n];
            values
                .par_chunks_mut(n)
                .enumerate()
                .try_for_each(|(i, row)| {
                    let from = self.rows.source_row(first + i, rows) * src_row;
                    quant::dequantize_rows(source.quant_type(), &data[from..from + src_row], row)
                })
                .map_err(|e| self.located(e))?;
            let encoded = &mut encoded[..count * dst_row];
            quant::quantize_rows(self.ty.quant_type(), values, n, self.imatrix, encoded)
                .map_err(|e| self.located(e))?;
            out.write_all(encoded).map_err(io)?;
            if self.rows == RowOrder::Same {
                release_mapped_pages(&data[first * src_row..(first + count) * src_row]);
            }
            first += count;
        }
        release_mapped_pages(data);
        Ok(())
    }

    fn shape_error(&self, ty: TensorType) -> Error {
        Error::Input(format!(
            "tensor '{}': rows of {} elements are not whole {} blocks",
            self.name, self.row_len, ty
        ))
    }

    fn located(&self, e: Error) -> Error {
        Error::Input(format!("tensor '{}': {e}", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DType;

    #[test]
    fn an_empty_tensor_writes_nothing_instead_of_dividing_by_zero() {
        let weight = Weight::new("e", DType::F32, vec![4, 0], bytes::Bytes::new()).unwrap();
        for ty in [TensorType::F32, TensorType::F16, TensorType::Q8_0] {
            let encode = Encode {
                weight: &weight,
                name: "e",
                row_len: 0,
                rows: RowOrder::Same,
                ty,
                imatrix: None,
            };
            let mut out = Vec::new();
            encode.write(&mut out).unwrap();
            assert!(out.is_empty(), "{ty}");
        }
    }
}
