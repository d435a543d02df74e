//! Quantization ops:
//!
//! - DequantizeLinear -> DEQUANTIZE. The integer input carries the scale and
//!   zero point as its tensor quantization (per tensor, or per axis with
//!   `quantized_dimension`). A constant input (a quantized weight) becomes an
//!   int8/uint8 constant tensor, so the file keeps the small weights; LiteRT
//!   dequantizes a constant input once, at preparation.
//! - QuantizeLinear -> QUANTIZE, its output tensor carrying the parameters.
//!
//! Scale and zero point must be constants: TFLite keeps them in the tensor,
//! not as operands (computed ones become arithmetic in the legalization, as
//! does a small MatMulInteger). Both ops are elementwise, so they keep the
//! input's layout (a per-axis dimension is remapped).

use crate::formats::target::Support;
use crate::ir::error::Result;
use crate::ir::ops::Op;
use crate::ir::{DType, Graph, Node, ValueId};

use super::super::model::{TensorId, TflQuant};
use super::super::schema as tfl;
use super::{Layout, Lowerer, tensor_type};

/// Quantization parameters read from a node's constant operands.
struct Params {
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    /// The quantized source axis when per axis.
    axis: Option<usize>,
}

fn constant(g: &Graph, v: ValueId) -> Option<crate::ir::Tensor> {
    let w = g.weight_of(v)?;
    crate::ir::Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()
}

/// The integer dtypes TFLite's (DE)QUANTIZE kernels take.
fn quantized_type(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8 | DType::I16)
}

/// Scale (f32) and zero point (the integer dtype `int`) of a QuantizeLinear
/// or DequantizeLinear node whose integer side has shape `shape`.
fn params(
    g: &Graph,
    node: &Node,
    axis: i64,
    block_size: usize,
    int: DType,
    shape: &[usize],
) -> std::result::Result<Params, String> {
    if block_size != 0 {
        return Err("blocked quantization has no TFLite form".into());
    }
    let scale = node.input(1).ok_or("the scale is required")?;
    if g.fact(scale).dtype != Some(DType::F32) {
        return Err("the scale must be float32".into());
    }
    let scales: Vec<f32> = constant(g, scale)
        .ok_or("the scale must be a constant: TFLite keeps it in the tensor")?
        .to_f64_vec()
        .into_iter()
        .map(|s| s as f32)
        .collect();
    let zero_points = match node.input(2) {
        Some(zp) => {
            if g.fact(zp).dtype != Some(int) {
                return Err(format!("the zero point must be {}", int.name()));
            }
            constant(g, zp)
                .ok_or("the zero point must be a constant: TFLite keeps it in the tensor")?
                .to_i64_vec()
                .map_err(|e| e.to_string())?
        }
        None => vec![0; scales.len()],
    };
    if zero_points.len() != scales.len() {
        return Err("scale and zero point differ in length".into());
    }
    if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err("scales must be positive and finite".into());
    }
    if int == DType::I16 && zero_points.iter().any(|&z| z != 0) {
        return Err("TFLite's int16 quantization is symmetric (zero point 0)".into());
    }
    let rank = shape.len() as i64;
    let per_axis = g.fact(scale).shape.rank().is_some_and(|r| r == 1) && scales.len() > 1;
    let axis = if per_axis {
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank || shape[a as usize] != scales.len() {
            return Err(format!(
                "{} scales do not run along axis {axis} of {shape:?}",
                scales.len()
            ));
        }
        Some(a as usize)
    } else {
        if scales.len() != 1 {
            return Err("the scale must be a scalar or 1-D".into());
        }
        None
    };
    Ok(Params {
        scales,
        zero_points,
        axis,
    })
}

