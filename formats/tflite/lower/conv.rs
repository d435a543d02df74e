//! Lowering of the conv family (see [`super::support::family`]):
//! convolutions, pooling, resizing and the spatial data-movement ops.
//!
//! Spatial ops read their input channels-last and produce channels-last.
//! A 1-D op (rank 3, `[N, C, W]`, stored `[N, W, C]`) runs as the 2-D op on
//! `[N, 1, W, C]` between two RESHAPEs. Every check lives in a `plan`
//! function that both `support` and `lower` call, so the two cannot disagree.

mod pad;
mod pool;
mod resize;

use crate::formats::target::Support;
use crate::ir::error::Result;
use crate::ir::ops::{ConvAttrs, ConvTransposeAttrs, FusedActivation, Padding};
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op, ValueId};

use super::super::model::TensorId;
use super::super::schema as tfl;
use super::support::dtypes_in;
use super::{Layout, Lowerer, dims_i32, permute};

/// Window attributes (kernel, stride, dilation, pads) above this are refused:
/// TFLite stores them as i32, and it keeps the window arithmetic far from overflow.
const WINDOW_LIMIT: usize = 1 << 24;

pub fn support(g: &Graph, node: &Node) -> Support {
    let checked = match &node.op {
        Op::Conv(a) => conv_plan(g, node, a).map(drop),
        Op::ConvTranspose(a) => transpose_plan(g, node, a).map(drop),
        Op::MaxPool(_) | Op::AveragePool(_) => pool::plan(g, node).map(drop),
        Op::GlobalAveragePool | Op::GlobalMaxPool => pool::global_plan(g, node).map(drop),
        Op::Resize(a) => resize::plan(g, node, a).map(drop),
        Op::DepthToSpace(_) | Op::SpaceToDepth(_) => pad::block_plan(g, node).map(drop),
        Op::Pad(a) => pad::plan(g, node, a).map(drop),
        other => Err(format!("{} is not a conv-family op", other.name())),
    };
    match checked {
        Ok(()) => Support::Native,
        Err(why) => Support::Unsupported(why),
    }
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    match &node.op {
        Op::Conv(a) => lower_conv(lx, node, a),
        Op::ConvTranspose(a) => lower_transpose(lx, node, a),
        Op::MaxPool(_) | Op::AveragePool(_) => pool::lower(lx, node),
        Op::GlobalAveragePool | Op::GlobalMaxPool => pool::lower_global(lx, node),
        Op::Resize(a) => resize::lower(lx, node, a),
        Op::DepthToSpace(_) | Op::SpaceToDepth(_) => pad::lower_block(lx, node),
        Op::Pad(a) => pad::lower(lx, node, a),
        other => Err(lx.error(format!("{} is not a conv-family op", other.name()))),
    }
}

// ---------------------------------------------------------------------------
// Shared helpers

/// The static shape of `v` (support already checked that it has one),
/// every dim within TFLite's i32.
fn shape_of(g: &Graph, v: ValueId) -> std::result::Result<Vec<usize>, String> {
    let name = &g.value(v).name;
    let shape = g
        .fact(v)
        .shape
        .as_fixed()
        .ok_or_else(|| format!("value '{name}' has no static shape"))?;
    if shape.iter().any(|&d| d > i32::MAX as usize) {
        return Err(format!(
            "value '{name}' has a dim beyond TFLite's i32: {shape:?}"
        ));
    }
    Ok(shape)
}

fn input_of(node: &Node, i: usize) -> std::result::Result<ValueId, String> {
    node.input(i)
        .ok_or_else(|| format!("input {i} is required"))
}

fn output_of(node: &Node) -> std::result::Result<ValueId, String> {
    match node.outputs.as_slice() {
        [y] => Ok(*y),
        outs => Err(format!("expected one output, found {}", outs.len())),
    }
}

/// The contents of a constant input, `None` when `v` is computed.
fn constant_of(g: &Graph, v: ValueId) -> std::result::Result<Option<Tensor>, String> {
    match g.weight_of(v) {
        Some(w) => Tensor::from_bytes(w.dtype, &w.shape, &w.data)
            .map(Some)
            .map_err(|e| format!("weight {}: {e}", w.name)),
        None => Ok(None),
    }
}

/// `values`, or ones when empty; one positive entry per spatial axis.
fn per_axis(values: &[usize], n: usize, what: &str) -> std::result::Result<Vec<usize>, String> {
    let v = if values.is_empty() {
        vec![1; n]
    } else {
        values.to_vec()
    };
    if v.len() != n || v.iter().any(|&x| x == 0 || x > WINDOW_LIMIT) {
        return Err(format!(
            "{what} {values:?} must hold {n} positive values below {WINDOW_LIMIT}"
        ));
    }
    Ok(v)
}

/// One spatial axis of a sliding window as ONNX defines it: the pads that
/// apply and the output length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    begin: usize,
    end: usize,
    output: usize,
}

impl Axis {
    /// The H axis a 1-D window gets when it runs as a 2-D one.
    const FLAT: Axis = Axis {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        begin: 0,
        end: 0,
        output: 1,
    };

