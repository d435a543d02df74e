//! Integer weights dequantized with elementwise ops recognised as quantized
//! weights: a `DequantizeLinear` of the integer weight, whose fact carries
//! the quantization parameters (the IR's canonical quantized-weight form).

use crate::ir::error::Result;
use crate::ir::ops::{DequantizeAttrs, Op};
use crate::ir::patch::{Patch, PatchQuant, PatchValue};
use crate::ir::{DType, Graph, NodeId, OpKind, ValueId};

use super::matching::{Matcher, Rule, fresh_name, rewrite_until_stable, weight};
use crate::passes::manager::{Changed, Pass, PassCx};

/// Recognises quantized weights:
///
/// - `cast_mul_dequantize`: integer weight → Cast to float → (Sub a constant
///   zero point) → Mul by a constant scale, per tensor or per channel (the
///   scale varies along one axis of the weight) → `DequantizeLinear(q, scale,
///   zero_point)`. Zero points must be whole numbers in the weight's range.
/// - `dequantize_linear_constant`: a `DequantizeLinear` of an integer weight
///   whose value has no quantization parameters yet.
///
/// Either way the integer weight's fact gets `quant` set.
pub struct RecognizeDequantize;

impl Pass for RecognizeDequantize {
    fn name(&self) -> &'static str {
        "recognize_dequantize"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        const RULES: &[Rule] = &[cast_mul_dequantize, dequantize_linear_constant];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// How quantization parameters map onto a weight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Granularity {
    Tensor,
    Axis(usize),
}

/// The granularity of a parameter of shape `param` for a weight of shape
/// `weight` (right-aligned broadcasting), if it is per tensor or per axis.
fn granularity(param: &[usize], weight: &[usize]) -> Option<Granularity> {
    if param.iter().product::<usize>() == 1 {
        return Some(Granularity::Tensor);
    }
    if param.len() > weight.len() {
        return None;
    }
    let offset = weight.len() - param.len();
    let mut varying = param.iter().enumerate().filter(|(_, d)| **d != 1);
    let (i, &len) = varying.next()?;
    (varying.next().is_none() && weight[offset + i] == len).then_some(Granularity::Axis(offset + i))
}

/// An integer weight (the value `q` of `Cast(q)`), with its shape.
fn integer_weight(m: &Matcher, v: ValueId) -> Option<(ValueId, Vec<usize>, DType)> {
    let w = m.g.weight_of(v)?;
    let quantized = w.dtype.is_integer() && m.g.fact(v).quant.is_none();
    quantized.then(|| (v, w.shape.clone(), w.dtype))
}

/// Parameter values as a weight of `dtype` shaped for DequantizeLinear
/// (a scalar, or 1-D along the axis).
fn param_weight(
    m: &Matcher,
    p: &mut Patch,
    name: &str,
    dtype: DType,
    values: Vec<f64>,
) -> Result<PatchValue> {
    let shape = if values.len() == 1 {
        vec![]
    } else {
        vec![values.len()]
    };
    Ok(p.add_weight(weight(fresh_name(m.g, name), dtype, &shape, values)?))
}

