//! Attention (ONNX Attention-23 without KV cache, softcap or sliding window).

use ndarray::{Array2, Array4, ArrayD, Axis, Ix4, IxDyn, s};

use super::broadcast::broadcast_view;
use super::matmul::gemm_into;
use super::numeric::{Number, Real, array_of, restore};
use super::operands::{Args, element_count};
use crate::ir::ops::AttentionAttrs;
use crate::ir::tensor::Tensor;

/// `softmax(scale·Q·Kᵀ + bias)·V` per head. Inputs: Q, K, V, attn_mask?
///
/// As in the ONNX reference, `sqrt(scale)` multiplies Q and K separately, a
/// row whose bias is all `-inf` (nothing to attend) gives zeros, and a mask
/// shorter than the key sequence is padded with `-inf` (false).
pub fn attention(attrs: &AttentionAttrs, args: &Args) -> Result<Tensor, String> {
    let (q, k, v) = (args.get(0)?, args.get(1)?, args.get(2)?);
    let dtype = q.dtype();
    if k.dtype() != dtype || v.dtype() != dtype {
        return Err(format!(
            "Q, K and V dtypes differ: {dtype}, {}, {}",
            k.dtype(),
            v.dtype()
        ));
    }
    let three_d = match (q.shape().len(), k.shape().len(), v.shape().len()) {
        (3, 3, 3) => true,
        (4, 4, 4) => false,
        _ => {
            return Err(format!(
                "Q, K and V must all be 3-D or all 4-D, got {:?}, {:?}, {:?}",
                q.shape(),
                k.shape(),
                v.shape()
            ));
        }
    };
    dispatch_real!(dtype, F => {
        let heads = |t: &Tensor, n: Option<usize>, name: &str| to_heads::<F>(t, three_d, n, name);
        let q4 = heads(q, attrs.q_num_heads, "Q")?;
        let k4 = heads(k, attrs.kv_num_heads, "K")?;
        let v4 = heads(v, attrs.kv_num_heads, "V")?;
        let (batch, q_heads, q_len, head_dim) = q4.dim();
        let (kb, kv_heads, kv_len, k_dim) = k4.dim();
        let (vb, v_heads, v_len, v_dim) = v4.dim();
        let consistent = kb == batch
            && vb == batch
            && v_heads == kv_heads
            && v_len == kv_len
            && k_dim == head_dim
            && kv_heads > 0
            && q_heads % kv_heads == 0;
        if !consistent {
            return Err(format!(
                "Q [{batch},{q_heads},{q_len},{head_dim}], K [{kb},{kv_heads},{kv_len},{k_dim}] and \
                 V [{vb},{v_heads},{v_len},{v_dim}] do not fit (batch, heads, key length, head size)"
            ));
        }
        element_count(&[batch, q_heads, q_len, kv_len])?;
        let scale = attrs.scale.map_or(1.0 / (head_dim as f64).sqrt(), f64::from);
        let root = F::c(scale.sqrt());
        let bias = bias::<F>(attrs.is_causal, args.opt(3), [batch, q_heads, q_len, kv_len])?;
        let reps = q_heads / kv_heads;
        let mut out = Array4::<F>::zeros((batch, q_heads, q_len, v_dim));
        let mut scores = Array2::<F>::zeros((q_len, kv_len));
        for b in 0..batch {
            for h in 0..q_heads {
                let kh = h / reps;
                let qs = q4.slice(s![b, h, .., ..]).mapv(|x| x * root);
                let ks = k4.slice(s![b, kh, .., ..]).mapv(|x| x * root);
                gemm_into(qs.view(), ks.t(), F::ZERO, scores.view_mut());
                if let Some(bias) = &bias {
                    scores += &bias.slice(s![b, h, .., ..]);
                }
                for (i, mut row) in scores.axis_iter_mut(Axis(0)).enumerate() {
                    let masked = bias.as_ref().is_some_and(|bias| {
                        bias.slice(s![b, h, i, ..]).iter().all(|&x| x == F::NEG_INFINITY)
                    });
                    softmax_row(row.as_slice_mut().expect("rows of a standard array"), masked);
                }
                let v_bh = v4.slice(s![b, kh, .., ..]);
                gemm_into(scores.view(), v_bh, F::ZERO, out.slice_mut(s![b, h, .., ..]));
            }
        }
        let out = if three_d {
            out.permuted_axes([0, 2, 1, 3])
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&[batch, q_len, q_heads * v_dim]))
                .map_err(|e| e.to_string())?
        } else {
            out.into_dyn()
        };
        Ok(restore(out, dtype))
    })
}

/// A 4-D `[batch, heads, seq, head_size]` copy of Q, K or V; 3-D inputs
/// `[batch, seq, heads * head_size]` are split into `heads`.
fn to_heads<F: Real>(
    t: &Tensor,
    three_d: bool,
    heads: Option<usize>,
    name: &str,
) -> Result<Array4<F>, String> {
    let a = array_of::<F>(t).as_standard_layout().into_owned();
    if !three_d {
        if let Some(n) = heads.filter(|&n| n != t.shape()[1]) {
            return Err(format!(
                "{name} has {} heads, the op says {n}",
                t.shape()[1]
            ));
        }
        return a.into_dimensionality::<Ix4>().map_err(|e| e.to_string());
    }
    let n = heads.ok_or_else(|| format!("3-D {name} needs the head count attributes"))?;
    let &[batch, seq, hidden] = t.shape() else {
        unreachable!("checked 3-D")
    };
    if n == 0 || hidden % n != 0 {
        return Err(format!(
            "{name} hidden size {hidden} does not split into {n} heads"
        ));
    }
    let split = a
        .into_shape_with_order(IxDyn(&[batch, seq, n, hidden / n]))
        .map_err(|e| e.to_string())?
        .into_dimensionality::<Ix4>()
        .map_err(|e| e.to_string())?;
    Ok(split
        .permuted_axes([0, 2, 1, 3])
        .as_standard_layout()
        .into_owned())
}

