//! Structured channel pruning: choose the channels to drop per group, slice
//! every weight that carries them, re-infer facts and check the result.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::ir::error::{Error, Result};
use crate::ir::infer::infer_graph;
use crate::ir::patch::Patch;
use crate::ir::verify::{live_values, verify};
use crate::ir::{DType, Graph, NodeId, Op, Shape, ValueDef, Weight};

use super::groups::{Analysis, EditKind, analyze};
use super::report::{ChannelGroup, LayerReport, PruneReport, live_params};
use super::tensor_data::{keep_along, magnitudes, norms_along};
use super::{ChannelConfig, Criterion};

/// Removes `cfg.fraction` of the output channels (rounded down) of every
/// prunable channel group, choosing those with the smallest summed norm of
/// their producing Conv weights, and shrinks every weight that carries them:
/// the producers' weights and biases, BatchNormalization parameters,
/// per-channel constants of elementwise ops (Mul/Add by `[C,1,1]`, PRelu
/// slopes), depthwise Convs (channels tied to their input), and consumers'
/// input channels (Conv weights' second axis, MatMul/Gemm/Linear rows after a
/// GlobalAveragePool and Flatten/Reshape to `[N, C]`).
///
/// Channel groups come from [`super::groups`]: channels joined by residual
/// Add/Mul or Concat are pruned consistently, and a group is left alone (with
/// the reasons in [`ChannelGroup::skipped`]) when any of its values reaches a
/// graph output, meets a graph input, or is read by an op this pass cannot
/// slice. After slicing, facts are re-inferred; every value outside the pruned
/// channels must keep its shape. Groups read by a computed Reshape target or a
/// Shape op are kept if that check fails. The graph is compacted (dead weights
/// dropped) and verified.
pub fn prune_channels(g: &mut Graph, cfg: &ChannelConfig) -> Result<PruneReport> {
    if !(0.0..1.0).contains(&cfg.fraction) {
        return Err(Error::Input(format!(
            "channel fraction {} is not in [0, 1)",
            cfg.fraction
        )));
    }
    let params_before = live_params(g);
    let analysis = analyze(g, false)?;
    let mut trial = g.clone();
    let attempt = prune_analyzed(&mut trial, &analysis, cfg);
    let (mut report, pruned) = match attempt {
        Ok(report) => (report, trial),
        Err(first) => {
            if !analysis.classes.iter().any(|c| c.provisional) {
                return Err(first);
            }
            let analysis = analyze(g, true)?;
            let mut trial = g.clone();
            (prune_analyzed(&mut trial, &analysis, cfg)?, trial)
        }
    };
    if !report.rewrites.is_empty() {
        *g = pruned;
    }
    report.params_before = params_before;
    report.params_after = live_params(g);
    Ok(report)
}

fn prune_analyzed(g: &mut Graph, analysis: &Analysis, cfg: &ChannelConfig) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let kept = choose_channels(g, analysis, cfg, &mut report)?;
    let shapes_before: HashMap<String, Shape> = live_values(g)
        .into_iter()
        .map(|v| (g.value(v).name.clone(), g.fact(v).shape.clone()))
        .collect();
    let expected_channels: HashMap<String, usize> = analysis
        .layouts
        .iter()
        .map(|(&v, l)| {
            (
                g.value(v).name.clone(),
                keep_layout(l, analysis, &kept).len(),
            )
        })
        .collect();

    let mut by_node: BTreeMap<NodeId, Vec<&EditKind>> = BTreeMap::new();
    for e in &analysis.edits {
        by_node.entry(e.node).or_default().push(&e.kind);
    }
    let uses = g.consumers();
    for (node, edits) in by_node {
        let touches_pruned = edits.iter().any(|e| {
            let layout = match e {
                EditKind::SliceInput { layout, .. }
                | EditKind::DepthwiseGroups { layout }
                | EditKind::ReshapeTarget { layout, .. } => layout,
            };
            layout.iter().any(|c| kept[*c].is_some())
        });
        if touches_pruned {
            rebuild_node(g, node, &edits, analysis, &kept, &uses, &mut report)?;
        }
    }

    infer_graph(g)?;
    for v in live_values(g) {
        let value = g.value(v);
        let Some(before) = shapes_before.get(&value.name) else {
            continue;
        };
        if matches!(value.def, ValueDef::Weight(_)) {
            continue;
        }
        let ok = match expected_channels.get(&value.name) {
            Some(&c) => {
                value
                    .fact
                    .shape
                    .dims()
                    .and_then(|d| d.get(1))
                    .and_then(|d| d.fixed())
                    == Some(c as u64)
            }
            None => value.fact.shape == *before,
        };
        if !ok {
            return Err(Error::Graph(format!(
                "rule prune_channels: value '{}' has shape {} after pruning",
                value.name,
                value.fact.shape.display(&g.symbols)
            )));
        }
    }
    g.compact()?;
    verify(g)?;
    Ok(report)
}

