//! Which IR nodes may run in int8 and how their constant inputs are
//! quantized. The model rewrite and the simulation both follow this, so the
//! simulated weights are the ones written.

use crate::ir::{DType, Graph, Node, Op};

/// How a constant input of an int8 node is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstRole {
    /// Symmetric int8 per output channel; `axis` of the IR weight.
    Filter { axis: usize },
    /// int32 with scale input scale x filter scale of its channel.
    Bias,
    /// Asymmetric int8 by its own range, one scale for the tensor.
    Tensor,
}

/// The role of input `i` of `node` when `node` runs in int8.
pub fn constant_role(g: &Graph, node: &Node, i: usize) -> ConstRole {
    match (&node.op, i) {
        (Op::Conv(_), 1) => ConstRole::Filter { axis: 0 },
        (Op::Linear(_), 1) => ConstRole::Filter { axis: 1 },
        (Op::MatMul, 1) => {
            let rank = node
                .input(1)
                .and_then(|v| g.fact(v).shape.rank())
                .unwrap_or(2);
            ConstRole::Filter {
                axis: rank.saturating_sub(1),
            }
        }
        (Op::Conv(_) | Op::Linear(_), 2) => ConstRole::Bias,
        _ => ConstRole::Tensor,
    }
}

/// `Ok` when `node` may run on TFLite's int8 kernels, else why not. The
/// rewrite still checks that every operator it became has one.
pub fn eligible(g: &Graph, node: &Node) -> Result<(), String> {
    let floats = node
        .inputs
        .iter()
        .flatten()
        .chain(&node.outputs)
        .filter(|&&v| g.fact(v).dtype == Some(DType::F32))
        .count();
    if floats == 0 {
        return Err("computes no float32 values".into());
    }
    match &node.op {
        Op::Conv(a) => {
            let channels = node
                .input(0)
                .and_then(|x| g.fact(x).shape.as_fixed())
                .and_then(|s| s.get(1).copied());
            let depthwise = channels == Some(a.group);
            if a.group != 1 && !depthwise {
                return Err("grouped convolution has no int8 kernel".into());
            }
            require_constant(g, node, 1, "the filter")
        }
        Op::Linear(_) => require_constant(g, node, 1, "the weight"),
        Op::MatMul => {
            require_constant(g, node, 1, "the right operand")?;
            match node.input(1).and_then(|v| g.fact(v).shape.rank()) {
                Some(2) => Ok(()),
                _ => Err("only a matrix right operand is a FULLY_CONNECTED".into()),
            }
        }
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Relu
        | Op::Clip
        | Op::LeakyRelu(_)
        | Op::HardSwish
        | Op::Sigmoid
        | Op::Tanh
        | Op::Softmax(_)
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::ReduceMean(_)
        | Op::ReduceMax(_)
        | Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice
        | Op::Split(_)
        | Op::Gather(_)
        | Op::Pad(_)
        | Op::Resize(_)
        | Op::Identity
        | Op::Max
        | Op::Min
        | Op::DepthToSpace(_)
        | Op::SpaceToDepth(_) => Ok(()),
        other => Err(format!("{} has no int8 lowering", other.name())),
    }
}

fn require_constant(g: &Graph, node: &Node, i: usize, what: &str) -> Result<(), String> {
    match node.input(i) {
        Some(v) if g.weight_of(v).is_some() => Ok(()),
        _ => Err(format!("{what} is computed; int8 needs a constant")),
    }
}
