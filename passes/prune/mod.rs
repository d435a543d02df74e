//! Pruning: unstructured magnitude pruning (weights stay dense, with zeros) and
//! structured channel pruning (output channels removed, the graph shrinks).
//!
//! Both are plain functions returning a [`PruneReport`] ([`prune_magnitude`],
//! [`prune_channels`]) and passes wrapping them ([`MagnitudePruning`],
//! [`ChannelPruning`]) that record their rewrites for `--explain`.

mod channels;
mod groups;
mod magnitude;
mod report;
mod tensor_data;

use crate::ir::Graph;
use crate::ir::error::Result;

use super::manager::{Changed, Pass, PassCx};

pub use channels::prune_channels;
pub use magnitude::prune_magnitude;
pub use report::{ChannelGroup, LayerReport, PruneReport};

/// Which weights share one magnitude threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every layer loses the same fraction of its weights.
    PerLayer,
    /// One threshold over all prunable weights: layers with many small weights lose more.
    Global,
}

/// Settings of [`prune_magnitude`].
#[derive(Clone, Debug, PartialEq)]
pub struct MagnitudeConfig {
    /// Fraction of each prunable weight (or of all of them, for [`Scope::Global`]) set to zero.
    pub sparsity: f64,
    pub scope: Scope,
    /// Weights with fewer elements are left alone (depthwise kernels, small heads).
    pub min_params: u64,
    /// Leave the first and the last prunable layer (in execution order) dense.
    pub skip_first_and_last: bool,
}

impl Default for MagnitudeConfig {
    fn default() -> Self {
        MagnitudeConfig {
            sparsity: 0.5,
            scope: Scope::PerLayer,
            min_params: 1024,
            skip_first_and_last: false,
        }
    }
}

/// How channels are ranked: the norm of each output channel's producing weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    L1,
    L2,
}

/// Settings of [`prune_channels`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    /// Fraction of the channels of every prunable channel group removed (rounded down).
    pub fraction: f64,
    pub criterion: Criterion,
    /// Groups with fewer channels are left alone.
    pub min_channels: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            fraction: 0.25,
            criterion: Criterion::L1,
            min_channels: 8,
        }
    }
}

/// Zeroes the smallest-magnitude weights of Conv/ConvTranspose/Gemm/MatMul
/// layers; see [`prune_magnitude`].
pub struct MagnitudePruning(pub MagnitudeConfig);

impl Pass for MagnitudePruning {
    fn name(&self) -> &'static str {
        "prune_magnitude"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        record(prune_magnitude(g, &self.0)?, cx)
    }
}

/// Removes the lowest-norm output channels of Conv layers and the matching
/// inputs of their consumers; see [`prune_channels`].
pub struct ChannelPruning(pub ChannelConfig);

impl Pass for ChannelPruning {
    fn name(&self) -> &'static str {
        "prune_channels"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        record(prune_channels(g, &self.0)?, cx)
    }
}

fn record(report: PruneReport, cx: &mut PassCx) -> Result<Changed> {
    let changed = !report.rewrites.is_empty();
    for r in report.rewrites {
        cx.record(r);
    }
    Ok(Changed::from_bool(changed))
}

#[cfg(test)]
mod test_graphs;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::verify::verify;
    use crate::passes::manager::{Repeat, RunOptions, Stage, run_stages};

    #[test]
    fn the_passes_record_their_rewrites_for_explain() {
        let mut g = test_graphs::parse_graph(&test_graphs::conv_bn_relu_conv());
        let stages = [Stage {
            name: "prune",
            passes: vec![
                Box::new(ChannelPruning(ChannelConfig::default())),
                Box::new(MagnitudePruning(MagnitudeConfig {
                    min_params: 1,
                    ..MagnitudeConfig::default()
                })),
            ],
            repeat: Repeat::Once,
        }];
        let opts = RunOptions {
            verify_each: true,
            ..RunOptions::default()
        };
        let report = run_stages(&mut g, &stages, &opts).unwrap();
        verify(&g).unwrap();
        assert!(report.runs.iter().all(|r| r.changed));
        assert_eq!(
            report.explain(),
            "prune_channels: matched [conv1] -> produced [conv1]
prune_channels: matched [bn] -> produced [bn]
prune_channels: matched [conv2] -> produced [conv2]
prune_magnitude: matched [conv1] -> produced []
prune_magnitude: matched [conv2] -> produced []
"
        );
    }
}
