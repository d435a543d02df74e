//! QuantizeLinear and DequantizeLinear whose scale or zero point is computed:
//! TFLite keeps quantization parameters in the tensor, so these become
//! arithmetic (`lower/quant.rs` handles constant parameters natively).
//!
//! - DequantizeLinear: `(Cast(x) - Cast(zero_point)) * scale`.
//! - QuantizeLinear: `Cast(Clip(Round(x / scale) + Cast(zero_point), lo, hi))`,
//!   Round being half-to-even as in ONNX.
//!
//! A per-axis parameter is reshaped to `[C, 1, ...]` so it broadcasts along
//! its axis. MatMulInteger, which TFLite has no builtin for, becomes a float32
//! MatMul of the shifted operands when every partial sum is exact.

use crate::ir::error::Result;
use crate::ir::ops::{CastAttrs, Op};
use crate::ir::patch::PatchValue;
use crate::ir::{DType, Graph, Node, NodeId, ValueId};
use crate::passes::{Changed, Pass, PassCx};

use super::build::{Builder, node_error, required, static_shape, taken_names};

pub struct DecomposeQuantization;

impl Pass for DecomposeQuantization {
    fn name(&self) -> &'static str {
        "tflite_decompose_quantization"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let targets: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| check(g, n).is_ok())
            .map(|(id, _)| id)
            .collect();
        let mut names = taken_names(g);
        for &id in &targets {
            let mut b = Builder::new(g, &mut names, "tflite_quantization_arithmetic", id);
            let node = b.graph().node(id).clone();
            let y = decompose(&mut b, &node)?;
            let patch = b.finish(&[y]);
            cx.record(patch.apply(g)?);
        }
        Ok(Changed::from_bool(!targets.is_empty()))
    }
}

/// The integer dtypes whose values float32 holds exactly.
fn exact_in_f32(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8 | DType::I16 | DType::U16)
}

/// `Ok` when the pass rewrites `node` (a quantization op with a computed
/// parameter), else why not.
pub fn check(g: &Graph, node: &Node) -> std::result::Result<(), String> {
    if node.op == Op::MatMulInteger {
        return check_matmul_integer(g, node);
    }
    let (axis, block_size, int, float_side) = match &node.op {
        Op::DequantizeLinear(a) => (a.axis, a.block_size, node.input(0), node.outputs[0]),
        Op::QuantizeLinear(a) => (
            a.axis,
            a.block_size,
            Some(node.outputs[0]),
            node.input(0).ok_or("x is required")?,
        ),
        other => return Err(format!("{} is not a quantization op", other.name())),
    };
    let params: Vec<ValueId> = node.inputs.iter().skip(1).flatten().copied().collect();
    if params.iter().all(|&v| g.weight_of(v).is_some()) {
        return Err("the parameters are constants".into());
    }
    if block_size != 0 {
        return Err("blocked quantization has no TFLite form".into());
    }
    let int = int.ok_or("x is required")?;
    let int_dtype = g.fact(int).dtype.ok_or("unknown dtype")?;
    if !exact_in_f32(int_dtype) {
        return Err(format!(
            "{} with computed parameters is decomposed for 8- and 16-bit integers only, not {}",
            node.op.name(),
            int_dtype.name()
        ));
    }
    if g.fact(float_side).dtype != Some(DType::F32) {
        return Err("the float side must be float32".into());
    }
    let shape = static_shape(g, int).ok_or("static shapes are needed")?;
    let scale = node.input(1).ok_or("the scale is required")?;
    if g.fact(scale).dtype != Some(DType::F32) {
        return Err("the scale must be float32".into());
    }
    if let Some(zp) = node.input(2)
        && g.fact(zp).dtype != Some(int_dtype)
    {
        return Err(format!("the zero point must be {}", int_dtype.name()));
    }
    for &p in &params {
        let n: usize = static_shape(g, p)
            .ok_or("static shapes are needed")?
            .iter()
            .product();
        if n != 1 {
            let rank = shape.len() as i64;
            let a = if axis < 0 { axis + rank } else { axis };
            let fits = static_shape(g, p).is_some_and(|s| s.len() == 1)
                && a >= 0
                && a < rank
                && shape[a as usize] == n;
            if !fits {
                return Err(format!(
                    "parameter '{}' does not run along axis {axis}",
                    g.value(p).name
                ));
            }
        }
    }
    Ok(())
}

/// Largest inner dimension for which a float32 matmul of 8-bit operands
/// (shifted by their zero points, so within [-255, 255]) is exact: every
/// partial sum stays below 2^24.
const MAX_EXACT_INNER: usize = (1 << 24) / (255 * 255);

