//! Normalizations TFLite has no builtin for, decomposed into reductions and
//! elementwise ops over the source (NCHW) axes; per-channel parameters become
//! `[C, 1, ...]` so they broadcast along axis 1.
//!
//! - BatchNormalization: `x * factor + shift` (both folded at conversion
//!   time when the statistics are constants).
//! - LayerNormalization / InstanceNormalization / GroupNormalization:
//!   `d = x - mean(x)`, `d / sqrt(mean(d²) + eps)`, then scale and bias
//!   (GroupNormalization through a `[N, G, -1]` reshape).
//! - RmsNormalization: `x / sqrt(mean(x²) + eps) * scale`.
//! - LpNormalization: `x / norm` with a zero norm read as 1 (the vector is
//!   zero then, and stays so, as in the reference).
//! - MeanVarianceNormalization: `d = x - mean(x)`, `d / (sqrt(mean(d²)) + 1e-9)`.

use crate::ir::error::Result;
use crate::ir::ops::{EpsilonAttrs, GroupNormAttrs, LayerNormAttrs, LpNormAttrs};
use crate::ir::patch::PatchValue;
use crate::ir::{DType, Graph, Node, NodeId, Op, OpKind, ValueId};
use crate::passes::{Changed, Pass, PassCx};

use super::build::{Builder, node_error, required, static_shape, taken_names};

/// MeanVarianceNormalization's fixed epsilon (added to the standard deviation).
const MVN_EPSILON: f64 = 1e-9;

pub struct DecomposeNorms;

impl Pass for DecomposeNorms {
    fn name(&self) -> &'static str {
        "tflite_decompose_norms"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let targets: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| is_norm(n.op.kind()) && check(g, n).is_ok())
            .map(|(id, _)| id)
            .collect();
        let mut names = taken_names(g);
        for &id in &targets {
            let rule = rule_name(g.node(id).op.kind());
            let mut b = Builder::new(g, &mut names, rule, id);
            let node = b.graph().node(id).clone();
            let y = decompose(&mut b, &node)?;
            let patch = b.finish(&[y]);
            cx.record(patch.apply(g)?);
        }
        Ok(Changed::from_bool(!targets.is_empty()))
    }
}

pub fn is_norm(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::BatchNormalization
            | OpKind::LayerNormalization
            | OpKind::RmsNormalization
            | OpKind::InstanceNormalization
            | OpKind::GroupNormalization
            | OpKind::LpNormalization
            | OpKind::MeanVarianceNormalization
    )
}

fn rule_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::BatchNormalization => "tflite_batchnorm",
        OpKind::LayerNormalization => "tflite_layer_norm",
        OpKind::RmsNormalization => "tflite_rms_norm",
        OpKind::InstanceNormalization => "tflite_instance_norm",
        OpKind::GroupNormalization => "tflite_group_norm",
        OpKind::LpNormalization => "tflite_lp_norm",
        _ => "tflite_mean_variance_norm",
    }
}

