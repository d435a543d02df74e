//! NumPy `.npy` arrays and `.npz` archives of them: calibration samples,
//! `run` inputs and outputs.
//!
//! Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//! A `.npy` file is the magic `\x93NUMPY`, a major and minor version byte, the
//! header length (u16 in 1.0, u32 in 2.0 and 3.0), a Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with
//! spaces and a newline, then the raw C-order data. A `.npz` is a zip of
//! `NAME.npy` members.
//!
//! Only little-endian (or byte-order-free) numeric and bool dtypes in C order
//! are read; anything else is a located [`Error::Parse`].

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;
use crate::ir::weights::map_file;
use crate::output::AtomicFile;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Largest header accepted; numpy itself refuses headers over 10 000 bytes by default.
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Most dims an array may have (NumPy's own limit is 64).
const MAX_RANK: usize = 64;
/// Most members an `.npz` may have.
const MAX_MEMBERS: usize = 100_000;
/// Largest uncompressed `.npz` member accepted; guards against zip bombs.
const MAX_MEMBER_BYTES: u64 = 1 << 33;
/// Headers are padded so that the data starts at a multiple of this.
const HEADER_ALIGNMENT: usize = 64;

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    parse_npy(path, &map_file(path)?)
}

/// Parses the bytes of a `.npy` file; errors name `path` and the byte offset.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Tensor> {
    let header = parse_header(path, bytes)?;
    Tensor::from_bytes(header.dtype, &header.shape, &bytes[header.data_start..])
        .map_err(|e| Error::parse(path, header.data_start as u64, e.to_string()))
}

/// A memory-mapped `.npy` file whose header has been checked; rows along the
/// first axis are decoded on demand, so a file of many samples is never
/// read whole.
#[derive(Clone)]
pub struct NpyFile {
    path: PathBuf,
    map: Bytes,
    dtype: DType,
    shape: Vec<usize>,
    data_start: usize,
}

impl NpyFile {
    pub fn open(path: &Path) -> Result<NpyFile> {
        let map = map_file(path)?;
        let header = parse_header(path, &map)?;
        Ok(NpyFile {
            path: path.to_path_buf(),
            map,
            dtype: header.dtype,
            shape: header.shape,
            data_start: header.data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The whole array.
    pub fn tensor(&self) -> Result<Tensor> {
        Tensor::from_bytes(self.dtype, &self.shape, &self.map[self.data_start..])
            .map_err(|e| Error::parse(&self.path, self.data_start as u64, e.to_string()))
    }

    /// `array[index]`: one row along the first axis, that axis dropped.
    pub fn row(&self, index: usize) -> Result<Tensor> {
        let shape = self.shape.get(1..).unwrap_or_default().to_vec();
        self.slice(index, 1, &shape)
    }

    /// `array[start..start + count]` along the first axis (rank kept).
    pub fn rows(&self, start: usize, count: usize) -> Result<Tensor> {
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = count;
        }
        self.slice(start, count, &shape)
    }

    /// Rows `start..start + count` decoded as `shape`, which holds as many elements.
    fn slice(&self, start: usize, count: usize, shape: &[usize]) -> Result<Tensor> {
        let rows = self.shape.first().copied().unwrap_or(0);
        if self.shape.is_empty() || start.checked_add(count).is_none_or(|end| end > rows) {
            return Err(Error::Input(format!(
                "{}: rows {start}..{} of an array of shape {:?}",
                self.path.display(),
                start.saturating_add(count),
                self.shape
            )));
        }
        // The header check proved the whole data size fits in the file, so
        // these products do not overflow.
        let row_elements: usize = self.shape[1..].iter().product();
        let row_bytes = self.dtype.size_of().unwrap_or(1) * row_elements;
        let at = self.data_start + start * row_bytes;
        Tensor::from_bytes(self.dtype, shape, &self.map[at..at + count * row_bytes])
            .map_err(|e| Error::parse(&self.path, at as u64, e.to_string()))
    }
}

/// Checks the magic, version and header of a `.npy` file and that the data
/// after it has exactly the size the header declares.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader> {
    let fail = |offset: usize, msg: String| Error::parse(path, offset as u64, msg);
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(fail(
            0,
            "not a .npy file: missing the \\x93NUMPY magic".into(),
        ));
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(fail(bytes.len(), "file ends inside the version".into())),
    };
    let length_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => {
            return Err(fail(
                6,
                format!("unknown .npy format version {major}.{minor}"),
            ));
        }
    };
    let header_start = 8 + length_bytes;
    let length_field = bytes
        .get(8..header_start)
        .ok_or_else(|| fail(bytes.len(), "file ends inside the header length".into()))?;
    let header_len = length_field
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if header_len > MAX_HEADER_BYTES {
        return Err(fail(
            8,
            format!("header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte cap"),
        ));
    }
    let data_start = header_start + header_len;
    let header_bytes = bytes.get(header_start..data_start).ok_or_else(|| {
        fail(
            8,
            format!("header length {header_len} runs past the end of the file"),
        )
    })?;
    let header = std::str::from_utf8(header_bytes).map_err(|e| {
        fail(
            header_start + e.valid_up_to(),
            "header is not valid text".into(),
        )
    })?;
    let mut header = HeaderParser {
        text: header,
        pos: 0,
        base: header_start,
        path,
    }
    .parse()?;

    let count = header
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let expected = count
        .and_then(|c| header.dtype.bytes_for(c))
        .ok_or_else(|| fail(header_start, format!("shape {:?} overflows", header.shape)))?;
    let data = &bytes[data_start..];
    if data.len() as u64 != expected {
        return Err(fail(
            data_start,
            format!(
                "{} data bytes for {} of shape {:?}, expected {expected}",
                data.len(),
                header.dtype,
                header.shape
            ),
        ));
    }
    header.data_start = data_start;
    Ok(header)
}

