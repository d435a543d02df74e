//! GGML block codecs: F32, F16, BF16 and the block formats Q4_0..Q8_0 and
//! Q2_K..Q6_K, quantized exactly as ggml's reference quantizers do (the
//! bytes llama.cpp's `llama-quantize` writes), with or without an
//! importance matrix, and dequantized as ggml does. Rows are independent:
//! [`quantize_rows`] runs them in parallel and its output does not depend
//! on the thread count.

// The quantizers keep ggml's indexed loops so each can be read against
// ggml-quants.c line by line; byte identity depends on the same operations.
mod blocks;
mod float;
#[allow(clippy::needless_range_loop)]
mod kquants;
#[allow(clippy::needless_range_loop)]
mod lanes;
#[allow(clippy::needless_range_loop)]
mod legacy;
#[allow(clippy::needless_range_loop)]
mod search;

use rayon::prelude::*;

pub use blocks::{QK, QK_K};
pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

use crate::ir::dtype::GgmlType;
use crate::ir::error::{Error, Result};

/// An element encoding of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    F32,
    F16,
    BF16,
    Block(GgmlType),
}

impl Codec {
    fn supported(self) -> bool {
        !matches!(self, Codec::Block(GgmlType::Q8_1 | GgmlType::Q8K))
    }

    /// (elements, bytes) of the encoding's unit.
    fn unit(self) -> (usize, usize) {
        match self {
            Codec::F32 => (1, 4),
            Codec::F16 | Codec::BF16 => (1, 2),
            Codec::Block(t) => (t.layout().elems, t.layout().bytes),
        }
    }

    /// Bytes of a row of `n` elements; `None` when `n` is not whole blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let (elems, bytes) = self.unit();
        (n % elems == 0).then(|| n / elems * bytes)
    }

    /// Whether an importance matrix changes the result.
    pub fn uses_importance(self) -> bool {
        matches!(
            self,
            Codec::Block(
                GgmlType::Q4_0
                    | GgmlType::Q4_1
                    | GgmlType::Q5_0
                    | GgmlType::Q5_1
                    | GgmlType::Q2K
                    | GgmlType::Q3K
                    | GgmlType::Q4K
                    | GgmlType::Q5K
                    | GgmlType::Q6K
            )
        )
    }
}

/// Rows per parallel task: enough work to amortize scheduling.
const ROWS_PER_TASK_ELEMS: usize = 1 << 15;

/// Encodes `src` (rows of `n_per_row`) into `dst`. `imatrix` (one weight per
/// column) steers the searches of the types that use one. Fails, naming the
/// row, on a non-finite input value; on lengths that do not fit.
pub fn quantize_rows(
    codec: Codec,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<()> {
    let row_bytes = check(codec, src.len(), n_per_row, dst.len())?;
    if let Some(m) = imatrix {
        if m.len() != n_per_row {
            return Err(Error::Input(format!(
                "importance matrix has {} values for rows of {n_per_row}",
                m.len()
            )));
        }
    }
    if n_per_row == 0 {
        return Ok(());
    }
    let imatrix = imatrix.filter(|_| codec.uses_importance());
    let rows_per_task = (ROWS_PER_TASK_ELEMS / n_per_row).max(1);
    src.par_chunks(n_per_row * rows_per_task)
        .zip(dst.par_chunks_mut(row_bytes * rows_per_task))
        .enumerate()
        .try_for_each(|(task, (src, dst))| {
            for (r, (x, out)) in src
                .chunks_exact(n_per_row)
                .zip(dst.chunks_exact_mut(row_bytes))
                .enumerate()
            {
                if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                    return Err(Error::Input(format!(
                        "row {}, column {i}: value {} cannot be quantized",
                        task * rows_per_task + r,
                        x[i]
                    )));
                }
                encode_row(codec, x, out, imatrix);
            }
            Ok(())
        })
}

