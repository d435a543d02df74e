//! The simulated int8 model: the float IR graph with every value the int8
//! model rounds passed through QuantizeLinear -> DequantizeLinear of its
//! parameters, and the constants of int8 nodes replaced by their rounded
//! values (per-channel filters, int32 biases), exactly as the rewrite
//! quantizes them. Run on the reference interpreter it predicts the int8
//! model's outputs; the remaining gap is the kernels' fixed-point arithmetic.

use std::collections::HashMap;

use bytes::Bytes;

use super::fixed_point::{hard_swish_table, requantize_right_shift};
use super::int8::Int8Summary;
use super::params::{
    ActParams, asymmetric_per_tensor, bias_int32, channel_index, symmetric_per_channel,
};
use super::roles::{ConstRole, constant_role};
use crate::ir::error::{Error, Result};
use crate::ir::ops::{AxisAttrs, CastAttrs, DequantizeAttrs, Op, QuantizeAttrs};
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
    let mut quantize_nodes = HashMap::new();
    let mut params: Vec<(&ValueId, &ActParams)> = summary.value_params.iter().collect();
    params.sort_by_key(|(v, _)| **v);
    for (&v, &p) in params {
        if g.weight_of(v).is_some() {
            continue;
        }
        let (q, dq) = fake_quant(&mut sim, v, p)?;
        quantize_nodes.insert(v, q);
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
        if everywhere || summary.quantized_outputs.contains(&v) {
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
        let filter_scales = round_constants(g, &mut sim, id, summary)?;
        let output = g.node(id).outputs[0];
        if let (Some(scales), Some(&q)) = (filter_scales, quantize_nodes.get(&output)) {
            round_twice_like_tflite(g, &mut sim, id, &scales, q, summary)?;
        }
        if matches!(g.node(id).op, Op::HardSwish) {
            tabulate_hard_swish(g, &mut sim, id, summary)?;
        }
    }
    Ok(Simulated {
        graph: sim,
        rounded,
    })
}

/// An int8 HardSwish computes as TFLite's kernel does: its int8 input
/// indexes the table of the kernel's outputs ([`hard_swish_table`]), which
/// departs from rounding the exact result by a step here and there.
fn tabulate_hard_swish(
    g: &Graph,
    sim: &mut Graph,
    id: NodeId,
    summary: &Int8Summary,
) -> Result<()> {
    let node = g.node(id);
    let (Some(x), Some(&y)) = (node.input(0), node.outputs.first()) else {
        return Ok(());
    };
    let (Some(&p_in), Some(&p_out)) = (summary.value_params.get(&x), summary.value_params.get(&y))
    else {
        return Ok(());
    };
    let table = hard_swish_table(p_in, p_out);
    let bytes: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
    let table = sim.add_weight(Weight::new(
        format!("{}__sim_table", node.name),
        DType::F32,
        vec![256],
        Bytes::from(bytes),
    )?);
    let read = sim.node(id).inputs[0].expect("checked above");
    let shape = sim.fact(read).shape.clone();
    let name = &node.name;
    let (_, q, _, _) = quantize_node(sim, read, p_in, &format!("{name}__sim_in"))?;
    let (_, index) = sim.add_node(
        format!("{name}__sim_index32"),
        Op::Cast(CastAttrs {
            to: DType::I32,
            saturate: true,
        }),
        vec![Some(q)],
        vec![(format!("{name}__sim_index32"), Fact::new(DType::I32, shape))],
    );
    // Negative indices count from the end: q < 0 reads entry 256 + q.
    let n = sim.node_mut(id);
    n.op = Op::Gather(AxisAttrs { axis: 0 });
    n.inputs = vec![Some(table), Some(index[0])];
    Ok(())
}

