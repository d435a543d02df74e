//! Calibration for post-training quantization: data readers (`data`, `npy`),
//! per-tensor observers with bounded memory (`observer`), and the loop that
//! runs the reference interpreter over samples and feeds them (`calibrate`).

pub mod calibrate;
pub mod data;
pub mod npy;
pub mod observer;
