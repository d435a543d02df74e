//! MatMul (numpy semantics), Gemm, and the matrix-product kernel that Conv
//! shares.

use ndarray::linalg::general_mat_mul;
use ndarray::{
    Array2, Array3, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Dimension, Ix2, IxDyn,
};
use rayon::prelude::*;

use super::broadcast::{broadcast_shape, broadcast_view};
use super::numeric::{Number, Real, array_of, restore};
use super::operands::element_count;
use crate::ir::ops::GemmAttrs;
use crate::ir::tensor::Tensor;

/// Multiply-adds above which a product is split across threads.
const PARALLEL_WORK: usize = 1 << 18;
/// Rows or columns per parallel chunk; fixed so results do not depend on the
/// thread count.
const CHUNK: usize = 64;

/// `c = a · b + beta · c` for float matrices, split across threads along the
/// larger of `c`'s dims when the product is large. Every output element is
/// computed by the same sequence of operations however it is split.
pub fn gemm_into<F: Real>(a: ArrayView2<F>, b: ArrayView2<F>, beta: F, mut c: ArrayViewMut2<F>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m.saturating_mul(n).saturating_mul(k) < PARALLEL_WORK || (m <= CHUNK && n <= CHUNK) {
        general_mat_mul(F::ONE, &a, &b, beta, &mut c);
    } else if m >= n {
        let a_rows: Vec<_> = a.axis_chunks_iter(Axis(0), CHUNK).collect();
        let c_rows: Vec<_> = c.axis_chunks_iter_mut(Axis(0), CHUNK).collect();
        c_rows.into_par_iter().zip(a_rows).for_each(|(mut c, a)| {
            general_mat_mul(F::ONE, &a, &b, beta, &mut c);
        });
    } else {
        let b_cols: Vec<_> = b.axis_chunks_iter(Axis(1), CHUNK).collect();
        let c_cols: Vec<_> = c.axis_chunks_iter_mut(Axis(1), CHUNK).collect();
        c_cols.into_par_iter().zip(b_cols).for_each(|(mut c, b)| {
            general_mat_mul(F::ONE, &a, &b, beta, &mut c);
        });
    }
}

/// `c = a · b` for integer matrices, with wrapping arithmetic.
fn int_gemm_into<T: Number>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    for (a_row, mut c_row) in a.outer_iter().zip(c.outer_iter_mut()) {
        for (&x, b_row) in a_row.iter().zip(b.outer_iter()) {
            for (o, &y) in c_row.iter_mut().zip(b_row.iter()) {
                *o = o.add_wrapping(x.mul_wrapping(y));
            }
        }
    }
}

/// numpy `matmul`: 1-D operands are promoted to matrices and the promoted
/// dims dropped again; leading dims broadcast.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let dtype = a.dtype();
    if b.dtype() != dtype {
        return Err(format!("operand dtypes differ: {dtype} and {}", b.dtype()));
    }
    if dtype.is_float() {
        dispatch_real!(dtype, F => {
            let y = batched_matmul(array_of::<F>(a).view(), array_of::<F>(b).view(), |a, b, c| {
                gemm_into(a, b, F::ZERO, c)
            })?;
            Ok(restore(y, dtype))
        })
    } else {
        dispatch_number!(dtype, T => {
            let y = batched_matmul(array_of::<T>(a).view(), array_of::<T>(b).view(), int_gemm_into::<T>)?;
            Ok(restore(y, dtype))
        })
    }
}

/// numpy `matmul` over any element type, with `kernel` computing one 2-D
/// product into a zeroed output.
pub fn batched_matmul<T, K>(
    a: ArrayViewD<T>,
    b: ArrayViewD<T>,
    kernel: K,
) -> Result<ArrayD<T>, String>
where
    T: Number,
    K: Fn(ArrayView2<T>, ArrayView2<T>, ArrayViewMut2<T>) + Sync,
{
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err("MatMul operands must have rank 1 or more".into());
    }
    let a_vec = a.ndim() == 1;
    let b_vec = b.ndim() == 1;
    let a = if a_vec { a.insert_axis(Axis(0)) } else { a };
    let b = if b_vec { b.insert_axis(Axis(1)) } else { b };
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
    let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
    if k != k2 {
        return Err(format!(
            "inner dims differ: {:?} x {:?}",
            a.shape(),
            b.shape()
        ));
    }
    let batch = broadcast_shape(&[&a.shape()[..ra - 2], &b.shape()[..rb - 2]])?;
    let count: usize = batch.iter().product();
    element_count(&[count, m, n])?;
    let a_full: Vec<usize> = batch.iter().copied().chain([m, k]).collect();
    let b_full: Vec<usize> = batch.iter().copied().chain([k, n]).collect();
    let (a, b) = (broadcast_view(&a, &a_full)?, broadcast_view(&b, &b_full)?);
    let (a_mats, b_mats) = (matrices(&a, &batch), matrices(&b, &batch));
    let mut out = Array3::<T>::from_elem((count, m, n), T::ZERO);
    if count == 1 {
        kernel(
            a_mats[0].view(),
            b_mats[0].view(),
            out.index_axis_mut(Axis(0), 0),
        );
    } else {
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(a_mats.into_par_iter().zip(b_mats))
            .for_each(|(c, (a, b))| kernel(a, b, c));
    }
    let mut shape = batch;
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    out.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| e.to_string())
}

