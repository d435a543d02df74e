//! Shape inference over a whole graph, after its input facts changed (shape
//! pinning substitutes symbols, then every node's facts are recomputed).

use std::collections::HashMap;

use super::{InferInput, SymInt, infer_op};
use crate::ir::error::{Error, Result};
use crate::ir::graph::{Fact, Graph, ValueId};
use crate::ir::shape::{Dim, Shape};
use crate::ir::tensor::Tensor;

/// Weights up to this many elements are read as constants (as at import).
const MAX_CONSTANT_ELEMENTS: u64 = 4096;

/// Recomputes the facts of every node output in topological order from the
/// facts of the graph inputs and weights. What inference cannot determine (a
/// fresh symbol where the old fact had a dim, an unranked shape, an unknown
/// dtype) keeps its old value, so facts only ever get more precise; the
/// quantization parameters of a value are kept. Fails, naming the node, when
/// the inputs contradict an op (for example a pinned dim that cannot broadcast).
pub fn infer_graph(g: &mut Graph) -> Result<()> {
    let symbols_before = g.symbols.len();
    let mut syms: HashMap<ValueId, Vec<SymInt>> = HashMap::new();
    for id in g.topo_order()? {
        let node = g.node(id);
        let inputs: Vec<Option<InferInput>> = node
            .inputs
            .iter()
            .map(|v| v.map(|v| infer_input(g, v, &syms)))
            .collect();
        let (op, outputs, name) = (node.op.clone(), node.outputs.clone(), node.name.clone());
        let fresh_from = g.symbols.len();
        let inferred = infer_op(&op, &inputs, outputs.len(), &mut g.symbols)
            .map_err(|msg| Error::node(&name, op.name(), msg))?;
        for (&out, new) in outputs.iter().zip(inferred) {
            let old = &g.value(out).fact;
            let fact = merge(old, new.fact, fresh_from);
            g.value_mut(out).fact = fact;
            if let Some(s) = new.sym {
                syms.insert(out, s);
            }
        }
    }
    drop_unused_symbols(g, symbols_before);
    Ok(())
}

fn infer_input(g: &Graph, v: ValueId, syms: &HashMap<ValueId, Vec<SymInt>>) -> InferInput {
    if let Some(w) = g.weight_of(v) {
        if w.element_count() <= MAX_CONSTANT_ELEMENTS {
            if let Ok(t) = Tensor::from_bytes(w.dtype, &w.shape, &w.data) {
                return InferInput::constant(t);
            }
        }
    }
    InferInput {
        fact: g.fact(v).clone(),
        value: None,
        sym: syms.get(&v).cloned(),
    }
}

/// The new fact, with what it leaves undetermined (symbols numbered from
/// `fresh_from` on, unranked, unknown dtype) taken from the old one.
fn merge(old: &Fact, new: Fact, fresh_from: usize) -> Fact {
    let is_fresh = |d: &Dim| d.symbols().iter().any(|s| s.index() >= fresh_from);
    let shape = match (&old.shape, new.shape) {
        (old_shape, Shape::Unranked) => old_shape.clone(),
        (Shape::Ranked(o), Shape::Ranked(n)) if o.len() == n.len() => Shape::Ranked(
            o.iter()
                .zip(n)
                .map(|(o, n)| if is_fresh(&n) { o.clone() } else { n })
                .collect(),
        ),
        (_, new_shape) => new_shape,
    };
    Fact {
        dtype: new.dtype.or(old.dtype),
        shape,
        quant: old.quant.clone(),
    }
}

/// Inference makes fresh symbols for what it cannot tell; when none of them
/// survived the merge, the symbol table is put back as it was.
fn drop_unused_symbols(g: &mut Graph, before: usize) {
    if g.symbols.len() == before {
        return;
    }
    let uses_new = g
        .values()
        .filter_map(|(_, v)| v.fact.shape.dims())
        .flatten()
        .any(|d| d.symbols().iter().any(|s| s.index() >= before));
    if !uses_new {
        let mut kept = crate::ir::shape::Symbols::default();
        for (_, name) in g.symbols.iter().take(before) {
            kept.intern(name);
        }
        g.symbols = kept;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ir::text::{PrintOptions, parse, print};

    const DYNAMIC: &str = "graph g {
  input x: f32[N,3]
  weight zero: i64[] = [0]
  weight minus_one: i64[1] = [-1]
  weight axes: i64[1] = [0]
  node shape: s: i64[2] = Shape {\"start\":0,\"end\":null} (x)
  node gather: b: i64[] = Gather {\"axis\":0} (s, zero)
  node unsqueeze: b1: i64[1] = Unsqueeze (b, axes)
  node concat: target: i64[2] = Concat {\"axis\":0} (b1, minus_one)
  node reshape: y: f32[N,3] = Reshape {\"allowzero\":false} (x, target)
  node custom: z: f32[N,7] = Custom {\"domain\":\"x\",\"name\":\"Frobnicate\",\"attrs\":{}} (y)
  output y, z
}
";

    fn pin(g: &mut Graph, symbol: &str, value: u64) {
        let values = BTreeMap::from([(g.symbols.get(symbol).unwrap(), value)]);
        for i in 0..g.value_count() {
            let v = g.value_mut(ValueId(i as u32));
            v.fact.shape = v.fact.shape.substitute(&values);
        }
    }

    #[test]
    fn pinned_symbols_propagate_and_undetermined_facts_are_kept() {
        let mut g = parse(DYNAMIC).unwrap();
        let symbols = g.symbols.len();
        pin(&mut g, "N", 4);
        infer_graph(&mut g).unwrap();
        let text = print(&g, &PrintOptions::default());
        assert!(text.contains("y: f32[4,3] = Reshape"), "{text}");
        assert!(
            text.contains("z: f32[4,7] = Custom"),
            "custom ops keep their facts: {text}"
        );
        assert_eq!(g.symbols.len(), symbols, "no leftover fresh symbols");
    }

    #[test]
    fn a_pin_that_contradicts_an_op_names_the_node() {
        let mut g = parse(
            "graph g {
  input a: f32[N]
  input b: f32[3]
  node add: c: f32[N] = Add (a, b)
  output c
}
",
        )
        .unwrap();
        pin(&mut g, "N", 2);
        let err = infer_graph(&mut g).unwrap_err().to_string();
        assert!(err.starts_with("node 'add' (Add)"), "{err}");
    }
}
