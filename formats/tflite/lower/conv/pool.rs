//! MaxPool and AveragePool (MAX_POOL_2D, AVERAGE_POOL_2D), GlobalAveragePool
//! and GlobalMaxPool (MEAN, REDUCE_MAX over the spatial axes).

use crate::ir::error::Result;
use crate::ir::ops::PoolAttrs;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op, ValueId};

use super::super::super::model::TensorId;
use super::super::super::schema as tfl;
use super::super::support::dtypes_in;
use super::super::{Layout, Lowerer, dims_i32};
use super::{
    Axis, Sink, WindowPads, as_2d, check_output, f32_tensor, input_of, nhwc_input, output_of,
    pad_hw, shape_of, shape_usize, windows,
};

#[derive(Clone, Debug)]
pub(super) enum PoolPlan {
    Window(WindowPlan),
    Sliced(SlicedPlan),
}

/// MAX_POOL_2D or AVERAGE_POOL_2D (1-D windows as 2-D).
#[derive(Clone, Debug)]
pub(super) struct WindowPlan {
    max: bool,
    axes: [Axis; 2],
    pads: WindowPads,
    /// AveragePool after a PAD: per axis (H, W), `kernel length / ONNX
    /// divisor` for each output position, where the divisor is not the
    /// kernel length everywhere. The divisor of a window is the product of
    /// its axes' counts, so two vectors rescale it (vectors also stay float32
    /// under `--quant fp16`).
    rescale: [Option<Vec<f32>>; 2],
}

/// Windows TFLite's pooling cannot take (dilated, 3-D): the padded input
/// cut by one STRIDED_SLICE per kernel offset, combined by MAXIMUM or ADD;
/// a sum is then divided per axis.
#[derive(Clone, Debug)]
pub(super) struct SlicedPlan {
    max: bool,
    axes: Vec<Axis>,
    /// Per spatial axis, `1 / ONNX divisor` for each output position.
    rescale: Vec<Option<Vec<f32>>>,
}

/// Kernel offsets the sliced form unrolls at most.
const SLICED_TAPS: usize = 128;

const MAX_TYPES: &[DType] = &[DType::F32, DType::U8, DType::I8];

fn attrs(node: &Node) -> std::result::Result<(&PoolAttrs, bool), String> {
    match &node.op {
        Op::MaxPool(a) => Ok((a, true)),
        Op::AveragePool(a) => Ok((a, false)),
        other => Err(format!("{} is not a pooling op", other.name())),
    }
}

