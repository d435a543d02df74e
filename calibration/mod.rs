//! Calibration for post-training quantization: data readers (`npy`) and
//! per-tensor observers with bounded memory (`observer`).

pub mod npy;
pub mod observer;
