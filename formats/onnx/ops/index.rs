//! Gathering and scattering by index.

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::{
    AxisAttrs, GatherNdAttrs, ScatterElementsAttrs, ScatterNdAttrs, ScatterReduction,
};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(
        op_type,
        "Gather" | "GatherElements" | "GatherND" | "ScatterND" | "ScatterElements" | "Scatter"
    )
}

fn reduction(cx: &NodeCx) -> Result<Option<ScatterReduction>> {
    Ok(match cx.attrs.string("reduction", "none")?.as_str() {
        "none" => Some(ScatterReduction::None),
        "add" => Some(ScatterReduction::Add),
        "mul" => Some(ScatterReduction::Mul),
        "max" => Some(ScatterReduction::Max),
        "min" => Some(ScatterReduction::Min),
        _ => None,
    })
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    Ok(match op_type {
        "Gather" => Op::Gather(AxisAttrs {
            axis: a.int("axis", 0)?,
        }),
        "GatherElements" => Op::GatherElements(AxisAttrs {
            axis: a.int("axis", 0)?,
        }),
        "GatherND" => {
            let b = a.int("batch_dims", 0)?;
            Op::GatherNd(GatherNdAttrs {
                batch_dims: usize::try_from(b).map_err(|_| a.error("batch_dims", "is negative"))?,
            })
        }
        "ScatterND" => match reduction(cx)? {
            Some(reduction) => Op::ScatterNd(ScatterNdAttrs { reduction }),
            None => cx.custom(),
        },
        // Scatter (opsets 9-10) is ScatterElements under its old name.
        _ => match reduction(cx)? {
            Some(reduction) => Op::ScatterElements(ScatterElementsAttrs {
                axis: a.int("axis", 0)?,
                reduction,
            }),
            None => cx.custom(),
        },
    })
}
