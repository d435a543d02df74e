//! Attention (the IR's scaled dot-product form) decomposed into MatMul,
//! Softmax and elementwise ops:
//!
//! ```text
//! Q, K, V: [B, H, L, D] (3-D inputs are split into heads and transposed)
//! scores = MatMul(Q * scale, Transpose(K))        grouped-query heads: Q as
//!                                                  [B, Hkv, reps*L, D], so K and
//!                                                  V are never repeated
//! scores += bias                                  mask (bool: 0 / MASKED) and
//!                                                  the causal constant
//! probs = Softmax(scores) [* any-key-allowed]     rows with nothing to attend
//!                                                  give zeros, as in the IR
//! Y = MatMul(probs, V)                             back to [B, L, H*Dv] for 3-D
//! ```
//!
//! Float16 inputs are cast to float32 and the result back.
//!
//! Masked positions get a large finite negative bias instead of `-inf`: the
//! softmax of a partly masked row is the same (the exponentials underflow to
//! zero), and a fully masked row stays finite, so multiplying it by zero
//! gives the IR's zeros instead of NaN.

use crate::ir::error::Result;
use crate::ir::ops::{AttentionAttrs, CastAttrs, SoftmaxAttrs};
use crate::ir::patch::PatchValue;
use crate::ir::{DType, Graph, Node, NodeId, Op, OpKind, ValueId};
use crate::passes::{Changed, Pass, PassCx};

use super::build::{Builder, required, static_shape, taken_names};

/// The bias of a masked position.
const MASKED: f64 = -1e30;
/// A row whose largest bias is below this attends nothing (every position
/// got at least one [`MASKED`]).
const FULLY_MASKED: f64 = MASKED / 2.0;

pub struct DecomposeAttention;

impl Pass for DecomposeAttention {
    fn name(&self) -> &'static str {
        "tflite_decompose_attention"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let targets: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| n.op.kind() == OpKind::Attention && check(g, n).is_ok())
            .map(|(id, _)| id)
            .collect();
        let mut names = taken_names(g);
        for &id in &targets {
            let mut b = Builder::new(g, &mut names, "tflite_attention", id);
            let node = b.graph().node(id).clone();
            let y = decompose(&mut b, &node)?;
            let patch = b.finish(&[y]);
            cx.record(patch.apply(g)?);
        }
        Ok(Changed::from_bool(!targets.is_empty()))
    }
}

/// The sizes of one attention node, all inputs as 4-D heads.
struct Dims {
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
    v_dim: usize,
    three_d: bool,
}

fn dims(g: &Graph, node: &Node, a: &AttentionAttrs) -> std::result::Result<Dims, String> {
    let shape = |i: usize| -> std::result::Result<Vec<usize>, String> {
        let v = node.input(i).ok_or(format!("input {i} is required"))?;
        static_shape(g, v).ok_or(format!("'{}' has no static shape", g.value(v).name))
    };
    let (q, k, v) = (shape(0)?, shape(1)?, shape(2)?);
    let heads4 =
        |s: &[usize], n: Option<usize>, name: &str| -> std::result::Result<[usize; 4], String> {
            match *s {
                [b, h, l, d] => match n {
                    Some(n) if n != h => Err(format!("{name} has {h} heads, the op says {n}")),
                    _ => Ok([b, h, l, d]),
                },
                [b, l, hidden] => {
                    let n = n.ok_or(format!("3-D {name} needs the head count attributes"))?;
                    if n == 0 || hidden % n != 0 {
                        return Err(format!(
                            "{name} hidden size {hidden} does not split into {n} heads"
                        ));
                    }
                    Ok([b, n, l, hidden / n])
                }
                _ => Err(format!("{name} must be 3-D or 4-D, got {s:?}")),
            }
        };
    if q.len() != k.len() || q.len() != v.len() {
        return Err("Q, K and V must all be 3-D or all 4-D".into());
    }
    let [batch, q_heads, q_len, head_dim] = heads4(&q, a.q_num_heads, "Q")?;
    let [kb, kv_heads, kv_len, k_dim] = heads4(&k, a.kv_num_heads, "K")?;
    let [vb, v_heads, v_len, v_dim] = heads4(&v, a.kv_num_heads, "V")?;
    let consistent = kb == batch
        && vb == batch
        && v_heads == kv_heads
        && v_len == kv_len
        && k_dim == head_dim
        && kv_heads > 0
        && q_heads % kv_heads == 0;
    if !consistent {
        return Err(format!(
            "Q {q:?}, K {k:?} and V {v:?} do not fit (batch, heads, key length, head size)"
        ));
    }
    Ok(Dims {
        batch,
        q_heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
        v_dim,
        three_d: q.len() == 3,
    })
}

