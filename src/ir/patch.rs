//! Graph surgery through patches: a rewrite describes what it adds, which uses
//! it redirects and which nodes it removes, and [`Patch::apply`] performs it in
//! one step. Passes never walk and mutate the graph ad hoc.
//!
//! ```text
//! let mut p = Patch::new("fold_batchnorm");
//! let w = p.add_weight(folded_weight);
//! let y = p.add_node("conv_bn", Op::Conv(attrs), vec![Some(p.tap(x)), Some(w), Some(b)], vec![fact])[0];
//! p.redirect(bn_output, y);
//! p.remove_node(conv);
//! p.remove_node(bn);
//! p.apply(&mut g)?;
//! ```

use super::error::{Error, Result};
use super::graph::{Fact, Graph, NodeId, QuantParams, ValueDef, ValueId, WeightId};
use super::ops::Op;
use super::weights::Weight;

/// A value a patch refers to: one already in the graph, or one the patch adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchValue {
    Existing(ValueId),
    /// The i-th value the patch adds (node outputs and weights, in order).
    New(usize),
}

/// Quantization parameters to set on a value; per-axis scales and zero
/// points may be weights the same patch adds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PatchQuant {
    PerTensor {
        scale: f32,
        zero_point: i32,
    },
    PerAxis {
        axis: usize,
        scales: PatchValue,
        zero_points: Option<PatchValue>,
    },
}

struct NewNode {
    name: String,
    op: Op,
    inputs: Vec<Option<PatchValue>>,
    outputs: Vec<(String, Fact)>,
    /// Indices of the node's outputs among the patch's new values.
    output_values: Vec<usize>,
}

/// What one applied patch did, for `--explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub rule: String,
    /// Names of the nodes the rule matched (and removed or replaced).
    pub matched: Vec<String>,
    /// Names of the nodes it added.
    pub produced: Vec<String>,
}

/// A set of changes to a graph, applied at once.
pub struct Patch {
    rule: String,
    /// One entry per new value: the weight, or `None` for a node output.
    values: Vec<Option<Weight>>,
    nodes: Vec<NewNode>,
    redirects: Vec<(ValueId, PatchValue)>,
    removals: Vec<NodeId>,
    quants: Vec<(PatchValue, PatchQuant)>,
}

impl Patch {
    /// A patch made by the named rule; the name appears in errors and `--explain`.
    pub fn new(rule: impl Into<String>) -> Patch {
        Patch {
            rule: rule.into(),
            values: Vec::new(),
            nodes: Vec::new(),
            redirects: Vec::new(),
            removals: Vec::new(),
            quants: Vec::new(),
        }
    }

    /// Refers to a value already in the graph.
    pub fn tap(&self, v: ValueId) -> PatchValue {
        PatchValue::Existing(v)
    }

    pub fn add_weight(&mut self, w: Weight) -> PatchValue {
        self.values.push(Some(w));
        PatchValue::New(self.values.len() - 1)
    }

