//! Access to an op's inputs, and the shape arithmetic kernels share: axis
//! normalization, row-major strides and indices, the output size cap.

use crate::ir::ops::Op;
use crate::ir::tensor::Tensor;

/// The largest element count any op may produce.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// An op's positional inputs, arity-checked.
pub struct Args<'a> {
    inputs: &'a [Option<&'a Tensor>],
}

impl<'a> Args<'a> {
    /// Checks the input count and that every required input is present.
    pub fn new(op: &Op, inputs: &'a [Option<&'a Tensor>]) -> Result<Args<'a>, String> {
        let (required, max) = op.input_arity();
        if inputs.len() < required || max.is_some_and(|m| inputs.len() > m) {
            return Err(format!(
                "{} inputs, the op takes {required}..{}",
                inputs.len(),
                max.map_or("any".into(), |m| m.to_string())
            ));
        }
        if let Some(i) = inputs[..required].iter().position(Option::is_none) {
            return Err(format!("required input {i} is absent"));
        }
        Ok(Args { inputs })
    }

    /// Input `i`, which must be present.
    pub fn get(&self, i: usize) -> Result<&'a Tensor, String> {
        self.opt(i).ok_or_else(|| format!("input {i} is absent"))
    }

    /// Input `i` if present. An empty tensor counts as present.
    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }

    /// Every input, none of which may be absent (variadic ops).
    pub fn all(&self) -> Result<Vec<&'a Tensor>, String> {
        (0..self.inputs.len()).map(|i| self.get(i)).collect()
    }

    /// Integer contents of input `i` (shapes, axes, pads...).
    pub fn ints(&self, i: usize) -> Result<Vec<i64>, String> {
        self.get(i)?
            .to_i64_vec()
            .map_err(|e| format!("input {i}: {e}"))
    }

    /// Integer contents of input `i` if present.
    pub fn opt_ints(&self, i: usize) -> Result<Option<Vec<i64>>, String> {
        self.opt(i).map(|_| self.ints(i)).transpose()
    }

    /// The single integer of scalar-like input `i`.
    pub fn int_scalar(&self, i: usize) -> Result<i64, String> {
        match self.ints(i)?[..] {
            [v] => Ok(v),
            ref v => Err(format!(
                "input {i} must hold one value, it holds {}",
                v.len()
            )),
        }
    }
}

pub use crate::ir::shape::normalize_axis as axis;

/// Normalized axes; repeated axes are an error.
pub fn axes(values: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(values.len());
    for &v in values {
        let a = axis(v, rank)?;
        if out.contains(&a) {
            return Err(format!("axis {v} is repeated"));
        }
        out.push(a);
    }
    Ok(out)
}

/// The element count of `shape`, refused above [`MAX_ELEMENTS`].
pub fn element_count(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("output shape {shape:?} exceeds {MAX_ELEMENTS} elements"))
}

/// A non-negative dim from a shape-like input value.
pub fn dim(v: i64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("negative dimension {v}"))
}

/// Row-major strides of `shape`.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Writes the row-major multi-index of `flat` within `shape` into `index`.
pub fn unravel(mut flat: usize, shape: &[usize], index: &mut [usize]) {
    for d in (0..shape.len()).rev() {
        index[d] = flat % shape[d].max(1);
        flat /= shape[d].max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_normalize_and_reject_out_of_range_or_repeats() {
        assert_eq!(axis(-1, 3), Ok(2));
        assert!(axis(3, 3).is_err());
        assert!(axis(-4, 3).is_err());
        assert!(axes(&[1, -2], 3).is_err());
    }

    #[test]
    fn element_count_is_capped() {
        assert_eq!(element_count(&[2, 3]), Ok(6));
        assert_eq!(element_count(&[]), Ok(1));
        assert!(element_count(&[1 << 20, 1 << 20]).is_err());
        assert!(element_count(&[usize::MAX, 2]).is_err());
    }
}