/// `Ok` when the pass rewrites `node`, else why it cannot.
pub fn check(g: &Graph, node: &Node) -> std::result::Result<(), String> {
    let Op::Attention(a) = &node.op else {
        return Err(format!("{} is not Attention", node.op.name()));
    };
    let dtype_of = |v: ValueId| g.fact(v).dtype;
    let q_dtype = node.input(0).and_then(dtype_of);
    let Some(dtype) = q_dtype.filter(|d| matches!(d, DType::F32 | DType::F16)) else {
        return Err(format!(
            "Q is {}; the TFLite decomposition of Attention takes float32 or float16 (TFLite casts no bfloat16)",
            q_dtype.map_or("unknown".to_string(), |d| d.name())
        ));
    };
    let same = [node.input(1), node.input(2), Some(node.outputs[0])];
    if same.iter().any(|v| v.and_then(dtype_of) != Some(dtype)) {
        return Err("Q, K, V and Y must share one dtype".into());
    }
    if let Some(mask) = node.input(3)
        && !matches!(dtype_of(mask), Some(d) if d == dtype || d == DType::Bool || d == DType::F32)
    {
        return Err(format!("attn_mask must be bool or {}", dtype.name()));
    }
    let d = dims(g, node, a)?;
    if let Some(mask) = node.input(3) {
        let shape =
            static_shape(g, mask).ok_or(format!("'{}' has no static shape", g.value(mask).name))?;
        let full = [d.batch, d.q_heads, d.q_len, d.kv_len];
        let last = shape.last().copied().unwrap_or(1);
        let mut padded = shape.clone();
        if let Some(l) = padded.last_mut() {
            *l = d.kv_len.max(last);
        }
        let broadcasts = padded.len() <= 4
            && padded
                .iter()
                .rev()
                .zip(full.iter().rev())
                .all(|(&m, &f)| m == 1 || m == f);
        if !broadcasts || last > d.kv_len {
            return Err(format!(
                "attn_mask {shape:?} does not broadcast to {full:?}"
            ));
        }
    }
    Ok(())
}