/// What the lowering of a supported node needs: the integer dtype and the params.
fn plan(g: &Graph, node: &Node) -> std::result::Result<(DType, Params), String> {
    let x = node.input(0).ok_or("x is required")?;
    let y = node.outputs[0];
    let shape = |v: ValueId| g.fact(v).shape.as_fixed().ok_or("static shapes are needed");
    match &node.op {
        Op::DequantizeLinear(a) => {
            let int = g.fact(x).dtype.ok_or("x has no dtype")?;
            if !quantized_type(int) {
                return Err(format!(
                    "TFLite's DEQUANTIZE takes int8, uint8 or int16, not {}",
                    int.name()
                ));
            }
            if g.fact(y).dtype != Some(DType::F32) {
                return Err("the output must be float32".into());
            }
            Ok((int, params(g, node, a.axis, a.block_size, int, &shape(x)?)?))
        }
        Op::QuantizeLinear(a) => {
            let int = g.fact(y).dtype.ok_or("y has no dtype")?;
            if !quantized_type(int) {
                return Err(format!(
                    "TFLite's QUANTIZE gives int8, uint8 or int16, not {}",
                    int.name()
                ));
            }
            if g.fact(x).dtype != Some(DType::F32) {
                return Err("the input must be float32".into());
            }
            Ok((int, params(g, node, a.axis, a.block_size, int, &shape(x)?)?))
        }
        Op::MatMulInteger => Err(super::super::legalize::quantization_arithmetic(g, node)
            .err()
            .unwrap_or_default()),
        other => Err(format!("{} is not a quantization op", other.name())),
    }
}

pub fn support(g: &Graph, node: &Node) -> Support {
    match plan(g, node) {
        Ok(_) => Support::Native,
        Err(why) => match super::super::legalize::quantization_arithmetic(g, node) {
            Ok(()) => {
                Support::AfterLegalize(format!("{} becomes float32 arithmetic", node.op.name()))
            }
            Err(_) => Support::Unsupported(why),
        },
    }
}

/// The TFLite quantization of a tensor stored in `layout` (rank `rank`).
fn tfl_quant(p: &Params, layout: Layout, rank: usize) -> TflQuant {
    TflQuant {
        scale: p.scales.clone(),
        zero_point: p.zero_points.clone(),
        axis: p.axis.map_or(0, |a| layout.stored_axis(a, rank) as i32),
    }
}

pub fn lower(lx: &mut Lowerer, node: &Node) -> Result<()> {
    let (int, p) = plan(lx.g, node).map_err(|e| lx.error(e))?;
    let x = lx.input(node, 0)?;
    let y = node.outputs[0];
    let rank = lx.rank(x)?;
    let layout = lx.common_layout(&[x], rank).effective(rank);
    let quant = tfl_quant(&p, layout, rank);
    match &node.op {
        Op::DequantizeLinear(_) => {
            let input = quantized_input(lx, x, layout, int, quant)?;
            let out = lx.define(y, layout)?;
            // Version 2 takes int8, 3 int16, 5 per-channel int8.
            let version = match (int, p.axis) {
                (DType::I8, Some(_)) => 5,
                (DType::I8, None) => 2,
                (DType::I16, _) => 3,
                _ => 1,
            };
            lx.op_version(
                tfl::BuiltinOperator::DEQUANTIZE,
                version,
                vec![Some(input)],
                vec![out],
                tfl::BuiltinOptionsT::NONE,
            );
        }
        _ => {
            let input = lx.operand(x, layout)?;
            let out = lx.define(y, layout)?;
            lx.model.tensor_mut(out).quant = Some(quant);
            let version = match (int, p.axis) {
                (_, Some(_)) => 3,
                (DType::I16, None) => 2,
                _ => 1,
            };
            lx.op_version(
                tfl::BuiltinOperator::QUANTIZE,
                version,
                vec![Some(input)],
                vec![out],
                tfl::BuiltinOptionsT::NONE,
            );
        }
    }
    Ok(())
}