/// The bytes of a version 1.0 `.npy` file (2.0 when the header needs it), as
/// `numpy.save` writes them. BF16 has no NumPy dtype and is refused.
pub fn encode_npy(tensor: &Tensor) -> Result<Vec<u8>> {
    let descr = descr_of(tensor.dtype())?;
    let shape = match tensor.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}").into_bytes();
    let (version, length_bytes) = if header.len() + 1 + 10 <= usize::from(u16::MAX) {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let unpadded = MAGIC.len() + 2 + length_bytes + header.len() + 1;
    header.resize(
        header.len() + unpadded.next_multiple_of(HEADER_ALIGNMENT) - unpadded,
        b' ',
    );
    header.push(b'\n');

    let data = tensor.to_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + length_bytes + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    let header_len = header.len() as u32;
    out.extend_from_slice(&header_len.to_le_bytes()[..length_bytes]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Reads every `NAME.npy` member of a `.npz` archive, stored or deflated, in
/// archive order. Errors inside a member name the path `ARCHIVE/MEMBER` and
/// an offset into the member's uncompressed bytes. (Member names are unique:
/// the zip reader keeps one entry per name.)
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = ZipArchive::new(BufReader::new(file))
        .map_err(|e| Error::parse(path, 0, format!("not a readable .npz (zip) archive: {e}")))?;
    if archive.len() > MAX_MEMBERS {
        return Err(Error::parse(
            path,
            0,
            format!("{} members, more than the {MAX_MEMBERS} cap", archive.len()),
        ));
    }
    let mut arrays = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| Error::parse(path, 0, format!("member {i}: {e}")))?;
        let name = member.name().to_string();
        let at = member.header_start();
        let fail = |offset: u64, msg: String| {
            Error::parse(path, offset, format!("member '{name}': {msg}"))
        };
        let Some(key) = name.strip_suffix(".npy") else {
            return Err(fail(at, "not a .npy array".into()));
        };
        let size = member.size();
        if size > MAX_MEMBER_BYTES {
            return Err(fail(
                at,
                format!("{size} bytes uncompressed, more than the {MAX_MEMBER_BYTES}-byte cap"),
            ));
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 26) as usize);
        (&mut member)
            .take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(member.data_start(), e.to_string()))?;
        if bytes.len() as u64 != size {
            return Err(fail(
                member.data_start(),
                format!(
                    "{} bytes uncompressed, the archive declares {size}",
                    bytes.len()
                ),
            ));
        }
        let tensor = parse_npy(&member_path(path, &name), &bytes)?;
        arrays.push((key.to_string(), tensor));
    }
    Ok(arrays)
}