pub(super) fn plan(g: &Graph, node: &Node) -> std::result::Result<PoolPlan, String> {
    let (a, max) = attrs(node)?;
    // Without quantization parameters the 8-bit max pool kernels compare
    // raw values (XNNPACK leaves them to the builtin kernels).
    dtypes_in(g, node, if max { MAX_TYPES } else { &[DType::F32] })?;
    let (x, y) = (input_of(node, 0)?, output_of(node)?);
    let xs = shape_of(g, x)?;
    if !matches!(xs.len(), 3..=5) {
        return Err(format!(
            "a rank-{} input: TFLite pools 1-D, 2-D and (unrolled) 3-D windows",
            xs.len()
        ));
    }
    let axes = windows(
        &xs[2..],
        &a.kernel_shape,
        &a.strides,
        &a.dilations,
        &a.padding,
        a.ceil_mode,
    )?;
    check_output(g, y, &xs[..2], &axes)?;
    let dilated = axes.iter().any(|a| a.dilation > 1 && a.kernel > 1);
    if dilated || axes.len() > 2 {
        let taps: usize = axes.iter().map(|a| a.kernel).product();
        if taps > SLICED_TAPS {
            return Err(format!(
                "a {taps}-cell {}window: TFLite's pooling takes undilated 2-D windows, and unrolling this one is too large",
                if dilated { "dilated " } else { "" }
            ));
        }
        let rescale = axes
            .iter()
            .map(|ax| {
                let factors: Vec<f32> = divisors(ax, a.count_include_pad)
                    .iter()
                    .map(|&n| if n == 0 { 0.0 } else { 1.0 / n as f32 })
                    .collect();
                (!max && factors.iter().any(|&f| f != 1.0)).then_some(factors)
            })
            .collect();
        return Ok(PoolPlan::Sliced(SlicedPlan { max, axes, rescale }));
    }
    let axes = as_2d(&axes)?;
    if max {
        // SAME max pooling ignores the padded cells, as ONNX does.
        return Ok(PoolPlan::Window(WindowPlan {
            max,
            pads: WindowPads::choose(&axes),
            axes,
            rescale: [None, None],
        }));
    }
    let touches = axes.iter().any(Axis::touches_padding);
    if axes.iter().all(Axis::is_valid) || (!touches && axes.iter().all(Axis::is_same)) {
        return Ok(PoolPlan::Window(WindowPlan {
            max,
            pads: WindowPads::Valid,
            axes,
            rescale: [None, None],
        }));
    }
    // SAME average pooling divides by the cells inside the input, as
    // ONNX does without count_include_pad.
    if !a.count_include_pad && axes.iter().all(Axis::is_same) {
        return Ok(PoolPlan::Window(WindowPlan {
            max,
            pads: WindowPads::Same,
            axes,
            rescale: [None, None],
        }));
    }
    let pads = WindowPads::Explicit(axes.iter().map(|a| (a.begin, a.reach())).collect());
    let counts = axes.map(|ax| divisors(&ax, a.count_include_pad));
    let rescale = [0, 1].map(|i| {
        let factors: Vec<f32> = counts[i]
            .iter()
            .map(|&n| {
                if n == 0 {
                    0.0
                } else {
                    axes[i].kernel as f32 / n as f32
                }
            })
            .collect();
        factors.iter().any(|&f| f != 1.0).then_some(factors)
    });
    Ok(PoolPlan::Window(WindowPlan {
        max,
        axes,
        pads,
        rescale,
    }))
}

/// ONNX's divisor along one axis for each output position: the window's
/// cells inside the input, or inside input and pads with count_include_pad
/// (cells a ceil-mode window reaches past the end pads never count).
fn divisors(a: &Axis, include_pad: bool) -> Vec<usize> {
    let (lo, hi) = if include_pad {
        (0, a.begin + a.input + a.end)
    } else {
        (a.begin, a.begin + a.input)
    };
    (0..a.output)
        .map(|o| {
            (0..a.kernel)
                .map(|k| o * a.stride + k * a.dilation)
                .filter(|&i| (lo..hi).contains(&i))
                .count()
        })
        .collect()
}

pub(super) fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    match plan(lx.g, node).map_err(|e| lx.error(e))? {
        PoolPlan::Window(p) => lower_window(lx, node, p),
        PoolPlan::Sliced(p) => lower_sliced(lx, node, p),
    }
}

/// The smallest value of `x`'s type: padding no max can pick.
fn lowest(lx: &mut Lowerer, x: ValueId, name: &str) -> Result<TensorId> {
    let lowest = match lx.dtype(x)? {
        DType::U8 => Tensor::from_bytes(DType::U8, &[], &[0]),
        DType::I8 => Tensor::from_bytes(DType::I8, &[], &[0x80]),
        _ => Ok(Tensor::scalar_f32(f32::MIN)),
    }
    .map_err(|e| lx.error(e.to_string()))?;
    lx.const_tensor(name, &lowest)
}

