//! Bias correction: rounding a filter to int8 shifts the mean of its
//! layer's output by `(W - Wq) E[x]` per channel, an error that does not
//! average out downstream (a first layer's shift reaches the classifier
//! whole). With the input's per-channel means from calibration, the bias
//! absorbs it: `b' = b + (W - Wq) E[x]` (the empirical bias correction of
//! Nagel et al., "Data-Free Quantization", 2019). Border pixels that see
//! padding are treated like the rest.

use std::collections::HashSet;

use bytes::Bytes;

use super::params::{channel_index, symmetric_per_channel};
use super::roles::{ConstRole, constant_role};
use crate::calibration::calibrate::Calibration;
use crate::ir::error::Result;
use crate::ir::tensor::Tensor;
use crate::ir::weights::Weight;
use crate::ir::{DType, Graph, NodeId, Op};

/// A copy of `g` whose int8 Conv and Linear nodes among `nodes` have
/// corrected biases (added where they had none). Value ids of `g` stay valid.
pub fn correct(g: &Graph, nodes: &HashSet<NodeId>, calibration: &Calibration) -> Result<Graph> {
    let mut out = g.clone();
    let mut ids: Vec<NodeId> = nodes.iter().copied().collect();
    ids.sort();
    for id in ids {
        let node = g.node(id);
        let group = match &node.op {
            Op::Conv(a) => a.group,
            Op::Linear(_) => 1,
            _ => continue,
        };
        let (Some(x), Some(w)) = (node.input(0), node.input(1)) else {
            continue;
        };
        let Some(weight) = g.weight_of(w).filter(|w| w.dtype == DType::F32) else {
            continue;
        };
        let means = match calibration.get(x) {
            Some(r) if !r.channel_means.is_empty() => &r.channel_means,
            _ => continue,
        };
        let ConstRole::Filter { axis } = constant_role(g, node, 1) else {
            continue;
        };
        let values: Vec<f32> = Tensor::from_bytes(weight.dtype, &weight.shape, &weight.data)?
            .to_f32()
            .iter()
            .copied()
            .collect();
        let shape = &weight.shape;
        let channels = shape[axis];
        let index = channel_index(shape, axis);
        let (q, scales) = symmetric_per_channel(&values, channels, &index);
        let mut delta = vec![0f64; channels];
        match &node.op {
            Op::Conv(_) => {
                // [O, I/group, k...]: output o reads input channels of its group.
                let per_group_out = channels / group.max(1);
                let inputs_per_group = shape[1];
                let taps: usize = shape[2..].iter().product();
                if means.len() != inputs_per_group * group {
                    continue;
                }
                for (k, (&w, &qv)) in values.iter().zip(&q).enumerate() {
                    let o = k / (inputs_per_group * taps);
                    let i = (k / taps) % inputs_per_group;
                    let channel = (o / per_group_out.max(1)) * inputs_per_group + i;
                    let err = f64::from(w) - f64::from(qv) * f64::from(scales[o]);
                    delta[o] += err * means[channel];
                }
            }
            _ => {
                // Linear [K, N]: the means must be of the K features.
                if shape.len() != 2 || means.len() != shape[0] || g.fact(x).shape.rank() != Some(2)
                {
                    continue;
                }
                for (k, (&w, &qv)) in values.iter().zip(&q).enumerate() {
                    let (row, col) = (k / channels, k % channels);
                    let err = f64::from(w) - f64::from(qv) * f64::from(scales[col]);
                    delta[col] += err * means[row];
                }
            }
        }
        let old: Vec<f32> = match node.input(2).and_then(|b| g.weight_of(b)) {
            Some(b) if b.dtype == DType::F32 && b.shape.iter().product::<usize>() == channels => {
                Tensor::from_bytes(b.dtype, &b.shape, &b.data)?
                    .to_f32()
                    .iter()
                    .copied()
                    .collect()
            }
            Some(_) => continue,
            None => vec![0.0; channels],
        };
        let corrected: Vec<u8> = old
            .iter()
            .zip(&delta)
            .flat_map(|(&b, &d)| ((f64::from(b) + d) as f32).to_le_bytes())
            .collect();
        let name = format!("{}__corrected_bias", node.name);
        let bias = out.add_weight(Weight::new(
            name,
            DType::F32,
            vec![channels],
            Bytes::from(corrected),
        )?);
        let inputs = &mut out.node_mut(id).inputs;
        if inputs.len() < 3 {
            inputs.resize(3, None);
        }
        inputs[2] = Some(bias);
    }
    Ok(out)
}