fn decompose(b: &mut Builder, node: &Node) -> Result<PatchValue> {
    let Op::Attention(a) = &node.op else {
        return Err(b.error("not Attention"));
    };
    let d = dims(b.graph(), node, a).map_err(|e| b.error(e))?;
    let input = |i: usize| required(node, i);
    let (q, k, v) = (b.tap(input(0)?), b.tap(input(1)?), b.tap(input(2)?));
    // Half-precision attention is computed in float32, as the IR does.
    let dtype = b.dtype(q)?;
    let q = to_f32(b, "q", q)?;
    let k = to_f32(b, "k", k)?;
    let v = to_f32(b, "v", v)?;
    let (q, k, v) = if d.three_d {
        (
            split_heads(b, "q", q, d.q_heads)?,
            split_heads(b, "k", k, d.kv_heads)?,
            split_heads(b, "v", v, d.kv_heads)?,
        )
    } else {
        (q, k, v)
    };
    let scale = a.scale.map_or(1.0 / (d.head_dim as f64).sqrt(), f64::from);
    let scale = b.scalar("scale", DType::F32, scale)?;
    let q = b.op2("q_scaled", Op::Mul, &[q, scale])?;
    let reps = d.q_heads / d.kv_heads;
    let grouped = [d.batch, d.kv_heads, reps * d.q_len];
    let q = b.reshape(
        "q_grouped",
        q,
        &[grouped[0], grouped[1], grouped[2], d.head_dim],
    )?;
    let kt = b.transpose("k_transposed", k, &[0, 1, 3, 2])?;
    let scores = b.op2("scores", Op::MatMul, &[q, kt])?;
    let full = [d.batch, d.q_heads, d.q_len, d.kv_len];
    let mut scores = b.reshape("scores_heads", scores, &full)?;

    let bias = bias(b, node, a, &d)?;
    if let Some(bias) = bias {
        scores = b.op2("biased", Op::Add, &[scores, bias])?;
    }
    let softmax = Op::Softmax(SoftmaxAttrs {
        axis: -1,
        coerce_2d: false,
    });
    let mut probs = b.op2("probs", softmax, &[scores])?;
    // Only a mask can leave a row with nothing to attend: the causal bias
    // always allows the first key.
    if let (Some(bias), Some(_)) = (bias, node.input(3)) {
        let rank = b.shape(bias)?.len();
        let row_max = b.reduce("bias_row_max", Op::ReduceMax, bias, &[rank - 1])?;
        let threshold = b.scalar("fully_masked", DType::F32, FULLY_MASKED)?;
        let allowed = b.op2("row_allowed", Op::Greater, &[row_max, threshold])?;
        let cast = Op::Cast(CastAttrs {
            to: DType::F32,
            saturate: true,
        });
        let allowed = b.op2("row_allowed_f32", cast, &[allowed])?;
        probs = b.op2("probs_masked", Op::Mul, &[probs, allowed])?;
    }
    let probs = b.reshape(
        "probs_grouped",
        probs,
        &[grouped[0], grouped[1], grouped[2], d.kv_len],
    )?;
    let y = b.op2("attended", Op::MatMul, &[probs, v])?;
    let y = b.reshape("attended_heads", y, &[d.batch, d.q_heads, d.q_len, d.v_dim])?;
    let y = if d.three_d {
        let y = b.transpose("merge_heads", y, &[0, 2, 1, 3])?;
        b.reshape("merged", y, &[d.batch, d.q_len, d.q_heads * d.v_dim])?
    } else {
        y
    };
    if dtype == DType::F32 {
        return Ok(y);
    }
    let back = Op::Cast(CastAttrs {
        to: dtype,
        saturate: true,
    });
    b.op2("y_cast", back, &[y])
}

fn to_f32(b: &mut Builder, name: &str, x: PatchValue) -> Result<PatchValue> {
    if b.dtype(x)? == DType::F32 {
        return Ok(x);
    }
    let cast = Op::Cast(CastAttrs {
        to: DType::F32,
        saturate: true,
    });
    b.op2(&format!("{name}_f32"), cast, &[x])
}

/// `[B, L, H*D]` -> `[B, H, L, D]`.
fn split_heads(b: &mut Builder, name: &str, x: PatchValue, heads: usize) -> Result<PatchValue> {
    let [batch, len, hidden] = b.shape(x)?[..] else {
        return Err(b.error(format!("{name} must be 3-D")));
    };
    let x = b.reshape(
        &format!("{name}_split"),
        x,
        &[batch, len, heads, hidden / heads],
    )?;
    b.transpose(&format!("{name}_heads"), x, &[0, 2, 1, 3])
}

