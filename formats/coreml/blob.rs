//! The MIL weight blob file (`weights/weight.bin`), storage format version 2:
//! a 64-byte header, then per blob a 64-byte metadata record followed by its
//! data, every record on a 64-byte boundary. MIL refers to a blob by the file
//! offset of its metadata record. (MLPACKAGE_NOTES.md, section 3.)

use std::io::Write;
use std::path::Path;

use bytes::Bytes;

use crate::ir::error::{Error, Result};

const HEADER_BYTES: u64 = 64;
const METADATA_BYTES: u64 = 64;
const ALIGNMENT: u64 = 64;
const VERSION: u32 = 2;
const SENTINEL: u32 = 0xDEAD_BEEF;
/// More blobs than this in one file is not a model edgeconv wrote or reads.
const MAX_BLOBS: u32 = 1 << 20;

/// `BlobDataType` of the storage format (MILBlob/Blob/BlobDataType.hpp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobDType {
    Float16 = 1,
    Float32 = 2,
    UInt8 = 3,
    Int8 = 4,
    BFloat16 = 5,
    Int16 = 6,
    UInt16 = 7,
    Int4 = 8,
    UInt1 = 9,
    UInt2 = 10,
    UInt4 = 11,
    UInt3 = 12,
    UInt6 = 13,
    Int32 = 14,
    UInt32 = 15,
}

impl BlobDType {
    fn from_code(code: u32) -> Option<BlobDType> {
        use BlobDType::*;
        Some(match code {
            1 => Float16,
            2 => Float32,
            3 => UInt8,
            4 => Int8,
            5 => BFloat16,
            6 => Int16,
            7 => UInt16,
            8 => Int4,
            9 => UInt1,
            10 => UInt2,
            11 => UInt4,
            12 => UInt3,
            13 => UInt6,
            14 => Int32,
            15 => UInt32,
            _ => return None,
        })
    }

    /// Bits per element.
    pub fn bits(self) -> u64 {
        use BlobDType::*;
        match self {
            UInt1 => 1,
            UInt2 => 2,
            UInt3 => 3,
            Int4 | UInt4 => 4,
            UInt6 => 6,
            UInt8 | Int8 => 8,
            Float16 | BFloat16 | Int16 | UInt16 => 16,
            Float32 | Int32 | UInt32 => 32,
        }
    }

    /// Bytes `elements` of this type take, sub-byte types packed.
    pub fn bytes_for(self, elements: u64) -> u64 {
        (elements * self.bits()).div_ceil(8)
    }
}

/// What a blob's bytes are made from when the file is written.
#[derive(Clone, Debug)]
pub enum BlobData {
    /// The stored bytes as they are (little-endian elements or packed sub-byte data).
    Raw(Bytes),
    /// Little-endian f32 elements, written as f16 (round to nearest even).
    F32AsF16(Bytes),
}

impl BlobData {
    fn stored_len(&self) -> u64 {
        match self {
            BlobData::Raw(b) => b.len() as u64,
            BlobData::F32AsF16(b) => b.len() as u64 / 2,
        }
    }
}

struct Blob {
    dtype: BlobDType,
    elements: u64,
    data: BlobData,
    /// Offset of the metadata record: what MIL stores.
    offset: u64,
}

/// The blobs of one weights file, each given its offset when added, so ops can
/// refer to them before anything is written.
#[derive(Default)]
pub struct BlobFile {
    blobs: Vec<Blob>,
    end: u64,
}

impl BlobFile {
    pub fn new() -> BlobFile {
        BlobFile {
            blobs: Vec::new(),
            end: HEADER_BYTES,
        }
    }

