//! Lowering of the shape family (see [`super::support::family`]): data
//! movement (reshapes, transposes, concatenation, splits, slices, gathers,
//! broadcasts, tiling), shape computations that are constants once shapes are
//! static, and TopK/OneHot.
//!
//! Each op's checks live in one function per op that both `support` and
//! `lower` call, so the two cannot disagree.

use crate::formats::target::Support;
use crate::ir::error::Result;
use crate::ir::ops::{GatherNdAttrs, ScatterReduction, TopKAttrs};
use crate::ir::shape::normalize_axis;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op, ValueId};

use super::super::model::TensorId;
use super::super::schema as tfl;
use super::{Layout, Lowerer, dims_i32};

/// Types the byte-copying kernels (RESHAPE, SQUEEZE, EXPAND_DIMS) and the
/// ones dispatching on element width (TRANSPOSE, SLICE, STRIDED_SLICE, TILE,
/// BROADCAST_TO) take.
const ANY: &[DType] = &DType::DENSE;
/// CONCATENATION's list.
const CONCAT: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::Bool,
    DType::U32,
];
/// SPLIT's and SPLIT_V's list.
const SPLIT: &[DType] = &[
    DType::F32,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
];
/// GATHER's data types.
const GATHER: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::Bool,
];
/// GATHER_ND's data types (the same set).
const GATHER_ND: &[DType] = GATHER;
/// Index types GATHER and GATHER_ND take (and FLOOR_MOD, which normalizes them).
const INDICES: &[DType] = &[DType::I16, DType::I32, DType::I64];
/// TOPK_V2's value types.
const TOPK: &[DType] = &[
    DType::F32,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
];
/// ONE_HOT's output types.
const ONE_HOT: &[DType] = &[
    DType::F32,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::I8,
    DType::U8,
    DType::Bool,
];
/// SCATTER_ND's update types.
const SCATTER_ND: &[DType] = &[
    DType::F32,
    DType::U8,
    DType::Bool,
    DType::I8,
    DType::I32,
    DType::I64,
];
/// SELECT_V2 dispatches on element width; its broadcasting goes up to rank 5.
const SELECT: &[DType] = ANY;
const SELECT_MAX_RANK: usize = 5;
/// FLOOR_MOD broadcasts a scalar only over operands of at most this rank.
const FLOOR_MOD_MAX_RANK: usize = 4;

pub fn support(g: &Graph, node: &Node) -> Support {
    match check(g, node) {
        Ok(()) => Support::Native,
        Err(why) => Support::Unsupported(why),
    }
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    check(lx.g, node).map_err(|why| lx.error(why))?;
    match &node.op {
        Op::Identity => lower_identity(lx, node),
        Op::Squeeze | Op::Unsqueeze if lower_squeeze_like(lx, node)? => Ok(()),
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze | Op::Unsqueeze => {
            lower_reshape_like(lx, node)
        }
        Op::Transpose(_) => lower_transpose(lx, node),
        Op::Concat(a) => lower_concat(lx, node, a.axis),
        Op::Split(a) => lower_split(lx, node, a.axis),
        Op::Slice => lower_slice(lx, node),
        Op::Gather(a) => lower_gather(lx, node, a.axis),
        Op::GatherNd(a) => lower_gather_nd(lx, node, a),
        Op::GatherElements(a) => lower_gather_elements(lx, node, a.axis),
        Op::Expand => lower_expand(lx, node),
        Op::Tile => lower_tile(lx, node),
        Op::Range if !all_constant(lx.g, node) => lower_range(lx, node),
        Op::Shape(_) | Op::Size | Op::ConstantOfShape(_) | Op::Range | Op::EyeLike(_) => {
            let data = constant_output(lx.g, node).map_err(|why| lx.error(why))?;
            emit_constant(lx, node.outputs[0], &data)
        }
        Op::TopK(a) => lower_topk(lx, node, a),
        Op::OneHot(a) => lower_one_hot(lx, node, a.axis),
        Op::Trilu(a) => lower_trilu(lx, node, a.upper),
        Op::Compress(a) => lower_compress(lx, node, a.axis),
        Op::ScatterNd(a) => lower_scatter(lx, node, a.reduction, None),
        Op::ScatterElements(a) => lower_scatter(lx, node, a.reduction, Some(a.axis)),
        _ => Err(lx.error(format!("{} is not in the shape family", node.op.name()))),
    }
}

/// Whether the TFLite lowering below handles `node` exactly; the reason when not.
fn check(g: &Graph, node: &Node) -> std::result::Result<(), String> {
    for &v in &node.outputs {
        if fixed(g, v)?.contains(&0) {
            return Err(format!(
                "output '{}' has no elements; the TFLite kernels do not produce empty tensors",
                g.value(v).name
            ));
        }
    }
    if let Some(v) = node
        .inputs
        .iter()
        .flatten()
        .chain(&node.outputs)
        .find(|&&v| g.fact(v).quant.is_some())
    {
        return Err(format!(
            "value '{}' is quantized; the shape family lowers float and integer tensors only",
            g.value(*v).name
        ));
    }
    let x = || input(node, 0);
    match &node.op {
        Op::Identity
        | Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Transpose(_) => {
            dtypes(g, &[x()?, node.outputs[0]], ANY, node)?;
            if let Op::Transpose(_) = &node.op {
                transpose_perm(g, node)?;
            }
            Ok(())
        }
        Op::Concat(a) => {
            let out = node.outputs[0];
            normalize_axis(a.axis, fixed(g, out)?.len())?;
            let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
            let mut all = inputs.clone();
            all.push(out);
            dtypes(g, &all, CONCAT, node)
        }
        Op::Split(a) => {
            let x = x()?;
            let shape = fixed(g, x)?;
            let axis = normalize_axis(a.axis, shape.len())?;
            let mut total = 0;
            for &o in &node.outputs {
                let part = fixed(g, o)?;
                if part.len() != shape.len()
                    || part
                        .iter()
                        .zip(&shape)
                        .enumerate()
                        .any(|(i, (p, d))| i != axis && p != d)
                {
                    return Err(format!("Split part {part:?} does not fit {shape:?}"));
                }
                total += part[axis];
            }
            if total != shape[axis] {
                return Err(format!(
                    "Split parts add up to {total}, not {}",
                    shape[axis]
                ));
            }
            dtypes(g, &[x], ANY, node)
        }
        Op::Slice => {
            dtypes(g, &[x()?], ANY, node)?;
            if bounds_computed(g, node) {
                computed_slice_plan(g, node).map(|_| ())
            } else {
                slice_plan(g, node).map(|_| ())
            }
        }
        Op::Gather(a) => {
            let (data, idx) = (x()?, input(node, 1)?);
            dtypes(g, &[data], GATHER, node)?;
            dtypes(g, &[idx], INDICES, node)?;
            let dim = fixed(g, data)?[normalize_axis(a.axis, fixed(g, data)?.len())?];
            check_indices(g, idx, &[dim], false)
        }
        Op::GatherNd(a) => {
            let (data, idx) = (x()?, input(node, 1)?);
            dtypes(g, &[data], GATHER_ND, node)?;
            dtypes(g, &[idx], INDICES, node)?;
            gather_nd_dims(g, node, a).and_then(|dims| check_indices(g, idx, &dims, true))
        }
        Op::GatherElements(a) => {
            let (data, idx) = (x()?, input(node, 1)?);
            dtypes(g, &[data], GATHER_ND, node)?;
            dtypes(g, &[idx], &[DType::I32, DType::I64], node)?;
            let shape = fixed(g, data)?;
            let axis = normalize_axis(a.axis, shape.len())?;
            if fixed(g, idx)?.len() != shape.len() {
                return Err("indices must have the rank of the data".into());
            }
            check_indices(g, idx, &[shape[axis]], false)
        }
        Op::Expand => {
            let (x, out) = (x()?, node.outputs[0]);
            dtypes(g, &[x, out], ANY, node)?;
            if fixed(g, out)?.len() < fixed(g, x)?.len() {
                return Err("output rank below the input rank".into());
            }
            Ok(())
        }
        Op::Tile => {
            dtypes(g, &[x()?], ANY, node)?;
            tile_repeats(g, node).map(|_| ())
        }
        Op::Range if !all_constant(g, node) => {
            let values: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
            dtypes(g, &values, &[DType::F32, DType::I32, DType::I64], node)?;
            if values
                .iter()
                .any(|&v| fixed(g, v).map(|s| s.len() > 1).unwrap_or(true))
            {
                return Err("Range inputs must be scalars".into());
            }
            Ok(())
        }
        Op::Shape(_) | Op::Size | Op::ConstantOfShape(_) | Op::Range | Op::EyeLike(_) => {
            let data = constant_output(g, node)?;
            super::tensor_type(data.dtype())?;
            Ok(())
        }
        Op::TopK(a) => topk_plan(g, node, a).map(|_| ()),
        Op::OneHot(a) => one_hot_plan(g, node, a.axis).map(|_| ()),
        Op::Trilu(_) => {
            dtypes(g, &[x()?], SELECT, node)?;
            let rank = fixed(g, x()?)?.len();
            if !(2..=SELECT_MAX_RANK).contains(&rank) {
                return Err(format!(
                    "Trilu of rank {rank}: SELECT_V2 broadcasts the mask up to rank {SELECT_MAX_RANK}"
                ));
            }
            trilu_k(g, node).map(|_| ())
        }
        Op::Compress(a) => {
            dtypes(g, &[x()?], GATHER, node)?;
            compress_indices(g, node, a.axis).map(|_| ())
        }
        Op::ScatterNd(a) => scatter_plan(g, node, a.reduction, None).map(|_| ()),
        Op::ScatterElements(a) => scatter_plan(g, node, a.reduction, Some(a.axis)).map(|_| ()),
        Op::NonZero => {
            Err("NonZero's output shape depends on the data; TFLite needs static shapes".into())
        }
        _ => Err(format!("{} is not in the shape family", node.op.name())),
    }
}

// ---------------------------------------------------------------------------
// Helpers shared with linalg.rs.

/// The static shape of `v` (support runs after the static-shape check; this
/// only keeps a malformed graph from panicking).
pub(super) fn fixed(g: &Graph, v: ValueId) -> std::result::Result<Vec<usize>, String> {
    g.fact(v)
        .shape
        .as_fixed()
        .ok_or_else(|| format!("value '{}' has no static shape", g.value(v).name))
}

pub(super) fn input(node: &Node, i: usize) -> std::result::Result<ValueId, String> {
    node.input(i)
        .ok_or_else(|| format!("input {i} is required"))
}

pub(super) fn dtype_of(g: &Graph, v: ValueId) -> std::result::Result<DType, String> {
    g.fact(v)
        .dtype
        .ok_or_else(|| format!("the dtype of value '{}' is unknown", g.value(v).name))
}

