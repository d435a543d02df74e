//! The graph: nodes, values, inputs and outputs, weights, symbols, metadata.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::dtype::DType;
use super::error::{Error, Result};
use super::ops::Op;
use super::shape::{Shape, Symbols};
use super::weights::{Weight, WeightStore};

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}

id_type!(
    /// A node in [`Graph`]'s node arena.
    NodeId,
    /// A value (graph input, weight, or node output).
    ValueId,
    /// A weight in the [`WeightStore`].
    WeightId,
    /// A symbolic dimension in [`Symbols`].
    SymId
);

/// Affine quantization of a value: `real = scale * (q - zero_point)`.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantParams {
    PerTensor {
        scale: f32,
        zero_point: i32,
    },
    /// One scale (and zero point) per index of `axis`, stored as weights.
    PerAxis {
        axis: usize,
        scales: WeightId,
        zero_points: Option<WeightId>,
    },
}

/// What is known about a value before running the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    /// `None` when unknown (outputs of custom ops without shape information).
    pub dtype: Option<DType>,
    pub shape: Shape,
    pub quant: Option<QuantParams>,
}

impl Fact {
    pub fn new(dtype: DType, shape: Shape) -> Fact {
        Fact {
            dtype: Some(dtype),
            shape,
            quant: None,
        }
    }

    pub fn unknown() -> Fact {
        Fact {
            dtype: None,
            shape: Shape::Unranked,
            quant: None,
        }
    }
}

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    /// The i-th graph input.
    Input(usize),
    Weight(WeightId),
    /// Output `slot` of a node.
    Node {
        node: NodeId,
        slot: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub fact: Fact,
    pub def: ValueDef,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// Positional inputs; `None` for an absent optional input.
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
}

impl Node {
    /// The i-th input if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// Hugging Face files carried alongside a checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HfFiles {
    pub config: Option<serde_json::Value>,
    pub tokenizer: Option<serde_json::Value>,
    pub tokenizer_config: Option<serde_json::Value>,
    pub generation_config: Option<serde_json::Value>,
}

/// Source facts that later writers need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    /// `onnx`, `safetensors`, `ir-text`, ...
    pub source_format: String,
    pub producer: Option<String>,
    pub ir_version: Option<i64>,
    /// Operator set version per domain ("" is the default ONNX domain).
    pub opsets: BTreeMap<String, i64>,
    /// Model architecture (`llama`, `qwen2`, `bert`, ...) for checkpoints.
    pub architecture: Option<String>,
    pub hf: HfFiles,
    /// Free-form key/values (ONNX `metadata_props`, doc strings).
    pub props: BTreeMap<String, String>,
    /// Typed key/values in source order (a GGUF file's metadata).
    pub kv: Vec<(String, crate::ir::meta::MetaValue)>,
}

