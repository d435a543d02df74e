//! Resize of the H and W axes: RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR.
//!
//! TFLite has three coordinate mappings (plain, align_corners,
//! half_pixel_centers). Rather than matching attribute names, the plan
//! computes, for every output row and column, the source coordinate ONNX
//! uses (as the IR reference does) and the one TFLite's kernel computes (in
//! float32, as the kernel does), and takes the first flag setting under
//! which they agree: exactly for nearest, to within float rounding for
//! linear.

use crate::ir::error::Result;
use crate::ir::ops::{
    AspectRatioPolicy, CoordinateTransform, NearestMode, ResizeAttrs, ResizeMode,
};
use crate::ir::{DType, Graph, Node};

use super::super::super::schema as tfl;
use super::super::{Layout, Lowerer, dims_i32};
use super::{constant_of, input_of, output_of, shape_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ResizePlan {
    nearest: bool,
    align_corners: bool,
    half_pixel_centers: bool,
    size: [usize; 2],
}

const LINEAR_TYPES: &[DType] = &[DType::F32];
const NEAREST_TYPES: &[DType] = &[DType::F32, DType::I32, DType::I16, DType::I8, DType::U8];

pub(super) fn plan(
    g: &Graph,
    node: &Node,
    a: &ResizeAttrs,
) -> std::result::Result<ResizePlan, String> {
    let nearest = match a.mode {
        ResizeMode::Nearest => true,
        ResizeMode::Linear => false,
        ResizeMode::Cubic => {
            return Err("cubic resize: TFLite has bilinear and nearest-neighbor only".into());
        }
    };
    if a.coordinate_transform == CoordinateTransform::TfCropAndResize {
        return Err("tf_crop_and_resize: TFLite's resize ops have no region of interest".into());
    }
    let (x, y) = (input_of(node, 0)?, output_of(node)?);
    let types = if nearest { NEAREST_TYPES } else { LINEAR_TYPES };
    for v in [x, y] {
        let dtype = g.fact(v).dtype;
        if !dtype.is_some_and(|d| types.contains(&d)) {
            return Err(format!(
                "value '{}' is {}; TFLite's {} resize takes {}",
                g.value(v).name,
                dtype.map_or("unknown".to_string(), |d| d.name()),
                if nearest { "nearest" } else { "bilinear" },
                types
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let xs = shape_of(g, x)?;
    let ys = shape_of(g, y)?;
    if xs.len() != 4 || ys.len() != 4 {
        return Err(format!(
            "a rank-{} input: TFLite resizes the spatial axes of 4-D tensors",
            xs.len()
        ));
    }
    if xs.contains(&0) || ys.contains(&0) {
        return Err("empty tensors".into());
    }
    let scales = scales(g, node, a, &xs, &ys)?;
    for ax in 0..2 {
        let identity = xs[ax] == ys[ax] && (scales[ax] == 1.0 || xs[ax] == 1);
        if !identity {
            return Err("resizing the batch or channel axis: TFLite resizes H and W only".into());
        }
    }
    if a.antialias && !nearest && scales[2..].iter().any(|&s| s < 1.0) {
        return Err("antialiased downscaling: TFLite's bilinear resize does not filter".into());
    }
    for (align_corners, half_pixel_centers) in [(false, false), (false, true), (true, false)] {
        let agrees = (2..4).all(|ax| {
            let (input, output) = (xs[ax], ys[ax]);
            (0..output).all(|o| {
                let onnx = onnx_coordinate(a.coordinate_transform, o, input, output, scales[ax]);
                if nearest {
                    let want = onnx_nearest(onnx, a.nearest_mode, input);
                    want == tfl_nearest(o, input, output, align_corners, half_pixel_centers)
                } else {
                    let want = onnx.clamp(0.0, (input - 1) as f64);
                    let got = tfl_bilinear(o, input, output, align_corners, half_pixel_centers);
                    (want - got).abs() <= 2e-6 * input.max(8) as f64
                }
            })
        });
        if agrees {
            return Ok(ResizePlan {
                nearest,
                align_corners,
                half_pixel_centers,
                size: [ys[2], ys[3]],
            });
        }
    }
    Err(format!(
        "{:?} coordinates{}: no TFLite resize mapping reproduces them for {:?} -> {:?}",
        a.coordinate_transform,
        if nearest {
            format!(" with {:?} rounding", a.nearest_mode)
        } else {
            String::new()
        },
        &xs[2..],
        &ys[2..]
    ))
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
    let resized: Vec<usize> = match &a.axes {
        Some(axes) => axes
            .iter()
            .map(|&ax| {
                let ax = if ax < 0 { ax + rank as i64 } else { ax };
                usize::try_from(ax)
                    .ok()
                    .filter(|&ax| ax < rank)
                    .ok_or_else(|| format!("axis {ax} is out of range"))
            })
            .collect::<std::result::Result<_, _>>()?,
        None => (0..rank).collect(),
    };
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

/// The input coordinate ONNX samples for output index `o` (the IR
/// reference's formulas).
fn onnx_coordinate(
    t: CoordinateTransform,
    o: usize,
    input: usize,
    output: usize,
    scale: f64,
) -> f64 {
    let (y, in_f) = (o as f64, input as f64);
    let out_f = scale * in_f;
    match t {
        CoordinateTransform::AlignCorners => {
            if out_f == 1.0 {
                0.0
            } else {
                y * (in_f - 1.0) / (out_f - 1.0)
            }
        }
        CoordinateTransform::Asymmetric => y / scale,
        CoordinateTransform::PytorchHalfPixel => {
            if out_f == 1.0 {
                -0.5
            } else {
                (y + 0.5) / scale - 0.5
            }
        }
        CoordinateTransform::HalfPixel => (y + 0.5) / scale - 0.5,
        CoordinateTransform::HalfPixelSymmetric => {
            let adjustment = output as f64 / out_f;
            let offset = in_f / 2.0 * (1.0 - adjustment);
            offset + (y + 0.5) / scale - 0.5
        }
        // Refused by `plan`; the center is as good as any coordinate.
        CoordinateTransform::TfCropAndResize => (in_f - 1.0) / 2.0,
    }
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
    let plan = plan(lx.g, node, a).map_err(|e| lx.error(e))?;
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let xt = lx.operand(x, Layout::ChannelsLast)?;
    let size = lx.const_i32(&format!("{}_size", node.name), &dims_i32(&plan.size));
    let out = lx.define(y, Layout::ChannelsLast)?;
    let int8 = matches!(lx.dtype(x)?, DType::I8);
    let flags = plan.align_corners || plan.half_pixel_centers;
    let (code, version, options) = if plan.nearest {
        (
            tfl::BuiltinOperator::RESIZE_NEAREST_NEIGHBOR,
            if lx.dtype(x)? == DType::I16 {
                4
            } else if flags {
                3
            } else if int8 {
                2
            } else {
                1
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