/// `x` as an integer tensor carrying `quant` (constants stay integer
/// constants), or a RESHAPE copy when it already carries different ones.
fn quantized_input(
    lx: &mut Lowerer,
    x: ValueId,
    layout: Layout,
    int: DType,
    quant: TflQuant,
) -> Result<TensorId> {
    let t = lx.operand(x, layout)?;
    match &lx.model.tensor(t).quant {
        None => {
            lx.model.tensor_mut(t).quant = Some(quant);
            Ok(t)
        }
        Some(q) if *q == quant => Ok(t),
        Some(_) => {
            let shape = lx.model.tensor(t).shape.clone();
            let dtype = tensor_type(int).map_err(|e| lx.error(e))?;
            let name = format!("{}_requantized", lx.g.value(x).name);
            let copy = lx.temp(&name, dtype, shape.clone());
            lx.model.tensor_mut(copy).quant = Some(quant);
            let target = lx.const_i32(&format!("{name}_shape"), &shape);
            lx.op(
                tfl::BuiltinOperator::RESHAPE,
                vec![Some(t), Some(target)],
                vec![copy],
                tfl::BuiltinOptionsT::NONE,
            );
            Ok(copy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::lower::{LowerOptions, lower as lower_graph};
    use crate::ir::text::parse;

    #[test]
    fn a_per_axis_int8_weight_stays_int8_behind_dequantize() {
        let g = parse(
            "graph g {
  weight q: i8[2,3] = [1,-2,3,-4,5,-6]
  weight s: f32[3] = [0.5,0.25,2]
  node dq: y: f32[2,3] = DequantizeLinear {\"axis\":1,\"block_size\":0} (q, s, _)
  output y
}",
        )
        .unwrap();
        let node = g.nodes().next().unwrap().1;
        assert_eq!(support(&g, node), Support::Native);
        let model = lower_graph(&g, &LowerOptions::default()).unwrap();
        let op = &model.operators[0];
        assert_eq!(op.code, tfl::BuiltinOperator::DEQUANTIZE);
        assert_eq!(op.version, 5);
        let input = model.tensor(op.inputs[0].unwrap());
        assert_eq!(input.dtype, tfl::TensorType::INT8);
        assert_eq!(input.data.as_ref().unwrap().len(), 6);
        let quant = input.quant.as_ref().unwrap();
        assert_eq!(quant.scale, [0.5, 0.25, 2.0]);
        assert_eq!(quant.zero_point, [0, 0, 0]);
        assert_eq!(quant.axis, 1);
    }

    #[test]
    fn quantize_then_dequantize_share_the_quantized_tensor() {
        let g = parse(
            "graph g {
  input x: f32[2,4]
  weight s: f32[] = [0.1]
  weight z: u8[] = [128]
  node q: xq: u8[2,4] = QuantizeLinear {\"axis\":1,\"saturate\":true,\"block_size\":0,\"output_dtype\":null} (x, s, z)
  node dq: y: f32[2,4] = DequantizeLinear {\"axis\":1,\"block_size\":0} (xq, s, z)
  output y
}",
        )
        .unwrap();
        let model = lower_graph(&g, &LowerOptions::default()).unwrap();
        let codes: Vec<_> = model.operators.iter().map(|o| o.code).collect();
        assert_eq!(
            codes,
            [
                tfl::BuiltinOperator::QUANTIZE,
                tfl::BuiltinOperator::DEQUANTIZE
            ]
        );
        let q = model.operators[0].outputs[0];
        assert_eq!(model.operators[1].inputs[0], Some(q));
        let quant = model.tensor(q).quant.as_ref().unwrap();
        assert_eq!((quant.scale[0], quant.zero_point[0]), (0.1, 128));
    }

    #[test]
    fn computed_parameters_become_arithmetic_blocks_and_matmulinteger_are_refused() {
        let g = parse(
            "graph g {
  input x: i8[2,4]
  input w: i32[2,4]
  input s: f32[]
  weight sb: f32[2,2] = [1,1,1,1]
  input a: u8[2,300]
  input b: u8[300,2]
  node dq: y: f32[2,4] = DequantizeLinear {\"axis\":1,\"block_size\":0} (x, s, _)
  node dw: yw: f32[2,4] = DequantizeLinear {\"axis\":1,\"block_size\":0} (w, s, _)
  node db: yb: f32[2,4] = DequantizeLinear {\"axis\":1,\"block_size\":2} (x, sb, _)
  node mi: m: i32[2,2] = MatMulInteger (a, b, _, _)
  output y, yw, yb, m
}",
        )
        .unwrap();
        let support: Vec<Support> = g.nodes().map(|(_, n)| support(&g, n)).collect();
        assert!(
            matches!(support[0], Support::AfterLegalize(_)),
            "{support:?}"
        );
        let reasons: Vec<&String> = support[1..]
            .iter()
            .map(|s| match s {
                Support::Unsupported(why) => why,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("not i32"), "{reasons:?}");
        assert!(reasons[1].contains("blocked"), "{reasons:?}");
        assert!(reasons[2].contains("not exact in float32"), "{reasons:?}");
    }
}