fn lower_window(lx: &mut Lowerer, node: &Node, plan: WindowPlan) -> Result<()> {
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let mut xt = nhwc_input(lx, x)?;
    if let WindowPads::Explicit(p) = &plan.pads {
        let name = format!("{}_padded", lx.g.value(x).name);
        // Padded cells must never win a max.
        let fill = if plan.max {
            Some(lowest(lx, x, &format!("{name}_value"))?)
        } else {
            None
        };
        xt = pad_hw(lx, xt, p, fill, &name);
    }
    let [h, w] = plan.axes;
    let n = lx.shape(x)?[0];
    let c = lx.shape(x)?[1];
    let shape = [n, h.output, w.output, c];
    let sink = Sink::new(lx, y, &shape, None)?;
    let scaled: Vec<(usize, &Vec<f32>)> = plan
        .rescale
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        .collect();
    let dtype = lx.model.tensor(sink.first).dtype;
    let name = lx.g.value(y).name.clone();
    let pooled = if scaled.is_empty() {
        sink.first
    } else {
        lx.temp(&format!("{name}_sum"), dtype, dims_i32(&shape))
    };
    let code = if plan.max {
        tfl::BuiltinOperator::MAX_POOL_2D
    } else {
        tfl::BuiltinOperator::AVERAGE_POOL_2D
    };
    let version = match lx.dtype(x)? {
        DType::I8 => 2,
        _ => 1,
    };
    lx.op_version(
        code,
        version,
        vec![Some(xt)],
        vec![pooled],
        tfl::BuiltinOptionsT::Pool2DOptions(Box::new(tfl::Pool2DOptionsT {
            padding: plan.pads.tfl(),
            stride_w: w.stride as i32,
            stride_h: h.stride as i32,
            filter_width: w.kernel as i32,
            filter_height: h.kernel as i32,
            fused_activation_function: tfl::ActivationFunctionType::NONE,
        })),
    );
    let mut cur = pooled;
    for (k, &(i, factors)) in scaled.iter().enumerate() {
        let mut along = [1, 1, 1, 1];
        along[i + 1] = factors.len();
        let factor = f32_tensor(&along, factors.clone())?;
        let factor = lx.const_tensor(&format!("{}_divisor{i}", node.name), &factor)?;
        let out = if k + 1 == scaled.len() {
            sink.first
        } else {
            lx.temp(&format!("{name}_rescaled{i}"), dtype, dims_i32(&shape))
        };
        lx.op(
            tfl::BuiltinOperator::MUL,
            vec![Some(cur), Some(factor)],
            vec![out],
            tfl::BuiltinOptionsT::MulOptions(Box::default()),
        );
        cur = out;
    }
    sink.finish(lx)
}

