//! Resize: RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR when one reproduces ONNX, else taps.
//!
//! TFLite has three coordinate mappings (plain, align_corners,
//! half_pixel_centers). Rather than matching attribute names, the plan
//! computes, for every output row and column, the source coordinate ONNX
//! uses (as the IR reference does) and the one TFLite's kernel computes (in
//! float32, as the kernel does), and takes the first flag setting under
//! which they agree: exactly for nearest, to within float rounding for
//! linear. Every other resize (cubic, antialiasing, other roundings,
//! tf_crop_and_resize, batch or channel axes, ranks other than 4) becomes
//! per-axis taps read off the IR reference: one GATHER per tap, weighted by
//! MUL and summed by ADD.

use crate::ir::error::Result;
use crate::ir::eval::{eval_op, source_coordinate};
use crate::ir::ops::{
    AspectRatioPolicy, CoordinateTransform, NearestMode, ResizeAttrs, ResizeMode,
};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op};
use ndarray::{ArrayD, IxDyn};

use super::super::super::model::TensorId;
use super::super::super::schema as tfl;
use super::super::{Layout, Lowerer, dims_i32};
use super::pad::gather;
use super::{constant_of, f32_tensor, input_of, output_of, shape_of, shape_usize};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum ResizePlan {
    /// RESIZE_BILINEAR or RESIZE_NEAREST_NEIGHBOR on channels-last.
    Builtin(Builtin),
    /// Per resized axis, in whatever layout the input is stored: GATHERs of
    /// the interpolation taps, weighted (MUL) and summed (ADD), plus the
    /// extrapolation value where tf_crop_and_resize samples outside.
    Taps(Vec<AxisTaps>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Builtin {
    nearest: bool,
    align_corners: bool,
    half_pixel_centers: bool,
    size: [usize; 2],
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct AxisTaps {
    /// Source axis.
    axis: usize,
    output: usize,
    slots: Vec<Slot>,
    /// Added after the weighted sum (extrapolated positions).
    offset: Option<Vec<f32>>,
}

/// One tap of every output position: the input index it reads and its
/// weight (`None`: all ones).
#[derive(Clone, Debug, PartialEq)]
struct Slot {
    index: Vec<i32>,
    weight: Option<Vec<f32>>,
}

const LINEAR_TYPES: &[DType] = &[DType::F32];
const NEAREST_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I16, DType::I8, DType::U8];
/// Types GATHER moves; only float32 is weighted.
const GATHER_TYPES: &[DType] = &[
    DType::F32,
    DType::I8,
    DType::U8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::Bool,
];
/// Cells the tap tables of one axis may hold (input x input for the
/// identity probe, input x output for the taps).
const TABLE_LIMIT: usize = 1 << 22;

pub(super) fn plan(
    g: &Graph,
    node: &Node,
    a: &ResizeAttrs,
) -> std::result::Result<ResizePlan, String> {
    let (x, y) = (input_of(node, 0)?, output_of(node)?);
    let dtype = g.fact(x).dtype.ok_or("the input's dtype is unknown")?;
    if g.fact(y).dtype != Some(dtype) {
        return Err("input and output types differ".into());
    }
    let xs = shape_of(g, x)?;
    let ys = shape_of(g, y)?;
    if xs.len() != ys.len() {
        return Err("input and output ranks differ".into());
    }
    if xs.contains(&0) || ys.contains(&0) {
        return Err("empty tensors".into());
    }
    let scales = scales(g, node, a, &xs, &ys)?;
    if let Some(b) = builtin(a, dtype, &xs, &ys, &scales) {
        return Ok(ResizePlan::Builtin(b));
    }
    let float = dtype == DType::F32;
    if !GATHER_TYPES.contains(&dtype) || (!float && a.mode != ResizeMode::Nearest) {
        return Err(format!(
            "{dtype} {:?} resize: TFLite's resize kernels cannot reproduce it and the tap form needs float32 (or nearest)",
            a.mode
        ));
    }
    let roi = match node.input(1) {
        Some(r) if a.coordinate_transform == CoordinateTransform::TfCropAndResize => {
            let values = constant_of(g, r)?
                .ok_or("the roi is computed; the TFLite target needs it constant")?
                .to_f64_vec();
            Some(values)
        }
        _ => None,
    };
    let mut axes = Vec::new();
    for ax in 0..xs.len() {
        if xs[ax] == ys[ax] && scales[ax] == 1.0 && roi.is_none() {
            continue;
        }
        let roi = match &roi {
            Some(r) => Some(axis_roi(r, a, xs.len(), ax)?),
            None => None,
        };
        let taps = axis_taps(a, ax, xs[ax], ys[ax], scales[ax], roi)?;
        let identity = match taps.slots.as_slice() {
            [slot] => {
                taps.offset.is_none()
                    && slot.weight.is_none()
                    && slot.index.iter().enumerate().all(|(i, &j)| i as i32 == j)
                    && xs[ax] == ys[ax]
            }
            _ => false,
        };
        if identity {
            continue;
        }
        if !float && (taps.offset.is_some() || taps.slots.iter().any(|s| s.weight.is_some())) {
            return Err(format!(
                "{dtype} resize with extrapolation: the tap form weights float32 only"
            ));
        }
        axes.push(taps);
    }
    Ok(ResizePlan::Taps(axes))
}

/// The TFLite builtin that reproduces this resize, if one does.
fn builtin(
    a: &ResizeAttrs,
    dtype: DType,
    xs: &[usize],
    ys: &[usize],
    scales: &[f64],
) -> Option<Builtin> {
    let nearest = match a.mode {
        ResizeMode::Nearest => true,
        ResizeMode::Linear => false,
        ResizeMode::Cubic => return None,
    };
    let types = if nearest { NEAREST_TYPES } else { LINEAR_TYPES };
    let batch_and_channels_kept =
        (0..2).all(|ax| xs[ax] == ys[ax] && (scales[ax] == 1.0 || xs[ax] == 1));
    if a.coordinate_transform == CoordinateTransform::TfCropAndResize
        || !types.contains(&dtype)
        || xs.len() != 4
        || !batch_and_channels_kept
        || (a.antialias && !nearest && scales[2..].iter().any(|&s| s < 1.0))
    {
        return None;
    }
    [(false, false), (false, true), (true, false)]
        .into_iter()
        .find(|&(align_corners, half_pixel_centers)| {
            (2..4).all(|ax| {
                let (input, output) = (xs[ax], ys[ax]);
                (0..output).all(|o| {
                    let onnx = source_coordinate(
                        a.coordinate_transform,
                        o,
                        input,
                        output,
                        scales[ax],
                        None,
                    );
                    if nearest {
                        let want = onnx_nearest(onnx, a.nearest_mode, input);
                        want == tfl_nearest(o, input, output, align_corners, half_pixel_centers)
                    } else {
                        let want = onnx.clamp(0.0, (input - 1) as f64);
                        let got = tfl_bilinear(o, input, output, align_corners, half_pixel_centers);
                        (want - got).abs() <= 2e-6 * input.max(8) as f64
                    }
                })
            })
        })
        .map(|(align_corners, half_pixel_centers)| Builtin {
            nearest,
            align_corners,
            half_pixel_centers,
            size: [ys[2], ys[3]],
        })
}

/// (start, end) of the roi for source axis `ax`.
fn axis_roi(
    roi: &[f64],
    a: &ResizeAttrs,
    rank: usize,
    ax: usize,
) -> std::result::Result<(f64, f64), String> {
    if roi.len() == 2 * rank {
        return Ok((roi[ax], roi[ax + rank]));
    }
    let resized = resized_axes(a, rank)?;
    if roi.len() != 2 * resized.len() {
        return Err(format!(
            "roi of {} values for {} axes",
            roi.len(),
            resized.len()
        ));
    }
    Ok(match resized.iter().position(|&r| r == ax) {
        Some(i) => (roi[i], roi[i + resized.len()]),
        None => (0.0, 1.0),
    })
}

fn resized_axes(a: &ResizeAttrs, rank: usize) -> std::result::Result<Vec<usize>, String> {
    match &a.axes {
        Some(axes) => axes
            .iter()
            .map(|&ax| {
                let ax = if ax < 0 { ax + rank as i64 } else { ax };
                usize::try_from(ax)
                    .ok()
                    .filter(|&ax| ax < rank)
                    .ok_or_else(|| format!("axis {ax} is out of range"))
            })
            .collect(),
        None => Ok((0..rank).collect()),
    }
}

/// The taps of one axis, read off the IR reference: resizing the identity
/// matrix gives every output's input weights, resizing zeros the
/// extrapolated constant.
fn axis_taps(
    a: &ResizeAttrs,
    axis: usize,
    input: usize,
    output: usize,
    scale: f64,
    roi: Option<(f64, f64)>,
) -> std::result::Result<AxisTaps, String> {
    if input.saturating_mul(input.max(output)) > TABLE_LIMIT {
        return Err(format!(
            "resizing an axis of {input} to {output}: too large to tabulate as taps"
        ));
    }
    if (input as f64 * scale).floor() as usize != output {
        return Err(format!(
            "scale {scale} does not give {output} from {input} (aspect-ratio rounding)"
        ));
    }
    let attrs = ResizeAttrs {
        axes: Some(vec![1]),
        keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
        ..a.clone()
    };
    let op = Op::Resize(attrs);
    let scales = Tensor::F64(ArrayD::from_elem(IxDyn(&[1]), scale));
    let roi = roi.map(|(s, e)| {
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![s, e]).expect("2 values"))
    });
    let probe = |x: &Tensor| -> std::result::Result<Vec<f64>, String> {
        let out = eval_op(&op, &[Some(x), roi.as_ref(), Some(&scales), None])?;
        Ok(out[0].to_f64_vec())
    };
    let identity = Tensor::F64(ArrayD::from_shape_fn(IxDyn(&[input, input]), |i| {
        f64::from(u8::from(i[0] == i[1]))
    }));
    let zeros = Tensor::F64(ArrayD::zeros(IxDyn(&[1, input])));
    let matrix = probe(&identity)?;
    let offset = probe(&zeros)?;
    if matrix.len() != input * output || offset.len() != output {
        return Err("the reference resize gave an unexpected shape".into());
    }
    let mut taps: Vec<Vec<(usize, f64)>> = vec![Vec::new(); output];
    for i in 0..input {
        for o in 0..output {
            let w = matrix[i * output + o] - offset[o];
            if w != 0.0 {
                taps[o].push((i, w));
            }
        }
    }
    let count = taps.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let slots = (0..count)
        .map(|j| {
            let index: Vec<i32> = taps
                .iter()
                .map(|t| t.get(j).map_or(0, |&(i, _)| i as i32))
                .collect();
            let weight: Vec<f32> = taps
                .iter()
                .map(|t| t.get(j).map_or(0.0, |&(_, w)| w as f32))
                .collect();
            Slot {
                index,
                weight: weight.iter().any(|&w| w != 1.0).then_some(weight),
            }
        })
        .collect();
    let offset = offset
        .iter()
        .any(|&c| c != 0.0)
        .then(|| offset.iter().map(|&c| c as f32).collect());
    Ok(AxisTaps {
        axis,
        output,
        slots,
        offset,
    })
}

