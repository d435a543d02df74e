//! Removal of nodes that pass their input through unchanged.

use crate::ir::error::Result;
use crate::ir::patch::Patch;
use crate::ir::tensor::Tensor;
use crate::ir::{Graph, Node, Op, ValueDef, ValueId};

use super::manager::{Changed, Pass, PassCx};

/// Constants up to this many elements are read to recognise `x + 0`, `x * 1`.
const MAX_INSPECTED_CONSTANT: usize = 1024;

/// Removes nodes whose output equals one of their inputs: Identity, Cast to the
/// input's dtype, Transpose by the identity permutation, Reshape/Expand/Tile to
/// the input's own shape, single-input Concat/Sum/Min/Max, and adding or
/// subtracting zero, multiplying or dividing by one, when broadcasting does not
/// change the shape. Each rule only applies when the input's fact equals the
/// output's, so shapes and dtypes downstream stay as they were.
pub struct NoOpRemoval;

impl Pass for NoOpRemoval {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let mut changed = false;
        for id in g.topo_order()? {
            let Some((rule, passed)) = pass_through(g, g.node(id)) else {
                continue;
            };
            let output = g.node(id).outputs[0];
            if g.fact(passed) != g.fact(output) || !renaming_is_safe(g, output, passed) {
                continue;
            }
            let mut p = Patch::new(rule);
            p.redirect(output, p.tap(passed));
            p.remove_node(id);
            cx.record(p.apply(g)?);
            changed = true;
        }
        Ok(Changed::from_bool(changed))
    }
}

/// A graph output can take over another value's role only when that value is
/// not itself part of the model's signature.
fn renaming_is_safe(g: &Graph, output: ValueId, passed: ValueId) -> bool {
    !g.outputs.contains(&output)
        || !(matches!(g.value(passed).def, ValueDef::Input(_)) || g.outputs.contains(&passed))
}

/// The rule name and the input a node passes through unchanged, if any.
fn pass_through(g: &Graph, node: &Node) -> Option<(&'static str, ValueId)> {
    let first = node.input(0)?;
    let out_fact = g.fact(node.outputs[0]);
    let same_shape = |v: ValueId| {
        let fact = g.fact(v);
        fact.shape.is_static() && fact.shape == out_fact.shape && fact.dtype == out_fact.dtype
    };
    match &node.op {
        Op::Identity => Some(("identity", first)),
        Op::Cast(c) if g.fact(first).dtype == Some(c.to) => Some(("cast_to_same_dtype", first)),
        Op::Transpose(t) => {
            let perm = t.perm.as_ref()?;
            perm.iter()
                .enumerate()
                .all(|(i, &p)| i == p)
                .then_some(("transpose_identity", first))
        }
        Op::Reshape(_) | Op::Expand | Op::Tile if same_shape(first) => {
            Some(("reshape_to_same_shape", first))
        }
        Op::Concat(_) | Op::Sum | Op::Min | Op::Max | Op::Mean if node.inputs.len() == 1 => {
            Some(("single_input", first))
        }
        Op::Add | Op::Sub => neutral_operand(g, node, 0.0, node.op == Op::Add),
        Op::Mul | Op::Div => neutral_operand(g, node, 1.0, node.op == Op::Mul),
        _ => None,
    }
    .filter(|_| node.outputs.len() == 1)
}

/// For `x op c` (or `c op x` when `commutative`) with a small constant `c` whose
/// every element is `neutral`, the rule and `x`.
fn neutral_operand(
    g: &Graph,
    node: &Node,
    neutral: f64,
    commutative: bool,
) -> Option<(&'static str, ValueId)> {
    let (a, b) = (node.input(0)?, node.input(1)?);
    let is_neutral = |v: ValueId| {
        let w = g.weight_of(v)?;
        if w.element_count() > MAX_INSPECTED_CONSTANT as u64 {
            return None;
        }
        let t = Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()?;
        t.to_f64_vec().iter().all(|&x| x == neutral).then_some(())
    };
    let rule = if neutral == 0.0 {
        "add_zero"
    } else {
        "mul_one"
    };
    if is_neutral(b).is_some() {
        return Some((rule, a));
    }
    if commutative && is_neutral(a).is_some() {
        return Some((rule, b));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::{PrintOptions, parse, print};
    use crate::ir::verify::verify;
    use crate::passes::manager::{Repeat, RunOptions, Stage, run_stages};

    /// Runs the pass to a fixpoint; returns the printed graph and the rules applied.
    fn run(text: &str) -> (String, Vec<String>) {
        let mut g = parse(text).unwrap();
        let stage = Stage {
            name: "noop",
            passes: vec![Box::new(NoOpRemoval)],
            repeat: Repeat::Fixpoint { cap: 4 },
        };
        let report = run_stages(&mut g, &[stage], &RunOptions::default()).unwrap();
        verify(&g).unwrap();
        let rules = report.rewrites.iter().map(|r| r.rule.clone()).collect();
        (print(&g, &PrintOptions::default()), rules)
    }

    #[test]
    fn removes_pass_through_nodes() {
        let (text, rules) = run("graph g {
  input x: f32[2,3]
  weight zero: f32[3] = [0,0,0]
  weight one: f32[1] = [1]
  weight shape: i64[2] = [2,3]
  node i: a: f32[2,3] = Identity (x)
  node c: b: f32[2,3] = Cast {\"to\":\"f32\",\"saturate\":true} (a)
  node t: d: f32[2,3] = Transpose {\"perm\":[0,1]} (b)
  node r: e: f32[2,3] = Reshape {\"allowzero\":false} (d, shape)
  node z: f: f32[2,3] = Add (zero, e)
  node o: h: f32[2,3] = Mul (f, one)
  node k: y: f32[2,3] = Relu (h)
  output y
}
");
        assert_eq!(
            rules,
            [
                "identity",
                "cast_to_same_dtype",
                "transpose_identity",
                "reshape_to_same_shape",
                "add_zero",
                "mul_one"
            ]
        );
        assert!(text.contains("node k: y: f32[2,3] = Relu (x)"), "{text}");
    }

    #[test]
    fn keeps_nodes_that_change_shape_dtype_or_the_signature() {
        let (text, rules) = run("graph g {
  input x: f32[2,3]
  weight zeros: f32[2,2,3] = [0,0,0,0,0,0,0,0,0,0,0,0]
  weight one: i64[1] = [1]
  node b: a: f32[2,2,3] = Add (x, zeros)
  node c: d: i64[2,3] = Cast {\"to\":\"i64\",\"saturate\":true} (x)
  node m: e: i64[2,3] = Mul (d, one)
  node i: y: f32[2,3] = Identity (x)
  output a, e, y
}
");
        assert_eq!(rules, ["mul_one"], "{text}");
        assert!(
            text.contains("node i: y: f32[2,3] = Identity (x)"),
            "{text}"
        );
    }
}
