//! Which GGML type each tensor gets for a llama.cpp file type (`--quant Q4_K_M`),
//! decided exactly as `llama-quantize` decides it (src/llama-quant.cpp:
//! `tensor_allows_quantization`, `llama_tensor_get_type_impl`,
//! `tensor_type_fallback`), so an edgeconv file and a llama.cpp file of the
//! same model and file type hold the same type for every tensor.

use std::fmt;

use super::types::TensorType;
use crate::ir::error::{Error, Result};

/// llama.cpp's `llama_ftype`: the file-level quantization a user asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    AllF32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
}

impl FileType {
    pub const ALL: [FileType; 17] = [
        FileType::AllF32,
        FileType::F16,
        FileType::BF16,
        FileType::Q8_0,
        FileType::Q6K,
        FileType::Q5KM,
        FileType::Q5KS,
        FileType::Q4KM,
        FileType::Q4KS,
        FileType::Q3KL,
        FileType::Q3KM,
        FileType::Q3KS,
        FileType::Q2K,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
    ];

    /// The name `llama-quantize` and `--quant` use.
    pub fn name(self) -> &'static str {
        match self {
            FileType::AllF32 => "F32",
            FileType::F16 => "F16",
            FileType::BF16 => "BF16",
            FileType::Q8_0 => "Q8_0",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q2K => "Q2_K",
            FileType::Q3KS => "Q3_K_S",
            FileType::Q3KM => "Q3_K_M",
            FileType::Q3KL => "Q3_K_L",
            FileType::Q4KS => "Q4_K_S",
            FileType::Q4KM => "Q4_K_M",
            FileType::Q5KS => "Q5_K_S",
            FileType::Q5KM => "Q5_K_M",
            FileType::Q6K => "Q6_K",
        }
    }

    /// Case-insensitive; `Q4_K` and `Q5_K` mean their `_M` mixes, as in llama-quantize.
    pub fn parse(name: &str) -> Option<FileType> {
        let upper = name.to_ascii_uppercase();
        let upper = match upper.as_str() {
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            "Q3_K" => "Q3_K_M",
            "F32" | "ALL_F32" => "F32",
            other => other,
        };
        FileType::ALL.into_iter().find(|t| t.name() == upper)
    }

    /// `general.file_type` (`llama_ftype`).
    pub fn id(self) -> u32 {
        match self {
            FileType::AllF32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q2K => 10,
            FileType::Q3KS => 11,
            FileType::Q3KM => 12,
            FileType::Q3KL => 13,
            FileType::Q4KS => 14,
            FileType::Q4KM => 15,
            FileType::Q5KS => 16,
            FileType::Q5KM => 17,
            FileType::Q6K => 18,
            FileType::BF16 => 32,
        }
    }

    /// `llama_ftype_get_default_type`.
    pub fn default_type(self) -> TensorType {
        match self {
            FileType::AllF32 => TensorType::F32,
            FileType::F16 => TensorType::F16,
            FileType::BF16 => TensorType::BF16,
            FileType::Q8_0 => TensorType::Q8_0,
            FileType::Q4_0 => TensorType::Q4_0,
            FileType::Q4_1 => TensorType::Q4_1,
            FileType::Q5_0 => TensorType::Q5_0,
            FileType::Q5_1 => TensorType::Q5_1,
            FileType::Q2K => TensorType::Q2K,
            FileType::Q3KS | FileType::Q3KM | FileType::Q3KL => TensorType::Q3K,
            FileType::Q4KS | FileType::Q4KM => TensorType::Q4K,
            FileType::Q5KS | FileType::Q5KM => TensorType::Q5K,
            FileType::Q6K => TensorType::Q6K,
        }
    }

    pub fn names() -> String {
        FileType::ALL.map(FileType::name).join(", ")
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The model facts the mix rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixModel {
    /// `general.architecture` (`llama`, `qwen2`, `bert`, ...).
    pub arch: String,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
}

impl MixModel {
    fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp's `LLM_TYPE_70B`, the one model size the rules single out.
    fn is_70b(&self) -> bool {
        match self.arch.as_str() {
            "llama" => self.n_layer == 80 && self.n_head != self.n_head_kv,
            "qwen2" => self.n_layer == 80,
            _ => false,
        }
    }
}

/// One tensor as the rules see it: GGUF name, dims fastest first (`ne`), and
/// its type in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixTensor {
    pub name: String,
    pub ne: Vec<u64>,
    pub source: TensorType,
}

/// A user rule: tensors whose name matches `pattern` (a glob with `*` and `?`)
/// get `ty` instead of the mix's choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeOverride {
    pub pattern: String,
    pub ty: TensorType,
}

