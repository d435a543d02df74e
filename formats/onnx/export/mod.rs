//! The ONNX target: the IR written back as an ONNX model.
//!
//! - One ONNX node per IR node, names kept (values, nodes, inputs, outputs),
//!   in topological order; the default domain only (custom ops are unsupported).
//! - The opset is the lowest at which every node's form means what the IR op
//!   means ([`nodes::lower`]); the IR version is the lowest that opset needs.
//! - Weights become initializers streamed from the lazy store ([`stream`]);
//!   external data when the file would pass 2 GiB, or always on request.
//! - Graph inputs and outputs carry their types; symbolic dims are
//!   `dim_param`s (the symbol's name, or the expression's text such as `2*N+1`).
//! - The bytes depend only on the graph: no timestamps, no hash-map order.

mod nodes;
mod stream;

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;

use crate::formats::target::{EmitReport, Support, Target, require_supported};
use crate::ir::error::{Error, Result, Unsupported};
use crate::ir::verify::live_values;
use crate::ir::{DType, Dim, Fact, Graph, NodeId, Op, Shape, ValueDef, ValueId};
use crate::passes::{Repeat, Stage};
use crate::progress::Progress;

use super::dtype::to_onnx;
use super::import::NEWEST_OPSET;
use super::legalize::{SoftmaxFlatten, Unfuse};
use super::proto::tensor_shape_proto::Dimension;
use super::proto::tensor_shape_proto::dimension::Value as DimValue;
use super::proto::type_proto::{Tensor as TensorType, Value as TypeValue};
use super::proto::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

pub use nodes::MIN_OPSET;
pub use stream::{EXTERNAL_MIN_BYTES, ExternalData, PROTOBUF_LIMIT, data_file_path};

/// Writes ONNX models.
#[derive(Clone, Debug, Default)]
pub struct OnnxTarget {
    pub external_data: ExternalData,
}

impl Target for OnnxTarget {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn legalize(&self) -> Vec<Stage> {
        vec![Stage {
            name: "onnx_legalize",
            passes: vec![Box::new(SoftmaxFlatten), Box::new(Unfuse)],
            repeat: Repeat::Once,
        }]
    }

    fn support(&self, g: &Graph, node: NodeId) -> Support {
        support(g, node)
    }

    fn emit(&self, g: &Graph, out: &Path, progress: &dyn Progress) -> Result<EmitReport> {
        require_supported(self, g)?;
        let model = build(g)?;
        let mut lowered: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for node in &model.graph.node {
            lowered
                .entry(node.name.clone())
                .or_default()
                .push(node.op_type.clone());
        }
        let initializers = model
            .initializers
            .into_iter()
            .map(|(header, v)| stream::Initializer {
                header,
                data: g.weight_of(v).map_or(&[][..], |w| {
                    if w.dtype == DType::String {
                        &[][..]
                    } else {
                        &w.data[..]
                    }
                }),
            })
            .collect();
        let written = stream::write_model(
            &model.model,
            &model.graph,
            initializers,
            out,
            self.external_data,
            progress,
        )?;
        let mut notes = vec![
            format!("opset {}", model.opset),
            format!("ir_version {}", model.model.ir_version),
        ];
        if written.external_tensors > 0 {
            notes.push(format!(
                "{} tensors in external data",
                written.external_tensors
            ));
        }
        Ok(EmitReport {
            files: written.files,
            bytes: written.bytes,
            notes,
            lowered,
            ..Default::default()
        })
    }
}

/// Whether the ONNX target can write a node.
pub fn support(g: &Graph, id: NodeId) -> Support {
    let node = g.node(id);
    match nodes::lower(g, node, NEWEST_OPSET) {
        Ok(_) => {}
        Err(nodes::NoForm::NeedsLegalize(why)) => return Support::AfterLegalize(why),
        Err(nodes::NoForm::Unsupported(why)) => return Support::Unsupported(why),
    }
    for &v in node.inputs.iter().flatten().chain(&node.outputs) {
        if let Err(why) = check_value(g, v) {
            return Support::Unsupported(why);
        }
    }
    Support::Native
}

