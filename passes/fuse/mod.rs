//! Fusion and pattern recognition: folding BatchNormalization into the op
//! before it, biased linear ops, fused activations, and decomposed
//! normalizations, activations, attention and weight dequantization
//! recognised as single IR ops. One file per rule family; the shared
//! matching helpers are in [`matching`].

pub mod activation_patterns;
pub mod attention;
pub mod batchnorm;
pub mod dequantize;
pub mod fuse_activation;
pub mod linear;
pub mod matching;
pub mod norm;

#[cfg(test)]
pub(crate) mod testing;

pub use activation_patterns::RecognizeActivations;
pub use attention::RecognizeAttention;
pub use batchnorm::FoldBatchNorm;
pub use dequantize::RecognizeDequantize;
pub use fuse_activation::FuseActivation;
pub use linear::FuseLinear;
pub use norm::RecognizeNormalization;
