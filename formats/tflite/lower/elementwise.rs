//! Lowering of the elementwise family (see [`super::support::family`]):
//! arithmetic, activations, comparisons, logic, select and casts.
//!
//! Every op works in the layout its inputs already have (channels-last stays
//! channels-last); lower-rank operands get leading 1-dims first
//! ([`Lowerer::broadcast_operand`]). Ops without a builtin, and builtins the
//! reference resolver lacks (CEIL, ROUND, ELU), are built from several
//! builtins that both resolvers have.

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, IxDyn};

use crate::formats::target::Support;
use crate::formats::tflite::model::TensorId;
use crate::formats::tflite::schema as tfl;
use crate::ir::error::Result;
use crate::ir::ops::{GeluApproximation, ShiftDirection};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, NodeId, Op, ValueDef, ValueId};

use super::{Layout, Lowerer};

use tfl::BuiltinOperator as B;

/// Types ADD computes without quantization parameters.
const ADD_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64, DType::I16];
const SUB_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64];
const MUL_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64, DType::I16, DType::U32];
const DIV_TYPES: &[DType] = &[DType::F32, DType::I32];
/// MAXIMUM and MINIMUM compare raw values, so unquantized 8-bit types work.
const MINMAX_TYPES: &[DType] = &[
    DType::F32,
    DType::I32,
    DType::I64,
    DType::I16,
    DType::I8,
    DType::U8,
];
/// int8/uint8 comparisons always rescale by the (absent) quantization.
const COMPARE_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64, DType::I16];
const EQUAL_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64, DType::I16, DType::Bool];
const FLOOR_MOD_TYPES: &[DType] = &[DType::F32, DType::I8, DType::I16, DType::I32, DType::I64];
const NEG_TYPES: &[DType] = &[DType::F32, DType::I8, DType::I16, DType::I32, DType::I64];
const CAST_TYPES: &[DType] = &[
    DType::Bool,
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::U32,
    DType::I32,
    DType::I64,
    DType::F16,
    DType::F32,
    DType::F64,
];
/// SELECT_V2 copies elements by size (8 to 64 bits), whatever their type.
const SELECT_TYPES: &[DType] = &[
    DType::Bool,
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::U32,
    DType::I32,
    DType::U64,
    DType::I64,
    DType::F16,
    DType::F32,
    DType::F64,
];
/// BITWISE_XOR and RIGHT_SHIFT.
const BITWISE_TYPES: &[DType] = &[
    DType::I8,
    DType::U8,
    DType::I16,
    DType::U16,
    DType::I32,
    DType::U32,
];
const NARROW_INTS: &[DType] = &[DType::I8, DType::U8, DType::I16, DType::U16];
const ABS_TYPES: &[DType] = &[DType::F32, DType::I32];
const SIGN_TYPES: &[DType] = &[DType::F32, DType::F64, DType::I32];
const F32: &[DType] = &[DType::F32];
const BOOL: &[DType] = &[DType::Bool];

pub fn support(g: &Graph, node: &Node) -> Support {
    match check(g, node) {
        Ok(()) => Support::Native,
        Err(why) => Support::Unsupported(why),
    }
}

/// A dtype the node computes in instead of its own: (own, computed).
type Widen = Option<(DType, DType)>;

fn computed(d: Option<DType>, widen: Widen) -> Option<DType> {
    match (d, widen) {
        (Some(d), Some((from, to))) if d == from => Some(to),
        _ => d,
    }
}

/// The dtype input `i` computes in (absent inputs have none).
fn in_dtype(g: &Graph, node: &Node, i: usize, widen: Widen) -> Option<DType> {
    computed(node.input(i).and_then(|v| g.fact(v).dtype), widen)
}

/// Inputs in `inputs`, outputs in `outputs` (as computed).
fn io_dtypes(
    g: &Graph,
    node: &Node,
    inputs: &[DType],
    outputs: &[DType],
    widen: Widen,
) -> Result<(), String> {
    let check = |v: ValueId, allowed: &[DType]| match computed(g.fact(v).dtype, widen) {
        Some(d) if !allowed.contains(&d) => Err(format!(
            "value '{}' is {d}; TFLite's lowering of {} takes {}",
            g.value(v).name,
            node.op.name(),
            names(allowed)
        )),
        _ => Ok(()),
    };
    for &v in node.inputs.iter().flatten() {
        check(v, inputs)?;
    }
    for &v in &node.outputs {
        check(v, outputs)?;
    }
    Ok(())
}

