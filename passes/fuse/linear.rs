//! MatMul + Add and Gemm as the IR's biased linear op.

use crate::ir::error::Result;
use crate::ir::ops::LinearAttrs;
use crate::ir::patch::Patch;
use crate::ir::{Graph, NodeId, Op, OpKind, ValueId};

use super::matching::{Matcher, Rule, fresh_name, rewrite_until_stable, weight};
use crate::passes::manager::{Changed, Pass, PassCx};

/// Rewrites fully-connected layers as `Linear(x, weight [K, N], bias [N])`:
///
/// - `matmul_add_to_linear`: `MatMul(x, W) + b` where `W` is a 2-D weight
///   (or a DequantizeLinear of one), the MatMul output is read only by the Add,
///   and `b` is a constant that varies along the last dim only and does not
///   grow the output by broadcasting.
/// - `gemm_to_linear`: `Gemm(A, B, C)` with `alpha = 1`, no `transA` and a
///   constant `B` (transposed once, here, when `transB`); `beta · C` becomes the
///   bias when it is per column.
///
/// Gemm is rewritten rather than kept because Linear is the one
/// fully-connected form later passes and targets handle (and the one that
/// carries a fused activation); a target wanting `[N, K]` weights transposes
/// them at emit time. A MatMul without a bias stays a MatMul: numpy matmul
/// is what it is, and nothing is gained.
pub struct FuseLinear;

