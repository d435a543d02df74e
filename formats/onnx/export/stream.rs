//! Writes a `ModelProto` whose initializer bytes are streamed from the lazy
//! weight store instead of being copied into the message.
//!
//! prost encodes whole messages into memory, which for the initializers would
//! mean a heap copy of every weight. So the model is written as protobuf
//! framing by hand around small prost-encoded pieces: the model's own fields
//! (graph left out), then field 7 (`graph`) with its length computed up front,
//! the graph's fields without initializers, then one field 5 (`initializer`)
//! per tensor: its header fields (name, dims, type) encoded by prost, then
//! field 9 (`raw_data`) copied straight from the memory-mapped source. Field
//! order does not matter to protobuf parsers, and the sizes are all known
//! before a byte is written, so the file streams in one pass.
//!
//! Protobuf messages cannot exceed 2 GiB, so above that (or when asked) the
//! tensors of at least [`EXTERNAL_MIN_BYTES`] go to one external data file
//! next to the model, each at a page-aligned offset, as ONNX's
//! external-data convention describes (`location`, `offset`, `length`).

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::formats::onnx::proto::tensor_proto::DataLocation;
use crate::formats::onnx::proto::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use crate::ir::error::{Error, Result};
use crate::output::AtomicFile;
use crate::progress::Progress;

/// Protobuf's hard limit on a message (2 GiB - 1).
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

/// Smaller tensors stay inline even when others go to external data (as
/// `onnx.external_data_helper` does by default).
pub const EXTERNAL_MIN_BYTES: usize = 1024;

/// External tensors start at multiples of this, so runtimes can map them.
const EXTERNAL_ALIGNMENT: u64 = 4096;

/// ModelProto field numbers (onnx.proto).
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;

/// Bytes written per progress step.
const CHUNK: usize = 16 << 20;

/// Where tensor bytes go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalData {
    /// Into the model, unless it would pass protobuf's 2 GiB limit.
    #[default]
    WhenTooLarge,
    /// Every tensor of at least [`EXTERNAL_MIN_BYTES`] into the data file.
    Always,
}

/// One initializer: its header (everything but the data) and its raw bytes.
pub struct Initializer<'a> {
    pub header: TensorProto,
    /// Little-endian bytes for `raw_data`; empty for string tensors, whose
    /// `string_data` is in the header.
    pub data: &'a [u8],
}

/// The files written and how the tensors were placed.
pub struct Written {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    pub external_tensors: usize,
}

