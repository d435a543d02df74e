//! Importers (ONNX, safetensors) and target writers.

pub mod tract_reference;