    /// Adds a blob of `elements` values of `dtype` and returns the offset MIL
    /// refers to it by. Fails when the data's size does not follow from them.
    pub fn add(&mut self, dtype: BlobDType, elements: u64, data: BlobData) -> Result<u64> {
        let expected = dtype.bytes_for(elements);
        if data.stored_len() != expected {
            return Err(Error::Graph(format!(
                "weight blob of {elements} {dtype:?} values needs {expected} bytes, has {}",
                data.stored_len()
            )));
        }
        let offset = self.end.next_multiple_of(ALIGNMENT);
        self.end = offset + METADATA_BYTES + expected;
        self.blobs.push(Blob {
            dtype,
            elements,
            data,
            offset,
        });
        Ok(offset)
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// The file's size once written (the last blob is not padded).
    pub fn file_bytes(&self) -> u64 {
        self.end
    }

    /// Writes the file, streaming each blob's bytes from its source; `done`
    /// is told the bytes written so far after each blob.
    pub fn write(&self, out: &mut dyn Write, done: &mut dyn FnMut(u64)) -> std::io::Result<()> {
        let mut header = [0u8; HEADER_BYTES as usize];
        header[0..4].copy_from_slice(&(self.blobs.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        out.write_all(&header)?;
        let mut at = HEADER_BYTES;
        for blob in &self.blobs {
            pad(out, blob.offset - at)?;
            let size = blob.dtype.bytes_for(blob.elements);
            let mut record = [0u8; METADATA_BYTES as usize];
            record[0..4].copy_from_slice(&SENTINEL.to_le_bytes());
            record[4..8].copy_from_slice(&(blob.dtype as u32).to_le_bytes());
            record[8..16].copy_from_slice(&size.to_le_bytes());
            record[16..24].copy_from_slice(&(blob.offset + METADATA_BYTES).to_le_bytes());
            record[24..32].copy_from_slice(&padding_bits(blob.dtype, blob.elements).to_le_bytes());
            out.write_all(&record)?;
            match &blob.data {
                BlobData::Raw(bytes) => out.write_all(bytes)?,
                BlobData::F32AsF16(bytes) => write_f32_as_f16(out, bytes)?,
            }
            at = blob.offset + METADATA_BYTES + size;
            done(at);
        }
        Ok(())
    }
}

/// Unused bits at the end of the last byte of a sub-byte blob.
fn padding_bits(dtype: BlobDType, elements: u64) -> u64 {
    let used = (elements * dtype.bits()) % 8;
    if used == 0 { 0 } else { 8 - used }
}

fn pad(out: &mut dyn Write, n: u64) -> std::io::Result<()> {
    const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];
    out.write_all(&ZEROS[..n as usize])
}

fn write_f32_as_f16(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(8192);
    for chunk in bytes.chunks(8192) {
        buffer.clear();
        for value in chunk.chunks_exact(4) {
            let value = f32::from_le_bytes(value.try_into().unwrap());
            buffer.extend_from_slice(&half::f16::from_f32(value).to_le_bytes());
        }
        out.write_all(&buffer)?;
    }
    Ok(())
}

/// One blob as read back: its type and stored bytes.
#[derive(Clone, Debug)]
pub struct StoredBlob {
    pub dtype: BlobDType,
    pub data: Bytes,
    pub padding_bits: u64,
}

/// A weights file opened for reading (a memory map, so blobs are zero-copy slices).
pub struct BlobReader {
    path: std::path::PathBuf,
    data: Bytes,
}

impl BlobReader {
    pub fn new(path: &Path, data: Bytes) -> Result<BlobReader> {
        let reader = BlobReader {
            path: path.to_path_buf(),
            data,
        };
        let header = reader.slice(0, HEADER_BYTES)?;
        let count = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let version = u32::from_le_bytes(header[4..8].try_into().unwrap());
        if version != VERSION {
            return Err(reader.error(4, format!("storage format version {version}, expected 2")));
        }
        if count > MAX_BLOBS {
            return Err(reader.error(0, format!("{count} blobs exceeds the limit of {MAX_BLOBS}")));
        }
        Ok(reader)
    }

    /// The blob whose metadata record is at `offset`.
    pub fn blob(&self, offset: u64) -> Result<StoredBlob> {
        if offset < HEADER_BYTES || offset % ALIGNMENT != 0 {
            return Err(self.error(
                offset,
                "blob offset is not a 64-byte aligned record after the header".into(),
            ));
        }
        let record = self.slice(offset, METADATA_BYTES)?;
        let word = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap());
        let sentinel = u32::from_le_bytes(record[0..4].try_into().unwrap());
        if sentinel != SENTINEL {
            return Err(self.error(
                offset,
                format!("blob sentinel {sentinel:#x}, expected 0xdeadbeef"),
            ));
        }
        let code = u32::from_le_bytes(record[4..8].try_into().unwrap());
        let dtype = BlobDType::from_code(code)
            .ok_or_else(|| self.error(offset + 4, format!("unknown blob data type {code}")))?;
        let (size, data_offset, padding_bits) = (word(8), word(16), word(24));
        if padding_bits >= 8 {
            return Err(self.error(
                offset + 24,
                format!("{padding_bits} padding bits (must be < 8)"),
            ));
        }
        if data_offset < offset + METADATA_BYTES {
            return Err(self.error(
                offset + 16,
                "blob data starts inside its own metadata".into(),
            ));
        }
        let data = self.slice(data_offset, size)?;
        Ok(StoredBlob {
            dtype,
            data,
            padding_bits,
        })
    }

    fn slice(&self, offset: u64, len: u64) -> Result<Bytes> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.data.len() as u64)
            .ok_or_else(|| {
                self.error(
                    offset,
                    format!(
                        "{len} bytes at offset {offset} run past the end of the file ({} bytes)",
                        self.data.len()
                    ),
                )
            })?;
        Ok(self.data.slice(offset as usize..end as usize))
    }

    fn error(&self, offset: u64, msg: String) -> Error {
        Error::Parse {
            path: self.path.clone(),
            offset,
            msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_the_storage_format() {
        // The layout coremltools' own test expects: an f32 blob of 500 values at
        // 64, the next one at 2176 (64 + 64 + 2000 rounded up to 64).
        let mut file = BlobFile::new();
        let a = Bytes::from(vec![0u8; 2000]);
        assert_eq!(
            file.add(BlobDType::Float32, 500, BlobData::Raw(a.clone()))
                .unwrap(),
            64
        );
        assert_eq!(
            file.add(BlobDType::Float32, 500, BlobData::Raw(a)).unwrap(),
            2176
        );
        let mut out = Vec::new();
        file.write(&mut out, &mut |_| {}).unwrap();
        assert_eq!(out.len() as u64, file.file_bytes());
        assert_eq!(out.len(), 2176 + 64 + 2000);
        let reader = BlobReader::new(Path::new("w.bin"), Bytes::from(out)).unwrap();
        let blob = reader.blob(2176).unwrap();
        assert_eq!((blob.dtype, blob.data.len()), (BlobDType::Float32, 2000));
    }

    #[test]
    fn sub_byte_blobs_record_their_padding_bits() {
        let mut file = BlobFile::new();
        // 5 three-bit values: 15 bits in 2 bytes, 1 unused bit.
        let offset = file
            .add(
                BlobDType::UInt3,
                5,
                BlobData::Raw(Bytes::from(vec![0xAB, 0x4D])),
            )
            .unwrap();
        let mut out = Vec::new();
        file.write(&mut out, &mut |_| {}).unwrap();
        let blob = BlobReader::new(Path::new("w.bin"), Bytes::from(out))
            .unwrap()
            .blob(offset)
            .unwrap();
        assert_eq!((blob.padding_bits, &blob.data[..]), (1, &[0xAB, 0x4D][..]));
    }

    #[test]
    fn f32_blobs_can_be_written_as_f16() {
        let values: Vec<u8> = [1.0f32, -2.5, 65504.0, 1e-8]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut file = BlobFile::new();
        let offset = file
            .add(
                BlobDType::Float16,
                4,
                BlobData::F32AsF16(Bytes::from(values)),
            )
            .unwrap();
        let mut out = Vec::new();
        file.write(&mut out, &mut |_| {}).unwrap();
        let blob = BlobReader::new(Path::new("w.bin"), Bytes::from(out))
            .unwrap()
            .blob(offset)
            .unwrap();
        let back: Vec<f32> = blob
            .data
            .chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        assert_eq!(back, [1.0, -2.5, 65504.0, 0.0]);
    }

    #[test]
    fn a_wrong_size_is_refused_when_added() {
        let mut file = BlobFile::new();
        assert!(
            file.add(
                BlobDType::Float32,
                3,
                BlobData::Raw(Bytes::from(vec![0u8; 8]))
            )
            .is_err()
        );
    }

    #[test]
    fn hostile_records_are_located_errors() {
        let mut file = BlobFile::new();
        let offset = file
            .add(BlobDType::Int8, 4, BlobData::Raw(Bytes::from(vec![1u8; 4])))
            .unwrap();
        let mut out = Vec::new();
        file.write(&mut out, &mut |_| {}).unwrap();
        let read = |bytes: Vec<u8>, at: u64| {
            BlobReader::new(Path::new("w.bin"), Bytes::from(bytes)).and_then(|r| r.blob(at))
        };
        let mut bad_sentinel = out.clone();
        bad_sentinel[64] ^= 1;
        let mut huge_size = out.clone();
        huge_size[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut bad_type = out.clone();
        bad_type[68] = 99;
        let mut bad_version = out.clone();
        bad_version[4] = 1;
        for (bytes, at) in [
            (bad_sentinel, offset),
            (huge_size, offset),
            (bad_type, offset),
            (bad_version, offset),
            (out.clone(), 65),
            (out.clone(), 1 << 40),
            (out[..100].to_vec(), offset),
        ] {
            assert!(matches!(read(bytes, at), Err(Error::Parse { .. })));
        }
    }
}
