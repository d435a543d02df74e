//! Measuring a quantized build, and `--min-sqnr`: keeping the most
//! damaging int8 nodes in float until the outputs meet the budget.

use std::collections::HashMap;

use super::accuracy::{Budget, Evaluation, evaluate};
use super::simulate::simulate;
use crate::calibration::data::Dataset;
use crate::formats::tflite::target::{Quantization, TfliteTarget};
use crate::ir::error::{Error, Result};
use crate::ir::{Graph, ValueId};
use crate::progress::Progress;

/// Builds `target`'s int8 model of `g` and measures its simulation on `data`.
pub fn measure(
    target: &TfliteTarget,
    g: &Graph,
    data: &Dataset,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    let built = target.build(g)?;
    let summary = built
        .int8
        .ok_or_else(|| Error::Graph("measuring a model that is not full-integer".into()))?;
    let sim = simulate(built.graph.as_ref().unwrap_or(g), &summary)?;
    let int8: std::collections::HashSet<String> = summary
        .int8_nodes
        .iter()
        .map(|&id| g.node(id).name.clone())
        .collect();
    evaluate(g, &sim, &|name| int8.contains(name), data, progress)
}

/// Moves int8 nodes of `target` to float, the one whose output loses the
/// most SQNR relative to its inputs first, until every output of the
/// simulation reaches `min_sqnr_db` on `data` or no int8 node is left.
/// Returns the final evaluation and what it took; `target` keeps the
/// nodes in float.
pub fn meet_budget(
    target: &mut TfliteTarget,
    g: &Graph,
    data: &Dataset,
    min_sqnr_db: f64,
    progress: &dyn Progress,
) -> Result<(Evaluation, Budget)> {
    let mut kept = Vec::new();
    loop {
        let evaluation = measure(target, g, data, progress)?;
        if evaluation.min_output_sqnr() >= min_sqnr_db {
            return Ok((
                evaluation,
                Budget {
                    min_sqnr_db,
                    met: true,
                    kept_float: kept,
                },
            ));
        }
        let Some(worst) = most_damaging(g, &evaluation) else {
            return Ok((
                evaluation,
                Budget {
                    min_sqnr_db,
                    met: false,
                    kept_float: kept,
                },
            ));
        };
        if let Quantization::Int8 { options, .. } = &mut target.quant {
            options.keep_float.patterns.push(glob_literal(&worst));
        }
        kept.push(worst);
    }
}

/// The int8 node whose output SQNR falls furthest below its inputs'.
fn most_damaging(g: &Graph, evaluation: &Evaluation) -> Option<String> {
    // Exact values (no figure) count as this many dB.
    const EXACT: f64 = 200.0;
    let by_output: HashMap<&str, f64> = evaluation
        .layers
        .iter()
        .map(|l| (l.output.as_str(), l.sqnr_db.unwrap_or(EXACT)))
        .collect();
    let sqnr_of = |v: ValueId| {
        by_output
            .get(g.value(v).name.as_str())
            .copied()
            .unwrap_or(EXACT)
    };
    let nodes: HashMap<&str, &crate::ir::Node> =
        g.nodes().map(|(_, n)| (n.name.as_str(), n)).collect();
    evaluation
        .layers
        .iter()
        .filter(|l| l.int8)
        .filter_map(|l| {
            let node = nodes.get(l.node.as_str())?;
            let input = node
                .inputs
                .iter()
                .flatten()
                .filter(|&&v| g.weight_of(v).is_none())
                .map(|&v| sqnr_of(v))
                .fold(EXACT, f64::min);
            Some((input - l.sqnr_db.unwrap_or(EXACT), l.node.clone()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
        .map(|(_, name)| name)
}

/// A glob matching exactly `name`.
fn glob_literal(name: &str) -> String {
    name.chars()
        .map(|c| if c == '*' || c == '?' { '?' } else { c })
        .collect()
}