/// The scale ONNX uses for each axis (output = input * scale): from the
/// constant `scales` input, or from `sizes` and the aspect-ratio policy.
fn scales(
    g: &Graph,
    node: &Node,
    a: &ResizeAttrs,
    xs: &[usize],
    ys: &[usize],
) -> std::result::Result<Vec<f64>, String> {
    let rank = xs.len();
    let resized = resized_axes(a, rank)?;
    let present = |i: usize| {
        node.input(i)
            .filter(|&v| g.fact(v).shape.as_fixed().is_none_or(|s| !s.contains(&0)))
    };
    let mut full: Vec<f64> = xs
        .iter()
        .zip(ys)
        .map(|(&i, &o)| o as f64 / i as f64)
        .collect();
    if let Some(s) = present(2) {
        let values = constant_of(g, s)?
            .ok_or("the scales are computed; the TFLite target needs them constant")?
            .to_f64_vec();
        if values.len() != resized.len() {
            return Err(format!(
                "{} scales for {} axes",
                values.len(),
                resized.len()
            ));
        }
        full = vec![1.0; rank];
        for (&ax, &v) in resized.iter().zip(&values) {
            full[ax] = v;
        }
    } else if a.keep_aspect_ratio_policy != AspectRatioPolicy::Stretch {
        let sizes = present(3).ok_or("Resize needs scales or sizes")?;
        let values = constant_of(g, sizes)?
            .ok_or("the sizes are computed; the TFLite target needs them constant")?
            .to_f64_vec();
        if values.len() != resized.len() {
            return Err(format!("{} sizes for {} axes", values.len(), resized.len()));
        }
        let ratios = resized
            .iter()
            .zip(&values)
            .map(|(&ax, &v)| v / xs[ax] as f64);
        let scale = if a.keep_aspect_ratio_policy == AspectRatioPolicy::NotLarger {
            ratios.fold(f64::INFINITY, f64::min)
        } else {
            ratios.fold(f64::NEG_INFINITY, f64::max)
        };
        for &ax in &resized {
            full[ax] = scale;
        }
    }
    if full.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(format!("scales {full:?} must be positive"));
    }
    Ok(full)
}

