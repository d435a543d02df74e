//! What TFLite's int8 kernels accept: for each builtin with an int8 kernel,
//! how its output is quantized and which inputs are weights.

use super::params::{ActParams, SIGNED_UNIT_INTERVAL, UNIT_INTERVAL};
use crate::formats::tflite::schema as tfl;

/// How the output parameters of an int8 operator are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    /// From the calibrated range of the value it holds; the kernel rescales.
    Calibrated,
    /// The kernel moves or selects elements without rescaling: the output
    /// (and every other float input) shares the first input's parameters.
    SameAsInput,
    /// Fixed by the kernel (LOGISTIC, SOFTMAX, TANH).
    Fixed(ActParams),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Kernel {
    pub output: Output,
    /// The input holding a filter, quantized symmetric per channel along
    /// this axis of the TFLite tensor.
    pub filter: Option<(usize, usize)>,
    /// The input holding an int32 bias (scale = input scale x filter scale).
    pub bias: Option<usize>,
    /// Every float input is requantized to the output's parameters first
    /// (CONCATENATION's int8 kernel copies bytes).
    pub inputs_share_output: bool,
    /// The op version whose kernel first took int8.
    pub version: i32,
}

const fn kernel(output: Output, version: i32) -> Int8Kernel {
    Int8Kernel {
        output,
        filter: None,
        bias: None,
        inputs_share_output: false,
        version,
    }
}

/// The int8 kernel of `code`, if TFLite has one that this quantizer drives.
pub fn int8_kernel(code: tfl::BuiltinOperator) -> Option<Int8Kernel> {
    use Output::{Calibrated, Fixed, SameAsInput};
    use tfl::BuiltinOperator as B;
    let weighted = |filter_axis: usize, version: i32| Int8Kernel {
        filter: Some((1, filter_axis)),
        bias: Some(2),
        ..kernel(Calibrated, version)
    };
    Some(match code {
        B::CONV_2D => weighted(0, 3),
        B::DEPTHWISE_CONV_2D => weighted(3, 3),
        B::FULLY_CONNECTED => weighted(0, 4),
        B::ADD | B::SUB | B::MUL | B::MEAN | B::SUM => kernel(Calibrated, 2),
        B::HARD_SWISH | B::RELU_N1_TO_1 => kernel(Calibrated, 1),
        B::RELU | B::RELU6 | B::LEAKY_RELU => kernel(Calibrated, 2),
        B::SQUARED_DIFFERENCE | B::RSQRT => kernel(Calibrated, 2),
        B::CONCATENATION => Int8Kernel {
            inputs_share_output: true,
            ..kernel(Calibrated, 2)
        },
        B::LOGISTIC | B::SOFTMAX => kernel(Fixed(UNIT_INTERVAL), 2),
        B::TANH => kernel(Fixed(SIGNED_UNIT_INTERVAL), 2),
        B::RESHAPE | B::SQUEEZE | B::EXPAND_DIMS => kernel(SameAsInput, 1),
        B::TILE => kernel(SameAsInput, 1),
        B::TRANSPOSE
        | B::PAD
        | B::PADV2
        | B::MAX_POOL_2D
        | B::AVERAGE_POOL_2D
        | B::SLICE
        | B::STRIDED_SLICE
        | B::SPLIT
        | B::SPLIT_V
        | B::GATHER
        | B::RESIZE_NEAREST_NEIGHBOR
        | B::RESIZE_BILINEAR
        | B::REDUCE_MAX
        | B::MAXIMUM
        | B::MINIMUM
        | B::DEPTH_TO_SPACE
        | B::SPACE_TO_DEPTH
        | B::PACK
        | B::UNPACK => kernel(SameAsInput, 2),
        _ => return None,
    })
}
