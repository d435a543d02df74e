//! Compiler passes over the IR: cleanup, fusion, pruning, shape pinning, quantization.