    fn span(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1
    }

    /// The end padding the output windows really reach: less than `end`
    /// when the last pads are never covered, more in ceil mode.
    fn reach(&self) -> usize {
        ((self.output - 1) * self.stride + self.span()).saturating_sub(self.input + self.begin)
    }

    /// TFLite's SAME padding gives this axis (ComputePaddingHeightWidth).
    fn is_same(&self) -> bool {
        let out = self.input.div_ceil(self.stride);
        let total = ((out.max(1) - 1) * self.stride + self.span()).saturating_sub(self.input);
        self.output == out && self.begin == total / 2
    }

    /// TFLite's VALID padding gives this axis.
    fn is_valid(&self) -> bool {
        self.begin == 0
            && self.input >= self.span()
            && self.output == (self.input - self.span()) / self.stride + 1
    }

    /// Whether any window covers a padded cell.
    fn touches_padding(&self) -> bool {
        self.begin > 0 || self.reach() > 0
    }
}

/// The ONNX windows of a Conv or pooling op over `input` (spatial dims).
fn windows(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    padding: &Padding,
    ceil_mode: bool,
) -> std::result::Result<Vec<Axis>, String> {
    let n = input.len();
    if kernel.len() != n || kernel.iter().any(|&k| k == 0 || k > WINDOW_LIMIT) {
        return Err(format!(
            "kernel shape {kernel:?} does not fit {n} spatial axes"
        ));
    }
    let strides = per_axis(strides, n, "strides")?;
    let dilations = per_axis(dilations, n, "dilations")?;
    let mut axes = Vec::with_capacity(n);
    for d in 0..n {
        let mut a = Axis {
            input: input[d],
            kernel: kernel[d],
            stride: strides[d],
            dilation: dilations[d],
            begin: 0,
            end: 0,
            output: 0,
        };
        if a.input == 0 {
            return Err(format!("spatial axis {d} is empty"));
        }
        let span = a.span();
        (a.begin, a.end) = match padding {
            Padding::Valid => (0, 0),
            Padding::Explicit(p) if p.is_empty() => (0, 0),
            Padding::Explicit(p) if p.len() == 2 * n => {
                if p.iter().any(|&x| x > WINDOW_LIMIT) {
                    return Err(format!("pads {p:?} are too large"));
                }
                (p[d], p[d + n])
            }
            Padding::Explicit(p) => return Err(format!("pads {p:?} must hold {} values", 2 * n)),
            Padding::SameUpper | Padding::SameLower => {
                let out = a.input.div_ceil(a.stride);
                let total = ((out.max(1) - 1) * a.stride + span).saturating_sub(a.input);
                if matches!(padding, Padding::SameUpper) {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                }
            }
        };
        let padded = a.input + a.begin + a.end;
        if padded < span {
            return Err(format!(
                "kernel span {span} exceeds the padded input {padded} on spatial axis {d}"
            ));
        }
        a.output = if ceil_mode {
            (padded - span).div_ceil(a.stride) + 1
        } else {
            (padded - span) / a.stride + 1
        };
        // A window must start inside the input or the begin padding.
        if ceil_mode && (a.output - 1) * a.stride >= a.input + a.begin {
            a.output -= 1;
        }
        axes.push(a);
    }
    Ok(axes)
}

/// How a 2-D TFLite window op reproduces the ONNX pads.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WindowPads {
    Same,
    Valid,
    /// A PAD (begin, end per spatial axis) before a VALID op.
    Explicit(Vec<(usize, usize)>),
}

impl WindowPads {
    fn choose(axes: &[Axis]) -> WindowPads {
        if axes.iter().all(Axis::is_same) {
            WindowPads::Same
        } else if axes.iter().all(Axis::is_valid) {
            WindowPads::Valid
        } else {
            WindowPads::Explicit(axes.iter().map(|a| (a.begin, a.reach())).collect())
        }
    }

    fn tfl(&self) -> tfl::Padding {
        match self {
            WindowPads::Same => tfl::Padding::SAME,
            WindowPads::Valid | WindowPads::Explicit(_) => tfl::Padding::VALID,
        }
    }
}

/// `axes` (1 or 2 spatial axes) as the H and W axes of a 2-D op.
fn as_2d(axes: &[Axis]) -> std::result::Result<[Axis; 2], String> {
    match axes {
        [w] => Ok([Axis::FLAT, *w]),
        [h, w] => Ok([*h, *w]),
        _ => Err(format!(
            "{}-D windows: TFLite's spatial ops are 2-D (1-D runs as 2-D)",
            axes.len()
        )),
    }
}

/// Checks that the inferred output shape is `[n, c, spatial...]`.
fn check_output(
    g: &Graph,
    y: ValueId,
    lead: &[usize],
    axes: &[Axis],
) -> std::result::Result<(), String> {
    let expected: Vec<usize> = lead
        .iter()
        .copied()
        .chain(axes.iter().map(|a| a.output))
        .collect();
    let got = shape_of(g, y)?;
    if got != expected {
        return Err(format!(
            "output shape {got:?} disagrees with the window arithmetic {expected:?}"
        ));
    }
    Ok(())
}

