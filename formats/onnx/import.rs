//! Builds a [`Graph`] from a decoded `ModelProto`: initializers and Constant
//! nodes become weights, nodes are converted in dependency order and their
//! output facts inferred, declared `value_info` filling what inference
//! cannot determine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::ir::error::{Error, Result};
use crate::ir::infer::{self, InferInput, SymInt};
use crate::ir::shape::Shape;
use crate::ir::{Dim, Fact, Graph, Op, Symbols, ValueId, Weight};
use crate::progress::Progress;

use super::attrs::Attrs;
use super::dtype::DTypeError;
use super::external::ExternalFiles;
use super::names::Names;
use super::ops::{self, NodeCx};
use super::proto::{GraphProto, ModelProto, NodeProto, TypeProto};
use super::tensor::{self, tensor_error};
use super::types::fact_from_type;

/// Weights up to this many elements are decoded for shape inference.
const MAX_INFER_CONSTANT: u64 = 4096;

/// The opset assumed for the default domain when a model imports none
/// (IR version < 3).
const DEFAULT_OPSET: i64 = 1;

/// The newest default-domain opset that ONNX 1.23 defines.
pub const NEWEST_OPSET: i64 = 28;

/// Models from IR version 3 on whose graph uses default-domain ops must import
/// the default domain, at a version that exists.
fn check_default_opset(model: &ModelProto, g: &GraphProto) -> Result<()> {
    let default = model
        .opset_import
        .iter()
        .find(|o| is_default_domain(&o.domain))
        .map(|o| o.version);
    match default {
        None if model.ir_version >= 3 && g.node.iter().any(|n| is_default_domain(&n.domain)) => {
            Err(Error::Graph(format!(
                "the model (IR version {}) uses default-domain ops but imports no opset for them",
                model.ir_version
            )))
        }
        Some(v) if v < 1 => Err(Error::Graph(format!(
            "opset version {v} for the default ONNX domain does not exist"
        ))),
        Some(v) if v > NEWEST_OPSET => {
            Err(Error::Unsupported(vec![crate::ir::error::Unsupported {
                node: "(model)".into(),
                op: "opset_import".into(),
                reason: format!(
                    "default-domain opset {v} is newer than the newest edgeconv knows ({NEWEST_OPSET})"
                ),
            }]))
        }
        _ => Ok(()),
    }
}

fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// Import state of one graph.
struct Importer<'a> {
    file: &'a Path,
    graph: Graph,
    external: ExternalFiles,
    /// ONNX value name -> IR value.
    values: HashMap<String, ValueId>,
    /// Symbolic integer values of shape-like values.
    syms: HashMap<ValueId, Vec<SymInt>>,
    value_names: Names,
    /// Every ONNX node name (so generated ones avoid them) and generated names.
    node_names: Names,
    /// Node names given to IR nodes so far.
    assigned_nodes: HashSet<String>,
    declared: HashMap<&'a str, &'a TypeProto>,
    used: HashSet<String>,
    opsets: HashMap<String, i64>,
}

