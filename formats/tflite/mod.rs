//! TFLite target: the FlatBuffers schema and its generated bindings.
//!
//! `schema.fbs` is the subset of the TensorFlow Lite schema the writer needs
//! (field ids, enum values and union order identical to the reference);
//! `schema_generated.rs` is generated from it by flatc 25.12.19 through
//! `just gen` and committed. Never edit the generated file by hand.

// flatc's output trips these two clippy lints; nothing else needs allowing.
#[allow(
    clippy::missing_safety_doc,
    clippy::extra_unused_lifetimes,
    clippy::derivable_impls
)]
#[rustfmt::skip]
mod schema_generated;

/// The generated `tflite` namespace: `Model`, `SubGraph`, `Tensor`, builders,
/// `root_as_model`, `finish_model_buffer`, and the enums and option tables.
pub use schema_generated::tflite as schema;

pub mod legalize;
pub mod lower;
pub mod model;