fn names(dtypes: &[DType]) -> String {
    dtypes
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The broadcast loops of TFLite's kernels take at most this many dimensions
/// (more aborts the interpreter).
pub(super) const MAX_RANK: usize = 8;

/// The largest rank among the node's inputs and outputs.
pub(super) fn max_rank(g: &Graph, node: &Node) -> usize {
    node.inputs
        .iter()
        .flatten()
        .chain(&node.outputs)
        .filter_map(|&v| g.fact(v).shape.rank())
        .max()
        .unwrap_or(0)
}

/// The wider type a node computes in when the kernels lack its own and
/// converting back gives the same result: small integers in int32 (sums and
/// products wrap the same modulo 2^n), uint32 in int64, float16 in float32.
/// (CAST takes no uint64.)
fn widening(g: &Graph, node: &Node) -> Widen {
    use DType as D;
    let from = node.input(0).and_then(|v| g.fact(v).dtype)?;
    let to = match (&node.op, from) {
        (Op::Add | Op::Sum | Op::Sub | Op::Mul, D::I8 | D::U8 | D::U16) => D::I32,
        (Op::Sub, D::I16) => D::I32,
        (Op::Add | Op::Sum | Op::Sub, D::U32) => D::I64,
        (Op::Div, D::I8 | D::U8 | D::I16 | D::U16) => D::I32,
        (Op::Max | Op::Min | Op::Clip, D::U16) => D::I32,
        (Op::Max | Op::Min | Op::Clip, D::U32) => D::I64,
        (
            Op::Equal | Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual,
            D::I8 | D::U8 | D::U16,
        ) => D::I32,
        (Op::Equal | Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual, D::U32) => {
            D::I64
        }
        (Op::Mod(a), D::U8 | D::U16) if !a.fmod => D::I32,
        (Op::Mod(a), D::U32) if !a.fmod => D::I64,
        (Op::Mod(a), D::I8 | D::I16 | D::U8 | D::U16) if a.fmod => D::I32,
        (Op::Abs | Op::Sign, D::I8 | D::I16) => D::I32,
        (
            Op::Abs
            | Op::Neg
            | Op::Sign
            | Op::Sqrt
            | Op::Reciprocal
            | Op::Exp
            | Op::Log
            | Op::Tanh
            | Op::Sigmoid
            | Op::Relu
            | Op::Softplus
            | Op::Softsign
            | Op::Floor
            | Op::Ceil
            | Op::Round
            | Op::Sin
            | Op::Cos
            | Op::Tan
            | Op::Asin
            | Op::Acos
            | Op::Atan
            | Op::Sinh
            | Op::Cosh
            | Op::Asinh
            | Op::Acosh
            | Op::Atanh
            | Op::HardSwish
            | Op::Mish
            | Op::HardSigmoid(_)
            | Op::LeakyRelu(_)
            | Op::Elu(_)
            | Op::Celu(_)
            | Op::ThresholdedRelu(_)
            | Op::Selu(_)
            | Op::Gelu(_)
            | Op::Shrink(_)
            | Op::Swish(_)
            | Op::PRelu
            | Op::IsNaN
            | Op::IsInf(_)
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Sum
            | Op::Mean
            | Op::Max
            | Op::Min
            | Op::Clip
            | Op::Mod(_)
            | Op::Equal
            | Op::Less
            | Op::LessOrEqual
            | Op::Greater
            | Op::GreaterOrEqual,
            D::F16,
        ) => D::F32,
        _ => return None,
    };
    Some((from, to))
}

fn check(g: &Graph, node: &Node) -> Result<(), String> {
    let w = widening(g, node);
    if max_rank(g, node) > MAX_RANK {
        return Err(format!(
            "TFLite's elementwise kernels take at most {MAX_RANK} dimensions"
        ));
    }
    match &node.op {
        Op::Abs => io_dtypes(g, node, ABS_TYPES, ABS_TYPES, w),
        Op::Neg => io_dtypes(g, node, NEG_TYPES, NEG_TYPES, w),
        Op::Sign => io_dtypes(g, node, SIGN_TYPES, SIGN_TYPES, w),
        Op::Sqrt
        | Op::Reciprocal
        | Op::Exp
        | Op::Log
        | Op::Tanh
        | Op::Sigmoid
        | Op::Relu
        | Op::Softplus
        | Op::Softsign
        | Op::Floor
        | Op::Ceil
        | Op::Round
        | Op::Sin
        | Op::Cos
        | Op::Tan
        | Op::HardSwish
        | Op::Mish
        | Op::HardSigmoid(_)
        | Op::LeakyRelu(_)
        | Op::Elu(_)
        | Op::Celu(_)
        | Op::ThresholdedRelu(_)
        | Op::Selu(_)
        | Op::Gelu(_)
        | Op::Shrink(_)
        | Op::Swish(_)
        | Op::PRelu
        | Op::Mean => io_dtypes(g, node, F32, F32, w),
        Op::Erf => Err("TFLite has no erf builtin and no exact decomposition into builtins".into()),
        Op::Asin
        | Op::Acos
        | Op::Atan
        | Op::Sinh
        | Op::Cosh
        | Op::Asinh
        | Op::Acosh
        | Op::Atanh => io_dtypes(g, node, F32, F32, w),
        Op::BitwiseNot | Op::BitwiseXor => io_dtypes(g, node, BITWISE_TYPES, BITWISE_TYPES, w),
        Op::BitwiseAnd | Op::BitwiseOr => io_dtypes(g, node, NARROW_INTS, NARROW_INTS, w)
            .map_err(|why| format!("{why} (built from ADD, SUB, BITWISE_XOR and DIV in int32)")),
        Op::BitShift(_) => io_dtypes(g, node, BITWISE_TYPES, BITWISE_TYPES, w).map_err(|why| {
            format!("{why} (RIGHT_SHIFT takes those; left shifts multiply in int64)")
        }),
        Op::IsNaN | Op::IsInf(_) => io_dtypes(g, node, F32, BOOL, w),
        Op::Not | Op::And | Op::Or | Op::Xor => io_dtypes(g, node, BOOL, BOOL, w),
        Op::Add | Op::Sum => io_dtypes(g, node, ADD_TYPES, ADD_TYPES, w),
        Op::Sub => io_dtypes(g, node, SUB_TYPES, SUB_TYPES, w),
        Op::Mul => io_dtypes(g, node, MUL_TYPES, MUL_TYPES, w),
        Op::Div => io_dtypes(g, node, DIV_TYPES, DIV_TYPES, w),
        Op::Min | Op::Max => io_dtypes(g, node, MINMAX_TYPES, MINMAX_TYPES, w),
        Op::Clip => io_dtypes(g, node, MINMAX_TYPES, MINMAX_TYPES, w),
        Op::Pow => check_pow(g, node, w),
        Op::Mod(a) if a.fmod => io_dtypes(g, node, ABS_TYPES, ABS_TYPES, w).map_err(|why| {
            format!("{why} (C fmod is built from SIGN, ABS and FLOOR_MOD, which take those)")
        }),
        Op::Mod(_) => io_dtypes(g, node, FLOOR_MOD_TYPES, FLOOR_MOD_TYPES, w),
        Op::Equal => io_dtypes(g, node, EQUAL_TYPES, BOOL, w),
        Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            io_dtypes(g, node, COMPARE_TYPES, BOOL, w)
        }
        Op::Where => {
            if in_dtype(g, node, 0, w) != Some(DType::Bool) {
                return Err("Where needs a bool condition".into());
            }
            let values: Vec<ValueId> = node.inputs[1..]
                .iter()
                .flatten()
                .chain(&node.outputs)
                .copied()
                .collect();
            for v in values {
                if let Some(d) = g.fact(v).dtype
                    && !SELECT_TYPES.contains(&d)
                {
                    return Err(format!(
                        "value '{}' is {d}; TFLite's SELECT_V2 takes {}",
                        g.value(v).name,
                        names(SELECT_TYPES)
                    ));
                }
            }
            Ok(())
        }
        Op::Cast(_) | Op::CastLike(_) => {
            let from = in_dtype(g, node, 0, w);
            let to = g.fact(node.outputs[0]).dtype;
            for (what, d) in [("from", from), ("to", to)] {
                if let Some(d) = d
                    && !CAST_TYPES.contains(&d)
                {
                    return Err(format!(
                        "TFLite's CAST cannot cast {what} {d}; it takes {}",
                        names(CAST_TYPES)
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "{} is not an elementwise op of the TFLite lowering",
            other.name()
        )),
    }
}

/// POW takes float32 or int32, both operands of one type: an exponent of
/// another type is cast to the base's type (integers only for an int32 base).
fn check_pow(g: &Graph, node: &Node, w: Widen) -> Result<(), String> {
    let base = in_dtype(g, node, 0, w);
    let exponent = in_dtype(g, node, 1, w);
    let ints = [
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::I64,
    ];
    match (base, exponent) {
        (Some(DType::F32), Some(e))
            if e == DType::F32 || CAST_TYPES.contains(&e) && e != DType::Bool =>
        {
            Ok(())
        }
        (Some(DType::I32), Some(e)) if ints.contains(&e) => Ok(()),
        (Some(b), Some(e)) => Err(format!(
            "TFLite's POW takes a float32 base (any numeric exponent) or an int32 base with an integer exponent, not {b} ** {e}"
        )),
        _ => Err("Pow needs known dtypes".into()),
    }
}

/// A node lowered together with a producer of its input (float32 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fusion {
    /// Mul(d, d) or Pow(d, 2) of d = Sub(a, b): SQUARED_DIFFERENCE(a, b).
    SquaredDifference { a: ValueId, b: ValueId },
    /// Reciprocal(Sqrt(x)): RSQRT(x).
    Rsqrt { x: ValueId },
    /// Div(a, Sqrt(x)): MUL(a, RSQRT(x)).
    MulRsqrt { a: ValueId, x: ValueId },
}

impl Fusion {
    /// The values the fused builtins read (they choose the layout).
    fn sources(self) -> Vec<ValueId> {
        match self {
            Fusion::SquaredDifference { a, b } | Fusion::MulRsqrt { a, x: b } => vec![a, b],
            Fusion::Rsqrt { x } => vec![x],
        }
    }
}

/// The fusions of `g` by the fused node's output, and the producers they
/// absorb (by output): a Sub whose every use is the square's, a Sqrt whose
/// only consumer is the RSQRT. A Sqrt with other consumers leaves the Div
/// as it is (a SQRT would stay beside the RSQRT); a shared Sub is still
/// lowered for its other consumers.
pub(super) fn fusions(g: &Graph) -> (HashMap<ValueId, Fusion>, HashSet<ValueId>) {
    let mut fusions = HashMap::new();
    let mut absorbed = HashSet::new();
    let consumers = g.consumers();
    let only_for = |v: ValueId, id: NodeId| {
        !g.outputs.contains(&v)
            && consumers
                .get(&v)
                .is_some_and(|c| c.iter().all(|&n| n == id))
    };
    let f32 = |v: ValueId| g.fact(v).dtype == Some(DType::F32);
    let produced_by = |v: ValueId, want: fn(&Op) -> bool| -> Option<&Node> {
        let node = g.node(g.producer(v)?);
        (want(&node.op) && node.outputs.first() == Some(&v)).then_some(node)
    };
    for (id, node) in g.nodes() {
        let Some(&out) = node.outputs.first() else {
            continue;
        };
        let (Some(first), second) = (node.input(0), node.input(1)) else {
            continue;
        };
        if !f32(out) || !f32(first) || max_rank(g, node) > MAX_RANK {
            continue;
        }
        match node.op {
            Op::Mul | Op::Pow => {
                let Some(second) = second else { continue };
                let square = match node.op {
                    Op::Mul => second == first,
                    _ => is_constant_two(g, second),
                };
                let Some(sub) = produced_by(first, |op| matches!(op, Op::Sub)) else {
                    continue;
                };
                let (Some(a), Some(b)) = (sub.input(0), sub.input(1)) else {
                    continue;
                };
                let shape = |v: ValueId| g.fact(v).shape.as_fixed();
                let Some(so) = shape(out) else { continue };
                // SQUARED_DIFFERENCE broadcasts up to rank 8 in both
                // resolvers (checked in LiteRT 2.3), as far as MAX_RANK.
                if !square || !f32(a) || !f32(b) || shape(first) != Some(so) {
                    continue;
                }
                fusions.insert(out, Fusion::SquaredDifference { a, b });
                if only_for(first, id) {
                    absorbed.insert(first);
                }
            }
            Op::Reciprocal | Op::Div => {
                let root = match node.op {
                    Op::Div => match second {
                        Some(s) if s != first => s,
                        _ => continue,
                    },
                    _ => first,
                };
                let Some(sqrt) = produced_by(root, |op| matches!(op, Op::Sqrt)) else {
                    continue;
                };
                let Some(x) = sqrt.input(0) else { continue };
                if !f32(root) || !f32(x) || !only_for(root, id) {
                    continue;
                }
                let fusion = match node.op {
                    Op::Div => Fusion::MulRsqrt { a: first, x },
                    _ => Fusion::Rsqrt { x },
                };
                fusions.insert(out, fusion);
                absorbed.insert(root);
            }
            _ => {}
        }
    }
    (fusions, absorbed)
}

/// Whether `v` is a constant whose every element is 2.
fn is_constant_two(g: &Graph, v: ValueId) -> bool {
    g.weight_of(v).is_some_and(|w| {
        Tensor::from_bytes(w.dtype, &w.shape, &w.data)
            .is_ok_and(|t| t.to_f64_vec().iter().all(|&x| x == 2.0))
    })
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let out = node.outputs[0];
    let rank = lx.rank(out)?;
    let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
    let fusion = lx.fusions.get(&out).copied();
    let sources = fusion.map(Fusion::sources);
    // PRelu's slope follows x; every other op follows all of its inputs (a
    // fusion: the inputs of the producer it absorbs and its other input).
    let layout_inputs = match &sources {
        Some(sources) => &sources[..],
        None if matches!(node.op, Op::PRelu) => &inputs[..1],
        None => &inputs[..],
    };
    let layout = lx.common_layout(layout_inputs, rank);
    let widen = widening(lx.g, node);
    let mut e = Emit::new(lx, &node.name);
    if let Some((from, to)) = widen {
        e.widen = Some((
            super::tensor_type(from).map_err(|err| e.lx.error(err))?,
            super::tensor_type(to).map_err(|err| e.lx.error(err))?,
        ));
    }
    let arg = |e: &mut Emit, i: usize| -> Result<TensorId> {
        let v = e.lx.input(node, i)?;
        e.input(v, layout, rank)
    };
    // The type scalars of the computation take: the output's, widened.
    let dtype = match widen {
        Some((from, to)) if e.lx.dtype(out)? == from => to,
        _ => e.lx.dtype(out)?,
    };

    if let Some(fusion) = fusion {
        match fusion {
            Fusion::SquaredDifference { a, b } => {
                let a = e.input(a, layout, rank)?;
                let b = e.input(b, layout, rank)?;
                let y = e.output(out, layout)?;
                e.op(
                    B::SQUARED_DIFFERENCE,
                    &[a, b],
                    tfl::BuiltinOptionsT::NONE,
                    y,
                );
            }
            Fusion::Rsqrt { x } => {
                let x = e.input(x, layout, rank)?;
                let y = e.output(out, layout)?;
                e.op(B::RSQRT, &[x], tfl::BuiltinOptionsT::NONE, y);
            }
            Fusion::MulRsqrt { a, x } => {
                let a = e.input(a, layout, rank)?;
                let x = e.input(x, layout, rank)?;
                let y = e.output(out, layout)?;
                let r = e.unary(B::RSQRT, x, None);
                e.binary(B::MUL, a, r, Some(y));
            }
        }
        e.finish();
        return Ok(());
    }

    // Ops that may produce no operator: the output is an input.
    match &node.op {
        Op::Cast(_) | Op::CastLike(_) if e.lx.dtype(e.lx.input(node, 0)?)? == dtype => {
            let x = arg(&mut e, 0)?;
            e.lx.alias(out, x, layout);
            return Ok(());
        }
        Op::Sum | Op::Max | Op::Min | Op::Mean if inputs.len() == 1 => {
            let x = e.lx.broadcast_operand(inputs[0], layout, rank)?;
            e.lx.alias(out, x, layout);
            return Ok(());
        }
        Op::Clip if node.input(1).is_none() && node.input(2).is_none() => {
            let x = e.lx.broadcast_operand(inputs[0], layout, rank)?;
            e.lx.alias(out, x, layout);
            return Ok(());
        }
        _ => {}
    }

    let lowered = match &node.op {
        Op::Abs => unary(&mut e, node, B::ABS, layout, rank, out),
        Op::Neg => unary(&mut e, node, B::NEG, layout, rank, out),
        Op::Sqrt => unary(&mut e, node, B::SQRT, layout, rank, out),
        Op::Exp => unary(&mut e, node, B::EXP, layout, rank, out),
        Op::Log => unary(&mut e, node, B::LOG, layout, rank, out),
        Op::Tanh => unary(&mut e, node, B::TANH, layout, rank, out),
        Op::Sigmoid => unary(&mut e, node, B::LOGISTIC, layout, rank, out),
        Op::Relu => unary(&mut e, node, B::RELU, layout, rank, out),
        Op::Floor => unary(&mut e, node, B::FLOOR, layout, rank, out),
        Op::Sin => unary(&mut e, node, B::SIN, layout, rank, out),
        Op::Cos => unary(&mut e, node, B::COS, layout, rank, out),
        Op::Sign => unary(&mut e, node, B::SIGN, layout, rank, out),
        Op::HardSwish => unary(&mut e, node, B::HARD_SWISH, layout, rank, out),
        Op::Not => unary(&mut e, node, B::LOGICAL_NOT, layout, rank, out),
        Op::LeakyRelu(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let options =
                tfl::BuiltinOptionsT::LeakyReluOptions(Box::new(tfl::LeakyReluOptionsT {
                    alpha: a.alpha,
                }));
            e.op(B::LEAKY_RELU, &[x], options, y);
            Ok(())
        }
        Op::Gelu(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let options = tfl::BuiltinOptionsT::GeluOptions(Box::new(tfl::GeluOptionsT {
                approximate: a.approximate == GeluApproximation::Tanh,
            }));
            e.op(B::GELU, &[x], options, y);
            Ok(())
        }
        Op::Ceil => {
            // ceil(x) = -floor(-x); CEIL is missing from the reference resolver.
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let neg = e.unary(B::NEG, x, None);
            let floor = e.unary(B::FLOOR, neg, None);
            e.unary(B::NEG, floor, Some(y));
            Ok(())
        }
        Op::Round => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            round_half_even(&mut e, x, y)
        }
        Op::Reciprocal => {
            // POW, not DIV: the reference DIV clamps 1/0 to the largest float.
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let minus_one = e.scalar(-1.0, dtype)?;
            e.binary(B::POW, x, minus_one, Some(y));
            Ok(())
        }
        Op::Tan => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let sin = e.unary(B::SIN, x, None);
            let cos = e.unary(B::COS, x, None);
            e.binary(B::DIV, sin, cos, Some(y));
            Ok(())
        }
        Op::Asin
        | Op::Acos
        | Op::Atan
        | Op::Sinh
        | Op::Cosh
        | Op::Asinh
        | Op::Acosh
        | Op::Atanh => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            trig(&mut e, &node.op, x, y)
        }
        Op::BitwiseXor => binary(&mut e, node, B::BITWISE_XOR, layout, rank, out),
        Op::BitwiseNot => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let ones = e.scalar_bits(u64::MAX, x)?;
            e.binary(B::BITWISE_XOR, x, ones, Some(y));
            Ok(())
        }
        Op::BitwiseAnd | Op::BitwiseOr => {
            // a + b = (a ^ b) + 2 (a & b) and a | b = (a & b) + (a ^ b), in int32.
            let a = arg(&mut e, 0)?;
            let b = arg(&mut e, 1)?;
            let y = e.output(out, layout)?;
            let xor = e.binary(B::BITWISE_XOR, a, b, None);
            let a = e.cast(a, tfl::TensorType::INT32, None);
            let b = e.cast(b, tfl::TensorType::INT32, None);
            let xor = e.cast(xor, tfl::TensorType::INT32, None);
            let sum = e.binary(B::ADD, a, b, None);
            let code = if matches!(node.op, Op::BitwiseAnd) {
                B::SUB
            } else {
                B::ADD
            };
            let twice = e.binary(code, sum, xor, None);
            let two = e.scalar(2.0, DType::I32)?;
            let half = e.binary(B::DIV, twice, two, None);
            let to = e.tensor_dtype(y);
            e.cast(half, to, Some(y));
            Ok(())
        }
        Op::BitShift(a) => {
            let x = arg(&mut e, 0)?;
            let s = arg(&mut e, 1)?;
            let y = e.output(out, layout)?;
            match a.direction {
                ShiftDirection::Right => shift_right(&mut e, x, s, y),
                ShiftDirection::Left => shift_left(&mut e, x, s, y),
            }
        }
        Op::Elu(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            elu_like(&mut e, x, 1.0, f64::from(a.alpha), None, y)
        }
        Op::Selu(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let gamma = f64::from(a.gamma);
            elu_like(&mut e, x, gamma, gamma * f64::from(a.alpha), None, y)
        }
        Op::Celu(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let alpha = f64::from(a.alpha);
            elu_like(&mut e, x, 1.0, alpha, Some(alpha), y)
        }
        Op::Softplus => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            softplus(&mut e, x, Some(y))?;
            Ok(())
        }
        Op::Mish => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let sp = softplus(&mut e, x, None)?;
            let t = e.unary(B::TANH, sp, None);
            e.binary(B::MUL, x, t, Some(y));
            Ok(())
        }
        Op::Softsign => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let abs = e.unary(B::ABS, x, None);
            let one = e.scalar(1.0, dtype)?;
            let den = e.binary(B::ADD, abs, one, None);
            e.binary(B::DIV, x, den, Some(y));
            Ok(())
        }
        Op::HardSigmoid(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let alpha = e.scalar(f64::from(a.alpha), dtype)?;
            let beta = e.scalar(f64::from(a.beta), dtype)?;
            let scaled = e.binary(B::MUL, x, alpha, None);
            let shifted = e.binary(B::ADD, scaled, beta, None);
            e.unary(B::RELU_0_TO_1, shifted, Some(y));
            Ok(())
        }
        Op::Swish(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let inner = if a.alpha == 1.0 {
                x
            } else {
                let alpha = e.scalar(f64::from(a.alpha), dtype)?;
                e.binary(B::MUL, x, alpha, None)
            };
            let s = e.unary(B::LOGISTIC, inner, None);
            e.binary(B::MUL, x, s, Some(y));
            Ok(())
        }
        Op::ThresholdedRelu(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let alpha = e.scalar(f64::from(a.alpha), dtype)?;
            let zero = e.scalar(0.0, dtype)?;
            let above = e.compare(B::GREATER, x, alpha, None);
            e.select(above, x, zero, Some(y));
            Ok(())
        }
        Op::Shrink(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let lambd = e.scalar(f64::from(a.lambd), dtype)?;
            let neg_lambd = e.scalar(-f64::from(a.lambd), dtype)?;
            let bias = e.scalar(f64::from(a.bias), dtype)?;
            let zero = e.scalar(0.0, dtype)?;
            let below = e.compare(B::LESS, x, neg_lambd, None);
            let above = e.compare(B::GREATER, x, lambd, None);
            let plus = e.binary(B::ADD, x, bias, None);
            let minus = e.binary(B::SUB, x, bias, None);
            let upper = e.select(above, minus, zero, None);
            e.select(below, plus, upper, Some(y));
            Ok(())
        }
        Op::IsNaN => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            e.compare(B::NOT_EQUAL, x, x, Some(y));
            Ok(())
        }
        Op::IsInf(a) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let x_dtype = match widen {
                Some((_, to)) => to,
                None => e.lx.dtype(e.lx.input(node, 0)?)?,
            };
            let inf = e.scalar(f64::INFINITY, x_dtype)?;
            match (a.detect_positive, a.detect_negative) {
                (true, true) => {
                    let abs = e.unary(B::ABS, x, None);
                    e.compare(B::EQUAL, abs, inf, Some(y));
                }
                (true, false) => {
                    e.compare(B::EQUAL, x, inf, Some(y));
                }
                (false, true) => {
                    let neg_inf = e.scalar(f64::NEG_INFINITY, x_dtype)?;
                    e.compare(B::EQUAL, x, neg_inf, Some(y));
                }
                // Nothing is greater than +inf: all false.
                (false, false) => {
                    e.compare(B::GREATER, x, inf, Some(y));
                }
            }
            Ok(())
        }
        Op::Add | Op::Sub => {
            let code = if matches!(node.op, Op::Add) {
                B::ADD
            } else {
                B::SUB
            };
            let carries = dtype == DType::F32
                && node
                    .inputs
                    .iter()
                    .flatten()
                    .any(|&v| may_carry_infinity(e.lx.g, v, INFINITY_SEARCH_DEPTH));
            if !carries {
                return binary(&mut e, node, code, layout, rank, out).map(|()| e.finish());
            }
            let a = arg(&mut e, 0)?;
            let b = arg(&mut e, 1)?;
            let y = e.output(out, layout)?;
            let sum = e.binary(code, a, b, None);
            unclamp(&mut e, sum, y)
        }
        Op::Mul => binary(&mut e, node, B::MUL, layout, rank, out),
        Op::Div => binary(&mut e, node, B::DIV, layout, rank, out),
        Op::Equal => binary(&mut e, node, B::EQUAL, layout, rank, out),
        Op::Less => binary(&mut e, node, B::LESS, layout, rank, out),
        Op::LessOrEqual => binary(&mut e, node, B::LESS_EQUAL, layout, rank, out),
        Op::Greater => binary(&mut e, node, B::GREATER, layout, rank, out),
        Op::GreaterOrEqual => binary(&mut e, node, B::GREATER_EQUAL, layout, rank, out),
        Op::And => binary(&mut e, node, B::LOGICAL_AND, layout, rank, out),
        Op::Or => binary(&mut e, node, B::LOGICAL_OR, layout, rank, out),
        Op::Xor => binary(&mut e, node, B::NOT_EQUAL, layout, rank, out),
        Op::Mod(a) if !a.fmod => binary(&mut e, node, B::FLOOR_MOD, layout, rank, out),
        Op::Mod(_) => {
            // C fmod has the dividend's sign: sign(a) * floor_mod(|a|, |b|),
            // exact because floor_mod of non-negative operands is fmod.
            let a = arg(&mut e, 0)?;
            let b = arg(&mut e, 1)?;
            let y = e.output(out, layout)?;
            let abs_a = e.unary(B::ABS, a, None);
            let abs_b = e.unary(B::ABS, b, None);
            let m = e.binary(B::FLOOR_MOD, abs_a, abs_b, None);
            let sign = e.unary(B::SIGN, a, None);
            e.binary(B::MUL, sign, m, Some(y));
            Ok(())
        }
        Op::PRelu => {
            let x = arg(&mut e, 0)?;
            let slope = arg(&mut e, 1)?;
            let y = e.output(out, layout)?;
            e.op(B::PRELU, &[x, slope], tfl::BuiltinOptionsT::NONE, y);
            Ok(())
        }
        Op::Pow => {
            let x = arg(&mut e, 0)?;
            let mut p = arg(&mut e, 1)?;
            let y = e.output(out, layout)?;
            let want = e.tensor_dtype(x);
            if e.tensor_dtype(p) != want {
                p = e.cast(p, want, None);
            }
            e.binary(B::POW, x, p, Some(y));
            Ok(())
        }
        Op::Sum | Op::Max | Op::Min | Op::Mean => {
            let code = match node.op {
                Op::Max => B::MAXIMUM,
                Op::Min => B::MINIMUM,
                _ => B::ADD,
            };
            let n = inputs.len();
            let y = e.output(out, layout)?;
            let mut acc = arg(&mut e, 0)?;
            for i in 1..n {
                let next = arg(&mut e, i)?;
                let last = i == n - 1 && !matches!(node.op, Op::Mean);
                acc = e.binary(code, acc, next, last.then_some(y));
            }
            if matches!(node.op, Op::Mean) {
                let count = e.scalar(n as f64, dtype)?;
                e.binary(B::DIV, acc, count, Some(y));
            }
            Ok(())
        }
        Op::Where => {
            let c = arg(&mut e, 0)?;
            let a = arg(&mut e, 1)?;
            let b = arg(&mut e, 2)?;
            let y = e.output(out, layout)?;
            e.select(c, a, b, Some(y));
            Ok(())
        }
        Op::Clip => clip(&mut e, node, layout, rank, out),
        Op::Cast(_) | Op::CastLike(_) => {
            let x = arg(&mut e, 0)?;
            let y = e.output(out, layout)?;
            let to = e.tensor_dtype(y);
            e.cast(x, to, Some(y));
            Ok(())
        }
        other => Err(e.lx.error(format!(
            "{} has no TFLite lowering in the elementwise family",
            other.name()
        ))),
    };
    lowered?;
    e.finish();
    Ok(())
}