/// A value ONNX can type: a known dtype ONNX has, and quantization parameters
/// only where DequantizeLinear nodes reading it state them (Q/DQ insertion for
/// other quantized facts is not implemented).
fn check_value(g: &Graph, v: ValueId) -> Result<(), String> {
    let value = g.value(v);
    if value.fact.quant.is_some() && !only_dequantized(g, v) {
        return Err(format!(
            "value '{}' carries quantization parameters, which the ONNX writer cannot express yet",
            value.name
        ));
    }
    match value.fact.dtype {
        None => Err(format!("the dtype of value '{}' is unknown", value.name)),
        Some(d) if to_onnx(d).is_none() => Err(format!(
            "value '{}' is {d}, which has no ONNX element type",
            value.name
        )),
        Some(_) => Ok(()),
    }
}

/// Whether every node reading `v` is a DequantizeLinear taking it as the
/// quantized input, whose scale and zero point express `v`'s quantization.
fn only_dequantized(g: &Graph, v: ValueId) -> bool {
    !g.outputs.contains(&v)
        && g.nodes()
            .filter(|(_, n)| n.inputs.contains(&Some(v)))
            .all(|(_, n)| matches!(n.op, Op::DequantizeLinear(_)) && n.input(0) == Some(v))
}

/// The lowest IR version that can hold a model of `opset`
/// (`onnx.helper.VERSION_TABLE`), and at least 4: before it initializers
/// had to be listed as graph inputs too.
pub fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        23 => 11,
        24 => 12,
        25..=27 => 13,
        _ => 14,
    }
}

/// The lowest opset that expresses every node of `g` (at least [`MIN_OPSET`]).
pub fn required_opset(g: &Graph) -> Result<i64> {
    let mut opset = MIN_OPSET;
    for (_, node) in g.nodes() {
        let lowered = nodes::lower(g, node, NEWEST_OPSET).map_err(|e| unsupported(node, e))?;
        opset = opset.max(lowered.since);
    }
    Ok(opset)
}

fn unsupported(node: &crate::ir::Node, e: nodes::NoForm) -> Error {
    let reason = match e {
        nodes::NoForm::NeedsLegalize(w) => format!("not legalized: {w}"),
        nodes::NoForm::Unsupported(w) => w,
    };
    Error::Unsupported(vec![Unsupported {
        node: node.name.clone(),
        op: node.op.name().to_string(),
        reason: format!("onnx target: {reason}"),
    }])
}

/// The model without tensor data: the graph, and each initializer's header
/// with the value whose weight holds its bytes.
struct ModelParts {
    model: ModelProto,
    graph: GraphProto,
    initializers: Vec<(TensorProto, ValueId)>,
    opset: i64,
}

