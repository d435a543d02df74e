//! IR op -> ONNX node form: op type, attributes, and the lowest default-domain
//! opset at which that form means what the IR op means.
//!
//! The IR takes every attribute that later became an input as an input (see
//! `ir::ops`), so an op's opset is the one where ONNX took it as an input
//! (Squeeze axes 13, Reduce* axes 18, Pad constant_value 11, ...). Inputs are
//! never demoted back to attributes to reach a lower opset. Optional
//! attributes are written only when they differ from ONNX's default, so a
//! later-opset attribute only raises the opset when it is used.

use bytes::Bytes;

use crate::formats::onnx::dtype::to_onnx;
use crate::formats::onnx::proto::attribute_proto::AttributeType;
use crate::formats::onnx::proto::{AttributeProto, TensorProto};
use crate::ir::ops::{
    AspectRatioPolicy, ConvAttrs, ConvTransposeAttrs, CoordinateTransform, DepthToSpaceMode,
    GeluApproximation, NearestMode, Padding, PoolAttrs, ReduceAttrs, ResizeMode, RnnAttrs,
    RnnDirection, Scalar, ScatterReduction, ShiftDirection, SoftmaxAttrs,
};
use crate::ir::{DType, Graph, Node, Op};

/// Below this, ops broadcast without numpy rules; the IR assumes numpy
/// broadcasting everywhere.
pub const MIN_OPSET: i64 = 7;

/// One IR node in ONNX form.
#[derive(Debug)]
pub struct Lowered {
    pub op_type: &'static str,
    pub attrs: Vec<AttributeProto>,
    /// The lowest opset at which this form has the IR op's meaning.
    pub since: i64,
}

/// Why a node has no ONNX form (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoForm {
    /// The ONNX legalization stage rewrites it.
    NeedsLegalize(String),
    Unsupported(String),
}

/// The node's ONNX form when written at `opset` (only Split's attributes
/// depend on it; `since` never does).
pub fn lower(g: &Graph, node: &Node, opset: i64) -> Result<Lowered, NoForm> {
    let mut l = lower_op(g, node, opset)?;
    l.since = l
        .since
        .max(MIN_OPSET)
        .max(dtype_since(g, node, &node.op))
        .max(op_dtype_since(l.op_type, &dtypes(g, node)));
    Ok(l)
}

fn form(op_type: &'static str, since: i64, attrs: Vec<AttributeProto>) -> Lowered {
    Lowered {
        op_type,
        attrs,
        since,
    }
}

