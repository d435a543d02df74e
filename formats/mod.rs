//! Importers (ONNX, safetensors) and target writers.

pub mod coreml;
pub mod coverage;
pub mod gguf;
pub mod onnx;
pub mod safetensors;
pub mod target;
pub mod tflite;
pub mod tract_reference;
