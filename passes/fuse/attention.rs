//! Scaled dot-product attention recognised as one `Attention` op.

use crate::ir::error::Result;
use crate::ir::ops::{AttentionAttrs, Op, TransposeAttrs};
use crate::ir::patch::{Patch, PatchValue};
use crate::ir::{Dim, Fact, Graph, NodeId, OpKind, Shape, ValueId};

use super::matching::{Matcher, Rule, product, rewrite_until_stable};
use crate::passes::manager::{Changed, Pass, PassCx};

/// Recognises `softmax(scale · Q·Kᵀ + mask)·V` on 4-D `[batch, heads, seq,
/// head_size]` tensors (rule `scaled_dot_product_attention`):
///
/// - `Kᵀ` is a Transpose swapping K's last two axes (any perm whose last two
///   entries, swapped, give K's layout; a Transpose to that layout is added
///   when it is not the identity), or the Reshape→Transpose(0,2,1)→Reshape
///   chain exporters write for it;
/// - the scale is any product of constant factors on Q, on Kᵀ and on the
///   scores (Mul or Div), and must be positive;
/// - the mask is an optional float Add whose last dim is the key length (the
///   Attention op pads a shorter mask instead of broadcasting it);
/// - the Softmax is over the last axis, optionally followed by the
///   `Where(IsNaN(p), 0, p)` guard exporters add for fully masked rows (the
///   Attention op gives those rows zeros).
///
/// Q, K and V must agree on batch and heads. The fused op differs from the
/// graph only where the graph's softmax produced NaN: rows whose scores are
/// all `-inf` (zeros instead) or hold `inf`/NaN.
pub struct RecognizeAttention;

