//! Importers (ONNX, safetensors) and target writers.

pub mod onnx;
