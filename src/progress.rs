//! Progress reporting for long work (model loads, calibration, quantization).
//!
//! Library code reports through [`Progress`]; the CLI turns it into a progress
//! bar on a terminal and stays silent otherwise.

/// Receives progress of one long task at a time.
pub trait Progress: Sync {
    /// A task of `total` units (bytes, tensors, samples) begins.
    fn start(&self, task: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