/// How far [`may_carry_infinity`] follows producers.
pub(super) const INFINITY_SEARCH_DEPTH: usize = 12;

/// Whether `v` may hold an infinity taken from a constant (attention masks
/// built with -inf), following ops that pass values on.
pub(super) fn may_carry_infinity(g: &Graph, v: ValueId, depth: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(v, depth)];
    while let Some((v, depth)) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        if let Some(w) = g.weight_of(v) {
            let infinite = matches!(w.dtype, DType::F32 | DType::F16 | DType::F64)
                && Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                    .is_ok_and(|t| t.to_f64_vec().iter().any(|x| x.is_infinite()));
            if infinite {
                return true;
            }
            continue;
        }
        let ValueDef::Node { node, .. } = g.value(v).def else {
            continue;
        };
        if depth == 0 {
            continue;
        }
        let node = g.node(node);
        let data_inputs: &[Option<ValueId>] = match node.op {
            Op::Where | Op::Pad(_) => &node.inputs[..],
            Op::Cast(_)
            | Op::ReduceMax(_)
            | Op::ReduceMin(_)
            | Op::CastLike(_)
            | Op::Reshape(_)
            | Op::Expand
            | Op::Unsqueeze
            | Op::Squeeze
            | Op::Flatten(_)
            | Op::Transpose(_)
            | Op::Tile
            | Op::Gather(_)
            | Op::Slice => &node.inputs[..1],
            Op::Identity
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Neg
            | Op::Concat(_)
            | Op::Max
            | Op::Min
            | Op::Sum => &node.inputs[..],
            _ => continue,
        };
        stack.extend(data_inputs.iter().flatten().map(|&i| (i, depth - 1)));
    }
    false
}

