//! Importers (ONNX, safetensors) and target writers.

pub mod safetensors;
pub mod tract_reference;
