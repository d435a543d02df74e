//! Facts recomputed before the decompositions: constant folding turns shape
//! subgraphs (pads, slice bounds, reshape targets) into constants, but the
//! facts of the values computed from them keep the symbols inference gave
//! them on import. TFLite needs static shapes, and these are static now.

use crate::ir::Graph;
use crate::ir::error::Result;
use crate::ir::infer::infer_graph;
use crate::passes::{Changed, Pass, PassCx};

pub struct RefineShapes;

impl Pass for RefineShapes {
    fn name(&self) -> &'static str {
        "tflite_refine_shapes"
    }

    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<Changed> {
        let before: Vec<_> = g.values().map(|(_, v)| v.fact.clone()).collect();
        infer_graph(g)?;
        let changed = g.values().zip(&before).any(|((_, v), old)| v.fact != *old);
        Ok(Changed::from_bool(changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::legalize::build::testing::run_pass;

    #[test]
    fn a_pad_of_constant_pads_gets_a_static_shape() {
        let (_, after, _) = run_pass(
            "graph g {
  input x: f32[2,3]
  weight pads: i64[4] = [0,1,0,2]
  node p: y: f32[unk0,unk1] = Pad {\"mode\":\"Constant\"} (x, pads)
  output y
}",
            RefineShapes,
        );
        let y = after.outputs[0];
        assert_eq!(after.fact(y).shape.as_fixed(), Some(vec![2, 6]));
    }
}