/// The reference ADD and SUB clamp their results to the finite range, so
/// an infinite sum comes out as the largest float (and REDUCE_MAX/MIN start
/// from it): put the infinities back (only a finite result of exactly
/// +-FLT_MAX is then taken for infinite).
pub(super) fn unclamp(e: &mut Emit, sum: TensorId, y: TensorId) -> Result<()> {
    let max = e.scalar(f64::from(f32::MAX), DType::F32)?;
    let min = e.scalar(f64::from(f32::MIN), DType::F32)?;
    let inf = e.scalar(f64::INFINITY, DType::F32)?;
    let neg_inf = e.scalar(f64::NEG_INFINITY, DType::F32)?;
    let high = e.compare(B::GREATER_EQUAL, sum, max, None);
    let low = e.compare(B::LESS_EQUAL, sum, min, None);
    let upper = e.select(high, inf, sum, None);
    e.select(low, neg_inf, upper, Some(y));
    Ok(())
}

/// Inverse and hyperbolic trigonometry from EXP, LOG, SQRT and ATAN2.
fn trig(e: &mut Emit, op: &Op, x: TensorId, y: TensorId) -> Result<()> {
    let f32 = DType::F32;
    let one = e.scalar(1.0, f32)?;
    let half = e.scalar(0.5, f32)?;
    // sqrt((1 - x)(1 + x)), accurate near |x| = 1.
    let cosine = |e: &mut Emit| {
        let minus = e.binary(B::SUB, one, x, None);
        let plus = e.binary(B::ADD, one, x, None);
        let prod = e.binary(B::MUL, minus, plus, None);
        e.unary(B::SQRT, prod, None)
    };
    match op {
        Op::Atan => {
            // ATAN2 does not broadcast: x^0 is a tensor of ones like x.
            let zero = e.scalar(0.0, f32)?;
            let ones = e.binary(B::POW, x, zero, None);
            e.binary(B::ATAN2, x, ones, Some(y));
        }
        Op::Asin => {
            let c = cosine(e);
            e.binary(B::ATAN2, x, c, Some(y));
        }
        Op::Acos => {
            let c = cosine(e);
            e.binary(B::ATAN2, c, x, Some(y));
        }
        Op::Sinh | Op::Cosh => {
            let ep = e.unary(B::EXP, x, None);
            let neg = e.unary(B::NEG, x, None);
            let en = e.unary(B::EXP, neg, None);
            let code = if matches!(op, Op::Sinh) {
                B::SUB
            } else {
                B::ADD
            };
            let both = e.binary(code, ep, en, None);
            e.binary(B::MUL, both, half, Some(y));
        }
        Op::Asinh => {
            // sign(x) * log(|x| + sqrt(x^2 + 1)): no cancellation for x < 0.
            let abs = e.unary(B::ABS, x, None);
            let sq = e.binary(B::MUL, x, x, None);
            let sq1 = e.binary(B::ADD, sq, one, None);
            let root = e.unary(B::SQRT, sq1, None);
            let sum = e.binary(B::ADD, abs, root, None);
            let log = e.unary(B::LOG, sum, None);
            let sign = e.unary(B::SIGN, x, None);
            e.binary(B::MUL, sign, log, Some(y));
        }
        Op::Acosh => {
            let minus = e.binary(B::SUB, x, one, None);
            let plus = e.binary(B::ADD, x, one, None);
            let prod = e.binary(B::MUL, minus, plus, None);
            let root = e.unary(B::SQRT, prod, None);
            let sum = e.binary(B::ADD, x, root, None);
            e.unary(B::LOG, sum, Some(y));
        }
        Op::Atanh => {
            let plus = e.binary(B::ADD, one, x, None);
            let minus = e.binary(B::SUB, one, x, None);
            let ratio = e.binary(B::DIV, plus, minus, None);
            let log = e.unary(B::LOG, ratio, None);
            e.binary(B::MUL, log, half, Some(y));
        }
        other => return Err(e.lx.error(format!("{} is not trigonometric", other.name()))),
    }
    Ok(())
}

