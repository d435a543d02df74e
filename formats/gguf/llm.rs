//! Hugging Face LLM and BERT checkpoints as llama.cpp models: the GGUF
//! architecture, its metadata keys and the name and layout of every tensor,
//! as llama.cpp's converter (`convert_hf_to_gguf.py`) writes them.

use serde_json::Value;

use super::kv::KvList;
use super::mix::MixModel;
use super::types::gguf_dims;
use crate::ir::ValueId;
use crate::ir::error::{Error, Result};
use crate::ir::graph::Graph;
use crate::ir::weights::{Weight, WeightRole};

/// `GGML_QNT_VERSION`: the version of the block formats written.
pub const QUANTIZATION_VERSION: u32 = 2;

/// How a tensor's rows are reordered on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOrder {
    Same,
    /// llama.cpp's normal-mode RoPE pairs dimension `j` with `j + hd/2` of each
    /// head; Hugging Face's rotate-half layout keeps them in halves. Row `r` of
    /// head `h` comes from row `h*hd + (r%2)*(hd/2) + r/2` (`LlamaModel.permute`).
    InterleaveHeads {
        heads: usize,
    },
}

impl RowOrder {
    /// The source row of output row `row` among `rows`.
    pub fn source_row(self, row: usize, rows: usize) -> usize {
        match self {
            RowOrder::Same => row,
            RowOrder::InterleaveHeads { heads } => {
                let head_dim = rows / heads;
                let (head, j) = (row / head_dim, row % head_dim);
                head * head_dim + (j % 2) * (head_dim / 2) + j / 2
            }
        }
    }
}

/// One tensor of the output file.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTensor {
    /// GGUF name (`blk.3.attn_q.weight`).
    pub name: String,
    /// The checkpoint weight it comes from.
    pub value: ValueId,
    /// GGUF dims, fastest first (`[in, out]` for a PyTorch `[out, in]` matrix).
    pub ne: Vec<u64>,
    pub rows: RowOrder,
}

/// A checkpoint mapped onto a llama.cpp architecture.
#[derive(Clone, Debug)]
pub struct LlmPlan {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Architecture keys, in the converter's order (no tokenizer, no file type).
    pub kv: KvList,
    pub tensors: Vec<PlannedTensor>,
    pub mix: MixModel,
    /// Tensors the converter drops as well (`rotary_emb.inv_freq`, BERT's pooler).
    pub dropped: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// llama and mistral: RMSNorm, SwiGLU, Q/K interleaved for normal RoPE.
    Llama,
    /// Qwen2: like llama with Q/K/V biases and NeoX RoPE (no interleave).
    Qwen2,
    Bert,
}

/// The llama.cpp architecture for a checkpoint's `metadata.architecture`.
fn family(arch: &str) -> Option<(Family, &'static str)> {
    match arch {
        "llama" | "mistral" => Some((Family::Llama, "llama")),
        "qwen2" => Some((Family::Qwen2, "qwen2")),
        "bert" => Some((Family::Bert, "bert")),
        _ => None,
    }
}

/// Architectures `plan` maps, for messages.
pub const KNOWN: &str = "llama, mistral, qwen2, bert";

/// Maps a safetensors checkpoint graph (weights with roles, `metadata.hf`)
/// onto its llama.cpp architecture. `None` when the graph is not a checkpoint
/// of a known architecture (it can still be written as a plain tensor file).
pub fn plan(g: &Graph) -> Result<Option<LlmPlan>> {
    let Some((family, arch)) = g.metadata.architecture.as_deref().and_then(family) else {
        return Ok(None);
    };
    let Some(config) = g.metadata.hf.config.as_ref() else {
        return Ok(None);
    };
    let hp = Hparams::read(config, family)?;
    let mut tensors = Vec::new();
    let mut dropped = Vec::new();
    let tied = tied_embeddings(config, g);
    for &value in &g.outputs {
        let Some(weight) = g.weight_of(value) else {
            continue;
        };
        let Some(name) = gguf_name(family, weight) else {
            if is_droppable(&weight.name) || (tied && weight.role == Some(WeightRole::Output)) {
                dropped.push(weight.name.clone());
                continue;
            }
            return Err(Error::Input(format!(
                "tensor '{}' of this {} checkpoint has no llama.cpp name",
                weight.name,
                g.metadata.architecture.as_deref().unwrap_or(arch)
            )));
        };
        if tied && weight.role == Some(WeightRole::Output) {
            dropped.push(weight.name.clone());
            continue;
        }
        let rows = match (family, weight.role) {
            (Family::Llama, Some(WeightRole::AttnQ(_) | WeightRole::AttnQBias(_))) => {
                RowOrder::InterleaveHeads {
                    heads: hp.n_head as usize,
                }
            }
            (Family::Llama, Some(WeightRole::AttnK(_) | WeightRole::AttnKBias(_))) => {
                RowOrder::InterleaveHeads {
                    heads: hp.n_head_kv as usize,
                }
            }
            _ => RowOrder::Same,
        };
        check_interleave(weight, rows)?;
        tensors.push(PlannedTensor {
            name,
            value,
            ne: gguf_dims(&weight.shape),
            rows,
        });
    }
    let kv = hp.kv(arch, family, config);
    Ok(Some(LlmPlan {
        arch,
        kv,
        tensors,
        mix: MixModel {
            arch: arch.to_string(),
            n_layer: hp.n_layer,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
        },
        dropped,
    }))
}