/// Converts a decoded model. `file` locates errors; `base_dir` is where
/// external data is looked up (`None` refuses external data).
pub fn import_model(
    model: &ModelProto,
    file: &Path,
    base_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Graph> {
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::parse(file, 0, "the model has no graph"))?;
    check_default_opset(model, g)?;
    let name = if g.name.is_empty() {
        file.file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned())
    } else {
        g.name.clone()
    };
    let mut imp = Importer {
        file,
        graph: Graph::new(name),
        external: ExternalFiles::new(file, base_dir),
        values: HashMap::new(),
        syms: HashMap::new(),
        value_names: Names::default(),
        node_names: Names::default(),
        assigned_nodes: HashSet::new(),
        declared: g
            .value_info
            .iter()
            .chain(&g.output)
            .filter_map(|v| Some((v.name.as_str(), v.r#type.as_ref()?)))
            .collect(),
        used: g
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(g.output.iter().map(|o| o.name.clone()))
            .collect(),
        opsets: model
            .opset_import
            .iter()
            .map(|o| {
                let domain = if o.domain == "ai.onnx" {
                    ""
                } else {
                    o.domain.as_str()
                };
                (domain.to_string(), o.version)
            })
            .collect(),
    };
    imp.set_metadata(model);
    imp.claim_names(g)?;
    imp.add_initializers(g)?;
    imp.add_inputs(g)?;
    let order = topo_order(g, &imp.values)?;
    progress.start("import nodes", order.len() as u64);
    for i in order {
        imp.add_node(&g.node[i], i)?;
        progress.advance(1);
    }
    progress.finish();
    imp.set_outputs(g)?;
    crate::ir::verify::verify(&imp.graph)?;
    Ok(imp.graph)
}

impl<'a> Importer<'a> {
    fn set_metadata(&mut self, model: &ModelProto) {
        let m = &mut self.graph.metadata;
        m.source_format = "onnx".into();
        let producer = format!("{} {}", model.producer_name, model.producer_version);
        m.producer = Some(producer.trim().to_string()).filter(|p| !p.is_empty());
        m.ir_version = Some(model.ir_version);
        m.opsets = self.opsets.iter().map(|(d, v)| (d.clone(), *v)).collect();
        for p in &model.metadata_props {
            m.props.insert(p.key.clone(), p.value.clone());
        }
    }

    /// Claims every name the file defines, so generated names avoid them, and
    /// rejects names defined twice.
    fn claim_names(&mut self, g: &GraphProto) -> Result<()> {
        let initializers: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        for t in &g.initializer {
            if !self.value_names.claim(&t.name) {
                return Err(Error::Graph(format!(
                    "initializer '{}' is defined twice",
                    t.name
                )));
            }
        }
        for input in &g.input {
            if !initializers.contains(input.name.as_str()) && !self.value_names.claim(&input.name) {
                return Err(Error::Graph(format!(
                    "graph input '{}' is defined twice",
                    input.name
                )));
            }
        }
        for (i, n) in g.node.iter().enumerate() {
            for out in n.output.iter().filter(|o| !o.is_empty()) {
                if !self.value_names.claim(out) {
                    let node = if n.name.is_empty() {
                        format!("#{i}")
                    } else {
                        n.name.clone()
                    };
                    return Err(Error::node(
                        node,
                        &n.op_type,
                        format!("output '{out}' is already defined"),
                    ));
                }
            }
            if !n.name.is_empty() {
                self.node_names.claim(&n.name);
            }
        }
        Ok(())
    }

    fn add_initializers(&mut self, g: &GraphProto) -> Result<()> {
        for (i, t) in g.initializer.iter().enumerate() {
            if t.name.is_empty() {
                return Err(tensor_error(
                    self.file,
                    &format!("#{i}"),
                    "initializer without a name",
                ));
            }
            let w = tensor::to_weight(t, &t.name, self.file, &mut self.external)?;
            let v = self.graph.add_weight(w);
            self.values.insert(t.name.clone(), v);
        }
        if let Some(s) = g.sparse_initializer.first() {
            let name = s.values.as_ref().map_or("", |v| v.name.as_str());
            return Err(Error::Unsupported(vec![crate::ir::error::Unsupported {
                node: name.to_string(),
                op: "sparse initializer".into(),
                reason: format!("{}: sparse tensors are not supported", self.file.display()),
            }]));
        }
        Ok(())
    }

    /// Graph inputs that are not initializers (IR < 4 lists initializers as
    /// inputs too; those stay weights).
    fn add_inputs(&mut self, g: &GraphProto) -> Result<()> {
        for input in &g.input {
            if self.values.contains_key(&input.name) {
                continue;
            }
            if input.name.is_empty() {
                return Err(Error::Graph("a graph input has no name".into()));
            }
            let fact = fact_from_type(input.r#type.as_ref(), &mut self.graph.symbols).map_err(
                |e| match e {
                    DTypeError::Undefined(_) => {
                        Error::Graph(format!("graph input '{}': {e}", input.name))
                    }
                    DTypeError::Unsupported(_) => {
                        Error::Unsupported(vec![crate::ir::error::Unsupported {
                            node: input.name.clone(),
                            op: "graph input".into(),
                            reason: e.to_string(),
                        }])
                    }
                },
            )?;
            let v = self.graph.add_input(&input.name, fact);
            self.values.insert(input.name.clone(), v);
        }
        Ok(())
    }

    /// The node's ONNX name, or a generated unique one when it has none or
    /// repeats an earlier node's.
    fn node_name(&mut self, n: &NodeProto, index: usize) -> String {
        let name = if n.name.is_empty() {
            self.node_names.unique(&format!("{}_{index}", n.op_type))
        } else if self.assigned_nodes.contains(&n.name) {
            self.node_names.unique(&n.name)
        } else {
            n.name.clone()
        };
        self.assigned_nodes.insert(name.clone());
        name
    }

    fn add_node(&mut self, n: &NodeProto, index: usize) -> Result<()> {
        let name = self.node_name(n, index);
        let attrs = Attrs::new(&name, &n.op_type, &n.attribute);
        let default_domain = is_default_domain(&n.domain);
        if default_domain && n.op_type == "Constant" {
            return self.add_constant(n, &name, attrs);
        }
        let inputs: Vec<Option<ValueId>> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    None
                } else {
                    self.values.get(i).copied()
                }
            })
            .collect();
        let opset = if default_domain {
            self.opsets.get("").copied().unwrap_or(DEFAULT_OPSET)
        } else {
            self.opsets.get(&n.domain).copied().unwrap_or(1)
        };
        let mut cx = NodeCx {
            file: self.file,
            node: n,
            name: &name,
            opset,
            attrs,
            inputs,
            outputs: n.output.clone(),
            graph: &mut self.graph,
            names: &mut self.value_names,
            used: &self.used,
        };
        let op = if default_domain {
            ops::convert(&mut cx)?
        } else {
            cx.custom()
        };
        let NodeCx {
            mut inputs,
            mut outputs,
            ..
        } = cx;
        while inputs.last() == Some(&None) {
            inputs.pop();
        }
        while outputs.last().is_some_and(String::is_empty) {
            outputs.pop();
        }
        let facts = self.infer(&op, &inputs, outputs.len(), &name, &n.op_type)?;
        let mut named = Vec::with_capacity(outputs.len());
        for (slot, (out, inferred)) in outputs.iter().zip(facts).enumerate() {
            let value_name = if out.is_empty() {
                self.value_names.unique(&format!("{name}_unused{slot}"))
            } else {
                out.clone()
            };
            let fact = self.with_declared(inferred.fact, &value_name);
            named.push((value_name, fact, inferred.sym));
        }
        let (_, values) = self.graph.add_node(
            &name,
            op,
            inputs,
            named
                .iter()
                .map(|(n, f, _)| (n.clone(), f.clone()))
                .collect(),
        );
        for ((value_name, _, sym), v) in named.into_iter().zip(values) {
            if let Some(s) = sym {
                self.syms.insert(v, s);
            }
            self.values.insert(value_name, v);
        }
        Ok(())
    }

    fn infer(
        &mut self,
        op: &Op,
        inputs: &[Option<ValueId>],
        n_outputs: usize,
        node: &str,
        op_type: &str,
    ) -> Result<Vec<infer::Inferred>> {
        let known: Vec<Option<InferInput>> = inputs
            .iter()
            .map(|v| v.map(|v| self.infer_input(v)))
            .collect();
        infer::infer_op(op, &known, n_outputs, &mut self.graph.symbols)
            .map_err(|e| Error::node(node, op_type, e))
    }

    fn infer_input(&self, v: ValueId) -> InferInput {
        if let Some(w) = self.graph.weight_of(v) {
            if w.element_count() <= MAX_INFER_CONSTANT {
                if let Ok(t) = tensor::weight_to_tensor(w) {
                    return InferInput::constant(t);
                }
            }
        }
        InferInput {
            fact: self.graph.fact(v).clone(),
            value: None,
            sym: self.syms.get(&v).cloned(),
        }
    }

    /// The inferred fact, with what it leaves unknown taken from the file's
    /// declared type of the value (if any).
    fn with_declared(&mut self, inferred: Fact, name: &str) -> Fact {
        let Some(tp) = self.declared.get(name).copied() else {
            return inferred;
        };
        let unknown_dims = match inferred.shape.dims() {
            None => true,
            Some(d) => d.iter().any(|d| is_unknown(d, &self.graph.symbols)),
        };
        if inferred.dtype.is_some() && !unknown_dims {
            return inferred;
        }
        let Ok(declared) = fact_from_type(Some(tp), &mut self.graph.symbols) else {
            return inferred;
        };
        let shape = match (inferred.shape, declared.shape) {
            (Shape::Unranked, d) => d,
            (Shape::Ranked(i), Shape::Ranked(d)) if i.len() == d.len() => Shape::Ranked(
                i.into_iter()
                    .zip(d)
                    .map(|(i, d)| {
                        if is_unknown(&i, &self.graph.symbols) {
                            d
                        } else {
                            i
                        }
                    })
                    .collect(),
            ),
            (i, _) => i,
        };
        Fact {
            dtype: inferred.dtype.or(declared.dtype),
            shape,
            quant: inferred.quant,
        }
    }

    fn add_constant(&mut self, n: &NodeProto, name: &str, attrs: Attrs) -> Result<()> {
        let [out] = n.output.as_slice() else {
            return Err(Error::node(name, "Constant", "expected one output"));
        };
        let tensor = constant_value(attrs, out)?;
        let w = match tensor {
            Some(ConstantValue::Proto(t)) => {
                tensor::to_weight(t, out, self.file, &mut self.external)?
            }
            Some(ConstantValue::Weight(w)) => w,
            None => {
                let op = Op::Custom(crate::ir::ops::CustomOp {
                    domain: n.domain.clone(),
                    name: n.op_type.clone(),
                    attrs: attrs.summarize(),
                });
                let fact = self.with_declared(Fact::unknown(), out);
                let (_, v) = self
                    .graph
                    .add_node(name, op, vec![], vec![(out.clone(), fact)]);
                self.values.insert(out.clone(), v[0]);
                return Ok(());
            }
        };
        let v = self.graph.add_weight(w);
        self.values.insert(out.clone(), v);
        Ok(())
    }

    fn set_outputs(&mut self, g: &GraphProto) -> Result<()> {
        for o in &g.output {
            let v = *self
                .values
                .get(&o.name)
                .ok_or_else(|| Error::Graph(format!("graph output '{}' is not defined", o.name)))?;
            if matches!(self.graph.value(v).def, crate::ir::ValueDef::Node { .. }) {
                let fact = self.graph.fact(v).clone();
                self.graph.value_mut(v).fact = self.with_declared(fact, &o.name);
            }
            self.graph.outputs.push(v);
        }
        Ok(())
    }
}