/// The fused activation TFLite applies in the op, and the op that must
/// follow for the ones it does not fuse (its kernels ignore a fused TANH).
fn activation(
    a: Option<FusedActivation>,
) -> (tfl::ActivationFunctionType, Option<tfl::BuiltinOperator>) {
    use tfl::ActivationFunctionType as A;
    use tfl::BuiltinOperator as B;
    match a {
        None => (A::NONE, None),
        Some(FusedActivation::Relu) => (A::RELU, None),
        Some(FusedActivation::Relu6) => (A::RELU6, None),
        Some(FusedActivation::ReluN1To1) => (A::RELU_N1_TO_1, None),
        Some(FusedActivation::Tanh) => (A::NONE, Some(B::TANH)),
        Some(FusedActivation::Sigmoid) => (A::NONE, Some(B::LOGISTIC)),
        Some(FusedActivation::HardSwish) => (A::NONE, Some(B::HARD_SWISH)),
    }
}

/// `t` reshaped to `shape` (a new tensor).
fn reshape(lx: &mut Lowerer, t: TensorId, shape: &[usize], name: &str) -> TensorId {
    let dtype = lx.model.tensor(t).dtype;
    let out = lx.temp(name, dtype, dims_i32(shape));
    reshape_into(lx, t, out);
    out
}

fn reshape_into(lx: &mut Lowerer, t: TensorId, out: TensorId) {
    let shape = lx.model.tensor(out).shape.clone();
    let name = format!("{}_shape", lx.model.tensor(out).name);
    let target = lx.const_i32(&name, &shape);
    lx.op(
        tfl::BuiltinOperator::RESHAPE,
        vec![Some(t), Some(target)],
        vec![out],
        tfl::BuiltinOptionsT::NONE,
    );
}

/// `x` as a 4-D NHWC tensor: channels-last, with a 1-sized H for rank 3.
fn nhwc_input(lx: &mut Lowerer, x: ValueId) -> Result<TensorId> {
    let t = lx.operand(x, Layout::ChannelsLast)?;
    let s = lx.shape(x)?;
    if s.len() == 3 {
        let name = format!("{}_2d", lx.g.value(x).name);
        return Ok(reshape(lx, t, &[s[0], 1, s[2], s[1]], &name));
    }
    Ok(t)
}

fn shape_usize(lx: &Lowerer, t: TensorId) -> Vec<usize> {
    lx.model
        .tensor(t)
        .shape
        .iter()
        .map(|&d| d as usize)
        .collect()
}

/// PAD (or PADV2 with `value`) of the spatial axes of channels-last `t`
/// (`pads[i]` for stored axis `i + 1`).
fn pad_hw(
    lx: &mut Lowerer,
    t: TensorId,
    pads: &[(usize, usize)],
    value: Option<TensorId>,
    name: &str,
) -> TensorId {
    let mut shape = shape_usize(lx, t);
    let rank = shape.len();
    let mut paddings = vec![0i32; 2 * rank];
    for (i, &(b, e)) in pads.iter().enumerate() {
        paddings[2 * (i + 1)] = b as i32;
        paddings[2 * (i + 1) + 1] = e as i32;
        shape[i + 1] += b + e;
    }
    let dtype = lx.model.tensor(t).dtype;
    let out = lx.temp(name, dtype, dims_i32(&shape));
    let paddings = lx.const_i32_shaped(&format!("{name}_paddings"), &paddings, &[rank, 2]);
    let (code, options) = match value {
        None => (
            tfl::BuiltinOperator::PAD,
            tfl::BuiltinOptionsT::PadOptions(Box::default()),
        ),
        Some(_) => (
            tfl::BuiltinOperator::PADV2,
            tfl::BuiltinOptionsT::PadV2Options(Box::default()),
        ),
    };
    let mut inputs = vec![Some(t), Some(paddings)];
    if value.is_some() {
        inputs.push(value);
    }
    lx.op(code, inputs, vec![out], options);
    out
}

/// Where a spatial op writes its 4-D NHWC result, and what follows it: an
/// activation op, then a RESHAPE back to rank 3 for a 1-D op. The last
/// tensor of the chain becomes the value `y` (channels-last).
struct Sink {
    y: ValueId,
    first: TensorId,
    after: Option<tfl::BuiltinOperator>,
}

impl Sink {
    fn new(
        lx: &mut Lowerer,
        y: ValueId,
        shape4: &[usize],
        after: Option<tfl::BuiltinOperator>,
    ) -> Result<Sink> {
        let rank = lx.rank(y)?;
        let dtype = super::tensor_type(lx.dtype(y)?).map_err(|e| lx.error(e))?;
        let name = lx.g.value(y).name.clone();
        let hint = if after.is_some() || rank != 4 {
            format!("{name}_{}", if after.is_some() { "linear" } else { "2d" })
        } else {
            name
        };
        let first = lx.temp(&hint, dtype, dims_i32(shape4));
        Ok(Sink { y, first, after })
    }

