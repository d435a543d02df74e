//! Quantization parameters as TFLite's int8 specification fixes them, and
//! the conversions of float data into them. Shared by the model rewrite and
//! the simulation, so both round every weight the same way.

use crate::calibration::observer::Range;

/// Affine int8 parameters of an activation: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// LOGISTIC and SOFTMAX outputs: `[0, 1)` in steps of 1/256.
pub const UNIT_INTERVAL: ActParams = ActParams {
    scale: 1.0 / 256.0,
    zero_point: -128,
};

/// TANH outputs: `[-1, 1)` in steps of 1/128.
pub const SIGNED_UNIT_INTERVAL: ActParams = ActParams {
    scale: 1.0 / 128.0,
    zero_point: 0,
};

impl ActParams {
    /// Asymmetric int8 parameters covering `[min, max]`, widened to contain
    /// zero (so zero is exact, as padding and ReLU need), with the zero point
    /// nudged to an integer as the TFLite converter does.
    pub fn of_range(min: f64, max: f64) -> ActParams {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        if !(hi - lo).is_finite() || hi - lo <= f64::from(f32::MIN_POSITIVE) * 255.0 {
            return ActParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = (hi - lo) / 255.0;
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
        ActParams {
            scale: scale as f32,
            zero_point,
        }
    }

    pub fn of(range: &Range) -> ActParams {
        ActParams::of_range(f64::from(range.min), f64::from(range.max))
    }

    pub fn quantize(&self, x: f32) -> i8 {
        let q = round_half_away(f64::from(x) / f64::from(self.scale)) + f64::from(self.zero_point);
        q.clamp(-128.0, 127.0) as i8
    }

    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - self.zero_point) as f32
    }

    /// The same real values in uint8 (`q + 128`).
    pub fn as_uint8_zero_point(&self) -> i32 {
        self.zero_point + 128
    }
}

/// TFLite's rounding of real values to integers (`std::round`).
pub fn round_half_away(x: f64) -> f64 {
    x.round()
}

/// Symmetric per-channel int8 weights (zero point 0, range [-127, 127]):
/// `values` is row-major with `channels` slices along one axis, described by
/// `channel_of(flat index)`. Returns the int8 data and one scale per channel.
pub fn symmetric_per_channel(
    values: &[f32],
    channels: usize,
    channel_of: impl Fn(usize) -> usize,
) -> (Vec<i8>, Vec<f32>) {
    let mut max_abs = vec![0f32; channels];
    for (i, &x) in values.iter().enumerate() {
        let c = channel_of(i);
        max_abs[c] = max_abs[c].max(x.abs());
    }
    let scales: Vec<f32> = max_abs
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let data = values
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = scales[channel_of(i)];
            round_half_away(f64::from(x) / f64::from(s)).clamp(-127.0, 127.0) as i8
        })
        .collect();
    (data, scales)
}

/// A channel index function for `axis` of a row-major tensor of `shape`.
pub fn channel_index(shape: &[usize], axis: usize) -> impl Fn(usize) -> usize + use<> {
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    move |i| (i / inner.max(1)) % len.max(1)
}

/// int32 biases with scale `input_scale * weight_scale[c]` per channel.
pub fn bias_int32(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = bias
        .iter()
        .enumerate()
        .map(|(c, _)| input_scale * weight_scales[c.min(weight_scales.len() - 1)])
        .collect();
    let data = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| {
            round_half_away(f64::from(b) / f64::from(s))
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect();
    (data, scales)
}

/// Per-tensor asymmetric int8 of a constant by its own min and max.
pub fn asymmetric_per_tensor(values: &[f32]) -> (Vec<i8>, ActParams) {
    let (min, max) = values
        .iter()
        .filter(|x| x.is_finite())
        .fold((0f64, 0f64), |(lo, hi), &x| {
            (lo.min(f64::from(x)), hi.max(f64::from(x)))
        });
    let p = ActParams::of_range(min, max);
    (values.iter().map(|&x| p.quantize(x)).collect(), p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_exact_and_the_range_is_covered() {
        let p = ActParams::of_range(-1.0, 3.0);
        assert_eq!(p.dequantize(p.quantize(0.0)), 0.0);
        assert!((p.dequantize(p.quantize(3.0)) - 3.0).abs() <= p.scale / 2.0 + 1e-6);
        assert!((p.dequantize(p.quantize(-1.0)) + 1.0).abs() <= p.scale / 2.0 + 1e-6);
        // A positive range still contains zero: q = -128 is 0.0.
        let relu = ActParams::of_range(0.5, 6.0);
        assert_eq!(relu.zero_point, -128);
        assert!((relu.scale - 6.0 / 255.0).abs() < 1e-9);
    }

    #[test]
    fn per_channel_scales_follow_each_channels_largest_magnitude() {
        // [2 channels, 3]: channel 0 max |w| 2, channel 1 max |w| 0.5.
        let w = [1.0, -2.0, 0.5, 0.25, 0.5, -0.5];
        let (q, s) = symmetric_per_channel(&w, 2, channel_index(&[2, 3], 0));
        assert_eq!(s, vec![2.0 / 127.0, 0.5 / 127.0]);
        assert_eq!(q, vec![64, -127, 32, 64, 127, -127]);
        // Channels along the last axis ([3, 2]).
        let (_, s) = symmetric_per_channel(&w, 2, channel_index(&[3, 2], 1));
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0]);
    }

    #[test]
    fn bias_scale_is_input_times_weight_scale() {
        let (q, s) = bias_int32(&[1.0, -1.0], 0.5, &[0.1, 0.01]);
        assert_eq!(s, vec![0.05, 0.005]);
        assert_eq!(q, vec![20, -200]);
    }
}