/// A model: a dataflow graph over values, plus weights and metadata.
///
/// Node ids stay valid when other nodes are removed (the arena keeps a hole);
/// use [`Graph::topo_order`] for execution order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    nodes: Vec<Option<Node>>,
    values: Vec<Value>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub weights: WeightStore,
    pub symbols: Symbols,
    pub metadata: Metadata,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    fn push_value(&mut self, name: String, fact: Fact, def: ValueDef) -> ValueId {
        self.values.push(Value { name, fact, def });
        ValueId((self.values.len() - 1) as u32)
    }

    pub fn add_input(&mut self, name: impl Into<String>, fact: Fact) -> ValueId {
        let index = self.inputs.len();
        let id = self.push_value(name.into(), fact, ValueDef::Input(index));
        self.inputs.push(id);
        id
    }

    /// Adds a weight and the value that reads it.
    pub fn add_weight(&mut self, weight: Weight) -> ValueId {
        let fact = Fact::new(weight.dtype, Shape::fixed(&weight.shape));
        let name = weight.name.clone();
        let wid = self.weights.add(weight);
        self.push_value(name, fact, ValueDef::Weight(wid))
    }

    /// Adds a node with one output value per entry of `outputs` (name, fact).
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<(String, Fact)>,
    ) -> (NodeId, Vec<ValueId>) {
        let node = NodeId(self.nodes.len() as u32);
        let outs: Vec<ValueId> = outputs
            .into_iter()
            .enumerate()
            .map(|(slot, (n, f))| self.push_value(n, f, ValueDef::Node { node, slot }))
            .collect();
        self.nodes.push(Some(Node {
            name: name.into(),
            op,
            inputs,
            outputs: outs.clone(),
        }));
        (node, outs)
    }

    /// Removes a node; its output values stay in the arena, defined by nothing
    /// live, and the verifier rejects any remaining use of them.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.nodes.get_mut(id.index()).and_then(Option::take)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.index()]
            .as_ref()
            .expect("node id refers to a removed node")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.index()]
            .as_mut()
            .expect("node id refers to a removed node")
    }

    pub fn try_node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index()).and_then(Option::as_ref)
    }

    /// Live nodes in arena order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId(i as u32), n)))
    }

    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_some()).count()
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (ValueId(i as u32), v))
    }

    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    pub fn fact(&self, id: ValueId) -> &Fact {
        &self.values[id.index()].fact
    }

    /// The weight behind a value, if the value is a constant.
    pub fn weight_of(&self, id: ValueId) -> Option<&Weight> {
        match self.values[id.index()].def {
            ValueDef::Weight(w) => Some(self.weights.get(w)),
            _ => None,
        }
    }

    /// The node producing a value, if any.
    pub fn producer(&self, id: ValueId) -> Option<NodeId> {
        match self.values[id.index()].def {
            ValueDef::Node { node, .. } => Some(node),
            _ => None,
        }
    }

    /// For each value, the live nodes that read it (each node once per input slot).
    pub fn consumers(&self) -> HashMap<ValueId, Vec<NodeId>> {
        let mut map: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for (id, node) in self.nodes() {
            for v in node.inputs.iter().flatten() {
                map.entry(*v).or_default().push(id);
            }
        }
        map
    }

    /// Live nodes in an order where every node comes after the producers of its
    /// inputs (stable: arena order among ready nodes). Fails on a cycle or on a
    /// use of a value whose producer was removed.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let mut pending: Vec<usize> = vec![0; self.nodes.len()];
        let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); self.nodes.len()];
        for (id, node) in self.nodes() {
            for v in node.inputs.iter().flatten() {
                let value = self.values.get(v.index()).ok_or_else(|| {
                    Error::node(
                        &node.name,
                        node.op.name(),
                        format!("input {v:?} does not exist"),
                    )
                })?;
                if let ValueDef::Node { node: p, .. } = value.def {
                    if self.try_node(p).is_none() {
                        return Err(Error::node(
                            &node.name,
                            node.op.name(),
                            format!("input '{}' is produced by a removed node", value.name),
                        ));
                    }
                    pending[id.index()] += 1;
                    users[p.index()].push(id);
                }
            }
        }
        let mut ready: std::collections::BTreeSet<NodeId> = self
            .nodes()
            .filter(|(id, _)| pending[id.index()] == 0)
            .map(|(id, _)| id)
            .collect();
        let mut order = Vec::with_capacity(self.node_count());
        while let Some(id) = ready.pop_first() {
            order.push(id);
            for &u in &users[id.index()] {
                pending[u.index()] -= 1;
                if pending[u.index()] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != self.node_count() {
            let stuck: Vec<&str> = self
                .nodes()
                .filter(|(id, _)| pending[id.index()] > 0)
                .map(|(_, n)| n.name.as_str())
                .take(5)
                .collect();
            return Err(Error::Graph(format!(
                "the graph has a cycle through nodes {}",
                stuck.join(", ")
            )));
        }
        Ok(order)
    }

    /// Rebuilds the arenas with only what the graph still uses: nodes that are
    /// live, in topological order; values that are inputs, outputs, or read or
    /// produced by live nodes; weights behind those values or named by their
    /// quantization parameters. Ids change; names do not.
    pub fn compact(&mut self) -> Result<()> {
        let order = self.topo_order()?;
        let live = super::verify::live_values(self);
        let mut weight_map: HashMap<WeightId, WeightId> = HashMap::new();
        let mut weights = WeightStore::default();
        let mut keep_weight = |w: WeightId, weights: &mut WeightStore| -> WeightId {
            *weight_map
                .entry(w)
                .or_insert_with(|| weights.add(self.weights.get(w).clone()))
        };
        let mut value_map: HashMap<ValueId, ValueId> = HashMap::new();
        let mut values: Vec<Value> = Vec::new();
        let mut push = |old: ValueId, def: ValueDef, values: &mut Vec<Value>| {
            let mut v = self.values[old.index()].clone();
            v.def = def;
            values.push(v);
            value_map.insert(old, ValueId((values.len() - 1) as u32));
        };
        for (i, &v) in self.inputs.iter().enumerate() {
            push(v, ValueDef::Input(i), &mut values);
        }
        for &v in &live {
            if let ValueDef::Weight(w) = self.values[v.index()].def {
                let w = keep_weight(w, &mut weights);
                push(v, ValueDef::Weight(w), &mut values);
            }
        }
        let mut nodes = Vec::with_capacity(order.len());
        for (new_id, &id) in order.iter().enumerate() {
            let node = self.nodes[id.index()]
                .take()
                .expect("topo_order lists live nodes");
            for (slot, &v) in node.outputs.iter().enumerate() {
                let def = ValueDef::Node {
                    node: NodeId(new_id as u32),
                    slot,
                };
                push(v, def, &mut values);
            }
            nodes.push(node);
        }
        for value in &mut values {
            if let Some(QuantParams::PerAxis {
                scales,
                zero_points,
                ..
            }) = &mut value.fact.quant
            {
                *scales = keep_weight(*scales, &mut weights);
                if let Some(z) = zero_points {
                    *z = keep_weight(*z, &mut weights);
                }
            }
        }
        let map = |v: &ValueId| value_map[v];
        for node in &mut nodes {
            for input in node.inputs.iter_mut().flatten() {
                *input = map(input);
            }
            node.outputs = node.outputs.iter().map(map).collect();
        }
        self.inputs = self.inputs.iter().map(map).collect();
        self.outputs = self.outputs.iter().map(map).collect();
        self.nodes = nodes.into_iter().map(Some).collect();
        self.values = values;
        self.weights = weights;
        Ok(())
    }

    /// Total parameter count (elements of all weights).
    pub fn param_count(&self) -> u64 {
        self.weights.iter().map(|(_, w)| w.element_count()).sum()
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::text::print(
            self,
            &super::text::PrintOptions::default(),
        ))
    }
}
