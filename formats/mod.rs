//! Importers (ONNX, safetensors) and target writers.