impl TypeOverride {
    /// Parses `GLOB=TYPE` (`blk.*.ffn_down.weight=Q6_K`).
    pub fn parse(spec: &str) -> Result<TypeOverride> {
        let (pattern, ty) = spec
            .rsplit_once('=')
            .ok_or_else(|| Error::Input(format!("--tensor-type '{spec}': expected GLOB=TYPE")))?;
        let ty = TensorType::parse(ty).ok_or_else(|| {
            Error::Input(format!(
                "--tensor-type '{spec}': '{ty}' is not a tensor type edgeconv writes ({})",
                TensorType::writable_names()
            ))
        })?;
        if pattern.is_empty() {
            return Err(Error::Input(format!(
                "--tensor-type '{spec}': empty pattern"
            )));
        }
        Ok(TypeOverride {
            pattern: pattern.to_string(),
            ty,
        })
    }

    fn matches(&self, name: &str) -> bool {
        glob_match(self.pattern.as_bytes(), name.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// What the mix decided for one tensor, and why when it is not the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub ty: TensorType,
    /// Set when a shape fallback replaced the rule's type (`ne[0] 100 not divisible by 256`).
    pub fallback: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttentionQkv,
    AttentionKvB,
    AttentionV,
    AttentionK,
    AttentionQ,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        return Category::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return Category::TokenEmbd;
    }
    let table = [
        ("attn_qkv.weight", Category::AttentionQkv),
        ("attn_kv_b.weight", Category::AttentionKvB),
        ("attn_v.weight", Category::AttentionV),
        ("attn_k.weight", Category::AttentionK),
        ("attn_q.weight", Category::AttentionQ),
        ("attn_output.weight", Category::AttentionOutput),
        ("ffn_up", Category::FfnUp),
        ("ffn_gate", Category::FfnGate),
        ("ffn_down", Category::FfnDown),
    ];
    table
        .into_iter()
        .find(|(needle, _)| name.contains(needle))
        .map_or(Category::Other, |(_, c)| c)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(
        c,
        Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
    )
}

/// `tensor_allows_quantization` for the architectures edgeconv writes.
pub fn allows_quantization(t: &MixTensor) -> bool {
    let name = t.name.as_str();
    let dims = t.ne.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    if dims < 2 || !name.ends_with("weight") {
        return false;
    }
    const NEVER: [&str; 7] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "attn_rel_b.weight",
    ];
    !NEVER.iter().any(|n| name.contains(n))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// The layer order llama.cpp's loader iterates tensors in (`weight_name_comparer`):
/// tensors outside `blk.N.` first, then by layer, each group by name. The mix
/// rules count attention-V tensors in this order, and llama-quantize writes it.
pub fn llama_order(names: &[&str]) -> Vec<usize> {
    let layer = |name: &str| -> i64 {
        name.strip_prefix("blk.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        (layer(names[a]), names[a].as_bytes()).cmp(&(layer(names[b]), names[b].as_bytes()))
    });
    order
}

/// The type of every tensor (same order as `tensors`) for `ftype`, with the
/// user's overrides, as `llama_model_quantize` picks them from a file whose
/// tensors have the `source` types.
pub fn choose_types(
    model: &MixModel,
    tensors: &[MixTensor],
    ftype: FileType,
    overrides: &[TypeOverride],
    has_imatrix: bool,
) -> Vec<Choice> {
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    let mut state = State {
        model,
        ftype,
        has_imatrix,
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v_like(category(&t.name)))
            .count() as i64,
        n_layer: i64::from(model.n_layer),
        has_tied_embeddings: !names.contains(&"output.weight"),
        i_attention_wv: 0,
        i_ffn_down: 0,
    };
    let mut choices = vec![None; tensors.len()];
    for index in llama_order(&names) {
        choices[index] = Some(state.choose(&tensors[index], overrides));
    }
    choices.into_iter().flatten().collect()
}

struct State<'a> {
    model: &'a MixModel,
    ftype: FileType,
    has_imatrix: bool,
    n_attention_wv: i64,
    n_layer: i64,
    has_tied_embeddings: bool,
    i_attention_wv: i64,
    i_ffn_down: i64,
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