impl Pass for FuseLinear {
    fn name(&self) -> &'static str {
        "fuse_linear"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        const RULES: &[Rule] = &[matmul_add_to_linear, gemm_to_linear];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// `[K, N]` of a 2-D weight input with fixed dims.
fn weight_dims(m: &Matcher, w: ValueId) -> Option<(usize, usize)> {
    match m.dims(w)? {
        [k, n] => Some((k.fixed()? as usize, n.fixed()? as usize)),
        _ => None,
    }
}

/// The values of a constant bias that broadcasts along the last dim of a
/// rank-`rank` output with `n` columns, as `n` values.
fn bias_along_last_dim(m: &Matcher, b: ValueId, n: usize, rank: usize) -> Option<Vec<f64>> {
    let shape = m.g.fact(b).shape.as_fixed()?;
    let values = m.constant(b)?.to_f64_vec();
    let leading_ones = shape.iter().rev().skip(1).all(|&d| d == 1);
    if shape.len() > rank || !leading_ones {
        return None;
    }
    match values.len() {
        1 => Some(vec![values[0]; n]),
        len if len == n => Some(values),
        _ => None,
    }
}

fn matmul_add_to_linear(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let add = m.node(id);
    if add.op != Op::Add {
        return Ok(None);
    }
    let y = add.outputs[0];
    let found = add.inputs.iter().flatten().find_map(|&v| {
        let (mm_id, mm) = m.producer(v, OpKind::MatMul)?;
        let bias = m.other_operand(add, v)?;
        m.single_use(v).then_some((mm_id, mm, v, bias))
    });
    let Some((mm_id, mm, product, bias)) = found else {
        return Ok(None);
    };
    let (Some(x), Some(w)) = (mm.input(0), mm.input(1)) else {
        return Ok(None);
    };
    let Some((_, n)) = weight_dims(m, w).filter(|_| m.is_static(w) && m.is_float(w)) else {
        return Ok(None);
    };
    let rank = m.dims(product).map_or(0, <[_]>::len);
    if rank == 0 || m.g.fact(y) != m.g.fact(product) {
        return Ok(None);
    }
    let Some(values) = bias_along_last_dim(m, bias, n, rank) else {
        return Ok(None);
    };
    let dtype = m.g.fact(bias).dtype.expect("constants have a dtype");
    let mut p = Patch::new("matmul_add_to_linear");
    let b = p.add_weight(weight(
        fresh_name(m.g, &format!("{}.bias", mm.name)),
        dtype,
        &[n],
        values,
    )?);
    let op = Op::Linear(LinearAttrs { activation: None });
    let inputs = vec![Some(p.tap(x)), Some(p.tap(w)), Some(b)];
    p.replace(m.g, &[mm_id, id], mm.name.clone(), op, inputs);
    Ok(Some(p))
}

fn gemm_to_linear(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let gemm = m.node(id);
    let Op::Gemm(attrs) = &gemm.op else {
        return Ok(None);
    };
    if attrs.alpha != 1.0 || attrs.trans_a {
        return Ok(None);
    }
    let (Some(a), Some(b)) = (gemm.input(0), gemm.input(1)) else {
        return Ok(None);
    };
    let Some((rows, cols)) = weight_dims(m, b).filter(|_| m.is_float(b)) else {
        return Ok(None);
    };
    let n = if attrs.trans_b { rows } else { cols };
    let bias = match gemm.input(2).filter(|_| attrs.beta != 0.0) {
        None => None,
        Some(c) => match bias_along_last_dim(m, c, n, 2) {
            Some(values) => Some((c, values)),
            None => return Ok(None),
        },
    };
    let mut p = Patch::new("gemm_to_linear");
    let w = if attrs.trans_b {
        let Some(t) = m.weight_value(b) else {
            return Ok(None);
        };
        let values = t.to_f64_vec();
        let transposed: Vec<f64> = (0..cols * rows)
            .map(|i| values[(i % rows) * cols + i / rows])
            .collect();
        let name = fresh_name(m.g, &format!("{}.weight_t", gemm.name));
        p.add_weight(weight(name, t.dtype(), &[cols, rows], transposed)?)
    } else if m.is_static(b) {
        p.tap(b)
    } else {
        return Ok(None);
    };
    let bias = match bias {
        None => None,
        Some((c, values)) => {
            let dtype = m.g.fact(c).dtype.expect("constants have a dtype");
            let beta = f64::from(attrs.beta);
            let scaled = values.iter().map(|v| v * beta).collect();
            let name = fresh_name(m.g, &format!("{}.bias", gemm.name));
            Some(p.add_weight(weight(name, dtype, &[n], scaled)?))
        }
    };
    let op = Op::Linear(LinearAttrs { activation: None });
    p.replace(
        m.g,
        &[id],
        gemm.name.clone(),
        op,
        vec![Some(p.tap(a)), Some(w), bias],
    );
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    #[test]
    fn matmul_plus_bias_and_gemm_become_linear() {
        let text = "graph g {
  input x: f32[N,3,2]
  input a: f32[4,2]
  weight w: f32[2,3] = [1,2,3,4,5,6]
  weight b: f32[1,3] = [0.5,-1,2]
  weight wt: f32[3,2] = [1,-2,3,0.5,0,1]
  weight c: f32[3] = [1,2,3]
  node mm: h: f32[N,3,3] = MatMul (x, w)
  node add: y: f32[N,3,3] = Add (b, h)
  node gemm: z: f32[4,3] = Gemm {\"alpha\":1.0,\"beta\":0.5,\"trans_a\":false,\"trans_b\":true} (a, wt, c)
  output y, z
}
";
        let (before, after, rules) = run_pass(text, FuseLinear);
        assert_eq!(rules, ["matmul_add_to_linear", "gemm_to_linear"]);
        assert_eq!(kinds(&after), ["Linear", "Linear"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn keeps_biases_that_broadcast_across_rows_and_scaled_gemms() {
        let text = "graph g {
  input x: f32[3,2]
  input a: f32[4,2]
  weight w: f32[2,3] = [1,2,3,4,5,6]
  weight rows: f32[3,1] = [0.5,-1,2]
  weight c: f32[3] = [1,2,3]
  node mm: h: f32[3,3] = MatMul (x, w)
  node add: y: f32[3,3] = Add (h, rows)
  node gemm: z: f32[4,3] = Gemm {\"alpha\":2.0,\"beta\":1.0,\"trans_a\":false,\"trans_b\":false} (a, w, c)
  output y, z
}
";
        let (_, after, rules) = run_pass(text, FuseLinear);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(kinds(&after), ["MatMul", "Add", "Gemm"]);
    }
}
