//! The ReduceX family, ArgMax and ArgMin.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use super::numeric::{Number, Real, array_of, restore};
use super::operands::{Args, axes, axis};
use crate::ir::dtype::DType;
use crate::ir::ops::{ArgReduceAttrs, Op, ReduceAttrs};
use crate::ir::tensor::Tensor;

/// `x` with the `reduced` axes moved last, in standard layout, and the shape
/// of the result (reduced dims kept as 1 when `keepdims`).
fn rows<T: Clone>(
    x: ArrayViewD<T>,
    reduced: &[usize],
    keepdims: bool,
) -> (ArrayD<T>, usize, Vec<usize>) {
    let rank = x.ndim();
    let kept: Vec<usize> = (0..rank).filter(|a| !reduced.contains(a)).collect();
    let perm: Vec<usize> = kept.iter().chain(reduced).copied().collect();
    let row_len: usize = reduced.iter().map(|&a| x.shape()[a]).product();
    let out_shape: Vec<usize> = (0..rank)
        .filter_map(|a| match (reduced.contains(&a), keepdims) {
            (false, _) => Some(x.shape()[a]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let permuted = x
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned();
    (permuted, row_len, out_shape)
}

/// ReduceMean ... ReduceSumSquare. Inputs: data, axes? (i64).
pub fn reduce(op: &Op, attrs: &ReduceAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let rank = x.shape().len();
    let requested = args.opt_ints(1)?.unwrap_or_default();
    let reduced = if requested.is_empty() {
        if attrs.noop_with_empty_axes {
            vec![]
        } else {
            (0..rank).collect()
        }
    } else {
        axes(&requested, rank)?
    };
    let dtype = x.dtype();
    if dtype == DType::Bool && matches!(op, Op::ReduceMax(_) | Op::ReduceMin(_)) {
        let y = reduce(
            op,
            attrs,
            &Args::new(
                op,
                &[
                    Some(&x.cast(DType::U8).map_err(|e| e.to_string())?),
                    args.opt(1),
                ],
            )?,
        )?;
        return y.cast(DType::Bool).map_err(|e| e.to_string());
    }
    match op {
        Op::ReduceL2(_) | Op::ReduceLogSum(_) | Op::ReduceLogSumExp(_) if !dtype.is_float() => {
            let y = reduce_real::<f64>(op, array_of::<f64>(x).view(), &reduced, attrs.keepdims)?;
            Tensor::F64(y).cast(dtype).map_err(|e| e.to_string())
        }
        Op::ReduceL2(_) | Op::ReduceLogSum(_) | Op::ReduceLogSumExp(_) => {
            dispatch_real!(dtype, F => Ok(restore(reduce_real::<F>(op, array_of::<F>(x).view(), &reduced, attrs.keepdims)?, dtype)))
        }
        _ => dispatch_number!(dtype, T => {
            Ok(restore(reduce_number::<T>(op, array_of::<T>(x).view(), &reduced, attrs.keepdims)?, dtype))
        }),
    }
}

fn reduce_number<T: Number>(
    op: &Op,
    x: ArrayViewD<T>,
    reduced: &[usize],
    keepdims: bool,
) -> Result<ArrayD<T>, String> {
    let (data, row_len, out_shape) = rows(x, reduced, keepdims);
    let data = data.as_slice().expect("standard layout");
    let fold = |row: &[T]| -> T {
        match op {
            Op::ReduceSum(_) => row.iter().fold(T::ZERO, |a, &v| a.add_wrapping(v)),
            Op::ReduceMean(_) => {
                let sum = row.iter().fold(T::ZERO, |a, &v| a.add_wrapping(v));
                sum.div_onnx(T::from_f64(row.len() as f64))
            }
            Op::ReduceProd(_) => row.iter().fold(T::ONE, |a, &v| a.mul_wrapping(v)),
            Op::ReduceMax(_) => row.iter().fold(T::LOWEST, |a, &v| a.max_nan(v)),
            Op::ReduceMin(_) => row.iter().fold(T::HIGHEST, |a, &v| a.min_nan(v)),
            Op::ReduceL1(_) => row
                .iter()
                .fold(T::ZERO, |a, &v| a.add_wrapping(v.abs_wrapping())),
            _ => row
                .iter()
                .fold(T::ZERO, |a, &v| a.add_wrapping(v.mul_wrapping(v))),
        }
    };
    let values: Vec<T> = if row_len == 0 {
        vec![fold(&[]); out_shape.iter().product()]
    } else {
        data.chunks(row_len).map(fold).collect()
    };
    ArrayD::from_shape_vec(IxDyn(&out_shape), values).map_err(|e| e.to_string())
}

fn reduce_real<F: Real>(
    op: &Op,
    x: ArrayViewD<F>,
    reduced: &[usize],
    keepdims: bool,
) -> Result<ArrayD<F>, String> {
    let (data, row_len, out_shape) = rows(x, reduced, keepdims);
    let data = data.as_slice().expect("standard layout");
    let fold = |row: &[F]| -> F {
        match op {
            Op::ReduceL2(_) => row.iter().map(|&v| v * v).sum::<F>().sqrt(),
            Op::ReduceLogSum(_) => row.iter().copied().sum::<F>().ln(),
            _ => {
                let max = row.iter().copied().fold(F::neg_infinity(), F::max);
                let shift = if max.is_finite() { max } else { F::ZERO };
                row.iter().map(|&v| (v - shift).exp()).sum::<F>().ln() + shift
            }
        }
    };
    let values: Vec<F> = if row_len == 0 {
        vec![fold(&[]); out_shape.iter().product()]
    } else {
        data.chunks(row_len).map(fold).collect()
    };
    ArrayD::from_shape_vec(IxDyn(&out_shape), values).map_err(|e| e.to_string())
}

/// ArgMax or ArgMin along `axis`, as i64 indices.
pub fn arg_reduce(op: &Op, attrs: &ArgReduceAttrs, x: &Tensor) -> Result<Tensor, String> {
    let rank = x.shape().len();
    let ax = axis(attrs.axis, rank.max(1))?;
    if rank > 0 && x.shape()[ax] == 0 {
        return Err("cannot take the arg of an empty axis".into());
    }
    let max = matches!(op, Op::ArgMax(_));
    let dtype = x.dtype();
    let x = if dtype == DType::Bool {
        x.cast(DType::U8).map_err(|e| e.to_string())?
    } else {
        x.clone()
    };
    dispatch_number!(x.dtype(), T => {
        let a = array_of::<T>(&x);
        let a = if a.ndim() == 0 { a.view().insert_axis(Axis(0)) } else { a.view() };
        let mut out = a.map_axis(Axis(ax), |lane| {
            let mut best = 0usize;
            for (i, &v) in lane.iter().enumerate() {
                let b = lane[best];
                let better = if b.is_nan_value() {
                    false
                } else if v.is_nan_value() {
                    true
                } else if max {
                    v > b || (attrs.select_last_index && v == b)
                } else {
                    v < b || (attrs.select_last_index && v == b)
                };
                if better {
                    best = i;
                }
            }
            best as i64
        });
        if attrs.keepdims {
            out = out.insert_axis(Axis(ax));
        }
        if rank == 0 {
            out = out.into_shape_with_order(IxDyn(&[])).map_err(|e| e.to_string())?;
        }
        Ok(Tensor::I64(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::ReduceAttrs;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn run(op: Op, x: &Tensor, axes: Option<Vec<i64>>) -> Tensor {
        let axes = axes.map(|a| Tensor::from_i64(&[a.len()], a).unwrap());
        let inputs = [Some(x), axes.as_ref()];
        let attrs = match &op {
            Op::ReduceSum(a) | Op::ReduceMax(a) | Op::ReduceLogSumExp(a) | Op::ReduceL1(a) => {
                a.clone()
            }
            _ => unreachable!(),
        };
        reduce(&op, &attrs, &Args::new(&op, &inputs).unwrap()).unwrap()
    }

    #[test]
    fn reductions_over_axes_with_and_without_keepdims() {
        let x = t(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let keep = ReduceAttrs {
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let drop = ReduceAttrs {
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert_eq!(
            run(Op::ReduceSum(keep.clone()), &x, Some(vec![1])),
            t(&[2, 1], vec![6.0, 15.0])
        );
        assert_eq!(
            run(Op::ReduceMax(drop.clone()), &x, None),
            t(&[], vec![6.0])
        );
        assert_eq!(
            run(Op::ReduceSum(drop), &x, Some(vec![-2])),
            t(&[3], vec![5.0, 7.0, 9.0])
        );
        let lse = run(
            Op::ReduceLogSumExp(keep),
            &t(&[2], vec![1000.0, 1000.0]),
            None,
        );
        assert!((lse.to_f64_vec()[0] - 1000.0 - std::f64::consts::LN_2).abs() < 1e-3);
    }

    #[test]
    fn noop_with_empty_axes_still_applies_the_elementwise_part() {
        let x = t(&[2], vec![-1.0, 2.0]);
        let noop = ReduceAttrs {
            keepdims: true,
            noop_with_empty_axes: true,
        };
        assert_eq!(run(Op::ReduceL1(noop), &x, None), t(&[2], vec![1.0, 2.0]));
    }

    #[test]
    fn arg_max_picks_first_or_last_of_ties() {
        let x = t(&[1, 4], vec![1.0, 3.0, 3.0, 0.0]);
        let mut attrs = ArgReduceAttrs {
            axis: 1,
            keepdims: false,
            select_last_index: false,
        };
        assert_eq!(
            arg_reduce(&Op::ArgMax(attrs.clone()), &attrs, &x)
                .unwrap()
                .to_i64_vec()
                .unwrap(),
            vec![1]
        );
        attrs.select_last_index = true;
        assert_eq!(
            arg_reduce(&Op::ArgMax(attrs.clone()), &attrs, &x)
                .unwrap()
                .to_i64_vec()
                .unwrap(),
            vec![2]
        );
    }
}
