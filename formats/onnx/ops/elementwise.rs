//! Elementwise ops: math, activations, comparisons, logic, Clip, Cast, Where.

use crate::ir::error::Result;
use crate::ir::ops::{
    AlphaAttrs, AlphaBetaAttrs, BitShiftAttrs, CastAttrs, GeluApproximation, GeluAttrs, IsInfAttrs,
    ModAttrs, SeluAttrs, ShiftDirection, ShrinkAttrs,
};
use crate::ir::{DType, Op};

use super::NodeCx;
use crate::formats::onnx::dtype;

/// Ops without attributes that map one to one.
fn plain(op_type: &str) -> Option<Op> {
    use Op::*;
    Some(match op_type {
        "Abs" => Abs,
        "Neg" => Neg,
        "Sqrt" => Sqrt,
        "Reciprocal" => Reciprocal,
        "Exp" => Exp,
        "Log" => Log,
        "Erf" => Erf,
        "Tanh" => Tanh,
        "Sigmoid" => Sigmoid,
        "Relu" => Relu,
        "Softplus" => Softplus,
        "Softsign" => Softsign,
        "Floor" => Floor,
        "Ceil" => Ceil,
        "Round" => Round,
        "Sign" => Sign,
        "Sin" => Sin,
        "Cos" => Cos,
        "Tan" => Tan,
        "Asin" => Asin,
        "Acos" => Acos,
        "Atan" => Atan,
        "Sinh" => Sinh,
        "Cosh" => Cosh,
        "Asinh" => Asinh,
        "Acosh" => Acosh,
        "Atanh" => Atanh,
        "HardSwish" => HardSwish,
        "Mish" => Mish,
        "Not" => Not,
        "BitwiseNot" => BitwiseNot,
        "IsNaN" => IsNaN,
        "Identity" => Identity,
        "Add" => Add,
        "Sub" => Sub,
        "Mul" => Mul,
        "Div" => Div,
        "Pow" => Pow,
        "PRelu" => PRelu,
        "Equal" => Equal,
        "Less" => Less,
        "LessOrEqual" => LessOrEqual,
        "Greater" => Greater,
        "GreaterOrEqual" => GreaterOrEqual,
        "And" => And,
        "Or" => Or,
        "Xor" => Xor,
        "BitwiseAnd" => BitwiseAnd,
        "BitwiseOr" => BitwiseOr,
        "BitwiseXor" => BitwiseXor,
        "Min" => Min,
        "Max" => Max,
        "Sum" => Sum,
        "Mean" => Mean,
        "Where" => Where,
        _ => return None,
    })
}

pub fn handles(op_type: &str) -> bool {
    plain(op_type).is_some()
        || matches!(
            op_type,
            "IsInf"
                | "HardSigmoid"
                | "LeakyRelu"
                | "Elu"
                | "Celu"
                | "ThresholdedRelu"
                | "Selu"
                | "Gelu"
                | "Shrink"
                | "Swish"
                | "Mod"
                | "BitShift"
                | "Clip"
                | "Cast"
                | "CastLike"
        )
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    if let Some(op) = plain(op_type) {
        return Ok(op);
    }
    let a = cx.attrs;
    let alpha = |default: f32| -> Result<AlphaAttrs> {
        Ok(AlphaAttrs {
            alpha: a.float("alpha", default)?,
        })
    };
    Ok(match op_type {
        "IsInf" => Op::IsInf(IsInfAttrs {
            detect_negative: a.bool("detect_negative", true)?,
            detect_positive: a.bool("detect_positive", true)?,
        }),
        "HardSigmoid" => Op::HardSigmoid(AlphaBetaAttrs {
            alpha: a.float("alpha", 0.2)?,
            beta: a.float("beta", 0.5)?,
        }),
        "LeakyRelu" => Op::LeakyRelu(alpha(0.01)?),
        "Elu" => Op::Elu(alpha(1.0)?),
        "Celu" => Op::Celu(alpha(1.0)?),
        "ThresholdedRelu" => Op::ThresholdedRelu(alpha(1.0)?),
        "Selu" => Op::Selu(SeluAttrs {
            alpha: a.float("alpha", 1.673_263_2)?,
            gamma: a.float("gamma", 1.050_701)?,
        }),
        "Gelu" => match a.string("approximate", "none")?.as_str() {
            "none" => Op::Gelu(GeluAttrs {
                approximate: GeluApproximation::None,
            }),
            "tanh" => Op::Gelu(GeluAttrs {
                approximate: GeluApproximation::Tanh,
            }),
            _ => cx.custom(),
        },
        "Swish" => Op::Swish(alpha(1.0)?),
        "Shrink" => Op::Shrink(ShrinkAttrs {
            bias: a.float("bias", 0.0)?,
            lambd: a.float("lambd", 0.5)?,
        }),
        "Mod" => Op::Mod(ModAttrs {
            fmod: a.bool("fmod", false)?,
        }),
        "BitShift" => match a.string("direction", "")?.as_str() {
            "LEFT" => Op::BitShift(BitShiftAttrs {
                direction: ShiftDirection::Left,
            }),
            "RIGHT" => Op::BitShift(BitShiftAttrs {
                direction: ShiftDirection::Right,
            }),
            other => return Err(a.error("direction", format!("'{other}' is not LEFT or RIGHT"))),
        },
        "Clip" => clip(cx)?,
        "Cast" => {
            let to = a
                .opt_int("to")?
                .ok_or_else(|| a.error("to", "is required"))?;
            let to = i32::try_from(to)
                .ok()
                .and_then(|c| dtype::from_onnx(c).ok());
            let Some(to) = to else {
                return Ok(cx.custom());
            };
            Op::Cast(CastAttrs {
                to,
                saturate: a.bool("saturate", true)?,
            })
        }
        "CastLike" => match cx.dtype(1) {
            Some(to) => Op::CastLike(CastAttrs {
                to,
                saturate: a.bool("saturate", true)?,
            }),
            None => cx.custom(),
        },
        _ => unreachable!("handles() lists only the ops above"),
    })
}

/// Clip before opset 11 takes `min`/`max` attributes; they become inputs.
fn clip(cx: &mut NodeCx) -> Result<Op> {
    if cx.opset < 11 {
        let dtype = cx.dtype(0).unwrap_or(DType::F32);
        if let Some(min) = cx.attrs.opt_float("min")? {
            cx.set_scalar_input(1, "min", f64::from(min), dtype)?;
        }
        if let Some(max) = cx.attrs.opt_float("max")? {
            cx.set_scalar_input(2, "max", f64::from(max), dtype)?;
        }
    }
    Ok(Op::Clip)
}