/// TFLite's reference CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
/// requantize the exact int32 sum in two roundings: to `1 / 2^shift` of an
/// output step (`shift` from the channel's multiplier), then to a step,
/// ties away from zero. Rounding the real result once differs for a few
/// outputs in a thousand, and a deep network amplifies each. So the value
/// the output's QuantizeLinear reads (`q_node`) is first rounded to that
/// grid and nudged a quarter of it away from zero, which turns the
/// QuantizeLinear's ties-to-even into the kernel's ties-away.
fn round_twice_like_tflite(
    g: &Graph,
    sim: &mut Graph,
    id: NodeId,
    filter_scales: &[f32],
    q_node: NodeId,
    summary: &Int8Summary,
) -> Result<()> {
    let node = g.node(id);
    let y = node.outputs[0];
    let (Some(x), Some(&p_out)) = (node.input(0), summary.value_params.get(&y)) else {
        return Ok(());
    };
    let Some(&p_in) = summary.value_params.get(&x) else {
        return Ok(());
    };
    let Some(rank) = g.fact(y).shape.rank() else {
        return Ok(());
    };
    let channels = filter_scales.len();
    // Conv channels are axis 1, Linear's the last.
    let shape: Vec<usize> = match node.op {
        Op::Conv(_) if rank >= 2 => {
            let mut s = vec![channels];
            s.extend(std::iter::repeat_n(1, rank - 2));
            s
        }
        _ => vec![channels],
    };
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for &s_w in filter_scales {
        let m = f64::from(p_in.scale) * f64::from(s_w) / f64::from(p_out.scale);
        let grid = 2f64.powi(requantize_right_shift(m));
        up.push((grid / f64::from(p_out.scale)) as f32);
        down.push((f64::from(p_out.scale) / grid) as f32);
    }
    let name = node.name.clone();
    let constant = |sim: &mut Graph, suffix: &str, values: &[f32], shape: &[usize]| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Weight::new(
            format!("{name}__sim_{suffix}"),
            DType::F32,
            shape.to_vec(),
            Bytes::from(bytes),
        )
        .map(|w| sim.add_weight(w))
    };
    let up = constant(sim, "grid_up", &up, &shape)?;
    let down = constant(sim, "grid_down", &down, &shape)?;
    let quarter = constant(sim, "quarter", &[0.25], &[])?;
    let read = sim.node(q_node).inputs[0].expect("a QuantizeLinear input");
    let fact = sim.fact(read).clone();
    let step = |sim: &mut Graph, suffix: &str, op: Op, inputs: Vec<ValueId>| {
        let inputs = inputs.into_iter().map(Some).collect();
        sim.add_node(
            format!("{name}__sim_{suffix}"),
            op,
            inputs,
            vec![(format!("{name}__sim_{suffix}"), fact.clone())],
        )
        .1[0]
    };
    let scaled = step(sim, "on_grid", Op::Mul, vec![read, up]);
    let fine = step(sim, "first_rounding", Op::Round, vec![scaled]);
    let sign = step(sim, "sign", Op::Sign, vec![fine]);
    let nudge = step(sim, "nudge", Op::Mul, vec![sign, quarter]);
    let nudged = step(sim, "nudged", Op::Add, vec![fine, nudge]);
    let back = step(sim, "off_grid", Op::Mul, vec![nudged, down]);
    sim.node_mut(q_node).inputs[0] = Some(back);
    Ok(())
}

/// `DequantizeLinear(QuantizeLinear(v))` with `p`, added to `sim`; returns
/// the QuantizeLinear node and the DequantizeLinear's output.
fn fake_quant(sim: &mut Graph, v: ValueId, p: ActParams) -> Result<(NodeId, ValueId)> {
    let name = sim.value(v).name.clone();
    let shape = sim.fact(v).shape.clone();
    let (q_node, q, scale, zero) = quantize_node(sim, v, p, &name)?;
    let (_, dq) = sim.add_node(
        format!("{name}__sim_dequantize"),
        Op::DequantizeLinear(DequantizeAttrs {
            axis: 1,
            block_size: 0,
        }),
        vec![Some(q), Some(scale), Some(zero)],
        vec![(format!("{name}__sim"), Fact::new(DType::F32, shape))],
    );
    Ok((q_node, dq[0]))
}

/// `QuantizeLinear(v)` with `p` as int8, named after `name`: the node, its
/// output, and the scale and zero-point weights it reads.
fn quantize_node(
    sim: &mut Graph,
    v: ValueId,
    p: ActParams,
    name: &str,
) -> Result<(NodeId, ValueId, ValueId, ValueId)> {
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
    let (node, q) = sim.add_node(
        format!("{name}__sim_quantize"),
        Op::QuantizeLinear(QuantizeAttrs {
            axis: 1,
            saturate: true,
            block_size: 0,
            output_dtype: None,
        }),
        vec![Some(v), Some(scale), Some(zero)],
        vec![(format!("{name}__sim_int8"), Fact::new(DType::I8, shape))],
    );
    Ok((node, q[0], scale, zero))
}

fn scalar_weight(sim: &mut Graph, name: &str, dtype: DType, bytes: &[u8]) -> Result<ValueId> {
    let w = Weight::new(name, dtype, vec![], Bytes::copy_from_slice(bytes))?;
    Ok(sim.add_weight(w))
}

/// Replaces the float constants node `id` reads by their int8 (or int32)
/// rounding; returns the filter's per-channel scales when it has one.
fn round_constants(
    g: &Graph,
    sim: &mut Graph,
    id: NodeId,
    summary: &Int8Summary,
) -> Result<Option<Vec<f32>>> {
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
    Ok(filter_scales)
}