/// The input index ONNX's nearest mode picks for coordinate `x`.
fn onnx_nearest(x: f64, mode: NearestMode, input: usize) -> i64 {
    let floor = x.floor();
    let frac = x - floor;
    let up = if frac == 0.0 {
        false
    } else {
        match mode {
            NearestMode::RoundPreferFloor => frac > 0.5,
            NearestMode::RoundPreferCeil => frac >= 0.5,
            NearestMode::Floor => false,
            NearestMode::Ceil => true,
        }
    };
    let i = floor as i64 + i64::from(up);
    i.clamp(0, input as i64 - 1)
}

/// TFLite's scale for one axis, in float32 as its kernels compute it.
fn tfl_scale(input: usize, output: usize, align_corners: bool) -> f32 {
    if align_corners && output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        input as f32 / output as f32
    }
}

/// reference_ops::ResizeNearestNeighbor's GetNearestNeighbor.
fn tfl_nearest(o: usize, input: usize, output: usize, align: bool, half: bool) -> i64 {
    let scale = tfl_scale(input, output, align);
    let offset = if half { 0.5f32 } else { 0.0 };
    let v = (o as f32 + offset) * scale;
    let i = if align { v.round() } else { v.floor() } as i64;
    let i = i.min(input as i64 - 1);
    if half { i.max(0) } else { i }
}

