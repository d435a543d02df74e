//! The simulated int8 model: the float IR graph with every value the int8
//! model rounds passed through QuantizeLinear -> DequantizeLinear of its
//! parameters, and the constants of int8 nodes replaced by their rounded
//! values (per-channel filters, int32 biases), exactly as the rewrite
//! quantizes them. Run on the reference interpreter it predicts the int8
//! model's outputs; the remaining gap is the kernels' fixed-point arithmetic.

use std::collections::HashMap;

use bytes::Bytes;

use super::int8::Int8Summary;
use super::params::{
    ActParams, asymmetric_per_tensor, bias_int32, channel_index, symmetric_per_channel,
};
use super::roles::{ConstRole, constant_role};
use crate::ir::error::{Error, Result};
use crate::ir::ops::{DequantizeAttrs, Op, QuantizeAttrs};
use crate::ir::tensor::Tensor;
use crate::ir::weights::Weight;
use crate::ir::{DType, Fact, Graph, NodeId, ValueId};

pub struct Simulated {
    pub graph: Graph,
    /// A value of the float graph -> the value of `graph` holding what the
    /// int8 model stores for it (absent: the same id, unrounded).
    pub rounded: HashMap<ValueId, ValueId>,
}

impl Simulated {
    /// Where `graph` holds float value `v` as the int8 model sees it.
    pub fn counterpart(&self, v: ValueId) -> ValueId {
        self.rounded.get(&v).copied().unwrap_or(v)
    }
}

pub fn simulate(g: &Graph, summary: &Int8Summary) -> Result<Simulated> {
    let mut sim = g.clone();
    let consumers = g.consumers();
    let mut rounded = HashMap::new();
    let mut params: Vec<(&ValueId, &ActParams)> = summary.value_params.iter().collect();
    params.sort_by_key(|(v, _)| **v);
    for (&v, &p) in params {
        if g.weight_of(v).is_some() {
            continue;
        }
        let dq = fake_quant(&mut sim, v, p)?;
        let everywhere = summary.stored_quantized.contains(&v);
        for &n in consumers.get(&v).map_or(&[][..], Vec::as_slice) {
            if everywhere || summary.int8_nodes.contains(&n) {
                for input in sim.node_mut(n).inputs.iter_mut() {
                    if *input == Some(v) {
                        *input = Some(dq);
                    }
                }
            }
        }
        if everywhere {
            for out in sim.outputs.iter_mut() {
                if *out == v {
                    *out = dq;
                }
            }
            rounded.insert(v, dq);
        }
    }
    let mut nodes: Vec<NodeId> = summary.int8_nodes.iter().copied().collect();
    nodes.sort();
    for id in nodes {
        round_constants(g, &mut sim, id, summary)?;
    }
    Ok(Simulated {
        graph: sim,
        rounded,
    })
}

/// `DequantizeLinear(QuantizeLinear(v))` with `p`, added to `sim`.
fn fake_quant(sim: &mut Graph, v: ValueId, p: ActParams) -> Result<ValueId> {
    let name = sim.value(v).name.clone();
    let shape = sim.fact(v).shape.clone();
    let scale = scalar_weight(
        sim,
        &format!("{name}__sim_scale"),
        DType::F32,
        &p.scale.to_le_bytes(),
    )?;
    let zero = scalar_weight(
        sim,
        &format!("{name}__sim_zero"),
        DType::I8,
        &[p.zero_point as i8 as u8],
    )?;
    let (_, q) = sim.add_node(
        format!("{name}__sim_quantize"),
        Op::QuantizeLinear(QuantizeAttrs {
            axis: 1,
            saturate: true,
            block_size: 0,
            output_dtype: None,
        }),
        vec![Some(v), Some(scale), Some(zero)],
        vec![(
            format!("{name}__sim_int8"),
            Fact::new(DType::I8, shape.clone()),
        )],
    );
    let (_, dq) = sim.add_node(
        format!("{name}__sim_dequantize"),
        Op::DequantizeLinear(DequantizeAttrs {
            axis: 1,
            block_size: 0,
        }),
        vec![Some(q[0]), Some(scale), Some(zero)],
        vec![(format!("{name}__sim"), Fact::new(DType::F32, shape))],
    );
    Ok(dq[0])
}

fn scalar_weight(sim: &mut Graph, name: &str, dtype: DType, bytes: &[u8]) -> Result<ValueId> {
    let w = Weight::new(name, dtype, vec![], Bytes::copy_from_slice(bytes))?;
    Ok(sim.add_weight(w))
}

/// Replaces the float constants node `id` reads by their int8 (or int32) rounding.
fn round_constants(g: &Graph, sim: &mut Graph, id: NodeId, summary: &Int8Summary) -> Result<()> {
    let node = g.node(id).clone();
    let mut filter_scales: Option<Vec<f32>> = None;
    let mut replaced: Vec<(usize, Vec<f32>, Vec<usize>, String)> = Vec::new();
    let mut bias_slot = None;
    for (i, input) in node.inputs.iter().enumerate() {
        let Some(v) = *input else { continue };
        let Some(w) = g.weight_of(v) else { continue };
        if w.dtype != DType::F32 {
            continue;
        }
        let values = Tensor::from_bytes(w.dtype, &w.shape, &w.data)?
            .to_f32()
            .iter()
            .copied()
            .collect::<Vec<f32>>();
        let rounded = match constant_role(g, &node, i) {
            ConstRole::Filter { axis } => {
                let channels = w.shape.get(axis).copied().unwrap_or(1);
                let (q, scales) =
                    symmetric_per_channel(&values, channels, channel_index(&w.shape, axis));
                let index = channel_index(&w.shape, axis);
                let out = q
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| f32::from(x) * scales[index(k)])
                    .collect();
                filter_scales = Some(scales);
                out
            }
            ConstRole::Bias => {
                bias_slot = Some((i, values, w.shape.clone(), w.name.clone()));
                continue;
            }
            ConstRole::Tensor => {
                let (q, p) = asymmetric_per_tensor(&values);
                q.iter().map(|&x| p.dequantize(x)).collect()
            }
        };
        replaced.push((i, rounded, w.shape.clone(), w.name.clone()));
    }
    if let Some((i, values, shape, name)) = bias_slot {
        let scales = filter_scales
            .as_ref()
            .ok_or_else(|| Error::Graph(format!("{}: a bias without a filter", node.name)))?;
        let input = node
            .input(0)
            .and_then(|x| summary.value_params.get(&x))
            .ok_or_else(|| Error::Graph(format!("{}: the input has no parameters", node.name)))?;
        let (q, bias_scales) = bias_int32(&values, input.scale, scales);
        let out = q
            .iter()
            .zip(&bias_scales)
            .map(|(&x, &s)| (f64::from(x) * f64::from(s)) as f32)
            .collect();
        replaced.push((i, out, shape, name));
    }
    for (i, values, shape, name) in replaced {
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let w = Weight::new(
            format!("{name}__sim_{}", node.name),
            DType::F32,
            shape,
            Bytes::from(bytes),
        )?;
        let new = sim.add_weight(w);
        sim.node_mut(id).inputs[i] = Some(new);
    }
    Ok(())
}
