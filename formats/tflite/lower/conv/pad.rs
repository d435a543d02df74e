//! Pad (PAD, PADV2, MIRROR_PAD, or one GATHER per padded axis for the
//! modes TFLite has no builtin for), DepthToSpace and SpaceToDepth.

use crate::ir::error::Result;
use crate::ir::ops::{DepthToSpaceMode, PadAttrs, PadMode};
use crate::ir::{DType, Graph, Node, Op, ValueId};

use super::super::super::model::TensorId;
use super::super::super::schema as tfl;
use super::super::support::dtypes_in;
use super::super::{Layout, Lowerer, dims_i32};
use super::{WINDOW_LIMIT, constant_of, input_of, output_of, shape_of, shape_usize};

/// Types PAD and PADV2 take (pad.cc).
const PAD_TYPES: &[DType] = &[
    DType::F32,
    DType::I8,
    DType::U8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::Bool,
];
/// MIRROR_PAD copies 8-, 16-, 32- and 64-bit elements.
const MIRROR_TYPES: &[DType] = &[
    DType::F32,
    DType::I8,
    DType::U8,
    DType::I16,
    DType::I32,
    DType::I64,
];
const GATHER_TYPES: &[DType] = PAD_TYPES;
/// DEPTH_TO_SPACE and SPACE_TO_DEPTH.
const BLOCK_TYPES: &[DType] = &[DType::F32, DType::I8, DType::U8, DType::I32, DType::I64];
/// PAD's kernel handles at most this many dimensions.
const PAD_MAX_RANK: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
enum PadKind {
    /// PAD, or PADV2 with the value; a SLICE first when some pads are negative.
    Constant { value: Option<ValueId> },
    /// MIRROR_PAD REFLECT (every pad below the axis length).
    Mirror,
    /// One GATHER per padded axis with the source index of every output
    /// position (edge, wrap, long reflections).
    Gather,
}

#[derive(Clone, Debug)]
pub(super) struct PadPlan {
    kind: PadKind,
    mode: PadMode,
    /// (begin, end) per source axis; negative crops.
    pads: Vec<(i64, i64)>,
}

