//! Structural checks of a graph. Run after import, after every pass in tests and
//! debug builds, and before a writer starts.

use std::collections::HashSet;

use super::error::{Error, Result};
use super::graph::{Graph, QuantParams, ValueDef, ValueId, WeightId};
use super::weights::expected_bytes;

/// Checks that the graph is well formed:
/// - every id in range, every value's definition points back at it;
/// - node input and output counts within the op's arity, required inputs present;
/// - no cycle and no use of a value whose producer was removed;
/// - graph outputs defined; value and node names unique and non-empty;
/// - weights hold exactly the bytes their dtype and shape need, and their values'
///   facts agree with them.
pub fn verify(g: &Graph) -> Result<()> {
    let in_range = |v: ValueId| v.index() < g.value_count();

    for (i, &v) in g.inputs.iter().enumerate() {
        if !in_range(v) || g.value(v).def != ValueDef::Input(i) {
            return Err(Error::Graph(format!(
                "graph input {i} is not defined as input {i}"
            )));
        }
    }

    let mut node_names = HashSet::new();
    for (id, node) in g.nodes() {
        let op = node.op.name();
        let fail = |msg: String| Error::node(&node.name, op, msg);
        if node.name.is_empty() {
            return Err(Error::Graph(format!("node {} has no name", id.0)));
        }
        if !node_names.insert(node.name.as_str()) {
            return Err(fail("node name used twice".into()));
        }
        let (min_in, max_in) = node.op.input_arity();
        if node.inputs.len() < min_in || max_in.is_some_and(|m| node.inputs.len() > m) {
            return Err(fail(format!(
                "{} inputs, the op takes {min_in}..{}",
                node.inputs.len(),
                max_in.map_or("any".into(), |m| m.to_string())
            )));
        }
        if let Some(missing) = node.inputs[..min_in].iter().position(Option::is_none) {
            return Err(fail(format!("required input {missing} is absent")));
        }
        let (min_out, max_out) = node.op.output_arity();
        if node.outputs.len() < min_out || max_out.is_some_and(|m| node.outputs.len() > m) {
            return Err(fail(format!(
                "{} outputs, the op has {min_out}..",
                node.outputs.len()
            )));
        }
        if let Some(v) = node.inputs.iter().flatten().find(|v| !in_range(**v)) {
            return Err(fail(format!("input {} does not exist", v.0)));
        }
        for (slot, &v) in node.outputs.iter().enumerate() {
            if !in_range(v) || g.value(v).def != (ValueDef::Node { node: id, slot }) {
                return Err(fail(format!("output {slot} is not defined by this node")));
            }
        }
    }

    g.topo_order()?;

    let live = live_values(g);
    let mut value_names = HashSet::new();
    for &v in &live {
        let value = g.value(v);
        if value.name.is_empty() {
            return Err(Error::Graph(format!("value {} has no name", v.0)));
        }
        if !value_names.insert(value.name.as_str()) {
            return Err(Error::Graph(format!(
                "value name '{}' used twice",
                value.name
            )));
        }
    }

    for (i, &v) in g.outputs.iter().enumerate() {
        if !in_range(v) {
            return Err(Error::Graph(format!("graph output {i} does not exist")));
        }
        if let ValueDef::Node { node, .. } = g.value(v).def {
            if g.try_node(node).is_none() {
                return Err(Error::Graph(format!(
                    "graph output '{}' is produced by a removed node",
                    g.value(v).name
                )));
            }
        }
    }

    for (_, w) in g.weights.iter() {
        let expected = expected_bytes(w.dtype, &w.shape).ok_or_else(|| {
            Error::Graph(format!("weight '{}' shape {:?} overflows", w.name, w.shape))
        })?;
        if w.dtype != super::DType::String && w.data.len() as u64 != expected {
            return Err(Error::Graph(format!(
                "weight '{}' holds {} bytes, its dtype and shape need {expected}",
                w.name,
                w.data.len()
            )));
        }
    }
    for &v in &live {
        if let ValueDef::Weight(w) = g.value(v).def {
            if w.index() >= g.weights.len() {
                return Err(Error::Graph(format!(
                    "value '{}' reads a missing weight",
                    g.value(v).name
                )));
            }
            let weight = g.weights.get(w);
            let fact = &g.value(v).fact;
            if fact.dtype != Some(weight.dtype)
                || fact.shape.as_fixed().as_deref() != Some(&weight.shape[..])
            {
                return Err(Error::Graph(format!(
                    "value '{}' disagrees with its weight's dtype or shape",
                    g.value(v).name
                )));
            }
        }
    }
    Ok(())
}

/// Values that are graph inputs, graph outputs, read by a live node, produced by
/// one, or the weights named by those values' per-axis quantization parameters.
pub fn live_values(g: &Graph) -> Vec<ValueId> {
    let mut used: Vec<ValueId> = g.inputs.clone();
    for (_, node) in g.nodes() {
        used.extend(node.inputs.iter().flatten().copied());
        used.extend(node.outputs.iter().copied());
    }
    used.extend(g.outputs.iter().copied());
    let quant_weights: HashSet<WeightId> = used
        .iter()
        .filter_map(|&v| match g.value(v).fact.quant {
            Some(QuantParams::PerAxis {
                scales,
                zero_points,
                ..
            }) => Some([Some(scales), zero_points]),
            _ => None,
        })
        .flatten()
        .flatten()
        .collect();
    if !quant_weights.is_empty() {
        used.extend(
            g.values()
                .filter(|(_, value)| matches!(value.def, ValueDef::Weight(w) if quant_weights.contains(&w)))
                .map(|(id, _)| id),
        );
    }
    let mut seen = HashSet::new();
    used.retain(|v| seen.insert(*v));
    used
}
