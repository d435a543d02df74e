//! Writing a GGUF file: header, metadata and tensor infos first (every offset
//! is known from the types and dims), then each tensor's payload in order,
//! produced on demand so no more than one slab of a tensor is in memory.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;

use super::{DEFAULT_ALIGNMENT, GgufValue, MAGIC, MAX_DIMS, MAX_NAME_BYTES, MAX_NESTING, VERSION};
use crate::formats::gguf::types::TensorType;
use crate::ir::error::{Error, Result};
use crate::output::AtomicFile;
use crate::progress::Progress;

/// One tensor's info; its payload comes from the `produce` callback of [`write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    /// Dims fastest first.
    pub ne: Vec<u64>,
    /// `ggml_type` id.
    pub ty: u32,
    /// Payload bytes `produce` must write.
    pub bytes: u64,
}

/// Writes a GGUF v3 file at `out` (atomically: nothing is left there on
/// error). `produce(i, sink)` writes tensor `i`'s payload; a payload of
/// another size than its spec says is an error. Returns the file size.
pub fn write(
    out: &Path,
    kv: &[(String, GgufValue)],
    tensors: &[TensorSpec],
    produce: &(dyn Fn(usize, &mut dyn Write) -> Result<()> + Sync),
    progress: &dyn Progress,
) -> Result<u64> {
    let alignment = match kv.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, GgufValue::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, v)) => {
            return Err(Error::Input(format!(
                "general.alignment {v} is not a power of two (u32)"
            )));
        }
    };
    check(kv, tensors)?;
    let mut header = Vec::new();
    header.extend(MAGIC);
    header.extend(VERSION.to_le_bytes());
    header.extend((tensors.len() as u64).to_le_bytes());
    header.extend((kv.len() as u64).to_le_bytes());
    for (key, value) in kv {
        put_string(&mut header, key);
        header.extend(value.meta_type().id().to_le_bytes());
        put_value(&mut header, value);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_string(&mut header, &t.name);
        header.extend((t.ne.len() as u32).to_le_bytes());
        for d in &t.ne {
            header.extend(d.to_le_bytes());
        }
        header.extend(t.ty.to_le_bytes());
        header.extend(offset.to_le_bytes());
        offset = (offset + t.bytes).div_ceil(alignment) * alignment;
    }
    let total_payload: u64 = tensors.iter().map(|t| t.bytes).sum();
    let file = AtomicFile::create(out).map_err(|e| Error::io(out, e))?;
    let mut sink = Counting {
        inner: file,
        written: 0,
    };
    let io = |e: io::Error| Error::io(out, e);
    sink.write_all(&header).map_err(io)?;
    pad(&mut sink, alignment).map_err(io)?;
    progress.start("writing gguf", total_payload);
    for (i, t) in tensors.iter().enumerate() {
        let before = sink.written;
        produce(i, &mut sink)?;
        let wrote = sink.written - before;
        if wrote != t.bytes {
            return Err(Error::Graph(format!(
                "tensor '{}': produced {wrote} bytes, its info says {}",
                t.name, t.bytes
            )));
        }
        pad(&mut sink, alignment).map_err(io)?;
        progress.advance(t.bytes);
    }
    progress.finish();
    let written = sink.written;
    sink.inner.commit().map_err(io)?;
    Ok(written)
}

/// Refuses what the reader (and llama.cpp) would refuse, before anything is
/// written: repeated keys or tensor names, arrays whose items are not all of
/// their element type or nest too deep, names over 63 bytes, other than 1 to
/// 4 dims, types edgeconv does not know, and payload sizes that differ from
/// what the dims and type make.
fn check(kv: &[(String, GgufValue)], tensors: &[TensorSpec]) -> Result<()> {
    let mut keys = HashSet::new();
    for (key, value) in kv {
        if !keys.insert(key) {
            return Err(Error::Input(format!("GGUF key '{key}' appears twice")));
        }
        check_value(key, value, 0)?;
    }
    let mut names = HashSet::new();
    for t in tensors {
        let bad = |why: String| Error::Input(format!("tensor '{}' {:?}: {why}", t.name, t.ne));
        if !names.insert(&t.name) {
            return Err(bad("appears twice".into()));
        }
        if t.name.len() > MAX_NAME_BYTES || t.ne.is_empty() || t.ne.len() > MAX_DIMS {
            return Err(bad(format!(
                "GGUF needs a name of at most {MAX_NAME_BYTES} bytes and 1 to {MAX_DIMS} dims"
            )));
        }
        let ty = TensorType::from_id(t.ty)
            .ok_or_else(|| bad(format!("type id {} is not one edgeconv writes", t.ty)))?;
        let bytes = ty
            .tensor_bytes(&t.ne)
            .ok_or_else(|| bad(format!("dims are not a valid {ty} tensor")))?;
        if bytes != t.bytes {
            return Err(bad(format!(
                "{ty} takes {bytes} bytes, the spec says {}",
                t.bytes
            )));
        }
    }
    Ok(())
}

fn check_value(key: &str, value: &GgufValue, depth: usize) -> Result<()> {
    let GgufValue::Array(elem, items) = value else {
        return Ok(());
    };
    if depth >= MAX_NESTING {
        return Err(Error::Input(format!(
            "GGUF key '{key}': arrays nested more than {MAX_NESTING} deep"
        )));
    }
    for item in items {
        if item.meta_type() != *elem {
            return Err(Error::Input(format!(
                "GGUF key '{key}': an array of {elem:?} holds a {:?}",
                item.meta_type()
            )));
        }
        check_value(key, item, depth + 1)?;
    }
    Ok(())
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(sink: &mut Counting<W>, alignment: u64) -> io::Result<()> {
    let padding = sink.written.div_ceil(alignment) * alignment - sink.written;
    sink.write_all(&vec![0u8; padding as usize])
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

pub(super) fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.push(*v as u8),
        GgufValue::U16(v) => out.extend(v.to_le_bytes()),
        GgufValue::I16(v) => out.extend(v.to_le_bytes()),
        GgufValue::U32(v) => out.extend(v.to_le_bytes()),
        GgufValue::I32(v) => out.extend(v.to_le_bytes()),
        GgufValue::U64(v) => out.extend(v.to_le_bytes()),
        GgufValue::I64(v) => out.extend(v.to_le_bytes()),
        GgufValue::F32(v) => out.extend(v.to_le_bytes()),
        GgufValue::F64(v) => out.extend(v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(elem, items) => {
            out.extend(elem.id().to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}
