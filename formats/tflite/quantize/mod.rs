//! Post-training quantization of the lowered model: full integer
//! ([`int8::quantize`], from calibrated ranges) and dynamic range
//! ([`dynamic::quantize`], int8 weights read by float kernels), the
//! simulation that predicts the int8 model's outputs on the reference
//! interpreter ([`simulate`]) and the accuracy report built on it
//! ([`accuracy`]).

pub mod accuracy;
pub mod bias;
pub mod dynamic;
pub mod int8;
pub mod kernels;
pub mod params;
pub mod roles;
pub mod search;
pub mod simulate;

use crate::ir::error::{Error, Result};

/// The type of the model's own inputs or outputs under full-integer
/// quantization (the TFLite converter's inference_input_type /
/// inference_output_type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoType {
    #[default]
    Float,
    Int8,
    Uint8,
}

impl IoType {
    pub fn name(self) -> &'static str {
        match self {
            IoType::Float => "float",
            IoType::Int8 => "int8",
            IoType::Uint8 => "uint8",
        }
    }
}

impl std::str::FromStr for IoType {
    type Err = Error;

    fn from_str(s: &str) -> Result<IoType> {
        match s {
            "float" | "float32" => Ok(IoType::Float),
            "int8" => Ok(IoType::Int8),
            "uint8" => Ok(IoType::Uint8),
            _ => Err(Error::Input(format!(
                "'{s}' is not an I/O type: float, int8 or uint8"
            ))),
        }
    }
}

/// Node names (shell globs: `*`, `?`) to keep in float.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFilter {
    pub patterns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Int8Options {
    pub input: IoType,
    pub output: IoType,
    pub keep_float: NodeFilter,
    /// Fold the mean error of rounded filters into the biases ([`bias`]).
    pub bias_correction: bool,
}

impl Default for Int8Options {
    fn default() -> Int8Options {
        Int8Options {
            input: IoType::Float,
            output: IoType::Float,
            keep_float: NodeFilter::default(),
            bias_correction: true,
        }
    }
}
