//! Passes by name, and the pass lists targets start from.

use crate::ir::error::{Error, Result};

use super::const_fold::ConstantFolding;
use super::cse::CommonSubexpressionElimination;
use super::dce::DeadCodeElimination;
use super::manager::{Pass, Repeat, Stage};
use super::noop::NoOpRemoval;

/// Rounds a pass list may take to stop changing the graph.
pub const FIXPOINT_CAP: usize = 16;

/// The cleanup passes, in the order they run each round.
pub const CLEANUP: &[&str] = &["noop", "const_fold", "cse", "dce"];

/// Every pass `--passes` accepts, in the order `--help` lists them.
pub const NAMES: &[&str] = &["noop", "const_fold", "cse", "dce"];

/// The pass called `name` (as `--passes` and `--print-after` spell it).
pub fn by_name(name: &str) -> Option<Box<dyn Pass>> {
    Some(match name {
        "noop" => Box::new(NoOpRemoval),
        "const_fold" => Box::new(ConstantFolding),
        "cse" => Box::new(CommonSubexpressionElimination),
        "dce" => Box::new(DeadCodeElimination),
        _ => return None,
    })
}

/// The passes a target's pipeline runs by default.
pub fn for_target(_target: &str) -> &'static [&'static str] {
    CLEANUP
}

/// One stage running `names` in order, repeated until nothing changes.
pub fn stage(name: &'static str, names: &[&str]) -> Result<Stage> {
    let passes = names
        .iter()
        .map(|n| {
            by_name(n).ok_or_else(|| {
                Error::Input(format!(
                    "unknown pass '{n}'; the passes are: {}",
                    NAMES.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_pass_of_that_name() {
        for name in NAMES.iter().chain(CLEANUP) {
            assert_eq!(by_name(name).map(|p| p.name()), Some(*name));
        }
        let err = stage("s", &["dce", "fuse_everything"]).err().unwrap();
        assert!(err.to_string().contains("unknown pass 'fuse_everything'"));
    }
}
