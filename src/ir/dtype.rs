//! Element types of IR values and weights.
//!
//! Affine quantization (scale, zero point, axis) is not part of the dtype: it
//! lives in the value's `Fact`. Block formats (GGML) and palette indices are
//! dtypes because they change how bytes map to elements.

use std::fmt;

/// GGML block formats, with the type ids of the GGUF spec (`ggml_type`).
///
/// One table ([`GgmlType::layout`]) gives elements and bytes per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
}

/// Elements and bytes of one block of a block format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    pub elems: usize,
    pub bytes: usize,
}

impl GgmlType {
    pub const ALL: [GgmlType; 12] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
    ];

    /// Block geometry from ggml-common.h (see shared/reference/gguf/KQUANTS_NOTES.md §1).
    pub const fn layout(self) -> BlockLayout {
        const QK_K: usize = 256;
        let (elems, bytes) = match self {
            GgmlType::Q4_0 => (32, 2 + 16),
            GgmlType::Q4_1 => (32, 2 + 2 + 16),
            GgmlType::Q5_0 => (32, 2 + 4 + 16),
            GgmlType::Q5_1 => (32, 2 + 2 + 4 + 16),
            GgmlType::Q8_0 => (32, 2 + 32),
            GgmlType::Q8_1 => (32, 2 + 2 + 32),
            GgmlType::Q2K => (QK_K, QK_K / 16 + QK_K / 4 + 2 + 2),
            GgmlType::Q3K => (QK_K, QK_K / 8 + QK_K / 4 + 12 + 2),
            GgmlType::Q4K => (QK_K, 2 + 2 + 12 + QK_K / 2),
            GgmlType::Q5K => (QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2),
            GgmlType::Q6K => (QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2),
            GgmlType::Q8K => (QK_K, 4 + QK_K + QK_K / 16 * 2),
        };
        BlockLayout { elems, bytes }
    }

    /// The `ggml_type` id written in GGUF tensor infos.
    pub const fn ggml_id(self) -> u32 {
        match self {
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
        }
    }

    pub fn from_ggml_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q8_1 => "q8_1",
            GgmlType::Q2K => "q2_k",
            GgmlType::Q3K => "q3_k",
            GgmlType::Q4K => "q4_k",
            GgmlType::Q5K => "q5_k",
            GgmlType::Q6K => "q6_k",
            GgmlType::Q8K => "q8_k",
        }
    }
}

/// Element type of a value or weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// Signed 4-bit integers, two per byte, low nibble first (ONNX INT4 packing).
    I4,
    /// Unsigned 4-bit integers, two per byte, low nibble first.
    U4,
    /// Strings (ONNX `STRING`): imported for fidelity, no target computes on them.
    String,
    /// GGML block-quantized rows.
    Block(GgmlType),
    /// Indices into a lookup table of `2^bits` entries, packed little-endian bit by bit.
    Palette {
        bits: u8,
    },
}

/// How many bytes `count` elements of a dtype take, for packed and block types alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Whole bytes per element.
    Bytes(usize),
    /// Elements packed at a bit width, rounded up to whole bytes.
    Bits(usize),
    /// Fixed-size blocks of elements.
    Blocks(BlockLayout),
    /// Variable size (strings).
    Variable,
}