fn check_interleave(weight: &Weight, rows: RowOrder) -> Result<()> {
    if let RowOrder::InterleaveHeads { heads } = rows {
        let n = weight.shape.first().copied().unwrap_or(0);
        if heads == 0 || n % heads != 0 || (n / heads) % 2 != 0 {
            return Err(Error::Input(format!(
                "tensor '{}': {n} rows do not split into {heads} heads of even size",
                weight.name
            )));
        }
    }
    Ok(())
}

fn tied_embeddings(config: &Value, g: &Graph) -> bool {
    let declared = config.get("tie_word_embeddings").and_then(Value::as_bool);
    let has_output = g
        .outputs
        .iter()
        .filter_map(|&v| g.weight_of(v))
        .any(|w| w.role == Some(WeightRole::Output));
    declared.unwrap_or(!has_output) || !has_output
}

fn is_droppable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
        || name.ends_with("embeddings.position_ids")
        || name.starts_with("cls.")
        || name.starts_with("bert.pooler.")
        || name.starts_with("pooler.")
}

fn gguf_name(family: Family, w: &Weight) -> Option<String> {
    use WeightRole::*;
    let role = w.role?;
    let global = |s: &str| Some(s.to_string());
    let blk = |l: u32, s: &str| Some(format!("blk.{l}.{s}"));
    match (family, role) {
        (_, TokenEmbedding) => global("token_embd.weight"),
        (Family::Bert, PositionEmbedding) => global("position_embd.weight"),
        (Family::Bert, TokenTypeEmbedding) => global("token_types.weight"),
        (Family::Bert, EmbeddingNorm) => global("token_embd_norm.weight"),
        (Family::Bert, EmbeddingNormBias) => global("token_embd_norm.bias"),
        (_, AttnQ(l)) => blk(l, "attn_q.weight"),
        (_, AttnK(l)) => blk(l, "attn_k.weight"),
        (_, AttnV(l)) => blk(l, "attn_v.weight"),
        (_, AttnQBias(l)) => blk(l, "attn_q.bias"),
        (_, AttnKBias(l)) => blk(l, "attn_k.bias"),
        (_, AttnVBias(l)) => blk(l, "attn_v.bias"),
        (_, AttnOutput(l)) => blk(l, "attn_output.weight"),
        (_, AttnOutputBias(l)) => blk(l, "attn_output.bias"),
        (Family::Bert, AttnOutputNorm(l)) => blk(l, "attn_output_norm.weight"),
        (Family::Bert, AttnOutputNormBias(l)) => blk(l, "attn_output_norm.bias"),
        (_, FfnUp(l)) => blk(l, "ffn_up.weight"),
        (_, FfnUpBias(l)) => blk(l, "ffn_up.bias"),
        (_, FfnDown(l)) => blk(l, "ffn_down.weight"),
        (_, FfnDownBias(l)) => blk(l, "ffn_down.bias"),
        (Family::Bert, LayerOutputNorm(l)) => blk(l, "layer_output_norm.weight"),
        (Family::Bert, LayerOutputNormBias(l)) => blk(l, "layer_output_norm.bias"),
        (Family::Llama | Family::Qwen2, AttnNorm(l)) => blk(l, "attn_norm.weight"),
        (Family::Llama | Family::Qwen2, FfnNorm(l)) => blk(l, "ffn_norm.weight"),
        (Family::Llama | Family::Qwen2, FfnGate(l)) => blk(l, "ffn_gate.weight"),
        (Family::Llama | Family::Qwen2, OutputNorm) => global("output_norm.weight"),
        (Family::Llama | Family::Qwen2, Output) => global("output.weight"),
        _ => None,
    }
}

/// The hyperparameters llama.cpp needs, read from `config.json` under the
/// names the converter looks for.
struct Hparams {
    n_layer: u32,
    n_ctx: Option<u32>,
    n_embd: u32,
    n_ff: Option<u32>,
    n_head: u32,
    n_head_kv: u32,
    head_dim: Option<u32>,
    vocab_size: Option<u32>,
    rope_theta: Option<f32>,
    rms_eps: Option<f32>,
    norm_eps: Option<f32>,
    type_vocab_size: Option<u32>,
}

