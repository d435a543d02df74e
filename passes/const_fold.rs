//! Constant folding.

use bytes::Bytes;

use crate::ir::error::Result;
use crate::ir::eval::eval_op;
use crate::ir::patch::Patch;
use crate::ir::tensor::Tensor;
use crate::ir::{Graph, Node, Op, ValueId, Weight};

use super::manager::{Changed, Pass, PassCx};

/// Folded outputs may always be this large; beyond it only as large as the
/// node's constant inputs, so folding never inflates the model.
const ALWAYS_FOLDABLE_BYTES: u64 = 1 << 20;

/// Integer weights with more elements than this are quantized weights: casting
/// or dequantizing them is a pattern to keep, not a constant to expand.
const MAX_FOLDED_INTEGER_WEIGHT: u64 = 64;

/// Replaces nodes whose inputs are all constants with the constants they
/// compute (by the reference interpreter), and `Shape`/`Size` of values with
/// static shapes with their values. Once a shape subgraph's inputs are static
/// (after shape pinning) the whole Shape/Gather/Concat/Reshape/Range/Expand
/// chain folds away. Never folds custom ops, outputs larger than both
/// [`ALWAYS_FOLDABLE_BYTES`] and the node's inputs, outputs whose dtype or shape
/// would differ from the node's facts, or the dequantization of a quantized weight.
pub struct ConstantFolding;

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "const_fold"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let mut changed = false;
        for id in g.topo_order()? {
            let node = g.node(id);
            let Some(values) = fold(g, node) else {
                continue;
            };
            let outputs = node.outputs.clone();
            let mut p = Patch::new(if matches!(node.op, Op::Shape(_) | Op::Size) {
                "fold_static_shape"
            } else {
                "fold_constant"
            });
            for (&out, t) in outputs.iter().zip(values) {
                let w = Weight::new(
                    g.value(out).name.clone(),
                    t.dtype(),
                    t.shape().to_vec(),
                    Bytes::from(t.to_bytes()),
                )?;
                let folded = p.add_weight(w);
                p.redirect(out, folded);
            }
            p.remove_node(id);
            cx.record(p.apply(g)?);
            changed = true;
        }
        Ok(Changed::from_bool(changed))
    }
}

/// The node's output values if it can be folded.
fn fold(g: &Graph, node: &Node) -> Option<Vec<Tensor>> {
    if matches!(node.op, Op::Custom(_)) || keeps_quantized_weight(g, node) {
        return None;
    }
    let values = match static_shape_query(g, node) {
        Some(v) => vec![v],
        None => {
            let inputs: Vec<Option<Tensor>> = node
                .inputs
                .iter()
                .map(|i| match i {
                    None => Some(None),
                    Some(v) => constant(g, *v).map(Some),
                })
                .collect::<Option<_>>()?;
            let input_bytes: u64 = inputs
                .iter()
                .flatten()
                .map(|t| t.to_bytes().len() as u64)
                .sum();
            let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
            let values = eval_op(&node.op, &refs).ok()?;
            let output_bytes: u64 = values.iter().map(byte_size).sum();
            if output_bytes > ALWAYS_FOLDABLE_BYTES.max(input_bytes) {
                return None;
            }
            values
        }
    };
    let matches_facts = values.len() == node.outputs.len()
        && node.outputs.iter().zip(&values).all(|(&v, t)| {
            let fact = g.fact(v);
            fact.dtype.is_none_or(|d| d == t.dtype())
                && fact.shape.as_fixed().is_none_or(|s| s == t.shape())
        });
    matches_facts.then_some(values)
}

fn byte_size(t: &Tensor) -> u64 {
    t.len() as u64 * t.dtype().size_of().unwrap_or(1) as u64
}

/// The value of a weight, when it is one.
fn constant(g: &Graph, v: ValueId) -> Option<Tensor> {
    let w = g.weight_of(v)?;
    Tensor::from_bytes(w.dtype, &w.shape, &w.data).ok()
}

/// `Shape(x)` or `Size(x)` when `x`'s shape is static.
fn static_shape_query(g: &Graph, node: &Node) -> Option<Tensor> {
    let dims = g.fact(node.input(0)?).shape.as_fixed()?;
    match &node.op {
        Op::Shape(attrs) => {
            let rank = dims.len() as i64;
            let clamp = |i: i64| (if i < 0 { i + rank } else { i }).clamp(0, rank) as usize;
            let start = clamp(attrs.start);
            let end = clamp(attrs.end.unwrap_or(rank)).max(start);
            let values: Vec<i64> = dims[start..end].iter().map(|&d| d as i64).collect();
            Tensor::from_i64(&[values.len()], values).ok()
        }
        Op::Size => Some(Tensor::scalar_i64(dims.iter().product::<usize>() as i64)),
        _ => None,
    }
}

