//! Which IR nodes the TFLite target can express: one family per op kind
//! (an exhaustive match, so a new IR op does not compile until it is placed),
//! then the family's own check of attributes and dtypes.

use crate::formats::target::Support;
use crate::ir::{DType, Graph, Node, NodeId, OpKind};

use super::{conv, elementwise, linalg, quant, reduce, rnn, shape};

/// The file that lowers an op kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Conv,
    Elementwise,
    Linalg,
    Reduce,
    Shape,
    Quant,
    Rnn,
    /// Rewritten into other ops by the TFLite legalization passes.
    Decomposed,
    /// No TFLite builtin and no decomposition (the reason).
    None(&'static str),
}

pub fn family(kind: OpKind) -> Family {
    use Family as F;
    use OpKind as K;
    match kind {
        K::Conv
        | K::ConvTranspose
        | K::MaxPool
        | K::AveragePool
        | K::GlobalAveragePool
        | K::GlobalMaxPool
        | K::Resize
        | K::DepthToSpace
        | K::SpaceToDepth
        | K::Pad => F::Conv,
        K::LpPool => F::None("TFLite has no Lp pooling"),
        K::MatMul | K::Linear | K::Gemm | K::Einsum => F::Linalg,
        K::ReduceMean
        | K::ReduceSum
        | K::ReduceMax
        | K::ReduceMin
        | K::ReduceProd
        | K::ReduceL1
        | K::ReduceL2
        | K::ReduceLogSum
        | K::ReduceLogSumExp
        | K::ReduceSumSquare
        | K::ArgMax
        | K::ArgMin
        | K::Softmax
        | K::LogSoftmax
        | K::Hardmax
        | K::CumSum => F::Reduce,
        K::Reshape
        | K::Flatten
        | K::Transpose
        | K::Squeeze
        | K::Unsqueeze
        | K::Concat
        | K::Split
        | K::Slice
        | K::Gather
        | K::GatherElements
        | K::GatherNd
        | K::Expand
        | K::Tile
        | K::Identity
        | K::Shape
        | K::Size
        | K::ConstantOfShape
        | K::Range
        | K::TopK
        | K::OneHot
        | K::NonZero
        | K::EyeLike
        | K::Compress
        | K::Trilu
        | K::ScatterNd
        | K::ScatterElements => F::Shape,
        K::QuantizeLinear | K::DequantizeLinear | K::MatMulInteger => F::Quant,
        K::Lstm | K::Gru => F::Rnn,
        K::BatchNormalization
        | K::InstanceNormalization
        | K::LayerNormalization
        | K::GroupNormalization
        | K::RmsNormalization
        | K::LpNormalization
        | K::MeanVarianceNormalization
        | K::Attention => F::Decomposed,
        K::Abs
        | K::Neg
        | K::Sqrt
        | K::Reciprocal
        | K::Exp
        | K::Log
        | K::Erf
        | K::Tanh
        | K::Sigmoid
        | K::Relu
        | K::Softplus
        | K::Softsign
        | K::Floor
        | K::Ceil
        | K::Round
        | K::Sign
        | K::Sin
        | K::Cos
        | K::Tan
        | K::Asin
        | K::Acos
        | K::Atan
        | K::Sinh
        | K::Cosh
        | K::Asinh
        | K::Acosh
        | K::Atanh
        | K::HardSwish
        | K::Mish
        | K::Not
        | K::BitwiseNot
        | K::IsNaN
        | K::IsInf
        | K::HardSigmoid
        | K::LeakyRelu
        | K::Elu
        | K::Celu
        | K::ThresholdedRelu
        | K::Selu
        | K::Gelu
        | K::Shrink
        | K::Swish
        | K::Add
        | K::Sub
        | K::Mul
        | K::Div
        | K::Pow
        | K::Mod
        | K::PRelu
        | K::Equal
        | K::Less
        | K::LessOrEqual
        | K::Greater
        | K::GreaterOrEqual
        | K::And
        | K::Or
        | K::Xor
        | K::BitwiseAnd
        | K::BitwiseOr
        | K::BitwiseXor
        | K::BitShift
        | K::Min
        | K::Max
        | K::Sum
        | K::Mean
        | K::Where
        | K::Clip
        | K::Cast
        | K::CastLike => F::Elementwise,
        K::Custom => F::None("custom op: TFLite has no builtin for it"),
    }
}

/// Whether the TFLite target can express node `id` of `g`.
pub fn support(g: &Graph, id: NodeId) -> Support {
    let node = g.node(id);
    if let Err(why) = static_values(g, node) {
        return Support::Unsupported(why);
    }
    match family(node.op.kind()) {
        Family::Conv => conv::support(g, node),
        Family::Elementwise => elementwise::support(g, node),
        Family::Linalg => linalg::support(g, node),
        Family::Reduce => reduce::support(g, node),
        Family::Shape => shape::support(g, node),
        Family::Quant => quant::support(g, node),
        Family::Rnn => rnn::support(g, node),
        Family::Decomposed => super::super::legalize::support(g, node),
        Family::None(why) => Support::Unsupported(why.to_string()),
    }
}

/// Every input and output has a static shape and a known dtype.
fn static_values(g: &Graph, node: &Node) -> Result<(), String> {
    for &v in node.inputs.iter().flatten().chain(&node.outputs) {
        let value = g.value(v);
        if value.fact.dtype.is_none() {
            return Err(format!("the dtype of value '{}' is unknown", value.name));
        }
        if !value.fact.shape.is_static() {
            return Err(format!(
                "value '{}' has a dynamic shape; the TFLite target needs static shapes (pin them with --pin)",
                value.name
            ));
        }
    }
    Ok(())
}

/// `Ok` when every input and output of `node` has one of `allowed` dtypes;
/// else the reason naming the first value that does not.
pub fn dtypes_in(g: &Graph, node: &Node, allowed: &[DType]) -> Result<(), String> {
    for &v in node.inputs.iter().flatten().chain(&node.outputs) {
        let value = g.value(v);
        if let Some(d) = value.fact.dtype
            && !allowed.contains(&d)
        {
            return Err(format!(
                "value '{}' is {d}; TFLite's {} takes {}",
                value.name,
                node.op.name(),
                allowed
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// [`dtypes_in`] as a [`Support`] (native when it holds).
pub fn native_if_dtypes(g: &Graph, node: &Node, allowed: &[DType]) -> Support {
    match dtypes_in(g, node, allowed) {
        Ok(()) => Support::Native,
        Err(why) => Support::Unsupported(why),
    }
}