fn lower_op(g: &Graph, node: &Node, opset: i64) -> Result<Lowered, NoForm> {
    use Op::*;
    let plain = |op_type: &'static str, since: i64| Ok(form(op_type, since, vec![]));
    let has = |i: usize| node.input(i).is_some();
    match &node.op {
        Abs => plain("Abs", 6),
        Neg => plain("Neg", 6),
        Sqrt => plain("Sqrt", 6),
        Reciprocal => plain("Reciprocal", 6),
        Exp => plain("Exp", 6),
        Log => plain("Log", 6),
        Erf => plain("Erf", 9),
        Tanh => plain("Tanh", 6),
        Sigmoid => plain("Sigmoid", 6),
        Relu => plain("Relu", 6),
        Softplus => plain("Softplus", 1),
        Softsign => plain("Softsign", 1),
        Floor => plain("Floor", 6),
        Ceil => plain("Ceil", 6),
        Round => plain("Round", 11),
        Sign => plain("Sign", 9),
        Sin => plain("Sin", 7),
        Cos => plain("Cos", 7),
        Tan => plain("Tan", 7),
        Asin => plain("Asin", 7),
        Acos => plain("Acos", 7),
        Atan => plain("Atan", 7),
        Sinh => plain("Sinh", 9),
        Cosh => plain("Cosh", 9),
        Asinh => plain("Asinh", 9),
        Acosh => plain("Acosh", 9),
        Atanh => plain("Atanh", 9),
        HardSwish => plain("HardSwish", 14),
        Mish => plain("Mish", 18),
        Not => plain("Not", 1),
        BitwiseNot => plain("BitwiseNot", 18),
        IsNaN => plain("IsNaN", 9),
        Identity => plain("Identity", 1),
        IsInf(a) => Ok(form(
            "IsInf",
            10,
            vec![
                int("detect_negative", a.detect_negative.into()),
                int("detect_positive", a.detect_positive.into()),
            ],
        )),
        HardSigmoid(a) => Ok(form(
            "HardSigmoid",
            6,
            vec![float("alpha", a.alpha), float("beta", a.beta)],
        )),
        LeakyRelu(a) => Ok(form("LeakyRelu", 6, vec![float("alpha", a.alpha)])),
        Elu(a) => Ok(form("Elu", 6, vec![float("alpha", a.alpha)])),
        Celu(a) => Ok(form("Celu", 12, vec![float("alpha", a.alpha)])),
        ThresholdedRelu(a) => Ok(form("ThresholdedRelu", 10, vec![float("alpha", a.alpha)])),
        Selu(a) => Ok(form(
            "Selu",
            6,
            vec![float("alpha", a.alpha), float("gamma", a.gamma)],
        )),
        Gelu(a) => {
            let approximate = match a.approximate {
                GeluApproximation::None => "none",
                GeluApproximation::Tanh => "tanh",
            };
            Ok(form("Gelu", 20, vec![string("approximate", approximate)]))
        }
        Shrink(a) => Ok(form(
            "Shrink",
            9,
            vec![float("bias", a.bias), float("lambd", a.lambd)],
        )),
        Add => plain("Add", 7),
        Sub => plain("Sub", 7),
        Mul => plain("Mul", 7),
        Div => plain("Div", 7),
        Pow => {
            let mixed = dtype(g, node, 0) != dtype(g, node, 1);
            plain("Pow", if mixed { 12 } else { 7 })
        }
        Mod(a) => Ok(form("Mod", 10, vec![int("fmod", a.fmod.into())])),
        PRelu => plain("PRelu", 9),
        Equal => plain("Equal", 11),
        Less => plain("Less", 9),
        LessOrEqual => plain("LessOrEqual", 12),
        Greater => plain("Greater", 9),
        GreaterOrEqual => plain("GreaterOrEqual", 12),
        And => plain("And", 7),
        Or => plain("Or", 7),
        Xor => plain("Xor", 7),
        BitwiseAnd => plain("BitwiseAnd", 18),
        BitwiseOr => plain("BitwiseOr", 18),
        BitwiseXor => plain("BitwiseXor", 18),
        BitShift(a) => {
            let direction = match a.direction {
                ShiftDirection::Left => "LEFT",
                ShiftDirection::Right => "RIGHT",
            };
            Ok(form("BitShift", 11, vec![string("direction", direction)]))
        }
        Min => plain("Min", if integer(g, node) { 12 } else { 8 }),
        Max => plain("Max", if integer(g, node) { 12 } else { 8 }),
        Sum => plain("Sum", 8),
        Mean => plain("Mean", 8),
        Where => plain("Where", 9),
        Clip => plain("Clip", if integer(g, node) { 12 } else { 11 }),
        Cast(a) => Ok(form("Cast", 6, vec![int("to", onnx_type(a.to)?.into())])),
        CastLike(_) => plain("CastLike", 15),
        MatMul => plain("MatMul", 9),
        Gemm(a) => Ok(form(
            "Gemm",
            if has(2) { 7 } else { 11 },
            vec![
                float("alpha", a.alpha),
                float("beta", a.beta),
                int("transA", a.trans_a.into()),
                int("transB", a.trans_b.into()),
            ],
        )),
        MatMulInteger => plain("MatMulInteger", 10),
        Einsum(a) => Ok(form("Einsum", 12, vec![string("equation", &a.equation)])),
        Swish(a) => Ok(form("Swish", 24, vec![float("alpha", a.alpha)])),
        RmsNormalization(a) => Ok(form(
            "RMSNormalization",
            23,
            vec![int("axis", a.axis), float("epsilon", a.epsilon)],
        )),
        Attention(a) => {
            let mut attrs = vec![int("is_causal", a.is_causal.into())];
            if let Some(scale) = a.scale {
                attrs.push(float("scale", scale));
            }
            if let Some(n) = a.q_num_heads {
                attrs.push(int("q_num_heads", n as i64));
            }
            if let Some(n) = a.kv_num_heads {
                attrs.push(int("kv_num_heads", n as i64));
            }
            Ok(form("Attention", 23, attrs))
        }
        Linear(_) => Err(NoForm::NeedsLegalize(
            "a biased linear op becomes MatMul + Add".into(),
        )),
        Conv(ConvAttrs {
            activation: Some(_),
            ..
        })
        | ConvTranspose(ConvTransposeAttrs {
            activation: Some(_),
            ..
        }) => Err(NoForm::NeedsLegalize(
            "a fused activation becomes its own node".into(),
        )),
        Conv(a) => {
            let mut attrs = window_attrs(
                a.kernel_shape.as_deref(),
                &a.strides,
                &a.dilations,
                &a.padding,
            );
            attrs.push(int("group", a.group as i64));
            Ok(form("Conv", 11, attrs))
        }
        ConvTranspose(a) => {
            let mut attrs = window_attrs(
                a.kernel_shape.as_deref(),
                &a.strides,
                &a.dilations,
                &a.padding,
            );
            attrs.push(int("group", a.group as i64));
            if a.output_padding.iter().any(|&p| p != 0) {
                attrs.push(ints("output_padding", &a.output_padding));
            }
            if let Some(shape) = &a.output_shape {
                attrs.push(ints("output_shape", shape));
            }
            Ok(form("ConvTranspose", 11, attrs))
        }
        BatchNormalization(a) => Ok(form(
            "BatchNormalization",
            9,
            vec![float("epsilon", a.epsilon)],
        )),
        InstanceNormalization(a) => Ok(form(
            "InstanceNormalization",
            6,
            vec![float("epsilon", a.epsilon)],
        )),
        LayerNormalization(a) => Ok(form(
            "LayerNormalization",
            17,
            vec![int("axis", a.axis), float("epsilon", a.epsilon)],
        )),
        GroupNormalization(a) => Ok(form(
            "GroupNormalization",
            21,
            vec![
                float("epsilon", a.epsilon),
                int("num_groups", a.num_groups as i64),
            ],
        )),
        LpNormalization(a) => Ok(form(
            "LpNormalization",
            1,
            vec![int("axis", a.axis), int("p", a.p)],
        )),
        MeanVarianceNormalization(a) => Ok(form(
            "MeanVarianceNormalization",
            9,
            vec![ints_i64("axes", &a.axes)],
        )),
        MaxPool(a) => Ok(pool("MaxPool", a, false)),
        AveragePool(a) => Ok(pool("AveragePool", a, true)),
        LpPool(a) => {
            let mut l = pool("LpPool", &a.pool, false);
            l.attrs.push(int("p", a.p));
            l.since = l.since.max(11);
            Ok(l)
        }
        GlobalAveragePool => plain("GlobalAveragePool", 1),
        GlobalMaxPool => plain("GlobalMaxPool", 1),
        Softmax(a) => softmax("Softmax", g, node, a),
        LogSoftmax(a) => softmax("LogSoftmax", g, node, a),
        Hardmax(a) => softmax("Hardmax", g, node, a),
        ReduceMean(a) => Ok(reduce("ReduceMean", 18, a, has(1))),
        ReduceSum(a) => Ok(reduce("ReduceSum", 13, a, has(1))),
        ReduceMax(a) => Ok(reduce("ReduceMax", 18, a, has(1))),
        ReduceMin(a) => Ok(reduce("ReduceMin", 18, a, has(1))),
        ReduceProd(a) => Ok(reduce("ReduceProd", 18, a, has(1))),
        ReduceL1(a) => Ok(reduce("ReduceL1", 18, a, has(1))),
        ReduceL2(a) => Ok(reduce("ReduceL2", 18, a, has(1))),
        ReduceLogSum(a) => Ok(reduce("ReduceLogSum", 18, a, has(1))),
        ReduceLogSumExp(a) => Ok(reduce("ReduceLogSumExp", 18, a, has(1))),
        ReduceSumSquare(a) => Ok(reduce("ReduceSumSquare", 18, a, has(1))),
        ArgMax(a) | ArgMin(a) => {
            let op_type = if matches!(node.op, ArgMax(_)) {
                "ArgMax"
            } else {
                "ArgMin"
            };
            let mut attrs = vec![int("axis", a.axis), int("keepdims", a.keepdims.into())];
            if a.select_last_index {
                attrs.push(int("select_last_index", 1));
            }
            Ok(form(
                op_type,
                if a.select_last_index { 12 } else { 11 },
                attrs,
            ))
        }
        Reshape(a) => Ok(if a.allowzero {
            form("Reshape", 14, vec![int("allowzero", 1)])
        } else {
            form("Reshape", 5, vec![])
        }),
        Flatten(a) => Ok(form(
            "Flatten",
            if a.axis < 0 { 11 } else { 9 },
            vec![int("axis", a.axis)],
        )),
        Transpose(a) => Ok(form(
            "Transpose",
            1,
            a.perm
                .as_deref()
                .map(|p| ints("perm", p))
                .into_iter()
                .collect(),
        )),
        Squeeze => plain("Squeeze", 13),
        Unsqueeze => plain("Unsqueeze", 13),
        Concat(a) => Ok(form("Concat", 11, vec![int("axis", a.axis)])),
        Split(a) => split(g, node, a, opset),
        Slice => plain("Slice", 11),
        Gather(a) => Ok(form("Gather", 11, vec![int("axis", a.axis)])),
        GatherElements(a) => Ok(form("GatherElements", 11, vec![int("axis", a.axis)])),
        GatherNd(a) => Ok(if a.batch_dims > 0 {
            form("GatherND", 12, vec![int("batch_dims", a.batch_dims as i64)])
        } else {
            form("GatherND", 11, vec![])
        }),
        ScatterNd(a) => {
            let (since, attrs) = scatter_reduction(a.reduction);
            Ok(form("ScatterND", since, attrs))
        }
        ScatterElements(a) => {
            let (since, mut attrs) = scatter_reduction(a.reduction);
            attrs.push(int("axis", a.axis));
            Ok(form("ScatterElements", since, attrs))
        }
        Expand => plain("Expand", 8),
        Tile => plain("Tile", 6),
        Pad(a) => {
            use crate::ir::ops::PadMode;
            let (mode, since) = match a.mode {
                PadMode::Constant => ("constant", 11),
                PadMode::Reflect => ("reflect", 11),
                PadMode::Edge => ("edge", 11),
                PadMode::Wrap => ("wrap", 19),
            };
            let since = if has(3) { since.max(18) } else { since };
            Ok(form("Pad", since, vec![string("mode", mode)]))
        }
        Resize(a) => Ok(resize(a)),
        Shape(a) => {
            let mut attrs = Vec::new();
            if a.start != 0 {
                attrs.push(int("start", a.start));
            }
            if let Some(end) = a.end {
                attrs.push(int("end", end));
            }
            let since = if attrs.is_empty() { 1 } else { 15 };
            Ok(form("Shape", since, attrs))
        }
        Size => plain("Size", 1),
        ConstantOfShape(a) => {
            let value = scalar_tensor(a.dtype, a.value)?;
            Ok(form("ConstantOfShape", 9, vec![tensor("value", value)]))
        }
        Range => plain("Range", 11),
        TopK(a) => Ok(form(
            "TopK",
            11,
            vec![
                int("axis", a.axis),
                int("largest", a.largest.into()),
                int("sorted", a.sorted.into()),
            ],
        )),
        CumSum(a) => Ok(form(
            "CumSum",
            11,
            vec![
                int("exclusive", a.exclusive.into()),
                int("reverse", a.reverse.into()),
            ],
        )),
        DepthToSpace(a) => {
            let mut attrs = vec![int("blocksize", a.blocksize as i64)];
            if a.mode == DepthToSpaceMode::Crd {
                attrs.push(string("mode", "CRD"));
            }
            let since = if attrs.len() > 1 { 11 } else { 1 };
            Ok(form("DepthToSpace", since, attrs))
        }
        SpaceToDepth(a) => Ok(form(
            "SpaceToDepth",
            1,
            vec![int("blocksize", a.blocksize as i64)],
        )),
        Trilu(a) => Ok(form("Trilu", 14, vec![int("upper", a.upper.into())])),
        OneHot(a) => Ok(form("OneHot", 11, vec![int("axis", a.axis)])),
        NonZero => plain("NonZero", 9),
        EyeLike(a) => {
            let mut attrs = vec![int("k", a.k)];
            if let Some(d) = a.dtype {
                attrs.push(int("dtype", onnx_type(d)?.into()));
            }
            Ok(form("EyeLike", 9, attrs))
        }
        Compress(a) => Ok(form(
            "Compress",
            11,
            a.axis.map(|x| int("axis", x)).into_iter().collect(),
        )),
        QuantizeLinear(a) => {
            let (mut since, mut attrs) = quant_axis(g, node, a.axis, a.block_size);
            if let Some(d) = a.output_dtype {
                attrs.push(int("output_dtype", onnx_type(d)?.into()));
                since = since.max(21);
            }
            Ok(form("QuantizeLinear", since, attrs))
        }
        DequantizeLinear(a) => {
            let (since, attrs) = quant_axis(g, node, a.axis, a.block_size);
            Ok(form("DequantizeLinear", since, attrs))
        }
        Lstm(a) => Ok(recurrent("LSTM", a, true)),
        Gru(a) => Ok(recurrent("GRU", a, false)),
        Custom(c) => Err(NoForm::Unsupported(format!(
            "'{}' is not an op edgeconv models; its attributes were only summarized at import, so it cannot be written back",
            if c.domain.is_empty() {
                c.name.clone()
            } else {
                format!("{}.{}", c.domain, c.name)
            }
        ))),
    }
}

