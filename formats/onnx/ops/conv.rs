//! Convolutions and pooling.

use crate::ir::Op;
use crate::ir::error::Result;
use crate::ir::ops::{ConvAttrs, ConvTransposeAttrs, LpPoolAttrs, Padding, PoolAttrs};

use super::NodeCx;
use crate::formats::onnx::attrs::Attrs;

pub fn handles(op_type: &str) -> bool {
    matches!(
        op_type,
        "Conv"
            | "ConvTranspose"
            | "MaxPool"
            | "AveragePool"
            | "LpPool"
            | "GlobalAveragePool"
            | "GlobalMaxPool"
    )
}

/// The padding from `auto_pad` and `pads` (zeros when absent), `None` for an
/// unknown `auto_pad` value.
fn padding(a: &Attrs, spatial: usize) -> Result<Option<Padding>> {
    Ok(match a.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" | "" => {
            let pads = a.usizes("pads")?.unwrap_or_else(|| vec![0; 2 * spatial]);
            if pads.len() != 2 * spatial {
                return Err(a.error(
                    "pads",
                    format!("{} values for {spatial} spatial axes", pads.len()),
                ));
            }
            Some(Padding::Explicit(pads))
        }
        "SAME_UPPER" => Some(Padding::SameUpper),
        "SAME_LOWER" => Some(Padding::SameLower),
        "VALID" => Some(Padding::Valid),
        _ => None,
    })
}

/// A per-axis list attribute, defaulting to `default` on every axis.
fn per_axis(a: &Attrs, name: &str, spatial: usize, default: usize) -> Result<Vec<usize>> {
    let v = a.usizes(name)?.unwrap_or_else(|| vec![default; spatial]);
    if v.len() != spatial {
        return Err(a.error(
            name,
            format!("{} values for {spatial} spatial axes", v.len()),
        ));
    }
    Ok(v)
}

/// Number of spatial axes, from the attributes or the input and weight ranks.
fn spatial_rank(cx: &NodeCx, weight: bool) -> Result<Option<usize>> {
    let a = &cx.attrs;
    if let Some(k) = a.usizes("kernel_shape")? {
        return Ok(Some(k.len()));
    }
    for name in ["strides", "dilations"] {
        if let Some(v) = a.ints(name)? {
            return Ok(Some(v.len()));
        }
    }
    if let Some(p) = a.ints("pads")? {
        return Ok(Some(p.len() / 2));
    }
    let from = |i: usize| cx.rank(i).and_then(|r| r.checked_sub(2));
    Ok(if weight { from(1).or(from(0)) } else { from(0) })
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    match op_type {
        "GlobalAveragePool" => return Ok(Op::GlobalAveragePool),
        "GlobalMaxPool" => return Ok(Op::GlobalMaxPool),
        _ => {}
    }
    let is_conv = matches!(op_type, "Conv" | "ConvTranspose");
    let Some(spatial) = spatial_rank(cx, is_conv)? else {
        return Ok(cx.custom());
    };
    let Some(padding) = padding(&a, spatial)? else {
        return Ok(cx.custom());
    };
    let strides = per_axis(&a, "strides", spatial, 1)?;
    let dilations = per_axis(&a, "dilations", spatial, 1)?;
    let kernel_shape = a.usizes("kernel_shape")?;
    if let Some(k) = &kernel_shape {
        if k.len() != spatial {
            return Err(a.error(
                "kernel_shape",
                format!("{} values for {spatial} spatial axes", k.len()),
            ));
        }
    }
    let group = || -> Result<usize> {
        let g = a.int("group", 1)?;
        usize::try_from(g)
            .ok()
            .filter(|g| *g >= 1)
            .ok_or_else(|| a.error("group", format!("{g} is not positive")))
    };
    Ok(match op_type {
        "Conv" => Op::Conv(ConvAttrs {
            kernel_shape,
            strides,
            dilations,
            padding,
            group: group()?,
            activation: None,
        }),
        "ConvTranspose" => Op::ConvTranspose(ConvTransposeAttrs {
            kernel_shape,
            strides,
            dilations,
            padding,
            group: group()?,
            output_padding: per_axis(&a, "output_padding", spatial, 0)?,
            output_shape: a.usizes("output_shape")?,
            activation: None,
        }),
        _ => {
            let Some(kernel_shape) = kernel_shape else {
                return Err(a.error("kernel_shape", "is required"));
            };
            // MaxPool's second output (argmax indices) has no IR form.
            if !cx.keep_outputs(1) {
                return Ok(cx.custom());
            }
            let pool = PoolAttrs {
                kernel_shape,
                strides,
                dilations,
                padding,
                ceil_mode: a.bool("ceil_mode", false)?,
                count_include_pad: a.bool("count_include_pad", false)?,
            };
            match op_type {
                "MaxPool" => Op::MaxPool(pool),
                "AveragePool" => Op::AveragePool(pool),
                _ => {
                    // LpPool-1 had a float `p`.
                    let p = if cx.opset < 2 {
                        a.float("p", 2.0)? as i64
                    } else {
                        a.int("p", 2)?
                    };
                    Op::LpPool(LpPoolAttrs { pool, p })
                }
            }
        }
    })
}
