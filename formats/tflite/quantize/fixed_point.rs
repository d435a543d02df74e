//! The integer arithmetic of TFLite's int8 kernels where it departs from
//! rounding the exact result, for the simulation: an op of one int8 input
//! becomes a 256-entry table computed exactly as the kernel computes it.

use super::params::ActParams;

/// TFLite's `QuantizeMultiplier`: `m = q * 2^(shift - 31)`, `q` in Q31.
fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 {
        return (0, 0);
    }
    let (frac, mut shift) = frexp(m);
    let mut q = (frac * f64::from(1u32 << 31)).round() as i64;
    if q == 1i64 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    (q as i32, shift)
}

/// The right shift TFLite's `MultiplyByQuantizedMultiplier` applies after
/// its first rounding, for an effective output multiplier `m`: the product
/// is rounded to `1 / 2^shift` of an output step first, then to a step
/// (half away from zero).
pub fn requantize_right_shift(m: f64) -> i32 {
    let (_, shift) = quantize_multiplier(m);
    (-shift).max(0)
}

/// `x = frac * 2^exp` with `frac` in [0.5, 1).
fn frexp(x: f64) -> (f64, i32) {
    let exp = x.abs().log2().floor() as i32 + 1;
    let mut frac = x / 2f64.powi(exp);
    let mut exp = exp;
    // log2 may land one off for values next to a power of two.
    if frac.abs() >= 1.0 {
        frac /= 2.0;
        exp += 1;
    } else if frac.abs() < 0.5 {
        frac *= 2.0;
        exp -= 1;
    }
    (frac, exp)
}

/// TFLite's `DownScaleInt32ToInt16Multiplier`.
fn downscale_to_i16(m: i32) -> i16 {
    const ROUNDING: i32 = 1 << 15;
    if m >= i32::MAX - ROUNDING {
        return i16::MAX;
    }
    ((m + ROUNDING) >> 16) as i16
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul` for int16.
fn rounding_doubling_high_mul(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    let ab = i32::from(a) * i32::from(b);
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// TFLite's `SaturatingDoublingHighMul` for int16 (truncating).
fn doubling_high_mul(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    ((i32::from(a) * i32::from(b)) / (1 << 15)) as i16
}

/// gemmlowp's `RoundingDivideByPOT` for int16.
fn rounding_divide_by_pot(x: i16, exponent: i32) -> i16 {
    let mask = (1i32 << exponent) - 1;
    let x = i32::from(x);
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    ((x >> exponent) + i32::from(remainder > threshold)) as i16
}

fn saturating_left_shift(x: i16, shift: i32) -> i16 {
    (i32::from(x) << shift).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// HARD_SWISH's int8 outputs for every input `q` (table index `q as u8`),
/// dequantized: `reference_ops::HardSwish` with the parameters
/// `HardSwishPrepare` derives.
pub fn hard_swish_table(input: ActParams, output: ActParams) -> [f32; 256] {
    let hires_input_scale = f64::from(1.0f32 / 128.0 * input.scale);
    let reluish_scale = f64::from(3.0f32 / 32768.0);
    let (out_q31, out_exp) =
        quantize_multiplier(f64::from((hires_input_scale as f32) / output.scale));
    let out_mul = downscale_to_i16(out_q31);
    let (relu_q31, relu_exp) = quantize_multiplier(f64::from(
        (hires_input_scale as f32) / (reluish_scale as f32),
    ));
    let relu_mul = downscale_to_i16(relu_q31);
    let mut table = [0f32; 256];
    for q in -128i32..=127 {
        let input_value = (q - input.zero_point) as i16;
        let hires = input_value.wrapping_mul(1 << 7);
        let preshift_output = rounding_doubling_high_mul(hires, out_mul);
        let mut reluish = hires;
        if relu_exp > 0 {
            reluish = saturating_left_shift(reluish, relu_exp - 1);
        }
        reluish = rounding_doubling_high_mul(reluish, relu_mul);
        if relu_exp > 0 {
            reluish = saturating_left_shift(reluish, 1);
        }
        if relu_exp < 0 {
            reluish = rounding_divide_by_pot(reluish, -relu_exp);
        }
        let reluish = ((i32::from(reluish) + (1 << 15)) >> 1) as i16;
        let preshift = doubling_high_mul(reluish, preshift_output);
        let value = i32::from(rounding_divide_by_pot(preshift, -out_exp)) + output.zero_point;
        table[(q as i8 as u8) as usize] = output.dequantize(value.clamp(-128, 127) as i8);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_splits_like_c() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
    }

    #[test]
    fn hard_swish_table_is_hard_swish_within_a_step_or_two() {
        let input = ActParams::of_range(-4.0, 8.0);
        let output = ActParams::of_range(-0.375, 8.0);
        let table = hard_swish_table(input, output);
        for q in -128i32..=127 {
            let x = input.dequantize(q as i8);
            let exact = x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
            let got = table[(q as i8 as u8) as usize];
            assert!(
                (got - exact).abs() <= 2.0 * output.scale,
                "q {q}: x {x} -> {got}, hard swish {exact}"
            );
        }
    }
}
