//! Unstructured magnitude pruning.

use std::cmp::Ordering;

use crate::ir::error::{Error, Result};
use crate::ir::patch::Patch;
use crate::ir::{Graph, Op, ValueId};

use super::report::{LayerReport, PruneReport, live_params};
use super::tensor_data::{magnitudes, zero_elements};
use super::{MagnitudeConfig, Scope};

/// Sets the `cfg.sparsity` fraction of smallest-|w| elements of every
/// prunable weight to zero (per layer, or under one global threshold). A
/// prunable weight is the constant weight operand of a Conv, ConvTranspose,
/// Gemm, Linear or MatMul node, in a float dtype, with at least `cfg.min_params`
/// elements. Shapes do not change: the zeros are for targets that store
/// sparse weights. A weight shared by several nodes is pruned once. Ties at
/// the threshold are broken by element order, so exactly
/// `round(sparsity * n)` elements are selected.
pub fn prune_magnitude(g: &mut Graph, cfg: &MagnitudeConfig) -> Result<PruneReport> {
    if !(0.0..=1.0).contains(&cfg.sparsity) {
        return Err(Error::Input(format!(
            "sparsity {} is not between 0 and 1",
            cfg.sparsity
        )));
    }
    let mut report = PruneReport {
        params_before: live_params(g),
        ..PruneReport::default()
    };
    let candidates = weight_operands(g)?;
    let last = candidates.len().saturating_sub(1);
    let mut layers: Vec<(Candidate, Vec<f64>)> = Vec::new();
    for (i, c) in candidates.into_iter().enumerate() {
        let w = g.weight_of(c.value).expect("candidates are weights");
        let skip = if cfg.skip_first_and_last && (i == 0 || i == last) {
            Some("first or last layer".to_string())
        } else if w.element_count() < cfg.min_params {
            Some(format!(
                "{} elements, fewer than {}",
                w.element_count(),
                cfg.min_params
            ))
        } else if g.fact(c.value).quant.is_some() {
            Some("quantized".to_string())
        } else {
            None
        };
        match (skip, magnitudes(w)) {
            (Some(reason), _) => report.skipped_layers.push((w.name.clone(), reason)),
            (None, None) => report
                .skipped_layers
                .push((w.name.clone(), format!("{} is not a float type", w.dtype))),
            (None, Some(m)) => layers.push((c, m)),
        }
    }

    let selections: Vec<Vec<usize>> = match cfg.scope {
        Scope::PerLayer => layers
            .iter()
            .map(|(_, m)| {
                let k = (cfg.sparsity * m.len() as f64).round() as usize;
                smallest(&[m], k).remove(0)
            })
            .collect(),
        Scope::Global => {
            let all: Vec<&Vec<f64>> = layers.iter().map(|(_, m)| m).collect();
            let total: usize = all.iter().map(|m| m.len()).sum();
            smallest(&all, (cfg.sparsity * total as f64).round() as usize)
        }
    };

    for ((c, m), selected) in layers.into_iter().zip(selections) {
        let w = g.weight_of(c.value).expect("candidates are weights");
        let already_zero = m.iter().filter(|&&v| v == 0.0).count();
        let newly_zero = selected.iter().filter(|&&i| m[i] != 0.0).count();
        report.layers.push(LayerReport {
            node: c.nodes.join(","),
            weight: w.name.clone(),
            params_before: m.len() as u64,
            params_after: m.len() as u64,
            zeros: (already_zero + newly_zero) as u64,
        });
        if newly_zero == 0 {
            continue;
        }
        let pruned = zero_elements(w, &selected)?;
        let mut p = Patch::new("prune_magnitude");
        let new = p.add_weight(pruned);
        p.redirect(c.value, new);
        let mut rewrite = p.apply(g)?;
        rewrite.matched = c.nodes;
        report.rewrites.push(rewrite);
    }
    report.params_after = live_params(g);
    Ok(report)
}

/// A weight operand and the nodes reading it.
struct Candidate {
    value: ValueId,
    nodes: Vec<String>,
}

/// The constant weight operands of linear layers, in execution order of first use.
fn weight_operands(g: &Graph) -> Result<Vec<Candidate>> {
    let mut out: Vec<Candidate> = Vec::new();
    for id in g.topo_order()? {
        let node = g.node(id);
        let is_weight = |slot: usize| node.input(slot).filter(|&v| g.weight_of(v).is_some());
        let operand = match node.op {
            Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::Linear(_) => is_weight(1),
            Op::MatMul => is_weight(1).or_else(|| is_weight(0)),
            _ => None,
        };
        let Some(value) = operand else { continue };
        match out.iter_mut().find(|c| c.value == value) {
            Some(c) => c.nodes.push(node.name.clone()),
            None => out.push(Candidate {
                value,
                nodes: vec![node.name.clone()],
            }),
        }
    }
    Ok(out)
}

