//! Resize: nearest, linear and cubic interpolation, every coordinate
//! transform, antialiasing, `exclude_outside`, `keep_aspect_ratio_policy`.
//!
//! Interpolation is separable: the input is resized one axis at a time, each
//! output coordinate taking a fixed number of weighted input taps. Tap
//! placement and weights follow the ONNX reference implementation, computed
//! in f64.

use ndarray::{ArrayD, IxDyn};

use super::numeric::array_of;
use super::operands::{Args, axes, element_count};
use crate::ir::ops::{
    AspectRatioPolicy, CoordinateTransform, NearestMode, ResizeAttrs, ResizeMode,
};
use crate::ir::tensor::Tensor;

/// Resize. Inputs: X, roi?, scales?, sizes? (empty tensors count as absent).
pub fn resize(attrs: &ResizeAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let resized = match &attrs.axes {
        Some(a) => axes(a, rank)?,
        None => (0..rank).collect(),
    };
    let present = |i: usize| args.opt(i).filter(|t| !t.is_empty());
    let (scales, out_shape) = match (present(2), present(3)) {
        (Some(s), None) => from_scales(&shape, &resized, &s.to_f64_vec())?,
        (None, Some(_)) => from_sizes(
            attrs.keep_aspect_ratio_policy,
            &shape,
            &resized,
            &args.ints(3)?,
        )?,
        (Some(_), Some(_)) => return Err("only one of scales and sizes may be given".into()),
        (None, None) => return Err("one of scales and sizes must be given".into()),
    };
    element_count(&out_shape)?;
    let roi = match present(1) {
        Some(r) if attrs.coordinate_transform == CoordinateTransform::TfCropAndResize => {
            Some(full_roi(&r.to_f64_vec(), rank, &resized)?)
        }
        _ => None,
    };
    let mut data = array_of::<f64>(x).as_standard_layout().into_owned();
    for &ax in &resized {
        let axis_roi = roi.as_ref().map(|r| (r[ax], r[ax + rank]));
        let identity = (scales[ax] - 1.0).abs() < 1e-9
            && out_shape[ax] == data.shape()[ax]
            && axis_roi.is_none_or(|(a, b)| a.abs() < 1e-9 && (b - 1.0).abs() < 1e-9);
        if identity {
            continue;
        }
        let taps = Taps::new(attrs, data.shape()[ax], out_shape[ax], scales[ax], axis_roi)?;
        data = taps.apply(&data, ax, attrs.extrapolation_value.into());
    }
    let dtype = x.dtype();
    if dtype.is_float() {
        Tensor::F64(data).cast(dtype).map_err(|e| e.to_string())
    } else {
        Tensor::F64(data.mapv(f64::round_ties_even))
            .cast(dtype)
            .map_err(|e| e.to_string())
    }
}

/// Full-rank scales and the output shape `floor(in * scale)`.
fn from_scales(
    shape: &[usize],
    resized: &[usize],
    scales: &[f64],
) -> Result<(Vec<f64>, Vec<usize>), String> {
    if scales.len() != resized.len() {
        return Err(format!(
            "{} scales for {} axes",
            scales.len(),
            resized.len()
        ));
    }
    let mut full = vec![1.0; shape.len()];
    let mut out = shape.to_vec();
    for (&ax, &s) in resized.iter().zip(scales) {
        if s <= 0.0 || !s.is_finite() {
            return Err(format!("scale {s} must be positive"));
        }
        full[ax] = s;
        let size = (shape[ax] as f64 * s).floor();
        if size > super::operands::MAX_ELEMENTS as f64 {
            return Err(format!("scale {s} makes axis {ax} too large"));
        }
        out[ax] = size as usize;
    }
    Ok((full, out))
}

/// Full-rank scales `out / in` and the output shape, adjusted to keep the
/// aspect ratio under `not_larger` / `not_smaller`.
fn from_sizes(
    policy: AspectRatioPolicy,
    shape: &[usize],
    resized: &[usize],
    sizes: &[i64],
) -> Result<(Vec<f64>, Vec<usize>), String> {
    if sizes.len() != resized.len() {
        return Err(format!("{} sizes for {} axes", sizes.len(), resized.len()));
    }
    let mut out = shape.to_vec();
    for (&ax, &s) in resized.iter().zip(sizes) {
        out[ax] = super::operands::dim(s)?;
    }
    let mut scales: Vec<f64> = out
        .iter()
        .zip(shape)
        .map(|(&o, &i)| o as f64 / i as f64)
        .collect();
    if policy != AspectRatioPolicy::Stretch {
        let chosen = resized.iter().map(|&a| scales[a]);
        let scale = if policy == AspectRatioPolicy::NotLarger {
            chosen.fold(f64::INFINITY, f64::min)
        } else {
            chosen.fold(f64::NEG_INFINITY, f64::max)
        };
        for &ax in resized {
            scales[ax] = scale;
            out[ax] = (scale * shape[ax] as f64 + 0.5).floor() as usize;
        }
    }
    Ok((scales, out))
}