fn build(g: &Graph) -> Result<ModelParts> {
    let opset = required_opset(g)?;
    let live = live_values(g);
    let mut taken: HashSet<String> = live.iter().map(|&v| g.value(v).name.clone()).collect();
    taken.extend(g.nodes().map(|(_, n)| n.name.clone()));
    let mut unique = |base: String| -> String {
        let mut name = base.clone();
        let mut i = 1;
        while !taken.insert(name.clone()) {
            name = format!("{base}_{i}");
            i += 1;
        }
        name
    };

    let mut node_protos = Vec::with_capacity(g.node_count());
    for id in g.topo_order()? {
        let node = g.node(id);
        let lowered = nodes::lower(g, node, opset).map_err(|e| unsupported(node, e))?;
        let mut inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|v| v.map_or_else(String::new, |v| g.value(v).name.clone()))
            .collect();
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        node_protos.push(NodeProto {
            input: inputs,
            output: node
                .outputs
                .iter()
                .map(|&v| g.value(v).name.clone())
                .collect(),
            name: node.name.clone(),
            op_type: lowered.op_type.to_string(),
            attribute: lowered.attrs,
            ..NodeProto::default()
        });
    }

    // ONNX runtimes expect graph outputs to be computed; a weight that is an
    // output is written under another name and copied out by an Identity.
    let mut renamed_weights: Vec<(ValueId, String)> = Vec::new();
    for &v in &g.outputs {
        if matches!(g.value(v).def, ValueDef::Weight(_))
            && !renamed_weights.iter().any(|(w, _)| *w == v)
        {
            let name = &g.value(v).name;
            let stored = unique(format!("{name}_value"));
            node_protos.push(NodeProto {
                input: vec![stored.clone()],
                output: vec![name.clone()],
                name: unique(format!("{name}_output")),
                op_type: "Identity".into(),
                ..NodeProto::default()
            });
            renamed_weights.push((v, stored));
        }
    }

    let mut initializers = Vec::new();
    let live_set: HashSet<ValueId> = live.iter().copied().collect();
    for (v, value) in g.values() {
        let ValueDef::Weight(w) = value.def else {
            continue;
        };
        if !live_set.contains(&v) {
            continue;
        }
        let weight = g.weights.get(w);
        let name = renamed_weights
            .iter()
            .find(|(r, _)| *r == v)
            .map_or_else(|| value.name.clone(), |(_, n)| n.clone());
        initializers.push((tensor_header(&name, weight)?, v));
    }

    let graph = GraphProto {
        node: node_protos,
        name: g.name.clone(),
        input: g
            .inputs
            .iter()
            .map(|&v| value_info(g, v))
            .collect::<Result<_>>()?,
        output: g
            .outputs
            .iter()
            .map(|&v| value_info(g, v))
            .collect::<Result<_>>()?,
        ..GraphProto::default()
    };
    let model = ModelProto {
        ir_version: ir_version_for(opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "edgeconv".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        metadata_props: g
            .metadata
            .props
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..ModelProto::default()
    };
    Ok(ModelParts {
        model,
        graph,
        initializers,
        opset,
    })
}

/// Everything of a weight's `TensorProto` but `raw_data`.
fn tensor_header(name: &str, w: &crate::ir::Weight) -> Result<TensorProto> {
    let data_type = to_onnx(w.dtype).ok_or_else(|| {
        Error::Unsupported(vec![Unsupported {
            node: name.to_string(),
            op: "weight".into(),
            reason: format!("onnx target: {} has no ONNX element type", w.dtype),
        }])
    })?;
    let mut header = TensorProto {
        name: name.to_string(),
        dims: w.shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        ..TensorProto::default()
    };
    if w.dtype == DType::String {
        header.string_data = decode_strings(&w.data).ok_or_else(|| {
            Error::Input(format!("weight '{name}': malformed string tensor bytes"))
        })?;
    }
    Ok(header)
}

/// The IR keeps string tensors as (u32 length, bytes) per element.
fn decode_strings(mut data: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        out.push(Bytes::copy_from_slice(data.get(4..4 + len)?));
        data = &data[4 + len..];
    }
    Some(out)
}

fn value_info(g: &Graph, v: ValueId) -> Result<ValueInfoProto> {
    let value = g.value(v);
    let fail = |why: String| {
        Error::Unsupported(vec![Unsupported {
            node: value.name.clone(),
            op: "graph input/output".into(),
            reason: format!("onnx target: {why}"),
        }])
    };
    check_value(g, v).map_err(fail)?;
    Ok(ValueInfoProto {
        name: value.name.clone(),
        r#type: Some(tensor_type(g, &value.fact)),
        ..ValueInfoProto::default()
    })
}

fn tensor_type(g: &Graph, fact: &Fact) -> TypeProto {
    let elem_type = fact.dtype.and_then(to_onnx).map_or(0, |t| t as i32);
    let shape = match &fact.shape {
        Shape::Unranked => None,
        Shape::Ranked(dims) => Some(TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: Some(match d {
                        Dim::Fixed(n) => DimValue::DimValue(*n as i64),
                        sym => DimValue::DimParam(sym.display(&g.symbols).to_string()),
                    }),
                    ..Dimension::default()
                })
                .collect(),
        }),
    };
    TypeProto {
        value: Some(TypeValue::TensorType(TensorType { elem_type, shape })),
        ..TypeProto::default()
    }
}

#[cfg(test)]
mod tests;