/// The source coordinate of reference_ops::ResizeBilinear, clamped the way
/// its neighbor indices are.
fn tfl_bilinear(o: usize, input: usize, output: usize, align: bool, half: bool) -> f64 {
    let scale = tfl_scale(input, output, align);
    let v = if half {
        (o as f32 + 0.5) * scale - 0.5
    } else {
        o as f32 * scale
    };
    f64::from(v).clamp(0.0, (input - 1) as f64)
}

pub(super) fn lower(lx: &mut Lowerer, node: &Node, a: &ResizeAttrs) -> Result<()> {
    match plan(lx.g, node, a).map_err(|e| lx.error(e))? {
        ResizePlan::Builtin(b) => lower_builtin(lx, node, b),
        ResizePlan::Taps(axes) => lower_taps(lx, node, &axes),
    }
}

fn lower_builtin(lx: &mut Lowerer, node: &Node, plan: Builtin) -> Result<()> {
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let xt = lx.operand(x, Layout::ChannelsLast)?;
    let size = lx.const_i32(&format!("{}_size", node.name), &dims_i32(&plan.size));
    let out = lx.define(y, Layout::ChannelsLast)?;
    let dtype = lx.dtype(x)?;
    let flags = plan.align_corners || plan.half_pixel_centers;
    let (code, version, options) = if plan.nearest {
        (
            tfl::BuiltinOperator::RESIZE_NEAREST_NEIGHBOR,
            match dtype {
                DType::I16 => 4,
                _ if flags => 3,
                DType::I8 => 2,
                _ => 1,
            },
            tfl::BuiltinOptionsT::ResizeNearestNeighborOptions(Box::new(
                tfl::ResizeNearestNeighborOptionsT {
                    align_corners: plan.align_corners,
                    half_pixel_centers: plan.half_pixel_centers,
                },
            )),
        )
    } else {
        (
            tfl::BuiltinOperator::RESIZE_BILINEAR,
            if plan.half_pixel_centers { 3 } else { 1 },
            tfl::BuiltinOptionsT::ResizeBilinearOptions(Box::new(tfl::ResizeBilinearOptionsT {
                align_corners: plan.align_corners,
                half_pixel_centers: plan.half_pixel_centers,
            })),
        )
    };
    lx.op_version(
        code,
        version,
        vec![Some(xt), Some(size)],
        vec![out],
        options,
    );
    Ok(())
}