/// ONNX right shifts by a negative amount or by the width or more fill with
/// the sign bit (all zeros for unsigned types). RIGHT_SHIFT clamps the
/// amount to [0, width - 1]: signed amounts below zero become width - 1,
/// unsigned results of amounts past the width become 0.
fn shift_right(e: &mut Emit, x: TensorId, s: TensorId, y: TensorId) -> Result<()> {
    let dtype = e.tensor_dtype(x);
    let width = bit_width(dtype);
    // Comparisons on 8-bit and unsigned types would rescale or are missing.
    let comparable = e.cast(s, tfl::TensorType::INT64, None);
    if signed(dtype) {
        let zero = e.scalar_bits(0, comparable)?;
        let max = e.scalar_bits(width - 1, s)?;
        let negative = e.compare(B::LESS, comparable, zero, None);
        let s = e.select(negative, max, s, None);
        e.binary(B::RIGHT_SHIFT, x, s, Some(y));
    } else {
        let w = e.scalar_bits(width, comparable)?;
        let zero = e.scalar_bits(0, x)?;
        let past = e.compare(B::GREATER_EQUAL, comparable, w, None);
        let shifted = e.binary(B::RIGHT_SHIFT, x, s, None);
        e.select(past, zero, shifted, Some(y));
    }
    Ok(())
}

/// x << s modulo 2^width (0 for amounts out of [0, width)):
/// (x mod 2^(width - s')) * 2^s' in int64, where s' is s clamped to
/// [0, width] and negative amounts become width; the powers of two are
/// exact in float32.
fn shift_left(e: &mut Emit, x: TensorId, s: TensorId, y: TensorId) -> Result<()> {
    let width = bit_width(e.tensor_dtype(x)) as f64;
    let f = tfl::TensorType::FLOAT32;
    let i64t = tfl::TensorType::INT64;
    let sf = e.cast(s, f, None);
    let zero = e.scalar(0.0, DType::F32)?;
    let w = e.scalar(width, DType::F32)?;
    let two = e.scalar(2.0, DType::F32)?;
    let negative = e.compare(B::LESS, sf, zero, None);
    let capped = e.binary(B::MINIMUM, sf, w, None);
    let amount = e.select(negative, w, capped, None);
    let kept = e.binary(B::SUB, w, amount, None);
    let modulus = e.binary(B::POW, two, kept, None);
    let factor = e.binary(B::POW, two, amount, None);
    let modulus = e.cast(modulus, i64t, None);
    let factor = e.cast(factor, i64t, None);
    let wide = e.cast(x, i64t, None);
    let low = e.binary(B::FLOOR_MOD, wide, modulus, None);
    let shifted = e.binary(B::MUL, low, factor, None);
    let to = e.tensor_dtype(y);
    e.cast(shifted, to, Some(y));
    Ok(())
}

fn bit_width(t: tfl::TensorType) -> u64 {
    use tfl::TensorType as T;
    match t {
        T::INT8 | T::UINT8 => 8,
        T::INT16 | T::UINT16 => 16,
        T::INT64 | T::UINT64 => 64,
        _ => 32,
    }
}

fn signed(t: tfl::TensorType) -> bool {
    use tfl::TensorType as T;
    matches!(t, T::INT8 | T::INT16 | T::INT32 | T::INT64)
}

/// One builtin on input 0, written to the output.
fn unary(
    e: &mut Emit,
    node: &Node,
    code: B,
    layout: Layout,
    rank: usize,
    out: ValueId,
) -> Result<()> {
    let v = e.lx.input(node, 0)?;
    let x = e.input(v, layout, rank)?;
    let y = e.output(out, layout)?;
    e.op(code, &[x], default_options(code), y);
    Ok(())
}

/// One broadcasting builtin on inputs 0 and 1, written to the output.
fn binary(
    e: &mut Emit,
    node: &Node,
    code: B,
    layout: Layout,
    rank: usize,
    out: ValueId,
) -> Result<()> {
    let a = e.lx.input(node, 0)?;
    let b = e.lx.input(node, 1)?;
    let a = e.input(a, layout, rank)?;
    let b = e.input(b, layout, rank)?;
    let y = e.output(out, layout)?;
    e.op(code, &[a, b], default_options(code), y);
    Ok(())
}

/// Round half to even (ROUND is missing from the reference resolver): adding
/// and subtracting 1.5 * 2^23 rounds a float32 of magnitude below 2^22 to an
/// integer with the hardware's ties-to-even; larger values already are integers.
fn round_half_even(e: &mut Emit, x: TensorId, y: TensorId) -> Result<()> {
    const MAGIC: f64 = 12_582_912.0; // 1.5 * 2^23
    const LIMIT: f64 = 4_194_304.0; // 2^22
    let magic = e.scalar(MAGIC, DType::F32)?;
    let limit = e.scalar(LIMIT, DType::F32)?;
    let up = e.binary(B::ADD, x, magic, None);
    let rounded = e.binary(B::SUB, up, magic, None);
    let abs = e.unary(B::ABS, x, None);
    let small = e.compare(B::LESS, abs, limit, None);
    e.select(small, rounded, x, Some(y));
    Ok(())
}

/// `pos_scale * relu(x) + neg_scale * (exp(min(x, 0) / inner) - 1)`: ELU
/// (ELU is missing from the reference resolver), SELU and CELU.
fn elu_like(
    e: &mut Emit,
    x: TensorId,
    pos_scale: f64,
    neg_scale: f64,
    inner: Option<f64>,
    y: TensorId,
) -> Result<()> {
    let zero = e.scalar(0.0, DType::F32)?;
    let one = e.scalar(1.0, DType::F32)?;
    let neg = e.binary(B::MINIMUM, x, zero, None);
    let neg = match inner {
        Some(d) if d != 1.0 => {
            let d = e.scalar(d, DType::F32)?;
            e.binary(B::DIV, neg, d, None)
        }
        _ => neg,
    };
    let exp = e.unary(B::EXP, neg, None);
    let mut neg_part = e.binary(B::SUB, exp, one, None);
    if neg_scale != 1.0 {
        let s = e.scalar(neg_scale, DType::F32)?;
        neg_part = e.binary(B::MUL, neg_part, s, None);
    }
    let mut pos_part = e.unary(B::RELU, x, None);
    if pos_scale != 1.0 {
        let s = e.scalar(pos_scale, DType::F32)?;
        pos_part = e.binary(B::MUL, pos_part, s, None);
    }
    e.binary(B::ADD, pos_part, neg_part, Some(y));
    Ok(())
}

