//! Collapsing chains of layout ops.

use bytes::Bytes;

use crate::ir::error::Result;
use crate::ir::ops::{ReshapeAttrs, TransposeAttrs};
use crate::ir::patch::Patch;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, NodeId, Op, ValueId, Weight};

use super::manager::{Changed, Pass, PassCx};

/// Rewrites the second of two chained layout ops to read the first one's input:
/// `Transpose(Transpose(x, p), q)` becomes `Transpose(x, p∘q)`, and a reshape-like
/// op (Reshape, Flatten, Squeeze, Unsqueeze) after another becomes one Reshape of
/// the first one's input: to its static output shape, or to the second
/// Reshape's constant target when that has no `0` ("copy this dim"), whose
/// meaning would change. The first op stays while others read it; DCE drops it
/// otherwise, and an identity transpose left behind is removed by `noop`.
pub struct CollapseChains;

impl Pass for CollapseChains {
    fn name(&self) -> &'static str {
        "collapse_chains"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let mut changed = false;
        for id in g.topo_order()? {
            let Some(rewrite) = transpose_chain(g, id).or_else(|| reshape_chain(g, id)) else {
                continue;
            };
            cx.record(rewrite(g)?);
            changed = true;
        }
        Ok(Changed::from_bool(changed))
    }
}

type Rewrite = Box<dyn FnOnce(&mut Graph) -> Result<crate::ir::patch::Rewrite>>;

/// Replaces node `id` by `op` over `inputs` (same name and output) and reports
/// the chain from `inner_id` as matched.
fn replace_node(
    g: &mut Graph,
    mut patch: Patch,
    id: NodeId,
    inner_id: NodeId,
    op: Op,
    inputs: Vec<Option<crate::ir::patch::PatchValue>>,
) -> Result<crate::ir::patch::Rewrite> {
    let name = g.node(id).name.clone();
    patch.replace(g, &[id], name, op, inputs);
    let mut rewrite = patch.apply(g)?;
    rewrite.matched.insert(0, g.node(inner_id).name.clone());
    Ok(rewrite)
}

/// The producer of the node's first input, when it is a node.
fn first_input_producer(g: &Graph, node: &Node) -> Option<(NodeId, ValueId)> {
    let v = node.input(0)?;
    Some((g.producer(v)?, v))
}

fn explicit_perm(g: &Graph, node: &Node, attrs: &TransposeAttrs) -> Option<Vec<usize>> {
    match &attrs.perm {
        Some(p) => Some(p.clone()),
        None => Some((0..g.fact(node.input(0)?).shape.rank()?).rev().collect()),
    }
}

fn transpose_chain(g: &Graph, id: NodeId) -> Option<Rewrite> {
    let node = g.node(id);
    let Op::Transpose(outer) = &node.op else {
        return None;
    };
    let (inner_id, _) = first_input_producer(g, node)?;
    let inner = g.node(inner_id);
    let Op::Transpose(inner_attrs) = &inner.op else {
        return None;
    };
    let (p, q) = (
        explicit_perm(g, inner, inner_attrs)?,
        explicit_perm(g, node, outer)?,
    );
    if p.len() != q.len() || q.iter().any(|&i| i >= p.len()) {
        return None;
    }
    // Output axis i is the inner output's axis q[i], which is the source's axis p[q[i]].
    let composed: Vec<usize> = q.iter().map(|&i| p[i]).collect();
    let source = inner.input(0)?;
    let (out, fact, name) = (
        node.outputs[0],
        g.fact(node.outputs[0]).clone(),
        node.name.clone(),
    );
    Some(Box::new(move |g: &mut Graph| {
        let mut patch = Patch::new("transpose_chain");
        let op = Op::Transpose(TransposeAttrs {
            perm: Some(composed),
        });
        let new = patch.add_node(
            name.clone(),
            op,
            vec![Some(patch.tap(source))],
            vec![(name, fact)],
        );
        patch.redirect(out, new[0]);
        patch.remove_node(id);
        let mut rewrite = patch.apply(g)?;
        rewrite.matched.insert(0, g.node(inner_id).name.clone());
        Ok(rewrite)
    }))
}

fn is_reshape_like(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze | Op::Unsqueeze
    )
}

