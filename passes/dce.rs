//! Dead-code elimination.

use std::collections::HashSet;

use crate::ir::error::Result;
use crate::ir::{Graph, NodeId};

use super::manager::{Changed, Pass, PassCx};

/// Removes every node none of whose outputs reaches a graph output, then
/// compacts the graph so unused values and weights are gone too. Graph inputs
/// stay, used or not: they are the model's signature.
pub struct DeadCodeElimination;

impl Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph, _: &mut PassCx) -> Result<Changed> {
        let mut needed: HashSet<NodeId> = HashSet::new();
        let mut stack: Vec<NodeId> = g.outputs.iter().filter_map(|&v| g.producer(v)).collect();
        while let Some(id) = stack.pop() {
            if needed.insert(id) {
                stack.extend(
                    g.node(id)
                        .inputs
                        .iter()
                        .flatten()
                        .filter_map(|&v| g.producer(v)),
                );
            }
        }
        let dead: Vec<NodeId> = g
            .nodes()
            .map(|(id, _)| id)
            .filter(|id| !needed.contains(id))
            .collect();
        let weights_before = g.weights.len();
        for id in &dead {
            g.remove_node(*id);
        }
        g.compact()?;
        Ok(Changed::from_bool(
            !dead.is_empty() || g.weights.len() != weights_before,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::{PrintOptions, parse, print};

    #[test]
    fn removes_unreachable_nodes_and_their_weights() {
        let mut g = parse(
            "graph g {
  input x: f32[2]
  input unused: f32[2]
  weight w: f32[2] = [1,2]
  weight dead_w: f32[2] = [3,4]
  node dead: d: f32[2] = Mul (x, dead_w)
  node dead2: d2: f32[2] = Relu (d)
  node live: y: f32[2] = Add (x, w)
  output y
}
",
        )
        .unwrap();
        let changed = DeadCodeElimination
            .run(&mut g, &mut PassCx::default())
            .unwrap();
        assert_eq!(changed, Changed::Yes);
        crate::ir::verify::verify(&g).unwrap();
        assert_eq!(g.node_count(), 1);
        assert_eq!(g.weights.len(), 1);
        assert_eq!(g.param_count(), 2);
        assert_eq!(
            print(&g, &PrintOptions::default()),
            "graph g {
  input x: f32[2]
  input unused: f32[2]
  weight w: f32[2] = [1,2]
  node live: y: f32[2] = Add (x, w)
  output y
}
"
        );
        let again = DeadCodeElimination
            .run(&mut g, &mut PassCx::default())
            .unwrap();
        assert_eq!(again, Changed::No);
    }
}
