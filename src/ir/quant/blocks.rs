//! The block structs of ggml-common.h, field for field. `#[repr(C)]` with
//! the sizes ggml asserts; each converts to and from its bytes in the file.

use crate::ir::dtype::GgmlType;

pub const QK: usize = 32;
pub const QK_K: usize = 256;

/// The blocks of a row: each block's values, its slice of the importance
/// matrix (when there is one) and its bytes in `out`.
#[inline(always)]
pub fn blocks<'a>(
    x: &'a [f32],
    out: &'a mut [u8],
    elems: usize,
    bytes: usize,
    imatrix: Option<&'a [f32]>,
) -> impl Iterator<Item = (&'a [f32], Option<&'a [f32]>, &'a mut [u8])> {
    x.chunks_exact(elems)
        .zip(out.chunks_exact_mut(bytes))
        .enumerate()
        .map(move |(i, (xb, ob))| (xb, imatrix.map(|m| &m[elems * i..elems * (i + 1)]), ob))
}

macro_rules! block {
    ($(#[$doc:meta])* $name:ident, $ty:expr, { $($field:ident : $fty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $(pub $field: $fty,)*
        }

        const _: () = assert!(std::mem::size_of::<$name>() == $ty.layout().bytes);

        impl Default for $name {
            fn default() -> $name {
                $name::load(&[0u8; $ty.layout().bytes])
            }
        }

        impl $name {
            pub const BYTES: usize = $ty.layout().bytes;

            /// Writes the block's bytes (little-endian fields in declaration order).
            pub fn store(&self, out: &mut [u8]) {
                let mut at = 0;
                $( Field::put(&self.$field, out, &mut at); )*
                debug_assert_eq!(at, Self::BYTES);
            }

            pub fn load(bytes: &[u8]) -> $name {
                let mut at = 0;
                $name { $($field: Field::get(bytes, &mut at),)* }
            }
        }
    };
}

trait Field: Sized {
    fn put(&self, out: &mut [u8], at: &mut usize);
    fn get(bytes: &[u8], at: &mut usize) -> Self;
}

impl Field for u16 {
    fn put(&self, out: &mut [u8], at: &mut usize) {
        out[*at..*at + 2].copy_from_slice(&self.to_le_bytes());
        *at += 2;
    }
    fn get(bytes: &[u8], at: &mut usize) -> u16 {
        let v = u16::from_le_bytes([bytes[*at], bytes[*at + 1]]);
        *at += 2;
        v
    }
}

impl<const N: usize> Field for [u8; N] {
    fn put(&self, out: &mut [u8], at: &mut usize) {
        out[*at..*at + N].copy_from_slice(self);
        *at += N;
    }
    fn get(bytes: &[u8], at: &mut usize) -> [u8; N] {
        let mut v = [0u8; N];
        v.copy_from_slice(&bytes[*at..*at + N]);
        *at += N;
        v
    }
}

impl<const N: usize> Field for [i8; N] {
    fn put(&self, out: &mut [u8], at: &mut usize) {
        for (o, v) in out[*at..*at + N].iter_mut().zip(self) {
            *o = *v as u8;
        }
        *at += N;
    }
    fn get(bytes: &[u8], at: &mut usize) -> [i8; N] {
        let mut v = [0i8; N];
        for (o, b) in v.iter_mut().zip(&bytes[*at..*at + N]) {
            *o = *b as i8;
        }
        *at += N;
        v
    }
}

block!(
    /// value = d * (q - 8)
    BlockQ4_0, GgmlType::Q4_0, { d: u16, qs: [u8; QK / 2] });
block!(
    /// value = d * q + m
    BlockQ4_1, GgmlType::Q4_1, { d: u16, m: u16, qs: [u8; QK / 2] });
block!(
    /// value = d * (q - 16), 5th bits in qh
    BlockQ5_0, GgmlType::Q5_0, { d: u16, qh: [u8; 4], qs: [u8; QK / 2] });
block!(
    /// value = d * q + m, 5th bits in qh
    BlockQ5_1, GgmlType::Q5_1, { d: u16, m: u16, qh: [u8; 4], qs: [u8; QK / 2] });
block!(
    /// value = d * q
    BlockQ8_0, GgmlType::Q8_0, { d: u16, qs: [i8; QK] });
block!(
    /// 16 sub-blocks of 16: 4-bit scale and min each, 2-bit quants
    BlockQ2K, GgmlType::Q2K, { scales: [u8; QK_K / 16], qs: [u8; QK_K / 4], d: u16, dmin: u16 });
block!(
    /// 16 sub-blocks of 16: 6-bit signed scales, 3-bit quants (high bit in hmask)
    BlockQ3K, GgmlType::Q3K, { hmask: [u8; QK_K / 8], qs: [u8; QK_K / 4], scales: [u8; 12], d: u16 });
block!(
    /// 8 sub-blocks of 32: 6-bit scales and mins, 4-bit quants
    BlockQ4K, GgmlType::Q4K, { d: u16, dmin: u16, scales: [u8; 12], qs: [u8; QK_K / 2] });
block!(
    /// 8 sub-blocks of 32: 6-bit scales and mins, 5-bit quants (high bit in qh)
    BlockQ5K, GgmlType::Q5K, { d: u16, dmin: u16, scales: [u8; 12], qh: [u8; QK_K / 8], qs: [u8; QK_K / 2] });
block!(
    /// 16 sub-blocks of 16: 8-bit signed scales, 6-bit quants
    BlockQ6K, GgmlType::Q6K, { ql: [u8; QK_K / 2], qh: [u8; QK_K / 4], scales: [i8; QK_K / 16], d: u16 });