    /// Adds a node; returns its outputs.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<PatchValue>>,
        outputs: Vec<(String, Fact)>,
    ) -> Vec<PatchValue> {
        let output_values: Vec<usize> = (0..outputs.len())
            .map(|_| {
                self.values.push(None);
                self.values.len() - 1
            })
            .collect();
        let outs = output_values.iter().map(|&i| PatchValue::New(i)).collect();
        self.nodes.push(NewNode {
            name: name.into(),
            op,
            inputs,
            outputs,
            output_values,
        });
        outs
    }

    /// Every use of `old` (node inputs and graph outputs) reads `new` instead.
    pub fn redirect(&mut self, old: ValueId, new: PatchValue) {
        self.redirects.push((old, new));
    }

    pub fn remove_node(&mut self, node: NodeId) {
        self.removals.push(node);
    }

    /// Replaces the nodes `removed` (a chain whose last node's outputs are the
    /// chain's results) by one node `name` computing `op` over `inputs`. The
    /// new node's outputs take over the last removed node's outputs, their
    /// facts and (see [`Patch::apply`]) their names. Returns the new outputs.
    pub fn replace(
        &mut self,
        g: &Graph,
        removed: &[NodeId],
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<PatchValue>>,
    ) -> Vec<PatchValue> {
        let last = g.node(
            *removed
                .last()
                .expect("a replacement removes at least one node"),
        );
        let old_outputs = last.outputs.clone();
        let outputs = old_outputs
            .iter()
            .map(|&o| (g.value(o).name.clone(), g.fact(o).clone()))
            .collect();
        let new = self.add_node(name, op, inputs, outputs);
        for (&old, &value) in old_outputs.iter().zip(&new) {
            self.redirect(old, value);
        }
        for &id in removed {
            self.remove_node(id);
        }
        new
    }

    /// Records that `v` holds quantized values (`real = scale * (q - zero_point)`).
    pub fn set_quant(&mut self, v: PatchValue, quant: PatchQuant) {
        self.quants.push((v, quant));
    }

    /// Applies the patch. A value the patch creates takes the name of the value
    /// it replaces, and so does any value that replaces a graph output (the old
    /// value is renamed), so names stay stable and model signatures survive
    /// rewrites. Redirecting a graph output to a graph input
    /// or to another output would change the signature and is refused; rules
    /// check for it before they match.
    pub fn apply(self, g: &mut Graph) -> Result<Rewrite> {
        let fail = |msg: String| Error::Graph(format!("rule {}: {msg}", self.rule));
        let matched: Vec<String> = self
            .removals
            .iter()
            .map(|&n| {
                g.try_node(n)
                    .map(|n| n.name.clone())
                    .ok_or_else(|| fail(format!("node {} is already removed", n.0)))
            })
            .collect::<Result<_>>()?;

        let mut resolved: Vec<Option<ValueId>> = self
            .values
            .into_iter()
            .map(|w| w.map(|w| g.add_weight(w)))
            .collect();
        let resolve = |v: PatchValue, resolved: &[Option<ValueId>], value_count: usize| match v {
            PatchValue::Existing(id) if id.index() < value_count => Ok(id),
            PatchValue::Existing(id) => Err(fail(format!("value {} does not exist", id.0))),
            PatchValue::New(i) => resolved
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| fail(format!("new value {i} is used before its node"))),
        };

        let mut produced = Vec::new();
        for node in self.nodes {
            let inputs = node
                .inputs
                .iter()
                .map(|i| {
                    i.map(|v| resolve(v, &resolved, g.value_count()))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            produced.push(node.name.clone());
            let (_, outs) = g.add_node(node.name, node.op, inputs, node.outputs);
            for (i, out) in node.output_values.into_iter().zip(outs) {
                resolved[i] = Some(out);
            }
        }

        for (old, target) in &self.redirects {
            let new = resolve(*target, &resolved, g.value_count())?;
            let ids: Vec<NodeId> = g.nodes().map(|(id, _)| id).collect();
            for id in ids {
                for input in g.node_mut(id).inputs.iter_mut().flatten() {
                    if input == old {
                        *input = new;
                    }
                }
            }
            let is_output = g.outputs.contains(old);
            if is_output {
                let new_is_signature = matches!(g.value(new).def, super::graph::ValueDef::Input(_))
                    || g.outputs.contains(&new);
                if new_is_signature {
                    return Err(fail(format!(
                        "graph output '{}' cannot become '{}', which is already a graph input or output",
                        g.value(*old).name,
                        g.value(new).name
                    )));
                }
                for out in g.outputs.iter_mut().filter(|o| *o == old) {
                    *out = new;
                }
            }
            if is_output || matches!(target, PatchValue::New(_)) {
                let name = g.value(*old).name.clone();
                g.value_mut(*old).name = format!("{name}.replaced");
                g.value_mut(new).name = name;
            }
        }
        for (v, quant) in &self.quants {
            let v = resolve(*v, &resolved, g.value_count())?;
            let weight_id = |p: PatchValue| -> Result<WeightId> {
                let id = resolve(p, &resolved, g.value_count())?;
                match g.value(id).def {
                    ValueDef::Weight(w) => Ok(w),
                    _ => Err(fail(format!(
                        "quantization parameter '{}' is not a weight",
                        g.value(id).name
                    ))),
                }
            };
            let quant = match *quant {
                PatchQuant::PerTensor { scale, zero_point } => {
                    QuantParams::PerTensor { scale, zero_point }
                }
                PatchQuant::PerAxis {
                    axis,
                    scales,
                    zero_points,
                } => QuantParams::PerAxis {
                    axis,
                    scales: weight_id(scales)?,
                    zero_points: zero_points.map(weight_id).transpose()?,
                },
            };
            g.value_mut(v).fact.quant = Some(quant);
        }
        for n in self.removals {
            g.remove_node(n);
        }
        Ok(Rewrite {
            rule: self.rule,
            matched,
            produced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::{PrintOptions, parse, print};
    use crate::ir::verify::verify;

    const DOUBLE_RELU: &str = "graph g {
  input x: f32[N,4]
  node r1: a: f32[N,4] = Relu (x)
  node r2: y: f32[N,4] = Relu (a)
  node neg: z: f32[N,4] = Neg (a)
  output y, z
}
";

    fn node_named(g: &Graph, name: &str) -> NodeId {
        g.nodes().find(|(_, n)| n.name == name).unwrap().0
    }

    #[test]
    fn redirecting_a_graph_output_keeps_its_name() {
        let mut g = parse(DOUBLE_RELU).unwrap();
        let (r1, r2) = (node_named(&g, "r1"), node_named(&g, "r2"));
        let a = g.node(r1).outputs[0];
        let y = g.node(r2).outputs[0];
        let mut p = Patch::new("idempotent_relu");
        p.redirect(y, p.tap(a));
        p.remove_node(r2);
        let rewrite = p.apply(&mut g).unwrap();
        verify(&g).unwrap();
        assert_eq!(rewrite.matched, vec!["r2"]);
        assert_eq!(g.value(g.outputs[0]).name, "y");
        let text = print(&g, &PrintOptions::default());
        assert!(text.contains("node r1: y: f32[N,4] = Relu (x)"), "{text}");
        assert!(text.contains("= Neg (y)"), "{text}");
    }

    #[test]
    fn new_nodes_and_weights_wire_up() {
        let mut g = parse(DOUBLE_RELU).unwrap();
        let neg = node_named(&g, "neg");
        let z = g.node(neg).outputs[0];
        let a = g.node(neg).input(0).unwrap();
        let mut p = Patch::new("neg_as_mul");
        let minus_one = p.add_weight(
            Weight::new(
                "minus_one",
                crate::ir::DType::F32,
                vec![],
                (-1f32).to_le_bytes().to_vec().into(),
            )
            .unwrap(),
        );
        let fact = g.fact(z).clone();
        let out = p.add_node(
            "mul",
            Op::Mul,
            vec![Some(p.tap(a)), Some(minus_one)],
            vec![("z2".into(), fact)],
        );
        p.redirect(z, out[0]);
        p.remove_node(neg);
        let rewrite = p.apply(&mut g).unwrap();
        verify(&g).unwrap();
        assert_eq!(rewrite.produced, vec!["mul"]);
        assert!(
            print(&g, &PrintOptions::default())
                .contains("node mul: z: f32[N,4] = Mul (a, minus_one)")
        );
    }

    #[test]
    fn a_new_value_takes_the_name_of_the_value_it_replaces() {
        let mut g = parse(DOUBLE_RELU).unwrap();
        let r1 = node_named(&g, "r1");
        let a = g.node(r1).outputs[0];
        let fact = g.fact(a).clone();
        let mut p = Patch::new("relu_as_max");
        let zero = p.add_weight(
            Weight::new(
                "zero",
                crate::ir::DType::F32,
                vec![],
                0f32.to_le_bytes().to_vec().into(),
            )
            .unwrap(),
        );
        let out = p.add_node(
            "max",
            Op::Max,
            vec![Some(p.tap(g.inputs[0])), Some(zero)],
            vec![("tmp".into(), fact)],
        );
        p.redirect(a, out[0]);
        p.remove_node(r1);
        p.apply(&mut g).unwrap();
        verify(&g).unwrap();
        let text = print(&g, &PrintOptions::default());
        assert!(
            text.contains("node max: a: f32[N,4] = Max (x, zero)"),
            "{text}"
        );
        assert!(text.contains("= Relu (a)"), "{text}");
    }

    #[test]
    fn replace_swaps_a_chain_for_one_node_that_keeps_the_last_output() {
        let mut g = parse(
            "graph g {
  input x: f32[2]
  node r: a: f32[2] = Relu (x)
  node n: y: f32[2] = Neg (a)
  output y
}
",
        )
        .unwrap();
        let chain = [node_named(&g, "r"), node_named(&g, "n")];
        let x = g.inputs[0];
        let mut p = Patch::new("one_node");
        let new = p.replace(&g, &chain, "fused", Op::Abs, vec![Some(p.tap(x))]);
        assert_eq!(new.len(), 1);
        let rewrite = p.apply(&mut g).unwrap();
        verify(&g).unwrap();
        assert_eq!(rewrite.matched, ["r", "n"]);
        let text = print(&g, &PrintOptions::default());
        assert!(text.contains("node fused: y: f32[2] = Abs (x)"), "{text}");
        assert_eq!(g.node_count(), 1);
    }

    #[test]
    fn a_graph_output_cannot_become_a_graph_input() {
        let mut g = parse(DOUBLE_RELU).unwrap();
        let r1 = node_named(&g, "r1");
        let (x, y) = (g.inputs[0], g.outputs[0]);
        let mut p = Patch::new("drop_everything");
        p.redirect(y, p.tap(x));
        p.remove_node(r1);
        let err = p.apply(&mut g).unwrap_err().to_string();
        assert!(err.contains("graph output 'y' cannot become 'x'"), "{err}");
    }

    #[test]
    fn quantization_parameters_may_name_weights_the_patch_adds() {
        let mut g = parse(
            "graph g {\n  weight q: i8[2] = [1,-1]\n  node c: y: f32[2] = Cast {\"to\":\"f32\",\"saturate\":true} (q)\n  output y\n}\n",
        )
        .unwrap();
        let q = g.node(node_named(&g, "c")).input(0).unwrap();
        let mut p = Patch::new("annotate");
        let scales = p.add_weight(
            Weight::new(
                "s",
                crate::ir::DType::F32,
                vec![2],
                [0.5f32.to_le_bytes(), 2f32.to_le_bytes()].concat().into(),
            )
            .unwrap(),
        );
        let quant = PatchQuant::PerAxis {
            axis: 0,
            scales,
            zero_points: None,
        };
        p.set_quant(p.tap(q), quant);
        p.apply(&mut g).unwrap();
        assert!(matches!(
            g.fact(q).quant,
            Some(QuantParams::PerAxis { axis: 0, .. })
        ));
        let mut bad = Patch::new("annotate_with_a_node_output");
        let y = g.outputs[0];
        let quant = PatchQuant::PerAxis {
            axis: 0,
            scales: bad.tap(y),
            zero_points: None,
        };
        bad.set_quant(bad.tap(q), quant);
        assert!(bad.apply(&mut g).is_err());
    }

    #[test]
    fn removing_a_used_node_fails_verification() {
        let mut g = parse(DOUBLE_RELU).unwrap();
        let mut p = Patch::new("broken");
        p.remove_node(node_named(&g, "r1"));
        p.apply(&mut g).unwrap();
        assert!(verify(&g).is_err());
    }

    #[test]
    fn using_a_new_value_before_its_node_is_an_error() {
        let mut g = parse(DOUBLE_RELU).unwrap();
        let mut p = Patch::new("out_of_order");
        let fact = g.fact(g.outputs[0]).clone();
        let first = p.add_node(
            "first",
            Op::Relu,
            vec![Some(PatchValue::New(1))],
            vec![("f".into(), fact.clone())],
        );
        p.add_node(
            "second",
            Op::Relu,
            vec![Some(first[0])],
            vec![("s".into(), fact)],
        );
        let err = p.apply(&mut g).unwrap_err().to_string();
        assert!(err.contains("rule out_of_order"), "{err}");
    }
}
