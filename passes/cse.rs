//! Common-subexpression elimination.

use std::collections::HashMap;

use crate::ir::error::Result;
use crate::ir::patch::Patch;
use crate::ir::{Graph, NodeId, ValueDef, ValueId};

use super::manager::{Changed, Pass, PassCx};

/// Weights up to this size are compared byte for byte to merge duplicates;
/// larger ones are left alone so the pass never reads big weights.
const MAX_COMPARED_WEIGHT_BYTES: usize = 64 * 1024;

/// Merges nodes that compute the same op on the same inputs, and small weights
/// with identical dtype, shape and bytes. The first occurrence (in
/// topological order) stays; uses of the others are redirected to it. A merge
/// that would rename a graph output onto another graph output is skipped.
pub struct CommonSubexpressionElimination;

impl Pass for CommonSubexpressionElimination {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let mut changed = merge_weights(g, cx)?;
        changed |= merge_nodes(g, cx)?;
        Ok(Changed::from_bool(changed))
    }
}

fn merge_weights(g: &mut Graph, cx: &mut PassCx) -> Result<bool> {
    let used: Vec<ValueId> = crate::ir::verify::live_values(g)
        .into_iter()
        .filter(|&v| matches!(g.value(v).def, ValueDef::Weight(_)))
        .collect();
    let mut first: HashMap<(String, Vec<usize>, &[u8]), ValueId> = HashMap::new();
    let mut duplicates = Vec::new();
    for &v in &used {
        let w = g.weight_of(v).expect("filtered to weights");
        if w.data.len() > MAX_COMPARED_WEIGHT_BYTES || g.value(v).fact.quant.is_some() {
            continue;
        }
        let key = (w.dtype.name(), w.shape.clone(), &w.data[..]);
        match first.get(&key) {
            Some(&kept) if !g.outputs.contains(&v) => duplicates.push((v, kept)),
            Some(_) => {}
            None => {
                first.insert(key, v);
            }
        }
    }
    let changed = !duplicates.is_empty();
    for (duplicate, kept) in duplicates {
        let mut p = Patch::new("cse_weight");
        p.redirect(duplicate, p.tap(kept));
        let mut rewrite = p.apply(g)?;
        rewrite.matched = vec![g.value(duplicate).name.clone()];
        rewrite.produced = vec![g.value(kept).name.clone()];
        cx.record(rewrite);
    }
    Ok(changed)
}

fn merge_nodes(g: &mut Graph, cx: &mut PassCx) -> Result<bool> {
    let mut changed = false;
    let mut seen: Vec<NodeId> = Vec::new();
    for id in g.topo_order()? {
        let node = g.node(id);
        let same = seen.iter().copied().find(|&s| {
            let other = g.node(s);
            other.op == node.op
                && other.inputs == node.inputs
                && other.outputs.len() == node.outputs.len()
        });
        let Some(kept) = same else {
            seen.push(id);
            continue;
        };
        let outputs_of = |n: NodeId| g.node(n).outputs.clone();
        let (dup_outs, kept_outs) = (outputs_of(id), outputs_of(kept));
        if dup_outs.iter().any(|v| g.outputs.contains(v))
            && kept_outs.iter().any(|v| g.outputs.contains(v))
        {
            seen.push(id);
            continue;
        }
        let mut p = Patch::new("cse_node");
        for (&dup, &keep) in dup_outs.iter().zip(&kept_outs) {
            p.redirect(dup, p.tap(keep));
        }
        p.remove_node(id);
        cx.record(p.apply(g)?);
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::{PrintOptions, parse, print};
    use crate::ir::verify::verify;

    #[test]
    fn merges_repeated_nodes_and_equal_weights() {
        let mut g = parse(
            "graph g {
  input x: f32[2]
  weight a: f32[2] = [1,2]
  weight b: f32[2] = [1,2]
  weight c: f32[2] = [1,3]
  node s1: p: f32[2] = Add (x, a)
  node s2: q: f32[2] = Add (x, b)
  node s3: r: f32[2] = Add (x, c)
  node m: y: f32[2] = Mul (p, q)
  output y, r
}
",
        )
        .unwrap();
        let mut cx = PassCx::default();
        assert_eq!(
            CommonSubexpressionElimination.run(&mut g, &mut cx).unwrap(),
            Changed::Yes
        );
        verify(&g).unwrap();
        let text = print(&g, &PrintOptions::default());
        assert!(text.contains("node m: y: f32[2] = Mul (p, p)"), "{text}");
        assert!(
            text.contains("= Add (x, c)"),
            "different weights stay apart: {text}"
        );
        assert_eq!(g.node_count(), 3);
        assert_eq!(
            CommonSubexpressionElimination.run(&mut g, &mut cx).unwrap(),
            Changed::No
        );
    }

    #[test]
    fn two_graph_outputs_are_not_merged() {
        let mut g = parse(
            "graph g {
  input x: f32[2]
  node r1: y1: f32[2] = Relu (x)
  node r2: y2: f32[2] = Relu (x)
  output y1, y2
}
",
        )
        .unwrap();
        let changed = CommonSubexpressionElimination
            .run(&mut g, &mut PassCx::default())
            .unwrap();
        assert_eq!(changed, Changed::No);
        assert_eq!(g.node_count(), 2);
    }
}