/// The additive bias `[batch, q_heads, q_len, kv_len]` from the mask and the
/// causal flag, or `None` when there is neither.
fn bias<F: Real>(
    causal: bool,
    mask: Option<&Tensor>,
    shape: [usize; 4],
) -> Result<Option<Array4<F>>, String> {
    let kv_len = shape[3];
    if mask.is_none() && !causal {
        return Ok(None);
    }
    let mut bias = Array4::<F>::zeros(shape);
    if let Some(mask) = mask {
        let additive: ArrayD<F> = match mask {
            Tensor::Bool(m) => m.mapv(|allowed| if allowed { F::ZERO } else { F::neg_infinity() }),
            other if other.dtype().is_float() => array_of::<F>(other).into_owned(),
            other => {
                return Err(format!(
                    "attn_mask must be bool or float, got {}",
                    other.dtype()
                ));
            }
        };
        let padded = pad_keys(additive, kv_len)?;
        let view = padded.view();
        bias.assign(&broadcast_view(&view, &shape)?);
    }
    if causal {
        for ((.., i, j), x) in bias.indexed_iter_mut() {
            if j > i {
                *x = F::neg_infinity();
            }
        }
    }
    Ok(Some(bias))
}

/// A mask whose last dim is shorter than the key sequence, padded with `-inf`.
fn pad_keys<F: Real>(mask: ArrayD<F>, kv_len: usize) -> Result<ArrayD<F>, String> {
    let Some(&last) = mask.shape().last() else {
        return Ok(mask);
    };
    if last >= kv_len {
        return Ok(mask);
    }
    let mut shape = mask.shape().to_vec();
    *shape.last_mut().expect("non-empty") = kv_len;
    element_count(&shape)?;
    let mut padded = ArrayD::from_elem(IxDyn(&shape), F::neg_infinity());
    let rank = shape.len();
    padded
        .slice_axis_mut(Axis(rank - 1), (0..last).into())
        .assign(&mask);
    Ok(padded)
}

/// Softmax in place; a row with nothing to attend becomes zeros.
fn softmax_row<F: Real>(row: &mut [F], fully_masked: bool) {
    let max = row.iter().copied().fold(F::neg_infinity(), F::max);
    if fully_masked || max == F::neg_infinity() {
        row.iter_mut().for_each(|x| *x = F::ZERO);
        return;
    }
    row.iter_mut().for_each(|x| *x = (*x - max).exp());
    let sum: F = row.iter().copied().sum();
    row.iter_mut().for_each(|x| *x = *x / sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::Op;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn run(attrs: AttentionAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor, String> {
        let op = Op::Attention(attrs.clone());
        attention(&attrs, &Args::new(&op, inputs)?)
    }

    fn attrs(is_causal: bool) -> AttentionAttrs {
        AttentionAttrs {
            is_causal,
            scale: None,
            q_num_heads: None,
            kv_num_heads: None,
        }
    }

    #[test]
    fn one_query_averages_values_by_softmax_weights() {
        // q·k = [0, 2] scaled by 1/sqrt(2); weights softmax([0, sqrt(2)]).
        let q = t(&[1, 1, 1, 2], vec![1.0, 1.0]);
        let k = t(&[1, 1, 2, 2], vec![0.0, 0.0, 1.0, 1.0]);
        let v = t(&[1, 1, 2, 1], vec![10.0, 20.0]);
        let y = run(attrs(false), &[Some(&q), Some(&k), Some(&v)]).unwrap();
        let w1 = 1.0 / (1.0 + (-(2f64).sqrt()).exp());
        let want = 10.0 * (1.0 - w1) + 20.0 * w1;
        assert!((y.to_f64_vec()[0] - want).abs() < 1e-5, "{y:?}");
    }

    #[test]
    fn causal_first_query_sees_only_the_first_key_and_masked_rows_are_zero() {
        let q = t(&[1, 1, 2, 1], vec![1.0, 1.0]);
        let k = t(&[1, 1, 2, 1], vec![1.0, 5.0]);
        let v = t(&[1, 1, 2, 1], vec![3.0, 7.0]);
        let y = run(attrs(true), &[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert_eq!(y.to_f64_vec()[0], 3.0);
        let mask = Tensor::Bool(
            ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![false, false, true, false]).unwrap(),
        );
        let y = run(attrs(false), &[Some(&q), Some(&k), Some(&v), Some(&mask)]).unwrap();
        assert_eq!(y.to_f64_vec(), vec![0.0, 3.0]);
    }

    #[test]
    fn grouped_query_heads_share_key_heads_and_3d_inputs_split() {
        let q = t(&[1, 1, 4], vec![1.0, 0.0, 0.0, 1.0]);
        let k = t(&[1, 1, 2], vec![1.0, 1.0]);
        let v = t(&[1, 1, 2], vec![2.0, 3.0]);
        let a = AttentionAttrs {
            q_num_heads: Some(2),
            kv_num_heads: Some(1),
            ..attrs(false)
        };
        let y = run(a, &[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4]);
        assert_eq!(y.to_f64_vec(), vec![2.0, 3.0, 2.0, 3.0]);
        assert!(run(attrs(false), &[Some(&q), Some(&k), Some(&v)]).is_err());
    }
}