/// The additive bias of the mask and the causal flag, or `None` without either.
fn bias(b: &mut Builder, node: &Node, a: &AttentionAttrs, d: &Dims) -> Result<Option<PatchValue>> {
    let mut total = None;
    if let Some(mask) = node.input(3) {
        let mask = b.tap(mask);
        let mut additive = if b.dtype(mask)? == DType::Bool {
            let zero = b.scalar("mask_allowed", DType::F32, 0.0)?;
            let masked = b.scalar("mask_masked", DType::F32, MASKED)?;
            b.op2("mask_bias", Op::Where, &[mask, zero, masked])?
        } else {
            let mask = to_f32(b, "mask", mask)?;
            let floor = b.scalar("mask_floor", DType::F32, MASKED)?;
            b.op2("mask_bias", Op::Max, &[mask, floor])?
        };
        let shape = b.shape(additive)?;
        let last = shape.last().copied().unwrap_or(1);
        if !shape.is_empty() && last < d.kv_len && last != 1 {
            // Keys beyond a short mask are masked.
            let mut pad_shape = shape.clone();
            *pad_shape.last_mut().expect("non-empty") = d.kv_len - last;
            let n = pad_shape.iter().product();
            let pad = b.constant("mask_pad", DType::F32, &pad_shape, vec![MASKED; n])?;
            let concat = Op::Concat(crate::ir::ops::AxisAttrs { axis: -1 });
            additive = b.op2("mask_padded", concat, &[additive, pad])?;
        }
        total = Some(additive);
    }
    if a.is_causal {
        let (l, s) = (d.q_len, d.kv_len);
        let values = (0..l * s)
            .map(|i| if i % s > i / s { MASKED } else { 0.0 })
            .collect();
        let causal = b.constant("causal_bias", DType::F32, &[l, s], values)?;
        total = Some(match total {
            Some(t) => b.op2("bias", Op::Add, &[t, causal])?,
            None => causal,
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::legalize::build::testing::{assert_same, kinds, run_pass};

    fn same(text: &str) -> Vec<&'static str> {
        let (before, after, rules) = run_pass(text, DecomposeAttention);
        assert_eq!(rules, ["tflite_attention"]);
        assert_same(&before, &after, 0.0, 1e-5);
        kinds(&after)
    }

    fn attrs(causal: bool, scale: &str, q: &str, kv: &str) -> String {
        format!(
            "{{\"is_causal\":{causal},\"scale\":{scale},\"q_num_heads\":{q},\"kv_num_heads\":{kv}}}"
        )
    }

    #[test]
    fn four_d_plain_and_scaled() {
        let k = same(&format!(
            "graph g {{
  input q: f32[2,3,4,8]
  input k: f32[2,3,6,8]
  input v: f32[2,3,6,5]
  node a: y: f32[2,3,4,5] = Attention {} (q, k, v, _)
  output y
}}",
            attrs(false, "null", "null", "null")
        ));
        assert_eq!(k, ["Mul", "Transpose", "MatMul", "Softmax", "MatMul"]);
        same(&format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input k: f32[1,2,3,4]
  input v: f32[1,2,3,4]
  node a: y: f32[1,2,3,4] = Attention {} (q, k, v, _)
  output y
}}",
            attrs(true, "0.1", "null", "null")
        ));
    }

    #[test]
    fn three_d_with_grouped_heads_and_causal_mask() {
        same(&format!(
            "graph g {{
  input q: f32[2,4,24]
  input k: f32[2,6,12]
  input v: f32[2,6,8]
  node a: y: f32[2,4,16] = Attention {} (q, k, v, _)
  output y
}}",
            attrs(true, "null", "4", "2")
        ));
    }

    #[test]
    fn half_precision_is_computed_in_float32() {
        let k = same(&format!(
            "graph g {{
  input q: f16[1,2,3,4]
  input k: f16[1,2,3,4]
  input v: f16[1,2,3,4]
  input m: f16[3,3]
  node a: y: f16[1,2,3,4] = Attention {} (q, k, v, m)
  output y
}}",
            attrs(true, "null", "null", "null")
        ));
        assert_eq!(k.iter().filter(|&&op| op == "Cast").count(), 6);
    }

    #[test]
    fn float_and_bool_masks_with_fully_masked_rows() {
        // Row 0 of the bool mask allows nothing.
        same(&format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input k: f32[1,2,3,4]
  input v: f32[1,2,3,4]
  weight m: bool[3,3] = [0,0,0,1,0,1,1,1,0]
  node a: y: f32[1,2,3,4] = Attention {} (q, k, v, m)
  output y
}}",
            attrs(false, "null", "null", "null")
        ));
        same(&format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input k: f32[1,2,3,4]
  input v: f32[1,2,3,4]
  input m: f32[1,2,3,3]
  node a: y: f32[1,2,3,4] = Attention {} (q, k, v, m)
  output y
}}",
            attrs(true, "null", "null", "null")
        ));
        // A key-padding mask shorter than the keys, with -inf entries.
        same(&format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input k: f32[1,2,5,4]
  input v: f32[1,2,5,4]
  weight e: f32[3,3] = [1,0,2,0,0,0,1.5,1,0.5]
  node l: m: f32[3,3] = Log (e)
  node a: y: f32[1,2,3,4] = Attention {} (q, k, v, m)
  output y
}}",
            attrs(false, "null", "null", "null")
        ));
    }
}
