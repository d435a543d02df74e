//! Calibration data readers and activation observers.

pub mod npy;