/// Opsets that type constraints require beyond the op's form: bfloat16 came
/// to most ops in 13, 4-bit integers in 21, 8/16-bit integer arithmetic in 14.
fn dtype_since(g: &Graph, node: &Node, op: &Op) -> i64 {
    let dtypes = dtypes(g, node);
    let mut since = 1;
    if dtypes.contains(&DType::BF16) {
        since = since.max(13);
    }
    if dtypes.iter().any(|d| matches!(d, DType::I4 | DType::U4)) {
        since = since.max(21);
    }
    let small_int = |d: &DType| matches!(d, DType::I8 | DType::U8 | DType::I16 | DType::U16);
    if matches!(op, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Relu)
        && dtypes.iter().any(small_int)
    {
        since = since.max(14);
    }
    if matches!(op, Op::QuantizeLinear(_) | Op::DequantizeLinear(_))
        && dtypes.iter().any(|d| matches!(d, DType::I16 | DType::U16))
    {
        since = since.max(21);
    }
    since
}

/// Element types particular ops accepted only from a later version on
/// (`onnx.defs` type constraints; found by converting the ONNX backend node
/// tests). Not a complete table: the node-test sweep is what finds gaps.
fn op_dtype_since(op_type: &str, dtypes: &[DType]) -> i64 {
    use DType::*;
    let any = |set: &[DType]| dtypes.iter().any(|d| set.contains(d));
    match op_type {
        "BitShift" if any(&[I8, I16, I32, I64]) => 28,
        "Celu" if any(&[F16, BF16]) => 28,
        "Compress" | "Einsum" | "OneHot" if any(&[BF16]) => 28,
        "Range" if any(&[F16, BF16]) => 27,
        "IsInf" if any(&[F16, BF16]) => 20,
        "ReduceMax" | "ReduceMin" if any(&[Bool]) => 20,
        "Equal" if any(&[String]) => 19,
        "Acos" | "Asin" | "Atan" | "Acosh" | "Asinh" | "Atanh" | "Cos" | "Cosh" | "Sin"
        | "Sinh" | "Tan" | "Round" | "Softplus" | "Softsign" | "Elu" | "ThresholdedRelu"
        | "HardSwish" | "Mish" | "EyeLike" | "Conv" | "ConvTranspose" | "MaxPool"
        | "AveragePool" | "LpPool" | "GlobalAveragePool" | "GlobalMaxPool" | "LSTM" | "GRU"
            if any(&[BF16]) =>
        {
            22
        }
        "QuantizeLinear" | "DequantizeLinear" if any(&[F16, BF16]) => 19,
        "Where" | "LeakyRelu" | "PRelu" | "GreaterOrEqual" | "LessOrEqual" if any(&[BF16]) => 16,
        "MaxPool" | "ReduceMax" | "ReduceMin" if any(&[I8, U8]) => 12,
        "Pow" if any(&[I32, I64]) => 12,
        _ => 1,
    }
}

