//! Lowering of the reduce family (see [`super::support::family`]):
//! reductions, arg-reductions, softmax and cumulative sums.
//!
//! Reductions work in the layout their input has, with the axes remapped;
//! without keepdims the output keeps the input's layout when the remaining
//! axes allow it, else the reduction runs in source layout. Softmax
//! normalizes over the last stored axis only, so it runs in whichever
//! layout puts its axis last, or transposes around it.

use ndarray::{ArrayD, IxDyn};

use crate::formats::target::Support;
use crate::formats::tflite::model::TensorId;
use crate::formats::tflite::schema as tfl;
use crate::ir::error::Result;
use crate::ir::ops::{ReduceAttrs, SoftmaxAttrs};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op, ValueId};

use super::elementwise::{
    Emit, INFINITY_SEARCH_DEPTH, MAX_RANK, max_rank, may_carry_infinity, unclamp,
};
use super::support::dtypes_in;
use super::{Layout, Lowerer};

use tfl::BuiltinOperator as B;

/// float16 computes in float32 and is cast back.
const F32_OR_F16: &[DType] = &[DType::F32, DType::F16];
/// TFLite's TRANSPOSE takes at most this many dimensions.
const MAX_TRANSPOSE_RANK: usize = 6;
const SUM_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64, DType::F16];
/// REDUCE_MAX/MIN compare raw values; 8/16-bit types need equal (absent)
/// quantization on input and output, which holds.
const MINMAX_TYPES: &[DType] = &[
    DType::F32,
    DType::I32,
    DType::I64,
    DType::I16,
    DType::I8,
    DType::U8,
    DType::Bool,
    DType::F16,
];
const ARG_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I8, DType::U8, DType::F16];
const CUMSUM_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I64];

pub fn support(g: &Graph, node: &Node) -> Support {
    match check(g, node) {
        Ok(s) => s,
        Err(why) => Support::Unsupported(why),
    }
}

fn rank_of(g: &Graph, v: ValueId) -> Result<usize, String> {
    g.fact(v)
        .shape
        .rank()
        .ok_or_else(|| format!("value '{}' has no known rank", g.value(v).name))
}