/// The roi as `[starts..., ends...]` over every axis (0 and 1 elsewhere).
fn full_roi(roi: &[f64], rank: usize, resized: &[usize]) -> Result<Vec<f64>, String> {
    if roi.len() == 2 * rank {
        return Ok(roi.to_vec());
    }
    if roi.len() != 2 * resized.len() {
        return Err(format!(
            "roi of {} values for {} axes",
            roi.len(),
            resized.len()
        ));
    }
    let mut full: Vec<f64> = [vec![0.0; rank], vec![1.0; rank]].concat();
    for (i, &ax) in resized.iter().enumerate() {
        full[ax] = roi[i];
        full[ax + rank] = roi[i + resized.len()];
    }
    Ok(full)
}

/// Weighted input taps for every output coordinate of one axis.
struct Taps {
    per_output: usize,
    index: Vec<usize>,
    weight: Vec<f64>,
    /// tf_crop_and_resize coordinates outside the input take the extrapolation value.
    extrapolated: Vec<bool>,
}

/// The input coordinate ONNX Resize samples for output index `y` of an axis
/// resized from `input` to `output` elements by `scale` (`roi`: the
/// tf_crop_and_resize window as fractions of the axis, whole axis when absent).
pub fn source_coordinate(
    transform: CoordinateTransform,
    y: usize,
    input: usize,
    output: usize,
    scale: f64,
    roi: Option<(f64, f64)>,
) -> f64 {
    let (y, in_f) = (y as f64, input as f64);
    let out_f = scale * in_f;
    match transform {
        CoordinateTransform::AlignCorners => {
            if out_f == 1.0 {
                0.0
            } else {
                y * (in_f - 1.0) / (out_f - 1.0)
            }
        }
        CoordinateTransform::Asymmetric => y / scale,
        CoordinateTransform::TfCropAndResize => {
            let (start, end) = roi.unwrap_or((0.0, 1.0));
            let x = if out_f == 1.0 {
                (end - start) * (in_f - 1.0) / 2.0
            } else {
                y * (end - start) * (in_f - 1.0) / (out_f - 1.0)
            };
            x + start * (in_f - 1.0)
        }
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
    }
}

impl Taps {
    fn new(
        attrs: &ResizeAttrs,
        input: usize,
        output: usize,
        scale: f64,
        roi: Option<(f64, f64)>,
    ) -> Result<Taps, String> {
        if input == 0 && output > 0 {
            return Err("cannot resize an empty axis to a non-empty one".into());
        }
        let in_f = input as f64;
        let mut taps = Taps {
            per_output: 0,
            index: Vec::new(),
            weight: Vec::new(),
            extrapolated: Vec::new(),
        };
        for y in 0..output {
            let x = source_coordinate(attrs.coordinate_transform, y, input, output, scale, roi);
            taps.extrapolated.push(
                attrs.coordinate_transform == CoordinateTransform::TfCropAndResize
                    && (x < 0.0 || x > in_f - 1.0),
            );
            let floor = x.floor();
            let ratio = if x == floor { 1.0 } else { x - floor };
            let mut coeffs = coefficients(attrs, ratio, scale);
            let n = coeffs.len();
            taps.per_output = n;
            let pad = n.div_ceil(2) as f64;
            let padded = x + pad;
            let p = padded.floor();
            let frac = padded - p;
            let offset = if n % 2 == 0 {
                if frac == 0.0 {
                    -((n / 2) as f64)
                } else {
                    -((n / 2) as f64) + 1.0
                }
            } else {
                let base = -(((n - 1) / 2) as f64);
                if frac <= 0.5 { base } else { base + 1.0 }
            };
            let start = p + offset - pad;
            if attrs.exclude_outside {
                for (j, c) in coeffs.iter_mut().enumerate() {
                    let i = start + j as f64;
                    if i < 0.0 || i >= in_f {
                        *c = 0.0;
                    }
                }
                let sum: f64 = coeffs.iter().sum();
                let sum = if sum == 0.0 { 1.0 } else { sum };
                coeffs.iter_mut().for_each(|c| *c /= sum);
            }
            for (j, c) in coeffs.into_iter().enumerate() {
                let i = (start + j as f64).clamp(0.0, in_f - 1.0);
                taps.index.push(i as usize);
                taps.weight.push(c);
            }
        }
        Ok(taps)
    }

