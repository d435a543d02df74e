//! Compiler passes over the IR: cleanup, fusion, pruning, shape pinning, quantization.

pub mod chains;
pub mod const_fold;
pub mod cse;
pub mod dce;
pub mod fuse;
pub mod manager;
pub mod noop;
pub mod pin_shapes;
pub mod presets;
pub mod prune;

pub use manager::{Changed, Pass, PassCx, Repeat, RunOptions, Stage, run_stages};
