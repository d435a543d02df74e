//! Resize and its predecessor Upsample, both as the IR's Resize
//! (inputs X, roi?, scales?, sizes?).

use ndarray::{ArrayD, IxDyn};

use crate::ir::error::Result;
use crate::ir::ops::{
    AspectRatioPolicy, CoordinateTransform, NearestMode, ResizeAttrs, ResizeMode,
};
use crate::ir::{Op, Tensor};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(op_type, "Resize" | "Upsample")
}

fn mode(name: &str) -> Option<ResizeMode> {
    Some(match name {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic,
        _ => return None,
    })
}

/// Attributes of the Upsample-style forms (Upsample, Resize-10): asymmetric
/// coordinates; nearest rounds down when enlarging and up when shrinking (as
/// onnxruntime implements those opsets).
fn legacy_attrs(mode: ResizeMode, shrinks: bool) -> ResizeAttrs {
    ResizeAttrs {
        mode,
        coordinate_transform: CoordinateTransform::Asymmetric,
        nearest_mode: if shrinks {
            NearestMode::Ceil
        } else {
            NearestMode::Floor
        },
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
        axes: None,
    }
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let Some(m) = mode(&a.string("mode", "nearest")?) else {
        return Ok(cx.custom());
    };
    if op_type == "Upsample" || cx.opset < 11 {
        if op_type == "Upsample" && cx.opset < 7 {
            return Ok(cx.custom());
        }
        let scales_attr = if op_type == "Upsample" && cx.opset < 9 {
            Some(
                a.floats("scales")?
                    .ok_or_else(|| a.error("scales", "is required"))?,
            )
        } else {
            None
        };
        let scales = match scales_attr {
            Some(s) => {
                let t = Tensor::F32(
                    ArrayD::from_shape_vec(IxDyn(&[s.len()]), s.clone())
                        .expect("len elements fill shape [len]"),
                );
                let v = cx.add_constant("scales", &t)?;
                Some((v, s.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()))
            }
            None => cx.input(1).map(|v| {
                (
                    v,
                    cx.constant(1).map(|t| t.to_f64_vec()).unwrap_or_default(),
                )
            }),
        };
        let shrinks = scales
            .as_ref()
            .is_some_and(|(_, s)| s.iter().any(|&x| x < 1.0));
        cx.inputs = vec![cx.input(0), None, scales.map(|(v, _)| v)];
        return Ok(Op::Resize(legacy_attrs(m, shrinks)));
    }
    let coordinate_transform = match a
        .string("coordinate_transformation_mode", "half_pixel")?
        .as_str()
    {
        "half_pixel" => CoordinateTransform::HalfPixel,
        "half_pixel_symmetric" => CoordinateTransform::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordinateTransform::PytorchHalfPixel,
        "align_corners" => CoordinateTransform::AlignCorners,
        "asymmetric" => CoordinateTransform::Asymmetric,
        "tf_crop_and_resize" => CoordinateTransform::TfCropAndResize,
        _ => return Ok(cx.custom()),
    };
    let nearest_mode = match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        _ => return Ok(cx.custom()),
    };
    let keep_aspect_ratio_policy = match a.string("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => AspectRatioPolicy::Stretch,
        "not_larger" => AspectRatioPolicy::NotLarger,
        "not_smaller" => AspectRatioPolicy::NotSmaller,
        _ => return Ok(cx.custom()),
    };
    Ok(Op::Resize(ResizeAttrs {
        mode: m,
        coordinate_transform,
        nearest_mode,
        cubic_coeff_a: a.float("cubic_coeff_a", -0.75)?,
        exclude_outside: a.bool("exclude_outside", false)?,
        extrapolation_value: a.float("extrapolation_value", 0.0)?,
        antialias: a.bool("antialias", false)?,
        keep_aspect_ratio_policy,
        axes: a.ints("axes")?,
    }))
}