/// For every class, the channels it keeps (ascending), or `None` when it is not pruned.
fn choose_channels(
    g: &Graph,
    analysis: &Analysis,
    cfg: &ChannelConfig,
    report: &mut PruneReport,
) -> Result<Vec<Option<Vec<usize>>>> {
    let mut kept = Vec::with_capacity(analysis.classes.len());
    for class in &analysis.classes {
        let mut group = ChannelGroup {
            producers: class
                .producers
                .iter()
                .map(|(n, ..)| g.node(*n).name.clone())
                .collect(),
            channels: class.channels,
            removed: Vec::new(),
            skipped: class.blocked.clone(),
        };
        let drop = (cfg.fraction * class.channels as f64).floor() as usize;
        if group.skipped.is_empty() && class.channels < cfg.min_channels {
            group.skipped.push(format!(
                "{} channels, fewer than {}",
                class.channels, cfg.min_channels
            ));
        }
        if group.skipped.is_empty() && drop == 0 {
            group.skipped.push("the fraction removes no channel".into());
        }
        if !group.skipped.is_empty() || class.producers.is_empty() {
            if !class.producers.is_empty() {
                report.groups.push(group);
            }
            kept.push(None);
            continue;
        }
        let mut importance = vec![0.0; class.channels];
        for &(node, slot, axis) in &class.producers {
            let w = g.node(node).input(slot).and_then(|v| g.weight_of(v));
            let norms = w.and_then(|w| norms_along(w, axis, cfg.criterion == Criterion::L2));
            let Some(norms) = norms.filter(|n| n.len() == class.channels) else {
                return Err(Error::node(
                    &g.node(node).name,
                    g.node(node).op.name(),
                    "rule prune_channels: cannot rank the channels of this weight".to_string(),
                ));
            };
            for (i, n) in norms.into_iter().enumerate() {
                importance[i] += if cfg.criterion == Criterion::L2 {
                    n.sqrt()
                } else {
                    n
                };
            }
        }
        let mut order: Vec<usize> = (0..class.channels).collect();
        order.sort_by(|&a, &b| importance[a].total_cmp(&importance[b]).then(a.cmp(&b)));
        let mut removed = order[..drop].to_vec();
        removed.sort_unstable();
        let mut keep: Vec<usize> = order[drop..].to_vec();
        keep.sort_unstable();
        group.removed = removed;
        report.groups.push(group);
        kept.push(Some(keep));
    }
    Ok(kept)
}

/// The kept indices along a channel axis made of the layout's classes.
fn keep_layout(layout: &[usize], analysis: &Analysis, kept: &[Option<Vec<usize>>]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut offset = 0;
    for &c in layout {
        let n = analysis.classes[c].channels;
        match &kept[c] {
            Some(k) => out.extend(k.iter().map(|i| offset + i)),
            None => out.extend(offset..offset + n),
        }
        offset += n;
    }
    out
}