/// A binary elementwise op into a new tensor shaped like `a`.
fn binary(
    lx: &mut Lowerer,
    code: tfl::BuiltinOperator,
    a: TensorId,
    b: TensorId,
    name: &str,
) -> TensorId {
    let dtype = lx.model.tensor(a).dtype;
    let shape = lx.model.tensor(a).shape.clone();
    let out = lx.temp(name, dtype, shape);
    let options = match code {
        tfl::BuiltinOperator::MUL => tfl::BuiltinOptionsT::MulOptions(Box::default()),
        _ => tfl::BuiltinOptionsT::AddOptions(Box::default()),
    };
    lx.op(code, vec![Some(a), Some(b)], vec![out], options);
    out
}

fn lower_taps(lx: &mut Lowerer, node: &Node, axes: &[AxisTaps]) -> Result<()> {
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let rank = lx.rank(x)?;
    let layout = lx.common_layout(&[x], rank);
    let mut t = lx.operand(x, layout)?;
    let name = lx.g.value(y).name.clone();
    if axes.is_empty() {
        let out = lx.define(y, layout)?;
        super::reshape_into(lx, t, out);
        return Ok(());
    }
    for ax in axes {
        let stored = layout.stored_axis(ax.axis, rank);
        let mut shape = shape_usize(lx, t);
        shape[stored] = ax.output;
        let mut along = vec![1; rank];
        along[stored] = ax.output;
        let hint = format!("{name}_axis{}", ax.axis);
        let mut acc: Option<TensorId> = None;
        for (j, slot) in ax.slots.iter().enumerate() {
            let mut term = gather(
                lx,
                t,
                stored,
                &slot.index,
                &shape,
                &format!("{hint}_tap{j}"),
            );
            if let Some(w) = &slot.weight {
                let w = f32_tensor(&along, w.clone())?;
                let w = lx.const_tensor(&format!("{hint}_weight{j}"), &w)?;
                term = binary(
                    lx,
                    tfl::BuiltinOperator::MUL,
                    term,
                    w,
                    &format!("{hint}_term{j}"),
                );
            }
            acc = Some(match acc {
                None => term,
                Some(sum) => binary(
                    lx,
                    tfl::BuiltinOperator::ADD,
                    sum,
                    term,
                    &format!("{hint}_sum{j}"),
                ),
            });
        }
        t = acc.expect("every axis has a tap");
        if let Some(c) = &ax.offset {
            let c = f32_tensor(&along, c.clone())?;
            let c = lx.const_tensor(&format!("{hint}_extrapolated"), &c)?;
            t = binary(lx, tfl::BuiltinOperator::ADD, t, c, &format!("{hint}_out"));
        }
    }
    lx.alias(y, t, layout);
    Ok(())
}
