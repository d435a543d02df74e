//! Facts recomputed before the decompositions: constant folding turns shape
//! subgraphs (pads, slice bounds, reshape targets) into constants, but the
//! facts of the values computed from them keep the symbols inference gave
//! them on import. TFLite needs static shapes, and these are static now.

use crate::ir::error::Result;
use crate::ir::infer::infer_graph;
use crate::ir::{Fact, Graph, ValueId};
use crate::passes::{Changed, Pass, PassCx};

pub struct RefineShapes;

impl Pass for RefineShapes {
    fn name(&self) -> &'static str {
        "tflite_refine_shapes"
    }

    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<Changed> {
        let before: Vec<(ValueId, Fact)> = g.values().map(|(id, v)| (id, v.fact.clone())).collect();
        if infer_graph(g).is_err() {
            // Inference contradicting the imported facts refines nothing;
            // the checks after legalization report what stays dynamic.
            for (id, fact) in before {
                g.value_mut(id).fact = fact;
            }
            return Ok(Changed::No);
        }
        let changed = before.iter().any(|(id, old)| g.fact(*id) != old);
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
