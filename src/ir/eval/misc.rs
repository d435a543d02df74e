//! Cast, TopK, CumSum, Einsum, OneHot, NonZero, Compress.

use std::cmp::Ordering;

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use super::numeric::{Number, array_of, held_dtype, restore};
use super::operands::{Args, axis, element_count};
use crate::ir::dtype::DType;
use crate::ir::ops::{CumSumAttrs, TopKAttrs};
use crate::ir::tensor::{Element, Tensor};
use crate::with_tensor;

/// Cast (and CastLike) to `to`. Casts to 4-bit integers truncate and wrap
/// to 4 bits (held unpacked in i8/u8).
pub fn cast(x: &Tensor, to: DType) -> Result<Tensor, String> {
    let wrapped = |wrap: fn(i64) -> i64| -> Result<Tensor, String> {
        let values = x
            .cast(DType::I64)
            .and_then(|v| v.to_i64_vec())
            .map_err(|e| e.to_string())?;
        let values = values.into_iter().map(wrap).collect();
        Tensor::from_i64(x.shape(), values)
            .and_then(|v| v.cast(held_dtype(to)))
            .map_err(|e| e.to_string())
    };
    match to {
        DType::I4 => wrapped(|v| ((v & 0xf) ^ 8) - 8),
        DType::U4 => wrapped(|v| v & 0xf),
        _ => x.cast(to).map_err(|e| e.to_string()),
    }
}

/// TopK along `axis`: the `k` largest (or smallest) values and their i64
/// indices, ties in index order. Inputs: X, k.
pub fn top_k(attrs: &TopKAttrs, args: &Args) -> Result<Vec<Tensor>, String> {
    let x = args.get(0)?;
    let k = usize::try_from(args.int_scalar(1)?).map_err(|_| "k must not be negative")?;
    let ax = axis(attrs.axis, x.shape().len())?;
    if k > x.shape()[ax] {
        return Err(format!("k {k} exceeds the axis length {}", x.shape()[ax]));
    }
    let dtype = x.dtype();
    let mut out_shape = x.shape().to_vec();
    out_shape[ax] = k;
    dispatch_number!(dtype, T => {
        let a = array_of::<T>(x);
        let mut values = ArrayD::<T>::from_elem(IxDyn(&out_shape), T::ZERO);
        let mut indices = ArrayD::<i64>::zeros(IxDyn(&out_shape));
        let lanes = a.lanes(Axis(ax)).into_iter();
        let outs = values.lanes_mut(Axis(ax)).into_iter().zip(indices.lanes_mut(Axis(ax)));
        for (lane, (mut v, mut i)) in lanes.zip(outs) {
            let mut order: Vec<usize> = (0..lane.len()).collect();
            let rank = |p: &T, q: &T| -> Ordering {
                let o = p.partial_cmp(q).unwrap_or_else(|| p.is_nan_value().cmp(&q.is_nan_value()));
                if attrs.largest { o.reverse() } else { o }
            };
            order.sort_by(|&p, &q| rank(&lane[p], &lane[q]));
            for (j, &src) in order.iter().take(k).enumerate() {
                v[j] = lane[src];
                i[j] = src as i64;
            }
        }
        Ok(vec![restore(values, dtype), Tensor::I64(indices)])
    })
}

/// CumSum along the axis input, optionally exclusive and/or reversed.
pub fn cum_sum(attrs: &CumSumAttrs, args: &Args) -> Result<Tensor, String> {
    let x = args.get(0)?;
    let ax = axis(args.int_scalar(1)?, x.shape().len())?;
    let dtype = x.dtype();
    dispatch_number!(dtype, T => {
        let mut y = array_of::<T>(x).into_owned();
        for mut lane in y.lanes_mut(Axis(ax)) {
            let n = lane.len();
            let mut acc = T::ZERO;
            for j in 0..n {
                let i = if attrs.reverse { n - 1 - j } else { j };
                let v = lane[i];
                if attrs.exclusive {
                    lane[i] = acc;
                    acc = acc.add_wrapping(v);
                } else {
                    acc = acc.add_wrapping(v);
                    lane[i] = acc;
                }
            }
        }
        Ok(restore(y, dtype))
    })
}

