//! f16 and bf16 as ggml converts them (round to nearest even; bf16 NaN kept quiet).

#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// `ggml_compute_fp32_to_bf16`.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let i = x.to_bits();
    if i & 0x7fff_ffff > 0x7f80_0000 {
        return ((i >> 16) | 64) as u16;
    }
    (i.wrapping_add(0x7fff + ((i >> 16) & 1)) >> 16) as u16
}

#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_quiet() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (down).
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)) & 0x0040, 0x0040);
        assert_eq!(bf16_to_f32(0xc000), -2.0);
    }

    #[test]
    fn f16_round_trip_of_representable_values_is_exact() {
        for bits in [0u16, 0x3c00, 0x0001, 0x7bff, 0xfbff, 0x8400] {
            assert_eq!(f32_to_f16(f16_to_f32(bits)), bits);
        }
    }
}
