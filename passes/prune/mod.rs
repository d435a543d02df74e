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

use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Semi-structured N:M sparsity (2:4 is what sparse tensor cores run): in
    /// every block of `m` consecutive weights along a layer's input (reduction)
    /// axis, the `n` largest stay and the rest are zeroed. `sparsity` is
    /// ignored; it is `1 - n/m`.
    NofM { n: usize, m: usize },
}

/// Settings of [`prune_magnitude`].
#[derive(Clone, Debug, PartialEq)]
pub struct MagnitudeConfig {
    /// Fraction of each prunable weight (or of all of them, for [`Scope::Global`]) set to zero;
    /// not used by [`Scope::NofM`].
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

/// Zeroes the smallest-magnitude weights of Conv/ConvTranspose/Gemm/MatMul/Linear
/// layers; see [`prune_magnitude`]. Running it again selects the same zeros
/// and changes nothing.
pub struct MagnitudePruning(pub MagnitudeConfig);

impl Pass for MagnitudePruning {
    fn name(&self) -> &'static str {
        match self.0.scope {
            Scope::NofM { n: 2, m: 4 } => "prune_2_4",
            _ => "prune_magnitude",
        }
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        record(prune_magnitude(g, &self.0)?, cx)
    }
}

/// Removes the lowest-norm output channels of Conv layers and the matching
/// inputs of their consumers; see [`prune_channels`]. One instance prunes
/// once: pruning again would remove a fraction of what is left, so in a
/// fixpoint stage the later rounds change nothing.
pub struct ChannelPruning {
    config: ChannelConfig,
    done: AtomicBool,
}

impl ChannelPruning {
    pub fn new(config: ChannelConfig) -> ChannelPruning {
        ChannelPruning {
            config,
            done: AtomicBool::new(false),
        }
    }
}

impl Pass for ChannelPruning {
    fn name(&self) -> &'static str {
        "prune_channels"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        if self.done.swap(true, Ordering::SeqCst) {
            return Ok(Changed::No);
        }
        record(prune_channels(g, &self.config)?, cx)
    }
}

fn record(report: PruneReport, cx: &mut PassCx) -> Result<Changed> {
    let changed = !report.rewrites.is_empty();
    if changed {
        cx.note(report.to_string());
    }
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
                Box::new(ChannelPruning::new(ChannelConfig::default())),
                Box::new(MagnitudePruning(MagnitudeConfig {
                    min_params: 1,
                    ..MagnitudeConfig::default()
                })),
            ],
            repeat: Repeat::Fixpoint { cap: 3 },
        }];
        let opts = RunOptions {
            verify_each: true,
            ..RunOptions::default()
        };
        let report = run_stages(&mut g, &stages, &opts).unwrap();
        verify(&g).unwrap();
        let changed: Vec<bool> = report.runs.iter().map(|r| r.changed).collect();
        assert_eq!(
            changed,
            vec![true, true, false, false],
            "a second round is quiet"
        );
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