/// The 2-D matrices of `x` (shape `batch + [rows, cols]`) in row-major batch order.
fn matrices<'a, T>(x: &ArrayViewD<'a, T>, batch: &[usize]) -> Vec<ArrayView2<'a, T>> {
    ndarray::indices(IxDyn(batch))
        .into_iter()
        .map(|index| {
            let mut v = x.clone();
            for &i in index.slice() {
                v = v.index_axis_move(Axis(0), i);
            }
            v.into_dimensionality::<Ix2>().expect("two dims remain")
        })
        .collect()
}

/// Linear: `matmul(x, w) + bias`, x `[..., K]`, w `[K, N]`, bias `[N]`.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, String> {
    if w.shape().len() != 2 || x.shape().is_empty() {
        return Err(format!(
            "Linear takes x [..., K] and weight [K, N], got {:?} and {:?}",
            x.shape(),
            w.shape()
        ));
    }
    let y = matmul(x, w)?;
    match bias {
        None => Ok(y),
        Some(b) if b.shape() == [w.shape()[1]] => {
            super::broadcast::binary(&crate::ir::ops::Op::Add, &y, b)
        }
        Some(b) => Err(format!(
            "bias shape {:?} must be [{}]",
            b.shape(),
            w.shape()[1]
        )),
    }
}

/// Gemm: `alpha * A' · B' + beta * C`, C broadcast to the output.
pub fn gemm(
    attrs: &GemmAttrs,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
) -> Result<Tensor, String> {
    let dtype = a.dtype();
    dispatch_real!(dtype, F => {
        let matrix = |t: &Tensor, name: &str| -> Result<Array2<F>, String> {
            array_of::<F>(t)
                .into_owned()
                .into_dimensionality::<Ix2>()
                .map_err(|_| format!("Gemm {name} must be 2-D, got shape {:?}", t.shape()))
        };
        let a = matrix(a, "A")?;
        let b = matrix(b, "B")?;
        let a = if attrs.trans_a { a.reversed_axes() } else { a };
        let b = if attrs.trans_b { b.reversed_axes() } else { b };
        if a.ncols() != b.nrows() {
            return Err(format!("inner dims differ: {:?} x {:?}", a.shape(), b.shape()));
        }
        let (m, n) = (a.nrows(), b.ncols());
        element_count(&[m, n])?;
        let mut y = Array2::<F>::zeros((m, n));
        let beta = F::c(attrs.beta.into());
        if let Some(c) = c.filter(|_| beta != F::ZERO) {
            let c = array_of::<F>(c);
            y.assign(&broadcast_view(&c.view(), &[m, n])?);
        }
        let alpha = F::c(attrs.alpha.into());
        if alpha == F::ONE {
            gemm_into(a.view(), b.view(), beta, y.view_mut());
        } else {
            let a = a.mapv(|v| v * alpha);
            gemm_into(a.view(), b.view(), beta, y.view_mut());
        }
        Ok(restore(y.into_dyn(), dtype))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    #[test]
    fn matmul_promotes_vectors_and_broadcasts_batches() {
        let a = t(&[2, 1, 2, 3], (0..12).map(|v| v as f32).collect());
        let b = t(&[3], vec![1.0, 0.0, -1.0]);
        let y = matmul(&a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 1, 2]);
        assert_eq!(y.to_f64_vec(), vec![-2.0, -2.0, -2.0, -2.0]);
        let eye = t(&[3, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(matmul(&a, &eye).unwrap(), a);
        assert!(matmul(&a, &t(&[2], vec![1.0, 2.0])).is_err());
    }

    #[test]
    fn large_products_split_across_threads_agree_with_the_serial_kernel() {
        let (m, k, n) = (300, 70, 90);
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.25);
        let mut parallel = Array2::zeros((m, n));
        gemm_into(a.view(), b.view(), 0.0, parallel.view_mut());
        assert_eq!(parallel, a.dot(&b));
    }

    #[test]
    fn integer_matmul_wraps() {
        let a = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![i32::MAX, 1]).unwrap());
        let b = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![2, 3]).unwrap());
        assert_eq!(matmul(&a, &b).unwrap().to_i64_vec().unwrap(), vec![1]);
    }

    #[test]
    fn linear_adds_the_bias_along_the_last_dim() {
        let x = t(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let w = t(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let b = t(&[2], vec![10.0, 20.0]);
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y, t(&[2, 1, 2], vec![11.0, 22.0, 13.0, 24.0]));
        assert!(linear(&x, &w, Some(&t(&[1], vec![1.0]))).is_err());
    }

    #[test]
    fn gemm_transposes_scales_and_adds_c() {
        let attrs = GemmAttrs {
            alpha: 2.0,
            beta: 0.5,
            trans_a: true,
            trans_b: false,
        };
        let a = t(&[2, 1], vec![1.0, 2.0]);
        let b = t(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let c = t(&[2], vec![10.0, 20.0]);
        let y = gemm(&attrs, &a, &b, Some(&c)).unwrap();
        assert_eq!(y, t(&[1, 2], vec![7.0, 14.0]));
    }
}