/// Replaces `node` by a copy with its constant inputs sliced (and its depthwise
/// group count or reshape target updated), through one patch.
fn rebuild_node(
    g: &mut Graph,
    id: NodeId,
    edits: &[&EditKind],
    analysis: &Analysis,
    kept: &[Option<Vec<usize>>],
    uses: &HashMap<crate::ir::ValueId, Vec<NodeId>>,
    report: &mut PruneReport,
) -> Result<()> {
    let node = g.node(id).clone();
    let fail = |msg: String| {
        Error::node(
            &node.name,
            node.op.name(),
            format!("rule prune_channels: {msg}"),
        )
    };
    let mut op = node.op.clone();
    let mut new_inputs: BTreeMap<usize, Weight> = BTreeMap::new();
    for edit in edits {
        match edit {
            EditKind::SliceInput { slot, axis, layout } => {
                let current = match new_inputs.remove(slot) {
                    Some(w) => w,
                    None => node
                        .input(*slot)
                        .and_then(|v| g.weight_of(v))
                        .cloned()
                        .ok_or_else(|| fail(format!("input {slot} is not a constant")))?,
                };
                let keep = keep_layout(layout, analysis, kept);
                new_inputs.insert(
                    *slot,
                    keep_along(&current, *axis, &keep, current.name.clone())?,
                );
            }
            EditKind::DepthwiseGroups { layout } => {
                if let Op::Conv(a) = &mut op {
                    a.group = keep_layout(layout, analysis, kept).len();
                }
            }
            EditKind::ReshapeTarget {
                slot,
                position,
                layout,
            } => {
                let w = node
                    .input(*slot)
                    .and_then(|v| g.weight_of(v))
                    .ok_or_else(|| fail(format!("input {slot} is not a constant")))?;
                let mut target =
                    crate::ir::Tensor::from_bytes(w.dtype, &w.shape, &w.data)?.to_i64_vec()?;
                target[*position] = keep_layout(layout, analysis, kept).len() as i64;
                let bytes: Vec<u8> = target.iter().flat_map(|v| v.to_le_bytes()).collect();
                new_inputs.insert(
                    *slot,
                    Weight::new(
                        w.name.clone(),
                        DType::I64,
                        w.shape.clone(),
                        Bytes::from(bytes),
                    )?,
                );
            }
        }
    }

    let mut p = Patch::new("prune_channels");
    let mut inputs: Vec<_> = node.inputs.iter().map(|i| i.map(|v| p.tap(v))).collect();
    for (slot, mut w) in new_inputs {
        let old = node.input(slot).expect("sliced inputs exist");
        if uses.get(&old).is_some_and(|u| u.len() > 1) {
            w.name = format!("{}.{}", w.name, node.name);
        }
        let before = g.weight_of(old).map_or(0, |w| w.element_count());
        report.layers.push(LayerReport {
            node: node.name.clone(),
            weight: w.name.clone(),
            params_before: before,
            params_after: w.element_count(),
            zeros: magnitudes(&w).map_or(0, |m| m.iter().filter(|&&x| x == 0.0).count() as u64),
        });
        inputs[slot] = Some(p.add_weight(w));
    }
    p.replace(g, &[id], node.name.clone(), op, inputs);
    report.rewrites.push(p.apply(g)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_graphs::{
        channel_concat, computed_flatten, conv_bn_relu_conv, parse_graph, random_input,
        residual_block, residual_with_input, squeeze_excite_head, weight_shape, zero_channels,
    };
    use super::*;
    use crate::ir::compare::compare;
    use crate::ir::eval::run;

    fn config(fraction: f64) -> ChannelConfig {
        ChannelConfig {
            fraction,
            min_channels: 2,
            ..ChannelConfig::default()
        }
    }

    fn group<'r>(report: &'r PruneReport, producer: &str) -> &'r ChannelGroup {
        report
            .groups
            .iter()
            .find(|g| g.producers.iter().any(|p| p == producer))
            .unwrap_or_else(|| panic!("no group of {producer}: {report}"))
    }

    /// The pruned graph must compute what the original computes once the
    /// consumers ignore the removed channels (their input weights zeroed).
    fn assert_same_as_zeroed(pruned: &Graph, reference: &Graph, original: &Graph, input: &[usize]) {
        let x = random_input(input, 5);
        let expected = run(reference, vec![x.clone()]).unwrap();
        let actual = run(pruned, vec![x.clone()]).unwrap();
        let agreement = compare(&actual[0], &expected[0]).unwrap();
        assert!(agreement.within(1e-5), "{agreement:?}");
        let unzeroed = run(original, vec![x]).unwrap();
        assert!(
            !compare(&actual[0], &unzeroed[0]).unwrap().within(1e-3),
            "the removed channels mattered in the original"
        );
    }

    #[test]
    fn conv_bn_relu_conv_slices_and_matches_zeroed_channels() {
        let original = parse_graph(&conv_bn_relu_conv());
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        let removed = group(&report, "conv1").removed.clone();
        assert_eq!(removed.len(), 2, "{report}");
        assert!(
            !group(&report, "conv2").skipped.is_empty(),
            "conv2 feeds the output"
        );
        assert_eq!(weight_shape(&g, "w1"), vec![6, 3, 2, 2]);
        assert_eq!(weight_shape(&g, "b1"), vec![6]);
        for p in ["bn_gamma", "bn_beta", "bn_mean", "bn_var"] {
            assert_eq!(weight_shape(&g, p), vec![6]);
        }
        assert_eq!(weight_shape(&g, "w2"), vec![6, 6, 1, 1]);
        assert_eq!(
            report.params_before - report.params_after,
            2 * (12 + 1 + 4 + 6)
        );
        assert_eq!(
            g.param_count(),
            report.params_after,
            "dead weights are gone"
        );
        let text = g.to_string();
        assert!(text.contains("r1: f32[N,6,4,4] = Relu (n1)"), "{text}");

        let mut reference = original.clone();
        zero_channels(&mut reference, "w2", 1, &removed);
        assert_same_as_zeroed(&g, &reference, &original, &[2, 3, 5, 5]);
    }

    #[test]
    fn residual_channels_are_pruned_consistently() {
        let original = parse_graph(&residual_block());
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        let joined = group(&report, "conv_a");
        assert_eq!(joined.producers, vec!["conv_a", "conv_b"], "{report}");
        assert_eq!(joined.removed.len(), 2);
        assert_eq!(weight_shape(&g, "w_a"), vec![6, 3, 1, 1]);
        assert_eq!(weight_shape(&g, "w_d"), vec![6, 1, 3, 3]);
        assert_eq!(weight_shape(&g, "slope"), vec![6, 1, 1]);
        assert_eq!(weight_shape(&g, "w_b"), vec![6, 6, 1, 1]);
        assert_eq!(weight_shape(&g, "k"), vec![1, 6, 1, 1]);
        assert_eq!(weight_shape(&g, "w_c"), vec![4, 6, 1, 1]);
        assert!(g.to_string().contains("\"group\":6"));

        let mut reference = original.clone();
        zero_channels(&mut reference, "w_b", 1, &joined.removed);
        zero_channels(&mut reference, "w_c", 1, &joined.removed);
        assert_same_as_zeroed(&g, &reference, &original, &[2, 3, 5, 5]);
    }

    #[test]
    fn a_residual_with_the_graph_input_is_skipped_with_its_reason() {
        let original = parse_graph(&residual_with_input());
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        let skipped = &group(&report, "conv1").skipped;
        assert_eq!(
            skipped,
            &vec!["'add' joins value 'x' whose channels cannot be pruned".to_string()]
        );
        assert!(report.rewrites.is_empty());
        assert_eq!(report.params_after, report.params_before);
        assert_eq!(g.to_string(), original.to_string());
    }

    #[test]
    fn squeeze_excite_and_flattened_head_prune_both_groups() {
        let original = parse_graph(&squeeze_excite_head());
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        let main = group(&report, "conv1").clone();
        assert_eq!(main.producers, vec!["conv1", "se2"], "{report}");
        assert_eq!(main.removed.len(), 2);
        let squeeze = group(&report, "se1").clone();
        assert_eq!(squeeze.removed.len(), 1);
        assert_eq!(weight_shape(&g, "w_s1"), vec![3, 6, 1, 1]);
        assert_eq!(weight_shape(&g, "b_s1"), vec![1, 3, 1, 1]);
        assert_eq!(weight_shape(&g, "w_s2"), vec![6, 3, 1, 1]);
        assert_eq!(weight_shape(&g, "b_s2"), vec![1, 6, 1, 1]);
        assert_eq!(weight_shape(&g, "w_fc"), vec![5, 6]);
        assert!(g.to_string().contains("f: f32[N,6] = Flatten"));

        let mut reference = original.clone();
        zero_channels(&mut reference, "w_s1", 1, &main.removed);
        zero_channels(&mut reference, "w_fc", 1, &main.removed);
        zero_channels(&mut reference, "w_s2", 1, &squeeze.removed);
        assert_same_as_zeroed(&g, &reference, &original, &[2, 3, 6, 6]);
    }

    #[test]
    fn the_lowest_norm_channels_go() {
        let mut g = parse_graph(&conv_bn_relu_conv());
        let w1 = g
            .weight_of(g.node(g.topo_order().unwrap()[0]).input(1).unwrap())
            .unwrap();
        let norms = norms_along(w1, 0, false).unwrap();
        let mut order: Vec<usize> = (0..8).collect();
        order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]));
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        let mut expected = order[..2].to_vec();
        expected.sort_unstable();
        assert_eq!(group(&report, "conv1").removed, expected);
    }

    #[test]
    fn concatenated_channels_slice_the_consumer_at_both_offsets() {
        let original = parse_graph(&channel_concat());
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        let a = group(&report, "conv_a").removed.clone();
        let b = group(&report, "conv_b").removed.clone();
        assert_eq!((a.len(), b.len()), (1, 1), "{report}");
        assert_eq!(weight_shape(&g, "w_c"), vec![2, 8, 1, 1]);
        assert!(g.to_string().contains("c: f32[N,8,4,4] = Concat"));
        let mut consumer_columns = a.clone();
        consumer_columns.extend(b.iter().map(|i| 4 + i));
        let mut reference = original.clone();
        zero_channels(&mut reference, "w_c", 1, &consumer_columns);
        assert_same_as_zeroed(&g, &reference, &original, &[2, 3, 4, 4]);
    }

    #[test]
    fn a_computed_reshape_target_is_kept_only_when_it_follows_the_channels() {
        let original = parse_graph(&computed_flatten(-1));
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        assert_eq!(group(&report, "conv1").removed.len(), 2, "{report}");
        assert_eq!(weight_shape(&g, "w_fc"), vec![6, 3]);
        assert!(g.to_string().contains("f: f32[N,6] = Reshape"));
        let mut reference = original.clone();
        zero_channels(&mut reference, "w_fc", 0, &group(&report, "conv1").removed);
        assert_same_as_zeroed(&g, &reference, &original, &[2, 3, 4, 4]);

        let original = parse_graph(&computed_flatten(8));
        let mut g = original.clone();
        let report = prune_channels(&mut g, &config(0.25)).unwrap();
        assert_eq!(
            group(&report, "conv1").skipped,
            vec!["a shape computed from these channels might change".to_string()]
        );
        assert!(report.rewrites.is_empty());
        assert_eq!(g.to_string(), original.to_string());
    }
}
