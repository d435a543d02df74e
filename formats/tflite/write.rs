//! Serializes a [`TflModel`] into a `.tflite` file: schema version 3, file
//! identifier `TFL3`, one subgraph `main`, the `serving_default` signature.
//!
//! Buffer 0 is the empty sentinel, every constant tensor has its own buffer
//! and every buffer's data starts on a 16-byte boundary. The data goes either
//! inside the flatbuffer (`Buffer.data`) or, in the *offset-buffer* form,
//! after it: the flatbuffer then holds only the structure, each
//! `Buffer.offset`/`Buffer.size` locate the data from the start of the file,
//! and the model carries the metadata entry `buffer_location` (value
//! `outside flatbuffers`), as the TFLite converter writes it. The offset form
//! lets the data be streamed from its `Bytes` (often slices of a memory-mapped
//! source) straight into the file, and it is the only form past the 2 GiB a
//! flatbuffer can address.
//!
//! LiteRT reads offset buffers when the model was loaded from a file or a
//! memory buffer (`InterpreterBuilder::ParseTensors` in
//! `tflite/core/interpreter_builder.cc`): an offset counts only if it is
//! greater than 1, and `offset + size` must lie inside the file. Tensors point
//! straight into the mapped file, so alignment is the writer's job. As the
//! converter does, 16 zero bytes follow the last buffer, because XNNPack may
//! read up to 16 bytes past the end of a weight.
//!
//! Offsets depend on the flatbuffer's size, which is only known once it is
//! built, so offset buffers are built with a placeholder offset (a field that
//! is always present, so patching it does not change the layout) and the
//! real offsets are written into the finished bytes.

use std::collections::HashMap;
use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, Push, PushAlignment, WIPOffset};

use super::model::{TensorId, TflModel, TflOperator, TflTensor, element_size};
use super::schema as tfl;
use crate::ir::error::{Error, Result};
use crate::output::AtomicFile;
use crate::progress::{Progress, Silent};

/// `Model.version`.
pub const SCHEMA_VERSION: u32 = 3;

/// The largest flatbuffer LiteRT verifies: it checks at most
/// `FLATBUFFERS_MAX_BUFFER_SIZE - 1` bytes (2^31 - 2).
pub const FLATBUFFER_LIMIT: u64 = (1 << 31) - 2;

/// Above this much constant data, [`OffsetBuffers::Auto`] writes offset
/// buffers. Below it the model is one self-contained flatbuffer, the form
/// every tool (flatc, Netron, runtimes older than offset buffers) reads, and
/// building it in memory costs little; above it the heap copy of every weight
/// that an in-flatbuffer model needs starts to matter.
pub const OFFSET_BUFFERS_THRESHOLD: u64 = 64 << 20;

/// Where buffer data starts, in the flatbuffer and after it.
pub const BUFFER_ALIGNMENT: u64 = 16;

/// Zero bytes after the last offset buffer (XNNPack's over-read margin).
const TAIL_PADDING: u64 = 16;

/// The converter's metadata entry marking offset buffers, and its value.
pub const BUFFER_LOCATION_KEY: &str = "buffer_location";
pub const BUFFER_LOCATION_VALUE: &str = "outside flatbuffers";

/// The converter's metadata entry naming the oldest runtime that runs the
/// model: the version string, NUL-padded to 16 bytes.
pub const MIN_RUNTIME_VERSION_KEY: &str = "min_runtime_version";
const MIN_RUNTIME_VERSION_LEN: usize = 16;

/// `Buffer.offset` while the flatbuffer is built; any value > 1 would be read
/// as an offset, so a model whose offsets were not patched is never valid.
const OFFSET_PLACEHOLDER: u64 = 1;

/// Room kept for one table, its vtable and its small vectors when checking
/// that the flatbuffer stays under [`FLATBUFFER_LIMIT`].
const ITEM_MARGIN: u64 = 1 << 20;

/// Bytes copied per progress step.
const CHUNK: usize = 16 << 20;

/// Whether constant data goes after the flatbuffer (`Buffer.offset`/`size`)
/// instead of inside it (`Buffer.data`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetBuffers {
    /// Offset buffers when the constant data exceeds [`OFFSET_BUFFERS_THRESHOLD`].
    #[default]
    Auto,
    Always,
    /// Everything inside the flatbuffer; models that do not fit in 2 GiB are refused.
    Never,
}

