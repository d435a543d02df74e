//! MaxPool, AveragePool, LpPool and the global pools.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::conv::{Window, input_coord, window};
use super::numeric::{Number, Real, array_of, restore};
use super::operands::{element_count, strides_of, unravel};
use crate::ir::ops::{LpPoolAttrs, Op, PoolAttrs};
use crate::ir::tensor::Tensor;

#[derive(Clone, Copy)]
enum Reduction {
    Max,
    Average { count_include_pad: bool },
    Lp(i32),
}

/// MaxPool or AveragePool on `[N, C, spatial...]`.
pub fn pool(op: &Op, attrs: &PoolAttrs, x: &Tensor) -> Result<Tensor, String> {
    let reduction = match op {
        Op::MaxPool(_) => Reduction::Max,
        _ => Reduction::Average {
            count_include_pad: attrs.count_include_pad,
        },
    };
    windowed(attrs, reduction, x)
}

/// LpPool on `[N, C, spatial...]`.
pub fn lp_pool(attrs: &LpPoolAttrs, x: &Tensor) -> Result<Tensor, String> {
    let p = i32::try_from(attrs.p).map_err(|_| format!("p {} is out of range", attrs.p))?;
    windowed(&attrs.pool, Reduction::Lp(p), x)
}

fn windowed(attrs: &PoolAttrs, reduction: Reduction, x: &Tensor) -> Result<Tensor, String> {
    let shape = x.shape();
    if shape.len() < 3 {
        return Err(format!(
            "input shape {shape:?} needs batch, channel and spatial dims"
        ));
    }
    let win = window(
        &shape[2..],
        &attrs.kernel_shape,
        &attrs.strides,
        &attrs.dilations,
        &attrs.padding,
        attrs.ceil_mode,
    )?;
    let dtype = x.dtype();
    if !dtype.is_float() {
        if !matches!(reduction, Reduction::Max) {
            return Err(format!("expects a float tensor, got {dtype}"));
        }
        let y = pool_planes(&array_of::<f64>(x).into_owned(), &win, reduction)?;
        return Tensor::F64(y).cast(dtype).map_err(|e| e.to_string());
    }
    dispatch_real!(dtype, F => Ok(restore(pool_planes(&array_of::<F>(x).into_owned(), &win, reduction)?, dtype)))
}

fn pool_planes<F: Real>(
    x: &ArrayD<F>,
    win: &Window,
    reduction: Reduction,
) -> Result<ArrayD<F>, String> {
    let mut out_shape = x.shape()[..2].to_vec();
    out_shape.extend(&win.output);
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("standard layout");
    let in_size: usize = win.input.iter().product();
    let out_size: usize = win.output.iter().product();
    let mut y = vec![F::ZERO; element_count(&out_shape)?];
    if out_size > 0 && in_size > 0 {
        y.par_chunks_mut(out_size)
            .zip(x.par_chunks(in_size))
            .for_each(|(out, plane)| pool_plane(plane, win, reduction, out));
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), y).map_err(|e| e.to_string())
}

fn pool_plane<F: Real>(plane: &[F], win: &Window, reduction: Reduction, out: &mut [F]) {
    let rank = win.input.len();
    let kernel_size: usize = win.kernel.iter().product();
    let in_strides = strides_of(&win.input);
    let mut opos = vec![0usize; rank];
    let mut kpos = vec![0usize; rank];
    for (o, y) in out.iter_mut().enumerate() {
        unravel(o, &win.output, &mut opos);
        let mut acc = match reduction {
            Reduction::Max => F::neg_infinity(),
            _ => F::ZERO,
        };
        let mut count = 0usize;
        let mut padded_count = 0usize;
        'kernel: for k in 0..kernel_size {
            unravel(k, &win.kernel, &mut kpos);
            let mut offset = 0usize;
            let mut in_pad = false;
            for d in 0..rank {
                let i = input_coord(win, d, opos[d], kpos[d]);
                if i < 0 || i >= win.input[d] as isize {
                    let padded_end = (win.input[d] + win.pad_end[d]) as isize;
                    if i < -(win.pad_begin[d] as isize) || i >= padded_end {
                        continue 'kernel;
                    }
                    in_pad = true;
                } else {
                    offset += i as usize * in_strides[d];
                }
            }
            padded_count += 1;
            if in_pad {
                continue;
            }
            count += 1;
            let v = plane[offset];
            acc = match reduction {
                Reduction::Max => {
                    if v > acc || v.is_nan() {
                        v
                    } else {
                        acc
                    }
                }
                Reduction::Average { .. } => acc + v,
                Reduction::Lp(p) => acc + v.abs().powi(p),
            };
        }
        *y = match reduction {
            Reduction::Max => acc,
            Reduction::Average { count_include_pad } => {
                let n = if count_include_pad {
                    padded_count
                } else {
                    count
                };
                if n == 0 {
                    F::ZERO
                } else {
                    acc / F::c(n as f64)
                }
            }
            Reduction::Lp(p) => acc.powf(F::ONE / F::c(f64::from(p))),
        };
    }
}