/// Writes `model` (whose `graph` is `None`) with `graph` (without
/// initializers) and `initializers` to `out`, atomically.
pub fn write_model(
    model: &ModelProto,
    graph: &GraphProto,
    mut initializers: Vec<Initializer>,
    out: &Path,
    policy: ExternalData,
    progress: &dyn Progress,
) -> Result<Written> {
    let model_bytes = model.encode_to_vec();
    let graph_bytes = graph.encode_to_vec();
    let inline_size = |inits: &[Initializer]| -> u64 {
        let graph_len = graph_len(&graph_bytes, inits);
        model_bytes.len() as u64 + field_prefix(MODEL_GRAPH, graph_len).len() as u64 + graph_len
    };
    let externalize = match policy {
        ExternalData::Always => true,
        ExternalData::WhenTooLarge => inline_size(&initializers) > PROTOBUF_LIMIT,
    } && initializers
        .iter()
        .any(|i| i.data.len() >= EXTERNAL_MIN_BYTES);
    let data_path = data_file_path(out)?;
    let mut external_tensors = 0;
    let mut data_file = None;
    if externalize {
        let location = data_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut file = AtomicFile::create(&data_path).map_err(|e| Error::io(&data_path, e))?;
        let mut offset = 0u64;
        let total: u64 = initializers
            .iter()
            .filter(|i| i.data.len() >= EXTERNAL_MIN_BYTES)
            .map(|i| i.data.len() as u64)
            .sum();
        progress.start("write external data", total);
        for init in initializers
            .iter_mut()
            .filter(|i| i.data.len() >= EXTERNAL_MIN_BYTES)
        {
            let padding = offset.next_multiple_of(EXTERNAL_ALIGNMENT) - offset;
            file.write_all(&vec![0; padding as usize])
                .map_err(|e| Error::io(&data_path, e))?;
            offset += padding;
            stream(&mut file, init.data, progress).map_err(|e| Error::io(&data_path, e))?;
            let entry = |key: &str, value: String| StringStringEntryProto {
                key: key.into(),
                value,
            };
            init.header.data_location = DataLocation::External as i32;
            init.header.external_data = vec![
                entry("location", location.clone()),
                entry("offset", offset.to_string()),
                entry("length", init.data.len().to_string()),
            ];
            offset += init.data.len() as u64;
            init.data = &[];
            external_tensors += 1;
        }
        progress.finish();
        data_file = Some((file, offset));
    }

    let size = inline_size(&initializers);
    if size > PROTOBUF_LIMIT {
        return Err(Error::Input(format!(
            "{}: the model's graph alone takes {size} bytes, over protobuf's 2 GiB limit",
            out.display()
        )));
    }
    let io = |e| Error::io(out, e);
    let mut file = AtomicFile::create(out).map_err(io)?;
    file.write_all(&model_bytes).map_err(io)?;
    file.write_all(&field_prefix(
        MODEL_GRAPH,
        graph_len(&graph_bytes, &initializers),
    ))
    .map_err(io)?;
    file.write_all(&graph_bytes).map_err(io)?;
    progress.start(
        "write model",
        initializers.iter().map(|i| i.data.len() as u64).sum(),
    );
    for init in &initializers {
        let header = init.header.encode_to_vec();
        file.write_all(&field_prefix(
            GRAPH_INITIALIZER,
            tensor_len(&header, init.data),
        ))
        .map_err(io)?;
        file.write_all(&header).map_err(io)?;
        if !init.data.is_empty() {
            file.write_all(&field_prefix(TENSOR_RAW_DATA, init.data.len() as u64))
                .map_err(io)?;
            stream(&mut file, init.data, progress).map_err(io)?;
        }
    }
    progress.finish();

    let mut files = vec![out.to_path_buf()];
    let mut bytes = size;
    if let Some((data, data_len)) = data_file {
        // The data file lands first: a model in place always finds its data.
        data.commit().map_err(|e| Error::io(&data_path, e))?;
        files.push(data_path);
        bytes += data_len;
    }
    file.commit().map_err(io)?;
    Ok(Written {
        files,
        bytes,
        external_tensors,
    })
}

/// `OUT.onnx` -> `OUT.onnx.data`.
pub fn data_file_path(out: &Path) -> Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| {
        Error::Input(format!(
            "{}: the output path does not name a file",
            out.display()
        ))
    })?;
    Ok(out.with_file_name(format!("{}.data", name.to_string_lossy())))
}

fn stream(file: &mut AtomicFile, data: &[u8], progress: &dyn Progress) -> std::io::Result<()> {
    for chunk in data.chunks(CHUNK) {
        file.write_all(chunk)?;
        progress.advance(chunk.len() as u64);
    }
    Ok(())
}

/// Key and length of a length-delimited field.
fn field_prefix(tag: u32, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(len, &mut out);
    out
}

fn field_len(tag: u32, len: u64) -> u64 {
    field_prefix(tag, len).len() as u64 + len
}

fn tensor_len(header: &[u8], data: &[u8]) -> u64 {
    let raw = if data.is_empty() {
        0
    } else {
        field_len(TENSOR_RAW_DATA, data.len() as u64)
    };
    header.len() as u64 + raw
}

fn graph_len(graph_bytes: &[u8], initializers: &[Initializer]) -> u64 {
    graph_bytes.len() as u64
        + initializers
            .iter()
            .map(|i| {
                field_len(
                    GRAPH_INITIALIZER,
                    tensor_len(&i.header.encode_to_vec(), i.data),
                )
            })
            .sum::<u64>()
}

/// The message prost would encode for the same content (for tests: the
/// hand-made framing must decode to exactly this).
#[cfg(test)]
pub fn as_one_message(
    model: &ModelProto,
    graph: &GraphProto,
    initializers: &[Initializer],
) -> ModelProto {
    let mut graph = graph.clone();
    graph.initializer = initializers
        .iter()
        .map(|i| TensorProto {
            raw_data: bytes::Bytes::copy_from_slice(i.data),
            ..i.header.clone()
        })
        .collect();
    ModelProto {
        graph: Some(graph),
        ..model.clone()
    }
}
