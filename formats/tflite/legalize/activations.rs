//! Before full-integer quantization: every value an int8 operator writes
//! must be an IR value with a calibrated range. So activations TFLite does
//! not fuse (Tanh, Sigmoid, HardSwish after a Conv or Linear) become their
//! own nodes, and HardSigmoid becomes the Mul, Add and Clip(0, 1) the float
//! lowering emits anyway.

use super::build::{Builder, taken_names};
use crate::ir::error::Result;
use crate::ir::ops::{ConvAttrs, ConvTransposeAttrs, FusedActivation, LinearAttrs};
use crate::ir::{DType, Graph, NodeId, Op};
use crate::passes::{Changed, Pass, PassCx};

pub struct SplitActivations;

impl Pass for SplitActivations {
    fn name(&self) -> &'static str {
        "tflite_split_activations"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let targets: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| {
                let f32_out = g.fact(n.outputs[0]).dtype == Some(DType::F32);
                f32_out
                    && (unfused_activation(&n.op).is_some() || matches!(n.op, Op::HardSigmoid(_)))
            })
            .map(|(id, _)| id)
            .collect();
        let mut names = taken_names(g);
        for &id in &targets {
            let node = g.node(id).clone();
            let mut b = Builder::new(g, &mut names, "tflite_split_activations", id);
            let inputs: Vec<_> = node.inputs.iter().map(|v| v.map(|v| b.tap(v))).collect();
            let y = match &node.op {
                Op::HardSigmoid(a) => {
                    let x = inputs[0].ok_or_else(|| b.error("X is required"))?;
                    let alpha = b.scalar("alpha", DType::F32, f64::from(a.alpha))?;
                    let beta = b.scalar("beta", DType::F32, f64::from(a.beta))?;
                    let zero = b.scalar("zero", DType::F32, 0.0)?;
                    let one = b.scalar("one", DType::F32, 1.0)?;
                    let scaled = b.op2("scaled", Op::Mul, &[x, alpha])?;
                    let shifted = b.op2("shifted", Op::Add, &[scaled, beta])?;
                    b.op2("clip", Op::Clip, &[shifted, zero, one])?
                }
                op => {
                    let (plain, activation) =
                        unfused_activation(op).expect("only such nodes are selected");
                    let linear = b.op("linear", plain, &inputs)?;
                    let act = match activation {
                        FusedActivation::Tanh => Op::Tanh,
                        FusedActivation::Sigmoid => Op::Sigmoid,
                        _ => Op::HardSwish,
                    };
                    b.op2("activation", act, &[linear])?
                }
            };
            cx.record(b.finish(&[y]).apply(g)?);
        }
        Ok(Changed::from_bool(!targets.is_empty()))
    }
}

/// `op` without its fused activation, and the activation, when TFLite's
/// kernels cannot apply it themselves.
fn unfused_activation(op: &Op) -> Option<(Op, FusedActivation)> {
    let split = |a: Option<FusedActivation>| {
        a.filter(|a| {
            matches!(
                a,
                FusedActivation::Tanh | FusedActivation::Sigmoid | FusedActivation::HardSwish
            )
        })
    };
    match op {
        Op::Conv(a) => split(a.activation).map(|act| {
            (
                Op::Conv(ConvAttrs {
                    activation: None,
                    ..a.clone()
                }),
                act,
            )
        }),
        Op::ConvTranspose(a) => split(a.activation).map(|act| {
            (
                Op::ConvTranspose(ConvTransposeAttrs {
                    activation: None,
                    ..a.clone()
                }),
                act,
            )
        }),
        Op::Linear(a) => {
            split(a.activation).map(|act| (Op::Linear(LinearAttrs { activation: None }), act))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::legalize::build::testing::{assert_same, kinds, run_pass};

    #[test]
    fn hard_swish_leaves_the_conv_and_hard_sigmoid_becomes_mul_add_clip() {
        let (before, after, _) = run_pass(
            "graph g {
  input x: f32[1,2,4,4]
  weight w: f32[2,2,1,1] = [1,0.5,-0.5,2]
  node c: y: f32[1,2,4,4] = Conv {\"kernel_shape\":[1,1],\"strides\":[1,1],\"dilations\":[1,1],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":1,\"activation\":\"HardSwish\"} (x, w)
  node h: z: f32[1,2,4,4] = HardSigmoid {\"alpha\":0.2,\"beta\":0.5} (y)
  output z
}",
            SplitActivations,
        );
        assert_eq!(
            kinds(&after),
            vec!["Conv", "HardSwish", "Mul", "Add", "Clip"]
        );
        assert_same(&before, &after, 0.0, 1e-6);
    }
}
