//! QuantizeLinear and DequantizeLinear (per tensor, per axis, blocked) and
//! MatMulInteger.

use ndarray::{ArrayD, Axis, IxDyn};

use super::broadcast::broadcast_view;
use super::elementwise::round_half_even;
use super::matmul::{batched_matmul, gemm_into};
use super::numeric::{array_of, held_dtype, restore};
use super::operands::{Args, axis, strides_of};
use crate::ir::dtype::DType;
use crate::ir::ops::{DequantizeAttrs, QuantizeAttrs};
use crate::ir::tensor::Tensor;

/// Which scale (and zero point) each element of a tensor uses.
enum Granularity {
    Tensor,
    /// One parameter per index of an axis: `(flat / inner) % len`.
    Axis {
        inner: usize,
        len: usize,
    },
    /// One parameter per block of `block` elements along `axis`.
    Blocked {
        axis: usize,
        block: usize,
        x_strides: Vec<usize>,
        x_shape: Vec<usize>,
        param_strides: Vec<usize>,
    },
}

impl Granularity {
    fn new(x: &[usize], param: &[usize], ax: i64, block: usize) -> Result<Granularity, String> {
        let count: usize = param.iter().product();
        if count == 1 && param.len() <= 1 {
            return Ok(Granularity::Tensor);
        }
        let ax = axis(ax, x.len())?;
        if block == 0 {
            if param != [x[ax]] {
                return Err(format!(
                    "scale shape {param:?} must be [{}] for axis {ax} of {x:?}",
                    x[ax]
                ));
            }
            return Ok(Granularity::Axis {
                inner: x[ax + 1..].iter().product(),
                len: x[ax],
            });
        }
        let fits = param.len() == x.len()
            && (0..x.len()).all(|d| {
                if d == ax {
                    param[d] == x[d].div_ceil(block)
                } else {
                    param[d] == x[d]
                }
            });
        if !fits {
            return Err(format!(
                "scale shape {param:?} does not block {x:?} by {block} along axis {ax}"
            ));
        }
        Ok(Granularity::Blocked {
            axis: ax,
            block,
            x_strides: strides_of(x),
            x_shape: x.to_vec(),
            param_strides: strides_of(param),
        })
    }

    fn index(&self, flat: usize) -> usize {
        match self {
            Granularity::Tensor => 0,
            Granularity::Axis { inner, len } => (flat / inner.max(&1)) % len.max(&1),
            Granularity::Blocked {
                axis,
                block,
                x_strides,
                x_shape,
                param_strides,
            } => (0..x_shape.len())
                .map(|d| {
                    let c = (flat / x_strides[d]) % x_shape[d];
                    (if d == *axis { c / block } else { c }) * param_strides[d]
                })
                .sum(),
        }
    }
}

/// The representable range of a quantized dtype.
fn range_of(dtype: DType) -> Result<(f64, f64), String> {
    Ok(match dtype {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        other => return Err(format!("cannot quantize to {other}")),
    })
}

/// The scales as f32 and the zero points (0 when absent) as f64, one per
/// quantization group.
fn scales_and_zero_points(
    scale: &Tensor,
    zp: Option<&Tensor>,
) -> Result<(Vec<f32>, Vec<f64>), String> {
    let scales: Vec<f32> = array_of::<f32>(scale).iter().copied().collect();
    let zps: Vec<f64> = zp
        .map(Tensor::to_f64_vec)
        .unwrap_or_else(|| vec![0.0; scales.len()]);
    if zps.len() != scales.len() {
        return Err("zero point and scale differ in shape".into());
    }
    Ok((scales, zps))
}

/// QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)`.
/// Inputs: x, y_scale, y_zero_point? 4-bit outputs are held unpacked in i8/u8.
pub fn quantize(attrs: &QuantizeAttrs, args: &Args) -> Result<Tensor, String> {
    let (x, scale, zp) = (args.get(0)?, args.get(1)?, args.opt(2));
    let out_dtype = zp
        .map(Tensor::dtype)
        .or(attrs.output_dtype)
        .unwrap_or(DType::U8);
    let (lo, hi) = range_of(out_dtype)?;
    let g = Granularity::new(x.shape(), scale.shape(), attrs.axis, attrs.block_size)?;
    let (scales, zps) = scales_and_zero_points(scale, zp)?;
    let xs = array_of::<f32>(x);
    let q: Vec<f64> = xs
        .as_standard_layout()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let p = g.index(i);
            (f64::from(round_half_even(v / scales[p])) + zps[p]).clamp(lo, hi)
        })
        .collect();
    let q = Tensor::F64(ArrayD::from_shape_vec(IxDyn(x.shape()), q).map_err(|e| e.to_string())?);
    q.cast(held_dtype(out_dtype)).map_err(|e| e.to_string())
}

