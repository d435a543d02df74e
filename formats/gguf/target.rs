//! `--target gguf`: a llama.cpp model from a Hugging Face checkpoint (llama,
//! mistral, qwen2, bert), a re-quantized GGUF, or any other model's weights
//! as a plain GGUF tensor file.

use std::path::Path;

use super::imatrix::Imatrix;
use super::llm::QUANTIZATION_VERSION;
use super::mix::{self, Choice, FileType, MixTensor, TypeOverride};
use super::payload::Encode;
use super::types::TensorType;
use super::{container, source};
use crate::formats::target::{EmitReport, Support, Target};
use crate::ir::error::{Error, Result};
use crate::ir::{Graph, NodeId};
use crate::passes::Stage;
use crate::progress::Progress;

/// What `--quant`, `--tensor-type` and `--imatrix` asked for.
#[derive(Clone, Debug, Default)]
pub struct GgufTarget {
    /// `None`: every tensor keeps its type (f32, f16 and bf16 as they are).
    pub ftype: Option<FileType>,
    pub overrides: Vec<TypeOverride>,
    pub imatrix: Option<Imatrix>,
}

impl Target for GgufTarget {
    fn name(&self) -> &'static str {
        "gguf"
    }

    fn legalize(&self) -> Vec<Stage> {
        Vec::new()
    }

    /// A GGUF file stores weights; the graph's nodes are not written (the
    /// file's architecture tells llama.cpp how to compute), so no node stops it.
    fn support(&self, _g: &Graph, _node: NodeId) -> Support {
        Support::Native
    }

    fn emit(&self, g: &Graph, out: &Path, progress: &dyn Progress) -> Result<EmitReport> {
        let model = source::describe(g)?;
        let mut report = EmitReport::default();
        report.warnings.extend(model.warnings.iter().cloned());
        let ftype = self.ftype;
        let mix_tensors: Vec<MixTensor> = model
            .tensors
            .iter()
            .map(|t| MixTensor {
                name: t.name.clone(),
                ne: t.ne.clone(),
                source: t.source,
            })
            .collect();
        let choices: Vec<Choice> = match ftype {
            Some(ftype) => mix::choose_types(
                &model.mix,
                &mix_tensors,
                ftype,
                &self.overrides,
                self.imatrix.is_some(),
            ),
            None => mix_tensors
                .iter()
                .map(|t| Choice {
                    ty: t.source,
                    fallback: None,
                })
                .collect(),
        };
        for choice in &choices {
            if let Some(why) = &choice.fallback {
                report.notes.push(why.clone());
            }
        }
        let mut kv = model.kv.clone();
        if let Some(ftype) = ftype {
            kv.u32("general.file_type", ftype.id());
        }
        if choices.iter().any(|c| c.ty.is_block()) {
            kv.u32("general.quantization_version", QUANTIZATION_VERSION);
        }
        let order = mix::llama_order(
            &model
                .tensors
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
        );
        let mut encodes = Vec::with_capacity(order.len());
        for &i in &order {
            let t = &model.tensors[i];
            let weight = g
                .weight_of(t.value)
                .ok_or_else(|| Error::Graph(format!("tensor '{}' has no weight", t.name)))?;
            let ty = choices[i].ty;
            let imatrix = match &self.imatrix {
                Some(m) if ty.is_block() => m.for_tensor(&t.name, t.ne[0], 1)?,
                _ => None,
            };
            encodes.push(Encode {
                weight,
                name: &t.name,
                row_len: t.ne[0] as usize,
                rows: t.rows,
                ty,
                imatrix,
            });
        }
        let specs = encodes
            .iter()
            .zip(&order)
            .map(|(e, &i)| {
                let ne = model.tensors[i].ne.clone();
                let bytes = e.ty.tensor_bytes(&ne).ok_or_else(|| {
                    Error::Input(format!(
                        "tensor '{}': rows of {} elements do not fit {} blocks",
                        e.name, e.row_len, e.ty
                    ))
                })?;
                Ok(container::TensorSpec {
                    name: e.name.to_string(),
                    ne,
                    ty: e.ty.id(),
                    bytes,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = container::write(
            out,
            kv.entries(),
            &specs,
            &|index, sink| encodes[index].write(sink),
            progress,
        )?;
        let mut counts: std::collections::BTreeMap<TensorType, usize> = Default::default();
        for e in &encodes {
            *counts.entry(e.ty).or_default() += 1;
        }
        report.notes.insert(
            0,
            format!(
                "{} tensors: {}",
                encodes.len(),
                counts
                    .iter()
                    .map(|(t, n)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        if let Some(arch) = &model.arch {
            report.notes.insert(0, format!("architecture {arch}"));
        }
        report.files.push(out.to_path_buf());
        report.bytes = bytes;
        Ok(report)
    }
}