    /// Resizes axis `ax` of standard-layout `data`.
    fn apply(&self, data: &ArrayD<f64>, ax: usize, extrapolation: f64) -> ArrayD<f64> {
        let shape = data.shape();
        let outer: usize = shape[..ax].iter().product();
        let inner: usize = shape[ax + 1..].iter().product();
        let (input, output) = (shape[ax], self.extrapolated.len());
        let src = data.as_slice().expect("standard layout");
        let mut out = vec![0.0; outer * output * inner];
        for o in 0..outer {
            for y in 0..output {
                let dst = &mut out[(o * output + y) * inner..][..inner];
                if self.extrapolated[y] {
                    dst.fill(extrapolation);
                    continue;
                }
                for j in 0..self.per_output {
                    let (i, w) = (
                        self.index[y * self.per_output + j],
                        self.weight[y * self.per_output + j],
                    );
                    let row = &src[(o * input + i) * inner..][..inner];
                    dst.iter_mut().zip(row).for_each(|(d, &s)| *d += w * s);
                }
            }
        }
        let mut out_shape = shape.to_vec();
        out_shape[ax] = output;
        ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("sizes match")
    }
}

/// The tap weights for a coordinate whose fractional position past its left
/// neighbour is `ratio` (in `(0, 1]`).
fn coefficients(attrs: &ResizeAttrs, ratio: f64, scale: f64) -> Vec<f64> {
    let a = f64::from(attrs.cubic_coeff_a);
    match attrs.mode {
        ResizeMode::Nearest => {
            if ratio.fract() == 0.0 {
                return vec![0.0, 1.0];
            }
            let left = match attrs.nearest_mode {
                NearestMode::RoundPreferFloor => ratio <= 0.5,
                NearestMode::RoundPreferCeil => ratio < 0.5,
                NearestMode::Floor => true,
                NearestMode::Ceil => false,
            };
            if left { vec![1.0, 0.0] } else { vec![0.0, 1.0] }
        }
        ResizeMode::Linear if attrs.antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            normalized(
                (start..start + footprint)
                    .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0)),
            )
        }
        ResizeMode::Linear => vec![1.0 - ratio, ratio],
        ResizeMode::Cubic if attrs.antialias => {
            let s = scale.min(1.0);
            let start = (-2.0 / s).floor() as i64 + 1;
            let end = 2 - start;
            normalized((start..end).map(|i| cubic(a, s * (i as f64 - ratio))))
        }
        ResizeMode::Cubic => vec![
            cubic(a, ratio + 1.0),
            cubic(a, ratio),
            cubic(a, 1.0 - ratio),
            cubic(a, 2.0 - ratio),
        ],
    }
}

fn normalized(coeffs: impl Iterator<Item = f64>) -> Vec<f64> {
    let c: Vec<f64> = coeffs.collect();
    let sum: f64 = c.iter().sum();
    c.into_iter().map(|v| v / sum).collect()
}

/// The Keys cubic convolution kernel with parameter `a`.
fn cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;

    fn attrs(mode: ResizeMode, transform: CoordinateTransform) -> ResizeAttrs {
        ResizeAttrs {
            mode,
            coordinate_transform: transform,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
            axes: None,
        }
    }

    fn run(a: &ResizeAttrs, x: &Tensor, scales: &[f32]) -> Tensor {
        let s =
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[scales.len()]), scales.to_vec()).unwrap());
        let op = Op::Resize(a.clone());
        let inputs = [Some(x), None, Some(&s)];
        resize(a, &Args::new(&op, &inputs).unwrap()).unwrap()
    }

    #[test]
    fn nearest_upsample_repeats() {
        let x = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1.0, 2.0]).unwrap());
        let y = run(
            &attrs(ResizeMode::Nearest, CoordinateTransform::Asymmetric),
            &x,
            &[1.0, 2.0],
        );
        assert_eq!(y.to_f64_vec(), vec![1.0, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn linear_half_pixel_and_align_corners() {
        let x = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[2]), vec![0.0, 1.0]).unwrap());
        let y = run(
            &attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel),
            &x,
            &[2.0],
        );
        assert_eq!(y.to_f64_vec(), vec![0.0, 0.25, 0.75, 1.0]);
        let y = run(
            &attrs(ResizeMode::Linear, CoordinateTransform::AlignCorners),
            &x,
            &[1.5],
        );
        assert_eq!(y.to_f64_vec(), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn cubic_kernel_interpolates_constants_exactly() {
        let x = Tensor::F32(ArrayD::from_elem(IxDyn(&[5]), 3.0));
        let y = run(
            &attrs(ResizeMode::Cubic, CoordinateTransform::HalfPixel),
            &x,
            &[1.7],
        );
        assert!(y.to_f64_vec().iter().all(|v| (v - 3.0).abs() < 1e-6));
    }
}
