//! The closed set of IR operations.
//!
//! Each variant carries a typed attribute struct (or none). [`OpKind`] is
//! generated from the same list, so a target that matches on `OpKind`
//! exhaustively fails to compile until it says what it does with a new op.
//!
//! Semantics follow the ONNX operator of the same name at its newest opset;
//! importers normalize older forms (attributes that later became inputs,
//! legacy Softmax axis coercion) into that one form. Inputs are positional as in
//! ONNX, optional ones may be absent. Where an ONNX attribute became an input in
//! a later opset (Reshape shape, Slice starts, Squeeze axes, Clip min/max, Pad
//! pads, Reduce axes, Split sizes, Resize scales, TopK k), the IR takes it as an
//! input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dtype::DType;

impl Serialize for DType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for DType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        DType::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown dtype {name}")))
    }
}

/// Padding of a convolution or pooling window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Padding {
    /// All begins, then all ends, one per spatial axis (ONNX `pads` order).
    Explicit(Vec<usize>),
    /// Output size `ceil(in / stride)`; extra padding at the end.
    SameUpper,
    /// Output size `ceil(in / stride)`; extra padding at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvAttrs {
    /// Spatial kernel shape; taken from the weight when absent.
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
    pub group: usize,
    /// Applied to the output (a fusion result; ONNX has no such attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<FusedActivation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvTransposeAttrs {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
    pub group: usize,
    pub output_padding: Vec<usize>,
    /// Requested spatial output shape; pads are derived from it when present.
    pub output_shape: Option<Vec<usize>>,
    /// Applied to the output (a fusion result; ONNX has no such attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<FusedActivation>,
}

/// An activation a Conv, ConvTranspose or Linear applies to its output: the
/// set TFLite, Core ML and XNNPACK can fuse into the producing op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FusedActivation {
    Relu,
    /// `min(max(x, 0), 6)`
    Relu6,
    /// `min(max(x, -1), 1)`
    ReluN1To1,
    Tanh,
    Sigmoid,
    /// `x * relu6(x + 3) / 6`
    HardSwish,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<FusedActivation>,
}

