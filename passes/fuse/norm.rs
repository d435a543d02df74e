//! Decomposed LayerNormalization and RMSNormalization recognised as single ops.

use crate::ir::error::Result;
use crate::ir::ops::{LayerNormAttrs, Op};
use crate::ir::patch::{Patch, PatchValue};
use crate::ir::{Graph, Node, NodeId, OpKind, ValueId};

use super::matching::{Matcher, Rule, constant_axes, fresh_name, rewrite_until_stable, weight};
use crate::passes::manager::{Changed, Pass, PassCx};

/// Recognises normalizations written as elementwise ops over trailing axes:
///
/// - `layer_norm`: `d = x - ReduceMean(x)`, then `d / Sqrt(ReduceMean(d²) + eps)`
///   (`d²` as `Pow(d, 2)` or `d * d`; the division also as `d * Reciprocal(..)`),
///   then optionally `* gamma` and `+ beta` → `LayerNormalization`.
/// - `rms_norm`: `x / Sqrt(ReduceMean(x²) + eps)` in the same forms, optionally
///   `* gamma` → `RmsNormalization`.
///
/// Both reductions must keep dims and cover the same trailing axes, `eps` and
/// the affine parameters must be constants, gamma and beta must not broadcast
/// the output beyond `x`'s shape, and every intermediate must be read only
/// inside the pattern. A missing gamma becomes a ones weight.
pub struct RecognizeNormalization;

