//! What a pruning run did: parameters before and after, per layer and in total.

use std::fmt;

use crate::ir::Graph;
use crate::ir::ValueDef;
use crate::ir::patch::Rewrite;
use crate::ir::verify::live_values;

/// One pruned weight.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// The node(s) reading the weight.
    pub node: String,
    pub weight: String,
    pub params_before: u64,
    pub params_after: u64,
    /// Zero elements after pruning.
    pub zeros: u64,
}

impl LayerReport {
    pub fn sparsity(&self) -> f64 {
        ratio(self.zeros, self.params_after)
    }
}

/// Values whose channel axes must be pruned together, and what happened to them.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelGroup {
    /// The Conv nodes whose output channels the group is.
    pub producers: Vec<String>,
    pub channels: usize,
    /// Channel indices removed (ascending); empty when the group was skipped.
    pub removed: Vec<usize>,
    /// Why the group was left alone; empty when it was pruned.
    pub skipped: Vec<String>,
}

/// The outcome of [`super::prune_magnitude`] or [`super::prune_channels`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    /// Elements of the weights the graph uses, before and after.
    pub params_before: u64,
    pub params_after: u64,
    pub layers: Vec<LayerReport>,
    /// Prunable-looking weights left alone, with the reason: `(weight, reason)`.
    pub skipped_layers: Vec<(String, String)>,
    /// Channel groups (structured pruning only).
    pub groups: Vec<ChannelGroup>,
    pub rewrites: Vec<Rewrite>,
}

impl PruneReport {
    /// Zero elements over the pruned layers.
    pub fn zeros(&self) -> u64 {
        self.layers.iter().map(|l| l.zeros).sum()
    }

    /// Zeros over the elements of the pruned layers.
    pub fn sparsity(&self) -> f64 {
        ratio(
            self.zeros(),
            self.layers.iter().map(|l| l.params_after).sum(),
        )
    }

    /// Fraction of the graph's parameters removed.
    pub fn parameter_reduction(&self) -> f64 {
        ratio(
            self.params_before.saturating_sub(self.params_after),
            self.params_before,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:>10} {:>10} {:>10} {:>8}",
            "weight", "before", "after", "zeros", "sparsity"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<40} {:>10} {:>10} {:>10} {:>7.1}%",
                l.weight,
                l.params_before,
                l.params_after,
                l.zeros,
                100.0 * l.sparsity()
            )?;
        }
        for (weight, reason) in &self.skipped_layers {
            writeln!(f, "{weight:<40} skipped: {reason}")?;
        }
        for g in &self.groups {
            let producers = g.producers.join("+");
            if g.skipped.is_empty() {
                writeln!(
                    f,
                    "channels of {producers}: {} -> {}",
                    g.channels,
                    g.channels - g.removed.len()
                )?;
            } else {
                writeln!(
                    f,
                    "channels of {producers}: {} kept: {}",
                    g.channels,
                    g.skipped.join("; ")
                )?;
            }
        }
        write!(
            f,
            "parameters {} -> {} ({:.1}% fewer)",
            self.params_before,
            self.params_after,
            100.0 * self.parameter_reduction(),
        )?;
        if self.zeros() > 0 {
            write!(
                f,
                ", sparsity of pruned layers {:.1}%",
                100.0 * self.sparsity()
            )?;
        }
        writeln!(f)
    }
}

/// Elements of the weights the graph uses (dead weights not yet compacted away do not count).
pub fn live_params(g: &Graph) -> u64 {
    live_values(g)
        .into_iter()
        .filter_map(|v| match g.value(v).def {
            ValueDef::Weight(w) => Some(g.weights.get(w).element_count()),
            _ => None,
        })
        .sum()
}