/// OneHot. Inputs: indices, depth (scalar), values `[off, on]`; the new axis
/// of size depth is inserted at `axis`. Negative indices count from depth;
/// out-of-range indices give an all-off row.
pub fn one_hot(ax: i64, args: &Args) -> Result<Tensor, String> {
    let (indices, values) = (args.get(0)?, args.get(2)?);
    let depth = match args.get(1)?.to_f64_vec()[..] {
        [d] if d >= 1.0 => d as usize,
        _ => return Err("depth must be a scalar of at least 1".into()),
    };
    if values.len() != 2 {
        return Err(format!(
            "values must hold [off, on], got shape {:?}",
            values.shape()
        ));
    }
    let rank = indices.shape().len() + 1;
    let ax = axis(ax, rank)?;
    let mut shape = indices.shape().to_vec();
    shape.insert(ax, depth);
    element_count(&shape)?;
    let idx = indices.to_f64_vec();
    let inner: usize = indices.shape()[ax..].iter().product();
    with_tensor!(values, v => {
        let (off, on) = (v.iter().next().copied().unwrap_or_default(), v.iter().nth(1).copied().unwrap_or_default());
        let mut out = ArrayD::from_elem(IxDyn(&shape), off);
        let data = out.as_slice_mut().expect("standard layout");
        for (flat, &i) in idx.iter().enumerate() {
            let i = i.trunc() as i64;
            let i = if i < 0 { i + depth as i64 } else { i };
            if (0..depth as i64).contains(&i) {
                let (outer, rest) = (flat / inner.max(1), flat % inner.max(1));
                data[(outer * depth + i as usize) * inner + rest] = on;
            }
        }
        Ok(Element::wrap(out))
    })
}

/// NonZero: the i64 coordinates `[rank, count]` of the non-zero elements in
/// row-major order.
pub fn non_zero(x: &Tensor) -> Result<Tensor, String> {
    let rank = x.shape().len();
    let coords: Vec<Vec<usize>> = with_tensor!(x, a => a
        .indexed_iter()
        .filter(|(_, v)| v.to_f64() != 0.0)
        .map(|(i, _)| i.slice().to_vec())
        .collect());
    let count = coords.len();
    let mut out = vec![0i64; rank * count];
    for (j, c) in coords.iter().enumerate() {
        for (d, &v) in c.iter().enumerate() {
            out[d * count + j] = v as i64;
        }
    }
    Tensor::from_i64(&[rank, count], out).map_err(|e| e.to_string())
}

/// Compress: the slices along `axis` (of the flattened input when absent)
/// whose condition is true. Inputs: data, condition (1-D bool).
pub fn compress(ax: Option<i64>, args: &Args) -> Result<Tensor, String> {
    let (x, cond) = (args.get(0)?, args.get(1)?);
    let Tensor::Bool(c) = cond else {
        return Err(format!("condition must be bool, got {}", cond.dtype()));
    };
    let flat;
    let (data, ax) = match ax {
        Some(a) => (x, axis(a, x.shape().len())?),
        None => {
            flat = with_tensor!(x, a => Element::wrap(
                a.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&[a.len()])).map_err(|e| e.to_string())?
            ));
            (&flat, 0)
        }
    };
    let len = data.shape()[ax];
    let picked: Vec<usize> = c
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(i, _)| i)
        .collect();
    if picked.iter().any(|&i| i >= len) {
        return Err(format!("condition selects past the axis length {len}"));
    }
    Ok(with_tensor!(data, a => Element::wrap(a.select(Axis(ax), &picked))))
}

/// Einsum over any equation: explicit or implicit output, repeated
/// subscripts (diagonals), ellipsis broadcasting.
pub fn einsum(equation: &str, operands: &[&Tensor]) -> Result<Tensor, String> {
    let plan = EinsumPlan::new(equation, operands)?;
    let dtype = operands[0].dtype();
    if operands.iter().any(|t| t.dtype() != dtype) {
        return Err("Einsum operands differ in dtype".into());
    }
    dispatch_number!(dtype, T => {
        let arrays: Vec<_> = operands.iter().map(|t| array_of::<T>(t).as_standard_layout().into_owned()).collect();
        let slices: Vec<&[T]> = arrays.iter().map(|a| a.as_slice().expect("standard layout")).collect();
        Ok(restore(plan.evaluate(&slices)?, dtype))
    })
}

/// An einsum equation resolved against operand shapes: every label's size,
/// and for each operand and the output, the stride each label steps by.
struct EinsumPlan {
    sizes: Vec<usize>,
    operand_strides: Vec<Vec<usize>>,
    output_shape: Vec<usize>,
    output_strides: Vec<usize>,
}