fn dtypes(g: &Graph, node: &Node) -> Vec<DType> {
    node.inputs
        .iter()
        .flatten()
        .chain(&node.outputs)
        .filter_map(|&v| g.fact(v).dtype)
        .collect()
}

fn dtype(g: &Graph, node: &Node, i: usize) -> Option<DType> {
    node.input(i).and_then(|v| g.fact(v).dtype)
}

fn integer(g: &Graph, node: &Node) -> bool {
    dtype(g, node, 0).is_some_and(DType::is_integer)
}

fn onnx_type(d: DType) -> Result<i32, NoForm> {
    to_onnx(d)
        .map(|t| t as i32)
        .ok_or_else(|| NoForm::Unsupported(format!("ONNX has no element type for {d}")))
}

fn window_attrs(
    kernel: Option<&[usize]>,
    strides: &[usize],
    dilations: &[usize],
    padding: &Padding,
) -> Vec<AttributeProto> {
    let mut attrs = Vec::new();
    if let Some(k) = kernel {
        attrs.push(ints("kernel_shape", k));
    }
    attrs.push(ints("strides", strides));
    if dilations.iter().any(|&d| d != 1) {
        attrs.push(ints("dilations", dilations));
    }
    attrs.push(match padding {
        Padding::Explicit(pads) => ints("pads", pads),
        Padding::SameUpper => string("auto_pad", "SAME_UPPER"),
        Padding::SameLower => string("auto_pad", "SAME_LOWER"),
        Padding::Valid => string("auto_pad", "VALID"),
    });
    attrs
}

