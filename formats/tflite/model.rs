//! The TFLite model as the lowering builds it and the writer serializes it:
//! one subgraph of tensors and builtin operators, in TFLite's own terms
//! (NHWC layouts, i32 shapes, builtin codes, option tables).
//!
//! Constant data stays a [`Bytes`] slice (of the memory-mapped source or of a
//! buffer the lowering computed), so building the model copies no weights;
//! the writer streams them into the file.

use bytes::Bytes;

use super::schema as tfl;
use crate::ir::ValueId;

/// Index of a tensor in [`TflModel::tensors`] (the `i32` TFLite operators use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

impl TensorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Affine quantization of a tensor (`real = scale * (q - zero_point)`);
/// one entry per tensor, or one per index of `axis` (per-channel weights).
#[derive(Clone, Debug, PartialEq)]
pub struct TflQuant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub axis: i32,
}

#[derive(Clone, Debug)]
pub struct TflTensor {
    pub name: String,
    pub dtype: tfl::TensorType,
    pub shape: Vec<i32>,
    /// Constant contents in little-endian element order; `None` for
    /// activations and graph inputs.
    pub data: Option<Bytes>,
    pub quant: Option<TflQuant>,
    /// LSTM state tensors the interpreter keeps between invocations.
    pub is_variable: bool,
}

#[derive(Clone, Debug)]
pub struct TflOperator {
    pub code: tfl::BuiltinOperator,
    /// The op version the kernel registration must accept (1 unless a feature
    /// or dtype the operator uses needs a later one).
    pub version: i32,
    /// Tensor indices; `None` for an absent optional input (written as -1).
    pub inputs: Vec<Option<TensorId>>,
    pub outputs: Vec<TensorId>,
    pub options: tfl::BuiltinOptionsT,
    /// The IR node this operator came from, for coverage reports and errors.
    pub source_node: String,
}

/// One signature input or output: the source model's name and its tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureEntry {
    pub name: String,
    pub tensor: TensorId,
}

#[derive(Clone, Debug, Default)]
pub struct TflModel {
    pub tensors: Vec<TflTensor>,
    pub operators: Vec<TflOperator>,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
    /// The `serving_default` signature (source input and output names).
    pub signature_inputs: Vec<SignatureEntry>,
    pub signature_outputs: Vec<SignatureEntry>,
    /// `Model.description`.
    pub description: String,
    /// Named metadata buffers (`Model.metadata`), e.g. conversion provenance.
    pub metadata: Vec<(String, Bytes)>,
    /// The oldest TFLite runtime that runs the model (e.g. `2.9.0`), written
    /// as the converter's `min_runtime_version` metadata entry; shorter than
    /// 16 bytes.
    pub min_runtime_version: Option<String>,
    /// Which IR value each activation tensor holds (a value may have several
    /// tensors: its stored one and converted views), for quantization.
    pub value_tensors: Vec<(ValueId, TensorId)>,
}

impl TflModel {
    pub fn add_tensor(&mut self, tensor: TflTensor) -> TensorId {
        let id = TensorId(self.tensors.len() as u32);
        self.tensors.push(tensor);
        id
    }

    pub fn tensor(&self, id: TensorId) -> &TflTensor {
        &self.tensors[id.index()]
    }

    pub fn tensor_mut(&mut self, id: TensorId) -> &mut TflTensor {
        &mut self.tensors[id.index()]
    }

    pub fn add_operator(&mut self, op: TflOperator) {
        self.operators.push(op);
    }

    /// Drops tensors nothing reads or writes (constants a rewrite replaced)
    /// and renumbers the rest, keeping their order.
    pub fn compact(&mut self) {
        let mut used = vec![false; self.tensors.len()];
        let ops = self.operators.iter();
        for t in ops
            .flat_map(|op| op.inputs.iter().flatten().chain(&op.outputs))
            .chain(&self.inputs)
            .chain(&self.outputs)
        {
            used[t.index()] = true;
        }
        let mut new_id = vec![None; self.tensors.len()];
        let mut kept = Vec::new();
        for (i, tensor) in std::mem::take(&mut self.tensors).into_iter().enumerate() {
            if used[i] {
                new_id[i] = Some(TensorId(kept.len() as u32));
                kept.push(tensor);
            }
        }
        self.tensors = kept;
        let map = |t: &mut TensorId| *t = new_id[t.index()].expect("a used tensor");
        for op in &mut self.operators {
            op.inputs.iter_mut().flatten().for_each(map);
            op.outputs.iter_mut().for_each(map);
        }
        self.inputs.iter_mut().for_each(map);
        self.outputs.iter_mut().for_each(map);
        for entry in self
            .signature_inputs
            .iter_mut()
            .chain(&mut self.signature_outputs)
        {
            map(&mut entry.tensor);
        }
        self.value_tensors
            .retain(|(_, t)| new_id[t.index()].is_some());
        for (_, t) in &mut self.value_tensors {
            map(t);
        }
    }

    /// Bytes of constant data over every tensor.
    pub fn constant_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .filter_map(|t| t.data.as_ref())
            .map(|d| d.len() as u64)
            .sum()
    }
}

/// Bytes per element of a TFLite tensor type (sub-byte types round up to 1).
pub fn element_size(dtype: tfl::TensorType) -> Option<usize> {
    use tfl::TensorType as T;
    Some(match dtype {
        T::BOOL | T::INT8 | T::UINT8 | T::INT4 => 1,
        T::FLOAT16 | T::INT16 | T::UINT16 | T::BFLOAT16 => 2,
        T::FLOAT32 | T::INT32 | T::UINT32 => 4,
        T::FLOAT64 | T::INT64 | T::UINT64 | T::COMPLEX64 => 8,
        _ => return None,
    })
}