/// `Ok` when the pass rewrites `node`, else why it cannot.
pub fn check(g: &Graph, node: &Node) -> std::result::Result<(), String> {
    for &v in node.inputs.iter().flatten().chain(&node.outputs) {
        let value = g.value(v);
        if value.fact.dtype != Some(DType::F32) {
            return Err(format!(
                "value '{}' is {}; the TFLite decomposition of {} is float32 only",
                value.name,
                value.fact.dtype.map_or("unknown".to_string(), |d| d.name()),
                node.op.name()
            ));
        }
        if static_shape(g, v).is_none() {
            return Err(format!("value '{}' has no static shape", value.name));
        }
    }
    let x = node.input(0).ok_or("X is required")?;
    let shape = static_shape(g, x).unwrap_or_default();
    let rank = shape.len();
    let channels = |min_rank: usize| -> std::result::Result<usize, String> {
        if rank < min_rank {
            return Err(format!("X has rank {rank}; {min_rank} at least is needed"));
        }
        Ok(shape[1])
    };
    let per_channel = |i: usize, c: usize| -> std::result::Result<(), String> {
        let v = node.input(i).ok_or(format!("input {i} is required"))?;
        let n: usize = static_shape(g, v).unwrap_or_default().iter().product();
        if n != c {
            return Err(format!(
                "'{}' has {n} elements, expected one per channel ({c})",
                g.value(v).name
            ));
        }
        Ok(())
    };
    match &node.op {
        Op::BatchNormalization(_) => {
            let c = if rank == 1 { shape[0] } else { channels(2)? };
            (1..5).try_for_each(|i| per_channel(i, c))
        }
        Op::InstanceNormalization(_) => {
            let c = channels(3)?;
            (1..3).try_for_each(|i| per_channel(i, c))
        }
        Op::GroupNormalization(a) => {
            let c = channels(2)?;
            if a.num_groups == 0 || c % a.num_groups != 0 {
                return Err(format!(
                    "{c} channels do not split into {} groups",
                    a.num_groups
                ));
            }
            (1..3).try_for_each(|i| per_channel(i, c))
        }
        Op::LayerNormalization(a) | Op::RmsNormalization(a) => first_axis(a.axis, rank).map(|_| ()),
        Op::LpNormalization(a) => {
            first_axis(a.axis, rank)?;
            if a.p != 1 && a.p != 2 {
                return Err(format!("p must be 1 or 2, got {}", a.p));
            }
            Ok(())
        }
        Op::MeanVarianceNormalization(a) => mvn_axes(&a.axes, rank).map(|_| ()),
        other => Err(format!("{} is not a normalization", other.name())),
    }
}

