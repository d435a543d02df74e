//! Shape queries and generators (Shape, Size, ConstantOfShape, Range,
//! EyeLike), TopK, CumSum, Trilu, OneHot, NonZero, Compress, Dropout.

use crate::ir::error::Result;
use crate::ir::ops::{
    CompressAttrs, ConstantOfShapeAttrs, CumSumAttrs, EyeLikeAttrs, OneHotAttrs, Scalar,
    ShapeAttrs, TopKAttrs, TriluAttrs,
};
use crate::ir::{DType, Op, Tensor};

use super::NodeCx;
use crate::formats::onnx::{dtype, tensor};

pub fn handles(op_type: &str) -> bool {
    matches!(
        op_type,
        "Shape"
            | "Size"
            | "ConstantOfShape"
            | "Range"
            | "EyeLike"
            | "TopK"
            | "CumSum"
            | "Trilu"
            | "OneHot"
            | "NonZero"
            | "Compress"
            | "Dropout"
    )
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    Ok(match op_type {
        "Shape" => Op::Shape(ShapeAttrs {
            start: a.int("start", 0)?,
            end: a.opt_int("end")?,
        }),
        "Size" => Op::Size,
        "ConstantOfShape" => constant_of_shape(cx)?,
        "Range" => Op::Range,
        "EyeLike" => {
            let dtype = match a.opt_int("dtype")? {
                None => None,
                Some(code) => match i32::try_from(code)
                    .ok()
                    .and_then(|c| dtype::from_onnx(c).ok())
                {
                    Some(d) => Some(d),
                    None => return Ok(cx.custom()),
                },
            };
            Op::EyeLike(EyeLikeAttrs {
                dtype,
                k: a.int("k", 0)?,
            })
        }
        "TopK" => {
            if cx.opset < 10 {
                let k = a.opt_int("k")?.ok_or_else(|| a.error("k", "is required"))?;
                cx.set_ints_input(1, "k", &[k])?;
            }
            Op::TopK(TopKAttrs {
                axis: a.int("axis", -1)?,
                largest: a.bool("largest", true)?,
                sorted: a.bool("sorted", true)?,
            })
        }
        "CumSum" => Op::CumSum(CumSumAttrs {
            exclusive: a.bool("exclusive", false)?,
            reverse: a.bool("reverse", false)?,
        }),
        "Trilu" => Op::Trilu(TriluAttrs {
            upper: a.bool("upper", true)?,
        }),
        "OneHot" => Op::OneHot(OneHotAttrs {
            axis: a.int("axis", -1)?,
        }),
        "NonZero" => Op::NonZero,
        "Compress" => Op::Compress(CompressAttrs {
            axis: a.opt_int("axis")?,
        }),
        _ => dropout(cx)?,
    })
}

/// ConstantOfShape's `value` attribute: a one-element tensor, f32 0 by default.
fn constant_of_shape(cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let Some(t) = a.tensor("value")? else {
        return Ok(Op::ConstantOfShape(ConstantOfShapeAttrs {
            dtype: DType::F32,
            value: Scalar::Float(0.0),
        }));
    };
    let mut external = crate::formats::onnx::external::ExternalFiles::new(cx.file, None);
    let w = tensor::to_weight(t, "value", cx.file, &mut external)?;
    if w.element_count() != 1 {
        return Err(a.error(
            "value",
            format!("holds {} elements, expected 1", w.element_count()),
        ));
    }
    let value = tensor::weight_to_tensor(&w).map_err(|e| a.error("value", e))?;
    let scalar = match &value {
        Tensor::Bool(v) => Scalar::Bool(v.iter().next().copied().unwrap_or(false)),
        Tensor::U64(v) => Scalar::UInt(v.iter().next().copied().unwrap_or(0)),
        t if t.dtype().is_float() => Scalar::Float(t.to_f64_vec()[0]),
        t => Scalar::Int(t.to_i64_vec().map_err(|e| a.error("value", e))?[0]),
    };
    Ok(Op::ConstantOfShape(ConstantOfShapeAttrs {
        dtype: w.dtype,
        value: scalar,
    }))
}

/// Dropout is the identity at inference. Training mode (Dropout-12+'s
/// `training_mode` input not constant false) and a read mask output have no
/// IR form.
fn dropout(cx: &mut NodeCx) -> Result<Op> {
    if cx.input(2).is_some() {
        let training = match cx.constant(2) {
            Some(t) => t.to_f64_vec().iter().any(|&v| v != 0.0),
            None => true,
        };
        if training {
            return Ok(cx.custom());
        }
    }
    if !cx.keep_outputs(1) {
        return Ok(cx.custom());
    }
    cx.inputs.truncate(1);
    Ok(Op::Identity)
}