impl Hparams {
    fn read(config: &Value, family: Family) -> Result<Hparams> {
        let int = |keys: &[&str]| -> Result<Option<u32>> {
            for key in keys {
                if let Some(v) = config.get(*key).filter(|v| !v.is_null()) {
                    return v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .map(Some)
                        .ok_or_else(|| {
                            Error::Input(format!("config.json: '{key}' is {v}, not a count"))
                        });
                }
            }
            Ok(None)
        };
        let float = |keys: &[&str]| -> Result<Option<f32>> {
            for key in keys {
                if let Some(v) = config.get(*key).filter(|v| !v.is_null()) {
                    return v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| {
                        Error::Input(format!("config.json: '{key}' is {v}, not a number"))
                    });
                }
            }
            Ok(None)
        };
        let required = |keys: &[&str]| -> Result<u32> {
            int(keys)?.filter(|&n| n > 0).ok_or_else(|| {
                Error::Input(format!(
                    "config.json: needs a positive '{}' for llama.cpp",
                    keys[0]
                ))
            })
        };
        let n_head = required(&["num_attention_heads", "n_head", "n_heads"])?;
        let rope_theta = float(&["rope_theta"])?.or(config
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .map(|f| f as f32));
        let hp = Hparams {
            n_layer: required(&["num_hidden_layers", "n_layer", "num_layers"])?,
            n_ctx: int(&[
                "max_position_embeddings",
                "n_ctx",
                "n_positions",
                "max_length",
                "max_sequence_length",
                "model_max_length",
            ])?,
            n_embd: required(&["hidden_size", "n_embd", "dim"])?,
            n_ff: int(&["intermediate_size", "n_inner", "hidden_dim"])?,
            n_head,
            n_head_kv: int(&["num_key_value_heads", "n_kv_heads"])?.unwrap_or(n_head),
            head_dim: int(&["head_dim"])?,
            vocab_size: int(&["vocab_size"])?,
            rope_theta,
            rms_eps: float(&["rms_norm_eps", "norm_eps"])?,
            norm_eps: float(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])?,
            type_vocab_size: int(&["type_vocab_size"])?,
        };
        if hp.n_head_kv == 0 || hp.n_head % hp.n_head_kv != 0 {
            return Err(Error::Input(format!(
                "config.json: {} attention heads do not share {} key/value heads evenly",
                hp.n_head, hp.n_head_kv
            )));
        }
        if family != Family::Bert && hp.rms_eps.is_none() {
            return Err(Error::Input(
                "config.json: no 'rms_norm_eps' (llama.cpp requires layer_norm_rms_epsilon)".into(),
            ));
        }
        if family == Family::Bert && hp.norm_eps.is_none() {
            return Err(Error::Input(
                "config.json: no 'layer_norm_eps' (llama.cpp requires layer_norm_epsilon)".into(),
            ));
        }
        Ok(hp)
    }

    /// `TextModel.set_gguf_parameters` and the architecture classes' additions.
    fn kv(&self, arch: &str, family: Family, config: &Value) -> KvList {
        let mut kv = KvList::default();
        let key = |k: &str| format!("{arch}.{k}");
        kv.u32(&key("block_count"), self.n_layer);
        if let Some(n) = self.n_ctx {
            kv.u32(&key("context_length"), n);
        }
        kv.u32(&key("embedding_length"), self.n_embd);
        if let Some(n) = self.n_ff {
            kv.u32(&key("feed_forward_length"), n);
        }
        kv.u32(&key("attention.head_count"), self.n_head);
        if family != Family::Bert {
            kv.u32(&key("attention.head_count_kv"), self.n_head_kv);
        }
        if let Some(theta) = self.rope_theta {
            kv.f32(&key("rope.freq_base"), theta);
        }
        if let Some(eps) = self.rms_eps {
            kv.f32(&key("attention.layer_norm_rms_epsilon"), eps);
        }
        if let Some(eps) = self.norm_eps {
            kv.f32(&key("attention.layer_norm_epsilon"), eps);
        }
        match family {
            Family::Llama => {
                if let Some(n) = self.vocab_size {
                    kv.u32(&key("vocab_size"), n);
                }
                let rope_dim = self.head_dim.unwrap_or(self.n_embd / self.n_head);
                kv.u32(&key("rope.dimension_count"), rope_dim);
            }
            Family::Qwen2 => {}
            Family::Bert => {
                kv.bool(&key("attention.causal"), false);
                if let Some(n) = self.type_vocab_size {
                    kv.u32("tokenizer.ggml.token_type_count", n);
                }
            }
        }
        if let Some(scaling) = rope_scaling(config) {
            match scaling {
                RopeScaling::Linear(factor) => {
                    kv.string(&key("rope.scaling.type"), "linear");
                    kv.f32(&key("rope.scaling.factor"), factor);
                }
                RopeScaling::Yarn { factor, original } => {
                    kv.string(&key("rope.scaling.type"), "yarn");
                    kv.f32(&key("rope.scaling.factor"), factor);
                    kv.u32(&key("rope.scaling.original_context_length"), original);
                }
            }
        }
        kv
    }
}

enum RopeScaling {
    Linear(f32),
    Yarn { factor: f32, original: u32 },
}

fn rope_scaling(config: &Value) -> Option<RopeScaling> {
    let params = config
        .get("rope_scaling")
        .filter(|v| v.is_object())
        .or_else(|| config.get("rope_parameters"))?;
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))?
        .as_str()?;
    let factor = params.get("factor")?.as_f64()? as f32;
    match kind {
        "linear" => Some(RopeScaling::Linear(factor)),
        "yarn" => Some(RopeScaling::Yarn {
            factor,
            original: params
                .get("original_max_position_embeddings")?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