    fn finish(self, lx: &mut Lowerer) -> Result<()> {
        let shape = lx.shape(self.y)?;
        let name = lx.g.value(self.y).name.clone();
        let mut cur = self.first;
        if let Some(code) = self.after {
            let dtype = lx.model.tensor(cur).dtype;
            let dims = lx.model.tensor(cur).shape.clone();
            let hint = if shape.len() == 4 {
                name.clone()
            } else {
                format!("{name}_2d")
            };
            let next = lx.temp(&hint, dtype, dims);
            let options = match code {
                tfl::BuiltinOperator::HARD_SWISH => {
                    tfl::BuiltinOptionsT::HardSwishOptions(Box::default())
                }
                _ => tfl::BuiltinOptionsT::NONE,
            };
            lx.op(code, vec![Some(cur)], vec![next], options);
            cur = next;
        }
        if shape.len() == 3 {
            cur = reshape(lx, cur, &[shape[0], shape[2], shape[1]], &name);
        }
        lx.alias(self.y, cur, Layout::ChannelsLast);
        Ok(())
    }
}

/// A float32 tensor of `shape` from row-major `data`.
fn f32_tensor(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data)
        .map_err(|e| crate::ir::error::Error::Graph(e.to_string()))?;
    Ok(Tensor::from_f32(a))
}

// ---------------------------------------------------------------------------
// Conv

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConvKind {
    /// CONV_2D; filter input channels = input channels / groups.
    Regular { groups: usize },
    /// DEPTHWISE_CONV_2D (group == input channels).
    Depthwise { multiplier: usize },
}

#[derive(Clone, Debug)]
struct ConvPlan {
    kind: ConvKind,
    axes: [Axis; 2],
    pads: WindowPads,
    out_channels: usize,
}

fn conv_plan(g: &Graph, node: &Node, a: &ConvAttrs) -> std::result::Result<ConvPlan, String> {
    dtypes_in(g, node, &[DType::F32])?;
    let (x, w, y) = (input_of(node, 0)?, input_of(node, 1)?, output_of(node)?);
    let xs = shape_of(g, x)?;
    let ws = shape_of(g, w)?;
    if !matches!(xs.len(), 3 | 4) {
        return Err(format!(
            "a rank-{} input: TFLite's CONV_2D takes 1-D and 2-D convolutions (rank 3 or 4)",
            xs.len()
        ));
    }
    if ws.len() != xs.len() {
        return Err(format!("weights {ws:?} do not match input {xs:?}"));
    }
    let (c, o, group) = (xs[1], ws[0], a.group);
    if group == 0 || c % group != 0 || o % group != 0 || ws[1].checked_mul(group) != Some(c) {
        return Err(format!(
            "group {group} does not fit {c} input channels and weights {ws:?}"
        ));
    }
    if let Some(b) = node.input(2)
        && shape_of(g, b)? != [o]
    {
        return Err(format!("bias shape must be [{o}]"));
    }
    let kernel = ws[2..].to_vec();
    if a.kernel_shape.as_ref().is_some_and(|k| *k != kernel) {
        return Err(format!(
            "kernel_shape {:?} disagrees with the weights {ws:?}",
            a.kernel_shape
        ));
    }
    let axes = windows(
        &xs[2..],
        &kernel,
        &a.strides,
        &a.dilations,
        &a.padding,
        false,
    )?;
    check_output(g, y, &[xs[0], o], &axes)?;
    let axes = as_2d(&axes)?;
    let kind = if group == c && c > 1 {
        ConvKind::Depthwise { multiplier: o / c }
    } else {
        ConvKind::Regular { groups: group }
    };
    Ok(ConvPlan {
        kind,
        pads: WindowPads::choose(&axes),
        axes,
        out_channels: o,
    })
}

/// The TFLite filter of a Conv: OHWI for CONV_2D, `[1, kh, kw, O]` for
/// DEPTHWISE_CONV_2D. Constant weights are reordered here; computed ones
/// by a TRANSPOSE (XNNPACK then leaves the op to the builtin kernel).
fn conv_filter(lx: &mut Lowerer, w: ValueId, kind: ConvKind) -> Result<TensorId> {
    let ws = lx.shape(w)?;
    // [O, I, k] -> [O, I, 1, k]
    let w4 = if ws.len() == 3 {
        vec![ws[0], ws[1], 1, ws[2]]
    } else {
        ws.clone()
    };
    let perm: &[usize] = match kind {
        ConvKind::Regular { .. } => &[0, 2, 3, 1],
        ConvKind::Depthwise { .. } => &[1, 2, 3, 0],
    };
    let name = lx.g.value(w).name.clone();
    if let Some(weights) = lx.constant(w)? {
        let weights = super::reshape(&weights, &w4).map_err(|e| lx.error(e))?;
        let filter = permute(&weights, perm).map_err(|e| lx.error(e))?;
        return lx.const_tensor(&name, &filter);
    }
    // Channels-last is [O, kh, kw, I] ([O, k, I] for 1-D).
    let mut t = lx.operand(w, Layout::ChannelsLast)?;
    if ws.len() == 3 {
        t = reshape(lx, t, &[ws[0], 1, ws[2], ws[1]], &format!("{name}_4d"));
    }
    match kind {
        ConvKind::Regular { .. } => Ok(t),
        ConvKind::Depthwise { .. } => lx.transpose(t, &[3, 1, 2, 0], &format!("{name}_filter")),
    }
}