/// The forms of ONNX Attention (opset 23) the IR models: no KV cache, no
/// softcap, no sliding window, only the output `Y`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionAttrs {
    /// Queries attend keys `j <= i` only (top-left aligned, no cache).
    pub is_causal: bool,
    /// Multiplies `Q·Kᵀ`; `1/sqrt(head_dim)` when absent.
    pub scale: Option<f32>,
    /// Head counts; required for 3-D `[batch, seq, heads*head_dim]` inputs,
    /// absent for 4-D `[batch, heads, seq, head_dim]` ones.
    pub q_num_heads: Option<usize>,
    pub kv_num_heads: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAttrs {
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
    pub ceil_mode: bool,
    /// AveragePool only: padded cells count in the divisor.
    pub count_include_pad: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LpPoolAttrs {
    pub pool: PoolAttrs,
    pub p: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemmAttrs {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpsilonAttrs {
    pub epsilon: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormAttrs {
    /// First normalized axis; may be negative.
    pub axis: i64,
    pub epsilon: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupNormAttrs {
    pub epsilon: f32,
    pub num_groups: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LpNormAttrs {
    pub axis: i64,
    pub p: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxesAttrs {
    pub axes: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisAttrs {
    pub axis: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlphaAttrs {
    pub alpha: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlphaBetaAttrs {
    pub alpha: f32,
    pub beta: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeluAttrs {
    pub alpha: f32,
    pub gamma: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShrinkAttrs {
    pub bias: f32,
    pub lambd: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeluApproximation {
    None,
    Tanh,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeluAttrs {
    pub approximate: GeluApproximation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsInfAttrs {
    pub detect_negative: bool,
    pub detect_positive: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModAttrs {
    /// C `fmod` semantics (sign of the dividend) instead of Python's.
    pub fmod: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShiftDirection {
    Left,
    Right,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitShiftAttrs {
    pub direction: ShiftDirection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CastAttrs {
    pub to: DType,
    /// Saturate out-of-range values when casting to float8 types (ONNX `saturate`).
    pub saturate: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxAttrs {
    pub axis: i64,
    /// Opset < 13 semantics: flatten to 2-D at `axis`, normalize each row.
    pub coerce_2d: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceAttrs {
    pub keepdims: bool,
    /// With no axes: do nothing (true) or reduce every axis (false).
    pub noop_with_empty_axes: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgReduceAttrs {
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshapeAttrs {
    /// A 0 in the shape input means a zero-sized dim (true) or "copy the input dim" (false).
    pub allowzero: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransposeAttrs {
    /// Output axis i takes input axis `perm[i]`; absent means reverse the axes.
    pub perm: Option<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitAttrs {
    pub axis: i64,
    /// Equal parts when there is no `split` input (the last one may be smaller).
    pub num_outputs: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatherNdAttrs {
    pub batch_dims: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScatterNdAttrs {
    pub reduction: ScatterReduction,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScatterElementsAttrs {
    pub axis: i64,
    pub reduction: ScatterReduction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PadAttrs {
    pub mode: PadMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinateTransform {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AspectRatioPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coordinate_transform: CoordinateTransform,
    pub nearest_mode: NearestMode,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    pub antialias: bool,
    pub keep_aspect_ratio_policy: AspectRatioPolicy,
    /// Axes the `roi`/`scales`/`sizes` inputs refer to; all axes when absent.
    pub axes: Option<Vec<i64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeAttrs {
    pub start: i64,
    pub end: Option<i64>,
}

/// A scalar constant with its dtype; integers are kept exact.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
}

impl Scalar {
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::Float(v) => v,
            Scalar::Int(v) => v as f64,
            Scalar::UInt(v) => v as f64,
            Scalar::Bool(v) => f64::from(u8::from(v)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantOfShapeAttrs {
    pub dtype: DType,
    pub value: Scalar,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EinsumAttrs {
    pub equation: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKAttrs {
    pub axis: i64,
    pub largest: bool,
    pub sorted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CumSumAttrs {
    pub exclusive: bool,
    pub reverse: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepthToSpaceMode {
    /// depth-column-row
    Dcr,
    /// column-row-depth
    Crd,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthToSpaceAttrs {
    pub blocksize: usize,
    pub mode: DepthToSpaceMode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSizeAttrs {
    pub blocksize: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriluAttrs {
    pub upper: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeAttrs {
    pub axis: i64,
    pub saturate: bool,
    /// Blocked quantization along `axis` (0 = per-axis or per-tensor).
    pub block_size: usize,
    /// Output dtype when there is no zero-point input to take it from.
    pub output_dtype: Option<DType>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DequantizeAttrs {
    pub axis: i64,
    pub block_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RnnDirection {
    Forward,
    Reverse,
    Bidirectional,
}

/// Attributes shared by LSTM and GRU (ONNX semantics, default activations when empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnAttrs {
    pub hidden_size: usize,
    pub direction: RnnDirection,
    /// Activations per direction in ONNX order (f, g, h for LSTM; f, g for GRU).
    pub activations: Vec<String>,
    pub activation_alpha: Vec<f32>,
    pub activation_beta: Vec<f32>,
    pub clip: Option<f32>,
    /// `[seq, batch, ...]` (false) or `[batch, seq, ...]` (true).
    pub batch_first: bool,
    /// LSTM: couple input and forget gates.
    pub input_forget: bool,
    /// GRU: apply the reset gate after the recurrent linear transform.
    pub linear_before_reset: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneHotAttrs {
    pub axis: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EyeLikeAttrs {
    pub dtype: Option<DType>,
    pub k: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressAttrs {
    pub axis: Option<i64>,
}

/// An attribute of an op the IR does not know, kept so reports can show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    String(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
    /// A tensor attribute, summarized.
    Tensor {
        dtype: String,
        dims: Vec<i64>,
    },
    /// A subgraph attribute, summarized by its node count.
    Graph {
        nodes: usize,
    },
    Other(String),
}

/// An operator the IR does not model. Conversions that need it list every such node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomOp {
    pub domain: String,
    pub name: String,
    pub attrs: BTreeMap<String, AttrValue>,
}

macro_rules! define_ops {
    ($( $(#[$doc:meta])* $name:ident $( ( $attrs:ty ) )? ),* $(,)?) => {
        /// An IR operation with its attributes.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum Op {
            $( $(#[$doc])* $name $( ($attrs) )?, )*
            /// An operator unknown to the IR (see [`CustomOp`]).
            Custom(CustomOp),
        }

        /// The kind of an [`Op`], without its attributes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind {
            $( $name, )*
            Custom,
        }

        impl Op {
            pub fn kind(&self) -> OpKind {
                match self {
                    $( Op::$name { .. } => OpKind::$name, )*
                    Op::Custom(_) => OpKind::Custom,
                }
            }
        }

        impl OpKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [OpKind] = &[ $( OpKind::$name, )* OpKind::Custom ];

            pub const fn name(self) -> &'static str {
                match self {
                    $( OpKind::$name => stringify!($name), )*
                    OpKind::Custom => "Custom",
                }
            }

            pub fn from_name(name: &str) -> Option<OpKind> {
                OpKind::ALL.iter().copied().find(|k| k.name() == name)
            }
        }
    };
}

define_ops! {
    // Elementwise, one input.
    Abs, Neg, Sqrt, Reciprocal, Exp, Log, Erf, Tanh, Sigmoid, Relu, Softplus, Softsign,
    Floor, Ceil, Round, Sign, Sin, Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh,
    /// `x * relu6(x + 3) / 6`
    HardSwish,
    /// `x * tanh(softplus(x))`
    Mish,
    Not, BitwiseNot, IsNaN,
    /// The input unchanged.
    Identity,
    IsInf(IsInfAttrs),
    /// `max(0, min(1, alpha * x + beta))`
    HardSigmoid(AlphaBetaAttrs),
    LeakyRelu(AlphaAttrs),
    Elu(AlphaAttrs),
    Celu(AlphaAttrs),
    ThresholdedRelu(AlphaAttrs),
    Selu(SeluAttrs),
    Gelu(GeluAttrs),
    Shrink(ShrinkAttrs),
    /// `x * sigmoid(alpha * x)`; SiLU is `alpha = 1`.
    Swish(AlphaAttrs),
    // Elementwise, two inputs, numpy broadcasting.
    Add, Sub, Mul, Div, Pow,
    Mod(ModAttrs),
    /// `x < 0 ? slope * x : x`, slope broadcast to x.
    PRelu,
    Equal, Less, LessOrEqual, Greater, GreaterOrEqual, And, Or, Xor,
    BitwiseAnd, BitwiseOr, BitwiseXor,
    BitShift(BitShiftAttrs),
    // Elementwise, one or more inputs.
    Min, Max, Sum, Mean,
    /// Inputs: condition, x, y.
    Where,
    /// Inputs: x, min?, max?
    Clip,
    Cast(CastAttrs),
    /// Inputs: x, target (its dtype is taken).
    CastLike(CastAttrs),
    // Linear algebra.
    /// numpy `matmul` semantics.
    MatMul,
    /// Inputs: x [..., K], weight [K, N], bias? [N].  `matmul(x, weight) + bias`,
    /// then the fused activation if any. Not an ONNX op: fusion produces it.
    Linear(LinearAttrs),
    /// Inputs: A, B, C?  `alpha * A' * B' + beta * C`.
    Gemm(GemmAttrs),
    /// Inputs: A (u8/i8), B (u8/i8), a_zero_point?, b_zero_point?; i32 output.
    MatMulInteger,
    /// Inputs: operands in equation order.
    Einsum(EinsumAttrs),
    /// Inputs: X [N,C,...], W [M,C/group,k...], B? [M].
    Conv(ConvAttrs),
    /// Inputs: X [N,C,...], W [C,M/group,k...], B? [M].
    ConvTranspose(ConvTransposeAttrs),
    // Normalization.
    /// Inference form. Inputs: X, scale, bias, mean, var.
    BatchNormalization(EpsilonAttrs),
    /// Inputs: X, scale, bias.
    InstanceNormalization(EpsilonAttrs),
    /// Inputs: X, scale, bias?  Normalizes axes `axis..rank`.
    LayerNormalization(LayerNormAttrs),
    /// Inputs: X, scale [C], bias [C].
    GroupNormalization(GroupNormAttrs),
    /// Inputs: X, scale.  `x / sqrt(mean(x²) + epsilon) * scale` over axes `axis..rank`.
    RmsNormalization(LayerNormAttrs),
    LpNormalization(LpNormAttrs),
    MeanVarianceNormalization(AxesAttrs),
    /// Inputs: Q, K, V, attn_mask?  `softmax(scale·Q·Kᵀ + mask)·V` per head, with
    /// grouped-query heads repeated; a bool mask is true where a query may attend.
    Attention(AttentionAttrs),
    // Pooling.
    MaxPool(PoolAttrs),
    AveragePool(PoolAttrs),
    LpPool(LpPoolAttrs),
    GlobalAveragePool, GlobalMaxPool,
    // Softmax family.
    Softmax(SoftmaxAttrs),
    LogSoftmax(SoftmaxAttrs),
    Hardmax(SoftmaxAttrs),
    // Reductions. Inputs: data, axes? (i64).
    ReduceMean(ReduceAttrs), ReduceSum(ReduceAttrs), ReduceMax(ReduceAttrs),
    ReduceMin(ReduceAttrs), ReduceProd(ReduceAttrs), ReduceL1(ReduceAttrs),
    ReduceL2(ReduceAttrs), ReduceLogSum(ReduceAttrs), ReduceLogSumExp(ReduceAttrs),
    ReduceSumSquare(ReduceAttrs),
    ArgMax(ArgReduceAttrs), ArgMin(ArgReduceAttrs),
    // Shape and data movement.
    /// Inputs: data, shape (i64).
    Reshape(ReshapeAttrs),
    Flatten(AxisAttrs),
    Transpose(TransposeAttrs),
    /// Inputs: data, axes? (i64).
    Squeeze,
    /// Inputs: data, axes (i64).
    Unsqueeze,
    Concat(AxisAttrs),
    /// Inputs: data, split? (i64 sizes). One output per part.
    Split(SplitAttrs),
    /// Inputs: data, starts, ends, axes?, steps?
    Slice,
    /// Inputs: data, indices.
    Gather(AxisAttrs),
    GatherElements(AxisAttrs),
    GatherNd(GatherNdAttrs),
    /// Inputs: data, indices, updates.
    ScatterNd(ScatterNdAttrs),
    ScatterElements(ScatterElementsAttrs),
    /// Inputs: data, shape.
    Expand,
    /// Inputs: data, repeats.
    Tile,
    /// Inputs: data, pads (begins then ends), constant_value?, axes?
    Pad(PadAttrs),
    /// Inputs: X, roi?, scales?, sizes?
    Resize(ResizeAttrs),
    /// Output: the input's shape as i64 (dims `start..end`).
    Shape(ShapeAttrs),
    /// Output: the input's element count as an i64 scalar.
    Size,
    /// Input: the output shape (i64).
    ConstantOfShape(ConstantOfShapeAttrs),
    /// Inputs: start, limit, delta (scalars).
    Range,
    /// Inputs: X, k. Outputs: values, indices.
    TopK(TopKAttrs),
    /// Inputs: X, axis.
    CumSum(CumSumAttrs),
    DepthToSpace(DepthToSpaceAttrs),
    SpaceToDepth(BlockSizeAttrs),
    /// Inputs: X, k?
    Trilu(TriluAttrs),
    /// Inputs: indices, depth, values [off, on].
    OneHot(OneHotAttrs),
    NonZero,
    EyeLike(EyeLikeAttrs),
    /// Inputs: data, condition.
    Compress(CompressAttrs),
    // Quantization.
    /// Inputs: x, y_scale, y_zero_point?
    QuantizeLinear(QuantizeAttrs),
    /// Inputs: x, x_scale, x_zero_point?
    DequantizeLinear(DequantizeAttrs),
    // Recurrent.
    /// Inputs: X, W, R, B?, sequence_lens?, initial_h?, initial_c?, P?. Outputs: Y, Y_h, Y_c.
    Lstm(RnnAttrs),
    /// Inputs: X, W, R, B?, sequence_lens?, initial_h?. Outputs: Y, Y_h.
    Gru(RnnAttrs),
}

impl Op {
    pub fn name(&self) -> &str {
        match self {
            Op::Custom(c) => &c.name,
            _ => self.kind().name(),
        }
    }

    /// How many inputs the op takes: `(required, max)`, `None` for no maximum.
    /// The first `required` inputs must be present; the rest are optional.
    pub fn input_arity(&self) -> (usize, Option<usize>) {
        use Op::*;
        match self {
            Abs | Neg | Sqrt | Reciprocal | Exp | Log | Erf | Tanh | Sigmoid | Relu | Softplus
            | Softsign | Floor | Ceil | Round | Sign | Sin | Cos | Tan | Asin | Acos | Atan
            | Sinh | Cosh | Asinh | Acosh | Atanh | HardSwish | Mish | Not | BitwiseNot | IsNaN
            | Identity | IsInf(_) | HardSigmoid(_) | LeakyRelu(_) | Elu(_) | Celu(_)
            | ThresholdedRelu(_) | Selu(_) | Gelu(_) | Shrink(_) | Swish(_) | Cast(_) => {
                (1, Some(1))
            }
            Add | Sub | Mul | Div | Pow | Mod(_) | PRelu | Equal | Less | LessOrEqual | Greater
            | GreaterOrEqual | And | Or | Xor | BitwiseAnd | BitwiseOr | BitwiseXor
            | BitShift(_) | CastLike(_) | MatMul => (2, Some(2)),
            Min | Max | Sum | Mean | Concat(_) => (1, None),
            Einsum(_) => (1, None),
            Where => (3, Some(3)),
            Clip => (1, Some(3)),
            Gemm(_) | Linear(_) => (2, Some(3)),
            MatMulInteger => (2, Some(4)),
            Conv(_) | ConvTranspose(_) => (2, Some(3)),
            BatchNormalization(_) => (5, Some(5)),
            InstanceNormalization(_) | GroupNormalization(_) => (3, Some(3)),
            LayerNormalization(_) => (2, Some(3)),
            RmsNormalization(_) => (2, Some(2)),
            Attention(_) => (3, Some(4)),
            LpNormalization(_) | MeanVarianceNormalization(_) => (1, Some(1)),
            MaxPool(_) | AveragePool(_) | LpPool(_) | GlobalAveragePool | GlobalMaxPool => {
                (1, Some(1))
            }
            Softmax(_) | LogSoftmax(_) | Hardmax(_) => (1, Some(1)),
            ReduceMean(_) | ReduceSum(_) | ReduceMax(_) | ReduceMin(_) | ReduceProd(_)
            | ReduceL1(_) | ReduceL2(_) | ReduceLogSum(_) | ReduceLogSumExp(_)
            | ReduceSumSquare(_) => (1, Some(2)),
            ArgMax(_) | ArgMin(_) => (1, Some(1)),
            Reshape(_) => (2, Some(2)),
            Flatten(_) | Transpose(_) => (1, Some(1)),
            Squeeze => (1, Some(2)),
            Unsqueeze => (2, Some(2)),
            Split(_) => (1, Some(2)),
            Slice => (3, Some(5)),
            Gather(_) | GatherElements(_) | GatherNd(_) => (2, Some(2)),
            ScatterNd(_) | ScatterElements(_) => (3, Some(3)),
            Expand | Tile => (2, Some(2)),
            Pad(_) => (2, Some(4)),
            Resize(_) => (1, Some(4)),
            Shape(_) | Size => (1, Some(1)),
            ConstantOfShape(_) => (1, Some(1)),
            Range => (3, Some(3)),
            TopK(_) => (2, Some(2)),
            CumSum(_) => (2, Some(2)),
            DepthToSpace(_) | SpaceToDepth(_) => (1, Some(1)),
            Trilu(_) => (1, Some(2)),
            OneHot(_) => (3, Some(3)),
            NonZero | EyeLike(_) => (1, Some(1)),
            Compress(_) => (2, Some(2)),
            QuantizeLinear(_) | DequantizeLinear(_) => (2, Some(3)),
            Lstm(_) => (3, Some(8)),
            Gru(_) => (3, Some(6)),
            Custom(_) => (0, None),
        }
    }

    /// How many outputs the op produces: `(min, max)`.
    pub fn output_arity(&self) -> (usize, Option<usize>) {
        match self {
            Op::Split(_) | Op::Custom(_) => (1, None),
            Op::TopK(_) => (2, Some(2)),
            Op::Lstm(_) => (1, Some(3)),
            Op::Gru(_) => (1, Some(2)),
            _ => (1, Some(1)),
        }
    }

    /// The attributes as a JSON object, or `None` for ops without attributes.
    pub fn attrs_json(&self) -> Option<serde_json::Value> {
        match serde_json::to_value(self).ok()? {
            serde_json::Value::Object(mut m) => m.remove(self.kind().name()),
            _ => None,
        }
    }

    /// Rebuilds an op from its kind name and attributes (inverse of [`Op::attrs_json`]).
    pub fn from_name_and_attrs(name: &str, attrs: Option<serde_json::Value>) -> Result<Op, String> {
        let value = match attrs {
            None => serde_json::Value::String(name.to_string()),
            Some(a) => serde_json::json!({ name: a }),
        };
        serde_json::from_value(value).map_err(|e| format!("op {name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_unique_names() {
        let mut names: Vec<_> = OpKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        assert_eq!(OpKind::from_name("Conv"), Some(OpKind::Conv));
    }

    #[test]
    fn attrs_round_trip_through_json() {
        let ops = [
            Op::Relu,
            Op::Conv(ConvAttrs {
                kernel_shape: Some(vec![3, 3]),
                strides: vec![2, 2],
                dilations: vec![1, 1],
                padding: Padding::Explicit(vec![1, 1, 1, 1]),
                group: 1,
                activation: Some(FusedActivation::Relu6),
            }),
            Op::Linear(LinearAttrs { activation: None }),
            Op::Cast(CastAttrs {
                to: DType::F16,
                saturate: true,
            }),
            Op::Custom(CustomOp {
                domain: "com.example".into(),
                name: "Frobnicate".into(),
                attrs: BTreeMap::from([("k".into(), AttrValue::Ints(vec![1, 2]))]),
            }),
        ];
        for op in ops {
            let back = Op::from_name_and_attrs(op.kind().name(), op.attrs_json()).unwrap();
            assert_eq!(back, op);
        }
    }
}
