//! Parsing a GGUF file over a memory map.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{DEFAULT_ALIGNMENT, GgufValue, MAGIC, MAX_DIMS, MAX_NAME_BYTES, MAX_NESTING, MetaType};
use crate::formats::gguf::types::TensorType;
use crate::ir::error::{Error, Result};
use crate::ir::weights::map_file;

/// A parsed GGUF file; tensor data stays in the map.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub kv: Vec<(String, GgufValue)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Byte offset of the data section.
    pub data_offset: u64,
    pub map: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dims fastest first.
    pub ne: Vec<u64>,
    pub ty: TensorType,
    /// Absolute byte range in the file.
    pub start: u64,
    pub bytes: u64,
}

impl GgufFile {
    pub fn data(&self, tensor: &TensorInfo) -> Bytes {
        self.map
            .slice(tensor.start as usize..(tensor.start + tensor.bytes) as usize)
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An F32 tensor's values.
    pub fn f32_values(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        if tensor.ty != TensorType::F32 {
            return Err(Error::parse(
                &self.path,
                tensor.start,
                format!("tensor '{}' is {}, expected F32", tensor.name, tensor.ty),
            ));
        }
        Ok(self
            .data(tensor)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Array elements reserved before any is read.
const MAX_RESERVED_ITEMS: usize = 1 << 16;

pub fn read(path: &Path) -> Result<GgufFile> {
    let map = map_file(path)?;
    parse(path, map)
}

/// GGUF type ids llama.cpp knows that edgeconv does not read, for messages.
fn unsupported_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        9 => "Q8_1",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn error(&self, at: usize, msg: impl Into<String>) -> Error {
        Error::parse(self.path, at as u64, msg)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if n > self.left() {
            return Err(self.error(
                self.pos,
                format!("{what}: needs {n} bytes, the file has {} left", self.left()),
            ));
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each at least `min_bytes` long, checked against the bytes left.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.saturating_mul(min_bytes.max(1)) <= self.left());
        fits.ok_or_else(|| {
            self.error(
                at,
                format!("{what} {n} cannot fit in the {} bytes left", self.left()),
            )
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.count(what, 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error(at, format!("{what} is not UTF-8")))
    }

    fn value(&mut self, ty: MetaType, depth: usize) -> Result<GgufValue> {
        Ok(match ty {
            MetaType::U8 => GgufValue::U8(self.array::<1>("u8")?[0]),
            MetaType::I8 => GgufValue::I8(self.array::<1>("i8")?[0] as i8),
            MetaType::U16 => GgufValue::U16(u16::from_le_bytes(self.array("u16")?)),
            MetaType::I16 => GgufValue::I16(i16::from_le_bytes(self.array("i16")?)),
            MetaType::U32 => GgufValue::U32(self.u32("u32")?),
            MetaType::I32 => GgufValue::I32(i32::from_le_bytes(self.array("i32")?)),
            MetaType::U64 => GgufValue::U64(self.u64("u64")?),
            MetaType::I64 => GgufValue::I64(i64::from_le_bytes(self.array("i64")?)),
            MetaType::F32 => GgufValue::F32(f32::from_le_bytes(self.array("f32")?)),
            MetaType::F64 => GgufValue::F64(f64::from_le_bytes(self.array("f64")?)),
            MetaType::Bool => {
                let at = self.pos;
                match self.array::<1>("bool")?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return Err(self.error(at, format!("bool value {b} is neither 0 nor 1"))),
                }
            }
            MetaType::String => GgufValue::String(self.string("string length")?),
            MetaType::Array => {
                if depth >= MAX_NESTING {
                    return Err(self.error(
                        self.pos,
                        format!("arrays nested more than {MAX_NESTING} deep"),
                    ));
                }
                let elem = self.meta_type("array element type")?;
                // Strings and arrays take at least their 8-byte length each.
                let min = elem.fixed_size().unwrap_or(8);
                let n = self.count("array length", min)?;
                // A value takes far more memory than its bytes in the file
                // (32 for a u8): reserve for a bounded prefix only, so memory
                // grows with the elements actually present.
                let mut items = Vec::with_capacity(n.min(MAX_RESERVED_ITEMS));
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                GgufValue::Array(elem, items)
            }
        })
    }

    fn meta_type(&mut self, what: &str) -> Result<MetaType> {
        let at = self.pos;
        let id = self.u32(what)?;
        MetaType::from_id(id)
            .ok_or_else(|| self.error(at, format!("{what} {id} is not a GGUF value type")))
    }
}

fn parse(path: &Path, map: Bytes) -> Result<GgufFile> {
    let mut c = Cursor {
        path,
        data: &map,
        pos: 0,
    };
    let magic = c.array::<4>("magic")?;
    if &magic != MAGIC {
        return Err(c.error(0, format!("not a GGUF file (magic {magic:02x?})")));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        let msg = if (1..=3).contains(&version.swap_bytes()) {
            "a big-endian GGUF file; edgeconv reads little-endian ones".to_string()
        } else {
            format!("GGUF version {version}; edgeconv reads versions 2 and 3")
        };
        return Err(c.error(4, msg));
    }
    // A tensor info takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes.
    let n_tensors = c.count("tensor count", 32)?;
    // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes.
    let n_kv = c.count("metadata count", 13)?;
    let mut kv = Vec::with_capacity(n_kv);
    let mut keys = HashSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let at = c.pos;
        let key = c.string("key length")?;
        if !keys.insert(key.clone()) {
            return Err(c.error(at, format!("key '{key}' appears twice")));
        }
        let type_at = c.pos;
        let ty = c.meta_type("value type")?;
        let value = c.value(ty, 0)?;
        if key == "general.alignment" {
            alignment = match value {
                GgufValue::U32(a) if a.is_power_of_two() => u64::from(a),
                ref v => {
                    return Err(c.error(
                        type_at,
                        format!("general.alignment {v} is not a power of two (u32)"),
                    ));
                }
            };
        }
        kv.push((key, value));
    }
    let mut infos = Vec::with_capacity(n_tensors);
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let at = c.pos;
        let name = c.string("tensor name length")?;
        if name.len() > MAX_NAME_BYTES {
            return Err(c.error(
                at,
                format!("tensor name '{name}' is longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(c.error(at, format!("tensor '{name}' appears twice")));
        }
        let dims_at = c.pos;
        let n_dims = c.u32("dimension count")? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.error(
                dims_at,
                format!("tensor '{name}': {n_dims} dimensions (1 to {MAX_DIMS})"),
            ));
        }
        let mut ne = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            ne.push(c.u64("dimension")?);
        }
        let type_at = c.pos;
        let id = c.u32("tensor type")?;
        let ty = TensorType::from_id(id).ok_or_else(|| {
            let known = unsupported_type_name(id).map_or("an unknown type".to_string(), |n| {
                format!("{n}, which edgeconv does not read")
            });
            c.error(type_at, format!("tensor '{name}': type id {id} is {known}"))
        })?;
        let offset_at = c.pos;
        let offset = c.u64("tensor offset")?;
        let Some(bytes) = ty.tensor_bytes(&ne) else {
            return Err(c.error(
                dims_at,
                format!("tensor '{name}': dims {ne:?} are not a valid {ty} tensor"),
            ));
        };
        if offset % alignment != 0 {
            return Err(c.error(
                offset_at,
                format!("tensor '{name}': offset {offset} is not a multiple of {alignment}"),
            ));
        }
        infos.push((name, ne, ty, offset, bytes, offset_at));
    }
    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = map.len() as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    let mut ranges = Vec::with_capacity(infos.len());
    for (name, ne, ty, offset, bytes, offset_at) in infos {
        let start = data_offset.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(bytes));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(Error::parse(
                path,
                offset_at as u64,
                format!("tensor '{name}': offset {offset} overflows"),
            ));
        };
        if end > file_len {
            return Err(Error::parse(
                path,
                offset_at as u64,
                format!(
                    "tensor '{name}': bytes {start}..{end} run past the end of the file ({file_len} bytes)"
                ),
            ));
        }
        ranges.push((start, end, name.clone(), offset_at));
        tensors.push(TensorInfo {
            name,
            ne,
            ty,
            start,
            bytes,
        });
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(Error::parse(
                path,
                pair[1].3 as u64,
                format!("tensor '{}' overlaps tensor '{}'", pair[1].2, pair[0].2),
            ));
        }
    }
    Ok(GgufFile {
        path: path.to_path_buf(),
        version,
        kv,
        tensors,
        alignment,
        data_offset,
        map,
    })
}

#[cfg(test)]
pub(super) fn parse_bytes(path: &Path, data: Vec<u8>) -> Result<GgufFile> {
    parse(path, Bytes::from(data))
}