/// Decodes rows of `codec` in `src` into `dst` (`dst.len()` elements).
pub fn dequantize_rows(codec: Codec, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let (elems, _) = codec.unit();
    let n = dst.len();
    if !codec.supported() || n % elems != 0 || codec.row_bytes(n) != Some(src.len()) {
        return Err(Error::Input(format!(
            "{} bytes of {codec:?} do not hold {n} elements",
            src.len()
        )));
    }
    match codec {
        Codec::F32 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Codec::F16 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *v = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Codec::BF16 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *v = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Codec::Block(t) => match t {
            GgmlType::Q4_0 => legacy::dequantize_q4_0(src, dst),
            GgmlType::Q4_1 => legacy::dequantize_q4_1(src, dst),
            GgmlType::Q5_0 => legacy::dequantize_q5_0(src, dst),
            GgmlType::Q5_1 => legacy::dequantize_q5_1(src, dst),
            GgmlType::Q8_0 => legacy::dequantize_q8_0(src, dst),
            GgmlType::Q2K => kquants::dequantize_q2_k(src, dst),
            GgmlType::Q3K => kquants::dequantize_q3_k(src, dst),
            GgmlType::Q4K => kquants::dequantize_q4_k(src, dst),
            GgmlType::Q5K => kquants::dequantize_q5_k(src, dst),
            GgmlType::Q6K => kquants::dequantize_q6_k(src, dst),
            GgmlType::Q8_1 | GgmlType::Q8K => unreachable!("refused above"),
        },
    }
    Ok(())
}

fn check(codec: Codec, len: usize, n_per_row: usize, dst_len: usize) -> Result<usize> {
    let row_bytes = codec.row_bytes(n_per_row).filter(|_| codec.supported());
    let Some(row_bytes) = row_bytes else {
        return Err(Error::Input(format!(
            "{codec:?} cannot encode rows of {n_per_row} elements"
        )));
    };
    let rows = len.checked_div(n_per_row).unwrap_or(0);
    if (n_per_row == 0 && len != 0) || rows * n_per_row != len || rows * row_bytes != dst_len {
        return Err(Error::Input(format!(
            "{len} values in rows of {n_per_row} do not fill {dst_len} bytes of {codec:?}"
        )));
    }
    Ok(row_bytes)
}

fn encode_row(codec: Codec, x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { encode_row_avx2(codec, x, out, imatrix) };
    }
    encode_row_portable(codec, x, out, imatrix)
}

/// The same code compiled for AVX2: the K-quant searches run 8 lanes per
/// register instead of 4. Only IEEE single-precision operations, no fused
/// multiply-add, so the bytes do not change.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn encode_row_avx2(codec: Codec, x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    encode_row_portable(codec, x, out, imatrix)
}

#[inline(always)]
fn encode_row_portable(codec: Codec, x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    match codec {
        Codec::F32 => {
            for (b, v) in out.chunks_exact_mut(4).zip(x) {
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
        Codec::F16 => {
            for (b, v) in out.chunks_exact_mut(2).zip(x) {
                b.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
        Codec::BF16 => {
            for (b, v) in out.chunks_exact_mut(2).zip(x) {
                b.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
            }
        }
        Codec::Block(t) => match t {
            GgmlType::Q4_0 => legacy::quantize_q4_0(x, out, imatrix),
            GgmlType::Q4_1 => legacy::quantize_q4_1(x, out, imatrix),
            GgmlType::Q5_0 => legacy::quantize_q5_0(x, out, imatrix),
            GgmlType::Q5_1 => legacy::quantize_q5_1(x, out, imatrix),
            GgmlType::Q8_0 => legacy::quantize_q8_0(x, out),
            GgmlType::Q2K => kquants::quantize_q2_k(x, out, imatrix),
            GgmlType::Q3K => kquants::quantize_q3_k(x, out, imatrix),
            GgmlType::Q4K => kquants::quantize_q4_k(x, out, imatrix),
            GgmlType::Q5K => kquants::quantize_q5_k(x, out, imatrix),
            GgmlType::Q6K => kquants::quantize_q6_k(x, out, imatrix),
            GgmlType::Q8_1 | GgmlType::Q8K => unreachable!("refused by check"),
        },
    }
}

#[cfg(test)]
mod tests;
