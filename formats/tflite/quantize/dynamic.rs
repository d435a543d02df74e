//! Dynamic-range quantization: the constant filters of FULLY_CONNECTED,
//! CONV_2D and DEPTHWISE_CONV_2D become symmetric per-channel int8, read by
//! TFLite's hybrid kernels, which quantize the float activations on the fly
//! and return float. Biases and everything else stay float.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::NodeFilter;
use super::int8::per_channel_filter;
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
        if !keep_float.matches(&model.operators[i].source_node)
            && let Some(source) = hybrid_matmul(model, i)
        {
            *summary.quantized.entry(source).or_default() += 1;
        }
    }
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
        let (filter, _) = per_channel_filter(tensor, &values, axis);
        let quantized = model.add_tensor(filter);
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
    remove_unread_operators(model);
    model.compact();
    summary.weight_bytes_after = model.constant_bytes();
    summary
}

/// BATCH_MATMUL(x, DEQUANTIZE(w)) with `w` an int8 `[K, N]` constant,
/// symmetric (zero points 0) per tensor or per column: already int8
/// weights, which a hybrid FULLY_CONNECTED reads as they are (transposed to
/// `[N, K]`) instead of dequantizing them to float. Returns the source node.
fn hybrid_matmul(model: &mut TflModel, i: usize) -> Option<String> {
    let op = &model.operators[i];
    if op.code != tfl::BuiltinOperator::BATCH_MATMUL {
        return None;
    }
    if let tfl::BuiltinOptionsT::BatchMatMulOptions(o) = &op.options
        && (o.adj_x || o.adj_y)
    {
        return None;
    }
    let rhs = op.inputs.get(1).copied().flatten()?;
    let dequantize = model
        .operators
        .iter()
        .find(|d| d.code == tfl::BuiltinOperator::DEQUANTIZE && d.outputs.first() == Some(&rhs))?;
    let w = dequantize.inputs.first().copied().flatten()?;
    let weight = model.tensor(w);
    let quant = weight.quant.as_ref()?;
    let data = weight.data.as_ref()?;
    let &[k, n] = weight.shape.as_slice() else {
        return None;
    };
    let (k, n) = (k as usize, n as usize);
    let per_column = quant.scale.len() == n && quant.axis == 1;
    if weight.dtype != tfl::TensorType::INT8
        || quant.zero_point.iter().any(|&z| z != 0)
        || !(quant.scale.len() == 1 || per_column)
        || data.len() != k * n
    {
        return None;
    }
    let mut transposed = vec![0u8; k * n];
    for r in 0..k {
        for c in 0..n {
            transposed[c * k + r] = data[r * n + c];
        }
    }
    let filter = TflTensor {
        name: format!("{}_rows", weight.name),
        dtype: tfl::TensorType::INT8,
        shape: vec![n as i32, k as i32],
        data: Some(Bytes::from(transposed)),
        quant: Some(TflQuant {
            scale: quant.scale.clone(),
            zero_point: quant.zero_point.clone(),
            axis: 0,
        }),
        is_variable: false,
    };
    let filter = model.add_tensor(filter);
    let op = &mut model.operators[i];
    op.code = tfl::BuiltinOperator::FULLY_CONNECTED;
    op.version = 9;
    op.inputs = vec![op.inputs[0], Some(filter), None];
    op.options =
        tfl::BuiltinOptionsT::FullyConnectedOptions(Box::new(tfl::FullyConnectedOptionsT {
            keep_num_dims: true,
            asymmetric_quantize_inputs: true,
            ..Default::default()
        }));
    Some(op.source_node.clone())
}

/// Drops operators none of whose outputs anything reads (a DEQUANTIZE
/// whose weights a hybrid kernel now takes directly).
fn remove_unread_operators(model: &mut TflModel) {
    loop {
        let read: std::collections::HashSet<_> = model
            .operators
            .iter()
            .flat_map(|op| op.inputs.iter().flatten().copied())
            .chain(model.outputs.iter().copied())
            .collect();
        let before = model.operators.len();
        model
            .operators
            .retain(|op| op.outputs.iter().any(|t| read.contains(t)));
        if model.operators.len() == before {
            return;
        }
    }
}
