//! BatchNormalization folded into the linear op before it.

use crate::ir::error::Result;
use crate::ir::ops::{GemmAttrs, LinearAttrs};
use crate::ir::patch::Patch;
use crate::ir::{Graph, Node, NodeId, Op, ValueId};

use super::matching::{Matcher, Rule, fresh_name, rewrite_until_stable, weight};
use crate::passes::manager::{Changed, Pass, PassCx};

/// Folds an inference BatchNormalization into the Conv, ConvTranspose, Gemm,
/// MatMul or Linear producing its input, when that op's weight and bias are
/// constants, it has no fused activation, and the BatchNormalization is the
/// only reader of its output. Each output channel `c` of the weight is scaled
/// by `scale[c] / sqrt(var[c] + epsilon)` and the bias becomes
/// `(bias[c] - mean[c]) * factor[c] + beta[c]` (created when absent). A
/// MatMul becomes a Linear, and a Gemm only folds when its output channels
/// are the BatchNormalization's channel axis (2-D output). Folded weights are
/// computed in f64 and written back in the weight's dtype.
pub struct FoldBatchNorm;

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold_batchnorm"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        const RULES: &[Rule] = &[fold_batchnorm];
        rewrite_until_stable(g, cx, RULES)
    }
}

/// How a producer's weight is laid out along its output channels.
enum Layout {
    /// `[M, ...]`: Conv, Gemm with transB.
    Leading,
    /// `[K, M]`: MatMul, Linear, Gemm.
    Trailing,
    /// ConvTranspose `[C, M/group, ...]`.
    Transposed { group: usize },
}

impl Layout {
    /// The output channel of each weight element.
    fn channel_of(&self, shape: &[usize], index: usize) -> usize {
        let inner: usize = shape.iter().skip(1).product();
        match *self {
            Layout::Leading => index / inner.max(1),
            Layout::Trailing => index % shape[1].max(1),
            Layout::Transposed { group } => {
                let kernel: usize = shape.iter().skip(2).product::<usize>().max(1);
                let in_per_group = (shape[0] / group).max(1);
                let c = index / inner.max(1);
                let m = (index / kernel) % shape[1].max(1);
                (c / in_per_group) * shape[1] + m
            }
        }
    }

    fn channels(&self, shape: &[usize]) -> usize {
        match *self {
            Layout::Leading => shape[0],
            Layout::Trailing => shape[1],
            Layout::Transposed { group } => shape[1] * group,
        }
    }
}

/// What the folded producer becomes, and how its weight is laid out.
fn folded_op(m: &Matcher, producer: &Node) -> Option<(Op, Layout)> {
    let rank = |v: ValueId| m.dims(v).map(<[_]>::len);
    let output_is_2d = rank(producer.outputs[0]) == Some(2);
    match &producer.op {
        Op::Conv(a) if a.activation.is_none() => Some((producer.op.clone(), Layout::Leading)),
        Op::ConvTranspose(a) if a.activation.is_none() => {
            Some((producer.op.clone(), Layout::Transposed { group: a.group }))
        }
        Op::Linear(a) if a.activation.is_none() && output_is_2d => {
            Some((producer.op.clone(), Layout::Trailing))
        }
        Op::MatMul if output_is_2d && rank(producer.input(1)?) == Some(2) => Some((
            Op::Linear(LinearAttrs { activation: None }),
            Layout::Trailing,
        )),
        Op::Gemm(a) if output_is_2d && !a.trans_a => {
            let layout = if a.trans_b {
                Layout::Leading
            } else {
                Layout::Trailing
            };
            let attrs = GemmAttrs { beta: 1.0, ..*a };
            Some((Op::Gemm(attrs), layout))
        }
        _ => None,
    }
}

/// The producer's bias broadcast to one value per channel (Gemm's scaled by
/// beta), zeros when absent; `None` when it is not per channel.
fn bias_per_channel(m: &Matcher, producer: &Node, channels: usize) -> Option<Vec<f64>> {
    let Some(b) = producer.input(2) else {
        return Some(vec![0.0; channels]);
    };
    let values = m.constant(b)?.to_f64_vec();
    let beta = match &producer.op {
        Op::Gemm(a) => f64::from(a.beta),
        _ => 1.0,
    };
    let per_channel =
        m.g.fact(b)
            .shape
            .as_fixed()?
            .iter()
            .rev()
            .skip(1)
            .all(|&d| d == 1);
    match values.len() {
        1 => Some(vec![values[0] * beta; channels]),
        n if n == channels && per_channel => Some(values.iter().map(|v| v * beta).collect()),
        _ => None,
    }
}