impl Pass for RecognizeAttention {
    fn name(&self) -> &'static str {
        "recognize_attention"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        const RULES: &[Rule] = &[scaled_dot_product_attention];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// A value divided or multiplied by constants: the value and the factor.
fn unscaled(m: &Matcher, v: ValueId, nodes: &mut Vec<NodeId>) -> (ValueId, f64) {
    let scaled =
        m.g.producer(v)
            .filter(|&id| matches!(m.node(id).op, Op::Mul | Op::Div) && m.single_use(v))
            .and_then(|id| product(m, id))
            .filter(|p| p.factors.len() == 1);
    match scaled {
        Some(p) => {
            nodes.extend(p.nodes);
            (p.factors[0], p.constant)
        }
        None => (v, 1.0),
    }
}

/// Where K comes from: a value, or a Transpose the patch adds.
enum KeySource {
    Value(ValueId),
    Transposed { input: ValueId, perm: Vec<usize> },
}

/// K (as `[batch, heads, seq, head_size]`) and its dims, from `Kᵀ`.
fn untransposed(
    m: &Matcher,
    kt: ValueId,
    nodes: &mut Vec<NodeId>,
) -> Option<(KeySource, Vec<Dim>)> {
    if !m.single_use(kt) {
        return None;
    }
    match m.producer(kt, OpKind::Transpose) {
        Some((t_id, t)) => {
            let Op::Transpose(TransposeAttrs { perm: Some(perm) }) = &t.op else {
                return None;
            };
            let input = t.input(0)?;
            let in_dims = m.dims(input)?;
            if perm.len() != 4 || in_dims.len() != 4 {
                return None;
            }
            let mut k_perm = perm.clone();
            k_perm.swap(2, 3);
            let dims: Vec<Dim> = k_perm.iter().map(|&a| in_dims[a].clone()).collect();
            nodes.push(t_id);
            Some(if k_perm == [0, 1, 2, 3] {
                (KeySource::Value(input), dims)
            } else {
                let perm = k_perm;
                (KeySource::Transposed { input, perm }, dims)
            })
        }
        None => reshaped_transpose(m, kt, nodes),
    }
}

/// `Reshape(Transpose(Reshape(k, [P, S, D]), [0, 2, 1]), [B, H, D, S])` for a
/// 4-D `k` `[B, H, S, D]`: a reshape that keeps the last two dims only merges
/// the leading ones, so the chain swaps k's last two axes.
fn reshaped_transpose(
    m: &Matcher,
    kt: ValueId,
    nodes: &mut Vec<NodeId>,
) -> Option<(KeySource, Vec<Dim>)> {
    let (outer_id, outer) = m.producer(kt, OpKind::Reshape)?;
    let swapped = outer.input(0)?;
    let (t_id, t) = m
        .producer(swapped, OpKind::Transpose)
        .filter(|_| m.single_use(swapped))?;
    if t.op
        != Op::Transpose(TransposeAttrs {
            perm: Some(vec![0, 2, 1]),
        })
    {
        return None;
    }
    let flat = t.input(0)?;
    let (flat_id, flat_node) = m
        .producer(flat, OpKind::Reshape)
        .filter(|_| m.single_use(flat))?;
    let k = flat_node.input(0)?;
    let (k_dims, flat_dims, out_dims) = (m.dims(k)?, m.dims(flat)?, m.dims(kt)?);
    if k_dims.len() != 4 || flat_dims.len() != 3 || flat_dims[1..] != k_dims[2..] {
        return None;
    }
    let swapped_k = [&k_dims[..2], &[k_dims[3].clone(), k_dims[2].clone()]].concat();
    if out_dims != swapped_k.as_slice() {
        return None;
    }
    nodes.extend([outer_id, t_id, flat_id]);
    Some((KeySource::Value(k), k_dims.to_vec()))
}

fn scaled_dot_product_attention(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    Ok(match_attention(m, id))
}

fn match_attention(m: &Matcher, id: NodeId) -> Option<Patch> {
    let root = m.node(id);
    if root.op != Op::MatMul {
        return None;
    }
    let (probs, v) = (root.input(0)?, root.input(1)?);
    let mut nodes = vec![id];
    let softmax_out = nan_guarded(m, probs, &mut nodes).unwrap_or(probs);
    if softmax_out == probs && !m.single_use(probs) {
        return None;
    }
    let (sm_id, sm) = m.producer(softmax_out, OpKind::Softmax)?;
    let Op::Softmax(sm_attrs) = &sm.op else {
        return None;
    };
    if sm_attrs.coerce_2d || !matches!(sm_attrs.axis, -1 | 3) {
        return None;
    }
    nodes.push(sm_id);
    let logits = sm.input(0)?;
    if !m.single_use(logits) || m.dims(logits)?.len() != 4 || !m.is_float(logits) {
        return None;
    }
    let (scores, mask) = split_mask(m, logits, &mut nodes)?;
    let (qk, post_scale) = unscaled(m, scores, &mut nodes);
    if !m.single_use(qk) {
        return None;
    }
    let (qk_id, qk_node) = m.producer(qk, OpKind::MatMul)?;
    nodes.push(qk_id);
    let (q, q_scale) = unscaled(m, qk_node.input(0)?, &mut nodes);
    let (kt, k_scale) = unscaled(m, qk_node.input(1)?, &mut nodes);
    let (key, k_dims) = untransposed(m, kt, &mut nodes)?;
    let scale = q_scale * k_scale * post_scale;
    let (q_dims, v_dims) = (m.dims(q)?, m.dims(v)?);
    let heads_agree = q_dims.len() == 4
        && v_dims.len() == 4
        && q_dims[..2] == k_dims[..2]
        && v_dims[..2] == k_dims[..2]
        && v_dims[2] == k_dims[2];
    if !(heads_agree && scale > 0.0 && scale.is_finite()) {
        return None;
    }

    let mut p = Patch::new("scaled_dot_product_attention");
    let k: PatchValue = match key {
        KeySource::Value(k) => p.tap(k),
        KeySource::Transposed { input, perm } => {
            let fact = Fact {
                shape: Shape::Ranked(k_dims.clone()),
                ..m.g.fact(input).clone()
            };
            let name = format!("{}.key", root.name);
            p.add_node(
                name.clone(),
                Op::Transpose(TransposeAttrs { perm: Some(perm) }),
                vec![Some(p.tap(input))],
                vec![(name, fact)],
            )[0]
        }
    };
    let attrs = AttentionAttrs {
        is_causal: false,
        scale: Some(scale as f32),
        q_num_heads: None,
        kv_num_heads: None,
    };
    let y = root.outputs[0];
    let out = p.add_node(
        root.name.clone(),
        Op::Attention(attrs),
        vec![
            Some(p.tap(q)),
            Some(k),
            Some(p.tap(v)),
            mask.map(|v| p.tap(v)),
        ],
        vec![(m.g.value(y).name.clone(), m.g.fact(y).clone())],
    );
    p.redirect(y, out[0]);
    for n in nodes {
        p.remove_node(n);
    }
    Some(p)
}

/// For `Where(IsNaN(s), 0, s)`: `s`, when only the guard reads it.
fn nan_guarded(m: &Matcher, probs: ValueId, nodes: &mut Vec<NodeId>) -> Option<ValueId> {
    let (where_id, guard) = m
        .producer(probs, OpKind::Where)
        .filter(|_| m.single_use(probs))?;
    let (cond, zero, s) = (guard.input(0)?, guard.input(1)?, guard.input(2)?);
    let (isnan_id, isnan) = m
        .producer(cond, OpKind::IsNaN)
        .filter(|_| m.single_use(cond))?;
    let guarded = isnan.input(0)? == s && m.scalar_is(zero, 0.0);
    (guarded && m.used_only_by(s, &[where_id, isnan_id])).then(|| {
        nodes.extend([where_id, isnan_id]);
        s
    })
}

/// `scores + mask` split into scores and mask (`None` without an Add).
fn split_mask(
    m: &Matcher,
    logits: ValueId,
    nodes: &mut Vec<NodeId>,
) -> Option<(ValueId, Option<ValueId>)> {
    let Some((add_id, add)) = m.producer(logits, OpKind::Add) else {
        return Some((logits, None));
    };
    let operands = [
        (add.input(0)?, add.input(1)?),
        (add.input(1)?, add.input(0)?),
    ];
    let (scores, mask) = operands.into_iter().find(|&(s, _)| {
        let product_or_qk = m.g.producer(s).map(|p| m.node(p).op.kind());
        matches!(
            product_or_qk,
            Some(OpKind::MatMul | OpKind::Mul | OpKind::Div)
        )
    })?;
    let (mask_dims, logit_dims) = (m.dims(mask)?, m.dims(logits)?);
    let fits = m.is_float(mask)
        && mask_dims.len() <= 4
        && mask_dims.last() == logit_dims.last()
        && m.g.fact(scores) == m.g.fact(logits);
    fits.then(|| {
        nodes.push(add_id);
        (scores, Some(mask))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    const SOFTMAX: &str = "{\"axis\":-1,\"coerce_2d\":false}";

    #[test]
    fn transposed_key_with_scale_and_mask() {
        let text = format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input k: f32[1,2,3,4]
  input v: f32[1,2,3,5]
  input mask: f32[1,1,3,3]
  weight s: f32[] = [0.5]
  node kt: kT: f32[1,2,4,3] = Transpose {{\"perm\":[0,1,3,2]}} (k)
  node qk: scores: f32[1,2,3,3] = MatMul (q, kT)
  node sc: scaled: f32[1,2,3,3] = Mul (scores, s)
  node am: masked: f32[1,2,3,3] = Add (mask, scaled)
  node sm: p: f32[1,2,3,3] = Softmax {SOFTMAX} (masked)
  node pv: y: f32[1,2,3,5] = MatMul (p, v)
  output y
}}
"
        );
        let (before, after, rules) = run_pass(&text, RecognizeAttention);
        assert_eq!(rules, ["scaled_dot_product_attention"]);
        assert_eq!(kinds(&after), ["Attention"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn heads_split_key_and_exporter_reshape_chain_with_nan_guard() {
        let text = format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input kh: f32[1,3,2,4]
  input k: f32[1,2,3,4]
  input v: f32[1,2,3,4]
  weight c: f32[] = [0.70710677]
  weight d: f32[] = [2]
  weight zero: f32[] = [0]
  weight flat: i64[3] = [-1,3,4]
  weight back: i64[4] = [1,2,4,3]
  node kt: kT: f32[1,2,4,3] = Transpose {{\"perm\":[0,2,3,1]}} (kh)
  node qk: scores: f32[1,2,3,3] = MatMul (q, kT)
  node sc: scaled: f32[1,2,3,3] = Div (scores, d)
  node sm: p: f32[1,2,3,3] = Softmax {SOFTMAX} (scaled)
  node pv: y: f32[1,2,3,4] = MatMul (p, v)
  node r1: k3: f32[2,3,4] = Reshape {{\"allowzero\":false}} (k, flat)
  node t1: k3t: f32[2,4,3] = Transpose {{\"perm\":[0,2,1]}} (k3)
  node r2: kT2: f32[1,2,4,3] = Reshape {{\"allowzero\":false}} (k3t, back)
  node qs: qsc: f32[1,2,3,4] = Mul (y, c)
  node ks: ksc: f32[1,2,4,3] = Mul (kT2, c)
  node qk2: scores2: f32[1,2,3,3] = MatMul (qsc, ksc)
  node sm2: p2: f32[1,2,3,3] = Softmax {SOFTMAX} (scores2)
  node nan: isnan: bool[1,2,3,3] = IsNaN (p2)
  node guard: pg: f32[1,2,3,3] = Where (isnan, zero, p2)
  node pv2: z: f32[1,2,3,4] = MatMul (pg, v)
  output z
}}
"
        );
        let (before, after, rules) = run_pass(&text, RecognizeAttention);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(kinds(&after), ["Transpose", "Attention", "Attention"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn untransposed_keys_shared_scores_and_negative_scales_do_not_match() {
        let text = format!(
            "graph g {{
  input q: f32[1,2,3,4]
  input kt: f32[1,2,4,3]
  input k: f32[1,2,3,4]
  input v: f32[1,2,3,4]
  weight neg: f32[] = [-0.5]
  node qk: scores: f32[1,2,3,3] = MatMul (q, kt)
  node sm: p: f32[1,2,3,3] = Softmax {SOFTMAX} (scores)
  node pv: y: f32[1,2,3,4] = MatMul (p, v)
  node t: kT: f32[1,2,4,3] = Transpose {{\"perm\":[0,1,3,2]}} (k)
  node qk2: scores2: f32[1,2,3,3] = MatMul (q, kT)
  node sc: scaled: f32[1,2,3,3] = Mul (scores2, neg)
  node sm2: p2: f32[1,2,3,3] = Softmax {SOFTMAX} (scaled)
  node pv2: z: f32[1,2,3,4] = MatMul (p2, v)
  output y, z
}}
"
        );
        let (_, after, rules) = run_pass(&text, RecognizeAttention);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(after.node_count(), 8);
    }
}