impl State<'_> {
    /// `llama_tensor_get_type`.
    fn choose(&mut self, t: &MixTensor, overrides: &[TypeOverride]) -> Choice {
        let keep = Choice {
            ty: t.source,
            fallback: None,
        };
        if !allows_quantization(t) {
            return keep;
        }
        let default = self.ftype.default_type();
        if !default.is_block() {
            return Choice {
                ty: default,
                fallback: None,
            };
        }
        let ty = match overrides.iter().find(|o| o.matches(&t.name)) {
            Some(o) => o.ty,
            None => self.rules(t, default),
        };
        fallback(t, ty)
    }

    /// `llama_tensor_get_type_impl` for the non-IQ file types.
    fn rules(&mut self, t: &MixTensor, mut ty: TensorType) -> TensorType {
        use FileType as F;
        use TensorType as T;
        let cat = category(&t.name);
        let ftype = self.ftype;
        let falcon = self.model.arch == "falcon";
        if cat == Category::Output || (self.has_tied_embeddings && cat == Category::TokenEmbd) {
            let nx = t.ne[0];
            if falcon || nx % ty.block_elems() as u64 != 0 {
                ty = T::Q8_0;
            } else if ty != T::Q8_0 {
                ty = T::Q6K;
            }
        } else if cat == Category::TokenEmbd {
            // Only IQ and ternary file types change token embeddings.
        } else if is_attn_v_like(cat) {
            let gqa = self.model.n_gqa();
            let i = self.i_attention_wv;
            if ftype == F::Q2K {
                ty = if gqa >= 4 { T::Q4K } else { T::Q3K };
            } else if ftype == F::Q3KM {
                ty = if i < 2 { T::Q5K } else { T::Q4K };
            } else if ftype == F::Q3KL {
                ty = T::Q5K;
            } else if matches!(ftype, F::Q4KM | F::Q5KM) && use_more_bits(i, self.n_attention_wv) {
                ty = T::Q6K;
            } else if ftype == F::Q4KS && i < 4 {
                ty = T::Q5K;
            }
            if self.model.is_70b() && matches!(ty, T::Q3K | T::Q4K) {
                ty = T::Q5K;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::FfnDown {
            let (i, n) = (self.i_ffn_down, self.n_layer);
            match ftype {
                F::Q2K => ty = T::Q3K,
                F::Q3KM => {
                    ty = if i < n / 16 {
                        T::Q5K
                    } else if !falcon || use_more_bits(i, n) {
                        T::Q4K
                    } else {
                        T::Q3K
                    }
                }
                F::Q3KL => ty = if falcon { T::Q4K } else { T::Q5K },
                F::Q4KM => {
                    if falcon {
                        ty = if i < n / 16 {
                            T::Q6K
                        } else if use_more_bits(i, n) {
                            T::Q5K
                        } else {
                            T::Q4K
                        };
                    } else if use_more_bits(i, n) {
                        ty = T::Q6K;
                    }
                }
                F::Q5KM if use_more_bits(i, n) => ty = T::Q6K,
                F::Q4KS if !falcon && i < n / 8 => ty = T::Q5K,
                F::Q4_0 | F::Q5_0 if self.has_imatrix && i < n / 8 => {
                    ty = if ftype == F::Q4_0 { T::Q4_1 } else { T::Q5_1 };
                }
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttentionOutput {
            if !falcon {
                match ftype {
                    F::Q2K => ty = T::Q3K,
                    F::Q3KM => ty = T::Q4K,
                    F::Q3KL => ty = T::Q5K,
                    _ => {}
                }
            } else if ftype == F::Q3KL {
                ty = T::Q4K;
            }
        } else if cat == Category::AttentionQkv {
            match ftype {
                F::Q3KM | F::Q3KL => ty = T::Q4K,
                F::Q4KM => ty = T::Q5K,
                F::Q5KM => ty = T::Q6K,
                _ => {}
            }
        }
        ty
    }
}

/// `tensor_type_fallback`: a row length the block does not divide takes a
/// 32-element type, and F16 when even that does not divide it.
fn fallback(t: &MixTensor, ty: TensorType) -> Choice {
    use TensorType as T;
    let ncols = t.ne[0];
    let block = ty.block_elems() as u64;
    if ncols % block == 0 {
        return Choice { ty, fallback: None };
    }
    let mut chosen = match ty {
        T::Q2K | T::Q3K => T::Q4_0,
        T::Q4K => T::Q5_0,
        T::Q5K => T::Q5_1,
        T::Q6K => T::Q8_0,
        other => other,
    };
    if ncols % chosen.block_elems() as u64 != 0 {
        chosen = T::F16;
    }
    Choice {
        ty: chosen,
        fallback: Some(format!(
            "{}: ne[0] {ncols} is not a multiple of {block} ({ty}), {chosen} instead",
            t.name
        )),
    }
}

#[cfg(test)]
mod tests;
