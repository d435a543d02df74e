//! QuantizeLinear and DequantizeLinear.

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::{DequantizeAttrs, QuantizeAttrs};

use super::NodeCx;
use crate::formats::onnx::dtype;

pub fn handles(op_type: &str) -> bool {
    matches!(op_type, "QuantizeLinear" | "DequantizeLinear")
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let block = a.int("block_size", 0)?;
    let block_size = usize::try_from(block).map_err(|_| a.error("block_size", "is negative"))?;
    // Before opset 13 quantization was per tensor only; axis 1 is the later default.
    let axis = a.int("axis", 1)?;
    Ok(if op_type == "QuantizeLinear" {
        let output_dtype = match a.int("output_dtype", 0)? {
            0 => None,
            code => match i32::try_from(code)
                .ok()
                .and_then(|c| dtype::from_onnx(c).ok())
            {
                Some(d) => Some(d),
                None => return Ok(cx.custom()),
            },
        };
        Op::QuantizeLinear(QuantizeAttrs {
            axis,
            saturate: a.bool("saturate", true)?,
            block_size,
            output_dtype,
        })
    } else {
        Op::DequantizeLinear(DequantizeAttrs { axis, block_size })
    })
}