/// MatMulInteger of 2-D or batched 8-bit operands, computed in float32 where
/// that is exact.
fn check_matmul_integer(g: &Graph, node: &Node) -> std::result::Result<(), String> {
    let shape = |i: usize| node.input(i).and_then(|v| static_shape(g, v));
    let (a, b) = (
        shape(0).ok_or("A needs a static shape")?,
        shape(1).ok_or("B needs a static shape")?,
    );
    for i in 0..4 {
        if let Some(v) = node.input(i)
            && !matches!(g.fact(v).dtype, Some(DType::I8 | DType::U8))
        {
            return Err(format!("'{}' must be int8 or uint8", g.value(v).name));
        }
    }
    if a.len() < 2 || b.len() < 2 {
        return Err("1-D MatMulInteger operands are not supported".into());
    }
    let inner = a[a.len() - 1];
    if inner > MAX_EXACT_INNER {
        return Err(format!(
            "MatMulInteger has no TFLite builtin, and an inner dimension of {inner} (above {MAX_EXACT_INNER}) is not exact in float32"
        ));
    }
    let rows = a[a.len() - 2];
    let cols = b[b.len() - 1];
    for (i, len, what) in [(2, rows, "a row of A"), (3, cols, "a column of B")] {
        if let Some(zp) = shape(i) {
            let n: usize = zp.iter().product();
            if n != 1 && !(zp.len() == 1 && n == len) {
                return Err(format!("zero point {i} must be a scalar or one per {what}"));
            }
        }
    }
    Ok(())
}

fn matmul_integer(b: &mut Builder, node: &Node) -> Result<PatchValue> {
    let shifted =
        |b: &mut Builder, i: usize, zp: usize, name: &str, per_row: bool| -> Result<PatchValue> {
            let x = b.tap(required(node, i)?);
            let x = b.op2(&format!("{name}_float"), cast(DType::F32), &[x])?;
            let Some(zp) = node.input(zp) else {
                return Ok(x);
            };
            let n: usize = b.shape(b.tap(zp))?.iter().product();
            // A's per-row zero points broadcast along its columns.
            let target: &[usize] = if n == 1 {
                &[]
            } else if per_row {
                &[n, 1]
            } else {
                &[n]
            };
            let z = b.reshaped_param(&format!("{name}_zero_point"), zp, target)?;
            let z = b.op2(&format!("{name}_zero_point_float"), cast(DType::F32), &[z])?;
            b.op2(&format!("{name}_shifted"), Op::Sub, &[x, z])
        };
    let a = shifted(b, 0, 2, "a", true)?;
    let bb = shifted(b, 1, 3, "b", false)?;
    let y = b.op2("product", Op::MatMul, &[a, bb])?;
    b.op2("as_int32", cast(DType::I32), &[y])
}

/// `v` (a parameter of a node whose integer side has `rank` axes) shaped to
/// broadcast: scalars as they are, per-axis vectors as `[C, 1, ...]`.
fn broadcastable(
    b: &mut Builder,
    v: ValueId,
    axis: i64,
    rank: usize,
    name: &str,
) -> Result<PatchValue> {
    let shape = b.shape(b.tap(v))?;
    let n: usize = shape.iter().product();
    if n == 1 {
        return b.reshaped_param(name, v, &[]);
    }
    let a = if axis < 0 { axis + rank as i64 } else { axis } as usize;
    let mut target = vec![n];
    target.extend(std::iter::repeat_n(1, rank - a - 1));
    b.reshaped_param(name, v, &target)
}

fn cast(to: DType) -> Op {
    Op::Cast(CastAttrs { to, saturate: true })
}

