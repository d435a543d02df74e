//! TFLite target: the FlatBuffers schema and its generated bindings, the
//! lowered model and its writer.
//!
//! `schema.fbs` is the subset of the TensorFlow Lite schema the writer needs
//! (field ids, enum values and union order identical to the reference);
//! `schema_generated.rs` is generated from it by flatc 25.12.19 through
//! `just gen` and committed. Never edit the generated file by hand.
//!
//! [`model::TflModel`] is what the lowering builds: one subgraph of tensors
//! and builtin operators, constant data as `Bytes`. [`write::write_model`]
//! serializes it atomically; constant data goes inside the flatbuffer or,
//! past [`write::OFFSET_BUFFERS_THRESHOLD`] (or when asked), after it as
//! offset buffers, streamed from its `Bytes` and allowed past 2 GiB.

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
pub mod quantize;
pub mod target;
pub mod write;