/// `relu(x) + log(1 + exp(-|x|))`, which does not overflow for large x.
fn softplus(e: &mut Emit, x: TensorId, out: Option<TensorId>) -> Result<TensorId> {
    let one = e.scalar(1.0, DType::F32)?;
    let abs = e.unary(B::ABS, x, None);
    let neg = e.unary(B::NEG, abs, None);
    let exp = e.unary(B::EXP, neg, None);
    let sum = e.binary(B::ADD, exp, one, None);
    let log = e.unary(B::LOG, sum, None);
    let relu = e.unary(B::RELU, x, None);
    Ok(e.binary(B::ADD, relu, log, out))
}

/// Clip: RELU, RELU6 or RELU_N1_TO_1 for those constant float bounds, else
/// MAXIMUM with the lower bound then MINIMUM with the upper one (so min > max
/// gives max, as ONNX says).
fn clip(e: &mut Emit, node: &Node, layout: Layout, rank: usize, out: ValueId) -> Result<()> {
    let dtype = e.lx.dtype(out)?;
    let widened = e.widen.is_some();
    let bound = |e: &Emit, i: usize| -> Result<Option<f64>> {
        match node.input(i) {
            Some(v) => Ok(e.lx.constant(v)?.and_then(|t| {
                let values = t.to_f64_vec();
                (values.len() == 1).then(|| values[0])
            })),
            None => Ok(None),
        }
    };
    let lo = bound(e, 1)?;
    let hi = bound(e, 2)?;
    let x_value = e.lx.input(node, 0)?;
    let x = e.input(x_value, layout, rank)?;
    if dtype == DType::F32 && !widened {
        let relu = match (node.input(1).map(|_| lo), node.input(2).map(|_| hi)) {
            (Some(Some(0.0)), None) => Some(B::RELU),
            (Some(Some(0.0)), Some(Some(6.0))) => Some(B::RELU6),
            (Some(Some(-1.0)), Some(Some(1.0))) => Some(B::RELU_N1_TO_1),
            (Some(Some(0.0)), Some(Some(1.0))) => Some(B::RELU_0_TO_1),
            _ => None,
        };
        if let Some(code) = relu {
            let y = e.output(out, layout)?;
            e.op(code, &[x], tfl::BuiltinOptionsT::NONE, y);
            return Ok(());
        }
    }
    let y = e.output(out, layout)?;
    let lo = match node.input(1) {
        Some(v) => Some(e.input(v, layout, rank)?),
        None => None,
    };
    let hi = match node.input(2) {
        Some(v) => Some(e.input(v, layout, rank)?),
        None => None,
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) => {
            let m = e.binary(B::MAXIMUM, x, lo, None);
            e.binary(B::MINIMUM, m, hi, Some(y));
        }
        (Some(lo), None) => {
            e.binary(B::MAXIMUM, x, lo, Some(y));
        }
        (None, Some(hi)) => {
            e.binary(B::MINIMUM, x, hi, Some(y));
        }
        (None, None) => return Err(e.lx.error("Clip without bounds is lowered as its input")),
    }
    Ok(())
}

/// Option tables of the ops that have parameters (all defaults: no fused activation).
pub(super) fn default_options(code: B) -> tfl::BuiltinOptionsT {
    use tfl::BuiltinOptionsT as O;
    match code {
        B::ADD => O::AddOptions(Box::default()),
        B::SUB => O::SubOptions(Box::default()),
        B::MUL => O::MulOptions(Box::default()),
        B::DIV => O::DivOptions(Box::default()),
        _ => O::NONE,
    }
}