fn pool(op_type: &'static str, a: &PoolAttrs, average: bool) -> Lowered {
    let mut attrs = window_attrs(Some(&a.kernel_shape), &a.strides, &a.dilations, &a.padding);
    let mut since = if average { 7 } else { 8 };
    if a.ceil_mode {
        attrs.push(int("ceil_mode", 1));
        // Opset 22 drops a last window that would start in the end padding.
        since = since.max(22);
    }
    if a.dilations.iter().any(|&d| d != 1) {
        since = since.max(match op_type {
            "MaxPool" => 10,
            "AveragePool" => 19,
            _ => 18,
        });
    }
    if average && a.count_include_pad {
        attrs.push(int("count_include_pad", 1));
    }
    form(op_type, since, attrs)
}

fn softmax(
    op_type: &'static str,
    g: &Graph,
    node: &Node,
    a: &SoftmaxAttrs,
) -> Result<Lowered, NoForm> {
    let rank = node
        .input(0)
        .and_then(|v| g.fact(v).shape.rank())
        .map(|r| r as i64);
    let last = rank.is_some_and(|r| a.axis == -1 || a.axis == r - 1);
    if a.coerce_2d && !last {
        return Err(NoForm::NeedsLegalize(format!(
            "opset < 13 {op_type} over axes {}.. flattened to 2-D",
            a.axis
        )));
    }
    // Over the last axis both definitions agree, so any opset will do.
    let since = if last { 1 } else { 13 };
    Ok(form(op_type, since, vec![int("axis", a.axis)]))
}