fn cast_mul_dequantize(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let mul = m.node(id);
    if mul.op != Op::Mul {
        return Ok(None);
    }
    let y = mul.outputs[0];
    let found = mul.inputs.iter().flatten().find_map(|&scale| {
        let f = m.other_operand(mul, scale)?;
        let scale_values = m.constant(scale).filter(|t| t.dtype().is_float())?;
        Some((scale_values, f))
    });
    let Some((scale_values, f)) = found.filter(|(_, f)| m.single_use(*f)) else {
        return Ok(None);
    };
    let mut nodes = vec![id];
    let (cast_input, zero_point) = match m.producer(f, OpKind::Sub) {
        Some((sub_id, sub)) => {
            let (Some(c), Some(zp)) = (sub.input(0), sub.input(1)) else {
                return Ok(None);
            };
            nodes.push(sub_id);
            (c, Some(zp))
        }
        None => (f, None),
    };
    let Some((cast_id, cast)) = m
        .producer(cast_input, OpKind::Cast)
        .filter(|_| m.single_use(cast_input))
    else {
        return Ok(None);
    };
    nodes.push(cast_id);
    let Some((q, q_shape, q_dtype)) = cast.input(0).and_then(|v| integer_weight(m, v)) else {
        return Ok(None);
    };
    let out_fact = m.g.fact(y);
    if out_fact.dtype != Some(scale_values.dtype())
        || out_fact.shape.as_fixed() != Some(q_shape.clone())
    {
        return Ok(None);
    }
    let Some(axis) = granularity(scale_values.shape(), &q_shape) else {
        return Ok(None);
    };
    let zero_point = match zero_point {
        None => None,
        Some(zp) => {
            let Some(values) = integral_zero_point(m, zp, axis, &q_shape, q_dtype) else {
                return Ok(None);
            };
            Some(values)
        }
    };

    let mut p = Patch::new("cast_mul_dequantize");
    let q_name = &m.g.value(q).name;
    let scales = scale_values.to_f64_vec();
    let scale_input = param_weight(
        m,
        &mut p,
        &format!("{q_name}.scale"),
        scale_values.dtype(),
        scales.clone(),
    )?;
    let zp_input = zero_point
        .clone()
        .map(|z| param_weight(m, &mut p, &format!("{q_name}.zero_point"), q_dtype, z))
        .transpose()?;
    let quant = match axis {
        Granularity::Tensor => PatchQuant::PerTensor {
            scale: scales[0] as f32,
            zero_point: zero_point.map_or(0, |z| z[0] as i32),
        },
        Granularity::Axis(axis) => PatchQuant::PerAxis {
            axis,
            scales: scale_input,
            zero_points: zp_input,
        },
    };
    p.set_quant(p.tap(q), quant);
    let attrs = DequantizeAttrs {
        axis: match axis {
            Granularity::Axis(a) => a as i64,
            Granularity::Tensor => 1,
        },
        block_size: 0,
    };
    let out = p.add_node(
        mul.name.clone(),
        Op::DequantizeLinear(attrs),
        vec![Some(p.tap(q)), Some(scale_input), zp_input],
        vec![(m.g.value(y).name.clone(), out_fact.clone())],
    );
    p.redirect(y, out[0]);
    for n in nodes {
        p.remove_node(n);
    }
    Ok(Some(p))
}

/// The zero point's values when it has the scale's granularity and holds
/// whole numbers the weight's integer type can represent.
fn integral_zero_point(
    m: &Matcher,
    zp: ValueId,
    axis: Granularity,
    q_shape: &[usize],
    q_dtype: DType,
) -> Option<Vec<f64>> {
    let t = m.constant(zp)?;
    let fits = match granularity(t.shape(), q_shape)? {
        Granularity::Tensor => true,
        g => g == axis,
    };
    let (lo, hi) = integer_range(q_dtype)?;
    let values = t.to_f64_vec();
    let representable = values
        .iter()
        .all(|&z| z.fract() == 0.0 && (lo..=hi).contains(&z));
    (fits && representable).then_some(values)
}

