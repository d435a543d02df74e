//! What every fusion rule asks of the graph: who produces a value, who reads
//! it, what a small constant holds; and the loop that applies rules one
//! rewrite at a time.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::ir::error::Result;
use crate::ir::patch::Patch;
use crate::ir::tensor::Tensor;
use crate::ir::{DType, Dim, Graph, Node, NodeId, Op, OpKind, ValueDef, ValueId, Weight};

use crate::passes::manager::{Changed, PassCx};

/// Constants up to this many elements are decoded to check their values.
pub const MAX_INSPECTED_CONSTANT: u64 = 1 << 16;

/// Relative tolerance when a constant must equal a known number (0.5, √2...).
/// Exporters write these in f32, so a stricter check would miss them.
const CONSTANT_TOLERANCE: f64 = 1e-6;

/// A read-only view of the graph with its consumer map.
pub struct Matcher<'g> {
    pub g: &'g Graph,
    consumers: HashMap<ValueId, Vec<NodeId>>,
}

impl<'g> Matcher<'g> {
    pub fn new(g: &'g Graph) -> Matcher<'g> {
        Matcher {
            g,
            consumers: g.consumers(),
        }
    }

    pub fn node(&self, id: NodeId) -> &'g Node {
        self.g.node(id)
    }

    /// The node producing `v` when its op is `kind`.
    pub fn producer(&self, v: ValueId, kind: OpKind) -> Option<(NodeId, &'g Node)> {
        let id = self.g.producer(v)?;
        let node = self.g.node(id);
        (node.op.kind() == kind).then_some((id, node))
    }

    /// The nodes reading `v` (a node reading it twice appears twice).
    pub fn consumers(&self, v: ValueId) -> &[NodeId] {
        self.consumers.get(&v).map_or(&[], Vec::as_slice)
    }

    /// `v` is read by exactly one node input and is not a graph output.
    pub fn single_use(&self, v: ValueId) -> bool {
        self.consumers(v).len() == 1 && !self.g.outputs.contains(&v)
    }

    /// The single node reading `v` when its op is `kind` (see [`Matcher::single_use`]).
    pub fn sole_consumer(&self, v: ValueId, kind: OpKind) -> Option<(NodeId, &'g Node)> {
        if !self.single_use(v) {
            return None;
        }
        let id = self.consumers(v)[0];
        let node = self.g.node(id);
        (node.op.kind() == kind).then_some((id, node))
    }

    /// Every read of `v` is by one of `nodes`, and `v` is not a graph output:
    /// removing `nodes` leaves `v` unused.
    pub fn used_only_by(&self, v: ValueId, nodes: &[NodeId]) -> bool {
        !self.g.outputs.contains(&v) && self.consumers(v).iter().all(|c| nodes.contains(c))
    }

    /// The value of a weight of at most [`MAX_INSPECTED_CONSTANT`] elements.
    pub fn constant(&self, v: ValueId) -> Option<Tensor> {
        let w = self.g.weight_of(v)?;
        if w.element_count() > MAX_INSPECTED_CONSTANT {
            return None;
        }
        Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()
    }

    /// The value of a weight whatever its size (for weights a rule rewrites).
    pub fn weight_value(&self, v: ValueId) -> Option<Tensor> {
        let w = self.g.weight_of(v)?;
        Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()
    }

    /// The number a one-element float constant holds.
    pub fn scalar(&self, v: ValueId) -> Option<f64> {
        let t = self.constant(v)?;
        (t.len() == 1 && t.dtype().is_float()).then(|| t.to_f64_vec()[0])
    }

    /// `v` is a one-element constant equal to `expected` (relatively, within f32 rounding).
    pub fn scalar_is(&self, v: ValueId, expected: f64) -> bool {
        self.scalar(v).is_some_and(|c| close(c, expected))
    }

    /// For a two-input node with one scalar-constant operand: the other operand
    /// and the constant. `Sub`/`Div`/`Pow` only match the constant on the right.
    pub fn with_scalar(&self, node: &Node) -> Option<(ValueId, f64)> {
        let (a, b) = (node.input(0)?, node.input(1)?);
        if let Some(c) = self.scalar(b) {
            return Some((a, c));
        }
        let commutative = matches!(node.op, Op::Add | Op::Mul);
        if commutative {
            return self.scalar(a).map(|c| (b, c));
        }
        None
    }

    /// The operand of a two-input commutative node that is not `x`, if the other is `x`.
    pub fn other_operand(&self, node: &Node, x: ValueId) -> Option<ValueId> {
        match (node.input(0)?, node.input(1)?) {
            (a, b) if a == x => Some(b),
            (a, b) if b == x => Some(a),
            _ => None,
        }
    }

    /// The static dims of `v`'s shape, as fixed numbers or symbols.
    pub fn dims(&self, v: ValueId) -> Option<&'g [Dim]> {
        self.g.fact(v).shape.dims()
    }

    /// `v` is a float value.
    pub fn is_float(&self, v: ValueId) -> bool {
        self.g.fact(v).dtype.is_some_and(DType::is_float)
    }

    /// `v` is a weight, or a `DequantizeLinear` of one: a value known before
    /// the graph runs, which a target stores rather than computes.
    pub fn is_static(&self, v: ValueId) -> bool {
        if matches!(self.g.value(v).def, ValueDef::Weight(_)) {
            return true;
        }
        self.producer(v, OpKind::DequantizeLinear)
            .and_then(|(_, n)| n.input(0))
            .is_some_and(|q| self.g.weight_of(q).is_some())
    }
}