fn reshape_chain(g: &Graph, id: NodeId) -> Option<Rewrite> {
    let node = g.node(id);
    if !is_reshape_like(&node.op) {
        return None;
    }
    let (inner_id, _) = first_input_producer(g, node)?;
    let inner = g.node(inner_id);
    if !is_reshape_like(&inner.op) {
        return None;
    }
    let source = inner.input(0)?;
    let target = match g.fact(node.outputs[0]).shape.as_fixed() {
        Some(dims) => Target::Static(dims),
        None => match &node.op {
            Op::Reshape(a) => {
                let shape = node.input(1)?;
                let w = g.weight_of(shape)?;
                let values = Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                    .ok()?
                    .to_i64_vec()
                    .ok()?;
                (a.allowzero || !values.contains(&0))
                    .then_some(Target::Value(shape, a.allowzero))?
            }
            _ => return None,
        },
    };
    let name = node.name.clone();
    Some(Box::new(move |g: &mut Graph| {
        let mut patch = Patch::new("reshape_chain");
        let (shape, allowzero) = match target {
            Target::Value(v, allowzero) => (patch.tap(v), allowzero),
            Target::Static(dims) => {
                let values: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                let bytes = Tensor::from_i64(&[values.len()], values)?.to_bytes();
                let w = Weight::new(
                    format!("{name}_shape"),
                    DType::I64,
                    vec![dims.len()],
                    Bytes::from(bytes),
                )?;
                (patch.add_weight(w), dims.contains(&0))
            }
        };
        let op = Op::Reshape(ReshapeAttrs { allowzero });
        let inputs = vec![Some(patch.tap(source)), Some(shape)];
        replace_node(g, patch, id, inner_id, op, inputs)
    }))
}

/// What the collapsed Reshape reshapes to.
enum Target {
    Static(Vec<usize>),
    /// The second Reshape's own constant shape input, and its `allowzero`.
    Value(ValueId, bool),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::compare::compare;
    use crate::ir::eval::run;
    use crate::ir::text::parse;
    use crate::passes::dce::DeadCodeElimination;
    use crate::passes::manager::{Repeat, RunOptions, Stage, run_stages};
    use crate::passes::noop::NoOpRemoval;
    use ndarray::{ArrayD, IxDyn};

    /// Runs the pass with noop and DCE to a fixpoint; returns the rules applied
    /// and checks the interpreter's outputs did not change on `input`.
    fn collapse(text: &str, input: Tensor) -> (Graph, Vec<String>) {
        let original = parse(text).unwrap();
        let mut g = original.clone();
        let stage = Stage {
            name: "chains",
            passes: vec![
                Box::new(CollapseChains),
                Box::new(NoOpRemoval),
                Box::new(DeadCodeElimination),
            ],
            repeat: Repeat::Fixpoint { cap: 8 },
        };
        let report = run_stages(&mut g, &[stage], &RunOptions::default()).unwrap();
        let before = run(&original, vec![input.clone()]).unwrap();
        let after = run(&g, vec![input]).unwrap();
        for (a, b) in after.iter().zip(&before) {
            assert!(compare(a, b).unwrap().within(0.0));
        }
        (g, report.rewrites.iter().map(|r| r.rule.clone()).collect())
    }

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f32).collect()).unwrap(),
        )
    }

    fn kinds(g: &Graph) -> Vec<&'static str> {
        g.nodes().map(|(_, n)| n.op.kind().name()).collect()
    }

    #[test]
    fn transposes_compose_and_inverse_pairs_vanish() {
        let (g, rules) = collapse(
            "graph g {
  input x: f32[2,3,4]
  node t1: a: f32[4,2,3] = Transpose {\"perm\":[2,0,1]} (x)
  node t2: b: f32[3,4,2] = Transpose {\"perm\":[2,0,1]} (a)
  node t3: y: f32[2,3,4] = Transpose {\"perm\":[2,0,1]} (b)
  output y, b
}
",
            ramp(&[2, 3, 4]),
        );
        assert!(rules.contains(&"transpose_chain".to_string()), "{rules:?}");
        // Both read x directly and t1 is gone. y composes to the identity but
        // stays: a graph output may not take over a graph input's name.
        let text = crate::ir::text::print(&g, &Default::default());
        assert!(
            text.contains("node t2: b: f32[3,4,2] = Transpose {\"perm\":[1,2,0]} (x)"),
            "{text}"
        );
        assert!(
            text.contains("node t3: y: f32[2,3,4] = Transpose {\"perm\":[0,1,2]} (x)"),
            "{text}"
        );
        assert_eq!(g.node_count(), 2);
    }

    #[test]
    fn reshape_like_chains_become_one_reshape() {
        let (g, rules) = collapse(
            "graph g {
  input x: f32[2,3,4]
  weight axes: i64[1] = [0]
  weight s1: i64[2] = [6,4]
  node f: a: f32[2,12] = Flatten {\"axis\":1} (x)
  node u: b: f32[1,2,12] = Unsqueeze (a, axes)
  node r: y: f32[6,4] = Reshape {\"allowzero\":false} (b, s1)
  output y
}
",
            ramp(&[2, 3, 4]),
        );
        assert!(rules.iter().all(|r| r == "reshape_chain"), "{rules:?}");
        assert_eq!(kinds(&g), ["Reshape"]);
    }

    #[test]
    fn a_copy_dim_reshape_on_a_symbolic_shape_is_left_alone() {
        let text = "graph g {
  input x: f32[N,3,4]
  weight s1: i64[3] = [0,4,3]
  weight s2: i64[2] = [0,-1]
  node r1: a: f32[N,4,3] = Reshape {\"allowzero\":false} (x, s1)
  node r2: y: f32[N,12] = Reshape {\"allowzero\":false} (a, s2)
  output y
}
";
        let (g, rules) = collapse(text, ramp(&[2, 3, 4]));
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(g.node_count(), 2);
    }
}