fn lower_conv(lx: &mut Lowerer, node: &Node, a: &ConvAttrs) -> Result<()> {
    let plan = conv_plan(lx.g, node, a).map_err(|e| lx.error(e))?;
    let (x, w, y) = (lx.input(node, 0)?, lx.input(node, 1)?, node.outputs[0]);
    let mut xt = nhwc_input(lx, x)?;
    if let WindowPads::Explicit(p) = &plan.pads {
        let name = format!("{}_padded", lx.g.value(x).name);
        xt = pad_hw(lx, xt, p, None, &name);
    }
    let filter = conv_filter(lx, w, plan.kind)?;
    let bias = match node.input(2) {
        Some(b) => lx.operand(b, Layout::Source)?,
        None => {
            let zeros = f32_tensor(&[plan.out_channels], vec![0.0; plan.out_channels])?;
            let name = format!("{}_bias", node.name);
            lx.const_tensor(&name, &zeros)?
        }
    };
    let (fused, after) = activation(a.activation);
    let [h, wd] = plan.axes;
    let n = lx.shape(x)?[0];
    let sink = Sink::new(lx, y, &[n, h.output, wd.output, plan.out_channels], after)?;
    let (code, version, options) = match plan.kind {
        ConvKind::Regular { groups } => (
            tfl::BuiltinOperator::CONV_2D,
            if groups > 1 { 6 } else { 1 },
            tfl::BuiltinOptionsT::Conv2DOptions(Box::new(tfl::Conv2DOptionsT {
                padding: plan.pads.tfl(),
                stride_w: wd.stride as i32,
                stride_h: h.stride as i32,
                fused_activation_function: fused,
                dilation_w_factor: wd.dilation as i32,
                dilation_h_factor: h.dilation as i32,
                ..Default::default()
            })),
        ),
        ConvKind::Depthwise { multiplier } => (
            tfl::BuiltinOperator::DEPTHWISE_CONV_2D,
            if h.dilation > 1 || wd.dilation > 1 {
                2
            } else {
                1
            },
            tfl::BuiltinOptionsT::DepthwiseConv2DOptions(Box::new(tfl::DepthwiseConv2DOptionsT {
                padding: plan.pads.tfl(),
                stride_w: wd.stride as i32,
                stride_h: h.stride as i32,
                depth_multiplier: multiplier as i32,
                fused_activation_function: fused,
                dilation_w_factor: wd.dilation as i32,
                dilation_h_factor: h.dilation as i32,
            })),
        ),
    };
    lx.op_version(
        code,
        version,
        vec![Some(xt), Some(filter), Some(bias)],
        vec![sink.first],
        options,
    );
    sink.finish(lx)
}

// ---------------------------------------------------------------------------
// ConvTranspose

/// One spatial axis of a transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TAxis {
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    /// ONNX's begin padding: output index `y` is the full-output index `y + begin`.
    begin: usize,
    output: usize,
}

impl TAxis {
    const FLAT: TAxis = TAxis {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        begin: 0,
        output: 1,
    };

    fn span(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1
    }

    /// TFLite's SAME gives this axis: it checks `input == ceil(output /
    /// stride)` and pads `total / 2` at the start.
    fn is_same(&self) -> bool {
        let total = ((self.input - 1) * self.stride + self.span()).saturating_sub(self.output);
        self.input == self.output.div_ceil(self.stride) && self.begin == total / 2
    }

    /// For VALID: the zero taps appended to the kernel and the output
    /// length TRANSPOSE_CONV computes, of which `[begin, begin + output)`
    /// is kept. TFLite requires `input == (out - kernel) / stride + 1`.
    fn valid(&self) -> (usize, usize) {
        let least = (self.input - 1) * self.stride + self.span();
        let want = self.begin + self.output;
        let extension = (want.saturating_sub(least)).saturating_sub(self.stride - 1);
        (extension, want.max(least))
    }
}

#[derive(Clone, Debug)]
struct TransposePlan {
    axes: [TAxis; 2],
    same: bool,
    groups: usize,
    in_channels: usize,
    out_channels: usize,
}

impl TransposePlan {
    /// Per axis: (kernel length TFLite sees, TFLite output length).
    fn tfl_axes(&self) -> [(usize, usize); 2] {
        self.axes.map(|a| {
            if self.same {
                (a.span(), a.output)
            } else {
                let (ext, out) = a.valid();
                (a.span() + ext, out)
            }
        })
    }

    fn needs_slice(&self) -> bool {
        !self.same
            && self
                .tfl_axes()
                .iter()
                .zip(&self.axes)
                .any(|(&(_, out), a)| a.begin > 0 || out != a.output)
    }
}