/// Writes `arrays` as a `.npz` that `numpy.load` reads: members `NAME.npy`
/// in the given order, stored uncompressed, with fixed timestamps and
/// permissions so equal inputs give identical files. The archive is written
/// next to `path` and renamed into place when complete.
pub fn write_npz(path: &Path, arrays: &[(&str, &Tensor)]) -> Result<()> {
    let mut names = HashSet::new();
    if let Some((dup, _)) = arrays.iter().find(|(name, _)| !names.insert(*name)) {
        return Err(Error::Input(format!(
            "{}: array name '{dup}' given twice",
            path.display()
        )));
    }
    let encoded: Vec<(String, Vec<u8>)> = arrays
        .iter()
        .map(|(name, t)| {
            encode_npy(t)
                .map(|bytes| (format!("{name}.npy"), bytes))
                .map_err(|e| Error::Input(format!("{}: array '{name}': {e}", path.display())))
        })
        .collect::<Result<_>>()?;

    let mut file = AtomicFile::create(path).map_err(|e| Error::io(path, e))?;
    write_zip(&mut file, &encoded).map_err(|e| Error::io(path, e))?;
    file.commit().map_err(|e| Error::io(path, e))
}

fn write_zip(file: &mut AtomicFile, members: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let mut zip = ZipWriter::new(file);
    for (name, bytes) in members {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
        zip.start_file(name.as_str(), options)?;
        zip.write_all(bytes)?;
    }
    zip.finish()?;
    Ok(())
}

fn member_path(archive: &Path, member: &str) -> PathBuf {
    PathBuf::from(format!("{}/{member}", archive.display()))
}

fn descr_of(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::Bool => "|b1",
        DType::U8 => "|u1",
        DType::I8 => "|i1",
        DType::U16 => "<u2",
        DType::I16 => "<i2",
        DType::U32 => "<u4",
        DType::I32 => "<i4",
        DType::U64 => "<u8",
        DType::I64 => "<i8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        other => {
            return Err(Error::Input(format!(
                "{other} has no NumPy dtype; cast it to f32 first"
            )));
        }
    })
}

/// The dtype of a descr without its byte-order character (`f4`).
fn dtype_of_code(code: &str) -> Option<DType> {
    Some(match code {
        "b1" => DType::Bool,
        "u1" => DType::U8,
        "i1" => DType::I8,
        "u2" => DType::U16,
        "i2" => DType::I16,
        "u4" => DType::U32,
        "i4" => DType::I32,
        "u8" => DType::U64,
        "i8" => DType::I64,
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        _ => return None,
    })
}

/// What a `.npy` header says.
struct NpyHeader {
    dtype: DType,
    shape: Vec<usize>,
    data_start: usize,
}

/// A parser for the Python dict literal of a `.npy` header.
struct HeaderParser<'a> {
    text: &'a str,
    pos: usize,
    /// Offset of `text` in the file, for error locations.
    base: usize,
    path: &'a Path,
}