impl OffsetBuffers {
    /// Whether a model with `constant_bytes` of constant data gets offset buffers.
    pub fn resolve(self, constant_bytes: u64) -> bool {
        match self {
            OffsetBuffers::Auto => constant_bytes > OFFSET_BUFFERS_THRESHOLD,
            OffsetBuffers::Always => true,
            OffsetBuffers::Never => false,
        }
    }
}

/// What [`write_model`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    /// Size of the whole file.
    pub bytes: u64,
    /// Size of the flatbuffer at the start of the file (all of it unless
    /// `offset_buffers`).
    pub flatbuffer_bytes: u64,
    pub offset_buffers: bool,
    /// Constant tensors written (each in its own buffer).
    pub constant_buffers: usize,
}

/// Writes `model` to `out` atomically: into a temporary file beside it,
/// renamed into place once complete; nothing is left behind on failure.
pub fn write_model(
    model: &TflModel,
    out: &Path,
    offset_buffers: OffsetBuffers,
    progress: &dyn Progress,
) -> Result<Written> {
    let plan = Plan::build(model, offset_buffers, progress).map_err(|e| match e {
        Error::Input(msg) => Error::Input(format!("{}: {msg}", out.display())),
        other => other,
    })?;
    let io = |e| Error::io(out, e);
    let mut file = AtomicFile::create(out).map_err(io)?;
    let bytes = plan.write(&mut file, progress).map_err(io)?;
    file.commit().map_err(io)?;
    Ok(Written {
        path: out.to_path_buf(),
        bytes,
        flatbuffer_bytes: plan.flatbuffer().len() as u64,
        offset_buffers: plan.offset_buffers,
        constant_buffers: plan.constant_buffers,
    })
}

/// The file [`write_model`] would write, in memory (for small models and tests).
pub fn encode(model: &TflModel, offset_buffers: OffsetBuffers) -> Result<Vec<u8>> {
    let plan = Plan::build(model, offset_buffers, &Silent)?;
    let mut out = Vec::new();
    plan.write(&mut out, &Silent)
        .map_err(|e| Error::io("<memory>", e))?;
    Ok(out)
}

/// The finished flatbuffer and the data that follows it.
struct Plan<'m> {
    /// The builder's buffer; the flatbuffer is `buffer[head..]`.
    buffer: Vec<u8>,
    head: usize,
    /// Offset-buffer data in file order, with its offset from the file start.
    appended: Vec<(u64, &'m Bytes)>,
    offset_buffers: bool,
    constant_buffers: usize,
}

impl<'m> Plan<'m> {
    fn build(
        model: &'m TflModel,
        option: OffsetBuffers,
        progress: &dyn Progress,
    ) -> Result<Plan<'m>> {
        validate(model)?;
        let constant_bytes = model.constant_bytes();
        let offset_buffers = option.resolve(constant_bytes);
        let constants: Vec<&Bytes> = model
            .tensors
            .iter()
            .filter_map(|t| t.data.as_ref())
            .collect();
        let metadata = metadata_entries(model, offset_buffers);
        let inline_data = if offset_buffers { 0 } else { constant_bytes };
        let metadata_bytes: u64 = metadata.iter().map(|(_, d)| d.len() as u64).sum();
        let inline_bound = inline_data
            + metadata_bytes
            + (constants.len() + metadata.len()) as u64 * (BUFFER_ALIGNMENT + 8);
        if inline_bound > FLATBUFFER_LIMIT {
            let what = if inline_data > metadata_bytes {
                format!(
                    "{inline_data} bytes ({:.2} GiB) of constant data do not fit in one \
                     flatbuffer (at most {FLATBUFFER_LIMIT} bytes) with offset buffers off \
                     (OffsetBuffers::{option:?}); use OffsetBuffers::Auto or Always to write the data after \
                     the flatbuffer",
                    inline_data as f64 / (1u64 << 30) as f64
                )
            } else {
                format!(
                    "{metadata_bytes} bytes of metadata do not fit in one flatbuffer \
                     (at most {FLATBUFFER_LIMIT} bytes)"
                )
            };
            return Err(Error::Input(what));
        }

        let mut b = Builder::new(inline_bound + structure_estimate(model) + ITEM_MARGIN);
        if !offset_buffers {
            progress.start("write tflite", constant_bytes);
        }
        let built = b.model(model, &constants, &metadata, offset_buffers, progress);
        if !offset_buffers {
            progress.finish();
        }
        let BuiltModel { root, offset_slots } = built?;
        tfl::finish_model_buffer(&mut b.fbb, root);
        // The builder fills its buffer from the back; keeping the buffer and
        // where the flatbuffer starts avoids copying a model of up to 2 GiB.
        let (mut buffer, head) = b.fbb.collapse();