/// DequantizeLinear: `(x - zero_point) * scale`, in the scale's dtype.
/// Inputs: x, x_scale, x_zero_point?
pub fn dequantize(attrs: &DequantizeAttrs, args: &Args) -> Result<Tensor, String> {
    let (x, scale, zp) = (args.get(0)?, args.get(1)?, args.opt(2));
    if !x.dtype().is_integer() {
        return Err(format!("expects an integer input, got {}", x.dtype()));
    }
    let g = Granularity::new(x.shape(), scale.shape(), attrs.axis, attrs.block_size)?;
    let (scales, zps) = scales_and_zero_points(scale, zp)?;
    let xs = array_of::<f64>(x);
    let y: Vec<f32> = xs
        .as_standard_layout()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let p = g.index(i);
            (v - zps[p]) as f32 * scales[p]
        })
        .collect();
    let y = ArrayD::from_shape_vec(IxDyn(x.shape()), y).map_err(|e| e.to_string())?;
    match scale.dtype() {
        DType::F32 | DType::F16 | DType::BF16 => Ok(restore(y, scale.dtype())),
        other => Err(format!("scale must be a float tensor, got {other}")),
    }
}

/// MatMulInteger: numpy matmul of `(A - a_zero_point)` and `(B - b_zero_point)`
/// in i32. A's zero point is a scalar or one per row, B's a scalar or one per column.
pub fn matmul_integer(args: &Args) -> Result<Tensor, String> {
    let (a, b) = (args.get(0)?, args.get(1)?);
    for t in [a, b] {
        if !matches!(t.dtype(), DType::U8 | DType::I8) {
            return Err(format!("expects u8 or i8 operands, got {}", t.dtype()));
        }
    }
    let shifted = |t: &Tensor, zp: Option<&Tensor>, per_row: bool| -> Result<ArrayD<i32>, String> {
        let x = array_of::<i32>(t).into_owned();
        let Some(zp) = zp else { return Ok(x) };
        let z = array_of::<i32>(zp).into_owned();
        let z = if per_row && z.len() > 1 && z.ndim() == 1 {
            z.insert_axis(Axis(1))
        } else {
            z
        };
        let z = z.view();
        let z = broadcast_view(&z, x.shape())?;
        Ok(&x - &z)
    };
    // Operands lie in [-255, 255], so f64 sums of products are exact integers
    // (below 2^53 for any inner dim under 10^11) and the fast float kernel applies.
    let a = shifted(a, args.opt(2), true)?.mapv(f64::from);
    let b = shifted(b, args.opt(3), false)?.mapv(f64::from);
    let y = batched_matmul(a.view(), b.view(), |a, b, c| gemm_into(a, b, 0.0, c))?;
    Ok(Tensor::I32(y.mapv(|v| v as i64 as i32)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;

    fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    #[test]
    fn quantize_rounds_half_even_and_saturates() {
        let x = f32s(&[5], vec![0.5, 1.5, 2.5, 1000.0, -1000.0]);
        let scale = f32s(&[], vec![1.0]);
        let zp = Tensor::U8(ArrayD::from_elem(IxDyn(&[]), 10));
        let attrs = QuantizeAttrs {
            axis: 1,
            saturate: true,
            block_size: 0,
            output_dtype: None,
        };
        let op = Op::QuantizeLinear(attrs.clone());
        let inputs = [Some(&x), Some(&scale), Some(&zp)];
        let y = quantize(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(y.to_f64_vec(), vec![10.0, 12.0, 12.0, 255.0, 0.0]);
    }

    #[test]
    fn dequantize_per_axis_and_blocked() {
        let x = Tensor::I8(
            ArrayD::from_shape_vec(IxDyn(&[2, 4]), vec![1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
        );
        let per_row = f32s(&[2], vec![1.0, 10.0]);
        let attrs = DequantizeAttrs {
            axis: 0,
            block_size: 0,
        };
        let op = Op::DequantizeLinear(attrs.clone());
        let inputs = [Some(&x), Some(&per_row)];
        let y = dequantize(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(
            y.to_f64_vec(),
            vec![1.0, 2.0, 3.0, 4.0, 50.0, 60.0, 70.0, 80.0]
        );
        let blocked = f32s(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let attrs = DequantizeAttrs {
            axis: 1,
            block_size: 2,
        };
        let inputs = [Some(&x), Some(&blocked)];
        let y = dequantize(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(
            y.to_f64_vec(),
            vec![1.0, 2.0, 6.0, 8.0, 15.0, 18.0, 28.0, 32.0]
        );
    }

    #[test]
    fn matmul_integer_subtracts_zero_points() {
        let a = Tensor::U8(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![12, 14]).unwrap());
        let b = Tensor::U8(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![3, 4]).unwrap());
        let za = Tensor::U8(ArrayD::from_elem(IxDyn(&[]), 10));
        let inputs = [Some(&a), Some(&b), Some(&za)];
        let y = matmul_integer(&Args::new(&Op::MatMulInteger, &inputs).unwrap()).unwrap();
        assert_eq!(y.to_i64_vec().unwrap(), vec![2 * 3 + 4 * 4]);
    }
}