fn lower_sliced(lx: &mut Lowerer, node: &Node, plan: SlicedPlan) -> Result<()> {
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let name = lx.g.value(y).name.clone();
    let mut xt = lx.operand(x, Layout::ChannelsLast)?;
    let pads: Vec<(usize, usize)> = plan.axes.iter().map(|a| (a.begin, a.reach())).collect();
    if pads.iter().any(|&p| p != (0, 0)) {
        let hint = format!("{}_padded", lx.g.value(x).name);
        let fill = if plan.max {
            Some(lowest(lx, x, &format!("{hint}_value"))?)
        } else {
            None
        };
        xt = pad_hw(lx, xt, &pads, fill, &hint);
    }
    let padded = shape_usize(lx, xt);
    let rank = padded.len();
    let mut out_shape = padded.clone();
    for (i, a) in plan.axes.iter().enumerate() {
        out_shape[i + 1] = a.output;
    }
    let dtype = lx.model.tensor(xt).dtype;
    let kernel: Vec<usize> = plan.axes.iter().map(|a| a.kernel).collect();
    let taps: usize = kernel.iter().product();
    let mut acc: Option<TensorId> = None;
    for tap in 0..taps {
        // Kernel offset of this tap, last axis fastest.
        let mut rest = tap;
        let mut offset = vec![0; kernel.len()];
        for i in (0..kernel.len()).rev() {
            offset[i] = rest % kernel[i];
            rest /= kernel[i];
        }
        let mut begin = vec![0i32; rank];
        let mut end: Vec<i32> = dims_i32(&padded);
        let mut strides = vec![1i32; rank];
        for (i, a) in plan.axes.iter().enumerate() {
            let start = offset[i] * a.dilation;
            begin[i + 1] = start as i32;
            end[i + 1] = (start + (a.output - 1) * a.stride + 1) as i32;
            strides[i + 1] = a.stride as i32;
        }
        let hint = format!("{name}_tap{tap}");
        let cut = lx.temp(&hint, dtype, dims_i32(&out_shape));
        let begin = lx.const_i32(&format!("{hint}_begin"), &begin);
        let end = lx.const_i32(&format!("{hint}_end"), &end);
        let strides = lx.const_i32(&format!("{hint}_strides"), &strides);
        lx.op(
            tfl::BuiltinOperator::STRIDED_SLICE,
            vec![Some(xt), Some(begin), Some(end), Some(strides)],
            vec![cut],
            tfl::BuiltinOptionsT::StridedSliceOptions(Box::default()),
        );
        acc = Some(match acc {
            None => cut,
            Some(prev) => {
                let out = lx.temp(&format!("{name}_acc{tap}"), dtype, dims_i32(&out_shape));
                let (code, options) = if plan.max {
                    (
                        tfl::BuiltinOperator::MAXIMUM,
                        tfl::BuiltinOptionsT::MaximumMinimumOptions(Box::default()),
                    )
                } else {
                    (
                        tfl::BuiltinOperator::ADD,
                        tfl::BuiltinOptionsT::AddOptions(Box::default()),
                    )
                };
                lx.op(code, vec![Some(prev), Some(cut)], vec![out], options);
                out
            }
        });
    }
    let mut cur = acc.expect("a window has at least one cell");
    for (i, factors) in plan.rescale.iter().enumerate() {
        let Some(factors) = factors else { continue };
        let mut along = vec![1; rank];
        along[i + 1] = factors.len();
        let factor = f32_tensor(&along, factors.clone())?;
        let factor = lx.const_tensor(&format!("{}_divisor{i}", node.name), &factor)?;
        let out = lx.temp(&format!("{name}_mean{i}"), dtype, dims_i32(&out_shape));
        lx.op(
            tfl::BuiltinOperator::MUL,
            vec![Some(cur), Some(factor)],
            vec![out],
            tfl::BuiltinOptionsT::MulOptions(Box::default()),
        );
        cur = out;
    }
    lx.alias(y, cur, Layout::ChannelsLast);
    Ok(())
}

/// GlobalAveragePool and GlobalMaxPool reduce the spatial axes in whatever
/// layout their input is stored.
pub(super) fn global_plan(g: &Graph, node: &Node) -> std::result::Result<usize, String> {
    dtypes_in(g, node, &[DType::F32])?;
    let rank = shape_of(g, input_of(node, 0)?)?.len();
    if rank < 3 {
        return Err(format!("a rank-{rank} input has no spatial axes"));
    }
    output_of(node)?;
    Ok(rank)
}

pub(super) fn lower_global(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let rank = global_plan(lx.g, node).map_err(|e| lx.error(e))?;
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let layout = lx.common_layout(&[x], rank);
    let xt = lx.operand(x, layout)?;
    let mut axes: Vec<i32> = (2..rank)
        .map(|a| layout.stored_axis(a, rank) as i32)
        .collect();
    axes.sort_unstable();
    let axes = lx.const_i32(&format!("{}_axes", node.name), &axes);
    let out = lx.define(y, layout)?;
    let code = match node.op {
        Op::GlobalMaxPool => tfl::BuiltinOperator::REDUCE_MAX,
        _ => tfl::BuiltinOperator::MEAN,
    };
    lx.op(
        code,
        vec![Some(xt), Some(axes)],
        vec![out],
        tfl::BuiltinOptionsT::ReducerOptions(Box::new(tfl::ReducerOptionsT { keep_dims: true })),
    );
    Ok(())
}