/// Numpy broadcasting of two stored shapes.
pub(super) fn broadcast_shape(a: &[i32], b: &[i32]) -> Vec<i32> {
    let n = a.len().max(b.len());
    let at = |s: &[i32], i: usize| {
        if i + s.len() >= n {
            s[i + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|i| {
            let (da, db) = (at(a, i), at(b, i));
            if da == 1 { db } else { da }
        })
        .collect()
}

/// Emits the operators of one node: intermediates are new tensors named
/// after the node, the last operator writes the node's output.
pub(super) struct Emit<'a, 'g> {
    pub lx: &'a mut Lowerer<'g>,
    pub hint: String,
    /// Node inputs and outputs of the first type compute in the second
    /// (a type the kernels lack, widened): [`Emit::input`] casts up,
    /// [`Emit::output`] and [`Emit::finish`] cast the result back.
    pub widen: Option<(tfl::TensorType, tfl::TensorType)>,
    /// (computed, final) outputs waiting for their cast back.
    pending: Vec<(TensorId, TensorId)>,
}

impl<'a, 'g> Emit<'a, 'g> {
    pub fn new(lx: &'a mut Lowerer<'g>, hint: &str) -> Emit<'a, 'g> {
        Emit {
            lx,
            hint: hint.to_string(),
            widen: None,
            pending: Vec::new(),
        }
    }
}

impl Emit<'_, '_> {
    /// Node input `v` for an op of `rank` in `layout`, widened when asked.
    pub fn input(&mut self, v: ValueId, layout: Layout, rank: usize) -> Result<TensorId> {
        let t = self.lx.broadcast_operand(v, layout, rank)?;
        Ok(match self.widen {
            Some((from, to)) if self.tensor_dtype(t) == from => self.cast(t, to, None),
            _ => t,
        })
    }

    /// The tensor to write node output `v` to: its own, or a widened one
    /// that [`Emit::finish`] casts into it.
    pub fn output(&mut self, v: ValueId, layout: Layout) -> Result<TensorId> {
        let y = self.lx.define(v, layout)?;
        match self.widen {
            Some((from, to)) if self.tensor_dtype(y) == from => {
                let shape = self.tensor_shape(y);
                let wide = self.temp(to, shape);
                self.pending.push((wide, y));
                Ok(wide)
            }
            _ => Ok(y),
        }
    }

    /// Casts widened results back to the node's outputs.
    pub fn finish(&mut self) {
        for (wide, y) in std::mem::take(&mut self.pending) {
            let to = self.tensor_dtype(y);
            self.cast(wide, to, Some(y));
        }
    }

    pub fn tensor_dtype(&self, t: TensorId) -> tfl::TensorType {
        self.lx.model.tensor(t).dtype
    }

    pub fn tensor_shape(&self, t: TensorId) -> Vec<i32> {
        self.lx.model.tensor(t).shape.clone()
    }

    /// A new intermediate tensor.
    pub fn temp(&mut self, dtype: tfl::TensorType, shape: Vec<i32>) -> TensorId {
        let hint = format!("{}_part", self.hint);
        self.lx.temp(&hint, dtype, shape)
    }

    pub fn op(
        &mut self,
        code: B,
        inputs: &[TensorId],
        options: tfl::BuiltinOptionsT,
        out: TensorId,
    ) {
        self.lx.op(
            code,
            inputs.iter().map(|&t| Some(t)).collect(),
            vec![out],
            options,
        );
    }

    /// `code(x)` into `out`, or into a new tensor like `x`.
    pub fn unary(&mut self, code: B, x: TensorId, out: Option<TensorId>) -> TensorId {
        let out = out.unwrap_or_else(|| {
            let (dtype, shape) = (self.tensor_dtype(x), self.tensor_shape(x));
            self.temp(dtype, shape)
        });
        self.op(code, &[x], default_options(code), out);
        out
    }

    /// `code(a, b)` into `out`, or into a new tensor of `a`'s type and the broadcast shape.
    pub fn binary(&mut self, code: B, a: TensorId, b: TensorId, out: Option<TensorId>) -> TensorId {
        let dtype = self.tensor_dtype(a);
        self.binary_to(code, a, b, dtype, out)
    }

    /// A comparison: a bool result.
    pub fn compare(
        &mut self,
        code: B,
        a: TensorId,
        b: TensorId,
        out: Option<TensorId>,
    ) -> TensorId {
        self.binary_to(code, a, b, tfl::TensorType::BOOL, out)
    }

    fn binary_to(
        &mut self,
        code: B,
        a: TensorId,
        b: TensorId,
        dtype: tfl::TensorType,
        out: Option<TensorId>,
    ) -> TensorId {
        let out = out.unwrap_or_else(|| {
            let shape = broadcast_shape(&self.tensor_shape(a), &self.tensor_shape(b));
            self.temp(dtype, shape)
        });
        self.op(code, &[a, b], default_options(code), out);
        out
    }

    /// SELECT_V2: `c ? a : b`, broadcasting all three.
    pub fn select(
        &mut self,
        c: TensorId,
        a: TensorId,
        b: TensorId,
        out: Option<TensorId>,
    ) -> TensorId {
        let out = out.unwrap_or_else(|| {
            let ab = broadcast_shape(&self.tensor_shape(a), &self.tensor_shape(b));
            let shape = broadcast_shape(&self.tensor_shape(c), &ab);
            let dtype = self.tensor_dtype(a);
            self.temp(dtype, shape)
        });
        self.op(B::SELECT_V2, &[c, a, b], tfl::BuiltinOptionsT::NONE, out);
        out
    }

    /// CAST of `x` to `to`.
    pub fn cast(&mut self, x: TensorId, to: tfl::TensorType, out: Option<TensorId>) -> TensorId {
        let out = out.unwrap_or_else(|| {
            let shape = self.tensor_shape(x);
            self.temp(to, shape)
        });
        let options = tfl::BuiltinOptionsT::CastOptions(Box::new(tfl::CastOptionsT {
            in_data_type: self.tensor_dtype(x),
            out_data_type: to,
        }));
        self.op(B::CAST, &[x], options, out);
        out
    }

    /// A rank-0 integer constant of `like`'s type holding the low bits of `bits`.
    pub fn scalar_bits(&mut self, bits: u64, like: TensorId) -> Result<TensorId> {
        use tfl::TensorType as T;
        let dtype = self.tensor_dtype(like);
        let t = match dtype {
            T::INT8 => Tensor::I8(ArrayD::from_elem(IxDyn(&[]), bits as i8)),
            T::UINT8 => Tensor::U8(ArrayD::from_elem(IxDyn(&[]), bits as u8)),
            T::INT16 => Tensor::I16(ArrayD::from_elem(IxDyn(&[]), bits as i16)),
            T::UINT16 => Tensor::U16(ArrayD::from_elem(IxDyn(&[]), bits as u16)),
            T::INT32 => Tensor::I32(ArrayD::from_elem(IxDyn(&[]), bits as i32)),
            T::UINT32 => Tensor::U32(ArrayD::from_elem(IxDyn(&[]), bits as u32)),
            T::INT64 => Tensor::I64(ArrayD::from_elem(IxDyn(&[]), bits as i64)),
            other => {
                return Err(self
                    .lx
                    .error(format!("no integer constant of type {other:?}")));
            }
        };
        let hint = format!("{}_const", self.hint);
        self.lx.const_tensor(&hint, &t)
    }

    /// A rank-0 constant of `dtype`.
    pub fn scalar(&mut self, value: f64, dtype: DType) -> Result<TensorId> {
        let t = Tensor::F64(ArrayD::from_elem(IxDyn(&[]), value))
            .cast(dtype)
            .map_err(|err| self.lx.error(err.to_string()))?;
        let hint = format!("{}_const", self.hint);
        self.lx.const_tensor(&hint, &t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::lower::testing::{codes, f32_data, lowered_in as lowered};
    use crate::formats::tflite::lower::{IoLayout, LowerOptions, support};
    use crate::ir::text::parse;

    fn support_of(text: &str) -> Support {
        let g = parse(text).unwrap();
        let (id, _) = g.nodes().next().unwrap();
        support(&g, id)
    }

    #[test]
    fn broadcast_constant_is_permuted_to_channels_last() {
        let m = lowered(
            "graph g {
  input x: f32[1,3,2,2]
  weight b: f32[3,1,1] = [1,2,3]
  node add: y: f32[1,3,2,2] = Add (x, b)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::ADD]);
        let add = &m.operators[0];
        let b = add.inputs[1].unwrap();
        assert_eq!(m.tensor(b).shape, vec![1, 1, 1, 3]);
        assert_eq!(f32_data(&m, b), vec![1.0, 2.0, 3.0]);
        assert_eq!(m.tensor(add.outputs[0]).shape, vec![1, 2, 2, 3]);
    }

    #[test]
    fn squeeze_excite_mul_stays_channels_last() {
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  input s: f32[1,8,1,1]
  node hs: h: f32[1,8,4,4] = HardSwish (x)
  node sig: g: f32[1,8,1,1] = Sigmoid (s)
  node mul: y: f32[1,8,4,4] = Mul (h, g)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::HARD_SWISH, B::LOGISTIC, B::MUL]);
        let mul = &m.operators[2];
        assert_eq!(m.tensor(mul.inputs[1].unwrap()).shape, vec![1, 1, 1, 8]);
        assert_eq!(m.tensor(mul.outputs[0]).shape, vec![1, 4, 4, 8]);
    }

    #[test]
    fn lower_rank_operand_gets_leading_ones_in_channels_last() {
        let m = lowered(
            "graph g {
  input x: f32[1,3,2,2]
  input b: f32[2]
  node add: y: f32[1,3,2,2] = Add (x, b)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        // b [2] is x's last source axis (W): [1,1,1,2] NCHW, [1,1,2,1] NHWC.
        assert_eq!(codes(&m), vec![B::RESHAPE, B::ADD]);
        let add = &m.operators[1];
        assert_eq!(m.tensor(add.inputs[1].unwrap()).shape, vec![1, 1, 2, 1]);
    }

    #[test]
    fn clip_picks_relu_variants_and_falls_back_to_max_min() {
        let relu6 = lowered(
            "graph g {
  input x: f32[2,3]
  weight lo: f32[] = [0]
  weight hi: f32[] = [6]
  node c: y: f32[2,3] = Clip (x, lo, hi)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&relu6), vec![B::RELU6]);
        // Only used constants reach the model.
        assert!(relu6.tensors.iter().all(|t| t.data.is_none()));
        let general = lowered(
            "graph g {
  input x: i8[2,3]
  weight lo: i8[] = [-2]
  weight hi: i8[] = [5]
  node c: y: i8[2,3] = Clip (x, lo, hi)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&general), vec![B::MAXIMUM, B::MINIMUM]);
        let only_max = lowered(
            "graph g {
  input x: f32[2,3]
  input hi: f32[]
  node c: y: f32[2,3] = Clip (x, _, hi)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&only_max), vec![B::MINIMUM]);
    }

    #[test]
    fn builtins_missing_from_the_reference_resolver_are_decomposed() {
        let m = lowered(
            "graph g {
  input x: f32[4]
  node r: a: f32[4] = Round (x)
  node c: b: f32[4] = Ceil (x)
  node e: y: f32[4] = Elu {\"alpha\":0.5} (x)
  output a, b, y
}
",
            IoLayout::Source,
        );
        let c = codes(&m);
        for missing in [B::ROUND, B::CEIL, B::ELU] {
            assert!(!c.contains(&missing), "{c:?}");
        }
        assert_eq!(
            c[..5],
            [B::ADD, B::SUB, B::ABS, B::LESS, B::SELECT_V2],
            "round: {c:?}"
        );
        assert_eq!(c[5..8], [B::NEG, B::FLOOR, B::NEG], "ceil: {c:?}");
        assert_eq!(
            c[8..],
            [B::MINIMUM, B::EXP, B::SUB, B::MUL, B::RELU, B::ADD],
            "elu: {c:?}"
        );
        // The last operator of each node writes the node's output.
        let outputs: Vec<TensorId> = m.outputs.clone();
        assert_eq!(m.operators[4].outputs[0], outputs[0]);
        assert_eq!(m.operators[7].outputs[0], outputs[1]);
        assert_eq!(m.operators[13].outputs[0], outputs[2]);
    }

    #[test]
    fn activations_with_options() {
        let m = lowered(
            "graph g {
  input x: f32[4]
  node l: a: f32[4] = LeakyRelu {\"alpha\":0.25} (x)
  node g: b: f32[4] = Gelu {\"approximate\":\"Tanh\"} (x)
  output a, b
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::LEAKY_RELU, B::GELU]);
        match &m.operators[0].options {
            tfl::BuiltinOptionsT::LeakyReluOptions(o) => assert_eq!(o.alpha, 0.25),
            other => panic!("{other:?}"),
        }
        match &m.operators[1].options {
            tfl::BuiltinOptionsT::GeluOptions(o) => assert!(o.approximate),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nary_mean_is_a_chain_then_a_division() {
        let m = lowered(
            "graph g {
  input a: f32[2,3]
  input b: f32[3]
  input c: f32[2,1]
  node m: y: f32[2,3] = Mean (a, b, c)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::ADD, B::ADD, B::DIV]);
        let div = &m.operators[2];
        assert_eq!(f32_data(&m, div.inputs[1].unwrap()), vec![3.0]);
        assert_eq!(m.tensor(m.operators[0].outputs[0]).shape, vec![2, 3]);
    }

    #[test]
    fn pow_casts_an_integer_exponent_to_the_base_type() {
        let m = lowered(
            "graph g {
  input x: f32[3]
  input p: i64[3]
  node p: y: f32[3] = Pow (x, p)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::CAST, B::POW]);
        let cast = &m.operators[0];
        assert_eq!(m.tensor(cast.outputs[0]).dtype, tfl::TensorType::FLOAT32);
    }

    #[test]
    fn fmod_is_sign_times_floor_mod_of_magnitudes() {
        let m = lowered(
            "graph g {
  input a: i32[3]
  input b: i32[3]
  node m: y: i32[3] = Mod {\"fmod\":true} (a, b)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(
            codes(&m),
            vec![B::ABS, B::ABS, B::FLOOR_MOD, B::SIGN, B::MUL]
        );
    }

    #[test]
    fn comparisons_logic_and_select() {
        let m = lowered(
            "graph g {
  input a: f32[2,3]
  input b: f32[3]
  node lt: c: bool[2,3] = Less (a, b)
  node nan: n: bool[2,3] = IsNaN (a)
  node x: d: bool[2,3] = Xor (c, n)
  node w: y: f32[2,3] = Where (d, a, b)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(
            codes(&m),
            vec![B::LESS, B::NOT_EQUAL, B::NOT_EQUAL, B::SELECT_V2]
        );
        assert_eq!(
            m.tensor(m.operators[0].outputs[0]).dtype,
            tfl::TensorType::BOOL
        );
    }

    #[test]
    fn identity_cases_emit_no_operator() {
        let m = lowered(
            "graph g {
  input x: f32[2]
  node c: a: f32[2] = Cast {\"to\":\"f32\",\"saturate\":true} (x)
  node s: b: f32[2] = Sum (a)
  node r: y: f32[2] = Relu (b)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::RELU]);
        assert_eq!(m.operators[0].inputs[0], Some(m.inputs[0]));
    }

    #[test]
    fn support_names_the_dtype_the_kernel_lacks() {
        let add_u64 = support_of(
            "graph g {
  input a: u64[2]
  input b: u64[2]
  node add: y: u64[2] = Add (a, b)
  output y
}
",
        );
        match add_u64 {
            Support::Unsupported(why) => assert!(why.contains("u64"), "{why}"),
            other => panic!("{other:?}"),
        }
        let exp_f64 = support_of(
            "graph g {
  input a: f64[2]
  node e: y: f64[2] = Exp (a)
  output y
}
",
        );
        assert!(matches!(exp_f64, Support::Unsupported(_)));
        let erf = support_of(
            "graph g {
  input a: f32[2]
  node e: y: f32[2] = Erf (a)
  output y
}
",
        );
        assert!(matches!(erf, Support::Unsupported(_)));
        let pow_int_float = support_of(
            "graph g {
  input a: i32[2]
  input b: f32[2]
  node p: y: i32[2] = Pow (a, b)
  output y
}
",
        );
        assert!(matches!(pow_int_float, Support::Unsupported(_)));
        let div_u32 = support_of(
            "graph g {
  input a: u32[2]
  input b: u32[2]
  node d: y: u32[2] = Div (a, b)
  output y
}
",
        );
        assert!(matches!(div_u32, Support::Unsupported(_)));
    }

    #[test]
    fn types_the_kernels_lack_compute_widened() {
        let m = lowered(
            "graph g {
  input a: u8[2,3]
  input b: u8[3]
  node add: y: u8[2,3] = Add (a, b)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::CAST, B::CAST, B::ADD, B::CAST]);
        let add = &m.operators[2];
        assert_eq!(m.tensor(add.outputs[0]).dtype, tfl::TensorType::INT32);
        assert_eq!(m.operators[3].outputs[0], m.outputs[0]);
        assert_eq!(m.tensor(m.outputs[0]).dtype, tfl::TensorType::UINT8);
        let m = lowered(
            "graph g {
  input a: f16[4]
  node s: y: f16[4] = Selu {\"alpha\":1.5,\"gamma\":1.1} (a)
  node n: z: bool[4] = IsNaN (y)
  output z
}
",
            IoLayout::Source,
        );
        let c = codes(&m);
        assert_eq!((c[0], c[c.len() - 3]), (B::CAST, B::CAST), "{c:?}");
        assert_eq!(c[c.len() - 1], B::NOT_EQUAL, "{c:?}");
        // Every constant of the widened computation is float32.
        assert!(
            m.tensors
                .iter()
                .filter(|t| t.data.is_some())
                .all(|t| t.dtype == tfl::TensorType::FLOAT32)
        );
    }

    #[test]
    fn trigonometry_and_bit_operations_from_builtins() {
        let m = lowered(
            "graph g {
  input x: f32[4]
  node a: y: f32[4] = Atan (x)
  output y
}
",
            IoLayout::Source,
        );
        // ATAN2 does not broadcast, so the ones are x^0.
        assert_eq!(codes(&m), vec![B::POW, B::ATAN2]);
        let m = lowered(
            "graph g {
  input x: i8[4]
  input s: i8[4]
  node r: y: i8[4] = BitShift {\"direction\":\"Right\"} (x, s)
  node l: z: i8[4] = BitShift {\"direction\":\"Left\"} (x, s)
  node n: w: i8[4] = BitwiseNot (x)
  output y, z, w
}
",
            IoLayout::Source,
        );
        let c = codes(&m);
        assert_eq!(
            c[..4],
            [B::CAST, B::LESS, B::SELECT_V2, B::RIGHT_SHIFT],
            "{c:?}"
        );
        assert_eq!(*c.last().unwrap(), B::BITWISE_XOR);
        let not = m.operators.last().unwrap();
        let ones = m.tensor(not.inputs[1].unwrap()).data.as_ref().unwrap();
        assert_eq!(ones.as_ref(), [0xff]);
    }

    #[test]
    fn sums_fed_by_infinite_constants_keep_their_infinities() {
        // The IR text has no infinities: the mask's -1 becomes -inf below.
        let mut g = parse(
            "graph g {
  input x: f32[2,3]
  input c: bool[2,3]
  weight ninf: f32[] = [-1]
  weight zero: f32[] = [0]
  node w: mask: f32[2,3] = Where (c, ninf, zero)
  node a: y: f32[2,3] = Add (x, mask)
  node b: z: f32[2,3] = Add (x, x)
  output y, z
}
",
        )
        .unwrap();
        let ninf = g.values().find(|(_, v)| v.name == "ninf").unwrap().0;
        let crate::ir::ValueDef::Weight(w) = g.value(ninf).def else {
            panic!("ninf is a weight")
        };
        g.weights.get_mut(w).data = bytes::Bytes::copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
        let m = crate::formats::tflite::lower::lower(&g, &LowerOptions::default()).unwrap();
        assert_eq!(
            codes(&m),
            vec![
                B::SELECT_V2,
                B::ADD,
                B::GREATER_EQUAL,
                B::LESS_EQUAL,
                B::SELECT_V2,
                B::SELECT_V2,
                B::ADD
            ]
        );
    }

    #[test]
    fn a_square_of_a_difference_is_squared_difference() {
        let m = lowered(
            "graph g {
  input a: f32[1,3,2,2]
  weight b: f32[3,1,1] = [1,2,3]
  node sub: d: f32[1,3,2,2] = Sub (a, b)
  node sq: y: f32[1,3,2,2] = Mul (d, d)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        // The Sub has no other consumer: it emits nothing.
        assert_eq!(codes(&m), vec![B::SQUARED_DIFFERENCE]);
        let op = &m.operators[0];
        assert_eq!(m.tensor(op.inputs[1].unwrap()).shape, vec![1, 1, 1, 3]);
        assert_eq!(m.tensor(op.outputs[0]).shape, vec![1, 2, 2, 3]);
        assert_eq!(m.operators[0].source_node, "sq");

        let pow = |exponent: &str| {
            let m = lowered(
                &format!(
                    "graph g {{
  input a: f32[4]
  input b: f32[4]
  weight p: f32[] = [{exponent}]
  node sub: d: f32[4] = Sub (a, b)
  node pow: y: f32[4] = Pow (d, p)
  output y
}}
"
                ),
                IoLayout::Source,
            );
            codes(&m)
        };
        assert_eq!(pow("2"), vec![B::SQUARED_DIFFERENCE]);
        assert_eq!(pow("3"), vec![B::SUB, B::POW]);
    }

    #[test]
    fn a_shared_difference_is_still_lowered_for_its_other_consumers() {
        // Layer normalization's decomposition: (x - m)^2 feeds the variance,
        // (x - m) / sqrt(v) the result.
        let m = lowered(
            "graph g {
  input x: f32[2,4]
  input m: f32[2,1]
  input v: f32[2,1]
  node centered: d: f32[2,4] = Sub (x, m)
  node square: sq: f32[2,4] = Mul (d, d)
  node std: s: f32[2,1] = Sqrt (v)
  node normalized: y: f32[2,4] = Div (d, s)
  output sq
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(
            codes(&m),
            vec![B::SUB, B::SQUARED_DIFFERENCE, B::RSQRT, B::MUL]
        );
        let sd = &m.operators[1];
        assert_eq!(sd.inputs, m.operators[0].inputs);
        let (rsqrt, mul) = (&m.operators[2], &m.operators[3]);
        assert_eq!(rsqrt.source_node, "normalized");
        assert_eq!(
            mul.inputs,
            vec![
                m.operators[0].outputs.first().copied(),
                Some(rsqrt.outputs[0])
            ]
        );
    }

    #[test]
    fn reciprocal_square_roots_are_rsqrt_unless_the_sqrt_is_shared() {
        let m = lowered(
            "graph g {
  input x: f32[3]
  node root: s: f32[3] = Sqrt (x)
  node inv: y: f32[3] = Reciprocal (s)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::RSQRT]);
        // The SQRT would stay for the other consumer: keep the Div.
        let m = lowered(
            "graph g {
  input a: f32[3]
  input x: f32[3]
  node root: s: f32[3] = Sqrt (x)
  node div: y: f32[3] = Div (a, s)
  node neg: z: f32[3] = Neg (s)
  output y
  output z
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::SQRT, B::DIV, B::NEG]);
        // A graph output is no intermediate either.
        let m = lowered(
            "graph g {
  input x: f32[3]
  node root: s: f32[3] = Sqrt (x)
  node inv: y: f32[3] = Reciprocal (s)
  output s
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::SQRT, B::POW]);
    }
}