        let mut appended = Vec::new();
        if offset_buffers {
            let flatbuffer = &mut buffer[head..];
            let mut at = (flatbuffer.len() as u64).next_multiple_of(BUFFER_ALIGNMENT);
            for (slot, data) in offset_slots.iter().zip(&constants) {
                let pos = flatbuffer.len() - slot;
                let field = flatbuffer
                    .get_mut(pos..pos + 8)
                    .filter(|f| **f == OFFSET_PLACEHOLDER.to_le_bytes())
                    .ok_or_else(|| {
                        Error::Graph("TFLite writer: buffer offset field not found".into())
                    })?;
                field.copy_from_slice(&at.to_le_bytes());
                appended.push((at, *data));
                at = (at + data.len() as u64).next_multiple_of(BUFFER_ALIGNMENT);
            }
        }
        Ok(Plan {
            buffer,
            head,
            appended,
            offset_buffers,
            constant_buffers: constants.len(),
        })
    }

    fn flatbuffer(&self) -> &[u8] {
        &self.buffer[self.head..]
    }

    /// Writes the file; returns its size.
    fn write(&self, w: &mut dyn Write, progress: &dyn Progress) -> io::Result<u64> {
        w.write_all(self.flatbuffer())?;
        let mut at = self.flatbuffer().len() as u64;
        if !self.offset_buffers {
            return Ok(at);
        }
        progress.start(
            "write tflite",
            self.appended.iter().map(|(_, d)| d.len() as u64).sum(),
        );
        for (offset, data) in &self.appended {
            zeros(w, offset - at)?;
            for chunk in data.chunks(CHUNK) {
                w.write_all(chunk)?;
                progress.advance(chunk.len() as u64);
            }
            at = offset + data.len() as u64;
        }
        progress.finish();
        let end = at.next_multiple_of(BUFFER_ALIGNMENT) + TAIL_PADDING;
        zeros(w, end - at)?;
        Ok(end)
    }
}

fn zeros(w: &mut dyn Write, n: u64) -> io::Result<()> {
    io::copy(&mut io::repeat(0).take(n), w).map(|_| ())
}

/// Roughly what the flatbuffer takes besides buffer data, so that the
/// builder rarely has to grow (each growth copies everything built so far).
fn structure_estimate(model: &TflModel) -> u64 {
    let tensors: u64 = model
        .tensors
        .iter()
        .map(|t| 96 + t.name.len() as u64 + 4 * t.shape.len() as u64)
        .sum();
    let operators: u64 = model
        .operators
        .iter()
        .map(|o| 96 + 4 * (o.inputs.len() + o.outputs.len()) as u64)
        .sum();
    tensors + operators
}

/// The metadata entries in buffer order: the model's own, then
/// `min_runtime_version`, then `buffer_location` for offset buffers (the
/// converter's order).
fn metadata_entries(model: &TflModel, offset_buffers: bool) -> Vec<(&str, Bytes)> {
    let mut entries: Vec<(&str, Bytes)> = model
        .metadata
        .iter()
        .map(|(name, data)| (name.as_str(), data.clone()))
        .collect();
    if let Some(version) = &model.min_runtime_version {
        let mut padded = vec![0u8; MIN_RUNTIME_VERSION_LEN];
        padded[..version.len()].copy_from_slice(version.as_bytes());
        entries.push((MIN_RUNTIME_VERSION_KEY, Bytes::from(padded)));
    }
    if offset_buffers {
        entries.push((
            BUFFER_LOCATION_KEY,
            Bytes::from_static(BUFFER_LOCATION_VALUE.as_bytes()),
        ));
    }
    entries
}

