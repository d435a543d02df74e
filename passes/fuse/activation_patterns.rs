//! Activations written as elementwise ops recognised as single ops: GELU
//! (erf and tanh forms), SiLU/Swish and HardSwish.

use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_PI};

use crate::ir::error::Result;
use crate::ir::ops::{AlphaAttrs, GeluApproximation, GeluAttrs, Op};
use crate::ir::patch::Patch;
use crate::ir::{Graph, NodeId, OpKind, ValueId};

use super::matching::{Matcher, Product, Rule, close, product, rewrite_until_stable};
use crate::passes::manager::{Changed, Pass, PassCx};

/// The cubic coefficient of the tanh approximation of GELU.
const GELU_TANH_CUBIC: f64 = 0.044715;

/// Recognises activations spelled out with elementwise ops. Products are read
/// through any tree of Mul nodes and divisions by constants, so every
/// ordering of the factors matches:
///
/// - `gelu_erf`: `0.5 · x · (1 + erf(x / √2))` → `Gelu{none}`
/// - `gelu_tanh`: `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))` → `Gelu{tanh}`
///   (`x³` as `Pow(x, 3)` or a product of three `x`)
/// - `swish`: `x · sigmoid(alpha · x)` → `Swish{alpha}` (SiLU when `alpha = 1`)
/// - `hard_swish`: `x · HardSigmoid(x)` with alpha 1/6 and beta 0.5, or
///   `x · Clip(x + 3, 0, 6) / 6` → `HardSwish`
///
/// Constants must equal the formula's within f32 rounding, and every
/// intermediate must be read only inside the pattern.
pub struct RecognizeActivations;