impl Pass for RecognizeNormalization {
    fn name(&self) -> &'static str {
        "recognize_norm"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        // LayerNorm first: its tail is an RMSNorm of `x - mean`.
        const RULES: &[Rule] = &[layer_norm, rms_norm];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// `t / sqrt(mean(t²) + eps)` over trailing axes, read from its final node.
struct RootMeanSquare {
    /// The normalized value `t`.
    input: ValueId,
    epsilon: f64,
    /// First normalized axis.
    axis: usize,
    /// Every node from the square to the division.
    nodes: Vec<NodeId>,
    /// The node squaring `t`.
    square: NodeId,
}

/// The divisor `s` of `a / s` or `a * Reciprocal(s)`, with the numerator.
fn divided_by(m: &Matcher, id: NodeId, nodes: &mut Vec<NodeId>) -> Option<(ValueId, ValueId)> {
    let node = m.node(id);
    match node.op {
        Op::Div => Some((node.input(0)?, node.input(1)?)),
        Op::Mul => node.inputs.iter().flatten().find_map(|&r| {
            let (recip_id, recip) = m.producer(r, OpKind::Reciprocal)?;
            let numerator = m.other_operand(node, r)?;
            if !m.single_use(r) {
                return None;
            }
            nodes.push(recip_id);
            Some((numerator, recip.input(0)?))
        }),
        _ => None,
    }
}

/// The value `t` a node squares (`Pow(t, 2)` or `t * t`).
fn squared(m: &Matcher, node: &Node) -> Option<ValueId> {
    match node.op {
        Op::Pow => {
            let (t, e) = (node.input(0)?, node.input(1)?);
            m.scalar_is(e, 2.0).then_some(t)
        }
        Op::Mul => (node.input(0)? == node.input(1)?)
            .then(|| node.input(0))
            .flatten(),
        _ => None,
    }
}

/// A `ReduceMean` over the trailing axes from some axis on, keeping dims:
/// its input and that first axis.
fn trailing_mean(m: &Matcher, v: ValueId) -> Option<(NodeId, ValueId, usize)> {
    let (id, node) = m.producer(v, OpKind::ReduceMean)?;
    let Op::ReduceMean(a) = &node.op else {
        return None;
    };
    let input = node.input(0)?;
    let rank = m.dims(input)?.len();
    let axes = constant_axes(m, node.input(1)?, rank)?;
    let first = *axes.first()?;
    let trailing = axes.iter().copied().eq(first..rank);
    (a.keepdims && trailing).then_some((id, input, first))
}

fn root_mean_square(m: &Matcher, id: NodeId) -> Option<RootMeanSquare> {
    let mut nodes = vec![id];
    let (numerator, divisor) = divided_by(m, id, &mut nodes)?;
    let (sqrt_id, sqrt) = m.producer(divisor, OpKind::Sqrt)?;
    let (add_id, add) = m.producer(sqrt.input(0)?, OpKind::Add)?;
    let (mean_square, epsilon) = m.with_scalar(add)?;
    let (mean_id, square_value, axis) = trailing_mean(m, mean_square)?;
    let square = m.g.producer(square_value)?;
    if squared(m, m.node(square))? != numerator {
        return None;
    }
    let chain = [divisor, sqrt.input(0)?, mean_square, square_value];
    if !chain.iter().all(|&v| m.single_use(v)) {
        return None;
    }
    nodes.extend([sqrt_id, add_id, mean_id, square]);
    Some(RootMeanSquare {
        input: numerator,
        epsilon,
        axis,
        nodes,
        square,
    })
}

/// A constant that scales or shifts only within the normalized axes: its
/// values reshaped without leading ones, when the op reading it keeps `y`'s fact.
fn affine_operand(
    m: &Matcher,
    op: &Node,
    y: ValueId,
    normalized_rank: usize,
) -> Option<(ValueId, Vec<usize>)> {
    let c = m.other_operand(op, y)?;
    let shape = m.g.fact(c).shape.as_fixed()?;
    let trimmed: Vec<usize> = shape.iter().copied().skip_while(|&d| d == 1).collect();
    let keeps_fact = m.g.fact(op.outputs[0]) == m.g.fact(y);
    (m.constant(c).is_some() && trimmed.len() <= normalized_rank && keeps_fact)
        .then_some((c, trimmed))
}

/// The consumer `Mul` by gamma (then, if `with_beta`, `Add` of beta) after `y`.
struct Affine {
    gamma: Option<(ValueId, Vec<usize>)>,
    beta: Option<(ValueId, Vec<usize>)>,
    nodes: Vec<NodeId>,
    output: ValueId,
}

fn affine_tail(m: &Matcher, y: ValueId, normalized_rank: usize, with_beta: bool) -> Affine {
    let mut tail = Affine {
        gamma: None,
        beta: None,
        nodes: Vec::new(),
        output: y,
    };
    let step = |kind: OpKind, tail: &mut Affine| {
        let (id, node) = m.sole_consumer(tail.output, kind)?;
        let operand = affine_operand(m, node, tail.output, normalized_rank)?;
        tail.nodes.push(id);
        tail.output = node.outputs[0];
        Some(operand)
    };
    tail.gamma = step(OpKind::Mul, &mut tail);
    if with_beta {
        tail.beta = step(OpKind::Add, &mut tail);
    }
    tail
}

/// A weight input holding `v`'s values with the leading ones dropped (or `v`).
fn trimmed_param(
    m: &Matcher,
    p: &mut Patch,
    (v, trimmed): (ValueId, Vec<usize>),
    purpose: &str,
) -> Result<PatchValue> {
    let shape = m.g.fact(v).shape.as_fixed().unwrap_or_default();
    if shape == trimmed {
        return Ok(p.tap(v));
    }
    let t = m.constant(v).expect("affine_operand checked");
    let name = fresh_name(m.g, &format!("{}.{purpose}", m.g.value(v).name));
    Ok(p.add_weight(weight(name, t.dtype(), &trimmed, t.to_f64_vec())?))
}

/// A weight of ones over the normalized dims of `x` (a missing gamma).
fn ones(
    m: &Matcher,
    p: &mut Patch,
    x: ValueId,
    axis: usize,
    name: &str,
) -> Result<Option<PatchValue>> {
    let fact = m.g.fact(x);
    let (Some(dims), Some(dtype)) = (fact.shape.as_fixed(), fact.dtype) else {
        return Ok(None);
    };
    let shape = &dims[axis..];
    let count = shape.iter().product();
    let name = fresh_name(m.g, &format!("{name}.ones"));
    Ok(Some(p.add_weight(weight(
        name,
        dtype,
        shape,
        vec![1.0; count],
    )?)))
}

fn layer_norm(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let Some(rms) = root_mean_square(m, id) else {
        return Ok(None);
    };
    let Some((sub_id, sub)) = m.producer(rms.input, OpKind::Sub) else {
        return Ok(None);
    };
    let (Some(x), Some(mean)) = (sub.input(0), sub.input(1)) else {
        return Ok(None);
    };
    let Some((mean_id, mean_input, axis)) = trailing_mean(m, mean) else {
        return Ok(None);
    };
    let d_readers = [rms.square, id];
    if mean_input != x
        || axis != rms.axis
        || !m.single_use(mean)
        || !m.used_only_by(rms.input, &d_readers)
    {
        return Ok(None);
    }
    let rank = m.dims(x).map_or(0, <[_]>::len);
    let tail = affine_tail(m, m.node(id).outputs[0], rank - axis, true);
    let mut p = Patch::new("layer_norm");
    let name = m.node(*tail.nodes.last().unwrap_or(&id)).name.clone();
    let gamma = match tail.gamma {
        Some(g) => Some(trimmed_param(m, &mut p, g, "scale")?),
        None => ones(m, &mut p, x, axis, &name)?,
    };
    let Some(gamma) = gamma else {
        return Ok(None);
    };
    let beta = tail
        .beta
        .map(|b| trimmed_param(m, &mut p, b, "bias"))
        .transpose()?;
    let attrs = LayerNormAttrs {
        axis: axis as i64,
        epsilon: rms.epsilon as f32,
    };
    let y = tail.output;
    let out = p.add_node(
        name,
        Op::LayerNormalization(attrs),
        vec![Some(p.tap(x)), Some(gamma), beta],
        vec![(m.g.value(y).name.clone(), m.g.fact(y).clone())],
    );
    p.redirect(y, out[0]);
    for n in rms
        .nodes
        .iter()
        .chain(&tail.nodes)
        .chain([&sub_id, &mean_id])
    {
        p.remove_node(*n);
    }
    Ok(Some(p))
}

fn rms_norm(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let Some(rms) = root_mean_square(m, id) else {
        return Ok(None);
    };
    let x = rms.input;
    let rank = m.dims(x).map_or(0, <[_]>::len);
    let tail = affine_tail(m, m.node(id).outputs[0], rank - rms.axis, false);
    let mut p = Patch::new("rms_norm");
    let name = m.node(*tail.nodes.last().unwrap_or(&id)).name.clone();
    let gamma = match tail.gamma {
        Some(g) => Some(trimmed_param(m, &mut p, g, "scale")?),
        None => ones(m, &mut p, x, rms.axis, &name)?,
    };
    let Some(gamma) = gamma else {
        return Ok(None);
    };
    let attrs = LayerNormAttrs {
        axis: rms.axis as i64,
        epsilon: rms.epsilon as f32,
    };
    let y = tail.output;
    let out = p.add_node(
        name,
        Op::RmsNormalization(attrs),
        vec![Some(p.tap(x)), Some(gamma)],
        vec![(m.g.value(y).name.clone(), m.g.fact(y).clone())],
    );
    p.redirect(y, out[0]);
    for n in rms.nodes.iter().chain(&tail.nodes) {
        p.remove_node(*n);
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    const REDUCE: &str = "{\"keepdims\":true,\"noop_with_empty_axes\":false}";

    #[test]
    fn decomposed_layer_norms_with_and_without_affine_become_one_op() {
        let text = format!(
            "graph g {{
  input x: f32[2,3,4]
  weight axes: i64[1] = [-1]
  weight two: f32[] = [2]
  weight eps: f32[] = [1e-5]
  weight gamma: f32[4] = [1,2,0.5,-1]
  weight beta: f32[1,4] = [0,1,-1,0.5]
  node m1: mean: f32[2,3,1] = ReduceMean {REDUCE} (x, axes)
  node s1: d: f32[2,3,4] = Sub (x, mean)
  node p1: sq: f32[2,3,4] = Pow (d, two)
  node m2: var: f32[2,3,1] = ReduceMean {REDUCE} (sq, axes)
  node a1: ve: f32[2,3,1] = Add (var, eps)
  node r1: sd: f32[2,3,1] = Sqrt (ve)
  node d1: n: f32[2,3,4] = Div (d, sd)
  node g1: ng: f32[2,3,4] = Mul (gamma, n)
  node b1: y: f32[2,3,4] = Add (ng, beta)
  node m3: mean2: f32[2,3,1] = ReduceMean {REDUCE} (y, axes)
  node s2: d2: f32[2,3,4] = Sub (y, mean2)
  node p2: sq2: f32[2,3,4] = Mul (d2, d2)
  node m4: var2: f32[2,3,1] = ReduceMean {REDUCE} (sq2, axes)
  node a2: ve2: f32[2,3,1] = Add (eps, var2)
  node r2: sd2: f32[2,3,1] = Sqrt (ve2)
  node i2: inv: f32[2,3,1] = Reciprocal (sd2)
  node d2n: z: f32[2,3,4] = Mul (d2, inv)
  output z
}}
"
        );
        let (before, after, rules) = run_pass(&text, RecognizeNormalization);
        assert_eq!(rules, ["layer_norm", "layer_norm"]);
        assert_eq!(kinds(&after), ["LayerNormalization", "LayerNormalization"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn rms_norm_with_gamma_becomes_one_op() {
        let text = format!(
            "graph g {{
  input x: f32[2,4]
  weight axes: i64[1] = [1]
  weight two: f32[] = [2]
  weight eps: f32[] = [1e-6]
  weight gamma: f32[4] = [1,2,0.5,-1]
  node p: sq: f32[2,4] = Pow (x, two)
  node m: ms: f32[2,1] = ReduceMean {REDUCE} (sq, axes)
  node a: e: f32[2,1] = Add (ms, eps)
  node r: s: f32[2,1] = Sqrt (e)
  node d: n: f32[2,4] = Div (x, s)
  node g: y: f32[2,4] = Mul (n, gamma)
  output y
}}
"
        );
        let (before, after, rules) = run_pass(&text, RecognizeNormalization);
        assert_eq!(rules, ["rms_norm"]);
        assert_eq!(kinds(&after), ["RmsNormalization"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn leading_axis_reductions_and_shared_intermediates_do_not_match() {
        let text = format!(
            "graph g {{
  input x: f32[2,4]
  weight axes: i64[1] = [0]
  weight last: i64[1] = [1]
  weight two: f32[] = [2]
  weight eps: f32[] = [1e-6]
  node p: sq: f32[2,4] = Pow (x, two)
  node m: ms: f32[1,4] = ReduceMean {REDUCE} (sq, axes)
  node a: e: f32[1,4] = Add (ms, eps)
  node r: s: f32[1,4] = Sqrt (e)
  node d: y: f32[2,4] = Div (x, s)
  node p2: sq2: f32[2,4] = Pow (x, two)
  node m2: ms2: f32[2,1] = ReduceMean {REDUCE} (sq2, last)
  node a2: e2: f32[2,1] = Add (ms2, eps)
  node r2: s2: f32[2,1] = Sqrt (e2)
  node d2: z: f32[2,4] = Div (x, s2)
  output y, z, s2
}}
"
        );
        let (_, after, rules) = run_pass(&text, RecognizeNormalization);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(after.node_count(), 10);
    }
}