/// `a` equals `b` within [`CONSTANT_TOLERANCE`] relative.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= CONSTANT_TOLERANCE * b.abs().max(f64::MIN_POSITIVE)
}

/// The normalized axes in a constant axes input, sorted.
pub fn constant_axes(m: &Matcher, v: ValueId, rank: usize) -> Option<Vec<usize>> {
    let values = m.constant(v)?.to_i64_vec().ok()?;
    let r = rank as i64;
    let mut axes: Vec<usize> = values
        .iter()
        .map(|&a| if a < 0 { a + r } else { a })
        .map(|a| usize::try_from(a).ok().filter(|&a| a < rank))
        .collect::<Option<_>>()?;
    axes.sort_unstable();
    axes.dedup();
    (axes.len() == values.len()).then_some(axes)
}

/// A weight of `dtype` holding `values` (computed in f64, rounded once).
pub fn weight(name: String, dtype: DType, shape: &[usize], values: Vec<f64>) -> Result<Weight> {
    let t = Tensor::F64(
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values)
            .map_err(|e| crate::ir::Error::Graph(format!("weight {name}: {e}")))?,
    )
    .cast(dtype)?;
    Weight::new(name, dtype, shape.to_vec(), Bytes::from(t.to_bytes()))
}

/// A value or node name not yet used in the graph, built from `base`.
pub fn fresh_name(g: &Graph, base: &str) -> String {
    let taken: HashSet<&str> = g
        .values()
        .map(|(_, v)| v.name.as_str())
        .chain(g.nodes().map(|(_, n)| n.name.as_str()))
        .collect();
    if !taken.contains(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !taken.contains(n.as_str()))
        .expect("some suffix is free")
}

/// A rule: given the graph and a node, a patch rewriting the pattern that
/// ends at that node, or `None` when the node does not end one.
pub type Rule = fn(&Matcher, NodeId) -> Result<Option<Patch>>;

/// Applies `rules` until none matches: each round scans the nodes in
/// topological order, tries the rules in order on each, and applies the
/// first match; the graph changed, so the next round scans it afresh.
/// Rules check structure before they decode weights, so a scan is cheap.
pub fn rewrite_until_stable(g: &mut Graph, cx: &mut PassCx, rules: &[Rule]) -> Result<Changed> {
    let mut changed = false;
    loop {
        let order = g.topo_order()?;
        let found = {
            let m = Matcher::new(g);
            let mut found = None;
            'scan: for &id in &order {
                for rule in rules {
                    if let Some(p) = rule(&m, id)? {
                        found = Some(p);
                        break 'scan;
                    }
                }
            }
            found
        };
        let Some(patch) = found else {
            return Ok(Changed::from_bool(changed));
        };
        cx.record(patch.apply(g)?);
        changed = true;
    }
}

/// Most Mul/Div nodes [`product`] reads through.
const MAX_PRODUCT_NODES: usize = 8;

/// A product `constant · factors[0] · factors[1] ...` read from a tree of
/// `Mul` nodes and `Div`s by constants, through intermediates used only
/// inside the tree.
#[derive(Debug)]
pub struct Product {
    pub constant: f64,
    pub factors: Vec<ValueId>,
    /// The Mul/Div nodes of the tree, root first.
    pub nodes: Vec<NodeId>,
}

/// The product a `Mul` or `Div`-by-constant node computes.
pub fn product(m: &Matcher, root: NodeId) -> Option<Product> {
    let mut p = Product {
        constant: 1.0,
        factors: Vec::new(),
        nodes: Vec::new(),
    };
    collect_product(m, root, &mut p)?;
    Some(p)
}

fn collect_product(m: &Matcher, id: NodeId, p: &mut Product) -> Option<()> {
    if p.nodes.len() >= MAX_PRODUCT_NODES {
        return None;
    }
    p.nodes.push(id);
    let node = m.node(id);
    let operands = match node.op {
        Op::Mul => vec![node.input(0)?, node.input(1)?],
        Op::Div => {
            let divisor = m.scalar(node.input(1)?)?;
            p.constant /= divisor;
            vec![node.input(0)?]
        }
        _ => return None,
    };
    for v in operands {
        if let Some(c) = m.scalar(v) {
            p.constant *= c;
            continue;
        }
        let inner =
            m.g.producer(v)
                .filter(|&n| matches!(m.node(n).op, Op::Mul | Op::Div) && m.single_use(v));
        let folds = inner.is_some_and(|n| {
            m.node(n).op == Op::Mul || m.node(n).input(1).is_some_and(|d| m.scalar(d).is_some())
        });
        match inner {
            Some(n) if folds => collect_product(m, n, p)?,
            _ => p.factors.push(v),
        }
    }
    Some(())
}
