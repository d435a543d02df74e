//! Byte-level edits of weight data that pruning needs: magnitudes, zeroing
//! elements, and keeping a subset of indices along one axis.

use bytes::Bytes;

use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Weight};

/// Every element's absolute value, for float weights.
pub fn magnitudes(w: &Weight) -> Option<Vec<f64>> {
    if !w.dtype.is_float() {
        return None;
    }
    let t = Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()?;
    Some(t.to_f64_vec().into_iter().map(f64::abs).collect())
}

/// The weight with the elements at `indices` set to zero (all-zero bytes are
/// 0.0 in every float format).
pub fn zero_elements(w: &Weight, indices: &[usize]) -> Result<Weight> {
    let size = element_size(w)?;
    let mut data = w.data.to_vec();
    for &i in indices {
        data[i * size..(i + 1) * size].fill(0);
    }
    Weight::new(w.name.clone(), w.dtype, w.shape.clone(), Bytes::from(data))
}

/// The weight restricted to the indices `keep` (ascending) along `axis`.
pub fn keep_along(w: &Weight, axis: usize, keep: &[usize], name: String) -> Result<Weight> {
    let size = element_size(w)?;
    let dim = *w.shape.get(axis).ok_or_else(|| {
        Error::Graph(format!(
            "weight '{}' of shape {:?} has no axis {axis}",
            w.name, w.shape
        ))
    })?;
    if let Some(&bad) = keep.iter().find(|&&k| k >= dim) {
        return Err(Error::Graph(format!(
            "weight '{}': index {bad} out of range on axis {axis} of size {dim}",
            w.name
        )));
    }
    let outer: usize = w.shape[..axis].iter().product();
    let inner: usize = w.shape[axis + 1..].iter().product::<usize>() * size;
    let mut data = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * dim + k) * inner;
            data.extend_from_slice(&w.data[start..start + inner]);
        }
    }
    let mut shape = w.shape.clone();
    shape[axis] = keep.len();
    Weight::new(name, w.dtype, shape, Bytes::from(data))
}

/// Sum over all axes but `axis` of `|w|` (L1) or `w^2` (L2), one entry per index of `axis`.
pub fn norms_along(w: &Weight, axis: usize, squared: bool) -> Option<Vec<f64>> {
    let values = magnitudes(w)?;
    let dim = *w.shape.get(axis)?;
    let inner: usize = w.shape[axis + 1..].iter().product();
    let mut norms = vec![0.0; dim];
    for (i, v) in values.iter().enumerate() {
        norms[(i / inner) % dim] += if squared { v * v } else { *v };
    }
    Some(norms)
}

fn element_size(w: &Weight) -> Result<usize> {
    w.dtype
        .size_of()
        .filter(|_| w.dtype != DType::String)
        .ok_or_else(|| {
            Error::Graph(format!(
                "weight '{}': {} elements are not whole bytes",
                w.name, w.dtype
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_weight(shape: &[usize], values: &[f32]) -> Weight {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Weight::new("w", DType::F32, shape.to_vec(), Bytes::from(bytes)).unwrap()
    }

    fn values(w: &Weight) -> Vec<f64> {
        Tensor::from_bytes(w.dtype, &w.shape, &w.data)
            .unwrap()
            .to_f64_vec()
    }

    #[test]
    fn keeps_indices_along_a_middle_axis() {
        let w = f32_weight(&[2, 3, 2], &(0..12).map(|i| i as f32).collect::<Vec<_>>());
        let kept = keep_along(&w, 1, &[0, 2], "k".into()).unwrap();
        assert_eq!(kept.shape, vec![2, 2, 2]);
        assert_eq!(values(&kept), vec![0., 1., 4., 5., 6., 7., 10., 11.]);
        assert!(keep_along(&w, 1, &[3], "k".into()).is_err());
    }

    #[test]
    fn norms_and_zeroing() {
        let w = f32_weight(&[2, 2], &[1.0, -2.0, 3.0, 0.5]);
        assert_eq!(norms_along(&w, 0, false).unwrap(), vec![3.0, 3.5]);
        assert_eq!(norms_along(&w, 1, true).unwrap(), vec![10.0, 4.25]);
        assert_eq!(
            values(&zero_elements(&w, &[1, 3]).unwrap()),
            vec![1., 0., 3., 0.]
        );
    }
}