/// Whether a dim is a fresh symbol inference made up (not a named one).
fn is_unknown(d: &Dim, symbols: &Symbols) -> bool {
    d.as_symbol()
        .is_some_and(|s| symbols.name(s).starts_with("unk"))
}

enum ConstantValue<'a> {
    Proto(&'a super::proto::TensorProto),
    Weight(Weight),
}

/// The value of a Constant node (`None` for forms the IR cannot hold:
/// sparse tensors, string lists).
fn constant_value<'a>(attrs: Attrs<'a>, out: &str) -> Result<Option<ConstantValue<'a>>> {
    use crate::ir::Tensor;
    use ndarray::{ArrayD, IxDyn};
    let weight = |t: Tensor| -> Result<Option<ConstantValue<'a>>> {
        let w = Weight::new(
            out,
            t.dtype(),
            t.shape().to_vec(),
            bytes::Bytes::from(t.to_bytes()),
        )?;
        Ok(Some(ConstantValue::Weight(w)))
    };
    if let Some(t) = attrs.tensor("value")? {
        return Ok(Some(ConstantValue::Proto(t)));
    }
    if let Some(v) = attrs.opt_float("value_float")? {
        return weight(Tensor::scalar_f32(v));
    }
    if let Some(v) = attrs.floats("value_floats")? {
        let a = ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("len elements fill [len]");
        return weight(Tensor::F32(a));
    }
    if let Some(v) = attrs.opt_int("value_int")? {
        return weight(Tensor::scalar_i64(v));
    }
    if let Some(v) = attrs.ints("value_ints")? {
        return weight(Tensor::from_i64(&[v.len()], v)?);
    }
    if let Some(s) = attrs.opt_string("value_string")? {
        let mut data = (s.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(s.as_bytes());
        let w = Weight::new(
            out,
            crate::ir::DType::String,
            vec![],
            bytes::Bytes::from(data),
        )?;
        return Ok(Some(ConstantValue::Weight(w)));
    }
    Ok(None)
}

/// Node indices in an order where producers come first (stable: file order
/// among ready nodes). Fails on undefined inputs and cycles.
fn topo_order(g: &GraphProto, defined: &HashMap<String, ValueId>) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
    }
    let mut pending = vec![0usize; g.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        for input in n.input.iter().filter(|x| !x.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    users[p].push(i);
                }
                None if defined.contains_key(input) => {}
                None => {
                    let node = if n.name.is_empty() {
                        format!("#{i}")
                    } else {
                        n.name.clone()
                    };
                    return Err(Error::node(
                        node,
                        &n.op_type,
                        format!("input '{input}' is not defined"),
                    ));
                }
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..g.node.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(g.node.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != g.node.len() {
        let stuck: Vec<String> = (0..g.node.len())
            .filter(|&i| pending[i] > 0)
            .take(5)
            .map(|i| {
                let n = &g.node[i];
                if n.name.is_empty() {
                    format!("#{i} ({})", n.op_type)
                } else {
                    format!("{} ({})", n.name, n.op_type)
                }
            })
            .collect();
        return Err(Error::Graph(format!(
            "the graph has a cycle through nodes {}",
            stuck.join(", ")
        )));
    }
    Ok(order)
}
