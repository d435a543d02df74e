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
    if let Scope::NofM { n, m } = cfg.scope {
        if n == 0 || n > m {
            return Err(Error::Input(format!("{n}:{m} sparsity needs 0 < N <= M")));
        }
    }
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
        } else if let Scope::NofM { m, .. } = cfg.scope {
            let len = w.shape.get(c.reduction_axis).copied().unwrap_or(0);
            (len % m != 0).then(|| format!("input dim {len} is not a multiple of {m}"))
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
        Scope::NofM { n, m } => layers
            .iter()
            .map(|(c, mags)| {
                let shape = &g.weight_of(c.value).expect("candidates are weights").shape;
                smallest_in_blocks(mags, shape, c.reduction_axis, n, m)
            })
            .collect(),
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
    /// The weight axis the layer sums over (input channels, `K`).
    reduction_axis: usize,
}

/// The constant weight operands of linear layers, in execution order of first use.
fn weight_operands(g: &Graph) -> Result<Vec<Candidate>> {
    let mut out: Vec<Candidate> = Vec::new();
    for id in g.topo_order()? {
        let node = g.node(id);
        let is_weight = |slot: usize| node.input(slot).filter(|&v| g.weight_of(v).is_some());
        let operand = match &node.op {
            Op::Conv(_) => is_weight(1).map(|v| (v, 1)),
            Op::ConvTranspose(_) | Op::Linear(_) => is_weight(1).map(|v| (v, 0)),
            Op::Gemm(a) => is_weight(1).map(|v| (v, usize::from(a.trans_b))),
            Op::MatMul => is_weight(1)
                .map(|v| (v, 0))
                .or_else(|| is_weight(0).map(|v| (v, 1))),
            _ => None,
        };
        let Some((value, reduction_axis)) = operand else {
            continue;
        };
        match out.iter_mut().find(|c| c.value == value) {
            Some(c) => c.nodes.push(node.name.clone()),
            None => out.push(Candidate {
                value,
                nodes: vec![node.name.clone()],
                reduction_axis,
            }),
        }
    }
    Ok(out)
}

/// The indices of the `m - n` smallest values in every block of `m`
/// consecutive elements along `axis` of a row-major tensor of `shape` (ties go
/// to the earliest elements). `shape[axis]` is a multiple of `m`.
fn smallest_in_blocks(
    values: &[f64],
    shape: &[usize],
    axis: usize,
    n: usize,
    m: usize,
) -> Vec<usize> {
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let mut out = Vec::with_capacity(values.len() / m * (m - n));
    for o in 0..outer {
        for i in 0..inner {
            for block in 0..len / m {
                let index = |j: usize| (o * len + block * m + j) * inner + i;
                let block_values: Vec<f64> = (0..m).map(|j| values[index(j)]).collect();
                let mut order: Vec<usize> = (0..m).collect();
                order.sort_by(|&a, &b| block_values[a].total_cmp(&block_values[b]).then(a.cmp(&b)));
                out.extend(order[..m - n].iter().map(|&j| index(j)));
            }
        }
    }
    out.sort_unstable();
    out
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

    #[test]
    fn two_of_four_keeps_the_two_largest_of_every_block_along_the_input_axis() {
        let values: Vec<String> = (0..32)
            .map(|i| format!("{}", ((i * 7) % 13) as f32 - 6.0))
            .collect();
        let text = format!(
            "graph g {{
  input x: f32[1,8]
  input image: f32[1,3,4,4]
  weight w: f32[8,4] = [{}]
  weight k: f32[2,3,1,1] = [1,2,3,4,5,6]
  node mm: y: f32[1,4] = MatMul (x, w)
  node conv: z: f32[1,2,4,4] = Conv {{\"kernel_shape\":[1,1],\"strides\":[1,1],\"dilations\":[1,1],\"padding\":{{\"Explicit\":[0,0,0,0]}},\"group\":1}} (image, k)
  output y, z
}}
",
            values.join(",")
        );
        let mut g = parse(&text).unwrap();
        let cfg = MagnitudeConfig {
            scope: Scope::NofM { n: 2, m: 4 },
            min_params: 1,
            ..MagnitudeConfig::default()
        };
        let report = prune_magnitude(&mut g, &cfg).unwrap();
        verify(&g).unwrap();
        let before: Vec<f64> = values.iter().map(|v| v.parse().unwrap()).collect();
        let after = weight_values(&g, "w");
        assert_eq!(after.iter().filter(|v| **v == 0.0).count(), 16);
        // w is [K=8, N=4]: blocks are rows 0..4 and 4..8 of each column.
        for column in 0..4 {
            for block in 0..2 {
                let rows: Vec<usize> = (0..4).map(|j| (block * 4 + j) * 4 + column).collect();
                let zeros = rows.iter().filter(|&&r| after[r] == 0.0).count();
                assert_eq!(zeros, 2, "column {column} block {block}");
                let kept_min = rows
                    .iter()
                    .filter(|&&r| after[r] != 0.0)
                    .map(|&r| before[r].abs())
                    .fold(f64::INFINITY, f64::min);
                let dropped_max = rows
                    .iter()
                    .filter(|&&r| after[r] == 0.0)
                    .map(|&r| before[r].abs())
                    .fold(0.0, f64::max);
                assert!(dropped_max <= kept_min);
            }
        }
        assert!(
            report
                .skipped_layers
                .iter()
                .any(|(w, why)| w == "k" && why.contains("input dim 3 is not a multiple of 4")),
            "{report}"
        );
        let bad = MagnitudeConfig {
            scope: Scope::NofM { n: 5, m: 4 },
            ..MagnitudeConfig::default()
        };
        assert!(prune_magnitude(&mut g, &bad).is_err());
    }
}