impl HeaderParser<'_> {
    fn fail(&self, msg: impl Into<String>) -> Error {
        Error::parse(self.path, (self.base + self.pos) as u64, msg.into())
    }

    fn skip_space(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.skip_space();
        if self.peek() != Some(c) {
            return Err(self.fail(format!("expected '{}' in the header", c as char)));
        }
        self.pos += 1;
        Ok(())
    }

    fn parse(mut self) -> Result<NpyHeader> {
        self.expect(b'{')?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            self.skip_space();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key_at = self.pos;
            let key = self.string()?;
            self.expect(b':')?;
            self.skip_space();
            let slot_taken = match key.as_str() {
                "descr" => descr.replace(self.descr()?).is_some(),
                "fortran_order" => fortran.replace(self.boolean()?).is_some(),
                "shape" => shape.replace(self.shape()?).is_some(),
                _ => {
                    self.pos = key_at;
                    return Err(self.fail(format!("unexpected header key '{key}'")));
                }
            };
            if slot_taken {
                self.pos = key_at;
                return Err(self.fail(format!("header key '{key}' given twice")));
            }
            self.skip_space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.fail("expected ',' or '}' in the header")),
            }
        }
        self.skip_space();
        if self.pos != self.text.len() {
            return Err(self.fail("unexpected text after the header dict"));
        }
        let missing = |key: &str| self.fail(format!("header has no '{key}'"));
        let dtype = descr.ok_or_else(|| missing("descr"))?;
        let shape = shape.ok_or_else(|| missing("shape"))?;
        if fortran.ok_or_else(|| missing("fortran_order"))? {
            return Err(self.fail(
                "Fortran-order arrays are not supported; save a C-order array (np.ascontiguousarray)",
            ));
        }
        Ok(NpyHeader {
            dtype,
            shape,
            data_start: 0,
        })
    }

    fn string(&mut self) -> Result<String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.fail("expected a quoted string")),
        };
        let start = self.pos + 1;
        let len = self.text[start..]
            .bytes()
            .position(|b| b == quote)
            .ok_or_else(|| self.fail("unterminated string"))?;
        self.pos = start + len + 1;
        Ok(self.text[start..start + len].to_string())
    }

    fn boolean(&mut self) -> Result<bool> {
        for (word, value) in [("True", true), ("False", false)] {
            if self.text[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        Err(self.fail("expected True or False"))
    }

    fn descr(&mut self) -> Result<DType> {
        let at = self.pos;
        if self.peek() == Some(b'[') {
            return Err(self.fail("structured dtypes are not supported"));
        }
        let descr = self.string()?;
        let Some(dtype) = descr.get(1..).and_then(dtype_of_code) else {
            self.pos = at;
            return Err(self.fail(format!(
                "dtype '{descr}' is not supported (bool, int8..int64, uint8..uint64, float16/32/64)"
            )));
        };
        let single_byte = dtype.size_of() == Some(1);
        match descr.as_bytes()[0] {
            b'<' => {}
            b'|' | b'>' if single_byte => {}
            b'>' => {
                self.pos = at;
                return Err(self.fail(format!(
                    "big-endian dtype '{descr}' is not supported; save with dtype '<{}'",
                    &descr[1..]
                )));
            }
            _ => {
                self.pos = at;
                return Err(self.fail(format!("dtype '{descr}' has no explicit byte order")));
            }
        }
        Ok(dtype)
    }

    fn shape(&mut self) -> Result<Vec<usize>> {
        if self.peek() != Some(b'(') {
            return Err(self.fail("expected a shape tuple"));
        }
        self.pos += 1;
        let mut dims = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(dims);
                }
                Some(b'0'..=b'9') => {}
                _ => return Err(self.fail("expected a dim or ')' in the shape")),
            }
            if dims.len() == MAX_RANK {
                return Err(self.fail(format!("more than {MAX_RANK} dims")));
            }
            let digits = self.text[self.pos..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let dim = self.text[self.pos..self.pos + digits]
                .parse::<usize>()
                .map_err(|_| self.fail("dim too large"))?;
            self.pos += digits;
            if self.peek() == Some(b'L') {
                self.pos += 1;
            }
            dims.push(dim);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {}
                _ => return Err(self.fail("expected ',' or ')' in the shape")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
