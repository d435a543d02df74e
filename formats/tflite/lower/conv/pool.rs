//! MaxPool and AveragePool (MAX_POOL_2D, AVERAGE_POOL_2D), GlobalAveragePool
//! and GlobalMaxPool (MEAN, REDUCE_MAX over the spatial axes).

use crate::ir::error::Result;
use crate::ir::ops::PoolAttrs;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Graph, Node, Op};

use super::super::super::schema as tfl;
use super::super::support::dtypes_in;
use super::super::{Lowerer, dims_i32};
use super::{
    Axis, Sink, WindowPads, as_2d, check_output, f32_tensor, input_of, nhwc_input, output_of,
    pad_hw, shape_of, windows,
};

#[derive(Clone, Debug)]
pub(super) struct PoolPlan {
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
    if !matches!(xs.len(), 3 | 4) {
        return Err(format!(
            "a rank-{} input: TFLite pools 1-D and 2-D windows (rank 3 or 4)",
            xs.len()
        ));
    }
    let dilated = a
        .dilations
        .iter()
        .zip(&a.kernel_shape)
        .any(|(&d, &k)| d != 1 && k != 1);
    if dilated {
        return Err(format!(
            "dilations {:?}: TFLite's pooling has no dilation",
            a.dilations
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
    let axes = as_2d(&axes)?;
    if max {
        // SAME max pooling ignores the padded cells, as ONNX does.
        return Ok(PoolPlan {
            max,
            pads: WindowPads::choose(&axes),
            axes,
            rescale: [None, None],
        });
    }
    let touches = axes.iter().any(Axis::touches_padding);
    if axes.iter().all(Axis::is_valid) || (!touches && axes.iter().all(Axis::is_same)) {
        return Ok(PoolPlan {
            max,
            pads: WindowPads::Valid,
            axes,
            rescale: [None, None],
        });
    }
    // SAME average pooling divides by the cells inside the input, as
    // ONNX does without count_include_pad.
    if !a.count_include_pad && axes.iter().all(Axis::is_same) {
        return Ok(PoolPlan {
            max,
            pads: WindowPads::Same,
            axes,
            rescale: [None, None],
        });
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
    Ok(PoolPlan {
        max,
        axes,
        pads,
        rescale,
    })
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
            let start = o * a.stride;
            let end = start + a.kernel;
            end.min(hi).saturating_sub(start.max(lo))
        })
        .collect()
}

pub(super) fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let plan = plan(lx.g, node).map_err(|e| lx.error(e))?;
    let (x, y) = (lx.input(node, 0)?, node.outputs[0]);
    let mut xt = nhwc_input(lx, x)?;
    if let WindowPads::Explicit(p) = &plan.pads {
        let name = format!("{}_padded", lx.g.value(x).name);
        // Padded cells must never win a max.
        let fill = if plan.max {
            let lowest = match lx.dtype(x)? {
                DType::U8 => Tensor::from_bytes(DType::U8, &[], &[0]),
                DType::I8 => Tensor::from_bytes(DType::I8, &[], &[0x80]),
                _ => Ok(Tensor::scalar_f32(f32::MIN)),
            }
            .map_err(|e| lx.error(e.to_string()))?;
            Some(lx.const_tensor(&format!("{name}_value"), &lowest)?)
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
