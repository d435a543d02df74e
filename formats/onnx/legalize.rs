//! Rewrites into forms the ONNX writer can express at one opset.

use crate::ir::error::{Error, Result};
use crate::ir::infer::{InferInput, infer_op};
use bytes::Bytes;

use crate::ir::ops::{
    AxisAttrs, ConvAttrs, ConvTransposeAttrs, FusedActivation, ReshapeAttrs, ShapeAttrs,
    SoftmaxAttrs,
};
use crate::ir::patch::{Patch, PatchValue};
use crate::ir::tensor::Tensor;
use crate::ir::weights::Weight;
use crate::ir::{Fact, Graph, NodeId, Op};
use crate::passes::{Changed, Pass, PassCx};

/// Softmax, LogSoftmax and Hardmax imported from opset < 13 normalize over
/// all axes from `axis` on (the input flattened to 2-D), which no opset >= 13
/// op expresses. Such a node becomes `Reshape(op(Flatten(x, axis), axis=1),
/// Shape(x))`; over the last axis the two meanings agree and the node is
/// left alone.
pub struct SoftmaxFlatten;

impl Pass for SoftmaxFlatten {
    fn name(&self) -> &'static str {
        "softmax_flatten"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let targets: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| match &n.op {
                Op::Softmax(a) | Op::LogSoftmax(a) | Op::Hardmax(a) => {
                    a.coerce_2d && !over_last_axis(g, n, a)
                }
                _ => false,
            })
            .map(|(id, _)| id)
            .collect();
        for &id in &targets {
            cx.record(flatten(g, id)?.apply(g)?);
        }
        Ok(Changed::from_bool(!targets.is_empty()))
    }
}

fn over_last_axis(g: &Graph, node: &crate::ir::Node, a: &SoftmaxAttrs) -> bool {
    let rank = node.input(0).and_then(|v| g.fact(v).shape.rank());
    rank.is_some_and(|r| a.axis == -1 || a.axis == r as i64 - 1)
}

fn flatten(g: &mut Graph, id: NodeId) -> Result<Patch> {
    let node = g.node(id).clone();
    let (Op::Softmax(a) | Op::LogSoftmax(a) | Op::Hardmax(a)) = &node.op else {
        unreachable!("only softmax-family nodes are selected");
    };
    let x = node.inputs[0].expect("softmax has its input");
    let normalized = SoftmaxAttrs {
        axis: 1,
        coerce_2d: false,
    };
    let op = match &node.op {
        Op::Softmax(_) => Op::Softmax(normalized),
        Op::LogSoftmax(_) => Op::LogSoftmax(normalized),
        _ => Op::Hardmax(normalized),
    };
    let x_fact = g.fact(x).clone();
    let fail = |msg: String| Error::node(&node.name, node.op.name(), msg);
    let flatten_op = Op::Flatten(AxisAttrs { axis: a.axis });
    let flat_fact = infer_one(g, &flatten_op, std::slice::from_ref(&x_fact)).map_err(fail)?;
    let shape_op = Op::Shape(ShapeAttrs {
        start: 0,
        end: None,
    });
    let shape_fact = infer_one(g, &shape_op, &[x_fact]).map_err(fail)?;
    let out = node.outputs[0];
    let out_fact = g.fact(out).clone();
    let name = |suffix: &str| format!("{}_{suffix}", node.name);

    let mut p = Patch::new("softmax_flatten");
    let flat = p.add_node(
        name("flatten"),
        flatten_op,
        vec![Some(p.tap(x))],
        vec![(name("flat"), flat_fact.clone())],
    )[0];
    let normalized = p.add_node(
        name("2d"),
        op,
        vec![Some(flat)],
        vec![(name("normalized"), flat_fact)],
    )[0];
    let shape = p.add_node(
        name("shape"),
        shape_op,
        vec![Some(p.tap(x))],
        vec![(name("shape_value"), shape_fact)],
    )[0];
    let reshaped: PatchValue = p.add_node(
        name("reshape"),
        Op::Reshape(ReshapeAttrs { allowzero: false }),
        vec![Some(normalized), Some(shape)],
        vec![(name("reshaped"), out_fact)],
    )[0];
    p.redirect(out, reshaped);
    p.remove_node(id);
    Ok(p)
}

fn infer_one(g: &mut Graph, op: &Op, inputs: &[Fact]) -> Result<Fact, String> {
    let inputs: Vec<Option<InferInput>> = inputs
        .iter()
        .map(|f| Some(InferInput::from_fact(f.clone())))
        .collect();
    Ok(infer_op(op, &inputs, 1, &mut g.symbols)?.remove(0).fact)
}