/// The most label iterations an einsum may take.
const MAX_EINSUM_STEPS: usize = 1 << 28;

impl EinsumPlan {
    fn new(equation: &str, operands: &[&Tensor]) -> Result<EinsumPlan, String> {
        let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match equation.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (equation.as_str(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        if terms.len() != operands.len() {
            return Err(format!(
                "equation has {} terms for {} operands",
                terms.len(),
                operands.len()
            ));
        }
        let ellipsis_rank = terms
            .iter()
            .zip(operands)
            .filter(|(t, _)| t.contains("..."))
            .map(|(t, o)| {
                o.shape()
                    .len()
                    .saturating_sub(t.replace("...", "").chars().count())
            })
            .max()
            .unwrap_or(0);
        // Labels: letters by char code, ellipsis dims as 256 + position.
        let expand = |term: &str, rank: usize| -> Result<Vec<usize>, String> {
            let letters = term.replace("...", "").chars().count();
            let mut labels = Vec::new();
            let mut rest = term;
            while !rest.is_empty() {
                if let Some(after) = rest.strip_prefix("...") {
                    let here = rank
                        .checked_sub(letters)
                        .ok_or("equation term longer than its operand")?;
                    labels.extend((ellipsis_rank - here..ellipsis_rank).map(|i| 256 + i));
                    rest = after;
                } else {
                    let c = rest.chars().next().expect("non-empty");
                    if !c.is_ascii_alphabetic() {
                        return Err(format!("bad einsum subscript '{c}'"));
                    }
                    labels.push(c as usize);
                    rest = &rest[c.len_utf8()..];
                }
            }
            Ok(labels)
        };
        let operand_labels: Vec<Vec<usize>> = terms
            .iter()
            .zip(operands)
            .map(|(t, o)| expand(t, o.shape().len()))
            .collect::<Result<_, _>>()?;
        for (labels, o) in operand_labels.iter().zip(operands) {
            if labels.len() != o.shape().len() {
                return Err(format!(
                    "term of {} subscripts for an operand of shape {:?}",
                    labels.len(),
                    o.shape()
                ));
            }
        }
        let output_labels: Vec<usize> = match rhs {
            Some(r) => expand(r, ellipsis_rank + r.replace("...", "").chars().count())?,
            None => {
                let mut counts = std::collections::BTreeMap::new();
                for l in operand_labels.iter().flatten() {
                    *counts.entry(*l).or_insert(0) += 1;
                }
                let mut out: Vec<usize> = (0..ellipsis_rank).map(|i| 256 + i).collect();
                out.extend(
                    counts
                        .iter()
                        .filter(|&(&l, &c)| c == 1 && l < 256)
                        .map(|(&l, _)| l),
                );
                out
            }
        };
        let mut all: Vec<usize> = operand_labels.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        if let Some(l) = output_labels.iter().find(|l| !all.contains(l)) {
            return Err(format!("output subscript {l} appears in no input"));
        }
        let mut sizes = vec![1usize; all.len()];
        let id = |l: usize| all.binary_search(&l).expect("known label");
        for (labels, o) in operand_labels.iter().zip(operands) {
            for (&l, &d) in labels.iter().zip(o.shape()) {
                let s = &mut sizes[id(l)];
                if *s == 1 {
                    *s = d;
                } else if d != 1 && d != *s {
                    return Err(format!("subscript sizes {d} and {s} disagree"));
                }
            }
        }
        let strides_for = |labels: &[usize], shape: &[usize]| -> Vec<usize> {
            let mut strides = vec![0usize; all.len()];
            let mut step = 1;
            for (&l, &d) in labels.iter().zip(shape).rev() {
                if d != 1 {
                    strides[id(l)] += step;
                }
                step *= d;
            }
            strides
        };
        let operand_strides = operand_labels
            .iter()
            .zip(operands)
            .map(|(l, o)| strides_for(l, o.shape()))
            .collect();
        let output_shape: Vec<usize> = output_labels.iter().map(|&l| sizes[id(l)]).collect();
        element_count(&output_shape)?;
        let output_strides = strides_for(&output_labels, &output_shape);
        Ok(EinsumPlan {
            sizes,
            operand_strides,
            output_shape,
            output_strides,
        })
    }

    fn evaluate<T: Number>(&self, operands: &[&[T]]) -> Result<ArrayD<T>, String> {
        let steps = self.sizes.iter().try_fold(1usize, |a, &s| a.checked_mul(s));
        if steps.is_none_or(|s| s > MAX_EINSUM_STEPS) {
            return Err(format!(
                "einsum over label sizes {:?} is too large",
                self.sizes
            ));
        }
        let mut out = vec![T::ZERO; self.output_shape.iter().product()];
        if self.sizes.contains(&0) {
            return ArrayD::from_shape_vec(IxDyn(&self.output_shape), out)
                .map_err(|e| e.to_string());
        }
        let mut index = vec![0usize; self.sizes.len()];
        loop {
            let mut product = T::ONE;
            for (data, strides) in operands.iter().zip(&self.operand_strides) {
                let offset: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
                product = product.mul_wrapping(data[offset]);
            }
            let o: usize = index
                .iter()
                .zip(&self.output_strides)
                .map(|(i, s)| i * s)
                .sum();
            out[o] = out[o].add_wrapping(product);
            let mut d = self.sizes.len();
            loop {
                if d == 0 {
                    return ArrayD::from_shape_vec(IxDyn(&self.output_shape), out)
                        .map_err(|e| e.to_string());
                }
                d -= 1;
                index[d] += 1;
                if index[d] < self.sizes[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;

    fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    #[test]
    fn einsum_matmul_trace_transpose_and_implicit_output() {
        let a = f32s(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = f32s(&[2, 2], vec![5.0, 6.0, 7.0, 8.0]);
        assert_eq!(
            einsum("ij,jk->ik", &[&a, &b]).unwrap(),
            f32s(&[2, 2], vec![19.0, 22.0, 43.0, 50.0])
        );
        assert_eq!(einsum("ii", &[&a]).unwrap(), f32s(&[], vec![5.0]));
        assert_eq!(
            einsum("ji", &[&a]).unwrap(),
            f32s(&[2, 2], vec![1.0, 3.0, 2.0, 4.0])
        );
        let batch = f32s(&[3, 2, 2], (0..12).map(|v| v as f32).collect());
        let y = einsum("...ij,...jk", &[&batch, &a]).unwrap();
        assert_eq!(y.shape(), &[3, 2, 2]);
        assert!(einsum("ij,jk->ik", &[&a, &f32s(&[3, 1], vec![0.0; 3])]).is_err());
    }

    #[test]
    fn top_k_orders_ties_by_index() {
        let x = f32s(&[1, 4], vec![1.0, 3.0, 3.0, 2.0]);
        let k = Tensor::from_i64(&[1], vec![3]).unwrap();
        let attrs = TopKAttrs {
            axis: -1,
            largest: true,
            sorted: true,
        };
        let op = Op::TopK(attrs.clone());
        let inputs = [Some(&x), Some(&k)];
        let out = top_k(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(out[0], f32s(&[1, 3], vec![3.0, 3.0, 2.0]));
        assert_eq!(out[1].to_i64_vec().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn cum_sum_exclusive_reverse_and_one_hot() {
        let x = f32s(&[3], vec![1.0, 2.0, 3.0]);
        let ax = Tensor::scalar_i64(0);
        let attrs = CumSumAttrs {
            exclusive: true,
            reverse: true,
        };
        let op = Op::CumSum(attrs.clone());
        let inputs = [Some(&x), Some(&ax)];
        assert_eq!(
            cum_sum(&attrs, &Args::new(&op, &inputs).unwrap()).unwrap(),
            f32s(&[3], vec![5.0, 3.0, 0.0])
        );
        let idx = Tensor::from_i64(&[2], vec![1, -1]).unwrap();
        let depth = Tensor::scalar_i64(3);
        let values = f32s(&[2], vec![0.0, 1.0]);
        let op = Op::OneHot(crate::ir::ops::OneHotAttrs { axis: -1 });
        let inputs = [Some(&idx), Some(&depth), Some(&values)];
        let y = one_hot(-1, &Args::new(&op, &inputs).unwrap()).unwrap();
        assert_eq!(y, f32s(&[2, 3], vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]));
    }

    #[test]
    fn non_zero_lists_coordinates() {
        let x = f32s(&[2, 2], vec![1.0, 0.0, 0.0, 2.0]);
        assert_eq!(
            non_zero(&x).unwrap().to_i64_vec().unwrap(),
            vec![0, 1, 0, 1]
        );
    }
}