fn reduce(op_type: &'static str, axes_input_since: i64, a: &ReduceAttrs, axes: bool) -> Lowered {
    let mut attrs = vec![int("keepdims", a.keepdims.into())];
    let mut since = if axes { axes_input_since } else { 1 };
    if a.noop_with_empty_axes {
        attrs.push(int("noop_with_empty_axes", 1));
        since = axes_input_since;
    }
    form(op_type, since, attrs)
}

fn split(
    g: &Graph,
    node: &Node,
    a: &crate::ir::ops::SplitAttrs,
    opset: i64,
) -> Result<Lowered, NoForm> {
    let mut attrs = vec![int("axis", a.axis)];
    if node.input(1).is_some() {
        return Ok(form("Split", 13, attrs));
    }
    let parts = a.num_outputs.unwrap_or(node.outputs.len());
    // Before 18 a split without sizes makes equal parts, one per output.
    let axis_len = node.input(0).and_then(|v| {
        let dims = g.fact(v).shape.dims()?;
        let axis = if a.axis < 0 {
            a.axis + dims.len() as i64
        } else {
            a.axis
        };
        dims.get(usize::try_from(axis).ok()?)?.fixed()
    });
    let even = parts == node.outputs.len() && axis_len.is_some_and(|n| n % parts as u64 == 0);
    if opset >= 18 {
        attrs.push(int("num_outputs", parts as i64));
    }
    Ok(form("Split", if even { 13 } else { 18 }, attrs))
}