fn check(g: &Graph, node: &Node) -> Result<Support, String> {
    let x = node.input(0).ok_or("input 0 is required")?;
    let rank = rank_of(g, x)?;
    if max_rank(g, node) > MAX_RANK {
        return Err(format!(
            "TFLite's kernels take at most {MAX_RANK} dimensions"
        ));
    }
    match &node.op {
        Op::ReduceMean(_)
        | Op::ReduceSum(_)
        | Op::ReduceMax(_)
        | Op::ReduceMin(_)
        | Op::ReduceProd(_)
        | Op::ReduceL1(_)
        | Op::ReduceL2(_)
        | Op::ReduceLogSum(_)
        | Op::ReduceLogSumExp(_)
        | Op::ReduceSumSquare(_) => {
            let (Op::ReduceMean(a)
            | Op::ReduceSum(a)
            | Op::ReduceMax(a)
            | Op::ReduceMin(a)
            | Op::ReduceProd(a)
            | Op::ReduceL1(a)
            | Op::ReduceL2(a)
            | Op::ReduceLogSum(a)
            | Op::ReduceLogSumExp(a)
            | Op::ReduceSumSquare(a)) = &node.op
            else {
                unreachable!("matched above")
            };
            if let Axes::Runtime(v) = resolve_axes(g, node, a)? {
                if matches!(node.op, Op::ReduceLogSumExp(_)) {
                    return Err("the axes must be a constant (or follow from the shapes) for the TFLite target's ReduceLogSumExp".into());
                }
                match g.fact(v).dtype {
                    Some(DType::I32 | DType::I64) => {}
                    other => return Err(format!("axes of type {other:?}")),
                }
            }
            let allowed: &[DType] = match node.op {
                Op::ReduceSum(_) | Op::ReduceProd(_) | Op::ReduceSumSquare(_) => SUM_TYPES,
                Op::ReduceMax(_) | Op::ReduceMin(_) => MINMAX_TYPES,
                Op::ReduceL1(_) => &[DType::F32, DType::I32, DType::F16],
                _ => F32_OR_F16,
            };
            data_dtypes(g, node, allowed)?;
            Ok(Support::Native)
        }
        Op::ArgMax(a) | Op::ArgMin(a) => {
            if rank == 0 {
                return Err("arg-reduction of a scalar".into());
            }
            normalize_axis(a.axis, rank)?;
            let input_dtype = g.fact(x).dtype;
            if let Some(d) = input_dtype
                && !ARG_TYPES.contains(&d)
            {
                return Err(format!(
                    "input is {d}; TFLite's {} takes {}",
                    if matches!(node.op, Op::ArgMax(_)) {
                        "ARG_MAX"
                    } else {
                        "ARG_MIN"
                    },
                    ARG_TYPES
                        .iter()
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if g.fact(node.outputs[0]).dtype != Some(DType::I64) {
                return Err("the output must be int64".into());
            }
            Ok(Support::Native)
        }
        Op::Softmax(a) | Op::LogSoftmax(a) | Op::Hardmax(a) => {
            if rank == 0 {
                return Err("softmax of a scalar".into());
            }
            let axis = normalize_axis(a.axis, rank)?;
            dtypes_in(g, node, F32_OR_F16)?;
            if rank > MAX_TRANSPOSE_RANK && axis != rank - 1 && !a.coerce_2d {
                return Err(format!(
                    "softmax over axis {axis} of rank {rank}: TFLite normalizes the last axis and TRANSPOSE takes at most {MAX_TRANSPOSE_RANK} dimensions"
                ));
            }
            if a.coerce_2d && axis != rank - 1 {
                return Ok(Support::AfterLegalize(
                    "opset < 13 softmax over several axes: softmax_flatten reshapes it to 2-D"
                        .into(),
                ));
            }
            Ok(Support::Native)
        }
        Op::CumSum(_) => {
            if rank == 0 {
                return Err("cumulative sum of a scalar".into());
            }
            if let CumSumAxis::Runtime(v) = cumsum_axis(g, node)? {
                match g.fact(v).dtype {
                    Some(DType::I32 | DType::I64) => {}
                    other => return Err(format!("axis of type {other:?}")),
                }
            }
            data_dtypes(g, node, CUMSUM_TYPES)?;
            Ok(Support::Native)
        }
        other => Err(format!(
            "{} is not a reduction of the TFLite lowering",
            other.name()
        )),
    }
}

/// Input 0 and the output in `allowed` (axes are checked on their own).
fn data_dtypes(g: &Graph, node: &Node, allowed: &[DType]) -> Result<(), String> {
    for v in [node.inputs[0], Some(node.outputs[0])]
        .into_iter()
        .flatten()
    {
        if let Some(d) = g.fact(v).dtype
            && !allowed.contains(&d)
        {
            return Err(format!(
                "value '{}' is {d}; TFLite's lowering of {} takes {}",
                g.value(v).name,
                node.op.name(),
                allowed
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

enum CumSumAxis {
    Static(usize),
    Runtime(ValueId),
}

/// CumSum's axis: constant, implied by a rank-1 input, or given at run time.
fn cumsum_axis(g: &Graph, node: &Node) -> Result<CumSumAxis, String> {
    let x = node.input(0).ok_or("input 0 is required")?;
    let rank = rank_of(g, x)?;
    let axis = node.input(1).ok_or("CumSum needs its axis")?;
    match g.weight_of(axis) {
        Some(w) => {
            let values = Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                .and_then(|t| t.to_i64_vec())
                .map_err(|e| format!("axis: {e}"))?;
            match values[..] {
                [a] => Ok(CumSumAxis::Static(normalize_axis(a, rank)?)),
                _ => Err("the axis must hold one value".into()),
            }
        }
        None if rank == 1 => Ok(CumSumAxis::Static(0)),
        None => Ok(CumSumAxis::Runtime(axis)),
    }
}

/// The axes a reduction runs over.
enum Axes {
    /// Known at conversion (source axes, sorted, unique); empty is a no-op.
    Static(Vec<usize>),
    /// Given at run time by this value: only when the shapes cannot tell.
    Runtime(ValueId),
}

fn fixed_shape(g: &Graph, v: ValueId) -> Result<Vec<usize>, String> {
    g.fact(v)
        .shape
        .as_fixed()
        .ok_or_else(|| format!("value '{}' has no static shape", g.value(v).name))
}

/// The axes of a reduction: the constant axes input, else the only ones the
/// static input and output shapes allow (axes of size 1 reduce to the same
/// values either way), else the runtime input.
fn resolve_axes(g: &Graph, node: &Node, attrs: &ReduceAttrs) -> Result<Axes, String> {
    let x = node.input(0).ok_or("input 0 is required")?;
    let rank = rank_of(g, x)?;
    let listed = match node.input(1) {
        None => Some(Vec::new()),
        Some(v) => match g.weight_of(v) {
            Some(w) => Some(
                Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                    .and_then(|t| t.to_i64_vec())
                    .map_err(|e| format!("axes: {e}"))?,
            ),
            None if fixed_shape(g, v)?.contains(&0) => Some(Vec::new()),
            None => None,
        },
    };
    if let Some(listed) = listed {
        let mut axes = Vec::new();
        for a in listed {
            let a = normalize_axis(a, rank)?;
            if !axes.contains(&a) {
                axes.push(a);
            }
        }
        if axes.is_empty() && !attrs.noop_with_empty_axes {
            axes = (0..rank).collect();
        }
        axes.sort_unstable();
        return Ok(Axes::Static(axes));
    }
    let runtime = node.input(1).expect("checked above");
    let input = fixed_shape(g, x)?;
    let output = fixed_shape(g, node.outputs[0])?;
    Ok(match infer_axes(&input, &output, attrs.keepdims) {
        Some(axes) => Axes::Static(axes),
        None => Axes::Runtime(runtime),
    })
}

/// The reduced axes the shapes imply, when only one set of them fits.
fn infer_axes(input: &[usize], output: &[usize], keepdims: bool) -> Option<Vec<usize>> {
    if keepdims {
        if input.len() != output.len() {
            return None;
        }
        let mut axes: Vec<usize> = (0..input.len())
            .filter(|&i| input[i] != output[i])
            .collect();
        if axes.iter().any(|&i| output[i] != 1) {
            return None;
        }
        if axes.is_empty() {
            // Only size-1 axes were reduced: any one of them gives the same values.
            axes.push(input.iter().position(|&d| d == 1)?);
        }
        return Some(axes);
    }
    let k = input.len().checked_sub(output.len())?;
    if k == 0 || input.len() > 16 {
        return None;
    }
    let mut found: Option<Vec<usize>> = None;
    for mask in 0u32..(1 << input.len()) {
        if mask.count_ones() as usize != k {
            continue;
        }
        let kept: Vec<usize> = (0..input.len())
            .filter(|&i| mask & (1 << i) == 0)
            .map(|i| input[i])
            .collect();
        if kept == output {
            if found.is_some() {
                return None;
            }
            found = Some((0..input.len()).filter(|&i| mask & (1 << i) != 0).collect());
        }
    }
    found
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r.max(1)).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    match &node.op {
        Op::ReduceMean(a) => reduce(lx, node, a, B::MEAN),
        Op::ReduceSum(a) => reduce(lx, node, a, B::SUM),
        Op::ReduceMax(a) => reduce(lx, node, a, B::REDUCE_MAX),
        Op::ReduceMin(a) => reduce(lx, node, a, B::REDUCE_MIN),
        Op::ReduceProd(a) => reduce(lx, node, a, B::REDUCE_PROD),
        Op::ReduceL1(a)
        | Op::ReduceL2(a)
        | Op::ReduceLogSum(a)
        | Op::ReduceLogSumExp(a)
        | Op::ReduceSumSquare(a) => reduce(lx, node, a, B::SUM),
        Op::ArgMax(a) | Op::ArgMin(a) => {
            let code = if matches!(node.op, Op::ArgMax(_)) {
                B::ARG_MAX
            } else {
                B::ARG_MIN
            };
            arg_reduce(lx, node, code, a.axis, a.keepdims, a.select_last_index)
        }
        Op::Softmax(a) => softmax(lx, node, B::SOFTMAX, a),
        Op::LogSoftmax(a) => softmax(lx, node, B::LOG_SOFTMAX, a),
        Op::Hardmax(a) => hardmax(lx, node, a),
        Op::CumSum(a) => {
            let x = lx.input(node, 0)?;
            let rank = lx.rank(x)?;
            let axis = cumsum_axis(lx.g, node).map_err(|why| lx.error(why))?;
            let layout = match axis {
                CumSumAxis::Static(_) => lx.common_layout(&[x], rank),
                CumSumAxis::Runtime(_) => Layout::Source,
            };
            let xt = lx.operand(x, layout)?;
            let axis_t = match axis {
                CumSumAxis::Static(axis) => {
                    let stored = layout.stored_axis(axis, rank) as i32;
                    lx.const_i32_shaped(&format!("{}_axis", node.name), &[stored], &[])
                }
                CumSumAxis::Runtime(v) => {
                    let t = lx.operand(v, Layout::Source)?;
                    let mut e = Emit::new(lx, &node.name);
                    if e.tensor_dtype(t) == tfl::TensorType::INT32 {
                        t
                    } else {
                        e.cast(t, tfl::TensorType::INT32, None)
                    }
                }
            };
            let y = lx.define(node.outputs[0], layout)?;
            lx.op(
                B::CUMSUM,
                vec![Some(xt), Some(axis_t)],
                vec![y],
                tfl::BuiltinOptionsT::CumsumOptions(Box::new(tfl::CumsumOptionsT {
                    exclusive: a.exclusive,
                    reverse: a.reverse,
                })),
            );
            Ok(())
        }
        other => Err(lx.error(format!(
            "{} has no TFLite lowering in the reduce family",
            other.name()
        ))),
    }
}

fn axis_of(lx: &Lowerer, axis: i64, rank: usize) -> Result<usize> {
    normalize_axis(axis, rank).map_err(|why| lx.error(why))
}

/// The layout a reduction over `axes` reads `x` in, and the layout of its
/// output (the input's stored order without the reduced axes must be one).
fn reduce_layouts(
    lx: &Lowerer,
    x: ValueId,
    rank: usize,
    axes: &[usize],
    keepdims: bool,
) -> (Layout, Layout) {
    let layout = lx.common_layout(&[x], rank).effective(rank);
    if keepdims {
        return (layout, layout);
    }
    let kept: Vec<usize> = layout
        .perm(rank)
        .into_iter()
        .filter(|a| !axes.contains(a))
        .collect();
    let order: Vec<usize> = kept
        .iter()
        .map(|&a| kept.iter().filter(|&&b| b < a).count())
        .collect();
    let out_rank = order.len();
    if order == Layout::Source.perm(out_rank) {
        (layout, Layout::Source)
    } else if out_rank >= 3 && order == Layout::ChannelsLast.perm(out_rank) {
        (layout, Layout::ChannelsLast)
    } else {
        (Layout::Source, Layout::Source)
    }
}

/// The stored shape of a reduction's result.
fn reduced_shape(shape: &[i32], stored_axes: &[i32], keepdims: bool) -> Vec<i32> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if stored_axes.contains(&(i as i32)) {
                keepdims.then_some(1)
            } else {
                Some(d)
            }
        })
        .collect()
}

/// The axes operand of a reducer: stored axes, or a runtime int32 tensor.
#[derive(Clone, Copy)]
enum AxesOperand<'a> {
    Stored(&'a [i32]),
    Tensor(TensorId),
}

/// A reducer into `out`, or into a new tensor (its shape: `shape`, else
/// the input's with the stored axes reduced).
fn reducer(
    e: &mut Emit,
    code: B,
    x: TensorId,
    axes: AxesOperand,
    keepdims: bool,
    out: Option<TensorId>,
    shape: Option<Vec<i32>>,
) -> TensorId {
    let axes_t = match axes {
        AxesOperand::Stored(stored) => {
            let hint = format!("{}_axes", e.hint);
            e.lx.const_i32(&hint, stored)
        }
        AxesOperand::Tensor(t) => t,
    };
    let out = out.unwrap_or_else(|| {
        let shape = shape.unwrap_or_else(|| match axes {
            AxesOperand::Stored(stored) => reduced_shape(&e.tensor_shape(x), stored, keepdims),
            AxesOperand::Tensor(_) => e.tensor_shape(x),
        });
        let dtype = e.tensor_dtype(x);
        e.temp(dtype, shape)
    });
    e.op(
        code,
        &[x, axes_t],
        tfl::BuiltinOptionsT::ReducerOptions(Box::new(tfl::ReducerOptionsT {
            keep_dims: keepdims,
        })),
        out,
    );
    out
}

fn reduce(lx: &mut Lowerer, node: &Node, attrs: &ReduceAttrs, code: B) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let rank = lx.rank(x)?;
    let axes = resolve_axes(lx.g, node, attrs).map_err(|why| lx.error(why))?;
    let numel = |shape: Vec<usize>| shape.iter().product::<usize>();
    if numel(lx.shape(x)?) == 0 && numel(lx.shape(out)?) > 0 {
        // Only reducing an empty axis turns an empty input into a non-empty output.
        return empty_reduction(lx, node, out);
    }
    let keep = attrs.keepdims;
    let (in_layout, out_layout, stored) = match &axes {
        Axes::Static(axes) if axes.is_empty() || rank == 0 => {
            return no_reduction(lx, node, x, rank);
        }
        Axes::Static(axes) => {
            let (in_layout, out_layout) = reduce_layouts(lx, x, rank, axes, keep);
            let mut stored: Vec<i32> = axes
                .iter()
                .map(|&a| in_layout.stored_axis(a, rank) as i32)
                .collect();
            stored.sort_unstable();
            (in_layout, out_layout, stored)
        }
        Axes::Runtime(_) => (Layout::Source, Layout::Source, Vec::new()),
    };
    let runtime_axes = match axes {
        Axes::Runtime(v) => {
            let t = lx.operand(v, Layout::Source)?;
            Some(t)
        }
        Axes::Static(_) => None,
    };
    let mut e = widened_emit(lx, node)?;
    let xt = e.input(x, in_layout, rank)?;
    let y = e.output(out, out_layout)?;
    let axes_op = match runtime_axes {
        Some(t) if e.tensor_dtype(t) == tfl::TensorType::INT32 => AxesOperand::Tensor(t),
        Some(t) => AxesOperand::Tensor(e.cast(t, tfl::TensorType::INT32, None)),
        None => AxesOperand::Stored(&stored),
    };
    let out_shape = Some(e.tensor_shape(y));
    match &node.op {
        Op::ReduceL1(_) => {
            let abs = e.unary(B::ABS, xt, None);
            reducer(&mut e, B::SUM, abs, axes_op, keep, Some(y), None);
        }
        Op::ReduceSumSquare(_) => {
            let sq = e.binary(B::MUL, xt, xt, None);
            reducer(&mut e, B::SUM, sq, axes_op, keep, Some(y), None);
        }
        Op::ReduceL2(_) => {
            let sq = e.binary(B::MUL, xt, xt, None);
            let sum = reducer(&mut e, B::SUM, sq, axes_op, keep, None, out_shape);
            e.unary(B::SQRT, sum, Some(y));
        }
        Op::ReduceLogSum(_) => {
            let sum = reducer(&mut e, B::SUM, xt, axes_op, keep, None, out_shape);
            e.unary(B::LOG, sum, Some(y));
        }
        Op::ReduceLogSumExp(_) => {
            // max + log(sum(exp(x - max))): no overflow for large inputs.
            let max = reducer(&mut e, B::REDUCE_MAX, xt, axes_op, true, None, None);
            let shifted = e.binary(B::SUB, xt, max, None);
            let exp = e.unary(B::EXP, shifted, None);
            let sum = reducer(&mut e, B::SUM, exp, axes_op, keep, None, out_shape);
            let log = e.unary(B::LOG, sum, None);
            let max = if keep {
                max
            } else {
                let shape = e.tensor_shape(y);
                let hint = format!("{}_shape", e.hint);
                let target = e.lx.const_i32(&hint, &shape);
                let flat = e.temp(tfl::TensorType::FLOAT32, shape);
                e.op(B::RESHAPE, &[max, target], tfl::BuiltinOptionsT::NONE, flat);
                flat
            };
            e.binary(B::ADD, log, max, Some(y));
        }
        Op::ReduceMax(_) | Op::ReduceMin(_)
            if e.tensor_dtype(xt) == tfl::TensorType::FLOAT32
                && may_carry_infinity(e.lx.g, x, INFINITY_SEARCH_DEPTH) =>
        {
            // The reference kernels start from the largest finite float, so
            // a row of infinities would reduce to it.
            let r = reducer(&mut e, code, xt, axes_op, keep, None, out_shape);
            unclamp(&mut e, r, y)?;
        }
        _ => {
            // The optimized REDUCE_MAX/MIN kernels reject bool; ANY/ALL are those.
            let code = match (code, e.tensor_dtype(xt)) {
                (B::REDUCE_MAX, tfl::TensorType::BOOL) => B::REDUCE_ANY,
                (B::REDUCE_MIN, tfl::TensorType::BOOL) => B::REDUCE_ALL,
                _ => code,
            };
            reducer(&mut e, code, xt, axes_op, keep, Some(y), None);
        }
    }
    e.finish();
    Ok(())
}

/// An [`Emit`] for `node` that computes float16 in float32 (the kernels
/// lack float16).
fn widened_emit<'a, 'g>(lx: &'a mut Lowerer<'g>, node: &Node) -> Result<Emit<'a, 'g>> {
    let float16 = node
        .input(0)
        .is_some_and(|x| lx.g.fact(x).dtype == Some(DType::F16));
    let mut e = Emit::new(lx, &node.name);
    if float16 {
        e.widen = Some((tfl::TensorType::FLOAT16, tfl::TensorType::FLOAT32));
    }
    Ok(e)
}

/// Empty axes with noop_with_empty_axes: the input, after the elementwise
/// part of the decomposed reductions (as ONNX's reference does).
fn no_reduction(lx: &mut Lowerer, node: &Node, x: ValueId, rank: usize) -> Result<()> {
    let out = node.outputs[0];
    let layout = lx.common_layout(&[x], rank);
    let code = match node.op {
        Op::ReduceL1(_) | Op::ReduceL2(_) => B::ABS,
        Op::ReduceSumSquare(_) => B::MUL,
        Op::ReduceLogSum(_) => B::LOG,
        _ => {
            let xt = lx.operand(x, layout)?;
            lx.alias(out, xt, layout);
            return Ok(());
        }
    };
    let mut e = widened_emit(lx, node)?;
    let xt = e.input(x, layout, rank)?;
    let y = e.output(out, layout)?;
    if code == B::MUL {
        e.binary(code, xt, xt, Some(y));
    } else {
        e.unary(code, xt, Some(y));
    }
    e.finish();
    Ok(())
}

/// A reduction over an axis of size 0 yields its identity element everywhere.
fn empty_reduction(lx: &mut Lowerer, node: &Node, out: ValueId) -> Result<()> {
    let dtype = lx.dtype(out)?;
    let shape = lx.shape(out)?;
    let value = match (&node.op, dtype) {
        (Op::ReduceMax(_), DType::Bool) => 0.0,
        (Op::ReduceMin(_), DType::Bool) => 1.0,
        (Op::ReduceMax(_) | Op::ReduceLogSum(_) | Op::ReduceLogSumExp(_), _) => f64::NEG_INFINITY,
        (Op::ReduceMin(_), _) => f64::INFINITY,
        (Op::ReduceProd(_), _) => 1.0,
        (Op::ReduceMean(_), _) => f64::NAN,
        _ => 0.0,
    };
    let data = Tensor::F64(ArrayD::from_elem(IxDyn(&shape), value))
        .cast(dtype)
        .map_err(|e| lx.error(e.to_string()))?;
    let name = lx.g.value(out).name.clone();
    let t = lx.const_tensor(&name, &data)?;
    lx.alias(out, t, Layout::Source);
    Ok(())
}

fn arg_reduce(
    lx: &mut Lowerer,
    node: &Node,
    code: B,
    axis: i64,
    keepdims: bool,
    select_last_index: bool,
) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let rank = lx.rank(x)?;
    let axis = axis_of(lx, axis, rank)?;
    let (in_layout, out_layout) = reduce_layouts(lx, x, rank, &[axis], keepdims);
    let s = in_layout.stored_axis(axis, rank) as i32;
    let mut e = widened_emit(lx, node)?;
    let mut xt = e.input(x, in_layout, rank)?;
    let y = e.lx.define(out, out_layout)?;
    let axis_hint = format!("{}_axis", node.name);
    let axis_t = e.lx.const_i32(&axis_hint, &[s]);
    let n = e.tensor_shape(xt)[s as usize];
    if select_last_index {
        // The last extreme is the first one of the reversed input.
        let shape = e.tensor_shape(xt);
        let dtype = e.tensor_dtype(xt);
        let reversed = e.temp(dtype, shape);
        e.op(
            B::REVERSE_V2,
            &[xt, axis_t],
            tfl::BuiltinOptionsT::NONE,
            reversed,
        );
        xt = reversed;
    }
    let direct = !keepdims && !select_last_index;
    let idx = if direct {
        y
    } else {
        let shape = reduced_shape(&e.tensor_shape(xt), &[s], false);
        e.temp(tfl::TensorType::INT64, shape)
    };
    let options = if code == B::ARG_MAX {
        tfl::BuiltinOptionsT::ArgMaxOptions(Box::new(tfl::ArgMaxOptionsT {
            output_type: tfl::TensorType::INT64,
        }))
    } else {
        tfl::BuiltinOptionsT::ArgMinOptions(Box::new(tfl::ArgMinOptionsT {
            output_type: tfl::TensorType::INT64,
        }))
    };
    e.op(code, &[xt, axis_t], options, idx);
    let mut idx = idx;
    if select_last_index {
        let last = e.scalar(f64::from(n - 1), DType::I64)?;
        idx = e.binary(B::SUB, last, idx, (!keepdims).then_some(y));
    }
    if keepdims {
        let shape = e.tensor_shape(y);
        let hint = format!("{}_shape", node.name);
        let target = e.lx.const_i32(&hint, &shape);
        e.op(B::RESHAPE, &[idx, target], tfl::BuiltinOptionsT::NONE, y);
    }
    Ok(())
}

/// SOFTMAX / LOG_SOFTMAX over the last stored axis: in the input's layout
/// when the axis is last there, else in the other layout when it is last
/// there (channels over channels-last), else transposed around the op.
fn softmax(lx: &mut Lowerer, node: &Node, code: B, attrs: &SoftmaxAttrs) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let rank = lx.rank(x)?;
    let axis = axis_of(lx, attrs.axis, rank)?;
    if attrs.coerce_2d && axis != rank - 1 {
        return Err(lx.error("opset < 13 softmax over several axes is left to softmax_flatten"));
    }
    let options = || {
        if code == B::SOFTMAX {
            tfl::BuiltinOptionsT::SoftmaxOptions(Box::new(tfl::SoftmaxOptionsT { beta: 1.0 }))
        } else {
            tfl::BuiltinOptionsT::LogSoftmaxOptions(Box::default())
        }
    };
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let other = match layout {
        Layout::Source => Layout::ChannelsLast.effective(rank),
        Layout::ChannelsLast => Layout::Source,
    };
    for l in [layout, other] {
        if l.stored_axis(axis, rank) == rank - 1 {
            let mut e = widened_emit(lx, node)?;
            let xt = e.input(x, l, rank)?;
            let y = e.output(out, l)?;
            e.op(code, &[xt], options(), y);
            e.finish();
            return Ok(());
        }
    }
    let mut e = widened_emit(lx, node)?;
    let xt = e.input(x, layout, rank)?;
    let widen = e.widen;
    drop(e);
    let s = layout.stored_axis(axis, rank);
    let perm: Vec<usize> = (0..rank).filter(|&i| i != s).chain([s]).collect();
    let mut inverse = vec![0; rank];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    let name = lx.g.value(out).name.clone();
    let moved = lx.transpose(xt, &perm, &format!("{name}_axis_last"))?;
    let shape = lx.model.tensor(moved).shape.clone();
    let normalized = lx.temp(
        &format!("{name}_axis_last_out"),
        tfl::TensorType::FLOAT32,
        shape,
    );
    lx.op(code, vec![Some(moved)], vec![normalized], options());
    let normalized = match widen {
        Some((narrow, _)) => Emit::new(lx, &node.name).cast(normalized, narrow, None),
        None => normalized,
    };
    let back = lx.transpose(normalized, &inverse, &name)?;
    lx.alias(out, back, layout);
    Ok(())
}

/// ARG_MAX (first maximum, as ONNX) then ONE_HOT along the same stored axis.
fn hardmax(lx: &mut Lowerer, node: &Node, attrs: &SoftmaxAttrs) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let rank = lx.rank(x)?;
    let axis = axis_of(lx, attrs.axis, rank)?;
    if attrs.coerce_2d && axis != rank - 1 {
        return Err(lx.error("opset < 13 hardmax over several axes is left to softmax_flatten"));
    }
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let mut e = widened_emit(lx, node)?;
    let xt = e.input(x, layout, rank)?;
    let y = e.output(out, layout)?;
    let s = layout.stored_axis(axis, rank);
    let shape = e.tensor_shape(xt);
    let depth = shape[s];
    let axis_hint = format!("{}_axis", node.name);
    let axis_t = e.lx.const_i32(&axis_hint, &[s as i32]);
    let idx = e.temp(
        tfl::TensorType::INT32,
        reduced_shape(&shape, &[s as i32], false),
    );
    e.op(
        B::ARG_MAX,
        &[xt, axis_t],
        tfl::BuiltinOptionsT::ArgMaxOptions(Box::new(tfl::ArgMaxOptionsT {
            output_type: tfl::TensorType::INT32,
        })),
        idx,
    );
    let depth_hint = format!("{}_depth", node.name);
    let depth_t = e.lx.const_i32_shaped(&depth_hint, &[depth], &[]);
    let on = e.scalar(1.0, DType::F32)?;
    let off = e.scalar(0.0, DType::F32)?;
    e.op(
        B::ONE_HOT,
        &[idx, depth_t, on, off],
        tfl::BuiltinOptionsT::OneHotOptions(Box::new(tfl::OneHotOptionsT { axis: s as i32 })),
        y,
    );
    e.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::lower::testing::{codes, i32_data, lowered_in as lowered};
    use crate::formats::tflite::lower::{IoLayout, LowerOptions, support};
    use crate::ir::text::parse;

    #[test]
    fn global_mean_of_channels_last_reduces_stored_axes_without_transposes() {
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  weight axes: i64[2] = [-1,2]
  node m: y: f32[1,8] = ReduceMean {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::MEAN]);
        let mean = &m.operators[0];
        assert_eq!(i32_data(&m, mean.inputs[1].unwrap()), vec![1, 2]);
        assert_eq!(m.tensor(mean.outputs[0]).shape, vec![1, 8]);
    }

    #[test]
    fn keepdims_reduction_keeps_the_layout() {
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  weight axes: i64[1] = [1]
  node m: y: f32[1,1,4,4] = ReduceSum {\"keepdims\":true,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::SUM]);
        let sum = &m.operators[0];
        assert_eq!(i32_data(&m, sum.inputs[1].unwrap()), vec![3]);
        assert_eq!(m.tensor(sum.outputs[0]).shape, vec![1, 4, 4, 1]);
    }

    #[test]
    fn reduction_whose_result_has_no_layout_runs_in_source_order() {
        // Dropping N from NHWC leaves H,W,C: neither CHW nor a channels-last form of it.
        let m = lowered(
            "graph g {
  input x: f32[2,8,4,4]
  weight axes: i64[1] = [0]
  node m: y: f32[8,4,4] = ReduceMax {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m)[1..], [B::REDUCE_MAX, B::TRANSPOSE]);
        let max = &m.operators[1];
        assert_eq!(i32_data(&m, max.inputs[1].unwrap()), vec![0]);
    }

    #[test]
    fn missing_axes_reduce_everything_or_nothing() {
        let m = lowered(
            "graph g {
  input x: f32[2,3]
  node a: s: f32[1,1] = ReduceSum {\"keepdims\":true,\"noop_with_empty_axes\":false} (x, _)
  node b: y: f32[2,3] = ReduceSum {\"keepdims\":true,\"noop_with_empty_axes\":true} (x, _)
  output s, y
}
",
            IoLayout::Source,
        );
        // The no-op output is the graph input: one RESHAPE copies it out.
        assert_eq!(codes(&m), vec![B::SUM, B::RESHAPE]);
        assert_eq!(i32_data(&m, m.operators[0].inputs[1].unwrap()), vec![0, 1]);
    }

    #[test]
    fn decomposed_reductions() {
        let m = lowered(
            "graph g {
  input x: f32[2,3]
  weight axes: i64[1] = [1]
  node a: l2: f32[2] = ReduceL2 {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  node b: lse: f32[2] = ReduceLogSumExp {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output l2, lse
}
",
            IoLayout::Source,
        );
        assert_eq!(
            codes(&m),
            vec![
                B::MUL,
                B::SUM,
                B::SQRT,
                B::REDUCE_MAX,
                B::SUB,
                B::EXP,
                B::SUM,
                B::LOG,
                B::RESHAPE,
                B::ADD
            ]
        );
        assert_eq!(m.tensor(m.operators[3].outputs[0]).shape, vec![2, 1]);
        assert_eq!(m.tensor(m.operators[9].outputs[0]).shape, vec![2]);
    }

    #[test]
    fn reduction_over_an_empty_axis_is_its_identity() {
        let m = lowered(
            "graph g {
  input x: f32[2,0,4]
  weight axes: i64[1] = [1]
  node a: y: f32[2,1,4] = ReduceProd {\"keepdims\":true,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::RESHAPE]);
        let source = m.operators[0].inputs[0].unwrap();
        let data = m.tensor(source).data.as_ref().unwrap();
        assert_eq!(data.len(), 8 * 4);
        assert!(
            data.chunks(4)
                .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) == 1.0)
        );
    }

    #[test]
    fn softmax_over_channels_runs_channels_last() {
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  node s: y: f32[1,8,4,4] = Softmax {\"axis\":1,\"coerce_2d\":false} (x)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::SOFTMAX]);
        match &m.operators[0].options {
            tfl::BuiltinOptionsT::SoftmaxOptions(o) => assert_eq!(o.beta, 1.0),
            other => panic!("{other:?}"),
        }
        let source = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  node s: y: f32[1,8,4,4] = LogSoftmax {\"axis\":-1,\"coerce_2d\":false} (x)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        // Over W: source order puts it last; the NHWC input is transposed once, and back.
        assert_eq!(
            codes(&source),
            vec![B::TRANSPOSE, B::LOG_SOFTMAX, B::TRANSPOSE]
        );
    }

    #[test]
    fn softmax_over_a_middle_axis_transposes_around_it() {
        let m = lowered(
            "graph g {
  input x: f32[3,4,5]
  node s: y: f32[3,4,5] = Softmax {\"axis\":0,\"coerce_2d\":false} (x)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::TRANSPOSE, B::SOFTMAX, B::TRANSPOSE]);
        let t = &m.operators[0];
        assert_eq!(i32_data(&m, t.inputs[1].unwrap()), vec![1, 2, 0]);
        assert_eq!(m.tensor(t.outputs[0]).shape, vec![4, 5, 3]);
        let back = &m.operators[2];
        assert_eq!(i32_data(&m, back.inputs[1].unwrap()), vec![2, 0, 1]);
        assert_eq!(m.outputs, vec![back.outputs[0]]);
    }

    #[test]
    fn arg_max_with_last_index_and_keepdims() {
        let m = lowered(
            "graph g {
  input x: f32[2,3]
  node a: y: i64[2,1] = ArgMax {\"axis\":1,\"keepdims\":true,\"select_last_index\":true} (x)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(
            codes(&m),
            vec![B::REVERSE_V2, B::ARG_MAX, B::SUB, B::RESHAPE]
        );
        let arg = &m.operators[1];
        assert_eq!(m.tensor(arg.outputs[0]).dtype, tfl::TensorType::INT64);
        let sub = &m.operators[2];
        let last = m.tensor(sub.inputs[0].unwrap()).data.as_ref().unwrap();
        assert_eq!(last.as_ref(), 2i64.to_le_bytes());
    }

    #[test]
    fn hardmax_is_arg_max_then_one_hot_on_the_stored_axis() {
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  node h: y: f32[1,8,4,4] = Hardmax {\"axis\":1,\"coerce_2d\":false} (x)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::ARG_MAX, B::ONE_HOT]);
        match &m.operators[1].options {
            tfl::BuiltinOptionsT::OneHotOptions(o) => assert_eq!(o.axis, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cumsum_axis_follows_the_layout() {
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  weight axis: i32[] = [1]
  node c: y: f32[1,8,4,4] = CumSum {\"exclusive\":true,\"reverse\":false} (x, axis)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::CUMSUM]);
        assert_eq!(i32_data(&m, m.operators[0].inputs[1].unwrap()), vec![3]);
    }

    #[test]
    fn legacy_softmax_is_left_to_the_legalization() {
        let g = parse(
            "graph g {
  input x: f32[2,3,4]
  node s: y: f32[2,3,4] = Softmax {\"axis\":1,\"coerce_2d\":true} (x)
  output y
}
",
        )
        .unwrap();
        let (id, _) = g.nodes().next().unwrap();
        assert!(matches!(support(&g, id), Support::AfterLegalize(_)));
    }

    #[test]
    fn runtime_axes_follow_from_the_shapes_or_stay_runtime() {
        // keepdims: the reduced axes are where the shapes differ.
        let m = lowered(
            "graph g {
  input x: f32[1,8,4,4]
  input axes: i64[1]
  node s: y: f32[1,8,1,4] = ReduceSum {\"keepdims\":true,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
            IoLayout::ChannelsLast,
        );
        assert_eq!(codes(&m), vec![B::SUM]);
        assert_eq!(i32_data(&m, m.operators[0].inputs[1].unwrap()), vec![1]);
        // [3,2,2] -> [3,2] may drop axis 1 or 2: the runtime axes decide, in source order.
        let m = lowered(
            "graph g {
  input x: f32[3,2,2]
  input axes: i64[1]
  node s: y: f32[3,2] = ReduceL2 {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::CAST, B::MUL, B::SUM, B::SQRT]);
        let sum = &m.operators[2];
        assert_eq!(sum.inputs[1], m.operators[0].outputs.first().copied());
    }

    #[test]
    fn ambiguous_runtime_axes_of_log_sum_exp_are_unsupported() {
        let g = parse(
            "graph g {
  input x: f32[3,2,2]
  input axes: i64[1]
  node s: y: f32[3,2] = ReduceLogSumExp {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output y
}
",
        )
        .unwrap();
        let (id, _) = g.nodes().next().unwrap();
        assert!(matches!(support(&g, id), Support::Unsupported(_)));
    }

    #[test]
    fn bool_max_and_min_are_any_and_all() {
        let m = lowered(
            "graph g {
  input x: bool[3,2]
  weight axes: i64[1] = [1]
  node a: y: bool[3] = ReduceMax {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  node b: z: bool[3] = ReduceMin {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output y, z
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::REDUCE_ANY, B::REDUCE_ALL]);
    }

    #[test]
    fn noop_reduction_keeps_the_elementwise_part() {
        let m = lowered(
            "graph g {
  input x: f32[3,2]
  node a: y: f32[3,2] = ReduceSumSquare {\"keepdims\":true,\"noop_with_empty_axes\":true} (x, _)
  node b: z: f32[3,2] = ReduceMax {\"keepdims\":true,\"noop_with_empty_axes\":true} (y, _)
  output z
}
",
            IoLayout::Source,
        );
        assert_eq!(codes(&m), vec![B::MUL]);
    }

    #[test]
    fn infer_axes_needs_one_fit() {
        assert_eq!(infer_axes(&[3, 2, 2], &[3, 1, 2], true), Some(vec![1]));
        assert_eq!(infer_axes(&[3, 1, 2], &[3, 1, 2], true), Some(vec![1]));
        assert_eq!(infer_axes(&[3, 2, 2], &[3, 2], false), None);
        assert_eq!(infer_axes(&[3, 4, 5], &[3, 5], false), Some(vec![1]));
        assert_eq!(infer_axes(&[3, 4, 5], &[4], false), Some(vec![0, 2]));
    }

    #[test]
    fn max_of_infinite_masks_keeps_the_infinity() {
        // The IR text has no infinities: the mask's -1 becomes -inf below.
        let mut g = parse(
            "graph g {
  input c: bool[2,3]
  weight ninf: f32[] = [-1]
  weight zero: f32[] = [0]
  weight axes: i64[1] = [1]
  node w: mask: f32[2,3] = Where (c, ninf, zero)
  node m: y: f32[2,1] = ReduceMax {\"keepdims\":true,\"noop_with_empty_axes\":false} (mask, axes)
  output y
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
                B::REDUCE_MAX,
                B::GREATER_EQUAL,
                B::LESS_EQUAL,
                B::SELECT_V2,
                B::SELECT_V2
            ]
        );
    }

    #[test]
    fn float16_computes_in_float32() {
        let m = lowered(
            "graph g {
  input x: f16[3,4,5]
  weight axes: i64[1] = [1]
  node s: y: f16[3,4,5] = Softmax {\"axis\":0,\"coerce_2d\":false} (x)
  node r: z: f16[3,5] = ReduceMean {\"keepdims\":false,\"noop_with_empty_axes\":false} (x, axes)
  output y, z
}
",
            IoLayout::Source,
        );
        assert_eq!(
            codes(&m),
            vec![
                B::CAST,
                B::TRANSPOSE,
                B::SOFTMAX,
                B::CAST,
                B::TRANSPOSE,
                B::CAST,
                B::MEAN,
                B::CAST
            ]
        );
        let mean = &m.operators[6];
        assert_eq!(m.tensor(mean.outputs[0]).dtype, tfl::TensorType::FLOAT32);
    }
}