fn fold_batchnorm(m: &Matcher, id: NodeId) -> Result<Option<Patch>> {
    let bn = m.node(id);
    let Op::BatchNormalization(attrs) = &bn.op else {
        return Ok(None);
    };
    let Some(x) = bn.input(0) else {
        return Ok(None);
    };
    let Some(producer_id) = m.g.producer(x).filter(|_| m.single_use(x)) else {
        return Ok(None);
    };
    let producer = m.node(producer_id);
    let Some((op, layout)) = folded_op(m, producer) else {
        return Ok(None);
    };
    let Some(w) = producer.input(1).filter(|&w| m.is_float(w)) else {
        return Ok(None);
    };
    let Some(w_fact_shape) = m.g.weight_of(w).map(|w| w.shape.clone()) else {
        return Ok(None);
    };
    if w_fact_shape.len() < 2 {
        return Ok(None);
    }
    let channels = layout.channels(&w_fact_shape);
    let params: Option<Vec<Vec<f64>>> = (1..5)
        .map(|i| {
            bn.input(i)
                .and_then(|v| m.constant(v))
                .map(|t| t.to_f64_vec())
        })
        .collect();
    let Some(params) = params.filter(|p| p.iter().all(|v| v.len() == channels)) else {
        return Ok(None);
    };
    let Some(bias) = bias_per_channel(m, producer, channels) else {
        return Ok(None);
    };
    let Some(w_value) = m.weight_value(w) else {
        return Ok(None);
    };

    let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let epsilon = f64::from(attrs.epsilon);
    let factor: Vec<f64> = (0..channels)
        .map(|c| gamma[c] / (var[c] + epsilon).sqrt())
        .collect();
    let new_bias: Vec<f64> = (0..channels)
        .map(|c| (bias[c] - mean[c]) * factor[c] + beta[c])
        .collect();
    let new_weight: Vec<f64> = w_value
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, v)| v * factor[layout.channel_of(&w_fact_shape, i)])
        .collect();

    let w_dtype = w_value.dtype();
    let bias_dtype = producer
        .input(2)
        .and_then(|b| m.g.fact(b).dtype)
        .unwrap_or(w_dtype);
    let mut p = Patch::new("fold_batchnorm");
    let weight_name = fresh_name(m.g, &format!("{}.bn_weight", producer.name));
    let bias_name = fresh_name(m.g, &format!("{}.bn_bias", producer.name));
    let new_w = p.add_weight(weight(weight_name, w_dtype, &w_fact_shape, new_weight)?);
    let new_b = p.add_weight(weight(bias_name, bias_dtype, &[channels], new_bias)?);
    let inputs = vec![
        Some(p.tap(producer.inputs[0].expect("checked arity"))),
        Some(new_w),
        Some(new_b),
    ];
    p.replace(m.g, &[producer_id, id], producer.name.clone(), op, inputs);
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fuse::testing::{assert_same_outputs, kinds, run_pass};

    #[test]
    fn folds_into_conv_and_creates_the_bias() {
        let text = "graph g {
  input x: f32[1,2,3,3]
  weight w: f32[2,2,1,1] = [1,2,3,4]
  weight gamma: f32[2] = [0.5,2]
  weight beta: f32[2] = [1,-1]
  weight mean: f32[2] = [0.1,0.2]
  weight var: f32[2] = [1,4]
  node conv: c: f32[1,2,3,3] = Conv {\"kernel_shape\":null,\"strides\":[1,1],\"dilations\":[1,1],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":1} (x, w, _)
  node bn: y: f32[1,2,3,3] = BatchNormalization {\"epsilon\":1e-5} (c, gamma, beta, mean, var)
  output y
}
";
        let (before, after, rules) = run_pass(text, FoldBatchNorm);
        assert_eq!(rules, ["fold_batchnorm"]);
        assert_eq!(kinds(&after), ["Conv"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn folds_into_conv_transpose_with_groups_gemm_and_matmul() {
        let text = "graph g {
  input x: f32[1,2,2,2]
  input v: f32[3,2]
  weight wt: f32[2,2,1,1] = [1,2,3,4]
  weight bt: f32[4] = [0.1,0.2,0.3,0.4]
  weight g4: f32[4] = [0.5,2,1.5,-1]
  weight b4: f32[4] = [1,-1,0,2]
  weight m4: f32[4] = [0.1,0.2,-0.3,0]
  weight v4: f32[4] = [1,4,0.5,2]
  weight wg: f32[2,2] = [1,2,3,4]
  weight cg: f32[2] = [0.5,-0.5]
  weight g2: f32[2] = [0.5,2]
  weight b2: f32[2] = [1,-1]
  weight m2: f32[2] = [0.1,0.2]
  weight v2: f32[2] = [1,4]
  node ct: c: f32[1,4,2,2] = ConvTranspose {\"kernel_shape\":null,\"strides\":[1,1],\"dilations\":[1,1],\"padding\":{\"Explicit\":[0,0,0,0]},\"group\":2,\"output_padding\":[],\"output_shape\":null} (x, wt, bt)
  node bn1: y1: f32[1,4,2,2] = BatchNormalization {\"epsilon\":1e-5} (c, g4, b4, m4, v4)
  node gemm: h: f32[3,2] = Gemm {\"alpha\":1.5,\"beta\":0.5,\"trans_a\":false,\"trans_b\":true} (v, wg, cg)
  node bn2: y2: f32[3,2] = BatchNormalization {\"epsilon\":1e-5} (h, g2, b2, m2, v2)
  node mm: k: f32[3,2] = MatMul (v, wg)
  node bn3: y3: f32[3,2] = BatchNormalization {\"epsilon\":1e-5} (k, g2, b2, m2, v2)
  output y1, y2, y3
}
";
        let (before, after, rules) = run_pass(text, FoldBatchNorm);
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert_eq!(kinds(&after), ["ConvTranspose", "Gemm", "Linear"]);
        assert_same_outputs(&before, &after);
    }

    #[test]
    fn keeps_batchnorm_after_a_shared_or_activated_producer() {
        let text = "graph g {
  input x: f32[2,2]
  weight w: f32[2,2] = [1,2,3,4]
  weight g2: f32[2] = [0.5,2]
  weight b2: f32[2] = [1,-1]
  weight m2: f32[2] = [0.1,0.2]
  weight v2: f32[2] = [1,4]
  node mm: k: f32[2,2] = MatMul (x, w)
  node bn: y: f32[2,2] = BatchNormalization {\"epsilon\":1e-5} (k, g2, b2, m2, v2)
  node lin: l: f32[2,2] = Linear {\"activation\":\"Relu\"} (x, w, _)
  node bn2: z: f32[2,2] = BatchNormalization {\"epsilon\":1e-5} (l, g2, b2, m2, v2)
  output y, k, z
}
";
        let (_, after, rules) = run_pass(text, FoldBatchNorm);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(after.node_count(), 4);
    }
}