/// GlobalAveragePool or GlobalMaxPool: reduces every spatial dim to 1.
pub fn global_pool(op: &Op, x: &Tensor) -> Result<Tensor, String> {
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(format!(
            "input shape {shape:?} needs batch and channel dims"
        ));
    }
    let planes = shape[0] * shape[1];
    let size: usize = shape[2..].iter().product();
    let mut out_shape = shape.clone();
    out_shape[2..].iter_mut().for_each(|d| *d = 1);
    let dtype = x.dtype();
    let max = matches!(op, Op::GlobalMaxPool);
    dispatch_real!(dtype, F => {
        let a = array_of::<F>(x);
        let a = a.as_standard_layout();
        let data = a.as_slice().expect("standard layout");
        let y: Vec<F> = (0..planes)
            .map(|p| {
                let plane = &data[p * size..(p + 1) * size];
                if max {
                    plane.iter().copied().fold(F::LOWEST, |m, v| if v > m || v.is_nan() { v } else { m })
                } else {
                    plane.iter().copied().sum::<F>() / F::c(size as f64)
                }
            })
            .collect();
        let y = ArrayD::from_shape_vec(IxDyn(&out_shape), y).map_err(|e| e.to_string())?;
        Ok(restore(y, dtype))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Padding;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn attrs(
        kernel: usize,
        stride: usize,
        pad: usize,
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> PoolAttrs {
        PoolAttrs {
            kernel_shape: vec![kernel, kernel],
            strides: vec![stride, stride],
            dilations: vec![],
            padding: Padding::Explicit(vec![pad; 4]),
            ceil_mode,
            count_include_pad,
        }
    }

    #[test]
    fn max_and_average_pool() {
        let x = t(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let a = attrs(2, 1, 0, false, false);
        assert_eq!(
            pool(&Op::MaxPool(a.clone()), &a, &x).unwrap(),
            t(&[1, 1, 2, 2], vec![5.0, 6.0, 8.0, 9.0])
        );
        let a = attrs(2, 2, 0, true, false);
        let y = pool(&Op::AveragePool(a.clone()), &a, &x).unwrap();
        assert_eq!(y, t(&[1, 1, 2, 2], vec![3.0, 4.5, 7.5, 9.0]));
    }

    #[test]
    fn count_include_pad_divides_by_the_padded_window() {
        let x = t(&[1, 1, 2, 2], vec![4.0; 4]);
        let a = attrs(2, 1, 1, false, true);
        let y = pool(&Op::AveragePool(a.clone()), &a, &x).unwrap();
        assert_eq!(
            y.to_f64_vec(),
            vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]
        );
        let a = attrs(2, 1, 1, false, false);
        let y = pool(&Op::AveragePool(a.clone()), &a, &x).unwrap();
        assert_eq!(y.to_f64_vec(), vec![4.0; 9]);
    }

    #[test]
    fn global_pools_keep_rank() {
        let x = t(&[1, 2, 2, 1], vec![1.0, 3.0, -1.0, 5.0]);
        assert_eq!(
            global_pool(&Op::GlobalAveragePool, &x).unwrap(),
            t(&[1, 2, 1, 1], vec![2.0, 2.0])
        );
        assert_eq!(
            global_pool(&Op::GlobalMaxPool, &x).unwrap(),
            t(&[1, 2, 1, 1], vec![3.0, 5.0])
        );
    }
}