impl DType {
    /// The dtypes with whole-byte elements (what the interpreter computes on).
    pub const DENSE: [DType; 13] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::U64,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
    ];

    pub const fn storage(self) -> Storage {
        match self {
            DType::Bool | DType::U8 | DType::I8 => Storage::Bytes(1),
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => Storage::Bytes(2),
            DType::U32 | DType::I32 | DType::F32 => Storage::Bytes(4),
            DType::U64 | DType::I64 | DType::F64 => Storage::Bytes(8),
            DType::I4 | DType::U4 => Storage::Bits(4),
            DType::Palette { bits } => Storage::Bits(bits as usize),
            DType::Block(t) => Storage::Blocks(t.layout()),
            DType::String => Storage::Variable,
        }
    }

    /// Bytes of one element, for whole-byte types.
    pub const fn size_of(self) -> Option<usize> {
        match self.storage() {
            Storage::Bytes(n) => Some(n),
            _ => None,
        }
    }

    /// Bytes taken by `count` elements; `None` on overflow, on a count that
    /// is not a whole number of blocks, or for variable-size types.
    pub fn bytes_for(self, count: u64) -> Option<u64> {
        match self.storage() {
            Storage::Bytes(n) => count.checked_mul(n as u64),
            Storage::Bits(bits) => Some(count.checked_mul(bits as u64)?.div_ceil(8)),
            Storage::Blocks(b) => {
                if count % b.elems as u64 != 0 {
                    return None;
                }
                (count / b.elems as u64).checked_mul(b.bytes as u64)
            }
            Storage::Variable => None,
        }
    }

    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    pub const fn is_integer(self) -> bool {
        matches!(
            self,
            DType::U8
                | DType::I8
                | DType::U16
                | DType::I16
                | DType::U32
                | DType::I32
                | DType::U64
                | DType::I64
                | DType::I4
                | DType::U4
        )
    }

    pub const fn is_signed(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::I4
        ) || self.is_float()
    }

    /// Short lower-case name, as used in the IR text form (`f32`, `q4_k`, `pal6`).
    pub fn name(self) -> String {
        match self {
            DType::Bool => "bool".into(),
            DType::U8 => "u8".into(),
            DType::I8 => "i8".into(),
            DType::U16 => "u16".into(),
            DType::I16 => "i16".into(),
            DType::U32 => "u32".into(),
            DType::I32 => "i32".into(),
            DType::U64 => "u64".into(),
            DType::I64 => "i64".into(),
            DType::F16 => "f16".into(),
            DType::BF16 => "bf16".into(),
            DType::F32 => "f32".into(),
            DType::F64 => "f64".into(),
            DType::I4 => "i4".into(),
            DType::U4 => "u4".into(),
            DType::String => "string".into(),
            DType::Block(t) => t.name().into(),
            DType::Palette { bits } => format!("pal{bits}"),
        }
    }

    /// Inverse of [`DType::name`].
    pub fn parse(s: &str) -> Option<DType> {
        let named = DType::DENSE
            .into_iter()
            .chain([DType::I4, DType::U4, DType::String]);
        if let Some(d) = named.into_iter().find(|d| d.name() == s) {
            return Some(d);
        }
        if let Some(t) = GgmlType::ALL.into_iter().find(|t| t.name() == s) {
            return Some(DType::Block(t));
        }
        let bits: u8 = s.strip_prefix("pal")?.parse().ok()?;
        (1..=8).contains(&bits).then_some(DType::Palette { bits })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml_common_h() {
        let expected = [
            (GgmlType::Q4_0, 18),
            (GgmlType::Q4_1, 20),
            (GgmlType::Q5_0, 22),
            (GgmlType::Q5_1, 24),
            (GgmlType::Q8_0, 34),
            (GgmlType::Q8_1, 36),
            (GgmlType::Q2K, 84),
            (GgmlType::Q3K, 110),
            (GgmlType::Q4K, 144),
            (GgmlType::Q5K, 176),
            (GgmlType::Q6K, 210),
            (GgmlType::Q8K, 292),
        ];
        for (t, bytes) in expected {
            assert_eq!(t.layout().bytes, bytes, "{t:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(DType::parse(&DType::Block(t).name()), Some(DType::Block(t)));
            assert_eq!(GgmlType::from_ggml_id(t.ggml_id()), Some(t));
        }
        assert_eq!(DType::parse("pal6"), Some(DType::Palette { bits: 6 }));
        assert_eq!(DType::parse("pal9"), None);
        assert_eq!(DType::parse("f32"), Some(DType::F32));
    }

    #[test]
    fn byte_counts_check_overflow_and_block_multiples() {
        assert_eq!(DType::F32.bytes_for(10), Some(40));
        assert_eq!(DType::I4.bytes_for(3), Some(2));
        assert_eq!(DType::Block(GgmlType::Q4K).bytes_for(512), Some(288));
        assert_eq!(DType::Block(GgmlType::Q4K).bytes_for(100), None);
        assert_eq!(DType::F64.bytes_for(u64::MAX / 4), None);
    }
}
