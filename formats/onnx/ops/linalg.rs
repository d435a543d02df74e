//! MatMul, Gemm, MatMulInteger, Einsum.

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::{EinsumAttrs, GemmAttrs};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(op_type, "MatMul" | "Gemm" | "MatMulInteger" | "Einsum")
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    Ok(match op_type {
        "MatMul" => Op::MatMul,
        "MatMulInteger" => Op::MatMulInteger,
        "Gemm" => Op::Gemm(GemmAttrs {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.bool("transA", false)?,
            trans_b: a.bool("transB", false)?,
        }),
        "Einsum" => Op::Einsum(EinsumAttrs {
            equation: a
                .opt_string("equation")?
                .ok_or_else(|| a.error("equation", "is required"))?,
        }),
        _ => unreachable!("handles() lists only the ops above"),
    })
}
