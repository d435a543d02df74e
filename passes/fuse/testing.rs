//! Test helpers: run one pass on a graph stated as IR text, and check with the
//! interpreter that the outputs did not change.

use ndarray::{ArrayD, IxDyn};

use crate::ir::compare::compare;
use crate::ir::eval::run;
use crate::ir::text::parse;
use crate::ir::{DType, Dim, Graph, Tensor};
use crate::passes::manager::{Pass, Repeat, RunOptions, Stage, run_stages};

/// Every symbolic input dim takes this size.
const SYMBOL_SIZE: usize = 3;

/// The graph before and after the pass (run once, verified), and the rules it applied.
pub fn run_pass(text: &str, pass: impl Pass + 'static) -> (Graph, Graph, Vec<String>) {
    let before = parse(text).unwrap();
    let mut after = before.clone();
    let stage = Stage {
        name: "test",
        passes: vec![Box::new(pass)],
        repeat: Repeat::Once,
    };
    let opts = RunOptions {
        verify_each: true,
        print_after: None,
    };
    let report = run_stages(&mut after, &[stage], &opts).unwrap();
    let rules = report.rewrites.iter().map(|r| r.rule.clone()).collect();
    (before, after, rules)
}

/// The op kinds of the live nodes, in topological order.
pub fn kinds(g: &Graph) -> Vec<&'static str> {
    g.topo_order()
        .unwrap()
        .into_iter()
        .map(|id| g.node(id).op.kind().name())
        .collect()
}

/// Deterministic inputs for the graph: floats spread over [-3, 3], small
/// integers, alternating bools; symbolic dims take [`SYMBOL_SIZE`].
pub fn sample_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / f64::from(1u32 << 31)
    };
    g.inputs
        .iter()
        .map(|&v| {
            let fact = g.fact(v);
            let shape: Vec<usize> = fact
                .shape
                .dims()
                .unwrap()
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n as usize,
                    _ => SYMBOL_SIZE,
                })
                .collect();
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n).map(|_| next() * 6.0 - 3.0).collect();
            let t = Tensor::F64(ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap());
            match fact.dtype.unwrap() {
                DType::Bool => Tensor::Bool(t.to_f32().mapv(|v| v > 0.0)),
                d if d.is_integer() => Tensor::F64(t.to_f32().mapv(|v| f64::from(v.abs().floor())))
                    .cast(d)
                    .unwrap(),
                d => t.cast(d).unwrap(),
            }
        })
        .collect()
}

/// Both graphs give the same outputs (within 1e-5 relative) on a few inputs.
pub fn assert_same_outputs(before: &Graph, after: &Graph) {
    for seed in 0..3 {
        let inputs = sample_inputs(before, seed);
        let want = run(before, inputs.clone()).unwrap();
        let got = run(after, inputs).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let agreement = compare(g, w).unwrap();
            assert!(agreement.within(1e-5), "output {i} differs: {agreement:?}");
        }
    }
}
