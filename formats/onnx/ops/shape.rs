//! Reshaping and data movement: Reshape, Flatten, Transpose, Squeeze,
//! Unsqueeze, Concat, Split, Slice, Expand, Tile, Pad, DepthToSpace,
//! SpaceToDepth.

use crate::ir::error::Result;
use crate::ir::ops::{
    AxisAttrs, BlockSizeAttrs, DepthToSpaceAttrs, DepthToSpaceMode, PadAttrs, PadMode,
    ReshapeAttrs, SplitAttrs, TransposeAttrs,
};
use crate::ir::{DType, Op};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(
        op_type,
        "Reshape"
            | "Flatten"
            | "Transpose"
            | "Squeeze"
            | "Unsqueeze"
            | "Concat"
            | "Split"
            | "Slice"
            | "Expand"
            | "Tile"
            | "Pad"
            | "DepthToSpace"
            | "SpaceToDepth"
    )
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    Ok(match op_type {
        "Reshape" => {
            if cx.opset < 5 {
                let shape = a
                    .ints("shape")?
                    .ok_or_else(|| a.error("shape", "is required"))?;
                cx.set_ints_input(1, "shape", &shape)?;
            }
            Op::Reshape(ReshapeAttrs {
                allowzero: a.bool("allowzero", false)?,
            })
        }
        "Flatten" => Op::Flatten(AxisAttrs {
            axis: a.int("axis", 1)?,
        }),
        "Transpose" => Op::Transpose(TransposeAttrs {
            perm: a.usizes("perm")?,
        }),
        "Squeeze" => {
            if cx.opset < 13 {
                if let Some(axes) = a.ints("axes")? {
                    cx.set_ints_input(1, "axes", &axes)?;
                }
            }
            Op::Squeeze
        }
        "Unsqueeze" => {
            if cx.opset < 13 {
                let axes = a
                    .ints("axes")?
                    .ok_or_else(|| a.error("axes", "is required"))?;
                cx.set_ints_input(1, "axes", &axes)?;
            }
            Op::Unsqueeze
        }
        "Concat" => Op::Concat(AxisAttrs {
            axis: a
                .opt_int("axis")?
                .ok_or_else(|| a.error("axis", "is required"))?,
        }),
        "Split" => {
            if cx.opset < 13 {
                if let Some(split) = a.ints("split")? {
                    cx.set_ints_input(1, "split", &split)?;
                }
            }
            let num_outputs = match a.opt_int("num_outputs")? {
                Some(n) => {
                    Some(usize::try_from(n).map_err(|_| a.error("num_outputs", "is negative"))?)
                }
                None if cx.input(1).is_none() => Some(cx.outputs.len()),
                None => None,
            };
            Op::Split(SplitAttrs {
                axis: a.int("axis", 0)?,
                num_outputs,
            })
        }
        "Slice" => {
            if cx.opset < 10 {
                let starts = a
                    .ints("starts")?
                    .ok_or_else(|| a.error("starts", "is required"))?;
                let ends = a
                    .ints("ends")?
                    .ok_or_else(|| a.error("ends", "is required"))?;
                cx.set_ints_input(1, "starts", &starts)?;
                cx.set_ints_input(2, "ends", &ends)?;
                if let Some(axes) = a.ints("axes")? {
                    cx.set_ints_input(3, "axes", &axes)?;
                }
            }
            Op::Slice
        }
        "Expand" => Op::Expand,
        // Tile-1 took `tiles` and `axis` inputs, a form the IR does not have.
        "Tile" if cx.opset < 6 => cx.custom(),
        "Tile" => Op::Tile,
        "Pad" => pad(cx)?,
        "DepthToSpace" => {
            let mode = match a.string("mode", "DCR")?.as_str() {
                "DCR" => DepthToSpaceMode::Dcr,
                "CRD" => DepthToSpaceMode::Crd,
                _ => return Ok(cx.custom()),
            };
            Op::DepthToSpace(DepthToSpaceAttrs {
                blocksize: a.usize("blocksize")?,
                mode,
            })
        }
        // SpaceToDepth-28 added `mode`; the IR op is the DCR ordering only.
        _ if a.string("mode", "DCR")? != "DCR" => cx.custom(),
        _ => Op::SpaceToDepth(BlockSizeAttrs {
            blocksize: a.usize("blocksize")?,
        }),
    })
}

/// Pad before opset 11 takes `pads` (or Pad-1's `paddings`) and `value`
/// attributes; they become inputs.
fn pad(cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let mode = match a.string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        _ => return Ok(cx.custom()),
    };
    if cx.opset < 11 {
        let pads = match a.ints("pads")? {
            Some(p) => p,
            None => a
                .ints("paddings")?
                .ok_or_else(|| a.error("pads", "is required"))?,
        };
        cx.set_ints_input(1, "pads", &pads)?;
        let value = a.float("value", 0.0)?;
        if value != 0.0 {
            let dtype = cx.dtype(0).unwrap_or(DType::F32);
            cx.set_scalar_input(2, "value", f64::from(value), dtype)?;
        }
    }
    Ok(Op::Pad(PadAttrs { mode }))
}