fn transpose_plan(
    g: &Graph,
    node: &Node,
    a: &ConvTransposeAttrs,
) -> std::result::Result<TransposePlan, String> {
    dtypes_in(g, node, &[DType::F32])?;
    let (x, w, y) = (input_of(node, 0)?, input_of(node, 1)?, output_of(node)?);
    let xs = shape_of(g, x)?;
    let ws = shape_of(g, w)?;
    let ys = shape_of(g, y)?;
    if !matches!(xs.len(), 3 | 4) {
        return Err(format!(
            "a rank-{} input: TFLite's TRANSPOSE_CONV takes 1-D and 2-D transposed convolutions",
            xs.len()
        ));
    }
    if ws.len() != xs.len() || ys.len() != xs.len() {
        return Err(format!("weights {ws:?} do not match input {xs:?}"));
    }
    let (c, group) = (xs[1], a.group);
    if group == 0 || group > c || ws[0] != c || c % group != 0 {
        return Err(format!(
            "group {group} does not fit {c} input channels and weights {ws:?}"
        ));
    }
    let o = ws[1] * group;
    if ys[..2] != [xs[0], o] {
        return Err(format!("output shape {ys:?} does not match the weights"));
    }
    if let Some(b) = node.input(2) {
        if shape_of(g, b)? != [o] {
            return Err(format!("bias shape must be [{o}]"));
        }
    }
    let n = xs.len() - 2;
    let kernel = ws[2..].to_vec();
    if a.kernel_shape.as_ref().is_some_and(|k| *k != kernel) || kernel.contains(&0) {
        return Err(format!(
            "kernel_shape {:?} disagrees with the weights {ws:?}",
            a.kernel_shape
        ));
    }
    let strides = per_axis(&a.strides, n, "strides")?;
    let dilations = per_axis(&a.dilations, n, "dilations")?;
    let output_padding = if a.output_padding.is_empty() {
        vec![0; n]
    } else {
        a.output_padding.clone()
    };
    if output_padding.len() != n || output_padding.iter().any(|&p| p > WINDOW_LIMIT) {
        return Err(format!(
            "output_padding {:?} must hold {n} values",
            a.output_padding
        ));
    }
    let mut axes = Vec::with_capacity(n);
    for d in 0..n {
        let mut t = TAxis {
            input: xs[2 + d],
            kernel: kernel[d],
            stride: strides[d],
            dilation: dilations[d],
            begin: 0,
            output: ys[2 + d],
        };
        if t.input == 0 || t.output == 0 || t.kernel > WINDOW_LIMIT {
            return Err("empty or oversized spatial axes".into());
        }
        let full = (t.input - 1) * t.stride + output_padding[d] + t.span();
        t.begin = match (&a.padding, &a.output_shape) {
            (_, Some(_)) if full > t.output => {
                // onnxruntime then derives the pads from output_shape and
                // ignores `pads`; the ONNX reference keeps `pads`.
                return Err(
                    "output_shape below the full output: onnxruntime and the ONNX reference place the cropping differently"
                        .into(),
                );
            }
            (Padding::Explicit(p), _) if p.is_empty() => 0,
            (Padding::Explicit(p), _) if p.len() == 2 * n => {
                if p[d] > WINDOW_LIMIT {
                    return Err(format!("pads {p:?} are too large"));
                }
                p[d]
            }
            (Padding::Explicit(p), _) => {
                return Err(format!("pads {p:?} must hold {} values", 2 * n));
            }
            (Padding::Valid, _) => 0,
            (Padding::SameUpper | Padding::SameLower, _) => {
                let total = full.checked_sub(t.output).ok_or_else(|| {
                    format!(
                        "output {} exceeds the full transposed size {full}",
                        t.output
                    )
                })?;
                if matches!(a.padding, Padding::SameUpper) {
                    total / 2
                } else {
                    total - total / 2
                }
            }
        };
        axes.push(t);
    }
    let axes = match axes.as_slice() {
        [w] => [TAxis::FLAT, *w],
        [h, w] => [*h, *w],
        _ => unreachable!("rank checked above"),
    };
    let same = axes.iter().all(TAxis::is_same);
    Ok(TransposePlan {
        axes,
        same,
        groups: group,
        in_channels: c,
        out_channels: o,
    })
}

/// TFLite filters `[O/g, kh', kw', C/g]` of one group: the ONNX weights
/// `[C, O/g, kh, kw]` reordered, dilated by inserting zero taps and
/// extended by zero taps at the end to length `k'`.
fn transpose_filter(
    w: &ndarray::ArrayD<f32>,
    plan: &TransposePlan,
    group: usize,
) -> Result<Tensor> {
    let ws = w.shape();
    let (cg, og) = (plan.in_channels / plan.groups, ws[1]);
    let (kh, kw) = if ws.len() == 4 {
        (ws[2], ws[3])
    } else {
        (1, ws[2])
    };
    let [(kh2, _), (kw2, _)] = plan.tfl_axes();
    let [dh, dw] = [plan.axes[0].dilation, plan.axes[1].dilation];
    let w = w.as_standard_layout();
    let src = w.as_slice().expect("standard layout");
    let mut data = vec![0f32; og * kh2 * kw2 * cg];
    for oc in 0..og {
        for y in 0..kh {
            for x in 0..kw {
                for ic in 0..cg {
                    let c = group * cg + ic;
                    let v = src[((c * og + oc) * kh + y) * kw + x];
                    data[((oc * kh2 + y * dh) * kw2 + x * dw) * cg + ic] = v;
                }
            }
        }
    }
    f32_tensor(&[og, kh2, kw2, cg], data)
}

