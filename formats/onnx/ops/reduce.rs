//! Reductions. Before opset 18 (ReduceSum: 13) `axes` was an attribute; it
//! becomes the second input.

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::{ArgReduceAttrs, ReduceAttrs};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(
        op_type,
        "ReduceMean"
            | "ReduceSum"
            | "ReduceMax"
            | "ReduceMin"
            | "ReduceProd"
            | "ReduceL1"
            | "ReduceL2"
            | "ReduceLogSum"
            | "ReduceLogSumExp"
            | "ReduceSumSquare"
            | "ArgMax"
            | "ArgMin"
    )
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    if matches!(op_type, "ArgMax" | "ArgMin") {
        let attrs = ArgReduceAttrs {
            axis: a.int("axis", 0)?,
            keepdims: a.bool("keepdims", true)?,
            select_last_index: a.bool("select_last_index", false)?,
        };
        return Ok(if op_type == "ArgMax" {
            Op::ArgMax(attrs)
        } else {
            Op::ArgMin(attrs)
        });
    }
    let axes_became_input = if op_type == "ReduceSum" { 13 } else { 18 };
    if cx.opset < axes_became_input {
        if let Some(axes) = a.ints("axes")? {
            cx.set_ints_input(1, "axes", &axes)?;
        }
    }
    let attrs = ReduceAttrs {
        keepdims: a.bool("keepdims", true)?,
        noop_with_empty_axes: a.bool("noop_with_empty_axes", false)?,
    };
    Ok(match op_type {
        "ReduceMean" => Op::ReduceMean(attrs),
        "ReduceSum" => Op::ReduceSum(attrs),
        "ReduceMax" => Op::ReduceMax(attrs),
        "ReduceMin" => Op::ReduceMin(attrs),
        "ReduceProd" => Op::ReduceProd(attrs),
        "ReduceL1" => Op::ReduceL1(attrs),
        "ReduceL2" => Op::ReduceL2(attrs),
        "ReduceLogSum" => Op::ReduceLogSum(attrs),
        "ReduceLogSumExp" => Op::ReduceLogSumExp(attrs),
        _ => Op::ReduceSumSquare(attrs),
    })
}
