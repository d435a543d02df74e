//! What a graph becomes in a GGUF file: its architecture and metadata, and
//! the name, dims and source of every tensor. Three kinds of source: a
//! Hugging Face checkpoint of a known architecture, a GGUF file (re-quantized
//! with its metadata kept), and anything else (its weights as a tensor file).

use super::container::GgufValue;
use super::kv::KvList;
use super::llm::{self, RowOrder};
use super::mix::MixModel;
use super::tokenizer;
use super::types::{TensorType, gguf_dims};
use crate::ir::error::{Error, Result};
use crate::ir::{Graph, ValueId};

/// One tensor to write, before its type is chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceTensor {
    pub name: String,
    pub ne: Vec<u64>,
    pub value: ValueId,
    pub rows: RowOrder,
    /// Its type as stored in the source.
    pub source: TensorType,
}

#[derive(Clone, Debug)]
pub struct SourceModel {
    /// `general.architecture`, when it is one llama.cpp can run.
    pub arch: Option<String>,
    /// Everything but `general.file_type` and `general.quantization_version`.
    pub kv: KvList,
    pub tensors: Vec<SourceTensor>,
    pub mix: MixModel,
    pub warnings: Vec<String>,
}

pub fn describe(g: &Graph) -> Result<SourceModel> {
    if g.metadata.source_format == "gguf" {
        return from_gguf(g);
    }
    if let Some(plan) = llm::plan(g)? {
        return from_checkpoint(g, plan);
    }
    tensor_file(g)
}

fn source_type(g: &Graph, value: ValueId, name: &str) -> Result<TensorType> {
    let weight = g
        .weight_of(value)
        .ok_or_else(|| Error::Graph(format!("'{name}' is not a weight")))?;
    TensorType::from_dtype(weight.dtype).ok_or_else(|| {
        Error::Input(format!(
            "tensor '{}' is {}; GGUF tensors here are {}",
            weight.name,
            weight.dtype,
            TensorType::writable_names()
        ))
    })
}

fn general(arch: &str, name: &str) -> KvList {
    let mut kv = KvList::default();
    kv.string("general.architecture", arch);
    kv.string("general.type", "model");
    if !name.is_empty() {
        kv.string("general.name", name);
    }
    kv
}

fn from_checkpoint(g: &Graph, plan: llm::LlmPlan) -> Result<SourceModel> {
    let mut kv = general(plan.arch, &g.name);
    kv.extend(plan.kv);
    let vocab = tokenizer::metadata(&g.metadata.hf, plan.arch)?;
    let mut warnings = vocab.warnings.clone();
    kv.extend(vocab.kv);
    let mut tensors = Vec::with_capacity(plan.tensors.len());
    for t in plan.tensors {
        // llama.cpp's converter writes vectors and norms as F32 whatever the
        // checkpoint's dtype (its CPU kernels do not add or multiply f32 by
        // bf16), and llama-quantize keeps them so.
        let source = if t.ne.len() <= 1 || t.name.ends_with("_norm.weight") {
            TensorType::F32
        } else {
            source_type(g, t.value, &t.name)?
        };
        tensors.push(SourceTensor {
            name: t.name,
            ne: t.ne,
            value: t.value,
            rows: t.rows,
            source,
        });
    }
    if !plan.dropped.is_empty() {
        warnings.push(format!(
            "not written (llama.cpp does not use them): {}",
            plan.dropped.join(", ")
        ));
    }
    Ok(SourceModel {
        arch: Some(plan.arch.to_string()),
        kv,
        tensors,
        mix: plan.mix,
        warnings,
    })
}

fn from_gguf(g: &Graph) -> Result<SourceModel> {
    let mut kv = KvList::from(g.metadata.kv.clone());
    for key in [
        "general.file_type",
        "general.quantization_version",
        "split.no",
        "split.count",
        "split.tensors.count",
    ] {
        kv.remove(key);
    }
    let arch = match kv.get("general.architecture") {
        Some(GgufValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let count = |key: &str| match kv.get(&format!("{arch}.{key}")) {
        Some(GgufValue::U32(n)) => *n,
        _ => 0,
    };
    let n_head = count("attention.head_count");
    let head_count_kv = count("attention.head_count_kv");
    let mix = MixModel {
        arch: arch.clone(),
        n_layer: count("block_count"),
        n_head,
        n_head_kv: if head_count_kv == 0 {
            n_head
        } else {
            head_count_kv
        },
    };
    let mut tensors = Vec::new();
    for &value in &g.outputs {
        let Some(weight) = g.weight_of(value) else {
            continue;
        };
        tensors.push(SourceTensor {
            name: weight.name.clone(),
            ne: gguf_dims(&weight.shape),
            value,
            rows: RowOrder::Same,
            source: source_type(g, value, &weight.name)?,
        });
    }
    Ok(SourceModel {
        arch: (!arch.is_empty()).then_some(arch),
        kv,
        tensors,
        mix,
        warnings: Vec::new(),
    })
}

fn tensor_file(g: &Graph) -> Result<SourceModel> {
    let arch = g
        .metadata
        .architecture
        .clone()
        .unwrap_or_else(|| "none".into());
    let mut warnings = vec![format!(
        "{} is not a checkpoint of an architecture llama.cpp runs ({}): the GGUF holds its weights only",
        if g.name.is_empty() {
            "the model"
        } else {
            g.name.as_str()
        },
        llm::KNOWN
    )];
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    let values = g
        .values()
        .map(|(id, _)| id)
        .filter(|&id| g.weight_of(id).is_some());
    for value in values {
        let Some(weight) = g.weight_of(value) else {
            continue;
        };
        let Some(source) = TensorType::from_dtype(weight.dtype) else {
            skipped.push(format!("{} ({})", weight.name, weight.dtype));
            continue;
        };
        tensors.push(SourceTensor {
            name: weight.name.clone(),
            ne: gguf_dims(&weight.shape),
            value,
            rows: RowOrder::Same,
            source,
        });
    }
    if !skipped.is_empty() {
        warnings.push(format!(
            "not written (no GGUF type): {}",
            skipped.join(", ")
        ));
    }
    Ok(SourceModel {
        arch: None,
        kv: general(&arch, &g.name),
        tensors,
        mix: MixModel {
            arch,
            n_layer: 0,
            n_head: 0,
            n_head_kv: 0,
        },
        warnings,
    })
}