/// SPLIT of `t` into `parts` equal pieces along `axis`.
fn split(lx: &mut Lowerer, t: TensorId, axis: usize, parts: usize, name: &str) -> Vec<TensorId> {
    let mut shape = shape_usize(lx, t);
    shape[axis] /= parts;
    let dtype = lx.model.tensor(t).dtype;
    let outs: Vec<TensorId> = (0..parts)
        .map(|i| lx.temp(&format!("{name}_g{i}"), dtype, dims_i32(&shape)))
        .collect();
    let axis = lx.const_i32(&format!("{name}_split_axis"), &[axis as i32]);
    lx.op(
        tfl::BuiltinOperator::SPLIT,
        vec![Some(axis), Some(t)],
        outs.clone(),
        tfl::BuiltinOptionsT::SplitOptions(Box::new(tfl::SplitOptionsT {
            num_splits: parts as i32,
        })),
    );
    outs
}

/// SLICE of `t` from `begin`, `size` long, into `out`.
fn slice_into(lx: &mut Lowerer, t: TensorId, begin: &[usize], out: TensorId) {
    let name = lx.model.tensor(out).name.clone();
    let size = lx.model.tensor(out).shape.clone();
    let begin = lx.const_i32(&format!("{name}_begin"), &dims_i32(begin));
    let size = lx.const_i32(&format!("{name}_size"), &size);
    lx.op(
        tfl::BuiltinOperator::SLICE,
        vec![Some(t), Some(begin), Some(size)],
        vec![out],
        tfl::BuiltinOptionsT::SliceOptions(Box::default()),
    );
}

/// The TFLite filters of a ConvTranspose, one per group.
fn transpose_filters(lx: &mut Lowerer, w: ValueId, plan: &TransposePlan) -> Result<Vec<TensorId>> {
    let name = lx.g.value(w).name.clone();
    let group_name = |g: usize| {
        if plan.groups == 1 {
            name.clone()
        } else {
            format!("{name}_g{g}")
        }
    };
    if let Some(weights) = lx.constant(w)? {
        let weights = weights.to_f32();
        return (0..plan.groups)
            .map(|g| {
                let filter = transpose_filter(&weights, plan, g)?;
                lx.const_tensor(&group_name(g), &filter)
            })
            .collect();
    }
    // Computed weights get the same reordering, zero taps and extension as ops.
    let ws = lx.shape(w)?;
    // Channels-last: [C, kh, kw, O/g] ([C, k, O/g] for 1-D).
    let mut t = lx.operand(w, Layout::ChannelsLast)?;
    if ws.len() == 3 {
        t = reshape(lx, t, &[ws[0], 1, ws[2], ws[1]], &format!("{name}_4d"));
    }
    let parts = if plan.groups == 1 {
        vec![t]
    } else {
        split(lx, t, 0, plan.groups, &name)
    };
    let mut filters = Vec::with_capacity(parts.len());
    for (g, part) in parts.into_iter().enumerate() {
        let hint = format!("{}_filter", group_name(g));
        let f = lx.transpose(part, &[3, 1, 2, 0], &hint)?;
        filters.push(dilate_filter(lx, f, plan, &hint));
    }
    Ok(filters)
}

/// A computed `[O, kh, kw, I]` filter with `dilation - 1` zero taps between
/// its taps and zero taps appended up to the kernel the plan gives TFLite.
fn dilate_filter(lx: &mut Lowerer, f: TensorId, plan: &TransposePlan, name: &str) -> TensorId {
    let [o, kh, kw, c] = shape_usize(lx, f)[..] else {
        unreachable!("filters are 4-D")
    };
    let [(kh2, _), (kw2, _)] = plan.tfl_axes();
    let [dh, dw] = [plan.axes[0].dilation, plan.axes[1].dilation];
    let (mut cur, mut a, mut b) = (f, kh, kw);
    if dh > 1 {
        // [O, kh, 1, kw*I] padded to [O, kh, dh, kw*I] is [O, kh*dh, kw, I].
        cur = reshape(lx, cur, &[o, kh, 1, kw * c], &format!("{name}_rows"));
        cur = pad_hw(
            lx,
            cur,
            &[(0, 0), (0, dh - 1)],
            None,
            &format!("{name}_rows_padded"),
        );
        a = kh * dh;
        cur = reshape(lx, cur, &[o, a, kw, c], &format!("{name}_dilated_h"));
    }
    if dw > 1 {
        cur = reshape(lx, cur, &[o * a, kw, 1, c], &format!("{name}_cols"));
        cur = pad_hw(
            lx,
            cur,
            &[(0, 0), (0, dw - 1)],
            None,
            &format!("{name}_cols_padded"),
        );
        b = kw * dw;
        cur = reshape(lx, cur, &[o, a, b, c], &format!("{name}_dilated"));
    }
    if a > kh2 || b > kw2 {
        (a, b) = (a.min(kh2), b.min(kw2));
        let dtype = lx.model.tensor(cur).dtype;
        let out = lx.temp(&format!("{name}_cut"), dtype, dims_i32(&[o, a, b, c]));
        slice_into(lx, cur, &[0, 0, 0, 0], out);
        cur = out;
    }
    if a < kh2 || b < kw2 {
        cur = pad_hw(
            lx,
            cur,
            &[(0, kh2 - a), (0, kw2 - b)],
            None,
            &format!("{name}_extended"),
        );
    }
    cur
}