/// Whether the node turns a large integer weight into floats (Cast or
/// DequantizeLinear): the int8-weight pattern later passes recognise.
fn keeps_quantized_weight(g: &Graph, node: &Node) -> bool {
    let large_integer_weight = node
        .input(0)
        .and_then(|v| g.weight_of(v))
        .is_some_and(|w| w.dtype.is_integer() && w.element_count() > MAX_FOLDED_INTEGER_WEIGHT);
    large_integer_weight && matches!(node.op, Op::Cast(_) | Op::DequantizeLinear(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::compare::compare;
    use crate::ir::eval::run;
    use crate::ir::text::{PrintOptions, parse, print};
    use crate::passes::dce::DeadCodeElimination;
    use crate::passes::manager::{Repeat, RunOptions, Stage, run_stages};
    use ndarray::{ArrayD, IxDyn};

    fn fold_and_clean(g: &mut Graph) -> Vec<String> {
        let stage = Stage {
            name: "fold",
            passes: vec![Box::new(ConstantFolding), Box::new(DeadCodeElimination)],
            repeat: Repeat::Fixpoint { cap: 8 },
        };
        let report = run_stages(g, &[stage], &RunOptions::default()).unwrap();
        report.rewrites.iter().map(|r| r.rule.clone()).collect()
    }

    #[test]
    fn a_static_shape_subgraph_folds_and_keeps_the_numbers() {
        let text = "graph g {
  input x: f32[2,3,4]
  weight zero: i64[] = [0]
  weight minus_one: i64[1] = [-1]
  weight axes: i64[1] = [0]
  node shape: s: i64[3] = Shape {\"start\":0,\"end\":null} (x)
  node gather: b: i64[] = Gather {\"axis\":0} (s, zero)
  node unsqueeze: b1: i64[1] = Unsqueeze (b, axes)
  node concat: target: i64[2] = Concat {\"axis\":0} (b1, minus_one)
  node reshape: y: f32[2,12] = Reshape {\"allowzero\":false} (x, target)
  output y
}
";
        let original = parse(text).unwrap();
        let mut g = original.clone();
        let rules = fold_and_clean(&mut g);
        assert!(
            rules.contains(&"fold_static_shape".to_string()),
            "{rules:?}"
        );
        assert_eq!(g.node_count(), 1);
        let printed = print(&g, &PrintOptions::default());
        assert!(
            printed.contains("weight target: i64[2] = [2,-1]"),
            "{printed}"
        );

        let x = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
            (i[0] * 12 + i[1] * 4 + i[2]) as f32
        }));
        let before = run(&original, vec![x.clone()]).unwrap();
        let after = run(&g, vec![x]).unwrap();
        assert!(compare(&after[0], &before[0]).unwrap().within(0.0));
    }

    #[test]
    fn constant_arithmetic_folds_to_its_value() {
        let mut g = parse(
            "graph g {
  input x: f32[2]
  weight a: f32[2] = [1,2]
  weight b: f32[2] = [10,20]
  node add: c: f32[2] = Add (a, b)
  node mul: y: f32[2] = Mul (x, c)
  output y
}
",
        )
        .unwrap();
        fold_and_clean(&mut g);
        assert!(print(&g, &PrintOptions::default()).contains("weight c: f32[2] = [11,22]"));
    }

    #[test]
    fn quantized_weights_and_large_outputs_are_kept() {
        let int8: Vec<String> = (0..100).map(|i| (i % 7 - 3).to_string()).collect();
        let text = format!(
            "graph g {{
  input x: f32[100]
  weight q: i8[100] = [{}]
  weight scale: f32[] = [0.5]
  weight big_shape: i64[2] = [1000,1000]
  node cast: qf: f32[100] = Cast {{\"to\":\"f32\",\"saturate\":true}} (q)
  node deq: w: f32[100] = Mul (qf, scale)
  node fill: big: f32[1000,1000] = ConstantOfShape {{\"dtype\":\"f32\",\"value\":{{\"Float\":1.0}}}} (big_shape)
  node use: y: f32[100] = Mul (x, w)
  output y, big
}}
",
            int8.join(",")
        );
        let mut g = parse(&text).unwrap();
        let rules = fold_and_clean(&mut g);
        assert!(rules.is_empty(), "{rules:?}");
        assert_eq!(g.node_count(), 4);
    }
}