pub(super) fn plan(g: &Graph, node: &Node, a: &PadAttrs) -> std::result::Result<PadPlan, String> {
    let (x, y) = (input_of(node, 0)?, output_of(node)?);
    let xs = shape_of(g, x)?;
    let rank = xs.len();
    let pads_v = input_of(node, 1)?;
    let pads = constant_of(g, pads_v)?
        .ok_or("the pads are computed; the TFLite target needs them constant")?
        .to_i64_vec()
        .map_err(|e| e.to_string())?;
    let axes: Vec<usize> = match node.input(3) {
        Some(v) => constant_of(g, v)?
            .ok_or("the axes are computed; the TFLite target needs them constant")?
            .to_i64_vec()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|ax| {
                let ax = if ax < 0 { ax + rank as i64 } else { ax };
                usize::try_from(ax)
                    .ok()
                    .filter(|&ax| ax < rank)
                    .ok_or_else(|| format!("axis {ax} is out of range"))
            })
            .collect::<std::result::Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let limit = WINDOW_LIMIT as i64;
    if pads.iter().any(|p| p.abs() > limit) {
        return Err(format!("pads {pads:?} are too large"));
    }
    let mut per_axis = vec![(0i64, 0i64); rank];
    for (i, &ax) in axes.iter().enumerate() {
        if per_axis[ax] != (0, 0) {
            return Err(format!("axis {ax} is padded twice"));
        }
        per_axis[ax] = (pads[i], pads[i + axes.len()]);
    }
    let expected: Vec<i64> = xs
        .iter()
        .zip(&per_axis)
        .map(|(&d, &(b, e))| d as i64 + b + e)
        .collect();
    let ys = shape_of(g, y)?;
    if ys.iter().map(|&d| d as i64).ne(expected.iter().copied()) {
        return Err(format!(
            "output shape {ys:?} disagrees with the pads ({expected:?})"
        ));
    }
    if ys.contains(&0) {
        return Err("an empty output".into());
    }
    let padded = |&(&d, &(b, e)): &(&usize, &(i64, i64))| (b, e) != (0, 0) && d == 0;
    if a.mode != PadMode::Constant && xs.iter().zip(&per_axis).any(|p| padded(&p)) {
        return Err(format!("{:?}-padding an empty axis", a.mode));
    }
    let data_types = |allowed: &[DType]| -> std::result::Result<(), String> {
        for v in [x, y] {
            let d = g.fact(v).dtype;
            if !d.is_some_and(|d| allowed.contains(&d)) {
                return Err(format!(
                    "value '{}' is {}; TFLite's kernels for {:?} padding take {}",
                    g.value(v).name,
                    d.map_or("unknown".to_string(), |d| d.name()),
                    a.mode,
                    allowed
                        .iter()
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    };
    let kind = match a.mode {
        PadMode::Constant => {
            data_types(PAD_TYPES)?;
            // Negative pads crop first (a SLICE), which must leave something.
            let cropped_away = xs
                .iter()
                .zip(&per_axis)
                .any(|(&d, &(b, e))| d as i64 + b.min(0) + e.min(0) <= 0 && (b < 0 || e < 0));
            if cropped_away {
                return Err(format!("pads {pads:?} crop an axis away before padding it"));
            }
            if rank > PAD_MAX_RANK {
                return Err(format!(
                    "rank {rank}: TFLite's PAD takes at most {PAD_MAX_RANK} dimensions"
                ));
            }
            let value = match node.input(2) {
                None => None,
                Some(v) => {
                    let n = shape_of(g, v)?.iter().product::<usize>();
                    if n == 0 {
                        None
                    } else if n != 1 || g.fact(v).dtype != g.fact(x).dtype {
                        return Err("constant_value must be one element of the data's type".into());
                    } else {
                        let zero = constant_of(g, v)?
                            .is_some_and(|t| t.to_f64_vec().iter().all(|&z| z == 0.0));
                        (!zero).then_some(v)
                    }
                }
            };
            PadKind::Constant { value }
        }
        PadMode::Reflect => {
            let fits = xs
                .iter()
                .zip(&per_axis)
                .all(|(&d, &(b, e))| b >= 0 && e >= 0 && (b.max(e) as usize) < d.max(1));
            if fits {
                data_types(MIRROR_TYPES)?;
                PadKind::Mirror
            } else {
                data_types(GATHER_TYPES)?;
                PadKind::Gather
            }
        }
        PadMode::Edge | PadMode::Wrap => {
            data_types(GATHER_TYPES)?;
            PadKind::Gather
        }
    };
    Ok(PadPlan {
        kind,
        mode: a.mode,
        pads: per_axis,
    })
}

/// The source index of output position `o` of an axis of `len` padded by
/// `begin` (the IR reference's rule).
fn source_index(mode: PadMode, o: i64, begin: i64, len: i64) -> i64 {
    let i = o - begin;
    if (0..len).contains(&i) {
        return i;
    }
    match mode {
        PadMode::Constant | PadMode::Edge => i.clamp(0, len - 1),
        PadMode::Wrap => i.rem_euclid(len),
        PadMode::Reflect => {
            if len == 1 {
                0
            } else {
                let period = 2 * (len - 1);
                let r = i.rem_euclid(period);
                if r < len { r } else { period - r }
            }
        }
    }
}

fn type_version(dtype: tfl::TensorType) -> i32 {
    match dtype {
        tfl::TensorType::INT8 => 2,
        tfl::TensorType::INT16 => 3,
        _ => 1,
    }
}

pub(super) fn lower(lx: &mut Lowerer, node: &Node, a: &PadAttrs) -> Result<()> {
    let plan = plan(lx.g, node, a).map_err(|e| lx.error(e))?;
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let rank = lx.rank(x)?;
    let layout = lx.common_layout(&[x], rank);
    let perm = layout.perm(rank);
    // Pads in stored axis order.
    let pads: Vec<(i64, i64)> = perm.iter().map(|&src| plan.pads[src]).collect();
    let mut t = lx.operand(x, layout)?;
    let name = lx.g.value(y).name.clone();
    match &plan.kind {
        PadKind::Constant { value } => {
            if pads.iter().any(|&(b, e)| b < 0 || e < 0) {
                t = crop(lx, t, &pads, &format!("{name}_cropped"));
            }
            let dtype = lx.model.tensor(t).dtype;
            let flat: Vec<i32> = pads
                .iter()
                .flat_map(|&(b, e)| [b.max(0) as i32, e.max(0) as i32])
                .collect();
            let paddings = lx.const_i32_shaped(&format!("{name}_paddings"), &flat, &[rank, 2]);
            let out = lx.define(y, layout)?;
            let version = if rank > 4 {
                4
            } else if dtype == tfl::TensorType::BOOL {
                5
            } else {
                type_version(dtype)
            };
            match value {
                None => lx.op_version(
                    tfl::BuiltinOperator::PAD,
                    version,
                    vec![Some(t), Some(paddings)],
                    vec![out],
                    tfl::BuiltinOptionsT::PadOptions(Box::default()),
                ),
                Some(v) => {
                    let v = lx.operand(*v, Layout::Source)?;
                    lx.op_version(
                        tfl::BuiltinOperator::PADV2,
                        version,
                        vec![Some(t), Some(paddings), Some(v)],
                        vec![out],
                        tfl::BuiltinOptionsT::PadV2Options(Box::default()),
                    );
                }
            }
        }
        PadKind::Mirror => {
            let flat: Vec<i32> = pads
                .iter()
                .flat_map(|&(b, e)| [b as i32, e as i32])
                .collect();
            let paddings = lx.const_i32_shaped(&format!("{name}_paddings"), &flat, &[rank, 2]);
            let out = lx.define(y, layout)?;
            let version = type_version(lx.model.tensor(t).dtype);
            lx.op_version(
                tfl::BuiltinOperator::MIRROR_PAD,
                version,
                vec![Some(t), Some(paddings)],
                vec![out],
                tfl::BuiltinOptionsT::MirrorPadOptions(Box::new(tfl::MirrorPadOptionsT {
                    mode: tfl::MirrorPadMode::REFLECT,
                })),
            );
        }
        PadKind::Gather => {
            let axes: Vec<usize> = (0..rank).filter(|&i| pads[i] != (0, 0)).collect();
            for (k, &axis) in axes.iter().enumerate() {
                let mut shape = shape_usize(lx, t);
                let len = shape[axis] as i64;
                let (b, e) = pads[axis];
                let out_len = len + b + e;
                let indices: Vec<i32> = (0..out_len)
                    .map(|o| source_index(plan.mode, o, b, len) as i32)
                    .collect();
                shape[axis] = out_len as usize;
                let hint = if k + 1 == axes.len() {
                    name.clone()
                } else {
                    format!("{name}_axis{axis}")
                };
                t = gather(lx, t, axis, &indices, &shape, &hint);
            }
            if axes.is_empty() {
                let out = lx.define(y, layout)?;
                let shape = lx.model.tensor(out).shape.clone();
                let target = lx.const_i32(&format!("{name}_shape"), &shape);
                lx.op(
                    tfl::BuiltinOperator::RESHAPE,
                    vec![Some(t), Some(target)],
                    vec![out],
                    tfl::BuiltinOptionsT::NONE,
                );
            } else {
                lx.alias(y, t, layout);
            }
        }
    }
    Ok(())
}

/// `t` without the negative parts of `pads` (a SLICE).
fn crop(lx: &mut Lowerer, t: TensorId, pads: &[(i64, i64)], name: &str) -> TensorId {
    let shape = shape_usize(lx, t);
    let begin: Vec<i32> = pads.iter().map(|&(b, _)| (-b).max(0) as i32).collect();
    let size: Vec<usize> = shape
        .iter()
        .zip(pads)
        .map(|(&d, &(b, e))| (d as i64 + b.min(0) + e.min(0)) as usize)
        .collect();
    let dtype = lx.model.tensor(t).dtype;
    let out = lx.temp(name, dtype, dims_i32(&size));
    let begin = lx.const_i32(&format!("{name}_begin"), &begin);
    let size = lx.const_i32(&format!("{name}_size"), &dims_i32(&size));
    lx.op(
        tfl::BuiltinOperator::SLICE,
        vec![Some(t), Some(begin), Some(size)],
        vec![out],
        tfl::BuiltinOptionsT::SliceOptions(Box::default()),
    );
    out
}

/// GATHER of `indices` along `axis` of `t` into a new tensor of `shape`.
pub(super) fn gather(
    lx: &mut Lowerer,
    t: TensorId,
    axis: usize,
    indices: &[i32],
    shape: &[usize],
    name: &str,
) -> TensorId {
    let dtype = lx.model.tensor(t).dtype;
    let out = lx.temp(name, dtype, dims_i32(shape));
    let indices = lx.const_i32(&format!("{name}_indices"), indices);
    let version = match dtype {
        tfl::TensorType::INT8 => 2,
        tfl::TensorType::BOOL => 3,
        tfl::TensorType::INT16 => 4,
        _ => 1,
    };
    lx.op_version(
        tfl::BuiltinOperator::GATHER,
        version,
        vec![Some(t), Some(indices)],
        vec![out],
        tfl::BuiltinOptionsT::GatherOptions(Box::new(tfl::GatherOptionsT {
            axis: axis as i32,
            batch_dims: 0,
        })),
    );
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockPlan {
    to_space: bool,
    block: usize,
    /// DepthToSpace CRD: the channels are first permuted into DCR order.
    crd: bool,
}

pub(super) fn block_plan(g: &Graph, node: &Node) -> std::result::Result<BlockPlan, String> {
    let (block, to_space, crd) = match &node.op {
        Op::DepthToSpace(a) => (a.blocksize, true, a.mode == DepthToSpaceMode::Crd),
        Op::SpaceToDepth(a) => (a.blocksize, false, false),
        other => return Err(format!("{} is not a block rearrangement", other.name())),
    };
    dtypes_in(g, node, BLOCK_TYPES)?;
    let (x, y) = (input_of(node, 0)?, output_of(node)?);
    let xs = shape_of(g, x)?;
    if xs.len() != 4 {
        return Err(format!("a rank-{} input: TFLite's op takes NHWC", xs.len()));
    }
    if block == 0 || block > WINDOW_LIMIT {
        return Err(format!("blocksize {block} is out of range"));
    }
    let b2 = block * block;
    let expected = if to_space {
        if xs[1] % b2 != 0 {
            return Err(format!("{} channels are not a multiple of {b2}", xs[1]));
        }
        vec![xs[0], xs[1] / b2, xs[2] * block, xs[3] * block]
    } else {
        if xs[2] % block != 0 || xs[3] % block != 0 {
            return Err(format!(
                "spatial dims {:?} are not multiples of {block}",
                &xs[2..]
            ));
        }
        vec![xs[0], xs[1] * b2, xs[2] / block, xs[3] / block]
    };
    if shape_of(g, y)? != expected {
        return Err(format!("output shape disagrees with {expected:?}"));
    }
    Ok(BlockPlan {
        to_space,
        block,
        crd,
    })
}

pub(super) fn lower_block(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let plan = block_plan(lx.g, node).map_err(|e| lx.error(e))?;
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let mut t = lx.operand(x, Layout::ChannelsLast)?;
    if plan.crd {
        // DEPTH_TO_SPACE reads channel (i * b + j) * C' + c where CRD
        // stores c * b * b + i * b + j.
        let shape = shape_usize(lx, t);
        let b2 = plan.block * plan.block;
        let c_out = shape[3] / b2;
        let indices: Vec<i32> = (0..shape[3])
            .map(|k| ((k % c_out) * b2 + k / c_out) as i32)
            .collect();
        let name = format!("{}_dcr", lx.g.value(x).name);
        t = gather(lx, t, 3, &indices, &shape, &name);
    }
    let out = lx.define(y, Layout::ChannelsLast)?;
    let version = if lx.model.tensor(t).dtype == tfl::TensorType::INT8 {
        2
    } else {
        1
    };
    let (code, options) = if plan.to_space {
        (
            tfl::BuiltinOperator::DEPTH_TO_SPACE,
            tfl::BuiltinOptionsT::DepthToSpaceOptions(Box::new(tfl::DepthToSpaceOptionsT {
                block_size: plan.block as i32,
            })),
        )
    } else {
        (
            tfl::BuiltinOperator::SPACE_TO_DEPTH,
            tfl::BuiltinOptionsT::SpaceToDepthOptions(Box::new(tfl::SpaceToDepthOptionsT {
                block_size: plan.block as i32,
            })),
        )
    };
    lx.op_version(code, version, vec![Some(t)], vec![out], options);
    Ok(())
}