fn scatter_reduction(r: ScatterReduction) -> (i64, Vec<AttributeProto>) {
    let (name, since) = match r {
        ScatterReduction::None => return (11, vec![]),
        ScatterReduction::Add => ("add", 16),
        ScatterReduction::Mul => ("mul", 16),
        ScatterReduction::Max => ("max", 18),
        ScatterReduction::Min => ("min", 18),
    };
    (since, vec![string("reduction", name)])
}

fn resize(a: &crate::ir::ops::ResizeAttrs) -> Lowered {
    let mode = match a.mode {
        ResizeMode::Nearest => "nearest",
        ResizeMode::Linear => "linear",
        ResizeMode::Cubic => "cubic",
    };
    let mut since = 13;
    let coordinates = match a.coordinate_transform {
        CoordinateTransform::HalfPixel => "half_pixel",
        CoordinateTransform::HalfPixelSymmetric => {
            since = 19;
            "half_pixel_symmetric"
        }
        CoordinateTransform::PytorchHalfPixel => "pytorch_half_pixel",
        CoordinateTransform::AlignCorners => "align_corners",
        CoordinateTransform::Asymmetric => "asymmetric",
        CoordinateTransform::TfCropAndResize => "tf_crop_and_resize",
    };
    let nearest = match a.nearest_mode {
        NearestMode::RoundPreferFloor => "round_prefer_floor",
        NearestMode::RoundPreferCeil => "round_prefer_ceil",
        NearestMode::Floor => "floor",
        NearestMode::Ceil => "ceil",
    };
    let mut attrs = vec![
        string("mode", mode),
        string("coordinate_transformation_mode", coordinates),
        string("nearest_mode", nearest),
        float("cubic_coeff_a", a.cubic_coeff_a),
        int("exclude_outside", a.exclude_outside.into()),
        float("extrapolation_value", a.extrapolation_value),
    ];
    if a.antialias {
        attrs.push(int("antialias", 1));
        since = since.max(18);
    }
    if a.keep_aspect_ratio_policy != AspectRatioPolicy::Stretch {
        let policy = match a.keep_aspect_ratio_policy {
            AspectRatioPolicy::NotLarger => "not_larger",
            _ => "not_smaller",
        };
        attrs.push(string("keep_aspect_ratio_policy", policy));
        since = since.max(18);
    }
    if let Some(axes) = &a.axes {
        attrs.push(ints_i64("axes", axes));
        since = since.max(18);
    }
    form("Resize", since, attrs)
}