fn decompose(b: &mut Builder, node: &Node) -> Result<PatchValue> {
    if node.op == Op::MatMulInteger {
        return matmul_integer(b, node);
    }
    let x = required(node, 0)?;
    let scale = required(node, 1)?;
    let zp = node.input(2);
    match &node.op {
        Op::DequantizeLinear(a) => {
            let rank = b.shape(b.tap(x))?.len();
            let s = broadcastable(b, scale, a.axis, rank, "scale")?;
            let xv = b.tap(x);
            let mut y = b.op2("as_float", cast(DType::F32), &[xv])?;
            if let Some(zp) = zp {
                let z = broadcastable(b, zp, a.axis, rank, "zero_point")?;
                let z = b.op2("zero_point_float", cast(DType::F32), &[z])?;
                y = b.op2("centered", Op::Sub, &[y, z])?;
            }
            b.op2("scaled", Op::Mul, &[y, s])
        }
        Op::QuantizeLinear(a) => {
            let int = b
                .dtype(PatchValue::Existing(node.outputs[0]))
                .map_err(|e| node_error(node, e.to_string()))?;
            let (lo, hi) = match int {
                DType::I8 => (-128.0, 127.0),
                DType::U8 => (0.0, 255.0),
                DType::I16 => (-32768.0, 32767.0),
                DType::U16 => (0.0, 65535.0),
                other => {
                    return Err(node_error(
                        node,
                        format!("cannot quantize to {}", other.name()),
                    ));
                }
            };
            let xv = b.tap(x);
            let rank = b.shape(xv)?.len();
            let s = broadcastable(b, scale, a.axis, rank, "scale")?;
            let scaled = b.op2("scaled", Op::Div, &[xv, s])?;
            let mut q = b.op2("rounded", Op::Round, &[scaled])?;
            if let Some(zp) = zp {
                let z = broadcastable(b, zp, a.axis, rank, "zero_point")?;
                let z = b.op2("zero_point_float", cast(DType::F32), &[z])?;
                q = b.op2("shifted", Op::Add, &[q, z])?;
            }
            let lo = b.scalar("min", DType::F32, lo)?;
            let hi = b.scalar("max", DType::F32, hi)?;
            let q = b.op2("saturated", Op::Clip, &[q, lo, hi])?;
            b.op2("quantized", cast(int), &[q])
        }
        other => Err(node_error(
            node,
            format!("{} is not a quantization op", other.name()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::legalize::build::testing::{assert_same, kinds, run_pass};

    #[test]
    fn dequantize_with_computed_parameters_is_arithmetic() {
        let text = "graph g {
  input x: u8[2,3,2]
  input s: f32[3]
  input z: u8[3]
  node dq: y: f32[2,3,2] = DequantizeLinear {\"axis\":1,\"block_size\":0} (x, s, z)
  output y
}";
        let (before, after, rules) = run_pass(text, DecomposeQuantization);
        assert_eq!(rules, ["tflite_quantization_arithmetic"]);
        assert_eq!(
            kinds(&after),
            ["Reshape", "Cast", "Reshape", "Cast", "Sub", "Mul"]
        );
        assert_same(&before, &after, 3.0, 1e-6);
    }

    #[test]
    fn quantize_with_computed_scale_rounds_and_saturates() {
        for (dtype, zp) in [("i8", "-3"), ("u8", "100")] {
            let text = format!(
                "graph g {{
  input x: f32[2,5]
  input s: f32[]
  weight z: {dtype}[] = [{zp}]
  node a: sa: f32[] = Abs (s)
  node q: y: {dtype}[2,5] = QuantizeLinear {{\"axis\":1,\"saturate\":true,\"block_size\":0,\"output_dtype\":null}} (x, sa, z)
  output y
}}"
            );
            let (before, after, rules) = run_pass(&text, DecomposeQuantization);
            assert_eq!(rules, ["tflite_quantization_arithmetic"]);
            assert_same(&before, &after, 0.0, 0.0);
        }
    }

    #[test]
    fn small_matmul_integer_is_an_exact_float_matmul() {
        let text = "graph g {
  input a: u8[2,3,4]
  input b: i8[4,5]
  weight za: u8[3] = [1,200,3]
  weight zb: i8[] = [-7]
  node m: y: i32[2,3,5] = MatMulInteger (a, b, za, zb)
  output y
}";
        let (before, after, rules) = run_pass(text, DecomposeQuantization);
        assert_eq!(rules, ["tflite_quantization_arithmetic"]);
        assert_same(&before, &after, 3.0, 0.0);
        let big = "graph g {
  input a: u8[2,300]
  input b: u8[300,2]
  node m: y: i32[2,2] = MatMulInteger (a, b, _, _)
  output y
}";
        let (_, _, rules) = run_pass(big, DecomposeQuantization);
        assert!(rules.is_empty());
    }

    #[test]
    fn constant_parameters_are_left_to_the_lowering() {
        let text = "graph g {
  input x: f32[4]
  weight s: f32[] = [0.5]
  node q: y: u8[4] = QuantizeLinear {\"axis\":1,\"saturate\":true,\"block_size\":0,\"output_dtype\":null} (x, s, _)
  output y
}";
        let (_, _, rules) = run_pass(text, DecomposeQuantization);
        assert!(rules.is_empty());
    }
}
