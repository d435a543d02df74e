//! Activations attached to the Conv, ConvTranspose or Linear producing their input.

use crate::ir::error::Result;
use crate::ir::ops::FusedActivation;
use crate::ir::patch::Patch;
use crate::ir::{Graph, Node, NodeId, Op};

use super::matching::{Matcher, Rule, rewrite_until_stable};
use crate::passes::manager::{Changed, Pass, PassCx};

/// Moves Relu, Clip(0, 6) (Relu6), Clip(-1, 1), Tanh, Sigmoid and HardSwish
/// into the `activation` of the Conv, ConvTranspose or Linear producing their
/// input, when that op has no activation yet and the activation is the only
/// reader of its output. Rules are named `fuse_<activation>`.
pub struct FuseActivation;

impl Pass for FuseActivation {
    fn name(&self) -> &'static str {
        "fuse_activation"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        const RULES: &[Rule] = &[fuse_activation];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// The fused form of an activation node, with its rule name.
fn activation_of(m: &Matcher, node: &Node) -> Option<(FusedActivation, &'static str)> {
    Some(match &node.op {
        Op::Relu => (FusedActivation::Relu, "fuse_relu"),
        Op::Tanh => (FusedActivation::Tanh, "fuse_tanh"),
        Op::Sigmoid => (FusedActivation::Sigmoid, "fuse_sigmoid"),
        Op::HardSwish => (FusedActivation::HardSwish, "fuse_hard_swish"),
        Op::Clip => {
            let bound = |i: usize| node.input(i).map(|v| m.scalar(v));
            match (bound(1), bound(2)) {
                (Some(Some(lo)), Some(Some(hi))) if lo == 0.0 && hi == 6.0 => {
                    (FusedActivation::Relu6, "fuse_relu6")
                }
                (Some(Some(lo)), Some(Some(hi))) if lo == -1.0 && hi == 1.0 => {
                    (FusedActivation::ReluN1To1, "fuse_relu_n1_to_1")
                }
                (Some(Some(0.0)), None) => (FusedActivation::Relu, "fuse_relu"),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The producer's op with `activation` set, if it can carry one and has none.
fn with_activation(op: &Op, activation: FusedActivation) -> Option<Op> {
    let mut op = op.clone();
    let slot = match &mut op {
        Op::Conv(a) => &mut a.activation,
        Op::ConvTranspose(a) => &mut a.activation,
        Op::Linear(a) => &mut a.activation,
        _ => return None,
    };
    if slot.is_some() {
        return None;
    }
    *slot = Some(activation);
    Some(op)
}

fn fuse_activation(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let act = m.node(id);
    let Some((activation, rule)) = activation_of(m, act) else {
        return Ok(None);
    };
    let Some(x) = act.input(0).filter(|&x| m.single_use(x) && m.is_float(x)) else {
        return Ok(None);
    };
    let Some(producer_id) = m.g.producer(x) else {
        return Ok(None);
    };
    let producer = m.node(producer_id);
    let Some(op) = with_activation(&producer.op, activation) else {
        return Ok(None);
    };
    let mut p = Patch::new(rule);
    let inputs = producer
        .inputs
        .iter()
        .map(|i| i.map(|v| p.tap(v)))
        .collect();
    p.replace(m.g, &[producer_id, id], producer.name.clone(), op, inputs);
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    const CONV: &str = "{\"kernel_shape\":null,\"strides\":[1,1],\"dilations\":[1,1],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":1}";

    #[test]
    fn activations_move_into_their_producers() {
        let text = format!(
            "graph g {{
  input x: f32[1,2,2,2]
  input v: f32[3,2]
  weight w: f32[2,2,1,1] = [1,-2,3,-4]
  weight lw: f32[2,2] = [1,-2,3,0.5]
  weight zero: f32[] = [0]
  weight six: f32[] = [6]
  weight lo: f32[] = [-1]
  weight hi: f32[] = [1]
  node c1: a: f32[1,2,2,2] = Conv {CONV} (x, w, _)
  node r6: y1: f32[1,2,2,2] = Clip (a, zero, six)
  node c2: b: f32[1,2,2,2] = Conv {CONV} (x, w, _)
  node hs: y2: f32[1,2,2,2] = HardSwish (b)
  node l1: c: f32[3,2] = Linear {{}} (v, lw, _)
  node n1: y3: f32[3,2] = Clip (c, lo, hi)
  node l2: d: f32[3,2] = Linear {{}} (v, lw, _)
  node sg: y4: f32[3,2] = Sigmoid (d)
  output y1, y2, y3, y4
}}
"
        );
        let (before, after, mut rules) = run_pass(&text, FuseActivation);
        rules.sort();
        assert_eq!(
            rules,
            [
                "fuse_hard_swish",
                "fuse_relu6",
                "fuse_relu_n1_to_1",
                "fuse_sigmoid"
            ]
        );
        assert_eq!(kinds(&after), ["Conv", "Conv", "Linear", "Linear"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn shared_outputs_other_clips_and_second_activations_stay() {
        let text = format!(
            "graph g {{
  input x: f32[1,2,2,2]
  weight w: f32[2,2,1,1] = [1,-2,3,-4]
  weight zero: f32[] = [0]
  weight five: f32[] = [5]
  node c1: a: f32[1,2,2,2] = Conv {CONV} (x, w, _)
  node r: y1: f32[1,2,2,2] = Relu (a)
  node c2: b: f32[1,2,2,2] = Conv {CONV} (x, w, _)
  node clip: y2: f32[1,2,2,2] = Clip (b, zero, five)
  output y1, y2, a
}}
"
        );
        let (_, after, rules) = run_pass(&text, FuseActivation);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(after.node_count(), 4);
    }
}
