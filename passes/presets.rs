//! Named passes and the stage lists built from them.

use super::const_fold::ConstantFolding;
use super::cse::CommonSubexpressionElimination;
use super::dce::DeadCodeElimination;
use super::fuse::{
    FoldBatchNorm, FuseActivation, FuseLinear, RecognizeActivations, RecognizeAttention,
    RecognizeDequantize, RecognizeNormalization,
};
use super::manager::{Pass, Repeat, Stage};
use super::noop::NoOpRemoval;

/// Rounds a fixpoint stage of the default pipeline may take.
const FIXPOINT_CAP: usize = 8;

/// Every pass, by the name `--passes` uses.
pub const PASS_NAMES: &[&str] = &[
    "noop",
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

/// The pass called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Pass>> {
    Some(match name {
        "noop" => Box::new(NoOpRemoval),
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
        _ => return None,
    })
}

fn passes(names: &[&str]) -> Vec<Box<dyn Pass>> {
    names
        .iter()
        .map(|n| by_name(n).expect("preset names are listed in by_name"))
        .collect()
}

fn cleanup(name: &'static str) -> Stage {
    Stage {
        name,
        passes: passes(&["noop", "const_fold", "cse", "dce"]),
        repeat: Repeat::Fixpoint { cap: FIXPOINT_CAP },
    }
}

/// Cleanup to a fixpoint; pattern recognition (dequantized weights first,
/// so the weights are static when linear ops form; attention after the
/// activations inside it are recognised); folding BatchNormalization, biased
/// linear ops and fused activations (in that order: an activation sits after
/// the BatchNormalization it must not block); cleanup again.
pub fn default_pipeline() -> Vec<Stage> {
    vec![
        cleanup("cleanup"),
        Stage {
            name: "recognize",
            passes: passes(&[
                "recognize_dequantize",
                "recognize_norm",
                "recognize_activation",
                "recognize_attention",
            ]),
            repeat: Repeat::Fixpoint { cap: FIXPOINT_CAP },
        },
        Stage {
            name: "fuse",
            passes: passes(&["fold_batchnorm", "fuse_linear", "fuse_activation"]),
            repeat: Repeat::Fixpoint { cap: FIXPOINT_CAP },
        },
        cleanup("final_cleanup"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_builds_its_pass() {
        for name in PASS_NAMES {
            assert_eq!(by_name(name).map(|p| p.name()), Some(*name));
        }
        assert!(by_name("no_such_pass").is_none());
        let in_default: Vec<&str> = default_pipeline()
            .iter()
            .flat_map(|s| s.passes.iter().map(|p| p.name()))
            .collect();
        assert!(PASS_NAMES.iter().all(|n| in_default.contains(n)));
    }
}
