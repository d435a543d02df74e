//! Calibration for post-training quantization: data readers (`data`, `npy`)
//! and per-tensor observers with bounded memory (`observer`).

pub mod data;
pub mod npy;
pub mod observer;
