//! Calibration data readers and activation observers.
