//! edgeconv: turns trained models (ONNX graphs, safetensors checkpoints) into
//! on-device artifacts through one graph IR.
//!
//! Layering is one way: `ir` <- `calibration` <- `passes` <- `formats` <- the CLI
//! (`main.rs`). The top-level folders are modules of this one crate.

// The generated FlatBuffers object API (formats/tflite) names `alloc::` paths,
// which resolve only when the crate root puts `alloc` in the extern prelude.
extern crate alloc;

pub mod ir;
pub mod output;
pub mod progress;

#[path = "../calibration/mod.rs"]
pub mod calibration;

#[path = "../passes/mod.rs"]
pub mod passes;

#[path = "../formats/mod.rs"]
pub mod formats;

pub use ir::error::{Error, Result, exit};
