//! Softmax, LogSoftmax and Hardmax.

use ndarray::{ArrayViewMut1, Axis, IxDyn};

use super::numeric::{Real, array_of, restore};
use super::operands::axis;
use crate::ir::ops::{Op, SoftmaxAttrs};
use crate::ir::tensor::Tensor;

/// Softmax, LogSoftmax or Hardmax along `axis`, or over the trailing block
/// from `axis` on when `coerce_2d` (opset < 13).
pub fn softmax(op: &Op, attrs: &SoftmaxAttrs, x: &Tensor) -> Result<Tensor, String> {
    let dtype = x.dtype();
    let shape = x.shape().to_vec();
    let rank = shape.len().max(1);
    let ax = axis(attrs.axis, rank)?;
    dispatch_real!(dtype, F => {
        let mut y = array_of::<F>(x).into_owned();
        if y.ndim() == 0 {
            y = y.into_shape_with_order(IxDyn(&[1])).map_err(|e| e.to_string())?;
        }
        let (mut y, lane_axis) = if attrs.coerce_2d {
            let rows: usize = y.shape()[..ax].iter().product();
            let cols: usize = y.shape()[ax..].iter().product();
            let y = y.as_standard_layout().into_owned();
            (y.into_shape_with_order(IxDyn(&[rows, cols])).map_err(|e| e.to_string())?, 1)
        } else {
            (y, ax)
        };
        for lane in y.lanes_mut(Axis(lane_axis)) {
            normalize(op, lane);
        }
        let y = if y.shape() == shape.as_slice() {
            y
        } else {
            y.into_shape_with_order(IxDyn(&shape)).map_err(|e| e.to_string())?
        };
        Ok(restore(y, dtype))
    })
}

fn normalize<F: Real>(op: &Op, mut lane: ArrayViewMut1<F>) {
    let max = lane.iter().copied().fold(F::neg_infinity(), F::max);
    match op {
        Op::Hardmax(_) => {
            let first = lane.iter().position(|&v| v == max);
            lane.iter_mut().enumerate().for_each(|(i, v)| {
                *v = if Some(i) == first { F::ONE } else { F::ZERO };
            });
        }
        Op::LogSoftmax(_) => {
            let sum: F = lane.iter().map(|&v| (v - max).exp()).sum();
            let log_sum = sum.ln();
            lane.mapv_inplace(|v| v - max - log_sum);
        }
        _ => {
            lane.mapv_inplace(|v| (v - max).exp());
            let sum: F = lane.iter().copied().sum();
            lane.mapv_inplace(|v| v / sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    #[test]
    fn softmax_rows_sum_to_one_and_are_shift_invariant() {
        let attrs = SoftmaxAttrs {
            axis: 1,
            coerce_2d: false,
        };
        let y = softmax(
            &Op::Softmax(attrs.clone()),
            &attrs,
            &t(&[2, 2], vec![0.0, 0.0, 1000.0, 1000.0]),
        )
        .unwrap();
        assert_eq!(y, t(&[2, 2], vec![0.5; 4]));
        let y = softmax(
            &Op::LogSoftmax(attrs.clone()),
            &attrs,
            &t(&[1, 2], vec![1.0, 1.0]),
        )
        .unwrap();
        assert!((y.to_f64_vec()[0] + std::f64::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn hardmax_marks_the_first_maximum_and_coerce_flattens() {
        let attrs = SoftmaxAttrs {
            axis: 1,
            coerce_2d: true,
        };
        let y = softmax(
            &Op::Hardmax(attrs.clone()),
            &attrs,
            &t(&[1, 2, 2], vec![3.0, 1.0, 3.0, 2.0]),
        )
        .unwrap();
        assert_eq!(y, t(&[1, 2, 2], vec![1.0, 0.0, 0.0, 0.0]));
    }
}