fn first_axis(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn mvn_axes(axes: &[i64], rank: usize) -> std::result::Result<Vec<usize>, String> {
    let axes: &[i64] = if axes.is_empty() { &[0, 2, 3] } else { axes };
    let mut out = axes
        .iter()
        .map(|&a| first_axis(a, rank))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The node's output, computed from the node's inputs with other IR ops.
fn decompose(b: &mut Builder, node: &Node) -> Result<PatchValue> {
    let xv = node.inputs[0].ok_or_else(|| b.error("X is required"))?;
    let x = b.tap(xv);
    let shape = b.shape(x)?;
    let rank = shape.len();
    let input = |i: usize| required(node, i);
    // [C, 1, ...] so it broadcasts along axis 1 of x.
    let mut channel_shape = if rank >= 2 {
        vec![shape[1]]
    } else {
        shape.clone()
    };
    channel_shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
    let fail = |e: String| node_error(node, e);
    match &node.op {
        Op::BatchNormalization(EpsilonAttrs { epsilon }) => {
            let params: Vec<ValueId> = (1..5).map(input).collect::<Result<_>>()?;
            batch_norm(b, x, &params, f64::from(*epsilon), &channel_shape)
        }
        Op::LayerNormalization(LayerNormAttrs { axis, epsilon }) => {
            let first = first_axis(*axis, rank).map_err(fail)?;
            let axes: Vec<usize> = (first..rank).collect();
            let y = standardize(b, x, &axes, f64::from(*epsilon))?;
            let scale = b.tap(input(1)?);
            let y = b.op2("scale", Op::Mul, &[y, scale])?;
            match node.input(2) {
                Some(bias) => {
                    let bias = b.tap(bias);
                    b.op2("bias", Op::Add, &[y, bias])
                }
                None => Ok(y),
            }
        }
        Op::RmsNormalization(LayerNormAttrs { axis, epsilon }) => {
            let first = first_axis(*axis, rank).map_err(fail)?;
            let axes: Vec<usize> = (first..rank).collect();
            let sq = b.op2("square", Op::Mul, &[x, x])?;
            let ms = b.reduce("mean_square", Op::ReduceMean, sq, &axes)?;
            let eps = b.scalar("epsilon", DType::F32, f64::from(*epsilon))?;
            let ms = b.op2("add_epsilon", Op::Add, &[ms, eps])?;
            let rms = b.op2("rms", Op::Sqrt, &[ms])?;
            let y = b.op2("normalized", Op::Div, &[x, rms])?;
            let scale = b.tap(input(1)?);
            b.op2("scale", Op::Mul, &[y, scale])
        }
        Op::InstanceNormalization(EpsilonAttrs { epsilon }) => {
            let axes: Vec<usize> = (2..rank).collect();
            let y = standardize(b, x, &axes, f64::from(*epsilon))?;
            affine(b, y, input(1)?, input(2)?, &channel_shape)
        }
        Op::GroupNormalization(GroupNormAttrs {
            epsilon,
            num_groups,
        }) => {
            let grouped_shape = [
                shape[0],
                *num_groups,
                shape[1..].iter().product::<usize>() / num_groups,
            ];
            let grouped = b.reshape("grouped", x, &grouped_shape)?;
            let y = standardize(b, grouped, &[2], f64::from(*epsilon))?;
            let y = b.reshape("ungrouped", y, &shape)?;
            affine(b, y, input(1)?, input(2)?, &channel_shape)
        }
        Op::LpNormalization(LpNormAttrs { axis, p }) => {
            let axis = first_axis(*axis, rank).map_err(fail)?;
            let norm = if *p == 1 {
                let abs = b.op2("abs", Op::Abs, &[x])?;
                b.reduce("l1", Op::ReduceSum, abs, &[axis])?
            } else {
                let sq = b.op2("square", Op::Mul, &[x, x])?;
                let ss = b.reduce("sum_square", Op::ReduceSum, sq, &[axis])?;
                b.op2("l2", Op::Sqrt, &[ss])?
            };
            let zero = b.scalar("zero", DType::F32, 0.0)?;
            let one = b.scalar("one", DType::F32, 1.0)?;
            let is_zero = b.op2("norm_is_zero", Op::Equal, &[norm, zero])?;
            let norm = b.op2("safe_norm", Op::Where, &[is_zero, one, norm])?;
            b.op2("normalized", Op::Div, &[x, norm])
        }
        Op::MeanVarianceNormalization(a) => {
            let axes = mvn_axes(&a.axes, rank).map_err(fail)?;
            // The variance of the centered values: `mean(x²) - mean²`, as the
            // ONNX function states it, cancels catastrophically when the mean
            // dwarfs the spread.
            let mean = b.reduce("mean", Op::ReduceMean, x, &axes)?;
            let centered = b.op2("centered", Op::Sub, &[x, mean])?;
            let sq = b.op2("square", Op::Mul, &[centered, centered])?;
            let var = b.reduce("variance", Op::ReduceMean, sq, &axes)?;
            let std = b.op2("std", Op::Sqrt, &[var])?;
            let eps = b.scalar("epsilon", DType::F32, MVN_EPSILON)?;
            let den = b.op2("std_eps", Op::Add, &[std, eps])?;
            b.op2("normalized", Op::Div, &[centered, den])
        }
        other => Err(b.error(format!("{} is not a normalization", other.name()))),
    }
}

/// `(x - mean) / sqrt(var + epsilon)` over `axes` (population variance).
fn standardize(b: &mut Builder, x: PatchValue, axes: &[usize], epsilon: f64) -> Result<PatchValue> {
    let mean = b.reduce("mean", Op::ReduceMean, x, axes)?;
    let d = b.op2("centered", Op::Sub, &[x, mean])?;
    let sq = b.op2("square", Op::Mul, &[d, d])?;
    let var = b.reduce("variance", Op::ReduceMean, sq, axes)?;
    let eps = b.scalar("epsilon", DType::F32, epsilon)?;
    let var = b.op2("add_epsilon", Op::Add, &[var, eps])?;
    let std = b.op2("std", Op::Sqrt, &[var])?;
    b.op2("normalized", Op::Div, &[d, std])
}

/// `y * scale + bias` with per-channel parameters.
fn affine(
    b: &mut Builder,
    y: PatchValue,
    scale: ValueId,
    bias: ValueId,
    channel_shape: &[usize],
) -> Result<PatchValue> {
    let scale = b.reshaped_param("scale", scale, channel_shape)?;
    let bias = b.reshaped_param("bias", bias, channel_shape)?;
    let y = b.op2("scaled", Op::Mul, &[y, scale])?;
    b.op2("biased", Op::Add, &[y, bias])
}

fn batch_norm(
    b: &mut Builder,
    x: PatchValue,
    params: &[ValueId],
    epsilon: f64,
    channel_shape: &[usize],
) -> Result<PatchValue> {
    let constants: Option<Vec<Vec<f64>>> = params
        .iter()
        .map(|&v| {
            let w = b.graph().weight_of(v)?;
            crate::ir::Tensor::from_bytes(w.dtype, &w.shape, &w.data)
                .ok()
                .map(|t| t.to_f64_vec())
        })
        .collect();
    if let Some(c) = constants {
        let [scale, bias, mean, var] = [&c[0], &c[1], &c[2], &c[3]];
        let factor: Vec<f64> = scale
            .iter()
            .zip(var)
            .map(|(s, v)| s / (v + epsilon).sqrt())
            .collect();
        let shift: Vec<f64> = bias
            .iter()
            .zip(mean)
            .zip(&factor)
            .map(|((b, m), f)| b - m * f)
            .collect();
        let factor = b.constant("factor", DType::F32, channel_shape, factor)?;
        let shift = b.constant("shift", DType::F32, channel_shape, shift)?;
        let y = b.op2("scaled", Op::Mul, &[x, factor])?;
        return b.op2("shifted", Op::Add, &[y, shift]);
    }
    let [scale, bias, mean, var] = [params[0], params[1], params[2], params[3]];
    let scale = b.reshaped_param("scale", scale, channel_shape)?;
    let bias = b.reshaped_param("bias", bias, channel_shape)?;
    let mean = b.reshaped_param("mean", mean, channel_shape)?;
    let var = b.reshaped_param("var", var, channel_shape)?;
    let eps = b.scalar("epsilon", DType::F32, epsilon)?;
    let var = b.op2("add_epsilon", Op::Add, &[var, eps])?;
    let std = b.op2("std", Op::Sqrt, &[var])?;
    let factor = b.op2("factor", Op::Div, &[scale, std])?;
    let centered = b.op2("centered", Op::Sub, &[x, mean])?;
    let y = b.op2("scaled", Op::Mul, &[centered, factor])?;
    b.op2("shifted", Op::Add, &[y, bias])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tflite::legalize::build::testing::{assert_same, kinds, run_pass};

    fn check_graph(text: &str, expected_kinds: &[&str]) {
        let (before, after, rules) = run_pass(text, DecomposeNorms);
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert_eq!(kinds(&after), expected_kinds);
        assert_same(&before, &after, 0.5, 1e-5);
    }

    #[test]
    fn batchnorm_with_constant_statistics_is_one_mul_and_one_add() {
        check_graph(
            "graph g {
  input x: f32[2,3,2,2]
  weight s: f32[3] = [1,2,-0.5]
  weight b: f32[3] = [0,1,-1]
  weight m: f32[3] = [0.5,-1,2]
  weight v: f32[3] = [1,0.25,4]
  node bn: y: f32[2,3,2,2] = BatchNormalization {\"epsilon\":1e-5} (x, s, b, m, v)
  output y
}",
            &["Mul", "Add"],
        );
    }

    #[test]
    fn batchnorm_with_computed_statistics_uses_reshaped_parameters() {
        check_graph(
            "graph g {
  input x: f32[2,3,4]
  input v: f32[3]
  weight s: f32[3] = [1,2,-0.5]
  weight b: f32[3] = [0,1,-1]
  weight m: f32[3] = [0.5,-1,2]
  node a: va: f32[3] = Abs (v)
  node bn: y: f32[2,3,4] = BatchNormalization {\"epsilon\":1e-5} (x, s, b, m, va)
  output y
}",
            &["Abs", "Reshape", "Add", "Sqrt", "Div", "Sub", "Mul", "Add"],
        );
    }

    #[test]
    fn layer_norm_over_trailing_axes() {
        for (axis, scale) in [(-1, "f32[4]"), (1, "f32[3,4]")] {
            let scale_values = if scale == "f32[4]" {
                "[1,2,0.5,-1]"
            } else {
                "[1,2,0.5,-1,1,1,1,1,2,2,2,2]"
            };
            check_graph(
                &format!(
                    "graph g {{
  input x: f32[2,3,4]
  weight s: {scale} = {scale_values}
  weight b: f32[4] = [0,1,-1,0.5]
  node ln: y: f32[2,3,4] = LayerNormalization {{\"axis\":{axis},\"epsilon\":1e-5}} (x, s, b)
  output y
}}"
                ),
                &[
                    "ReduceMean",
                    "Sub",
                    "Mul",
                    "ReduceMean",
                    "Add",
                    "Sqrt",
                    "Div",
                    "Mul",
                    "Add",
                ],
            );
        }
    }

    #[test]
    fn layer_norm_without_bias_and_rms_norm() {
        check_graph(
            "graph g {
  input x: f32[2,5]
  weight s: f32[5] = [1,2,0.5,-1,3]
  node ln: y: f32[2,5] = LayerNormalization {\"axis\":0,\"epsilon\":1e-3} (x, s, _)
  output y
}",
            &[
                "ReduceMean",
                "Sub",
                "Mul",
                "ReduceMean",
                "Add",
                "Sqrt",
                "Div",
                "Mul",
            ],
        );
        check_graph(
            "graph g {
  input x: f32[2,3,4]
  weight s: f32[4] = [1,2,0.5,-1]
  node rms: y: f32[2,3,4] = RmsNormalization {\"axis\":-1,\"epsilon\":1e-5} (x, s)
  output y
}",
            &["Mul", "ReduceMean", "Add", "Sqrt", "Div", "Mul"],
        );
    }

    #[test]
    fn instance_and_group_norms() {
        check_graph(
            "graph g {
  input x: f32[2,3,2,3]
  weight s: f32[3] = [1,2,-0.5]
  weight b: f32[3] = [0,1,-1]
  node n: y: f32[2,3,2,3] = InstanceNormalization {\"epsilon\":1e-5} (x, s, b)
  output y
}",
            &[
                "ReduceMean",
                "Sub",
                "Mul",
                "ReduceMean",
                "Add",
                "Sqrt",
                "Div",
                "Mul",
                "Add",
            ],
        );
        check_graph(
            "graph g {
  input x: f32[2,4,3]
  weight s: f32[4] = [1,2,-0.5,3]
  weight b: f32[4] = [0,1,-1,2]
  node n: y: f32[2,4,3] = GroupNormalization {\"epsilon\":1e-5,\"num_groups\":2} (x, s, b)
  output y
}",
            &[
                "Reshape",
                "ReduceMean",
                "Sub",
                "Mul",
                "ReduceMean",
                "Add",
                "Sqrt",
                "Div",
                "Reshape",
                "Mul",
                "Add",
            ],
        );
    }

    #[test]
    fn lp_norms_keep_zero_vectors() {
        // Column 2 is all zeros and stays so.
        for (axis, p) in [(0, 1), (0, 2), (-1, 2)] {
            let text = format!(
                "graph g {{
  input x: f32[3,4]
  weight keep: f32[4] = [1,1,0,1]
  node m: xm: f32[3,4] = Mul (x, keep)
  node n: y: f32[3,4] = LpNormalization {{\"axis\":{axis},\"p\":{p}}} (xm)
  output y
}}"
            );
            let (before, after, rules) = run_pass(&text, DecomposeNorms);
            assert_eq!(rules, ["tflite_lp_norm"]);
            assert_same(&before, &after, 0.0, 1e-5);
        }
    }

    #[test]
    fn mean_variance_norm_default_and_given_axes() {
        for axes in ["[]", "[1]", "[-1,0]"] {
            check_graph(
                &format!(
                    "graph g {{
  input x: f32[2,3,2,2]
  node n: y: f32[2,3,2,2] = MeanVarianceNormalization {{\"axes\":{axes}}} (x)
  output y
}}"
                ),
                &[
                    "ReduceMean",
                    "Sub",
                    "Mul",
                    "ReduceMean",
                    "Sqrt",
                    "Add",
                    "Div",
                ],
            );
        }
    }

    #[test]
    fn non_float32_and_bad_attributes_stay_with_a_reason() {
        let text = "graph g {
  input x: f16[2,4]
  input z: f32[2,4]
  weight s: f16[4] = [1,2,0.5,-1]
  node n: y: f16[2,4] = RmsNormalization {\"axis\":-1,\"epsilon\":1e-5} (x, s)
  node lp: w: f32[2,4] = LpNormalization {\"axis\":1,\"p\":3} (z)
  output y, w
}";
        let (_, after, rules) = run_pass(text, DecomposeNorms);
        assert!(rules.is_empty());
        let reasons: Vec<String> = after
            .nodes()
            .map(|(_, n)| check(&after, n).unwrap_err())
            .collect();
        assert!(reasons[0].contains("float32 only"), "{reasons:?}");
        assert!(reasons[1].contains("p must be 1 or 2"), "{reasons:?}");
    }
}
