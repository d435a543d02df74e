//! Gather, GatherElements, GatherNd, ScatterNd, ScatterElements.
//!
//! Indices may be negative (counted from the end); out-of-range indices are
//! errors.

use ndarray::{ArrayD, IxDyn};

use super::operands::{Args, axis, element_count, strides_of};
use crate::ir::ops::{ScatterElementsAttrs, ScatterReduction};
use crate::ir::tensor::{Element, Tensor};
use crate::with_tensor;

/// `i` resolved against an axis of length `len`.
fn index(i: i64, len: usize) -> Result<usize, String> {
    let n = len as i64;
    let r = if i < 0 { i + n } else { i };
    if (0..n).contains(&r) {
        Ok(r as usize)
    } else {
        Err(format!("index {i} is out of range for a dim of {len}"))
    }
}

fn indices_of(t: &Tensor) -> Result<Vec<i64>, String> {
    if t.dtype().is_integer() {
        t.to_i64_vec().map_err(|e| e.to_string())
    } else {
        Err(format!("indices must be integers, got {}", t.dtype()))
    }
}

/// Gather along `axis`: output shape `data[..axis] + indices + data[axis+1..]`.
pub fn gather(ax: i64, data: &Tensor, indices: &Tensor) -> Result<Tensor, String> {
    let shape = data.shape();
    let ax = axis(ax, shape.len())?;
    let idx = indices_of(indices)?
        .into_iter()
        .map(|i| index(i, shape[ax]))
        .collect::<Result<Vec<_>, _>>()?;
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let mut out_shape = shape[..ax].to_vec();
    out_shape.extend(indices.shape());
    out_shape.extend(&shape[ax + 1..]);
    element_count(&out_shape)?;
    with_tensor!(data, a => {
        let a = a.as_standard_layout();
        let src = a.as_slice().expect("standard layout");
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in &idx {
                let start = (o * shape[ax] + i) * inner;
                out.extend_from_slice(&src[start..start + inner]);
            }
        }
        ArrayD::from_shape_vec(IxDyn(&out_shape), out).map(Element::wrap).map_err(|e| e.to_string())
    })
}

/// For each element of an `indices`-shaped tensor, the flat offset into
/// `data` that replaces its coordinate along `axis` by the index value.
fn element_offsets(
    data: &[usize],
    ax: usize,
    idx_shape: &[usize],
    idx: &[i64],
) -> Result<Vec<usize>, String> {
    if idx_shape.len() != data.len() {
        return Err(format!(
            "indices shape {idx_shape:?} and data shape {data:?} differ in rank"
        ));
    }
    if idx_shape
        .iter()
        .zip(data)
        .enumerate()
        .any(|(d, (&i, &n))| d != ax && i > n)
    {
        return Err(format!(
            "indices shape {idx_shape:?} exceeds data shape {data:?}"
        ));
    }
    let data_strides = strides_of(data);
    let idx_strides = strides_of(idx_shape);
    idx.iter()
        .enumerate()
        .map(|(flat, &i)| {
            let mut offset = 0;
            for d in 0..data.len() {
                let coord = (flat / idx_strides[d]) % idx_shape[d];
                let coord = if d == ax { index(i, data[d])? } else { coord };
                offset += coord * data_strides[d];
            }
            Ok(offset)
        })
        .collect()
}

/// GatherElements along `axis`: output shaped like `indices`.
pub fn gather_elements(ax: i64, data: &Tensor, indices: &Tensor) -> Result<Tensor, String> {
    let ax = axis(ax, data.shape().len())?;
    let offsets = element_offsets(data.shape(), ax, indices.shape(), &indices_of(indices)?)?;
    with_tensor!(data, a => {
        let a = a.as_standard_layout();
        let src = a.as_slice().expect("standard layout");
        let out: Vec<_> = offsets.iter().map(|&o| src[o]).collect();
        ArrayD::from_shape_vec(IxDyn(indices.shape()), out).map(Element::wrap).map_err(|e| e.to_string())
    })
}

/// The flat offsets of the slices `indices` (last dim = tuple length)
/// select in `data`, after `batch_dims` shared leading dims, and the slice size.
fn nd_offsets(
    data: &[usize],
    indices: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), String> {
    let idx_shape = indices.shape();
    let Some((&k, lead)) = idx_shape.split_last() else {
        return Err("indices must have rank 1 or more".into());
    };
    if batch_dims > lead.len()
        || batch_dims + k > data.len()
        || data[..batch_dims] != idx_shape[..batch_dims]
    {
        return Err(format!(
            "indices shape {idx_shape:?} does not fit data shape {data:?} with {batch_dims} batch dims"
        ));
    }
    let idx = indices_of(indices)?;
    let data_strides = strides_of(data);
    let slice: usize = data[batch_dims + k..].iter().product();
    let per_batch: usize = lead[batch_dims..].iter().product();
    let batch_stride = if batch_dims == 0 {
        0
    } else {
        data_strides[batch_dims - 1]
    };
    let count: usize = lead.iter().product();
    let mut offsets = Vec::with_capacity(count);
    for t in 0..count {
        let mut offset = if batch_dims == 0 {
            0
        } else {
            t / per_batch.max(1) * batch_stride
        };
        for j in 0..k {
            offset += index(idx[t * k + j], data[batch_dims + j])? * data_strides[batch_dims + j];
        }
        offsets.push(offset);
    }
    Ok((offsets, slice))
}

