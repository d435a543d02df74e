//! Normalizations: Batch (inference), Instance, Layer, Group, Lp, and
//! MeanVariance.

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::broadcast::broadcast_view;
use super::numeric::{Number, Real, array_of, restore};
use super::operands::{Args, axes, axis};
use crate::ir::ops::{GroupNormAttrs, LayerNormAttrs, LpNormAttrs};
use crate::ir::tensor::{Element, Tensor};

/// A per-channel parameter of shape `[channels]`.
fn per_channel<F: Real>(t: &Tensor, channels: usize, name: &str) -> Result<Vec<F>, String> {
    if t.len() != channels {
        return Err(format!(
            "{name} has shape {:?}, expected [{channels}]",
            t.shape()
        ));
    }
    Ok(array_of::<F>(t).iter().copied().collect())
}

fn channels_of(x: &Tensor) -> Result<(usize, usize), String> {
    match x.shape() {
        [n, c, ..] => Ok((*n, *c)),
        s => Err(format!("input shape {s:?} needs batch and channel dims")),
    }
}

/// Normalizes each row of `data` (rows of `row_len`) to zero mean and unit
/// variance (population variance, `epsilon` added), then applies
/// `affine(row, position, value)`.
fn normalize_rows<F: Real>(
    data: &mut [F],
    row_len: usize,
    epsilon: f64,
    affine: impl Fn(usize, usize, F) -> F,
) {
    if row_len == 0 {
        return;
    }
    for (r, row) in data.chunks_mut(row_len).enumerate() {
        let n = row_len as f64;
        let mean = row.iter().map(|&v| Element::to_f64(v)).sum::<f64>() / n;
        let var = row
            .iter()
            .map(|&v| (Element::to_f64(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + epsilon).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = affine(r, i, F::c((Element::to_f64(*v) - mean) * inv));
        }
    }
}

fn standard_vec<F: Real>(x: &Tensor) -> Vec<F> {
    let a = array_of::<F>(x);
    a.as_standard_layout().iter().copied().collect()
}

fn shaped<F: Real>(
    shape: &[usize],
    data: Vec<F>,
    dtype: crate::ir::dtype::DType,
) -> Result<Tensor, String> {
    let y = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?;
    Ok(restore(y, dtype))
}

/// BatchNormalization (inference). Inputs: X, scale, bias, mean, var.
pub fn batch_norm(epsilon: f32, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let dtype = x.dtype();
    let channels = match x.shape() {
        [_, c, ..] => *c,
        [c] => *c,
        s => return Err(format!("input shape {s:?} has no channel dim")),
    };
    let plane: usize = x.shape().iter().skip(2).product();
    dispatch_real!(dtype, F => {
        let p = |i: usize, name: &str| per_channel::<F>(args.get(i)?, channels, name);
        let (scale, bias, mean, var) = (p(1, "scale")?, p(2, "bias")?, p(3, "mean")?, p(4, "var")?);
        let eps = F::c(epsilon.into());
        let factor: Vec<F> = scale.iter().zip(&var).map(|(&s, &v)| s / (v + eps).sqrt()).collect();
        let mut data = standard_vec::<F>(x);
        for (i, values) in data.chunks_mut(plane.max(1)).enumerate() {
            let c = i % channels;
            let (m, f, b) = (mean[c], factor[c], bias[c]);
            values.iter_mut().for_each(|v| *v = (*v - m) * f + b);
        }
        shaped(x.shape(), data, dtype)
    })
}

/// InstanceNormalization. Inputs: X `[N, C, ...]`, scale `[C]`, bias `[C]`.
pub fn instance_norm(epsilon: f32, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let dtype = x.dtype();
    let (_, channels) = channels_of(x)?;
    let plane: usize = x.shape()[2..].iter().product();
    dispatch_real!(dtype, F => {
        let scale = per_channel::<F>(args.get(1)?, channels, "scale")?;
        let bias = per_channel::<F>(args.get(2)?, channels, "bias")?;
        let mut data = standard_vec::<F>(x);
        normalize_rows(&mut data, plane, epsilon.into(), |r, _, v| {
            let c = r % channels;
            v * scale[c] + bias[c]
        });
        shaped(x.shape(), data, dtype)
    })
}

/// LayerNormalization over axes `axis..rank`. Inputs: X, scale, bias?
pub fn layer_norm(attrs: &LayerNormAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let dtype = x.dtype();
    let first = axis(attrs.axis, x.shape().len())?;
    let normalized = &x.shape()[first..];
    let row_len: usize = normalized.iter().product();
    dispatch_real!(dtype, F => {
        let param = |t: &Tensor| -> Result<Vec<F>, String> {
            let a = array_of::<F>(t);
            Ok(broadcast_view(&a.view(), normalized)?.iter().copied().collect())
        };
        let scale = param(args.get(1)?)?;
        let bias = args.opt(2).map(param).transpose()?;
        let mut data = standard_vec::<F>(x);
        normalize_rows(&mut data, row_len, attrs.epsilon.into(), |_, i, v| {
            v * scale[i] + bias.as_ref().map_or(F::ZERO, |b| b[i])
        });
        shaped(x.shape(), data, dtype)
    })
}

/// RMSNormalization over axes `axis..rank`: `x / sqrt(mean(x²) + epsilon)`,
/// times scale (numpy-broadcast to X, as in ONNX). Inputs: X, scale.
pub fn rms_norm(attrs: &LayerNormAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let dtype = x.dtype();
    let first = axis(attrs.axis, x.shape().len())?;
    let row_len: usize = x.shape()[first..].iter().product();
    let epsilon = f64::from(attrs.epsilon);
    dispatch_real!(dtype, F => {
        let scale_array = array_of::<F>(args.get(1)?);
        let scale: Vec<F> = broadcast_view(&scale_array.view(), x.shape())?.iter().copied().collect();
        let mut data = standard_vec::<F>(x);
        let rows = data.chunks_mut(row_len.max(1)).zip(scale.chunks(row_len.max(1)));
        for (row, scale_row) in rows {
            let mean_square = row.iter().map(|&v| Element::to_f64(v).powi(2)).sum::<f64>() / row_len as f64;
            let inv = F::c(1.0 / (mean_square + epsilon).sqrt());
            for (v, &s) in row.iter_mut().zip(scale_row) {
                *v = *v * inv * s;
            }
        }
        shaped(x.shape(), data, dtype)
    })
}

/// GroupNormalization. Inputs: X `[N, C, ...]`, scale `[C]`, bias `[C]`.
pub fn group_norm(attrs: &GroupNormAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let dtype = x.dtype();
    let (_, channels) = channels_of(x)?;
    let groups = attrs.num_groups;
    if groups == 0 || channels % groups != 0 {
        return Err(format!(
            "{channels} channels do not split into {groups} groups"
        ));
    }
    let plane: usize = x.shape()[2..].iter().product();
    let group_len = channels / groups * plane;
    dispatch_real!(dtype, F => {
        let scale = per_channel::<F>(args.get(1)?, channels, "scale")?;
        let bias = per_channel::<F>(args.get(2)?, channels, "bias")?;
        let mut data = standard_vec::<F>(x);
        normalize_rows(&mut data, group_len, attrs.epsilon.into(), |r, i, v| {
            let c = (r % groups) * (channels / groups) + i / plane.max(1);
            v * scale[c] + bias[c]
        });
        shaped(x.shape(), data, dtype)
    })
}

/// LpNormalization: `x / ||x||_p` along `axis` (p is 1 or 2).
pub fn lp_norm(attrs: &LpNormAttrs, x: &Tensor) -> Result<Tensor, String> {
    let dtype = x.dtype();
    let ax = axis(attrs.axis, x.shape().len())?;
    if attrs.p != 1 && attrs.p != 2 {
        return Err(format!("p must be 1 or 2, got {}", attrs.p));
    }
    dispatch_real!(dtype, F => {
        let mut y = array_of::<F>(x).into_owned();
        for mut lane in y.lanes_mut(Axis(ax)) {
            let norm = if attrs.p == 1 {
                lane.iter().map(|v| v.abs()).sum::<F>()
            } else {
                lane.iter().map(|&v| v * v).sum::<F>().sqrt()
            };
            if norm != F::ZERO {
                lane.mapv_inplace(|v| v / norm);
            }
        }
        Ok(restore(y, dtype))
    })
}

/// MeanVarianceNormalization: `(x - mean) / (std + 1e-9)` over `axes`
/// (ONNX's default `[0, 2, 3]` when empty).
pub fn mean_variance_norm(axes_attr: &[i64], x: &Tensor) -> Result<Tensor, String> {
    let dtype = x.dtype();
    let rank = x.shape().len();
    let default = [0, 2, 3];
    let reduced = axes(
        if axes_attr.is_empty() {
            &default
        } else {
            axes_attr
        },
        rank,
    )?;
    dispatch_real!(dtype, F => {
        let a = array_of::<F>(x);
        let mut mean = a.to_owned();
        let mut mean_sq = a.mapv(|v| v * v);
        let mut sorted = reduced.clone();
        sorted.sort_unstable();
        for &ax in sorted.iter().rev() {
            mean = mean.mean_axis(Axis(ax)).ok_or("empty reduction")?.insert_axis(Axis(ax));
            mean_sq = mean_sq.mean_axis(Axis(ax)).ok_or("empty reduction")?.insert_axis(Axis(ax));
        }
        let (mean, mean_sq) = (mean.view(), mean_sq.view());
        let mean = broadcast_view(&mean, a.shape())?;
        let mean_sq = broadcast_view(&mean_sq, a.shape())?;
        let eps = F::c(1e-9);
        let y = Zip::from(&a).and(&mean).and(&mean_sq).map_collect(|&v, &m, &s| {
            (v - m) / ((s - m * m).max(F::ZERO).sqrt() + eps)
        });
        Ok(restore(y, dtype))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::{EpsilonAttrs, Op};

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn close(a: &Tensor, b: &[f64]) {
        for (x, y) in a.to_f64_vec().iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{:?} vs {b:?}", a.to_f64_vec());
        }
    }

    #[test]
    fn batch_norm_applies_per_channel_statistics() {
        let x = t(&[1, 2, 1, 2], vec![1.0, 3.0, 10.0, 20.0]);
        let scale = t(&[2], vec![1.0, 2.0]);
        let bias = t(&[2], vec![0.0, 1.0]);
        let mean = t(&[2], vec![2.0, 10.0]);
        let var = t(&[2], vec![1.0, 4.0]);
        let op = Op::BatchNormalization(EpsilonAttrs { epsilon: 0.0 });
        let inputs = [Some(&x), Some(&scale), Some(&bias), Some(&mean), Some(&var)];
        let y = batch_norm(0.0, &Args::new(&op, &inputs).unwrap()).unwrap();
        close(&y, &[-1.0, 1.0, 1.0, 11.0]);
    }

    #[test]
    fn rms_norm_divides_by_the_root_mean_square() {
        let x = t(&[2, 2], vec![3.0, 4.0, 1.0, -1.0]);
        let scale = t(&[2], vec![1.0, 2.0]);
        let attrs = LayerNormAttrs {
            axis: -1,
            epsilon: 0.0,
        };
        let op = Op::RmsNormalization(attrs.clone());
        let inputs = [Some(&x), Some(&scale)];
        let y = rms_norm(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap();
        let r = 12.5f64.sqrt();
        close(&y, &[3.0 / r, 8.0 / r, 1.0, -2.0]);
    }

    #[test]
    fn layer_norm_normalizes_trailing_axes() {
        let x = t(&[2, 2], vec![1.0, 3.0, 5.0, 5.0]);
        let scale = t(&[2], vec![1.0, 1.0]);
        let attrs = LayerNormAttrs {
            axis: -1,
            epsilon: 1e-6,
        };
        let op = Op::LayerNormalization(attrs.clone());
        let inputs = [Some(&x), Some(&scale)];
        let y = layer_norm(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap();
        close(&y, &[-1.0, 1.0, 0.0, 0.0]);
    }
}
