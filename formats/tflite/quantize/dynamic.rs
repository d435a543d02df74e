//! Dynamic-range quantization: the constant filters of FULLY_CONNECTED,
//! CONV_2D and DEPTHWISE_CONV_2D become symmetric per-channel int8, read by
//! TFLite's hybrid kernels, which quantize the float activations on the fly
//! and return float. Biases and everything else stay float.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::NodeFilter;
use super::params::{channel_index, symmetric_per_channel};
use crate::formats::tflite::model::{TflModel, TflQuant, TflTensor};
use crate::formats::tflite::schema as tfl;

/// Filters smaller than this stay float: the hybrid kernels' per-call
/// input quantization costs more than such a layer saves.
pub const MIN_ELEMENTS: usize = 1024;

/// What [`quantize`] changed.
#[derive(Clone, Debug, Default)]
pub struct DynamicSummary {
    /// Source node -> operators given int8 filters.
    pub quantized: BTreeMap<String, usize>,
    pub weight_bytes_before: u64,
    pub weight_bytes_after: u64,
}

pub fn quantize(model: &mut TflModel, keep_float: &NodeFilter) -> DynamicSummary {
    let mut summary = DynamicSummary {
        weight_bytes_before: model.constant_bytes(),
        ..DynamicSummary::default()
    };
    for i in 0..model.operators.len() {
        let op = &model.operators[i];
        let axis = match op.code {
            tfl::BuiltinOperator::FULLY_CONNECTED | tfl::BuiltinOperator::CONV_2D => 0,
            tfl::BuiltinOperator::DEPTHWISE_CONV_2D => 3,
            _ => continue,
        };
        if keep_float.matches(&op.source_node) {
            continue;
        }
        let Some(Some(filter)) = op.inputs.get(1).copied() else {
            continue;
        };
        let tensor = model.tensor(filter);
        let Some(data) = tensor.data.as_ref() else {
            continue;
        };
        let shape: Vec<usize> = tensor.shape.iter().map(|&d| d.max(0) as usize).collect();
        if tensor.dtype != tfl::TensorType::FLOAT32
            || shape.iter().product::<usize>() < MIN_ELEMENTS
            || axis >= shape.len()
        {
            continue;
        }
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (q, scales) = symmetric_per_channel(&values, shape[axis], channel_index(&shape, axis));
        let quantized = model.add_tensor(TflTensor {
            name: format!("{}_int8", tensor.name),
            dtype: tfl::TensorType::INT8,
            shape: tensor.shape.clone(),
            data: Some(Bytes::from(q.iter().map(|&x| x as u8).collect::<Vec<u8>>())),
            quant: Some(TflQuant {
                zero_point: vec![0; scales.len()],
                scale: scales,
                axis: axis as i32,
            }),
            is_variable: false,
        });
        let op = &mut model.operators[i];
        op.inputs[1] = Some(quantized);
        // The hybrid kernels' own versions (op_version.cc).
        op.version = op.version.max(match op.code {
            tfl::BuiltinOperator::FULLY_CONNECTED => {
                if let tfl::BuiltinOptionsT::FullyConnectedOptions(o) = &mut op.options {
                    o.asymmetric_quantize_inputs = true;
                }
                9
            }
            tfl::BuiltinOperator::CONV_2D => 5,
            _ => 6,
        });
        *summary.quantized.entry(op.source_node.clone()).or_default() += 1;
    }
    model.compact();
    summary.weight_bytes_after = model.constant_bytes();
    summary
}