/// Checks everything the flatbuffer relies on, so that a model either writes
/// a file LiteRT accepts or fails here, before a file is created.
fn validate(model: &TflModel) -> Result<()> {
    let count = model.tensors.len();
    if count > i32::MAX as usize {
        return Err(Error::Graph(format!(
            "{count} TFLite tensors, more than operator indices (i32) address"
        )));
    }
    let in_range = |id: TensorId| id.index() < count;
    for t in &model.tensors {
        validate_tensor(t)?;
    }
    for op in &model.operators {
        validate_operator(op, &in_range)?;
    }
    let graph_ids = model.inputs.iter().chain(&model.outputs).copied();
    let signature_ids = model
        .signature_inputs
        .iter()
        .chain(&model.signature_outputs)
        .map(|e| e.tensor);
    if let Some(id) = graph_ids.chain(signature_ids).find(|&id| !in_range(id)) {
        return Err(Error::Graph(format!(
            "TFLite graph input, output or signature entry refers to tensor {} of {count}",
            id.0
        )));
    }
    let mut names = std::collections::HashSet::new();
    for (name, _) in &model.metadata {
        if name == MIN_RUNTIME_VERSION_KEY || name == BUFFER_LOCATION_KEY {
            return Err(Error::Input(format!(
                "TFLite metadata entry '{name}' is written by the writer itself"
            )));
        }
        if !names.insert(name.as_str()) {
            return Err(Error::Input(format!(
                "TFLite metadata entry '{name}' appears twice"
            )));
        }
    }
    if let Some(v) = &model.min_runtime_version {
        if v.len() >= MIN_RUNTIME_VERSION_LEN || v.contains('\0') {
            return Err(Error::Input(format!(
                "TFLite min_runtime_version '{}' must be shorter than {MIN_RUNTIME_VERSION_LEN} bytes, without NUL",
                v.escape_debug()
            )));
        }
    }
    Ok(())
}