/// `Ok` when each of `values` has one of `allowed` dtypes.
pub(super) fn dtypes(
    g: &Graph,
    values: &[ValueId],
    allowed: &[DType],
    node: &Node,
) -> std::result::Result<(), String> {
    for &v in values {
        let d = dtype_of(g, v)?;
        if !allowed.contains(&d) {
            return Err(format!(
                "value '{}' is {d}; TFLite's kernel for {} takes {}",
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

/// A constant's contents.
pub(super) fn const_tensor(g: &Graph, v: ValueId) -> std::result::Result<Option<Tensor>, String> {
    match g.weight_of(v) {
        Some(w) => Tensor::from_bytes(w.dtype, &w.shape, &w.data)
            .map(Some)
            .map_err(|e| format!("weight {}: {e}", w.name)),
        None => Ok(None),
    }
}

/// A constant integer tensor's values; `None` when `v` is not a constant.
pub(super) fn const_ints(g: &Graph, v: ValueId) -> std::result::Result<Option<Vec<i64>>, String> {
    match const_tensor(g, v)? {
        Some(t) => t.to_i64_vec().map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// The layout a stored-axis order (stored axis i holds source axis
/// `perm[i]`) is, if it is one.
pub(super) fn layout_of_perm(perm: &[usize]) -> Option<Layout> {
    let rank = perm.len();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        Some(Layout::Source)
    } else if rank >= 3 && perm == Layout::ChannelsLast.perm(rank).as_slice() {
        Some(Layout::ChannelsLast)
    } else {
        None
    }
}

/// The axis order `v` is stored in.
pub(super) fn stored_perm(lx: &Lowerer, v: ValueId) -> Result<Vec<usize>> {
    let rank = lx.rank(v)?;
    Ok(lx.layout_of(v).effective(rank).perm(rank))
}

/// `shape` permuted into the order of `perm`.
pub(super) fn permuted(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    perm.iter().map(|&a| shape[a]).collect()
}

/// A RESHAPE of `t` into a new tensor of `shape`.
pub(super) fn reshape_tensor(
    lx: &mut Lowerer,
    t: TensorId,
    shape: &[usize],
    name: &str,
) -> TensorId {
    let dtype = lx.model.tensor(t).dtype;
    let out = lx.temp(name, dtype, dims_i32(shape));
    reshape_into(lx, t, out);
    out
}

/// A RESHAPE of `t` into the existing tensor `out` (its shape is the target).
pub(super) fn reshape_into(lx: &mut Lowerer, t: TensorId, out: TensorId) {
    let shape = lx.model.tensor(out).shape.clone();
    let name = format!("{}_shape", lx.model.tensor(out).name);
    let inputs = if shape.is_empty() {
        // A 0-element shape tensor has no data, which TFLite would read as a
        // non-constant input; the options alone give a scalar output.
        vec![Some(t)]
    } else {
        vec![Some(t), Some(lx.const_i32(&name, &shape))]
    };
    lx.op(
        tfl::BuiltinOperator::RESHAPE,
        inputs,
        vec![out],
        tfl::BuiltinOptionsT::ReshapeOptions(Box::new(tfl::ReshapeOptionsT {
            new_shape: Some(shape),
        })),
    );
}

/// A scalar int32 constant.
pub(super) fn const_i32_scalar(lx: &mut Lowerer, hint: &str, value: i32) -> TensorId {
    lx.const_i32_shaped(hint, &[value], &[])
}

/// An integer constant of `dtype` (i16/i32/i64) and `shape`.
fn const_int(
    lx: &mut Lowerer,
    hint: &str,
    dtype: DType,
    shape: &[usize],
    values: Vec<i64>,
) -> Result<TensorId> {
    let t = Tensor::from_i64(shape, values)?
        .cast(dtype)
        .map_err(|e| lx.error(e.to_string()))?;
    lx.const_tensor(hint, &t)
}

/// The output value `v`'s tensor holds `data` (a constant).
fn emit_constant(lx: &mut Lowerer, v: ValueId, data: &Tensor) -> Result<()> {
    let name = lx.g.value(v).name.clone();
    let t = lx.const_tensor(&name, data)?;
    lx.alias(v, t, Layout::Source);
    Ok(())
}

// ---------------------------------------------------------------------------
// Identity and reshapes.

fn lower_identity(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let x = lx.input(node, 0)?;
    let layout = lx.layout_of(x);
    let t = lx.operand(x, layout)?;
    lx.alias(node.outputs[0], t, layout);
    Ok(())
}

/// Whether a RESHAPE of `x` stored in `in_perm` order gives `out` stored in
/// `out_perm` order (a reshape keeps the row-major element order).
fn reshape_keeps_order(
    in_shape: &[usize],
    in_perm: &[usize],
    out_shape: &[usize],
    out_perm: &[usize],
) -> bool {
    let order_preserving = |shape: &[usize], perm: &[usize]| {
        let moved: Vec<usize> = perm.iter().copied().filter(|&a| shape[a] != 1).collect();
        moved.windows(2).all(|w| w[0] < w[1])
    };
    if order_preserving(in_shape, in_perm) && order_preserving(out_shape, out_perm) {
        return true;
    }
    // Only 1-sized dims inserted or removed: the k-th non-1 dim of the input
    // is the k-th of the output, so the stored orders of those must agree.
    let non_one =
        |shape: &[usize]| -> Vec<usize> { shape.iter().copied().filter(|&d| d != 1).collect() };
    if non_one(in_shape) != non_one(out_shape) {
        return false;
    }
    let ranks = |shape: &[usize], perm: &[usize]| -> Vec<usize> {
        let rank_of = |a: usize| shape[..a].iter().filter(|&&d| d != 1).count();
        perm.iter()
            .filter(|&&a| shape[a] != 1)
            .map(|&a| rank_of(a))
            .collect()
    };
    ranks(in_shape, in_perm) == ranks(out_shape, out_perm)
}

/// Reshape, Flatten, Squeeze, Unsqueeze: one RESHAPE to the output's static
/// shape, reading the input as stored when that gives the same element order.
fn lower_reshape_like(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let (in_shape, out_shape) = (lx.shape(x)?, lx.shape(out)?);
    let out_rank = out_shape.len();
    let in_layout = lx.layout_of(x).effective(in_shape.len());
    let in_perm = in_layout.perm(in_shape.len());
    let mut candidates = vec![in_layout.effective(out_rank)];
    if !candidates.contains(&Layout::Source) {
        candidates.push(Layout::Source);
    }
    let choice = candidates
        .into_iter()
        .find(|lo| reshape_keeps_order(&in_shape, &in_perm, &out_shape, &lo.perm(out_rank)));
    let (src, layout) = match choice {
        Some(lo) => (lx.operand(x, in_layout)?, lo),
        None => (lx.operand(x, Layout::Source)?, Layout::Source),
    };
    let t = lx.define(out, layout)?;
    reshape_into(lx, src, t);
    Ok(())
}

/// The source axes Squeeze removes from its input or Unsqueeze inserts into
/// its output (sorted): the constant axes, or else 1-dims of the larger shape
/// whose removal gives the smaller one (which of several 1-dims does not
/// change the data).
fn squeeze_axes(lx: &Lowerer, node: &Node) -> Result<Option<Vec<usize>>> {
    let x = lx.input(node, 0)?;
    let (in_shape, out_shape) = (lx.shape(x)?, lx.shape(node.outputs[0])?);
    let rank = match node.op {
        Op::Squeeze => in_shape.len(),
        _ => out_shape.len(),
    };
    let mut axes: Vec<usize> = match node.input(1) {
        Some(a) if lx.is_constant(a) => {
            let mut axes = Vec::new();
            for a in lx.constant_i64(a)? {
                axes.push(normalize_axis(a, rank).map_err(|e| lx.error(e))?);
            }
            axes
        }
        _ => {
            let (large, small) = match node.op {
                Op::Squeeze => (&in_shape, &out_shape),
                _ => (&out_shape, &in_shape),
            };
            match unit_axes_between(large, small) {
                Some(axes) => axes,
                None => return Ok(None),
            }
        }
    };
    axes.sort_unstable();
    axes.dedup();
    let consistent = match node.op {
        Op::Squeeze => axes.iter().all(|&a| in_shape[a] == 1),
        _ => axes.iter().all(|&a| out_shape[a] == 1),
    } && in_shape.len().abs_diff(out_shape.len()) == axes.len();
    Ok((consistent && !axes.is_empty()).then_some(axes))
}

/// Axes of 1-dims of `large` that leave `small` once removed (matching
/// `small` against `large` from the front).
fn unit_axes_between(large: &[usize], small: &[usize]) -> Option<Vec<usize>> {
    let mut axes = Vec::new();
    let mut j = 0;
    for (i, &d) in large.iter().enumerate() {
        if small.get(j) == Some(&d) {
            j += 1;
        } else if d == 1 {
            axes.push(i);
        } else {
            return None;
        }
    }
    (j == small.len()).then_some(axes)
}

/// `perm` (a layout's stored order of the larger shape's source axes) with
/// the source axes in `axes` dropped and the others renumbered: the stored
/// order of the smaller shape.
fn without_axes(perm: &[usize], axes: &[usize]) -> Vec<usize> {
    perm.iter()
        .filter(|a| !axes.contains(a))
        .map(|&a| a - axes.iter().filter(|&&r| r < a).count())
        .collect()
}

/// Squeeze as SQUEEZE and Unsqueeze of one axis as EXPAND_DIMS, on the
/// stored axes, when some layout of the output keeps the stored order of the
/// remaining axes (so no element moves); `false` (nothing emitted) when not.
fn lower_squeeze_like(lx: &mut Lowerer, node: &Node) -> Result<bool> {
    let Some(axes) = squeeze_axes(lx, node)? else {
        return Ok(false);
    };
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let (in_rank, out_rank) = (lx.rank(x)?, lx.rank(out)?);
    let in_layout = lx.layout_of(x).effective(in_rank);
    let in_perm = in_layout.perm(in_rank);
    let mut candidates = vec![in_layout.effective(out_rank)];
    if !candidates.contains(&Layout::Source) {
        candidates.push(Layout::Source);
    }
    match node.op {
        Op::Squeeze => {
            let Some(layout) = candidates
                .into_iter()
                .find(|lo| without_axes(&in_perm, &axes) == lo.perm(out_rank))
            else {
                return Ok(false);
            };
            let dims: Vec<i32> = axes
                .iter()
                .map(|&a| in_layout.stored_axis(a, in_rank) as i32)
                .collect();
            let src = lx.operand(x, in_layout)?;
            let t = lx.define(out, layout)?;
            lx.op(
                tfl::BuiltinOperator::SQUEEZE,
                vec![Some(src)],
                vec![t],
                tfl::BuiltinOptionsT::SqueezeOptions(Box::new(tfl::SqueezeOptionsT {
                    squeeze_dims: Some(dims),
                })),
            );
        }
        _ => {
            let [axis] = axes[..] else {
                return Ok(false);
            };
            let Some(layout) = candidates
                .into_iter()
                .find(|lo| without_axes(&lo.perm(out_rank), &axes) == in_perm)
            else {
                return Ok(false);
            };
            let stored = layout.stored_axis(axis, out_rank) as i32;
            let src = lx.operand(x, in_layout)?;
            let name = format!("{}_axis", lx.g.value(out).name);
            let axis_t = const_i32_scalar(lx, &name, stored);
            let t = lx.define(out, layout)?;
            lx.op(
                tfl::BuiltinOperator::EXPAND_DIMS,
                vec![Some(src), Some(axis_t)],
                vec![t],
                tfl::BuiltinOptionsT::ExpandDimsOptions(Box::default()),
            );
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------
// Transpose.

fn transpose_perm(g: &Graph, node: &Node) -> std::result::Result<Vec<usize>, String> {
    let Op::Transpose(a) = &node.op else {
        return Err("not a Transpose".into());
    };
    let rank = fixed(g, input(node, 0)?)?.len();
    let perm = a.perm.clone().unwrap_or_else(|| (0..rank).rev().collect());
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of rank {rank}"));
    }
    Ok(perm)
}

/// One TRANSPOSE from the input as stored to the output in the layout that
/// makes it cheapest: none when the composition is the identity (e.g. NHWC
/// -> NCHW of an NHWC input produces a channels-last output for free).
fn lower_transpose(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let perm = transpose_perm(lx.g, node).map_err(|why| lx.error(why))?;
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let rank = perm.len();
    let shape = lx.shape(x)?;
    let sx = stored_perm(lx, x)?;
    let stored_shape = permuted(&shape, &sx);
    // Stored axis i of the output is stored axis q[i] of the input.
    let compose = |lo: Layout| -> Vec<usize> {
        lo.perm(rank)
            .iter()
            .map(|&o| {
                sx.iter()
                    .position(|&a| a == perm[o])
                    .expect("perm is a permutation")
            })
            .collect()
    };
    let cost = |q: &[usize]| -> usize {
        if q.iter().enumerate().all(|(i, &p)| i == p) {
            0
        } else {
            let moved: Vec<usize> = q
                .iter()
                .copied()
                .filter(|&a| stored_shape[a] != 1)
                .collect();
            if moved.windows(2).all(|w| w[0] < w[1]) {
                1
            } else {
                2
            }
        }
    };
    let mut layouts = vec![Layout::Source];
    if rank >= 3 {
        layouts.push(Layout::ChannelsLast);
    }
    let (layout, q) = layouts
        .into_iter()
        .map(|lo| (lo, compose(lo)))
        .min_by_key(|(_, q)| cost(q))
        .expect("at least one layout");
    let src = lx.operand(x, lx.layout_of(x))?;
    let name = lx.g.value(out).name.clone();
    let t = lx.transpose(src, &q, &name)?;
    lx.alias(out, t, layout);
    Ok(())
}

// ---------------------------------------------------------------------------
// Concat, Split, Slice.

fn lower_concat(lx: &mut Lowerer, node: &Node, axis: i64) -> Result<()> {
    let out = node.outputs[0];
    let rank = lx.rank(out)?;
    let axis = normalize_axis(axis, rank).map_err(|e| lx.error(e))?;
    let mut inputs = Vec::new();
    for &v in node.inputs.iter().flatten() {
        // Empty inputs add nothing (the output is not empty: check refuses that).
        if !lx.shape(v)?.contains(&0) {
            inputs.push(v);
        }
    }
    let layout = lx.common_layout(&inputs, rank).effective(rank);
    let mut tensors = Vec::new();
    for &v in &inputs {
        tensors.push(Some(lx.operand(v, layout)?));
    }
    if let [Some(t)] = tensors[..] {
        lx.alias(out, t, layout);
        return Ok(());
    }
    let t = lx.define(out, layout)?;
    lx.op(
        tfl::BuiltinOperator::CONCATENATION,
        tensors,
        vec![t],
        tfl::BuiltinOptionsT::ConcatenationOptions(Box::new(tfl::ConcatenationOptionsT {
            axis: layout.stored_axis(axis, rank) as i32,
            fused_activation_function: tfl::ActivationFunctionType::NONE,
        })),
    );
    Ok(())
}

fn lower_split(lx: &mut Lowerer, node: &Node, axis: i64) -> Result<()> {
    let x = lx.input(node, 0)?;
    let shape = lx.shape(x)?;
    let rank = shape.len();
    let axis = normalize_axis(axis, rank).map_err(|e| lx.error(e))?;
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let sa = layout.stored_axis(axis, rank);
    let mut sizes = Vec::new();
    for &o in &node.outputs {
        sizes.push(lx.shape(o)?[axis]);
    }
    if sizes.iter().sum::<usize>() != shape[axis] {
        return Err(lx.error(format!(
            "split sizes {sizes:?} do not add up to dim {}",
            shape[axis]
        )));
    }
    let src = lx.operand(x, layout)?;
    if let [o] = node.outputs[..] {
        lx.alias(o, src, layout);
        return Ok(());
    }
    let mut outs = Vec::new();
    for &o in &node.outputs {
        outs.push(lx.define(o, layout)?);
    }
    let name = lx.g.value(x).name.clone();
    let n = sizes.len() as i32;
    if SPLIT.contains(&lx.dtype(x)?) {
        let axis_t = const_i32_scalar(lx, &format!("{name}_split_axis"), sa as i32);
        if sizes.iter().all(|&s| s == sizes[0]) {
            lx.op(
                tfl::BuiltinOperator::SPLIT,
                vec![Some(axis_t), Some(src)],
                outs,
                tfl::BuiltinOptionsT::SplitOptions(Box::new(tfl::SplitOptionsT { num_splits: n })),
            );
        } else {
            let sizes_t = lx.const_i32(&format!("{name}_split_sizes"), &dims_i32(&sizes));
            lx.op(
                tfl::BuiltinOperator::SPLIT_V,
                vec![Some(src), Some(sizes_t), Some(axis_t)],
                outs,
                tfl::BuiltinOptionsT::SplitVOptions(Box::new(tfl::SplitVOptionsT {
                    num_splits: n,
                })),
            );
        }
        return Ok(());
    }
    // Types SPLIT does not take: one SLICE per part.
    let stored = permuted(&shape, &layout.perm(rank));
    let mut offset = 0;
    for (t, size) in outs.into_iter().zip(sizes) {
        let mut begin = vec![0; rank];
        let mut len = stored.clone();
        begin[sa] = offset;
        len[sa] = size;
        slice_op(lx, src, &begin, &len, t);
        offset += size;
    }
    Ok(())
}

/// A SLICE of `src` (begin and size per stored axis) into `out`.
fn slice_op(lx: &mut Lowerer, src: TensorId, begin: &[usize], size: &[usize], out: TensorId) {
    let name = lx.model.tensor(out).name.clone();
    let b = lx.const_i32(&format!("{name}_begin"), &dims_i32(begin));
    let s = lx.const_i32(&format!("{name}_size"), &dims_i32(size));
    lx.op(
        tfl::BuiltinOperator::SLICE,
        vec![Some(src), Some(b), Some(s)],
        vec![out],
        tfl::BuiltinOptionsT::SliceOptions(Box::default()),
    );
}

/// One axis of a Slice, resolved: elements `start, start + step, ...`, `count` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AxisSlice {
    start: i64,
    count: i64,
    step: i64,
}

/// The Slice per source axis (ONNX clamping rules applied), checked against
/// the output shape.
fn slice_plan(g: &Graph, node: &Node) -> std::result::Result<Vec<AxisSlice>, String> {
    let x = input(node, 0)?;
    let shape = fixed(g, x)?;
    let rank = shape.len();
    let need = |i: usize, what: &str| -> std::result::Result<Option<Vec<i64>>, String> {
        match node.input(i) {
            None => Ok(None),
            Some(v) => const_ints(g, v)?
                .map(Some)
                .ok_or_else(|| format!("Slice {what} must be constant for the TFLite target")),
        }
    };
    let starts = need(1, "starts")?.ok_or("Slice needs starts")?;
    let ends = need(2, "ends")?.ok_or("Slice needs ends")?;
    let axes = need(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = need(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("Slice starts, ends, axes and steps differ in length".into());
    }
    let mut plan: Vec<Option<AxisSlice>> = vec![None; rank];
    for i in 0..starts.len() {
        let axis = normalize_axis(axes[i], rank)?;
        if plan[axis].is_some() {
            return Err(format!("Slice axis {axis} is repeated"));
        }
        let (dim, step) = (shape[axis] as i128, steps[i] as i128);
        if step == 0 {
            return Err("Slice step 0".into());
        }
        let wrap = |v: i64| {
            let v = v as i128;
            if v < 0 { v + dim } else { v }
        };
        let (mut start, mut end) = (wrap(starts[i]), wrap(ends[i]));
        let count = if step > 0 {
            start = start.clamp(0, dim);
            end = end.clamp(0, dim);
            if end > start {
                (end - start + step - 1) / step
            } else {
                0
            }
        } else {
            start = start.clamp(0, dim - 1);
            end = end.clamp(-1, dim - 1);
            if start > end {
                (start - end + (-step) - 1) / (-step)
            } else {
                0
            }
        };
        plan[axis] = Some(AxisSlice {
            start: start as i64,
            count: count as i64,
            step: step as i64,
        });
    }
    let plan: Vec<AxisSlice> = plan
        .into_iter()
        .zip(&shape)
        .map(|(p, &d)| {
            p.unwrap_or(AxisSlice {
                start: 0,
                count: d as i64,
                step: 1,
            })
        })
        .collect();
    let out_shape = fixed(g, node.outputs[0])?;
    let counts: Vec<usize> = plan.iter().map(|p| p.count as usize).collect();
    if counts != out_shape {
        return Err(format!(
            "Slice gives shape {counts:?} but the output is {out_shape:?}"
        ));
    }
    Ok(plan)
}

/// Slice starts or ends computed at run time.
fn bounds_computed(g: &Graph, node: &Node) -> bool {
    [1, 2]
        .iter()
        .any(|&i| node.input(i).is_some_and(|v| g.weight_of(v).is_none()))
}

/// A Slice with computed starts or ends: constant axes and steps, per entry
/// `(source axis, step)`.
fn computed_slice_plan(g: &Graph, node: &Node) -> std::result::Result<Vec<(usize, i64)>, String> {
    let x = input(node, 0)?;
    let shape = fixed(g, x)?;
    let rank = shape.len();
    let (starts, ends) = (input(node, 1)?, input(node, 2)?);
    dtypes(g, &[starts, ends], &[DType::I32, DType::I64], node)?;
    let n = fixed(g, starts)?.iter().product::<usize>();
    if fixed(g, ends)?.iter().product::<usize>() != n {
        return Err("Slice starts and ends differ in length".into());
    }
    let constant = |i: usize, what: &str| -> std::result::Result<Option<Vec<i64>>, String> {
        match node.input(i) {
            None => Ok(None),
            Some(v) => const_ints(g, v)?
                .map(Some)
                .ok_or_else(|| format!("Slice {what} must be constant for the TFLite target")),
        }
    };
    let axes = constant(3, "axes")?.unwrap_or_else(|| (0..n as i64).collect());
    let steps = constant(4, "steps")?.unwrap_or_else(|| vec![1; n]);
    if axes.len() != n || steps.len() != n {
        return Err("Slice starts, ends, axes and steps differ in length".into());
    }
    let mut entries = Vec::new();
    for (&a, &step) in axes.iter().zip(&steps) {
        let axis = normalize_axis(a, rank)?;
        if entries.iter().any(|&(b, _)| b == axis) {
            return Err(format!("Slice axis {axis} is repeated"));
        }
        if step == 0 || step.unsigned_abs() > i32::MAX as u64 {
            return Err(format!("Slice step {step}"));
        }
        entries.push((axis, step));
    }
    let out = fixed(g, node.outputs[0])?;
    for (axis, (&d, &o)) in shape.iter().zip(&out).enumerate() {
        if !entries.iter().any(|&(a, _)| a == axis) && d != o {
            return Err(format!("Slice output dim {axis} differs from the input's"));
        }
    }
    Ok(entries)
}

/// STRIDED_SLICE with computed bounds. Clamping starts to `[-d, d]` and
/// ends to `[-d-1, d]` first keeps ONNX's meaning under TFLite's own
/// clamping (which differs only outside those ranges) and lets int64 bounds
/// narrow to int32.
fn lower_computed_slice(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let entries = computed_slice_plan(lx.g, node).map_err(|why| lx.error(why))?;
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let shape = lx.shape(x)?;
    let rank = shape.len();
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let perm = layout.perm(rank);
    let name = lx.g.value(out).name.clone();
    let src = lx.operand(x, layout)?;
    // Stored axis i takes entry `entry[i]`; `entries.len()` is a padding 0.
    let n = entries.len();
    let entry: Vec<i32> = perm
        .iter()
        .map(|&a| entries.iter().position(|&(b, _)| b == a).unwrap_or(n) as i32)
        .collect();
    let unlisted: i32 = entry
        .iter()
        .enumerate()
        .filter(|&(_, &e)| e as usize == n)
        .map(|(i, _)| 1 << i)
        .sum();
    let mut bounds = Vec::new();
    for (i, what, extra) in [(1, "begin", 0i64), (2, "end", 1)] {
        let v = lx.input(node, i)?;
        let dims: Vec<i64> = entries.iter().map(|&(a, _)| shape[a] as i64).collect();
        let lo: Vec<i64> = dims.iter().map(|&d| -d - extra).collect();
        let t = match const_ints(lx.g, v).map_err(|e| lx.error(e))? {
            Some(values) => {
                let mut clamped: Vec<i32> = values
                    .iter()
                    .zip(lo.iter().zip(&dims))
                    .map(|(&v, (&l, &d))| v.clamp(l, d) as i32)
                    .collect();
                clamped.push(0);
                let full: Vec<i32> = entry.iter().map(|&e| clamped[e as usize]).collect();
                lx.const_i32(&format!("{name}_{what}"), &full)
            }
            None => {
                let dtype = lx.dtype(v)?;
                let t = lx.operand(v, Layout::Source)?;
                let t = reshape_if_needed(lx, t, &[n], &format!("{name}_{what}_flat"));
                let tt = lx.model.tensor(t).dtype;
                let lo_t = const_int(lx, &format!("{name}_{what}_lo"), dtype, &[n], lo)?;
                let hi_t = const_int(lx, &format!("{name}_{what}_hi"), dtype, &[n], dims)?;
                let above = lx.temp(&format!("{name}_{what}_above"), tt, vec![n as i32]);
                lx.op(
                    tfl::BuiltinOperator::MAXIMUM,
                    vec![Some(t), Some(lo_t)],
                    vec![above],
                    tfl::BuiltinOptionsT::MaximumMinimumOptions(Box::default()),
                );
                let clamped = lx.temp(&format!("{name}_{what}_clamped"), tt, vec![n as i32]);
                lx.op(
                    tfl::BuiltinOperator::MINIMUM,
                    vec![Some(above), Some(hi_t)],
                    vec![clamped],
                    tfl::BuiltinOptionsT::MaximumMinimumOptions(Box::default()),
                );
                let mut narrow = clamped;
                if tt != tfl::TensorType::INT32 {
                    narrow = lx.temp(
                        &format!("{name}_{what}_i32"),
                        tfl::TensorType::INT32,
                        vec![n as i32],
                    );
                    lx.op(
                        tfl::BuiltinOperator::CAST,
                        vec![Some(clamped)],
                        vec![narrow],
                        tfl::BuiltinOptionsT::CastOptions(Box::new(tfl::CastOptionsT {
                            in_data_type: tt,
                            out_data_type: tfl::TensorType::INT32,
                        })),
                    );
                }
                let pad = lx.const_i32(&format!("{name}_{what}_pad"), &[0]);
                let padded = lx.temp(
                    &format!("{name}_{what}_padded"),
                    tfl::TensorType::INT32,
                    vec![n as i32 + 1],
                );
                lx.op(
                    tfl::BuiltinOperator::CONCATENATION,
                    vec![Some(narrow), Some(pad)],
                    vec![padded],
                    tfl::BuiltinOptionsT::ConcatenationOptions(Box::new(
                        tfl::ConcatenationOptionsT {
                            axis: 0,
                            fused_activation_function: tfl::ActivationFunctionType::NONE,
                        },
                    )),
                );
                let order = lx.const_i32(&format!("{name}_{what}_order"), &entry);
                let full = lx.temp(
                    &format!("{name}_{what}_full"),
                    tfl::TensorType::INT32,
                    vec![rank as i32],
                );
                lx.op(
                    tfl::BuiltinOperator::GATHER,
                    vec![Some(padded), Some(order)],
                    vec![full],
                    tfl::BuiltinOptionsT::GatherOptions(Box::new(tfl::GatherOptionsT {
                        axis: 0,
                        batch_dims: 0,
                    })),
                );
                full
            }
        };
        bounds.push(t);
    }
    let strides: Vec<i32> = entry
        .iter()
        .map(|&e| entries.get(e as usize).map_or(1, |&(_, s)| s as i32))
        .collect();
    let strides = lx.const_i32(&format!("{name}_strides"), &strides);
    let t = lx.define(out, layout)?;
    lx.op(
        tfl::BuiltinOperator::STRIDED_SLICE,
        vec![Some(src), Some(bounds[0]), Some(bounds[1]), Some(strides)],
        vec![t],
        tfl::BuiltinOptionsT::StridedSliceOptions(Box::new(tfl::StridedSliceOptionsT {
            begin_mask: unlisted,
            end_mask: unlisted,
            ..Default::default()
        })),
    );
    Ok(())
}

/// `t` reshaped to `shape` unless it already has it.
fn reshape_if_needed(lx: &mut Lowerer, t: TensorId, shape: &[usize], name: &str) -> TensorId {
    if lx.model.tensor(t).shape == dims_i32(shape) {
        t
    } else {
        reshape_tensor(lx, t, shape, name)
    }
}

fn lower_slice(lx: &mut Lowerer, node: &Node) -> Result<()> {
    if bounds_computed(lx.g, node) {
        return lower_computed_slice(lx, node);
    }
    let plan = slice_plan(lx.g, node).map_err(|why| lx.error(why))?;
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let shape = lx.shape(x)?;
    let rank = shape.len();
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let perm = layout.perm(rank);
    let stored: Vec<AxisSlice> = perm.iter().map(|&a| plan[a]).collect();
    let src = lx.operand(x, layout)?;
    if stored
        .iter()
        .zip(permuted(&shape, &perm))
        .all(|(p, d)| p.start == 0 && p.count == d as i64 && p.step == 1)
    {
        lx.alias(out, src, layout);
        return Ok(());
    }
    let t = lx.define(out, layout)?;
    let name = lx.g.value(out).name.clone();
    if stored.iter().all(|p| p.step == 1) {
        let begin: Vec<usize> = stored.iter().map(|p| p.start as usize).collect();
        let size: Vec<usize> = stored.iter().map(|p| p.count as usize).collect();
        slice_op(lx, src, &begin, &size, t);
        return Ok(());
    }
    let mut end_mask = 0;
    let mut ends = Vec::new();
    for (i, p) in stored.iter().enumerate() {
        // The last element taken, plus one step's direction.
        let end = p.start + (p.count - 1) * p.step + p.step.signum();
        if end < 0 {
            // -1 would count from the back; the mask means "through index 0".
            end_mask |= 1 << i;
            ends.push(0);
        } else {
            ends.push(end as i32);
        }
    }
    let begin: Vec<i32> = stored.iter().map(|p| p.start as i32).collect();
    let strides: Vec<i32> = stored.iter().map(|p| p.step as i32).collect();
    let b = lx.const_i32(&format!("{name}_begin"), &begin);
    let e = lx.const_i32(&format!("{name}_end"), &ends);
    let s = lx.const_i32(&format!("{name}_strides"), &strides);
    lx.op(
        tfl::BuiltinOperator::STRIDED_SLICE,
        vec![Some(src), Some(b), Some(e), Some(s)],
        vec![t],
        tfl::BuiltinOptionsT::StridedSliceOptions(Box::new(tfl::StridedSliceOptionsT {
            end_mask,
            ..Default::default()
        })),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Gathers.

/// Constant indices must lie in `-dim..dim` per component (`dims` has one
/// entry, or one per index component when `per_component`); non-constant
/// ones are normalized at run time with FLOOR_MOD.
fn check_indices(
    g: &Graph,
    idx: ValueId,
    dims: &[usize],
    per_component: bool,
) -> std::result::Result<(), String> {
    if let Some(values) = const_ints(g, idx)? {
        for (i, &v) in values.iter().enumerate() {
            let d = if per_component {
                dims[i % dims.len()]
            } else {
                dims[0]
            } as i64;
            if v < -d || v >= d {
                return Err(format!("index {v} is out of range for a dim of {d}"));
            }
        }
    }
    Ok(())
}

/// `idx` as a TFLite tensor of non-negative indices: constants normalized now
/// (as int32), others through FLOOR_MOD by `dims` (one dim, or one per
/// component along the last axis).
fn indices_operand(lx: &mut Lowerer, idx: ValueId, dims: &[usize]) -> Result<TensorId> {
    let name = lx.g.value(idx).name.clone();
    let shape = lx.shape(idx)?;
    if let Some(values) = const_ints(lx.g, idx).map_err(|e| lx.error(e))? {
        let fixed: Vec<i32> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let d = dims[i % dims.len()] as i64;
                (if v < 0 { v + d } else { v }) as i32
            })
            .collect();
        return Ok(lx.const_i32_shaped(&format!("{name}_i32"), &fixed, &shape));
    }
    let t = lx.operand(idx, Layout::Source)?;
    let dtype = lx.dtype(idx)?;
    // FLOOR_MOD broadcasts only up to rank 4; above that the divisor gets
    // the indices' full shape.
    let (denom_shape, values): (Vec<usize>, Vec<i64>) = if shape.len() > FLOOR_MOD_MAX_RANK {
        let n: usize = shape.iter().product();
        (
            shape.clone(),
            (0..n).map(|i| dims[i % dims.len()] as i64).collect(),
        )
    } else if dims.len() == 1 {
        (vec![], vec![dims[0] as i64])
    } else {
        (vec![dims.len()], dims.iter().map(|&d| d as i64).collect())
    };
    let denom = const_int(lx, &format!("{name}_dims"), dtype, &denom_shape, values)?;
    let tt = lx.model.tensor(t).dtype;
    let out = lx.temp(&format!("{name}_wrapped"), tt, dims_i32(&shape));
    lx.op(
        tfl::BuiltinOperator::FLOOR_MOD,
        vec![Some(t), Some(denom)],
        vec![out],
        tfl::BuiltinOptionsT::FloorModOptions(Box::default()),
    );
    Ok(out)
}

fn lower_gather(lx: &mut Lowerer, node: &Node, axis: i64) -> Result<()> {
    let data = lx.input(node, 0)?;
    let idx = lx.input(node, 1)?;
    let out = node.outputs[0];
    let shape = lx.shape(data)?;
    let rank = shape.len();
    let axis = normalize_axis(axis, rank).map_err(|e| lx.error(e))?;
    let q = lx.rank(idx)?;
    // Gathering on the stored tensor keeps the other axes in stored order:
    // usable when that order is a layout of the output.
    let sx = stored_perm(lx, data)?;
    let out_order: Vec<usize> = sx
        .iter()
        .flat_map(|&a| -> Vec<usize> {
            if a == axis {
                (axis..axis + q).collect()
            } else if a < axis {
                vec![a]
            } else {
                vec![a + q - 1]
            }
        })
        .collect();
    let (src, data_layout, out_layout) = match layout_of_perm(&out_order) {
        Some(lo) => {
            let l = lx.layout_of(data);
            (lx.operand(data, l)?, l.effective(rank), lo)
        }
        None => (
            lx.operand(data, Layout::Source)?,
            Layout::Source,
            Layout::Source,
        ),
    };
    let indices = indices_operand(lx, idx, &[shape[axis]])?;
    let t = lx.define(out, out_layout)?;
    lx.op(
        tfl::BuiltinOperator::GATHER,
        vec![Some(src), Some(indices)],
        vec![t],
        tfl::BuiltinOptionsT::GatherOptions(Box::new(tfl::GatherOptionsT {
            axis: data_layout.stored_axis(axis, rank) as i32,
            batch_dims: 0,
        })),
    );
    Ok(())
}

/// The data dims GatherND's index components address (after the batch dims).
fn gather_nd_dims(
    g: &Graph,
    node: &Node,
    a: &GatherNdAttrs,
) -> std::result::Result<Vec<usize>, String> {
    let data = fixed(g, input(node, 0)?)?;
    let idx = fixed(g, input(node, 1)?)?;
    let b = a.batch_dims;
    let m = *idx
        .last()
        .ok_or("GatherND indices must have rank 1 or more")?;
    if b >= idx.len() || b + m > data.len() || idx[..b] != data[..b] {
        return Err(format!(
            "GatherND indices {idx:?} with batch_dims {b} do not fit data {data:?}"
        ));
    }
    if m == 0 {
        return Err("GatherND with an empty index tuple".into());
    }
    Ok(data[b..b + m].to_vec())
}

/// GATHER_ND; batch dims become leading index components (the batch
/// coordinates of each index tuple), which TFLite's batch-less form takes.
fn lower_gather_nd(lx: &mut Lowerer, node: &Node, a: &GatherNdAttrs) -> Result<()> {
    let dims = gather_nd_dims(lx.g, node, a).map_err(|e| lx.error(e))?;
    let data = lx.input(node, 0)?;
    let idx = lx.input(node, 1)?;
    let out = node.outputs[0];
    let idx_shape = lx.shape(idx)?;
    let src = lx.operand(data, Layout::Source)?;
    let mut indices = indices_operand(lx, idx, &dims)?;
    let b = a.batch_dims;
    if b > 0 {
        let outer = &idx_shape[..idx_shape.len() - 1];
        let mut coords = Vec::new();
        for flat in 0..outer.iter().product::<usize>() {
            let mut rest = flat;
            let mut c = vec![0i64; outer.len()];
            for k in (0..outer.len()).rev() {
                c[k] = (rest % outer[k]) as i64;
                rest /= outer[k];
            }
            coords.extend_from_slice(&c[..b]);
        }
        let mut bshape = outer.to_vec();
        bshape.push(b);
        let name = lx.g.value(idx).name.clone();
        let dtype = match lx.model.tensor(indices).dtype {
            tfl::TensorType::INT64 => DType::I64,
            tfl::TensorType::INT16 => DType::I16,
            _ => DType::I32,
        };
        let batch = const_int(lx, &format!("{name}_batch"), dtype, &bshape, coords)?;
        let mut full = outer.to_vec();
        full.push(b + dims.len());
        let tt = lx.model.tensor(indices).dtype;
        let joined = lx.temp(&format!("{name}_full"), tt, dims_i32(&full));
        lx.op(
            tfl::BuiltinOperator::CONCATENATION,
            vec![Some(batch), Some(indices)],
            vec![joined],
            tfl::BuiltinOptionsT::ConcatenationOptions(Box::new(tfl::ConcatenationOptionsT {
                axis: outer.len() as i32,
                fused_activation_function: tfl::ActivationFunctionType::NONE,
            })),
        );
        indices = joined;
    }
    let t = lx.define(out, Layout::Source)?;
    lx.op(
        tfl::BuiltinOperator::GATHER_ND,
        vec![Some(src), Some(indices)],
        vec![t],
        tfl::BuiltinOptionsT::GatherNdOptions(Box::default()),
    );
    Ok(())
}

/// The full data coordinate of every position of `idx` (shape `S`) with
/// the `axis` component replaced by the index: `S + [rank]`, for GATHER_ND
/// and SCATTER_ND to address single elements. Constant for constant
/// indices; else CONCATENATION of constant position columns and the
/// FLOOR_MOD-wrapped indices.
fn element_coords(
    lx: &mut Lowerer,
    idx: ValueId,
    data_shape: &[usize],
    axis: usize,
) -> Result<TensorId> {
    let rank = data_shape.len();
    let s = lx.shape(idx)?;
    let n: usize = s.iter().product();
    let position = |flat: usize| -> Vec<i64> {
        let mut rest = flat;
        let mut c = vec![0i64; rank];
        for k in (0..rank).rev() {
            c[k] = (rest % s[k]) as i64;
            rest /= s[k];
        }
        c
    };
    let name = lx.g.value(idx).name.clone();
    let mut coord_shape = s.clone();
    coord_shape.push(rank);
    if let Some(values) = const_ints(lx.g, idx).map_err(|e| lx.error(e))? {
        let d = data_shape[axis] as i64;
        let mut all = Vec::with_capacity(n * rank);
        for (flat, &v) in values.iter().enumerate() {
            let mut c = position(flat);
            c[axis] = if v < 0 { v + d } else { v };
            all.extend(c);
        }
        let all: Vec<i32> = all.into_iter().map(|v| v as i32).collect();
        return Ok(lx.const_i32_shaped(&format!("{name}_coords"), &all, &coord_shape));
    }
    let dtype = lx.dtype(idx)?;
    let wrapped = indices_operand(lx, idx, &[data_shape[axis]])?;
    let mut column_shape = s.clone();
    column_shape.push(1);
    let column = reshape_tensor(lx, wrapped, &column_shape, &format!("{name}_column"));
    let mut parts = Vec::new();
    for k in 0..rank {
        if k == axis {
            parts.push(Some(column));
        } else {
            let values = (0..n).map(|flat| position(flat)[k]).collect();
            let iota = const_int(lx, &format!("{name}_iota{k}"), dtype, &column_shape, values)?;
            parts.push(Some(iota));
        }
    }
    let tt = lx.model.tensor(column).dtype;
    let joined = lx.temp(&format!("{name}_coords"), tt, dims_i32(&coord_shape));
    lx.op(
        tfl::BuiltinOperator::CONCATENATION,
        parts,
        vec![joined],
        tfl::BuiltinOptionsT::ConcatenationOptions(Box::new(tfl::ConcatenationOptionsT {
            axis: rank as i32,
            fused_activation_function: tfl::ActivationFunctionType::NONE,
        })),
    );
    Ok(joined)
}

/// GatherElements as GATHER_ND of each output position's full coordinate.
fn lower_gather_elements(lx: &mut Lowerer, node: &Node, axis: i64) -> Result<()> {
    let data = lx.input(node, 0)?;
    let idx = lx.input(node, 1)?;
    let out = node.outputs[0];
    let shape = lx.shape(data)?;
    let axis = normalize_axis(axis, shape.len()).map_err(|e| lx.error(e))?;
    let src = lx.operand(data, Layout::Source)?;
    let coords = element_coords(lx, idx, &shape, axis)?;
    let t = lx.define(out, Layout::Source)?;
    lx.op(
        tfl::BuiltinOperator::GATHER_ND,
        vec![Some(src), Some(coords)],
        vec![t],
        tfl::BuiltinOptionsT::GatherNdOptions(Box::default()),
    );
    Ok(())
}

/// Compress with a constant condition is a Gather of the kept positions.
fn compress_indices(
    g: &Graph,
    node: &Node,
    axis: Option<i64>,
) -> std::result::Result<(Option<usize>, Vec<i64>), String> {
    let data = fixed(g, input(node, 0)?)?;
    let cond = const_ints(g, input(node, 1)?)?
        .ok_or("Compress needs a constant condition for the TFLite target")?;
    let (axis, len) = match axis {
        Some(a) => {
            let a = normalize_axis(a, data.len())?;
            (Some(a), data[a])
        }
        None => (None, data.iter().product()),
    };
    let kept: Vec<i64> = cond
        .iter()
        .take(len)
        .enumerate()
        .filter(|(_, c)| **c != 0)
        .map(|(i, _)| i as i64)
        .collect();
    let out = fixed(g, node.outputs[0])?;
    let expected = match axis {
        Some(a) => out.get(a).copied(),
        None => out.first().copied(),
    };
    if expected != Some(kept.len()) {
        return Err(format!(
            "Compress keeps {} entries but the output is {out:?}",
            kept.len()
        ));
    }
    Ok((axis, kept))
}

fn lower_compress(lx: &mut Lowerer, node: &Node, axis: Option<i64>) -> Result<()> {
    let (axis, kept) = compress_indices(lx.g, node, axis).map_err(|e| lx.error(e))?;
    let data = lx.input(node, 0)?;
    let out = node.outputs[0];
    let mut src = lx.operand(data, Layout::Source)?;
    let name = lx.g.value(out).name.clone();
    if axis.is_none() {
        let n = lx.shape(data)?.iter().product::<usize>();
        src = reshape_tensor(lx, src, &[n], &format!("{name}_flat"));
    }
    let kept: Vec<i32> = kept.iter().map(|&i| i as i32).collect();
    let indices = lx.const_i32(&format!("{name}_kept"), &kept);
    let t = lx.define(out, Layout::Source)?;
    lx.op(
        tfl::BuiltinOperator::GATHER,
        vec![Some(src), Some(indices)],
        vec![t],
        tfl::BuiltinOptionsT::GatherOptions(Box::new(tfl::GatherOptionsT {
            axis: axis.unwrap_or(0) as i32,
            batch_dims: 0,
        })),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Expand, Tile.

fn lower_expand(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let out_shape = lx.shape(out)?;
    let rank = out_shape.len();
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let src = lx.broadcast_operand(x, layout, rank)?;
    let stored = permuted(&out_shape, &layout.perm(rank));
    if lx.model.tensor(src).shape == dims_i32(&stored) {
        lx.alias(out, src, layout);
        return Ok(());
    }
    let t = lx.define(out, layout)?;
    let name = lx.g.value(out).name.clone();
    let shape_t = lx.const_i32(&format!("{name}_shape"), &dims_i32(&stored));
    // BROADCAST_TO is registered from version 2 on.
    lx.op_version(
        tfl::BuiltinOperator::BROADCAST_TO,
        2,
        vec![Some(src), Some(shape_t)],
        vec![t],
        tfl::BuiltinOptionsT::BroadcastToOptions(Box::default()),
    );
    Ok(())
}

/// The repeats, which the static shapes fix (`out = in * repeats` per axis).
fn tile_repeats(g: &Graph, node: &Node) -> std::result::Result<Vec<usize>, String> {
    let shape = fixed(g, input(node, 0)?)?;
    let out = fixed(g, node.outputs[0])?;
    if shape.len() != out.len() || shape.iter().zip(&out).any(|(&i, &o)| i == 0 || o % i != 0) {
        return Err(format!("Tile of {shape:?} cannot give {out:?}"));
    }
    let repeats: Vec<usize> = shape.iter().zip(&out).map(|(&i, &o)| o / i).collect();
    if let Some(given) = const_ints(g, input(node, 1)?)?
        && given.iter().map(|&r| r as usize).collect::<Vec<_>>() != repeats
    {
        return Err(format!(
            "Tile repeats {given:?} do not give the output shape {out:?}"
        ));
    }
    Ok(repeats)
}

fn lower_tile(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let repeats = tile_repeats(lx.g, node).map_err(|e| lx.error(e))?;
    let rank = lx.rank(x)?;
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let src = lx.operand(x, layout)?;
    if repeats.iter().all(|&r| r == 1) {
        lx.alias(out, src, layout);
        return Ok(());
    }
    let multiples: Vec<i32> = layout
        .perm(rank)
        .iter()
        .map(|&a| repeats[a] as i32)
        .collect();
    let t = lx.define(out, layout)?;
    let name = lx.g.value(out).name.clone();
    let m = lx.const_i32(&format!("{name}_multiples"), &multiples);
    lx.op(
        tfl::BuiltinOperator::TILE,
        vec![Some(src), Some(m)],
        vec![t],
        tfl::BuiltinOptionsT::TileOptions(Box::default()),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Ops whose output is a constant once shapes are static.

fn constant_output(g: &Graph, node: &Node) -> std::result::Result<Tensor, String> {
    let x = input(node, 0)?;
    let t = match &node.op {
        Op::Shape(a) => {
            let shape = fixed(g, x)?;
            let rank = shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(a.start);
            let end = clamp(a.end.unwrap_or(rank)).max(start);
            let dims: Vec<i64> = shape[start..end].iter().map(|&d| d as i64).collect();
            Tensor::from_i64(&[dims.len()], dims).map_err(|e| e.to_string())?
        }
        Op::Size => Tensor::scalar_i64(fixed(g, x)?.iter().product::<usize>() as i64),
        // The static output shape is the shape input's value.
        Op::ConstantOfShape(_) => {
            let out = fixed(g, node.outputs[0])?;
            let shape = Tensor::from_i64(&[out.len()], out.iter().map(|&d| d as i64).collect())
                .map_err(|e| e.to_string())?;
            eval(&node.op, &[Some(&shape)])?
        }
        Op::EyeLike(_) => {
            let shape = fixed(g, x)?;
            let d = dtype_of(g, x)?;
            let bytes = vec![
                0u8;
                d.bytes_for(shape.iter().product::<usize>() as u64)
                    .unwrap_or(0) as usize
            ];
            let dummy = Tensor::from_bytes(d, &shape, &bytes).map_err(|e| e.to_string())?;
            eval(&node.op, &[Some(&dummy)])?
        }
        _ => {
            let mut inputs = Vec::new();
            for v in &node.inputs {
                inputs.push(match v {
                    Some(v) => Some(const_tensor(g, *v)?.ok_or_else(|| {
                        format!(
                            "{} of a non-constant input; TFLite needs it folded to a constant",
                            node.op.name()
                        )
                    })?),
                    None => None,
                });
            }
            let refs: Vec<Option<&Tensor>> = inputs.iter().map(|t| t.as_ref()).collect();
            eval(&node.op, &refs)?
        }
    };
    let out = node.outputs[0];
    if t.dtype() != dtype_of(g, out)? || t.shape() != fixed(g, out)?.as_slice() {
        return Err(format!(
            "{} evaluates to {}{:?}, not the output's type",
            node.op.name(),
            t.dtype(),
            t.shape()
        ));
    }
    Ok(t)
}

fn all_constant(g: &Graph, node: &Node) -> bool {
    node.inputs
        .iter()
        .flatten()
        .all(|&v| g.weight_of(v).is_some())
}

/// Range of computed scalars: `start + i * delta` for the `i` the static
/// output length gives (ONNX's definition, in the output's type).
fn lower_range(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let (start, delta) = (lx.input(node, 0)?, lx.input(node, 2)?);
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let n = lx.shape(out)?.iter().product::<usize>();
    let dtype = lx.dtype(out)?;
    let iota = Tensor::from_i64(&[n], (0..n as i64).collect())?
        .cast(dtype)
        .map_err(|e| lx.error(e.to_string()))?;
    let iota = lx.const_tensor(&format!("{name}_iota"), &iota)?;
    let delta = lx.operand(delta, Layout::Source)?;
    let start = lx.operand(start, Layout::Source)?;
    let tt = lx.model.tensor(iota).dtype;
    let steps = lx.temp(&format!("{name}_steps"), tt, vec![n as i32]);
    lx.op(
        tfl::BuiltinOperator::MUL,
        vec![Some(iota), Some(delta)],
        vec![steps],
        tfl::BuiltinOptionsT::MulOptions(Box::default()),
    );
    let t = lx.define(out, Layout::Source)?;
    lx.op(
        tfl::BuiltinOperator::ADD,
        vec![Some(steps), Some(start)],
        vec![t],
        tfl::BuiltinOptionsT::AddOptions(Box::default()),
    );
    Ok(())
}

fn eval(op: &Op, inputs: &[Option<&Tensor>]) -> std::result::Result<Tensor, String> {
    crate::ir::eval::eval_op(op, inputs)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} produced no output", op.name()))
}

// ---------------------------------------------------------------------------
// TopK, OneHot, Trilu, ScatterND.

struct TopKPlan {
    k: usize,
    /// The layout the op works in (the axis is its last stored axis), or
    /// `None` when the axis must be moved last by a transpose.
    layout: Option<Layout>,
}

fn topk_plan(g: &Graph, node: &Node, a: &TopKAttrs) -> std::result::Result<TopKPlan, String> {
    let x = input(node, 0)?;
    let shape = fixed(g, x)?;
    let rank = shape.len();
    let axis = normalize_axis(a.axis, rank)?;
    if a.largest {
        dtypes(g, &[x], TOPK, node)?;
    } else {
        // Smallest = largest of the negation; exact for floats only.
        dtypes(g, &[x], &[DType::F32], node)?;
    }
    dtypes(g, &node.outputs[1..2], &[DType::I64, DType::I32], node)?;
    // The static output shape fixes k (ONNX's k input must equal it).
    let out = fixed(g, node.outputs[0])?;
    if out.len() != rank || fixed(g, node.outputs[1])? != out {
        return Err("TopK outputs do not have the input's rank".into());
    }
    let k = out[axis];
    if let Some(given) = const_ints(g, input(node, 1)?)?
        && given != [k as i64]
    {
        return Err(format!("TopK k {given:?} does not match the output's {k}"));
    }
    Ok(TopKPlan {
        k,
        layout: if axis == rank - 1 {
            Some(Layout::Source)
        } else if rank >= 3 && axis == 1 {
            Some(Layout::ChannelsLast)
        } else {
            None
        },
    })
}

fn lower_topk(lx: &mut Lowerer, node: &Node, a: &TopKAttrs) -> Result<()> {
    let plan = topk_plan(lx.g, node, a).map_err(|e| lx.error(e))?;
    let x = lx.input(node, 0)?;
    let (values, indices) = (node.outputs[0], node.outputs[1]);
    let shape = lx.shape(x)?;
    let rank = shape.len();
    let axis = normalize_axis(a.axis, rank).map_err(|e| lx.error(e))?;
    let name = lx.g.value(values).name.clone();
    // Prefer the stored layout when it already has the axis last.
    let layout = match plan.layout {
        Some(Layout::Source)
            if lx.layout_of(x).effective(rank) == Layout::ChannelsLast && axis == 1 =>
        {
            Layout::ChannelsLast
        }
        Some(l) => l,
        None => Layout::Source,
    };
    let mut src = lx.operand(x, layout)?;
    // Without a layout that ends in `axis`, move it last and back.
    let mut to_last: Option<Vec<usize>> = None;
    if plan.layout.is_none() {
        let mut p: Vec<usize> = (0..rank).filter(|&d| d != axis).collect();
        p.push(axis);
        src = lx.transpose(src, &p, &format!("{name}_axis_last"))?;
        to_last = Some(p);
    }
    let dtype = lx.model.tensor(src).dtype;
    let mut in_shape = lx.model.tensor(src).shape.clone();
    if !a.largest {
        let neg = lx.temp(&format!("{name}_neg"), dtype, in_shape.clone());
        lx.op(
            tfl::BuiltinOperator::NEG,
            vec![Some(src)],
            vec![neg],
            tfl::BuiltinOptionsT::NegOptions(Box::default()),
        );
        src = neg;
    }
    *in_shape.last_mut().expect("rank >= 1") = plan.k as i32;
    let k_t = const_i32_scalar(lx, &format!("{name}_k"), plan.k as i32);
    let direct = to_last.is_none() && a.largest;
    let vals = if direct {
        lx.define(values, layout)?
    } else {
        lx.temp(&format!("{name}_top"), dtype, in_shape.clone())
    };
    let idx32 = lx.temp(
        &format!("{name}_indices"),
        tfl::TensorType::INT32,
        in_shape.clone(),
    );
    lx.op(
        tfl::BuiltinOperator::TOPK_V2,
        vec![Some(src), Some(k_t)],
        vec![vals, idx32],
        tfl::BuiltinOptionsT::TopKV2Options(Box::default()),
    );
    let mut vals = vals;
    if !a.largest {
        let back = if to_last.is_none() {
            lx.define(values, layout)?
        } else {
            lx.temp(&format!("{name}_unneg"), dtype, in_shape.clone())
        };
        lx.op(
            tfl::BuiltinOperator::NEG,
            vec![Some(vals)],
            vec![back],
            tfl::BuiltinOptionsT::NegOptions(Box::default()),
        );
        vals = back;
    }
    let idx_dtype = lx.dtype(indices)?;
    let mut idx = idx32;
    if idx_dtype == DType::I64 {
        let wide = lx.temp(
            &format!("{name}_indices64"),
            tfl::TensorType::INT64,
            in_shape,
        );
        lx.op(
            tfl::BuiltinOperator::CAST,
            vec![Some(idx32)],
            vec![wide],
            tfl::BuiltinOptionsT::CastOptions(Box::new(tfl::CastOptionsT {
                in_data_type: tfl::TensorType::INT32,
                out_data_type: tfl::TensorType::INT64,
            })),
        );
        idx = wide;
    }
    match to_last {
        Some(p) => {
            let mut back = vec![0; rank];
            for (i, &a) in p.iter().enumerate() {
                back[a] = i;
            }
            let v = lx.transpose(vals, &back, &name)?;
            lx.alias(values, v, Layout::Source);
            let iname = lx.g.value(indices).name.clone();
            let i = lx.transpose(idx, &back, &iname)?;
            lx.alias(indices, i, Layout::Source);
        }
        None => {
            // `vals` is already the values output's tensor.
            lx.alias(indices, idx, layout);
        }
    }
    Ok(())
}

struct OneHotPlan {
    /// The output's size along `axis` (what ONNX's depth must be).
    depth: i64,
    axis: usize,
}

fn one_hot_plan(g: &Graph, node: &Node, axis: i64) -> std::result::Result<OneHotPlan, String> {
    let idx = input(node, 0)?;
    let values = input(node, 2)?;
    let out = node.outputs[0];
    dtypes(g, &[out], ONE_HOT, node)?;
    dtypes(g, &[idx], &[DType::I32, DType::I64, DType::F32], node)?;
    if fixed(g, values)?.iter().product::<usize>() != 2 {
        return Err("OneHot values must have two elements".into());
    }
    let out_shape = fixed(g, out)?;
    let axis = normalize_axis(axis, out_shape.len())?;
    let depth = out_shape[axis] as i64;
    if let Some(d) = const_tensor(g, input(node, 1)?)? {
        if d.to_f64_vec().first().map(|v| v.trunc() as i64) != Some(depth) {
            return Err(format!("OneHot depth does not match the output's {depth}"));
        }
    }
    Ok(OneHotPlan { depth, axis })
}

/// A scalar integer constant, or one of the full `shape` where the consuming
/// op would have to broadcast beyond rank 4.
fn int_operand(
    lx: &mut Lowerer,
    hint: &str,
    dtype: DType,
    shape: &[usize],
    value: i64,
) -> Result<TensorId> {
    if shape.len() > FLOOR_MOD_MAX_RANK {
        let n = shape.iter().product();
        const_int(lx, hint, dtype, shape, vec![value; n])
    } else {
        const_int(lx, hint, dtype, &[], vec![value])
    }
}

/// ONE_HOT with the depth the static output shape fixes. ONNX counts
/// negative indices from `depth` and TFLite leaves them off, so they are
/// wrapped first: constants now, others by SELECT_V2(idx < 0, idx + depth, idx)
/// (FLOOR_MOD would also wrap the out-of-range ones ONNX leaves off).
fn lower_one_hot(lx: &mut Lowerer, node: &Node, axis: i64) -> Result<()> {
    let plan = one_hot_plan(lx.g, node, axis).map_err(|e| lx.error(e))?;
    let idx = lx.input(node, 0)?;
    let values = lx.input(node, 2)?;
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let shape = lx.shape(idx)?;
    let d = plan.depth;
    let indices = if let Some(t) = const_tensor(lx.g, idx).map_err(|e| lx.error(e))? {
        let values: Vec<i32> = t
            .to_f64_vec()
            .iter()
            .map(|&v| {
                let v = v.trunc() as i64;
                let v = if v < 0 { v + d } else { v };
                v.clamp(-1, d) as i32
            })
            .collect();
        lx.const_i32_shaped(&format!("{name}_indices"), &values, &shape)
    } else {
        let mut t = lx.operand(idx, Layout::Source)?;
        let mut dtype = lx.dtype(idx)?;
        if dtype == DType::F32 {
            let cast = lx.temp(
                &format!("{name}_indices64"),
                tfl::TensorType::INT64,
                dims_i32(&shape),
            );
            lx.op(
                tfl::BuiltinOperator::CAST,
                vec![Some(t)],
                vec![cast],
                tfl::BuiltinOptionsT::CastOptions(Box::new(tfl::CastOptionsT {
                    in_data_type: tfl::TensorType::FLOAT32,
                    out_data_type: tfl::TensorType::INT64,
                })),
            );
            t = cast;
            dtype = DType::I64;
        }
        let tt = lx.model.tensor(t).dtype;
        let zero = int_operand(lx, &format!("{name}_zero"), dtype, &shape, 0)?;
        let depth = int_operand(lx, &format!("{name}_depth_i"), dtype, &shape, d)?;
        let negative = lx.temp(
            &format!("{name}_negative"),
            tfl::TensorType::BOOL,
            dims_i32(&shape),
        );
        lx.op(
            tfl::BuiltinOperator::LESS,
            vec![Some(t), Some(zero)],
            vec![negative],
            tfl::BuiltinOptionsT::LessOptions(Box::default()),
        );
        let shifted = lx.temp(&format!("{name}_shifted"), tt, dims_i32(&shape));
        lx.op(
            tfl::BuiltinOperator::ADD,
            vec![Some(t), Some(depth)],
            vec![shifted],
            tfl::BuiltinOptionsT::AddOptions(Box::default()),
        );
        let wrapped = lx.temp(&format!("{name}_wrapped"), tt, dims_i32(&shape));
        lx.op(
            tfl::BuiltinOperator::SELECT_V2,
            vec![Some(negative), Some(shifted), Some(t)],
            vec![wrapped],
            tfl::BuiltinOptionsT::SelectV2Options(Box::default()),
        );
        wrapped
    };
    let depth = const_i32_scalar(lx, &format!("{name}_depth"), d as i32);
    // off and on: the two elements of `values`, as one-element tensors.
    let (off, on) = match const_tensor(lx.g, values).map_err(|e| lx.error(e))? {
        Some(v) => {
            let dtype = lx.dtype(out)?;
            let v = v.cast(dtype).map_err(|e| lx.error(e.to_string()))?;
            let flat = super::reshape(&v, &[2]).map_err(|e| lx.error(e))?;
            let mut pick = |i: usize, what: &str| -> Result<TensorId> {
                let op = Op::Slice;
                let starts = Tensor::from_i64(&[1], vec![i as i64])?;
                let ends = Tensor::from_i64(&[1], vec![i as i64 + 1])?;
                let one = eval(&op, &[Some(&flat), Some(&starts), Some(&ends)])
                    .map_err(|e| lx.error(e))?;
                lx.const_tensor(&format!("{name}_{what}"), &one)
            };
            (pick(0, "off")?, pick(1, "on")?)
        }
        None => {
            let src = lx.operand(values, Layout::Source)?;
            let flat = reshape_tensor(lx, src, &[2], &format!("{name}_values"));
            let dtype = lx.model.tensor(flat).dtype;
            let off = lx.temp(&format!("{name}_off"), dtype, vec![1]);
            slice_op(lx, flat, &[0], &[1], off);
            let on = lx.temp(&format!("{name}_on"), dtype, vec![1]);
            slice_op(lx, flat, &[1], &[1], on);
            (off, on)
        }
    };
    let t = lx.define(out, Layout::Source)?;
    lx.op(
        tfl::BuiltinOperator::ONE_HOT,
        vec![Some(indices), Some(depth), Some(on), Some(off)],
        vec![t],
        tfl::BuiltinOptionsT::OneHotOptions(Box::new(tfl::OneHotOptionsT {
            axis: plan.axis as i32,
        })),
    );
    Ok(())
}

/// Trilu's k when it is a constant (0 when absent); `None` when computed.
fn trilu_k(g: &Graph, node: &Node) -> std::result::Result<Option<i64>, String> {
    match node.input(1) {
        None => Ok(Some(0)),
        Some(v) => {
            dtypes(g, &[v], &[DType::I64], node)?;
            if fixed(g, v)?.iter().product::<usize>() != 1 {
                return Err("Trilu k must have one element".into());
            }
            Ok(const_ints(g, v)?.map(|k| k[0]))
        }
    }
}

/// Trilu: SELECT_V2 between the input and zeros by a triangle mask, a
/// constant for a constant k, else `(col - row) >= k` (or `<=`) computed.
fn lower_trilu(lx: &mut Lowerer, node: &Node, upper: bool) -> Result<()> {
    let k = trilu_k(lx.g, node).map_err(|e| lx.error(e))?;
    let x = lx.input(node, 0)?;
    let out = node.outputs[0];
    let shape = lx.shape(x)?;
    let rank = shape.len();
    let (rows, cols) = (shape[rank - 2], shape[rank - 1]);
    let name = lx.g.value(out).name.clone();
    let diagonal = |i: usize| (i % cols) as i64 - (i / cols) as i64;
    let mask_t = match k {
        Some(k) => {
            let mask: Vec<bool> = (0..rows * cols)
                .map(|i| {
                    if upper {
                        diagonal(i) >= k
                    } else {
                        diagonal(i) <= k
                    }
                })
                .collect();
            let mask = Tensor::Bool(
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[rows, cols]), mask)
                    .map_err(|e| lx.error(e.to_string()))?,
            );
            lx.const_tensor(&format!("{name}_mask"), &mask)?
        }
        None => {
            let offsets =
                Tensor::from_i64(&[rows, cols], (0..rows * cols).map(diagonal).collect())?;
            let offsets = lx.const_tensor(&format!("{name}_offsets"), &offsets)?;
            let kv = lx.input(node, 1)?;
            let kt = lx.operand(kv, Layout::Source)?;
            let mask = lx.temp(
                &format!("{name}_mask"),
                tfl::TensorType::BOOL,
                dims_i32(&[rows, cols]),
            );
            let (code, options) = if upper {
                (
                    tfl::BuiltinOperator::GREATER_EQUAL,
                    tfl::BuiltinOptionsT::GreaterEqualOptions(Box::default()),
                )
            } else {
                (
                    tfl::BuiltinOperator::LESS_EQUAL,
                    tfl::BuiltinOptionsT::LessEqualOptions(Box::default()),
                )
            };
            lx.op(code, vec![Some(offsets), Some(kt)], vec![mask], options);
            mask
        }
    };
    let dtype = lx.dtype(x)?;
    let zero = Tensor::from_i64(&[], vec![0])?
        .cast(dtype)
        .map_err(|e| lx.error(e.to_string()))?;
    let zero = lx.const_tensor(&format!("{name}_zero"), &zero)?;
    let src = lx.operand(x, Layout::Source)?;
    let t = lx.define(out, Layout::Source)?;
    lx.op(
        tfl::BuiltinOperator::SELECT_V2,
        vec![Some(mask_t), Some(src), Some(zero)],
        vec![t],
        tfl::BuiltinOptionsT::SelectV2Options(Box::default()),
    );
    Ok(())
}

struct ScatterPlan {
    /// Data is all zeros (a constant): SCATTER_ND alone is the result.
    zeros: bool,
    /// ScatterElements' axis (ScatterND: `None`).
    axis: Option<usize>,
}

fn scatter_plan(
    g: &Graph,
    node: &Node,
    reduction: ScatterReduction,
    axis: Option<i64>,
) -> std::result::Result<ScatterPlan, String> {
    let (data, idx, updates) = (input(node, 0)?, input(node, 1)?, input(node, 2)?);
    dtypes(g, &[data, updates], SCATTER_ND, node)?;
    dtypes(g, &[idx], &[DType::I32, DType::I64], node)?;
    let dshape = fixed(g, data)?;
    let ishape = fixed(g, idx)?;
    let axis = match axis {
        Some(a) => {
            let a = normalize_axis(a, dshape.len())?;
            if ishape.len() != dshape.len() || fixed(g, updates)? != ishape {
                return Err(
                    "ScatterElements indices and updates must match in shape and rank".into(),
                );
            }
            Some(a)
        }
        None => None,
    };
    // The index tuples and the dims they address.
    let (tuple, dims): (usize, Vec<usize>) = match axis {
        Some(a) => (1, vec![dshape[a]]),
        None => {
            let m = *ishape.last().ok_or("ScatterND indices need rank >= 1")?;
            if m == 0 || m > dshape.len() {
                return Err("ScatterND index tuples do not fit the data".into());
            }
            (m, dshape[..m].to_vec())
        }
    };
    if let Some(values) = const_ints(g, idx)? {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in values.chunks(tuple).enumerate() {
            let mut target = Vec::new();
            for (k, &v) in t.iter().enumerate() {
                let d = dims[k] as i64;
                if v < -d || v >= d {
                    return Err(format!("scatter index {v} is out of range"));
                }
                target.push(if v < 0 { v + d } else { v });
            }
            if let Some(a) = axis {
                // The element's other coordinates are its own position.
                let mut rest = i;
                let mut full = vec![0i64; ishape.len()];
                for k in (0..ishape.len()).rev() {
                    full[k] = (rest % ishape[k]) as i64;
                    rest /= ishape[k];
                }
                full[a] = target[0];
                target = full;
            }
            if !seen.insert(target) && reduction == ScatterReduction::None {
                return Err(
                    "scatter with duplicate indices and no reduction has no defined result".into(),
                );
            }
        }
    }
    let zeros = match const_tensor(g, data)? {
        Some(t) => t.to_f64_vec().iter().all(|&v| v == 0.0),
        None => false,
    };
    match reduction {
        ScatterReduction::Add => {
            if !zeros {
                // ADD takes these without quantization parameters.
                dtypes(g, &[data], &[DType::F32, DType::I32, DType::I64], node)?;
            }
        }
        ScatterReduction::None => {}
        other => {
            return Err(format!(
                "scatter reduction {other:?}: TFLite's SCATTER_ND only sums into zeros"
            ));
        }
    }
    Ok(ScatterPlan { zeros, axis })
}

/// SCATTER_ND sums updates into zeros. With unique indices that is ONNX's
/// result over zero data; other data is kept where a mask scattered the same
/// way is false (reduction none) or added to (reduction add). ScatterElements
/// scatters single elements addressed by their full coordinates.
fn lower_scatter(
    lx: &mut Lowerer,
    node: &Node,
    reduction: ScatterReduction,
    axis: Option<i64>,
) -> Result<()> {
    let plan = scatter_plan(lx.g, node, reduction, axis).map_err(|e| lx.error(e))?;
    let (data, idx, updates) = (lx.input(node, 0)?, lx.input(node, 1)?, lx.input(node, 2)?);
    let out = node.outputs[0];
    let name = lx.g.value(out).name.clone();
    let shape = lx.shape(data)?;
    let indices = match plan.axis {
        Some(a) => element_coords(lx, idx, &shape, a)?,
        None => {
            let m = *lx.shape(idx)?.last().expect("checked");
            indices_operand(lx, idx, &shape[..m])?
        }
    };
    // SCATTER_ND takes int32 indices only (wrapped into range, they fit).
    let indices = if lx.model.tensor(indices).dtype == tfl::TensorType::INT32 {
        indices
    } else {
        let from = lx.model.tensor(indices).dtype;
        let ishape = lx.model.tensor(indices).shape.clone();
        let narrow = lx.temp(&format!("{name}_indices32"), tfl::TensorType::INT32, ishape);
        lx.op(
            tfl::BuiltinOperator::CAST,
            vec![Some(indices)],
            vec![narrow],
            tfl::BuiltinOptionsT::CastOptions(Box::new(tfl::CastOptionsT {
                in_data_type: from,
                out_data_type: tfl::TensorType::INT32,
            })),
        );
        narrow
    };
    let shape_t = lx.const_i32(&format!("{name}_shape"), &dims_i32(&shape));
    let upd = lx.operand(updates, Layout::Source)?;
    let dtype = lx.model.tensor(upd).dtype;
    let scattered = if plan.zeros {
        lx.define(out, Layout::Source)?
    } else {
        lx.temp(&format!("{name}_scattered"), dtype, dims_i32(&shape))
    };
    lx.op(
        tfl::BuiltinOperator::SCATTER_ND,
        vec![Some(indices), Some(upd), Some(shape_t)],
        vec![scattered],
        tfl::BuiltinOptionsT::ScatterNdOptions(Box::default()),
    );
    if plan.zeros {
        return Ok(());
    }
    let src = lx.operand(data, Layout::Source)?;
    let t = lx.define(out, Layout::Source)?;
    if reduction == ScatterReduction::Add {
        lx.op(
            tfl::BuiltinOperator::ADD,
            vec![Some(src), Some(scattered)],
            vec![t],
            tfl::BuiltinOptionsT::AddOptions(Box::default()),
        );
        return Ok(());
    }
    let ushape = lx.shape(updates)?;
    let ones = Tensor::Bool(ndarray::ArrayD::from_elem(ndarray::IxDyn(&ushape), true));
    let ones = lx.const_tensor(&format!("{name}_ones"), &ones)?;
    let mask = lx.temp(
        &format!("{name}_mask"),
        tfl::TensorType::BOOL,
        dims_i32(&shape),
    );
    lx.op(
        tfl::BuiltinOperator::SCATTER_ND,
        vec![Some(indices), Some(ones), Some(shape_t)],
        vec![mask],
        tfl::BuiltinOptionsT::ScatterNdOptions(Box::default()),
    );
    lx.op(
        tfl::BuiltinOperator::SELECT_V2,
        vec![Some(mask), Some(scattered), Some(src)],
        vec![t],
        tfl::BuiltinOptionsT::SelectV2Options(Box::default()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{IoLayout, LowerOptions, lower_node};
    use super::*;
    use crate::formats::tflite::model::TflModel;
    use crate::ir::text::parse;

    type Code = tfl::BuiltinOperator;

    fn checked(text: &str) -> Graph {
        let g = parse(text).unwrap();
        for (id, node) in g.nodes() {
            assert_eq!(
                super::super::support(&g, id),
                Support::Native,
                "{}",
                node.name
            );
        }
        g
    }

    /// The whole graph lowered (inputs and outputs in source layout).
    fn lowered(text: &str) -> TflModel {
        super::super::lower(&checked(text), &LowerOptions::default()).unwrap()
    }

    /// The nodes lowered with the graph inputs stored in `layouts`; the
    /// model and the layout each value ended up in, by name.
    fn lowered_with(text: &str, layouts: &[Layout]) -> (TflModel, Vec<(String, Layout)>) {
        let g = checked(text);
        let mut lx = Lowerer::new(&g, LowerOptions::default());
        for (&v, &l) in g.inputs.iter().zip(layouts) {
            lx.define(v, l).unwrap();
        }
        for id in g.topo_order().unwrap() {
            let node = g.node(id);
            lx.current = Some((node.name.clone(), node.op.name().to_string()));
            lower_node(&mut lx, node).unwrap();
        }
        let layouts = g
            .values()
            .map(|(v, value)| (value.name.clone(), lx.layout_of(v)))
            .collect();
        (lx.model, layouts)
    }

    fn codes(m: &TflModel) -> Vec<Code> {
        m.operators.iter().map(|o| o.code).collect()
    }

    fn ints(m: &TflModel, t: Option<TensorId>) -> Vec<i32> {
        let data = m.tensor(t.unwrap()).data.as_ref().unwrap();
        data.chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn op(m: &TflModel, code: Code) -> &crate::formats::tflite::model::TflOperator {
        m.operators.iter().find(|o| o.code == code).unwrap()
    }

    fn layout(layouts: &[(String, Layout)], name: &str) -> Layout {
        layouts.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn refusal(text: &str) -> String {
        let g = parse(text).unwrap();
        let (id, _) = g.nodes().last().unwrap();
        match super::super::support(&g, id) {
            Support::Unsupported(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn flatten_of_a_channels_last_pooled_value_is_one_reshape() {
        let (m, _) = lowered_with(
            "graph g {
  input x: f32[1,16,1,1]
  node f: y: f32[1,16] = Flatten {\"axis\":1} (x)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::RESHAPE]);
        let reshape = &m.operators[0];
        assert_eq!(m.tensor(reshape.outputs[0]).shape, [1, 16]);
        assert_eq!(ints(&m, reshape.inputs[1]), [1, 16]);
    }

    #[test]
    fn nhwc_to_nchw_transpose_of_a_source_input_is_free_and_channels_last() {
        let (m, layouts) = lowered_with(
            "graph g {
  input x: f32[1,8,6,3]
  node t: y: f32[1,3,8,6] = Transpose {\"perm\":[0,3,1,2]} (x)
  node back: z: f32[1,8,6,3] = Transpose {\"perm\":[0,2,3,1]} (y)
  output z
}",
            &[Layout::Source],
        );
        assert!(m.operators.is_empty(), "{:?}", codes(&m));
        assert_eq!(layout(&layouts, "y"), Layout::ChannelsLast);
        assert_eq!(layout(&layouts, "z"), Layout::Source);
    }

    #[test]
    fn a_transpose_composes_with_the_stored_layout_into_one_op() {
        // x is stored NHWC [1,4,5,3]; the output wants source [1,5,3,4].
        let (m, layouts) = lowered_with(
            "graph g {
  input x: f32[1,3,4,5]
  node t: y: f32[1,5,3,4] = Transpose {\"perm\":[0,3,1,2]} (x)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::TRANSPOSE]);
        let t = &m.operators[0];
        let out = m.tensor(t.outputs[0]).shape.clone();
        let lo = layout(&layouts, "y");
        let expected: Vec<i32> = lo.perm(4).iter().map(|&a| [1, 5, 3, 4][a]).collect();
        assert_eq!(out, expected);
        // Stored input [1,4,5,3] permuted by the op's perm gives the output.
        let perm = ints(&m, t.inputs[1]);
        let stored_in = [1, 4, 5, 3];
        let got: Vec<i32> = perm.iter().map(|&p| stored_in[p as usize]).collect();
        assert_eq!(got, out);
    }

    #[test]
    fn a_reshape_that_mixes_channels_reads_the_source_order() {
        let (m, _) = lowered_with(
            "graph g {
  input x: f32[2,4,3,3]
  weight s: i64[2] = [2,-1]
  node r: y: f32[2,36] = Reshape {\"allowzero\":false} (x, s)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::TRANSPOSE, Code::RESHAPE]);
        assert_eq!(ints(&m, m.operators[0].inputs[1]), [0, 3, 1, 2]);
        assert_eq!(ints(&m, m.operators[1].inputs[1]), [2, 36]);
    }

    #[test]
    fn unsqueeze_of_a_channels_last_value_stays_channels_last() {
        let (m, layouts) = lowered_with(
            "graph g {
  input x: f32[1,4,3,5]
  weight a: i64[1] = [4]
  node u: y: f32[1,4,3,5,1] = Unsqueeze (x, a)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::EXPAND_DIMS]);
        assert_eq!(layout(&layouts, "y"), Layout::ChannelsLast);
        let expand = &m.operators[0];
        assert_eq!(m.tensor(expand.outputs[0]).shape, [1, 3, 5, 1, 4]);
        // The axis is a stored one, in an int32 input.
        assert_eq!(ints(&m, expand.inputs[1]), [3]);
        assert_eq!(m.tensor(expand.inputs[1].unwrap()).shape, Vec::<i32>::new());
    }

    #[test]
    fn squeeze_of_a_channels_last_pooled_value_squeezes_the_stored_axes() {
        let (m, layouts) = lowered_with(
            "graph g {
  input x: f32[1,16,1,1]
  weight a: i64[2] = [-1,2]
  node s: y: f32[1,16] = Squeeze (x, a)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::SQUEEZE]);
        assert_eq!(layout(&layouts, "y"), Layout::Source);
        let squeeze = &m.operators[0];
        assert_eq!(m.tensor(squeeze.outputs[0]).shape, [1, 16]);
        let tfl::BuiltinOptionsT::SqueezeOptions(o) = &squeeze.options else {
            panic!("{:?}", squeeze.options);
        };
        // Stored [1,1,1,16]: H and W are stored axes 1 and 2.
        assert_eq!(o.squeeze_dims, Some(vec![1, 2]));
    }

    #[test]
    fn squeeze_without_axes_removes_every_unit_dim() {
        let m = lowered(
            "graph g {
  input x: f32[1,3,1,2]
  node s: y: f32[3,2] = Squeeze (x)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::SQUEEZE]);
        let tfl::BuiltinOptionsT::SqueezeOptions(o) = &m.operators[0].options else {
            panic!();
        };
        assert_eq!(o.squeeze_dims, Some(vec![0, 2]));
    }

    #[test]
    fn axes_given_at_run_time_are_read_off_the_static_shapes() {
        let m = lowered(
            "graph g {
  input x: f32[1,3,1,2]
  input a: i64[1]
  node s: y: f32[3,1,2] = Squeeze (x, a)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::SQUEEZE]);
        let m = lowered(
            "graph g {
  input x: f32[3,2]
  input a: i64[1]
  node u: y: f32[3,1,2] = Unsqueeze (x, a)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::EXPAND_DIMS]);
        assert_eq!(ints(&m, m.operators[0].inputs[1]), [1]);
        assert_eq!(unit_axes_between(&[1, 1, 3], &[1, 3]), Some(vec![1]));
        assert_eq!(unit_axes_between(&[3, 1, 1], &[3]), Some(vec![1, 2]));
        assert_eq!(unit_axes_between(&[1, 3], &[3, 1]), None);
        assert_eq!(unit_axes_between(&[2, 3], &[6]), None);
    }

    #[test]
    fn squeezes_that_would_reorder_the_stored_axes_stay_reshapes() {
        // Channels-last [1,H,W,C] without its batch axis is [H,W,C], which
        // neither layout of [C,H,W] stores: read the source order instead.
        let (m, layouts) = lowered_with(
            "graph g {
  input x: f32[1,4,3,5]
  weight a: i64[1] = [0]
  node s: y: f32[4,3,5] = Squeeze (x, a)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::TRANSPOSE, Code::RESHAPE]);
        assert_eq!(layout(&layouts, "y"), Layout::Source);
        // Several inserted axes: one RESHAPE.
        let m = lowered(
            "graph g {
  input x: f32[3,2]
  weight a: i64[2] = [0,3]
  node u: y: f32[1,3,2,1] = Unsqueeze (x, a)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::RESHAPE]);
        // One inserted axis in source order: EXPAND_DIMS on that axis.
        let m = lowered(
            "graph g {
  input x: f32[3,2]
  weight a: i64[1] = [-1]
  node u: y: f32[3,2,1] = Unsqueeze (x, a)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::EXPAND_DIMS]);
        assert_eq!(ints(&m, m.operators[0].inputs[1]), [2]);
    }

    #[test]
    fn slice_with_unit_steps_is_a_slice_on_the_stored_axes() {
        let (m, layouts) = lowered_with(
            "graph g {
  input x: f32[1,8,6,6]
  weight st: i64[2] = [2,-4]
  weight en: i64[2] = [6,9223372036854775807]
  weight ax: i64[2] = [1,3]
  node s: y: f32[1,4,6,4] = Slice (x, st, en, ax)
  output y
}",
            &[Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::SLICE]);
        assert_eq!(layout(&layouts, "y"), Layout::ChannelsLast);
        let s = &m.operators[0];
        assert_eq!(ints(&m, s.inputs[1]), [0, 0, 2, 2]);
        assert_eq!(ints(&m, s.inputs[2]), [1, 6, 4, 4]);
    }

    #[test]
    fn a_negative_step_to_the_front_uses_the_end_mask() {
        let m = lowered(
            "graph g {
  input x: f32[5,4]
  weight st: i64[2] = [-1,100]
  weight en: i64[2] = [-9223372036854775807,0]
  weight ax: i64[2] = [0,1]
  weight sp: i64[2] = [-2,-1]
  node s: y: f32[3,3] = Slice (x, st, en, ax, sp)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::STRIDED_SLICE]);
        let s = &m.operators[0];
        assert_eq!(ints(&m, s.inputs[1]), [4, 3]);
        assert_eq!(ints(&m, s.inputs[2])[1], 0);
        assert_eq!(ints(&m, s.inputs[3]), [-2, -1]);
        let tfl::BuiltinOptionsT::StridedSliceOptions(o) = &s.options else {
            panic!("options")
        };
        // Axis 0 runs 4, 2, 0: through index 0; axis 1 stops before 0.
        assert_eq!(o.end_mask, 1);
    }

    #[test]
    fn computed_slice_bounds_are_clamped_narrowed_and_placed_per_stored_axis() {
        let m = lowered(
            "graph g {
  input x: f32[2,6,5]
  input st: i64[1]
  weight en: i64[1] = [9223372036854775807]
  weight ax: i64[1] = [1]
  node s: y: f32[2,3,5] = Slice (x, st, en, ax)
  output y
}",
        );
        assert_eq!(
            codes(&m),
            [
                Code::MAXIMUM,
                Code::MINIMUM,
                Code::CAST,
                Code::CONCATENATION,
                Code::GATHER,
                Code::STRIDED_SLICE
            ]
        );
        let s = op(&m, Code::STRIDED_SLICE);
        // The constant end, clamped to the dim; axes 0 and 2 are masked.
        assert_eq!(ints(&m, s.inputs[2]), [0, 6, 0]);
        let tfl::BuiltinOptionsT::StridedSliceOptions(o) = &s.options else {
            panic!("options")
        };
        assert_eq!((o.begin_mask, o.end_mask), (0b101, 0b101));
        assert_eq!(ints(&m, op(&m, Code::GATHER).inputs[1]), [1, 0, 1]);
    }

    #[test]
    fn concat_of_channels_last_values_concatenates_the_stored_axis() {
        let (m, layouts) = lowered_with(
            "graph g {
  input a: f32[1,2,3,3]
  input b: f32[1,5,3,3]
  node c: y: f32[1,7,3,3] = Concat {\"axis\":1} (a, b)
  output y
}",
            &[Layout::ChannelsLast, Layout::ChannelsLast],
        );
        assert_eq!(codes(&m), [Code::CONCATENATION]);
        let tfl::BuiltinOptionsT::ConcatenationOptions(o) = &m.operators[0].options else {
            panic!("options")
        };
        assert_eq!(o.axis, 3);
        assert_eq!(layout(&layouts, "y"), Layout::ChannelsLast);
    }

    #[test]
    fn splits_pick_split_split_v_or_slices_by_sizes_and_type() {
        let m = lowered(
            "graph g {
  input x: f32[6,2]
  node s: a: f32[2,2], b: f32[2,2], c: f32[2,2] = Split {\"axis\":0,\"num_outputs\":3} (x)
  output a, b, c
}",
        );
        assert_eq!(codes(&m), [Code::SPLIT]);
        let m = lowered(
            "graph g {
  input x: f32[6,2]
  weight sz: i64[2] = [4,2]
  node s: a: f32[4,2], b: f32[2,2] = Split {\"axis\":0,\"num_outputs\":null} (x, sz)
  output a, b
}",
        );
        assert_eq!(codes(&m), [Code::SPLIT_V]);
        assert_eq!(ints(&m, op(&m, Code::SPLIT_V).inputs[1]), [4, 2]);
        let m = lowered(
            "graph g {
  input x: bool[6,2]
  node s: a: bool[5,2], b: bool[1,2] = Split {\"axis\":0,\"num_outputs\":2} (x)
  output a, b
}",
        );
        assert_eq!(codes(&m), [Code::SLICE, Code::SLICE]);
    }

    #[test]
    fn gather_indices_are_wrapped_constants_or_floor_mod() {
        let m = lowered(
            "graph g {
  input x: f32[5,3]
  weight i: i64[3] = [-1,0,2]
  node ga: y: f32[3,3] = Gather {\"axis\":0} (x, i)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::GATHER]);
        assert_eq!(ints(&m, m.operators[0].inputs[1]), [4, 0, 2]);
        let m = lowered(
            "graph g {
  input x: f32[5,3]
  input i: i64[2,2]
  node ga: y: f32[5,2,2] = Gather {\"axis\":1} (x, i)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::FLOOR_MOD, Code::GATHER]);
        let tfl::BuiltinOptionsT::GatherOptions(o) = &op(&m, Code::GATHER).options else {
            panic!("options")
        };
        assert_eq!(o.axis, 1);
    }

    #[test]
    fn gather_nd_batch_dims_become_leading_coordinates() {
        let m = lowered(
            "graph g {
  input x: f32[2,3,4]
  weight i: i64[2,1,1] = [2,-1]
  node ga: y: f32[2,1,4] = GatherNd {\"batch_dims\":1} (x, i)
  output y
}",
        );
        assert_eq!(codes(&m), [Code::CONCATENATION, Code::GATHER_ND]);
        let concat = op(&m, Code::CONCATENATION);
        assert_eq!(ints(&m, concat.inputs[0]), [0, 1]);
        assert_eq!(ints(&m, concat.inputs[1]), [2, 2]);
    }

    #[test]
    fn expand_is_broadcast_to_version_2() {
        let m = lowered(
            "graph g {
  input x: f32[3,1]
  weight s: i64[3] = [2,1,4]
  node e: y: f32[2,3,4] = Expand (x, s)
  output y
}",
        );
        let b = op(&m, Code::BROADCAST_TO);
        assert_eq!(b.version, 2);
        assert_eq!(ints(&m, b.inputs[1]), [2, 3, 4]);
    }

    #[test]
    fn shape_and_size_of_static_values_are_constants() {
        let m = lowered(
            "graph g {
  input x: f32[2,3,4]
  node s: y: i64[2] = Shape {\"start\":1,\"end\":null} (x)
  node n: z: i64[] = Size (x)
  output y, z
}",
        );
        // Only the copies a constant graph output needs.
        assert!(codes(&m).iter().all(|&c| c == Code::RESHAPE));
        let y = m.operators[0].inputs[0].unwrap();
        let data = m.tensor(y).data.as_ref().unwrap();
        assert_eq!(data.as_ref(), [3i64, 4].map(i64::to_le_bytes).concat());
    }

    #[test]
    fn topk_off_the_last_axis_moves_it_last_and_smallest_negates() {
        let m = lowered(
            "graph g {
  input x: f32[4,6]
  weight k: i64[1] = [2]
  node t: v: f32[2,6], i: i64[2,6] = TopK {\"axis\":0,\"largest\":false,\"sorted\":true} (x, k)
  output v, i
}",
        );
        assert_eq!(
            codes(&m),
            [
                Code::TRANSPOSE,
                Code::NEG,
                Code::TOPK_V2,
                Code::NEG,
                Code::CAST,
                Code::TRANSPOSE,
                Code::TRANSPOSE
            ]
        );
        let topk = op(&m, Code::TOPK_V2);
        assert_eq!(m.tensor(topk.outputs[1]).dtype, tfl::TensorType::INT32);
    }

    #[test]
    fn one_hot_depth_comes_from_the_output_and_negatives_wrap() {
        let m = lowered(
            "graph g {
  input i: i64[3]
  weight d: f32[] = [5]
  weight v: f32[2] = [0,3]
  node o: y: f32[3,5] = OneHot {\"axis\":-1} (i, d, v)
  output y
}",
        );
        assert_eq!(
            codes(&m),
            [Code::LESS, Code::ADD, Code::SELECT_V2, Code::ONE_HOT]
        );
        let oh = op(&m, Code::ONE_HOT);
        assert_eq!(ints(&m, oh.inputs[1]), [5]);
    }

    #[test]
    fn scatter_nd_into_data_masks_with_a_second_scatter() {
        let m = lowered(
            "graph g {
  input x: f32[4,3]
  input u: f32[2,3]
  weight i: i64[2,1] = [3,-4]
  node s: y: f32[4,3] = ScatterNd {\"reduction\":\"None\"} (x, i, u)
  output y
}",
        );
        assert_eq!(
            codes(&m),
            [Code::SCATTER_ND, Code::SCATTER_ND, Code::SELECT_V2]
        );
        assert_eq!(ints(&m, m.operators[0].inputs[0]), [3, 0]);
    }

    #[test]
    fn refusals_name_the_reason() {
        assert!(
            refusal(
                "graph g {
  input x: f32[4]
  node n: y: i64[1,2] = NonZero (x)
  output y
}"
            )
            .contains("depends on the data")
        );
        assert!(
            refusal(
                "graph g {
  input x: f32[4]
  input ax: i64[1]
  weight st: i64[1] = [1]
  weight en: i64[1] = [3]
  node s: y: f32[2] = Slice (x, st, en, ax)
  output y
}"
            )
            .contains("must be constant")
        );
        assert!(
            refusal(
                "graph g {
  input x: f32[4]
  weight st: i64[1] = [2]
  weight en: i64[1] = [2]
  node s: y: f32[0] = Slice (x, st, en)
  output y
}"
            )
            .contains("no elements")
        );
        assert!(
            refusal(
                "graph g {
  input x: f32[4,3]
  input u: f32[1,3]
  weight i: i64[1,1] = [0]
  node s: y: f32[4,3] = ScatterNd {\"reduction\":\"Mul\"} (x, i, u)
  output y
}"
            )
            .contains("only sums")
        );
        assert!(
            refusal(
                "graph g {
  input x: u64[4]
  weight k: i64[1] = [2]
  node t: v: u64[2], i: i64[2] = TopK {\"axis\":0,\"largest\":true,\"sorted\":true} (x, k)
  output v, i
}"
            )
            .contains("TopK takes")
        );
    }

    #[test]
    fn io_layout_channels_last_reshape_of_nhwc_input_needs_no_transpose() {
        let g = checked(
            "graph g {
  input x: f32[1,8,1,1]
  weight s: i64[2] = [1,8]
  node r: y: f32[1,8] = Reshape {\"allowzero\":false} (x, s)
  output y
}",
        );
        let m = super::super::lower(
            &g,
            &LowerOptions {
                io_layout: IoLayout::ChannelsLast,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(codes(&m), [Code::RESHAPE]);
    }
}
