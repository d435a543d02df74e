//! Normalizations and the softmax family.

use crate::ir::error::Result;
use crate::ir::ops::{
    AxesAttrs, EpsilonAttrs, GroupNormAttrs, LayerNormAttrs, LpNormAttrs, SoftmaxAttrs,
};
use crate::ir::{Op, Tensor};

use super::NodeCx;

pub fn handles(op_type: &str) -> bool {
    matches!(
        op_type,
        "BatchNormalization"
            | "InstanceNormalization"
            | "LayerNormalization"
            | "RMSNormalization"
            | "GroupNormalization"
            | "LpNormalization"
            | "MeanVarianceNormalization"
            | "Softmax"
            | "LogSoftmax"
            | "Hardmax"
    )
}

pub fn convert(op_type: &str, cx: &mut NodeCx) -> Result<Op> {
    let a = cx.attrs;
    let epsilon = || -> Result<EpsilonAttrs> {
        Ok(EpsilonAttrs {
            epsilon: a.float("epsilon", 1e-5)?,
        })
    };
    Ok(match op_type {
        "BatchNormalization" => {
            if a.bool("training_mode", false)? || !cx.keep_outputs(1) {
                return Err(cx.unsupported(
                    "training-mode BatchNormalization (running statistics outputs) is not supported",
                ));
            }
            if cx.opset < 7 && !a.bool("spatial", true)? {
                return Ok(cx.custom());
            }
            Op::BatchNormalization(epsilon()?)
        }
        "InstanceNormalization" => Op::InstanceNormalization(epsilon()?),
        "LayerNormalization" => {
            // Mean and InvStdDev outputs have no IR form.
            if !cx.keep_outputs(1) {
                return Ok(cx.custom());
            }
            Op::LayerNormalization(LayerNormAttrs {
                axis: a.int("axis", -1)?,
                epsilon: a.float("epsilon", 1e-5)?,
            })
        }
        "RMSNormalization" => {
            // stash_type 1 (float) is the precision the interpreter computes in.
            if a.int("stash_type", 1)? != 1 {
                return Ok(cx.custom());
            }
            Op::RmsNormalization(LayerNormAttrs {
                axis: a.int("axis", -1)?,
                epsilon: a.float("epsilon", 1e-5)?,
            })
        }
        "GroupNormalization" => {
            let num_groups = a.usize("num_groups")?;
            if cx.opset < 21 && !per_group_to_per_channel(cx, num_groups)? {
                return Ok(cx.custom());
            }
            Op::GroupNormalization(GroupNormAttrs {
                epsilon: a.float("epsilon", 1e-5)?,
                num_groups,
            })
        }
        "LpNormalization" => Op::LpNormalization(LpNormAttrs {
            axis: a.int("axis", -1)?,
            p: a.int("p", 2)?,
        }),
        "MeanVarianceNormalization" => Op::MeanVarianceNormalization(AxesAttrs {
            axes: a.ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]),
        }),
        _ => {
            // Before opset 13 these flattened the input to 2-D at `axis` (default 1);
            // over the last axis that is the same as the newest form.
            let legacy = cx.opset < 13;
            let axis = a.int("axis", if legacy { 1 } else { -1 })?;
            let last = cx
                .rank(0)
                .is_some_and(|r| axis == -1 || axis == r as i64 - 1);
            let attrs = SoftmaxAttrs {
                axis,
                coerce_2d: legacy && !last,
            };
            match op_type {
                "Softmax" => Op::Softmax(attrs),
                "LogSoftmax" => Op::LogSoftmax(attrs),
                _ => Op::Hardmax(attrs),
            }
        }
    })
}

/// More channels than this are not believed when expanding per-group weights.
const MAX_CHANNELS: usize = 1 << 20;

/// GroupNormalization-18 takes scale and bias per group; the IR (as opset 21)
/// per channel. Constant per-group inputs are repeated to per-channel ones.
/// Returns false when that is not possible (non-constant inputs, unknown C).
fn per_group_to_per_channel(cx: &mut NodeCx, groups: usize) -> Result<bool> {
    let channels = cx
        .fact(0)
        .and_then(|f| f.shape.dims()?.get(1)?.fixed())
        .map(|c| c as usize);
    let plausible = |c: &usize| groups > 0 && c % groups == 0 && *c <= MAX_CHANNELS;
    let Some(c) = channels.filter(plausible) else {
        return Ok(false);
    };
    for (i, purpose) in [(1, "scale"), (2, "bias")] {
        let Some(t) = cx.constant(i) else {
            return Ok(false);
        };
        if t.shape() != [groups] {
            return Ok(false);
        }
        let values = t.to_f64_vec();
        let repeated: Vec<f32> = (0..c).map(|ch| values[ch / (c / groups)] as f32).collect();
        let per_channel = Tensor::F32(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[c]), repeated)
                .expect("c elements fill shape [c]"),
        )
        .cast(t.dtype())?;
        let v = cx.add_constant(purpose, &per_channel)?;
        cx.set_input(i, Some(v));
    }
    Ok(true)
}