/// The values an integer weight type holds.
fn integer_range(dtype: DType) -> Option<(f64, f64)> {
    Some(match dtype {
        DType::I4 => (-8.0, 7.0),
        DType::U4 => (0.0, 15.0),
        DType::I8 => (-128.0, 127.0),
        DType::U8 => (0.0, 255.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::U16 => (0.0, 65535.0),
        DType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        _ => return None,
    })
}

fn dequantize_linear_constant(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let node = m.node(id);
    let Op::DequantizeLinear(attrs) = &node.op else {
        return Ok(None);
    };
    let (Some(q), Some(scale)) = (node.input(0), node.input(1)) else {
        return Ok(None);
    };
    let Some((q, q_shape, _)) = integer_weight(m, q) else {
        return Ok(None);
    };
    let Some(scale_values) = m.constant(scale) else {
        return Ok(None);
    };
    let zp = node.input(2);
    let zp_values = zp.map(|z| m.constant(z));
    if attrs.block_size != 0 || zp_values.as_ref().is_some_and(Option::is_none) {
        return Ok(None);
    }
    let mut p = Patch::new("dequantize_linear_constant");
    let quant = if scale_values.len() == 1 {
        let zero_point = zp_values.flatten().map_or(0, |z| z.to_f64_vec()[0] as i32);
        PatchQuant::PerTensor {
            scale: scale_values.to_f64_vec()[0] as f32,
            zero_point,
        }
    } else {
        let rank = q_shape.len() as i64;
        let axis = if attrs.axis < 0 {
            attrs.axis + rank
        } else {
            attrs.axis
        };
        let Some(axis) = usize::try_from(axis).ok().filter(|&a| a < q_shape.len()) else {
            return Ok(None);
        };
        if scale_values.shape() != [q_shape[axis]] {
            return Ok(None);
        }
        PatchQuant::PerAxis {
            axis,
            scales: p.tap(scale),
            zero_points: zp.map(|z| p.tap(z)),
        }
    };
    p.set_quant(p.tap(q), quant);
    let inputs = node.inputs.iter().map(|i| i.map(|v| p.tap(v))).collect();
    p.replace(m.g, &[id], node.name.clone(), node.op.clone(), inputs);
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::QuantParams;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    #[test]
    fn cast_sub_mul_becomes_a_quantized_weight() {
        let text = "graph g {
  input x: f32[3,2]
  weight q: i8[2,2] = [1,-2,3,-4]
  weight s: f32[1,2] = [0.5,0.25]
  weight q2: u8[2,2] = [10,20,30,40]
  weight zp: f32[] = [8]
  weight s2: f32[] = [0.1]
  node c: qf: f32[2,2] = Cast {\"to\":\"f32\",\"saturate\":true} (q)
  node m: w: f32[2,2] = Mul (qf, s)
  node mm: y: f32[3,2] = MatMul (x, w)
  node c2: qf2: f32[2,2] = Cast {\"to\":\"f32\",\"saturate\":true} (q2)
  node z: qz: f32[2,2] = Sub (qf2, zp)
  node m2: w2: f32[2,2] = Mul (s2, qz)
  node mm2: y2: f32[3,2] = MatMul (x, w2)
  output y, y2
}
";
        let (before, after, rules) = run_pass(text, RecognizeDequantize);
        assert_eq!(rules, ["cast_mul_dequantize", "cast_mul_dequantize"]);
        assert_eq!(
            kinds(&after),
            ["DequantizeLinear", "MatMul", "DequantizeLinear", "MatMul"]
        );
        let quant = |name: &str| {
            let (_, v) = after.values().find(|(_, v)| v.name == name).unwrap();
            v.fact.quant.clone()
        };
        assert!(matches!(
            quant("q"),
            Some(QuantParams::PerAxis { axis: 1, .. })
        ));
        assert_eq!(
            quant("q2"),
            Some(QuantParams::PerTensor {
                scale: 0.1,
                zero_point: 8
            })
        );
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn float_weights_mixed_scales_and_fractional_zero_points_stay() {
        let text = "graph g {
  weight f: f16[2,2] = [1,2,3,4]
  weight q: i8[2,2] = [1,-2,3,-4]
  weight s: f32[2,2] = [0.5,0.25,1,2]
  weight zp: f32[] = [0.5]
  weight s2: f32[] = [0.1]
  node c: ff: f32[2,2] = Cast {\"to\":\"f32\",\"saturate\":true} (f)
  node m: w: f32[2,2] = Mul (ff, s2)
  node c2: qf: f32[2,2] = Cast {\"to\":\"f32\",\"saturate\":true} (q)
  node m2: w2: f32[2,2] = Mul (qf, s)
  node c3: qf3: f32[2,2] = Cast {\"to\":\"f32\",\"saturate\":true} (q)
  node z3: qz: f32[2,2] = Sub (qf3, zp)
  node m3: w3: f32[2,2] = Mul (qz, s2)
  output w, w2, w3
}
";
        let (_, after, rules) = run_pass(text, RecognizeDequantize);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(after.node_count(), 7);
    }

    #[test]
    fn a_dequantize_linear_of_a_constant_annotates_its_weight() {
        let text = "graph g {
  input x: f32[3,2]
  weight q: i8[2,2] = [1,-2,3,-4]
  weight s: f32[2] = [0.5,0.25]
  node dq: w: f32[2,2] = DequantizeLinear {\"axis\":0,\"block_size\":0} (q, s, _)
  node mm: y: f32[3,2] = MatMul (x, w)
  output y
}
";
        let (before, after, rules) = run_pass(text, RecognizeDequantize);
        assert_eq!(rules, ["dequantize_linear_constant"]);
        let (_, q) = after.values().find(|(_, v)| v.name == "q").unwrap();
        assert!(matches!(
            q.fact.quant,
            Some(QuantParams::PerAxis { axis: 0, .. })
        ));
        assert_same_outputs(&before, &after);
    }
}
