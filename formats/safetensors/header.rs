//! The safetensors header: an 8-byte little-endian length, then that many bytes
//! of JSON mapping tensor names to `{dtype, shape, data_offsets}` plus an
//! optional `__metadata__` string map. Offsets are relative to the data section
//! that follows the header. Spec: https://github.com/huggingface/safetensors#format

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::json::{key_offset, parse_error};
use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result, Unsupported};
use crate::ir::weights::expected_bytes;

/// Bytes of the little-endian header length that starts every file.
const LENGTH_PREFIX: u64 = 8;
/// Largest JSON header accepted; the reference implementation uses the same cap.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most dims a tensor may have; far above any real model, it bounds memory on
/// hostile headers.
const MAX_RANK: usize = 64;

/// One tensor as the header describes it, checked against the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub bytes: Range<usize>,
}

/// A parsed and validated header.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Tensors in the order the header lists them.
    pub tensors: Vec<TensorEntry>,
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// Where the JSON text lies in the file, to locate later errors.
    pub json: Range<usize>,
}

/// Parses and validates the header of a safetensors file whose full contents
/// are `file` (only the header bytes are read). Every error is an
/// [`Error::Parse`] located in `path`, except F8/F6/F4 tensors, which are
/// collected into one [`Error::Unsupported`].
pub fn parse(path: &Path, file: &[u8]) -> Result<Header> {
    let file_len = file.len() as u64;
    let prefix: [u8; 8] = file
        .get(..LENGTH_PREFIX as usize)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::parse(
                path,
                0,
                format!("file is {file_len} bytes, too short for the 8-byte header length"),
            )
        })?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::parse(
            path,
            0,
            format!("header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte cap"),
        ));
    }
    if header_len > file_len - LENGTH_PREFIX {
        return Err(Error::parse(
            path,
            0,
            format!("header length {header_len} runs past the end of the {file_len}-byte file"),
        ));
    }
    let data_start = LENGTH_PREFIX + header_len;
    let json = &file[LENGTH_PREFIX as usize..data_start as usize];
    let raw: RawHeader =
        serde_json::from_slice(json).map_err(|e| parse_error(path, LENGTH_PREFIX, json, &e))?;

    let data_len = file_len - data_start;
    let locate = |name: &str, occurrence: usize| {
        LENGTH_PREFIX + key_offset(json, name, occurrence).unwrap_or(0)
    };
    let mut seen = HashSet::new();
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    let mut unsupported = Vec::new();
    for (name, raw_tensor) in raw.tensors {
        let fail = |occurrence: usize, msg: String| {
            Error::parse(
                path,
                locate(&name, occurrence),
                format!("tensor '{name}': {msg}"),
            )
        };
        if !seen.insert(name.clone()) {
            return Err(fail(1, "listed twice".into()));
        }
        let dtype = match dtype_of(&raw_tensor.dtype) {
            Ok(d) => d,
            Err(DTypeProblem::Unsupported) => {
                unsupported.push(Unsupported {
                    node: name.clone(),
                    op: format!("dtype {}", raw_tensor.dtype),
                    reason: format!(
                        "{} tensors in {} cannot be imported yet",
                        raw_tensor.dtype,
                        path.display()
                    ),
                });
                continue;
            }
            Err(DTypeProblem::Unknown) => {
                return Err(fail(0, format!("unknown dtype '{}'", raw_tensor.dtype)));
            }
        };
        let shape: Vec<usize> = raw_tensor
            .shape
            .0
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                fail(
                    0,
                    format!("shape {:?} does not fit in memory", raw_tensor.shape.0),
                )
            })?;
        let (begin, end) = raw_tensor.data_offsets;
        if begin > end {
            return Err(fail(
                0,
                format!("data_offsets [{begin}, {end}] end before they begin"),
            ));
        }
        if end > data_len {
            return Err(fail(
                0,
                format!("data_offsets [{begin}, {end}] run past the {data_len}-byte data section"),
            ));
        }
        let needed = expected_bytes(dtype, &shape)
            .ok_or_else(|| fail(0, format!("shape {shape:?} of {dtype} overflows")))?;
        if needed != end - begin {
            return Err(fail(
                0,
                format!(
                    "shape {shape:?} of {dtype} needs {needed} bytes, data_offsets [{begin}, {end}] hold {}",
                    end - begin
                ),
            ));
        }
        // Both ends are within the file, whose length fits in usize.
        let bytes = (data_start + begin) as usize..(data_start + end) as usize;
        tensors.push(TensorEntry {
            name,
            dtype,
            shape,
            bytes,
        });
    }
    check_no_overlap(path, json, &tensors)?;
    if !unsupported.is_empty() {
        return Err(Error::Unsupported(unsupported));
    }
    Ok(Header {
        tensors,
        metadata: raw.metadata.unwrap_or_default(),
        json: LENGTH_PREFIX as usize..data_start as usize,
    })
}

fn check_no_overlap(path: &Path, json: &[u8], tensors: &[TensorEntry]) -> Result<()> {
    let mut by_start: Vec<&TensorEntry> = tensors.iter().collect();
    by_start.sort_by_key(|t| (t.bytes.start, t.bytes.end));
    for pair in by_start.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.bytes.start < a.bytes.end {
            return Err(Error::parse(
                path,
                LENGTH_PREFIX + key_offset(json, &b.name, 0).unwrap_or(0),
                format!("tensor '{}' overlaps tensor '{}'", b.name, a.name),
            ));
        }
    }
    Ok(())
}

enum DTypeProblem {
    Unsupported,
    Unknown,
}

/// Maps a safetensors dtype name to the IR dtype.
fn dtype_of(name: &str) -> std::result::Result<DType, DTypeProblem> {
    Ok(match name {
        "BOOL" => DType::Bool,
        "U8" => DType::U8,
        "I8" => DType::I8,
        "U16" => DType::U16,
        "I16" => DType::I16,
        "U32" => DType::U32,
        "I32" => DType::I32,
        "U64" => DType::U64,
        "I64" => DType::I64,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F32" => DType::F32,
        "F64" => DType::F64,
        "F8_E4M3" | "F8_E5M2" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" | "F8_E8M0" | "F6_E2M3"
        | "F6_E3M2" | "F4" | "C64" => {
            return Err(DTypeProblem::Unsupported);
        }
        _ => return Err(DTypeProblem::Unknown),
    })
}

/// The header JSON, keeping document order and duplicate names (which a map
/// would silently merge) so that they can be reported.
struct RawHeader {
    tensors: Vec<(String, RawTensor)>,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: BoundedShape,
    data_offsets: (u64, u64),
}

struct BoundedShape(Vec<u64>);

impl<'de> Deserialize<'de> for BoundedShape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = BoundedShape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {MAX_RANK} non-negative dims")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<BoundedShape, A::Error> {
                let mut dims = Vec::new();
                while let Some(d) = seq.next_element::<u64>()? {
                    if dims.len() == MAX_RANK {
                        return Err(de::Error::custom(format!("more than {MAX_RANK} dims")));
                    }
                    dims.push(d);
                }
                Ok(BoundedShape(dims))
            }
        }
        deserializer.deserialize_seq(ShapeVisitor)
    }
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut header = RawHeader {
                    tensors: Vec::new(),
                    metadata: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if header.metadata.is_some() {
                            return Err(de::Error::custom("__metadata__ listed twice"));
                        }
                        header.metadata = Some(map.next_value()?);
                    } else {
                        header.tensors.push((key, map.next_value()?));
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}