impl Pass for RecognizeActivations {
    fn name(&self) -> &'static str {
        "recognize_activation"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        const RULES: &[Rule] = &[gelu_erf, gelu_tanh, swish, hard_swish];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// A matched activation: its input, the nodes to remove (root first), the op.
struct Matched {
    x: ValueId,
    nodes: Vec<NodeId>,
    op: Op,
}

fn replace(m: &Matcher, rule: &str, matched: Option<Matched>) -> Result<Option<Patch>> {
    let Some(Matched { x, nodes, op }) = matched else {
        return Ok(None);
    };
    if !m.is_float(x) {
        return Ok(None);
    }
    let root = m.node(nodes[0]);
    let y = root.outputs[0];
    if m.g.fact(y) != m.g.fact(x) {
        return Ok(None);
    }
    let mut p = Patch::new(rule);
    let out = p.add_node(
        root.name.clone(),
        op,
        vec![Some(p.tap(x))],
        vec![(m.g.value(y).name.clone(), m.g.fact(y).clone())],
    );
    p.redirect(y, out[0]);
    for n in nodes {
        p.remove_node(n);
    }
    Ok(Some(p))
}

/// The product computed by the node producing `v`, which only the pattern reads.
fn product_of(m: &Matcher, v: ValueId) -> Option<Product> {
    let id = m.g.producer(v).filter(|_| m.single_use(v))?;
    product(m, id)
}

/// `x` when `v` is `c · x` for the constant `c` (`x` alone when `c` is 1).
fn scaled(m: &Matcher, v: ValueId, c: f64, nodes: &mut Vec<NodeId>) -> Option<ValueId> {
    match product_of(m, v) {
        Some(p) if p.factors.len() == 1 && close(p.constant, c) => {
            nodes.extend(p.nodes);
            Some(p.factors[0])
        }
        _ if c == 1.0 => Some(v),
        _ => None,
    }
}

/// For `1 + f(u)` with a one-input op `f` of `kind`: `u`.
fn one_plus(m: &Matcher, v: ValueId, kind: OpKind, nodes: &mut Vec<NodeId>) -> Option<ValueId> {
    let (add_id, add) = m.producer(v, OpKind::Add).filter(|_| m.single_use(v))?;
    let (inner, one) = m.with_scalar(add)?;
    let (f_id, f) = m.producer(inner, kind).filter(|_| m.single_use(inner))?;
    if !close(one, 1.0) {
        return None;
    }
    nodes.extend([add_id, f_id]);
    f.input(0)
}

/// `0.5 · x · e` at `root`: `x`, `e`, and the product's nodes.
fn half_x_times(m: &Matcher, root: NodeId) -> Option<(ValueId, ValueId, Vec<NodeId>)> {
    let p = product(m, root)?;
    if p.factors.len() != 2 || !close(p.constant, 0.5) {
        return None;
    }
    let (a, b) = (p.factors[0], p.factors[1]);
    Some((a, b, p.nodes))
}

fn gelu_erf(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let matched = (|| {
        let (a, b, mut nodes) = half_x_times(m, id)?;
        [(a, b), (b, a)].into_iter().find_map(|(x, e)| {
            let mut inner = Vec::new();
            let u = one_plus(m, e, OpKind::Erf, &mut inner)?;
            (scaled(m, u, FRAC_1_SQRT_2, &mut inner)? == x).then(|| {
                nodes.extend(inner);
                Matched {
                    x,
                    nodes: nodes.clone(),
                    op: Op::Gelu(GeluAttrs {
                        approximate: GeluApproximation::None,
                    }),
                }
            })
        })
    })();
    replace(m, "gelu_erf", matched)
}

/// `x + 0.044715 · x³`: the nodes, when `v` is that polynomial of `x`.
fn gelu_polynomial(m: &Matcher, v: ValueId, x: ValueId, nodes: &mut Vec<NodeId>) -> Option<()> {
    let (add_id, add) = m.producer(v, OpKind::Add).filter(|_| m.single_use(v))?;
    let cubic_term = m.other_operand(add, x)?;
    let cubic = product_of(m, cubic_term)?;
    if !close(cubic.constant, GELU_TANH_CUBIC) {
        return None;
    }
    let is_cube = match cubic.factors[..] {
        [a, b, c] => a == x && b == x && c == x,
        [cube] => {
            let (pow_id, pow) = m
                .producer(cube, OpKind::Pow)
                .filter(|_| m.single_use(cube))?;
            let cubed = pow.input(0)? == x && m.scalar_is(pow.input(1)?, 3.0);
            cubed && {
                nodes.push(pow_id);
                true
            }
        }
        _ => false,
    };
    is_cube.then(|| nodes.extend(std::iter::once(add_id).chain(cubic.nodes)))
}

fn gelu_tanh(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let matched = (|| {
        let (a, b, nodes) = half_x_times(m, id)?;
        [(a, b), (b, a)].into_iter().find_map(|(x, e)| {
            let mut inner = nodes.clone();
            let w = one_plus(m, e, OpKind::Tanh, &mut inner)?;
            let s = scaled(m, w, FRAC_2_PI.sqrt(), &mut inner)?;
            gelu_polynomial(m, s, x, &mut inner)?;
            Some(Matched {
                x,
                nodes: inner,
                op: Op::Gelu(GeluAttrs {
                    approximate: GeluApproximation::Tanh,
                }),
            })
        })
    })();
    replace(m, "gelu_tanh", matched)
}

fn swish(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let node = m.node(id);
    if node.op != Op::Mul {
        return Ok(None);
    }
    let matched = node.inputs.iter().flatten().find_map(|&s| {
        let (sig_id, sig) = m.producer(s, OpKind::Sigmoid).filter(|_| m.single_use(s))?;
        let x = m.other_operand(node, s)?;
        let mut nodes = vec![id, sig_id];
        let inner = sig.input(0)?;
        let alpha = match product_of(m, inner) {
            Some(p) if p.factors == [x] => {
                nodes.extend(p.nodes);
                p.constant
            }
            _ if inner == x => 1.0,
            _ => return None,
        };
        Some(Matched {
            x,
            nodes,
            op: Op::Swish(AlphaAttrs {
                alpha: alpha as f32,
            }),
        })
    });
    replace(m, "swish", matched)
}

/// `x · HardSigmoid(x)` with the HardSwish constants.
fn x_times_hard_sigmoid(m: &Matcher, id: NodeId) -> Option<Matched> {
    let node = m.node(id);
    if node.op != Op::Mul {
        return None;
    }
    node.inputs.iter().flatten().find_map(|&h| {
        let (hs_id, hs) = m
            .producer(h, OpKind::HardSigmoid)
            .filter(|_| m.single_use(h))?;
        let Op::HardSigmoid(a) = &hs.op else {
            return None;
        };
        let x = hs.input(0)?;
        let constants = close(a.alpha.into(), 1.0 / 6.0) && close(a.beta.into(), 0.5);
        (constants && m.other_operand(node, h)? == x).then(|| Matched {
            x,
            nodes: vec![id, hs_id],
            op: Op::HardSwish,
        })
    })
}

/// `x · Clip(x + 3, 0, 6) / 6`.
fn x_times_relu6_shifted(m: &Matcher, id: NodeId) -> Option<Matched> {
    let p = product(m, id)?;
    if p.factors.len() != 2 || !close(p.constant, 1.0 / 6.0) {
        return None;
    }
    let (a, b) = (p.factors[0], p.factors[1]);
    [(a, b), (b, a)].into_iter().find_map(|(x, c)| {
        let (clip_id, clip) = m.producer(c, OpKind::Clip).filter(|_| m.single_use(c))?;
        let bounds = m.scalar_is(clip.input(1)?, 0.0) && m.scalar_is(clip.input(2)?, 6.0);
        let shifted = clip.input(0)?;
        let (add_id, add) = m
            .producer(shifted, OpKind::Add)
            .filter(|_| m.single_use(shifted))?;
        let (added_to, three) = m.with_scalar(add)?;
        (bounds && added_to == x && close(three, 3.0)).then(|| Matched {
            x,
            nodes: p.nodes.iter().copied().chain([clip_id, add_id]).collect(),
            op: Op::HardSwish,
        })
    })
}

fn hard_swish(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let matched = x_times_hard_sigmoid(m, id).or_else(|| x_times_relu6_shifted(m, id));
    replace(m, "hard_swish", matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    fn recognised(body: &str) -> (Vec<String>, Vec<&'static str>) {
        let text = format!(
            "graph g {{
  input x: f32[2,5]
  weight half: f32[] = [0.5]
  weight one: f32[] = [1]
  weight sqrt2: f32[] = [1.4142135]
  weight inv_sqrt2: f32[] = [0.70710677]
  weight k: f32[] = [0.7978846]
  weight c: f32[] = [0.044715]
  weight three: f32[] = [3]
  weight zero: f32[] = [0]
  weight six: f32[] = [6]
{body}}}
"
        );
        let (before, after, rules) = run_pass(&text, RecognizeActivations);
        assert_same_outputs(&before, &after);
        (rules, kinds(&after))
    }