/// ONNX has no biased linear op and no fused activations: `Linear` becomes
/// `MatMul` (+ `Add` of the bias), and an activation fused into a Conv,
/// ConvTranspose or Linear becomes its own node after it.
pub struct Unfuse;

impl Pass for Unfuse {
    fn name(&self) -> &'static str {
        "onnx_unfuse"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let targets: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| match &n.op {
                Op::Linear(_) => true,
                Op::Conv(a) => a.activation.is_some(),
                Op::ConvTranspose(a) => a.activation.is_some(),
                _ => false,
            })
            .map(|(id, _)| id)
            .collect();
        for &id in &targets {
            cx.record(unfuse(g, id)?.apply(g)?);
        }
        Ok(Changed::from_bool(!targets.is_empty()))
    }
}

fn unfuse(g: &Graph, id: NodeId) -> Result<Patch> {
    let node = g.node(id).clone();
    let out = node.outputs[0];
    // Every intermediate has the output's fact: the bias broadcasts along the
    // last dim and activations keep the shape.
    let fact = g.fact(out).clone();
    let name = |suffix: &str| format!("{}_{suffix}", node.name);
    let mut p = Patch::new("onnx_unfuse");
    let inputs: Vec<Option<PatchValue>> = node.inputs.iter().map(|v| v.map(|v| p.tap(v))).collect();
    let (mut value, activation) = match &node.op {
        Op::Linear(a) => {
            let product = p.add_node(
                name("matmul"),
                Op::MatMul,
                inputs[..2].to_vec(),
                vec![(name("product"), fact.clone())],
            )[0];
            let biased = match inputs.get(2).copied().flatten() {
                Some(bias) => p.add_node(
                    name("bias"),
                    Op::Add,
                    vec![Some(product), Some(bias)],
                    vec![(name("biased"), fact.clone())],
                )[0],
                None => product,
            };
            (biased, a.activation)
        }
        Op::Conv(_) | Op::ConvTranspose(_) => {
            let (plain, activation) = match &node.op {
                Op::Conv(a) => (
                    Op::Conv(ConvAttrs {
                        activation: None,
                        ..a.clone()
                    }),
                    a.activation,
                ),
                Op::ConvTranspose(a) => (
                    Op::ConvTranspose(ConvTransposeAttrs {
                        activation: None,
                        ..a.clone()
                    }),
                    a.activation,
                ),
                _ => unreachable!("matched just above"),
            };
            let v = p.add_node(
                name("conv"),
                plain,
                inputs,
                vec![(name("linear"), fact.clone())],
            )[0];
            (v, activation)
        }
        _ => unreachable!("only fused nodes are selected"),
    };
    if let Some(activation) = activation {
        value = activation_node(&mut p, activation, value, &fact, &name("activation"))
            .map_err(|e| Error::node(&node.name, node.op.name(), e.to_string()))?;
    }
    p.redirect(out, value);
    p.remove_node(id);
    Ok(p)
}

/// `activation(x)` as plain ONNX-expressible ops.
fn activation_node(
    p: &mut Patch,
    activation: FusedActivation,
    x: PatchValue,
    fact: &Fact,
    name: &str,
) -> Result<PatchValue> {
    let clip = |p: &mut Patch, lo: f32, hi: f32| -> Result<PatchValue> {
        let dtype = fact.dtype.unwrap_or(crate::ir::DType::F32);
        let mut bound = |suffix: &str, v: f32| -> Result<PatchValue> {
            let t = Tensor::scalar_f32(v).cast(dtype)?;
            let w = Weight::new(
                format!("{name}_{suffix}"),
                dtype,
                vec![],
                Bytes::from(t.to_bytes()),
            )?;
            Ok(p.add_weight(w))
        };
        let (lo, hi) = (bound("min", lo)?, bound("max", hi)?);
        Ok(p.add_node(
            name,
            Op::Clip,
            vec![Some(x), Some(lo), Some(hi)],
            vec![(format!("{name}_out"), fact.clone())],
        )[0])
    };
    let op = match activation {
        FusedActivation::Relu6 => return clip(p, 0.0, 6.0),
        FusedActivation::ReluN1To1 => return clip(p, -1.0, 1.0),
        FusedActivation::Relu => Op::Relu,
        FusedActivation::Tanh => Op::Tanh,
        FusedActivation::Sigmoid => Op::Sigmoid,
        FusedActivation::HardSwish => Op::HardSwish,
    };
    Ok(p.add_node(
        name,
        op,
        vec![Some(x)],
        vec![(format!("{name}_out"), fact.clone())],
    )[0])
}