/// GatherNd: output shape `indices[..-1] + data[batch_dims + k..]`.
pub fn gather_nd(batch_dims: usize, data: &Tensor, indices: &Tensor) -> Result<Tensor, String> {
    let (offsets, slice) = nd_offsets(data.shape(), indices, batch_dims)?;
    let k = *indices.shape().last().unwrap_or(&0);
    let mut out_shape = indices.shape()[..indices.shape().len() - 1].to_vec();
    out_shape.extend(&data.shape()[batch_dims + k..]);
    element_count(&out_shape)?;
    with_tensor!(data, a => {
        let a = a.as_standard_layout();
        let src = a.as_slice().expect("standard layout");
        let mut out = Vec::with_capacity(offsets.len() * slice);
        for &o in &offsets {
            out.extend_from_slice(&src[o..o + slice]);
        }
        ArrayD::from_shape_vec(IxDyn(&out_shape), out).map(Element::wrap).map_err(|e| e.to_string())
    })
}

fn combine<T: Element>(reduction: ScatterReduction) -> impl Fn(T, T) -> T {
    move |old: T, new: T| match reduction {
        ScatterReduction::None => new,
        ScatterReduction::Add => T::from_f64(old.to_f64() + new.to_f64()),
        ScatterReduction::Mul => T::from_f64(old.to_f64() * new.to_f64()),
        ScatterReduction::Max => {
            if new > old {
                new
            } else {
                old
            }
        }
        ScatterReduction::Min => {
            if new < old {
                new
            } else {
                old
            }
        }
    }
}

/// ScatterNd. Inputs: data, indices `[..., k]`, updates `indices[..-1] + data[k..]`.
pub fn scatter_nd(reduction: ScatterReduction, args: &Args) -> Result<Tensor, String> {
    let (data, indices, updates) = (args.get(0)?, args.get(1)?, args.get(2)?);
    let (offsets, slice) = nd_offsets(data.shape(), indices, 0)?;
    let k = *indices.shape().last().unwrap_or(&0);
    let mut expected = indices.shape()[..indices.shape().len() - 1].to_vec();
    expected.extend(&data.shape()[k..]);
    if updates.shape() != expected {
        return Err(format!(
            "updates shape {:?} must be {expected:?}",
            updates.shape()
        ));
    }
    with_pair!(data, updates, (a, u) => {
        let mut out = a.as_standard_layout().into_owned();
        let dst = out.as_slice_mut().expect("standard layout");
        let u = u.as_standard_layout();
        let src = u.as_slice().expect("standard layout");
        let f = combine(reduction);
        for (t, &o) in offsets.iter().enumerate() {
            for j in 0..slice {
                dst[o + j] = f(dst[o + j], src[t * slice + j]);
            }
        }
        Ok(Element::wrap(out))
    })
}

/// ScatterElements along `axis`. Inputs: data, indices, updates (shaped like indices).
pub fn scatter_elements(attrs: &ScatterElementsAttrs, args: &Args) -> Result<Tensor, String> {
    let (data, indices, updates) = (args.get(0)?, args.get(1)?, args.get(2)?);
    if updates.shape() != indices.shape() {
        return Err(format!(
            "updates shape {:?} must equal indices shape {:?}",
            updates.shape(),
            indices.shape()
        ));
    }
    let ax = axis(attrs.axis, data.shape().len())?;
    let offsets = element_offsets(data.shape(), ax, indices.shape(), &indices_of(indices)?)?;
    with_pair!(data, updates, (a, u) => {
        let mut out = a.as_standard_layout().into_owned();
        let dst = out.as_slice_mut().expect("standard layout");
        let f = combine(attrs.reduction);
        for (&o, &v) in offsets.iter().zip(u.iter()) {
            dst[o] = f(dst[o], v);
        }
        Ok(Element::wrap(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::{Op, ScatterNdAttrs};

    fn ints(shape: &[usize], v: Vec<i64>) -> Tensor {
        Tensor::from_i64(shape, v).unwrap()
    }

    #[test]
    fn gather_takes_negative_indices_and_rejects_out_of_range() {
        let data = ints(&[3, 2], vec![1, 2, 3, 4, 5, 6]);
        let y = gather(0, &data, &ints(&[2], vec![-1, 0])).unwrap();
        assert_eq!(y, ints(&[2, 2], vec![5, 6, 1, 2]));
        let y = gather(1, &data, &ints(&[], vec![1])).unwrap();
        assert_eq!(y, ints(&[3], vec![2, 4, 6]));
        assert!(gather(0, &data, &ints(&[1], vec![3])).is_err());
    }

    #[test]
    fn gather_elements_and_nd() {
        let data = ints(&[2, 2], vec![1, 2, 3, 4]);
        let y = gather_elements(1, &data, &ints(&[2, 2], vec![0, 0, 1, 0])).unwrap();
        assert_eq!(y, ints(&[2, 2], vec![1, 1, 4, 3]));
        let y = gather_nd(0, &data, &ints(&[2, 2], vec![0, 0, 1, 1])).unwrap();
        assert_eq!(y, ints(&[2], vec![1, 4]));
        let y = gather_nd(0, &data, &ints(&[2, 1], vec![1, 0])).unwrap();
        assert_eq!(y, ints(&[2, 2], vec![3, 4, 1, 2]));
        let y = gather_nd(1, &data, &ints(&[2, 1], vec![1, 0])).unwrap();
        assert_eq!(y, ints(&[2], vec![2, 3]));
    }

    #[test]
    fn scatter_nd_with_reduction() {
        let data = ints(&[4], vec![1, 2, 3, 4]);
        let idx = ints(&[2, 1], vec![1, 1]);
        let upd = ints(&[2], vec![10, 20]);
        let op = Op::ScatterNd(ScatterNdAttrs {
            reduction: ScatterReduction::Add,
        });
        let inputs = [Some(&data), Some(&idx), Some(&upd)];
        let y = scatter_nd(ScatterReduction::Add, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(y, ints(&[4], vec![1, 32, 3, 4]));
    }
}