/// The bias of each group of a ConvTranspose (zeros when absent).
fn transpose_biases(lx: &mut Lowerer, node: &Node, plan: &TransposePlan) -> Result<Vec<TensorId>> {
    let og = plan.out_channels / plan.groups;
    let Some(b) = node.input(2) else {
        let zeros = f32_tensor(&[og], vec![0.0; og])?;
        let name = format!("{}_bias", node.name);
        let t = lx.const_tensor(&name, &zeros)?;
        return Ok(vec![t; plan.groups]);
    };
    if plan.groups == 1 {
        return Ok(vec![lx.operand(b, Layout::Source)?]);
    }
    let name = lx.g.value(b).name.clone();
    match lx.constant(b)? {
        Some(data) => {
            let data: Vec<f32> = data.to_f32().iter().copied().collect();
            (0..plan.groups)
                .map(|g| {
                    let part = f32_tensor(&[og], data[g * og..(g + 1) * og].to_vec())?;
                    lx.const_tensor(&format!("{name}_g{g}"), &part)
                })
                .collect()
        }
        None => {
            let t = lx.operand(b, Layout::Source)?;
            Ok(split(lx, t, 0, plan.groups, &name))
        }
    }
}

fn lower_transpose(lx: &mut Lowerer, node: &Node, a: &ConvTransposeAttrs) -> Result<()> {
    let plan = transpose_plan(lx.g, node, a).map_err(|e| lx.error(e))?;
    let (x, w, y) = (lx.input(node, 0)?, lx.input(node, 1)?, node.outputs[0]);
    let xt = nhwc_input(lx, x)?;
    let n = lx.shape(x)?[0];
    let filters = transpose_filters(lx, w, &plan)?;
    let biases = transpose_biases(lx, node, &plan)?;
    let (fused, after) = activation(a.activation);
    let [(_, th), (_, tw)] = plan.tfl_axes();
    let og = plan.out_channels / plan.groups;
    let out_shape = [
        n,
        plan.axes[0].output,
        plan.axes[1].output,
        plan.out_channels,
    ];
    let sink = Sink::new(lx, y, &out_shape, after)?;
    let name = lx.g.value(y).name.clone();
    let dtype = lx.model.tensor(sink.first).dtype;
    // The tensor the transposed convolution(s) write: the sink unless a SLICE follows.
    let slice = plan.needs_slice();
    let conv_out = if slice {
        let full = [n, th, tw, plan.out_channels];
        lx.temp(&format!("{name}_full"), dtype, dims_i32(&full))
    } else {
        sink.first
    };
    let inputs = if plan.groups == 1 {
        vec![xt]
    } else {
        split(lx, xt, 3, plan.groups, &format!("{name}_in"))
    };
    let shape = lx.const_i32(&format!("{name}_output_shape"), &dims_i32(&[n, th, tw, og]));
    let mut outputs = Vec::with_capacity(plan.groups);
    for (g, &input) in inputs.iter().enumerate() {
        let out = if plan.groups == 1 {
            conv_out
        } else {
            lx.temp(&format!("{name}_g{g}"), dtype, dims_i32(&[n, th, tw, og]))
        };
        let [h, wd] = plan.axes;
        lx.op_version(
            tfl::BuiltinOperator::TRANSPOSE_CONV,
            if fused != tfl::ActivationFunctionType::NONE {
                4
            } else {
                3
            },
            vec![Some(shape), Some(filters[g]), Some(input), Some(biases[g])],
            vec![out],
            tfl::BuiltinOptionsT::TransposeConvOptions(Box::new(tfl::TransposeConvOptionsT {
                padding: if plan.same {
                    tfl::Padding::SAME
                } else {
                    tfl::Padding::VALID
                },
                stride_w: wd.stride as i32,
                stride_h: h.stride as i32,
                fused_activation_function: fused,
                ..Default::default()
            })),
        );
        outputs.push(out);
    }
    if plan.groups > 1 {
        lx.op(
            tfl::BuiltinOperator::CONCATENATION,
            outputs.into_iter().map(Some).collect(),
            vec![conv_out],
            tfl::BuiltinOptionsT::ConcatenationOptions(Box::new(tfl::ConcatenationOptionsT {
                axis: 3,
                ..Default::default()
            })),
        );
    }
    if slice {
        let begin = [0, plan.axes[0].begin, plan.axes[1].begin, 0];
        slice_into(lx, conv_out, &begin, sink.first);
    }
    sink.finish(lx)
}

#[cfg(test)]
mod tests;
