//! Passes by name, and the pipelines targets start from.

use crate::ir::error::{Error, Result};

use super::chains::CollapseChains;
use super::const_fold::ConstantFolding;
use super::cse::CommonSubexpressionElimination;
use super::dce::DeadCodeElimination;
use super::fuse::{
    FoldBatchNorm, FuseActivation, FuseLinear, RecognizeActivations, RecognizeAttention,
    RecognizeDequantize, RecognizeNormalization,
};
use super::manager::{Pass, Repeat, Stage};
use super::noop::NoOpRemoval;
use super::prune::{ChannelConfig, ChannelPruning, MagnitudeConfig, MagnitudePruning, Scope};

/// Rounds a fixpoint stage may take to stop changing the graph.
pub const FIXPOINT_CAP: usize = 16;

/// The cleanup passes, in the order they run each round.
pub const CLEANUP: &[&str] = &["noop", "collapse_chains", "const_fold", "cse", "dce"];

/// Every pass `--passes` accepts, in the order `--help` lists them.
pub const NAMES: &[&str] = &[
    "noop",
    "collapse_chains",
    "const_fold",
    "cse",
    "dce",
    "recognize_dequantize",
    "recognize_norm",
    "recognize_activation",
    "recognize_attention",
    "fold_batchnorm",
    "fuse_linear",
    "fuse_activation",
];

/// Passes that change the model's numbers, with their default settings (half
/// of each layer's weights zeroed; two of every four along the input axis; a
/// quarter of the channels removed): never in a preset, run only when named in
/// `--passes`.
pub const LOSSY: &[&str] = &["prune_magnitude", "prune_2_4", "prune_channels"];

/// The pass called `name` (as `--passes` and `--print-after` spell it).
pub fn by_name(name: &str) -> Option<Box<dyn Pass>> {
    Some(match name {
        "noop" => Box::new(NoOpRemoval),
        "collapse_chains" => Box::new(CollapseChains),
        "const_fold" => Box::new(ConstantFolding),
        "cse" => Box::new(CommonSubexpressionElimination),
        "dce" => Box::new(DeadCodeElimination),
        "recognize_dequantize" => Box::new(RecognizeDequantize),
        "recognize_norm" => Box::new(RecognizeNormalization),
        "recognize_activation" => Box::new(RecognizeActivations),
        "recognize_attention" => Box::new(RecognizeAttention),
        "fold_batchnorm" => Box::new(FoldBatchNorm),
        "fuse_linear" => Box::new(FuseLinear),
        "fuse_activation" => Box::new(FuseActivation),
        "prune_magnitude" => Box::new(MagnitudePruning(MagnitudeConfig::default())),
        "prune_2_4" => Box::new(MagnitudePruning(MagnitudeConfig {
            scope: Scope::NofM { n: 2, m: 4 },
            ..MagnitudeConfig::default()
        })),
        "prune_channels" => Box::new(ChannelPruning::new(ChannelConfig::default())),
        _ => return None,
    })
}

/// One stage running `names` in order, repeated until nothing changes.
pub fn stage(name: &'static str, names: &[&str]) -> Result<Stage> {
    let passes = names
        .iter()
        .map(|n| {
            by_name(n).ok_or_else(|| {
                Error::Input(format!(
                    "unknown pass '{n}'; the passes are: {}",
                    NAMES
                        .iter()
                        .chain(LOSSY)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Stage {
        name,
        passes,
        repeat: Repeat::Fixpoint { cap: FIXPOINT_CAP },
    })
}

/// Cleanup to a fixpoint; pattern recognition (dequantized weights first, so
/// the weights are static when linear ops form; attention after the
/// activations inside it are recognised); folding BatchNormalization, biased
/// linear ops and fused activations (in that order: an activation sits after
/// the BatchNormalization it must not block); cleanup again.
pub fn default_pipeline() -> Vec<Stage> {
    let named =
        |name, names: &[&str]| stage(name, names).expect("preset names are listed in by_name");
    vec![
        named("cleanup", CLEANUP),
        named(
            "recognize",
            &[
                "recognize_dequantize",
                "recognize_norm",
                "recognize_activation",
                "recognize_attention",
            ],
        ),
        named(
            "fuse",
            &["fold_batchnorm", "fuse_linear", "fuse_activation"],
        ),
        named("final_cleanup", CLEANUP),
    ]
}

/// The pipeline a target runs when the user names no passes. Every target
/// starts from the default pipeline; a target's own legalization follows it.
pub fn for_target(target: &str) -> Vec<Stage> {
    match target {
        // A GGUF file carries the source's weights as they are: folding or
        // fusing would change the tensors llama.cpp expects by name.
        "gguf" => Vec::new(),
        _ => default_pipeline(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_pass_of_that_name() {
        for name in NAMES.iter().chain(CLEANUP).chain(LOSSY) {
            assert_eq!(by_name(name).map(|p| p.name()), Some(*name));
        }
        let err = stage("s", &["dce", "fuse_everything"]).err().unwrap();
        assert!(err.to_string().contains("unknown pass 'fuse_everything'"));
    }

    #[test]
    fn the_default_pipeline_runs_every_pass() {
        let in_default: Vec<&str> = default_pipeline()
            .iter()
            .flat_map(|s| s.passes.iter().map(|p| p.name()))
            .collect();
        assert!(NAMES.iter().all(|n| in_default.contains(n)));
        assert!(LOSSY.iter().all(|n| !in_default.contains(n)));
    }
}