fn validate_tensor(t: &TflTensor) -> Result<()> {
    let fail = |msg: String| Err(Error::Graph(format!("TFLite tensor '{}': {msg}", t.name)));
    if let Some(data) = &t.data {
        if t.is_variable {
            return fail("a variable tensor cannot have constant data (LiteRT refuses it)".into());
        }
        if t.shape.iter().any(|&d| d < 0) {
            return fail(format!("constant with unknown dimensions {:?}", t.shape));
        }
        let packed = matches!(t.dtype, tfl::TensorType::STRING | tfl::TensorType::INT4);
        if let (Some(size), false) = (element_size(t.dtype), packed) {
            let expected = t
                .shape
                .iter()
                .try_fold(size as u64, |n, &d| n.checked_mul(d as u64));
            if expected != Some(data.len() as u64) {
                return fail(format!(
                    "{} bytes of data for shape {:?} of {:?}",
                    data.len(),
                    t.shape,
                    t.dtype
                ));
            }
        }
    }
    if let Some(q) = &t.quant {
        if q.scale.is_empty() || q.scale.len() != q.zero_point.len() {
            return fail(format!(
                "{} quantization scales and {} zero points",
                q.scale.len(),
                q.zero_point.len()
            ));
        }
        if q.scale.len() > 1 {
            let dim = usize::try_from(q.axis).ok().and_then(|a| t.shape.get(a));
            match dim {
                None => {
                    return fail(format!(
                        "quantized dimension {} outside shape {:?}",
                        q.axis, t.shape
                    ));
                }
                Some(&d) if d >= 0 && d as usize != q.scale.len() => {
                    return fail(format!(
                        "{} quantization scales along dimension {} of size {d}",
                        q.scale.len(),
                        q.axis
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn validate_operator(op: &TflOperator, in_range: &dyn Fn(TensorId) -> bool) -> Result<()> {
    let name = op.code.variant_name().unwrap_or("unknown builtin");
    let fail = |msg: String| Err(Error::node(op.source_node.clone(), name, msg));
    if op.code.variant_name().is_none() || op.code.0 < 0 {
        return fail(format!(
            "builtin code {} is not in the TFLite schema",
            op.code.0
        ));
    }
    if op.code == tfl::BuiltinOperator::CUSTOM {
        return fail(
            "custom operators need a custom code, which TflOperator does not carry".into(),
        );
    }
    if op.version < 1 {
        return fail(format!(
            "operator version {} (versions start at 1)",
            op.version
        ));
    }
    let ids = op.inputs.iter().flatten().chain(&op.outputs);
    if let Some(id) = ids.copied().find(|&id| !in_range(id)) {
        return fail(format!("refers to tensor {}, which does not exist", id.0));
    }
    Ok(())
}

/// Makes the vector data that follows start on a 16-byte boundary: a vector
/// started with this element type is aligned to 16 (the Rust generator
/// ignores the schema's `force_align: 16`).
struct Align16;

impl Push for Align16 {
    type Output = u8;
    unsafe fn push(&self, _dst: &mut [u8], _written_len: usize) {}
    fn size() -> usize {
        1
    }
    fn alignment() -> PushAlignment {
        PushAlignment::new(16)
    }
}

/// Copies a block of bytes into the builder at once (pushing a byte at a time
/// would make inline weights slow to build).
const BLOCK: usize = 4096;

struct Block<'a>(&'a [u8; BLOCK]);

impl Push for Block<'_> {
    type Output = u8;
    unsafe fn push(&self, dst: &mut [u8], _written_len: usize) {
        dst.copy_from_slice(self.0);
    }
    fn size() -> usize {
        BLOCK
    }
    fn alignment() -> PushAlignment {
        PushAlignment::new(1)
    }
}

struct BuiltModel<'fbb> {
    root: WIPOffset<tfl::Model<'fbb>>,
    /// For each offset buffer (constant tensors in order), the distance of
    /// its offset field from the end of the flatbuffer.
    offset_slots: Vec<usize>,
}

struct Builder<'fbb> {
    fbb: FlatBufferBuilder<'fbb>,
}

type Offsets<'a, T> = WIPOffset<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<T>>>;

impl<'fbb> Builder<'fbb> {
    fn new(expected: u64) -> Builder<'fbb> {
        // The backing vector is zero-allocated, so an estimate costs no
        // memory until it is written.
        let capacity = expected.min(FLATBUFFER_LIMIT) as usize;
        Builder {
            fbb: FlatBufferBuilder::with_capacity(capacity),
        }
    }

    /// Fails unless `more` bytes (and one item's margin) still fit.
    fn room(&self, more: u64) -> Result<()> {
        let used = self.fbb.unfinished_data().len() as u64;
        if used + more + ITEM_MARGIN > FLATBUFFER_LIMIT {
            return Err(Error::Input(format!(
                "the TFLite flatbuffer would take more than {FLATBUFFER_LIMIT} bytes \
                 ({} already built, {more} more needed)",
                used
            )));
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<WIPOffset<&'fbb str>> {
        self.room(s.len() as u64)?;
        Ok(self.fbb.create_string(s))
    }

    fn ints(&mut self, v: &[i32]) -> Result<WIPOffset<flatbuffers::Vector<'fbb, i32>>> {
        self.room(v.len() as u64 * 4)?;
        Ok(self.fbb.create_vector(v))
    }

    /// A `[ubyte]` whose data starts on a 16-byte boundary of the finished buffer.
    fn aligned_bytes(
        &mut self,
        data: &[u8],
        progress: &dyn Progress,
    ) -> Result<WIPOffset<flatbuffers::Vector<'fbb, u8>>> {
        self.room(data.len() as u64 + BUFFER_ALIGNMENT)?;
        let fbb = &mut self.fbb;
        fbb.start_vector::<Align16>(data.len());
        let whole = data.len() - data.len() % BLOCK;
        for &byte in data[whole..].iter().rev() {
            fbb.push(byte);
        }
        let mut done = data.len() - whole;
        for block in data[..whole].rchunks_exact(BLOCK) {
            if let Ok(block) = <&[u8; BLOCK]>::try_from(block) {
                fbb.push(Block(block));
            }
            done += BLOCK;
            if done >= CHUNK {
                progress.advance(done as u64);
                done = 0;
            }
        }
        progress.advance(done as u64);
        Ok(fbb.end_vector::<u8>(data.len()))
    }

    fn model(
        &mut self,
        model: &TflModel,
        constants: &[&Bytes],
        metadata: &[(&str, Bytes)],
        offset_buffers: bool,
        progress: &dyn Progress,
    ) -> Result<BuiltModel<'fbb>> {
        let (codes, opcode_index) = self.operator_codes(&model.operators);

        let mut tensors = Vec::with_capacity(model.tensors.len());
        let mut next_buffer = 1u32;
        for t in &model.tensors {
            let buffer = if t.data.is_some() {
                next_buffer += 1;
                next_buffer - 1
            } else {
                0
            };
            tensors.push(self.tensor(t, buffer)?);
        }
        self.room(tensors.len() as u64 * 4)?;
        let tensors = self.fbb.create_vector(&tensors);

        let mut operators = Vec::with_capacity(model.operators.len());
        for (op, &index) in model.operators.iter().zip(&opcode_index) {
            operators.push(self.operator(op, index)?);
        }
        self.room(operators.len() as u64 * 4)?;
        let operators = self.fbb.create_vector(&operators);

        let ids = |ids: &[TensorId]| ids.iter().map(|t| t.0 as i32).collect::<Vec<_>>();
        let inputs = self.ints(&ids(&model.inputs))?;
        let outputs = self.ints(&ids(&model.outputs))?;
        let name = self.string("main")?;
        let subgraph = tfl::SubGraph::create(
            &mut self.fbb,
            &tfl::SubGraphArgs {
                tensors: Some(tensors),
                inputs: Some(inputs),
                outputs: Some(outputs),
                operators: Some(operators),
                name: Some(name),
                ..Default::default()
            },
        );
        let subgraphs = self.fbb.create_vector(&[subgraph]);

        let signature_defs = self.signature(model)?;
        let metadata_tables = {
            let mut tables = Vec::with_capacity(metadata.len());
            for (i, (name, _)) in metadata.iter().enumerate() {
                let name = self.string(name)?;
                let buffer = next_buffer + i as u32;
                tables.push(tfl::Metadata::create(
                    &mut self.fbb,
                    &tfl::MetadataArgs {
                        name: Some(name),
                        buffer,
                    },
                ));
            }
            (!tables.is_empty()).then(|| self.fbb.create_vector(&tables))
        };
        let description = if model.description.is_empty() {
            None
        } else {
            Some(self.string(&model.description)?)
        };

        // Data last, so that it sits near the start of the file followed by
        // the tables (never at the very end: see TAIL_PADDING). Created in
        // reverse, so it lands in buffer order.
        let (buffers, offset_slots) =
            self.buffers(constants, metadata, offset_buffers, progress)?;

        let root = tfl::Model::create(
            &mut self.fbb,
            &tfl::ModelArgs {
                version: SCHEMA_VERSION,
                operator_codes: Some(codes),
                subgraphs: Some(subgraphs),
                description,
                buffers: Some(buffers),
                metadata_buffer: None,
                metadata: metadata_tables,
                signature_defs,
            },
        );
        Ok(BuiltModel { root, offset_slots })
    }

    /// Operator codes deduplicated by (builtin code, version) in first-use
    /// order, and each operator's index into them.
    fn operator_codes(
        &mut self,
        operators: &[TflOperator],
    ) -> (Offsets<'fbb, tfl::OperatorCode<'fbb>>, Vec<u32>) {
        let mut seen: HashMap<(i32, i32), u32> = HashMap::new();
        let mut codes = Vec::new();
        let mut index = Vec::with_capacity(operators.len());
        for op in operators {
            let next = codes.len() as u32;
            let i = *seen.entry((op.code.0, op.version)).or_insert_with(|| {
                codes.push((op.code, op.version));
                next
            });
            index.push(i);
        }
        let placeholder = tfl::BuiltinOperator::PLACEHOLDER_FOR_GREATER_OP_CODES.0;
        let tables: Vec<_> = codes
            .iter()
            .map(|&(code, version)| {
                tfl::OperatorCode::create(
                    &mut self.fbb,
                    &tfl::OperatorCodeArgs {
                        deprecated_builtin_code: code.0.min(placeholder) as i8,
                        custom_code: None,
                        version,
                        builtin_code: code,
                    },
                )
            })
            .collect();
        (self.fbb.create_vector(&tables), index)
    }

    fn tensor(&mut self, t: &TflTensor, buffer: u32) -> Result<WIPOffset<tfl::Tensor<'fbb>>> {
        let shape = self.ints(&t.shape)?;
        let name = self.string(&t.name)?;
        let quantization = match &t.quant {
            None => None,
            Some(q) => {
                self.room(q.scale.len() as u64 * 12)?;
                let scale = self.fbb.create_vector(&q.scale);
                let zero_point = self.fbb.create_vector(&q.zero_point);
                Some(tfl::QuantizationParameters::create(
                    &mut self.fbb,
                    &tfl::QuantizationParametersArgs {
                        scale: Some(scale),
                        zero_point: Some(zero_point),
                        quantized_dimension: q.axis,
                        ..Default::default()
                    },
                ))
            }
        };
        Ok(tfl::Tensor::create(
            &mut self.fbb,
            &tfl::TensorArgs {
                shape: Some(shape),
                type_: t.dtype,
                buffer,
                name: Some(name),
                quantization,
                is_variable: t.is_variable,
                has_rank: true,
                ..Default::default()
            },
        ))
    }

    fn operator(
        &mut self,
        op: &TflOperator,
        opcode_index: u32,
    ) -> Result<WIPOffset<tfl::Operator<'fbb>>> {
        let inputs: Vec<i32> = op
            .inputs
            .iter()
            .map(|t| t.map_or(-1, |t| t.0 as i32))
            .collect();
        let inputs = self.ints(&inputs)?;
        let outputs: Vec<i32> = op.outputs.iter().map(|t| t.0 as i32).collect();
        let outputs = self.ints(&outputs)?;
        let builtin_options = op.options.pack(&mut self.fbb);
        Ok(tfl::Operator::create(
            &mut self.fbb,
            &tfl::OperatorArgs {
                opcode_index,
                inputs: Some(inputs),
                outputs: Some(outputs),
                builtin_options_type: op.options.builtin_options_type(),
                builtin_options,
                ..Default::default()
            },
        ))
    }

    fn signature(
        &mut self,
        model: &TflModel,
    ) -> Result<Option<Offsets<'fbb, tfl::SignatureDef<'fbb>>>> {
        if model.signature_inputs.is_empty() && model.signature_outputs.is_empty() {
            return Ok(None);
        }
        let mut maps = |entries: &[super::model::SignatureEntry]| -> Result<_> {
            let mut tables = Vec::with_capacity(entries.len());
            for e in entries {
                let name = self.string(&e.name)?;
                tables.push(tfl::TensorMap::create(
                    &mut self.fbb,
                    &tfl::TensorMapArgs {
                        name: Some(name),
                        tensor_index: e.tensor.0,
                    },
                ));
            }
            Ok(self.fbb.create_vector(&tables))
        };
        let inputs = maps(&model.signature_inputs)?;
        let outputs = maps(&model.signature_outputs)?;
        let key = self.string("serving_default")?;
        let def = tfl::SignatureDef::create(
            &mut self.fbb,
            &tfl::SignatureDefArgs {
                inputs: Some(inputs),
                outputs: Some(outputs),
                signature_key: Some(key),
                subgraph_index: 0,
            },
        );
        Ok(Some(self.fbb.create_vector(&[def])))
    }

    /// The sentinel, one buffer per constant (inline or offset) and one per
    /// metadata entry (always inline).
    fn buffers(
        &mut self,
        constants: &[&Bytes],
        metadata: &[(&str, Bytes)],
        offset_buffers: bool,
        progress: &dyn Progress,
    ) -> Result<(Offsets<'fbb, tfl::Buffer<'fbb>>, Vec<usize>)> {
        let mut inline: Vec<Option<WIPOffset<flatbuffers::Vector<'fbb, u8>>>> =
            vec![None; constants.len() + metadata.len()];
        let inline_data = constants
            .iter()
            .map(|d| (!offset_buffers).then_some(*d))
            .chain(metadata.iter().map(|(_, d)| Some(d)));
        let inline_data: Vec<Option<&Bytes>> = inline_data.collect();
        for (i, data) in inline_data.iter().enumerate().rev() {
            if let Some(data) = data {
                // Progress counts constant data only.
                let progress = if i < constants.len() {
                    progress
                } else {
                    &Silent
                };
                inline[i] = Some(self.aligned_bytes(data, progress)?);
            }
        }

        let mut tables = Vec::with_capacity(1 + inline.len());
        tables.push(tfl::Buffer::create(
            &mut self.fbb,
            &tfl::BufferArgs::default(),
        ));
        let mut offset_slots = Vec::new();
        for (i, data) in inline.into_iter().enumerate() {
            let table = match data {
                Some(data) => tfl::Buffer::create(
                    &mut self.fbb,
                    &tfl::BufferArgs {
                        data: Some(data),
                        ..Default::default()
                    },
                ),
                None => {
                    let size = constants[i].len() as u64;
                    let start = self.fbb.start_table();
                    self.fbb.push_slot::<u64>(tfl::Buffer::VT_SIZE, size, 0);
                    self.fbb
                        .push_slot_always::<u64>(tfl::Buffer::VT_OFFSET, OFFSET_PLACEHOLDER);
                    offset_slots.push(self.fbb.unfinished_data().len());
                    WIPOffset::new(self.fbb.end_table(start).value())
                }
            };
            tables.push(table);
        }
        self.room(tables.len() as u64 * 4)?;
        Ok((self.fbb.create_vector(&tables), offset_slots))
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