/// The indices, per layer, of the `k` smallest values over all layers
/// together; ties at the threshold go to the earliest elements.
fn smallest(layers: &[&Vec<f64>], k: usize) -> Vec<Vec<usize>> {
    let mut all: Vec<f64> = layers.iter().flat_map(|m| m.iter().copied()).collect();
    if k == 0 || all.is_empty() {
        return vec![Vec::new(); layers.len()];
    }
    let k = k.min(all.len());
    let threshold = *all.select_nth_unstable_by(k - 1, f64::total_cmp).1;
    let below = all
        .iter()
        .filter(|v| v.total_cmp(&threshold) == Ordering::Less)
        .count();
    let mut ties = k - below;
    layers
        .iter()
        .map(|m| {
            m.iter()
                .enumerate()
                .filter_map(|(i, v)| match v.total_cmp(&threshold) {
                    Ordering::Less => Some(i),
                    Ordering::Equal if ties > 0 => {
                        ties -= 1;
                        Some(i)
                    }
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_graphs::{conv_bn_relu_conv, random_input, weight_values};
    use super::*;
    use crate::ir::compare::compare;
    use crate::ir::eval::run;
    use crate::ir::text::parse;
    use crate::ir::verify::verify;

    #[test]
    fn zeroes_exactly_the_requested_fraction_and_keeps_shapes() {
        let original = parse(&conv_bn_relu_conv()).unwrap();
        let mut g = original.clone();
        let cfg = MagnitudeConfig {
            sparsity: 0.5,
            min_params: 1,
            ..MagnitudeConfig::default()
        };
        let report = prune_magnitude(&mut g, &cfg).unwrap();
        verify(&g).unwrap();
        assert_eq!(report.layers.len(), 2, "{report}");
        for (layer, (name, n)) in report.layers.iter().zip([("w1", 96), ("w2", 48)]) {
            assert_eq!(layer.weight, name);
            assert_eq!(layer.params_before, n);
            assert_eq!(layer.zeros, n / 2, "{report}");
            let values = weight_values(&g, name);
            assert_eq!(values.len() as u64, n);
            assert_eq!(values.iter().filter(|&&v| v == 0.0).count() as u64, n / 2);
            let before = weight_values(&original, name);
            let kept_min = values.iter().filter(|v| **v != 0.0).map(|v| v.abs());
            let dropped_max = before
                .iter()
                .zip(&values)
                .filter(|(_, a)| **a == 0.0)
                .map(|(b, _)| b.abs());
            assert!(
                dropped_max.fold(0.0, f64::max) <= kept_min.fold(f64::INFINITY, f64::min),
                "only the smallest magnitudes go"
            );
        }
        assert_eq!(report.params_before, report.params_after);
        assert_eq!(report.sparsity(), 0.5);
        assert_eq!(report.rewrites.len(), 2);
        assert_eq!(report.rewrites[0].matched, vec!["conv1"]);

        let x = random_input(&[1, 3, 5, 5], 7);
        let a = run(&original, vec![x.clone()]).unwrap();
        let b = run(&g, vec![x]).unwrap();
        let agreement = compare(&b[0], &a[0]).unwrap();
        assert!(agreement.sqnr_db.is_finite() && agreement.sqnr_db > 0.0);
    }

    #[test]
    fn small_first_and_last_layers_can_be_left_dense() {
        let mut g = parse(&conv_bn_relu_conv()).unwrap();
        let cfg = MagnitudeConfig {
            sparsity: 0.5,
            min_params: 50,
            ..MagnitudeConfig::default()
        };
        let report = prune_magnitude(&mut g, &cfg).unwrap();
        assert_eq!(report.layers.len(), 1);
        assert_eq!(
            report.skipped_layers,
            vec![("w2".to_string(), "48 elements, fewer than 50".to_string())]
        );
        let cfg = MagnitudeConfig {
            min_params: 1,
            skip_first_and_last: true,
            ..cfg
        };
        let report = prune_magnitude(&mut parse(&conv_bn_relu_conv()).unwrap(), &cfg).unwrap();
        assert!(report.layers.is_empty());
        assert_eq!(report.skipped_layers.len(), 2);
    }

    #[test]
    fn global_scope_shares_one_threshold() {
        let mut g = parse(&conv_bn_relu_conv()).unwrap();
        let cfg = MagnitudeConfig {
            sparsity: 0.25,
            scope: Scope::Global,
            min_params: 1,
            ..MagnitudeConfig::default()
        };
        let report = prune_magnitude(&mut g, &cfg).unwrap();
        assert_eq!(report.zeros(), 36, "a quarter of 96 + 48");
    }

    #[test]
    fn ties_at_the_threshold_are_split_by_order() {
        let m = vec![1.0, 0.5, 0.5, 0.5, 2.0];
        assert_eq!(smallest(&[&m], 2), vec![vec![1, 2]]);
        assert_eq!(smallest(&[&m], 0), vec![Vec::<usize>::new()]);
        assert_eq!(smallest(&[&m], 9), vec![vec![0, 1, 2, 3, 4]]);
    }
}