/// Q/DQ's `axis` matters only with per-axis (1-D) scales, which came in 13;
/// blocked quantization in 21.
fn quant_axis(g: &Graph, node: &Node, axis: i64, block_size: usize) -> (i64, Vec<AttributeProto>) {
    let scale_rank = node.input(1).and_then(|v| g.fact(v).shape.rank());
    if block_size > 0 {
        return (
            21,
            vec![int("axis", axis), int("block_size", block_size as i64)],
        );
    }
    if scale_rank.is_some_and(|r| r > 0) {
        return (13, vec![int("axis", axis)]);
    }
    (10, vec![])
}

fn recurrent(op_type: &'static str, a: &RnnAttrs, lstm: bool) -> Lowered {
    let direction = match a.direction {
        RnnDirection::Forward => "forward",
        RnnDirection::Reverse => "reverse",
        RnnDirection::Bidirectional => "bidirectional",
    };
    let mut attrs = vec![
        int("hidden_size", a.hidden_size as i64),
        string("direction", direction),
    ];
    if !a.activations.is_empty() {
        attrs.push(strings("activations", &a.activations));
    }
    if !a.activation_alpha.is_empty() {
        attrs.push(floats("activation_alpha", &a.activation_alpha));
    }
    if !a.activation_beta.is_empty() {
        attrs.push(floats("activation_beta", &a.activation_beta));
    }
    if let Some(clip) = a.clip {
        attrs.push(float("clip", clip));
    }
    if lstm && a.input_forget {
        attrs.push(int("input_forget", 1));
    }
    if !lstm && a.linear_before_reset {
        attrs.push(int("linear_before_reset", 1));
    }
    let mut since = 7;
    if a.batch_first {
        attrs.push(int("layout", 1));
        since = 14;
    }
    form(op_type, since, attrs)
}

/// ConstantOfShape's one-element `value`.
fn scalar_tensor(d: DType, value: Scalar) -> Result<TensorProto, NoForm> {
    let bytes: Vec<u8> = match (d, value) {
        (DType::Bool, v) => vec![u8::from(v.as_f64() != 0.0)],
        (DType::F32, v) => (v.as_f64() as f32).to_le_bytes().to_vec(),
        (DType::F64, v) => v.as_f64().to_le_bytes().to_vec(),
        (DType::F16, v) => half::f16::from_f64(v.as_f64()).to_le_bytes().to_vec(),
        (DType::BF16, v) => half::bf16::from_f64(v.as_f64()).to_le_bytes().to_vec(),
        (_, Scalar::Float(_)) | (_, Scalar::Bool(_)) if !d.is_integer() => {
            return Err(unsupported_value(d));
        }
        (d, v) => {
            let n: i128 = match v {
                Scalar::Int(i) => i128::from(i),
                Scalar::UInt(u) => i128::from(u),
                Scalar::Float(f) => f as i128,
                Scalar::Bool(b) => i128::from(b),
            };
            let size = d.size_of().ok_or_else(|| unsupported_value(d))?;
            n.to_le_bytes()[..size].to_vec()
        }
    };
    Ok(TensorProto {
        dims: vec![1],
        data_type: onnx_type(d)?,
        raw_data: Bytes::from(bytes),
        ..TensorProto::default()
    })
}

fn unsupported_value(d: DType) -> NoForm {
    NoForm::Unsupported(format!("a ConstantOfShape value of {d} has no ONNX form"))
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: kind as i32,
        ..AttributeProto::default()
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        i,
        ..attr(name, AttributeType::Int)
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        f,
        ..attr(name, AttributeType::Float)
    }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        s: Bytes::copy_from_slice(s.as_bytes()),
        ..attr(name, AttributeType::String)
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        ints: v.iter().map(|&x| x as i64).collect(),
        ..attr(name, AttributeType::Ints)
    }
}

fn ints_i64(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        floats: v.to_vec(),
        ..attr(name, AttributeType::Floats)
    }
}

fn strings(name: &str, v: &[String]) -> AttributeProto {
    AttributeProto {
        strings: v
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect(),
        ..attr(name, AttributeType::Strings)
    }
}

fn tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}