    #[test]
    fn gelu_erf_in_its_common_orderings() {
        let (rules, kinds) = recognised(
            "  node d: u: f32[2,5] = Div (x, sqrt2)
  node e: v: f32[2,5] = Erf (u)
  node a: w: f32[2,5] = Add (v, one)
  node h: hw: f32[2,5] = Mul (half, w)
  node m: y: f32[2,5] = Mul (x, hw)
  node d2: u2: f32[2,5] = Mul (y, inv_sqrt2)
  node e2: v2: f32[2,5] = Erf (u2)
  node a2: w2: f32[2,5] = Add (one, v2)
  node m2: xw: f32[2,5] = Mul (y, w2)
  node h2: z: f32[2,5] = Mul (xw, half)
  output z
",
        );
        assert_eq!(rules, ["gelu_erf", "gelu_erf"]);
        assert_eq!(kinds, ["Gelu", "Gelu"]);
    }

    #[test]
    fn gelu_tanh_with_pow_or_products() {
        let (rules, kinds) = recognised(
            "  weight p3: f32[] = [3]
  node cube: x3: f32[2,5] = Pow (x, p3)
  node cm: cx3: f32[2,5] = Mul (c, x3)
  node s: s1: f32[2,5] = Add (x, cx3)
  node ks: w1: f32[2,5] = Mul (s1, k)
  node t: t1: f32[2,5] = Tanh (w1)
  node a: e1: f32[2,5] = Add (t1, one)
  node hx: hx1: f32[2,5] = Mul (x, half)
  node y: y1: f32[2,5] = Mul (hx1, e1)
  node sq: q2: f32[2,5] = Mul (y1, y1)
  node q3: q3v: f32[2,5] = Mul (q2, y1)
  node cm2: cq: f32[2,5] = Mul (q3v, c)
  node s2: s2v: f32[2,5] = Add (cq, y1)
  node ks2: w2: f32[2,5] = Mul (k, s2v)
  node t2: t2v: f32[2,5] = Tanh (w2)
  node a2: e2: f32[2,5] = Add (one, t2v)
  node m2: ye: f32[2,5] = Mul (y1, e2)
  node h2: z: f32[2,5] = Mul (half, ye)
  output z
",
        );
        assert_eq!(rules, ["gelu_tanh", "gelu_tanh"]);
        assert_eq!(kinds, ["Gelu", "Gelu"]);
    }

    #[test]
    fn swish_and_hard_swish_forms() {
        let (rules, kinds) = recognised(
            "  weight alpha: f32[] = [1.702]
  node sg: s: f32[2,5] = Sigmoid (x)
  node m: y: f32[2,5] = Mul (s, x)
  node ay: ax: f32[2,5] = Mul (y, alpha)
  node sg2: s2: f32[2,5] = Sigmoid (ax)
  node m2: y2: f32[2,5] = Mul (y, s2)
  node hs: h: f32[2,5] = HardSigmoid {\"alpha\":0.16666667,\"beta\":0.5} (y2)
  node m3: y3: f32[2,5] = Mul (y2, h)
  node a3: sh: f32[2,5] = Add (three, y3)
  node c3: cl: f32[2,5] = Clip (sh, zero, six)
  node m4: y4: f32[2,5] = Mul (y3, cl)
  node d4: z: f32[2,5] = Div (y4, six)
  output z
",
        );
        assert_eq!(rules, ["swish", "swish", "hard_swish", "hard_swish"]);
        assert_eq!(kinds, ["Swish", "Swish", "HardSwish", "HardSwish"]);
    }

    #[test]
    fn wrong_constants_and_shared_intermediates_do_not_match() {
        let (rules, kinds) = recognised(
            "  weight not_half: f32[] = [0.6]
  node d: u: f32[2,5] = Div (x, sqrt2)
  node e: v: f32[2,5] = Erf (u)
  node a: w: f32[2,5] = Add (v, one)
  node h: hw: f32[2,5] = Mul (not_half, w)
  node m: y: f32[2,5] = Mul (x, hw)
  node sg: s: f32[2,5] = Sigmoid (x)
  node m2: y2: f32[2,5] = Mul (s, x)
  node hs: h2: f32[2,5] = HardSigmoid {\"alpha\":0.2,\"beta\":0.5} (x)
  node m3: y3: f32[2,5] = Mul (x, h2)
  output y, y2, s, y3
",
        );
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(kinds.len(), 9);
    }
}
