//! A Hugging Face tokenizer (`tokenizer.json`, `tokenizer_config.json`) as
//! llama.cpp's tokenizer metadata, the way llama.cpp's converter writes it:
//! byte-level BPE as `gpt2` (tokens, types, merges, the pre-tokenizer by
//! name), BPE with byte fallback as SentencePiece-style `llama` (tokens,
//! scores, types), WordPiece as `bert` (tokens in phantom-space form), plus
//! special token ids, `add_bos`/`add_eos` and the chat template.

use std::collections::HashMap;

use serde_json::Value;

use super::container::{GgufValue, MetaType};
use super::kv::KvList;
use crate::ir::error::{Error, Result};
use crate::ir::graph::HfFiles;

/// llama.cpp's `llama_token_type`.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// The GPT-2 split regex `ByteLevel(use_regex=true)` applies.
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// `Split` regexes of tokenizer.json and the llama.cpp pre-tokenizer that
/// implements each (src/llama-vocab.cpp).
const KNOWN_SPLITS: [(&str, &str); 2] = [
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "llama-bpe",
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "qwen2",
    ),
];

/// The tokenizer keys, and what the user should know about them.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    pub kv: KvList,
    pub warnings: Vec<String>,
}

fn input(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

pub fn metadata(hf: &HfFiles, arch: &str) -> Result<Vocab> {
    let tj = hf.tokenizer.as_ref().ok_or_else(|| {
        input("the checkpoint has no tokenizer.json; llama.cpp needs the vocabulary in the GGUF")
    })?;
    let model = tj
        .get("model")
        .ok_or_else(|| input("tokenizer.json: no 'model'"))?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
    let table = TokenTable::read(tj, hf.config.as_ref())?;
    let mut vocab = Vocab::default();
    let kv = &mut vocab.kv;
    match (kind, arch) {
        ("WordPiece", _) => {
            kv.string("tokenizer.ggml.model", "bert");
            kv.string("tokenizer.ggml.pre", "default");
            let tokens = table
                .tokens
                .iter()
                .zip(&table.types)
                .map(|(t, &ty)| {
                    if ty == CONTROL {
                        t.clone()
                    } else if let Some(rest) = t.strip_prefix("##") {
                        rest.to_string()
                    } else {
                        format!("\u{2581}{t}")
                    }
                })
                .collect::<Vec<_>>();
            kv.set("tokenizer.ggml.tokens", GgufValue::strings(tokens));
            kv.set("tokenizer.ggml.token_type", i32_array(&table.types));
        }
        ("BPE", _) if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) => {
            kv.string("tokenizer.ggml.model", "llama");
            kv.string("tokenizer.ggml.pre", "default");
            let types: Vec<i32> = table
                .tokens
                .iter()
                .zip(&table.types)
                .map(|(t, &ty)| {
                    if ty == NORMAL && is_byte_token(t) {
                        BYTE
                    } else {
                        ty
                    }
                })
                .collect();
            kv.set(
                "tokenizer.ggml.tokens",
                GgufValue::strings(table.tokens.clone()),
            );
            kv.set(
                "tokenizer.ggml.scores",
                GgufValue::Array(
                    MetaType::F32,
                    vec![GgufValue::F32(-1000.0); table.tokens.len()],
                ),
            );
            kv.set("tokenizer.ggml.token_type", i32_array(&types));
        }
        ("BPE", _) => {
            kv.string("tokenizer.ggml.model", "gpt2");
            let pre = match pre_tokenizer(tj.get("pre_tokenizer")) {
                Some(name) => name,
                None => {
                    vocab.warnings.push(
                        "tokenizer.json's pre-tokenizer is not one llama.cpp implements by name; \
                         wrote 'default' (llama.cpp may split text differently)"
                            .into(),
                    );
                    "default"
                }
            };
            kv.string("tokenizer.ggml.pre", pre);
            kv.set(
                "tokenizer.ggml.tokens",
                GgufValue::strings(table.tokens.clone()),
            );
            kv.set("tokenizer.ggml.token_type", i32_array(&table.types));
            kv.set("tokenizer.ggml.merges", GgufValue::strings(merges(model)?));
        }
        (other, _) => {
            return Err(Error::Unsupported(vec![crate::ir::error::Unsupported {
                node: "tokenizer.json".into(),
                op: other.into(),
                reason: "edgeconv converts BPE and WordPiece tokenizers to GGUF".into(),
            }]));
        }
    }
    special_tokens(hf, tj, &table, kv, kind == "WordPiece");
    Ok(vocab)
}

fn i32_array(values: &[i32]) -> GgufValue {
    GgufValue::Array(
        MetaType::I32,
        values.iter().map(|&v| GgufValue::I32(v)).collect(),
    )
}

fn is_byte_token(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && b[3..5].iter().all(u8::is_ascii_hexdigit)
}

/// Tokens in id order with llama.cpp's types; holes become `[PADi]` (unused).
struct TokenTable {
    tokens: Vec<String>,
    types: Vec<i32>,
    ids: HashMap<String, u32>,
}

impl TokenTable {
    fn read(tj: &Value, config: Option<&Value>) -> Result<TokenTable> {
        let mut by_id: HashMap<u64, (String, i32)> = HashMap::new();
        let vocab = tj
            .get("model")
            .and_then(|m| m.get("vocab"))
            .and_then(Value::as_object)
            .ok_or_else(|| input("tokenizer.json: 'model.vocab' is not a token -> id map"))?;
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .ok_or_else(|| input(format!("tokenizer.json: token {token:?} has id {id}")))?;
            by_id.insert(id, (token.clone(), NORMAL));
        }
        for added in tj
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(content)) = (
                added.get("id").and_then(Value::as_u64),
                added.get("content").and_then(Value::as_str),
            ) else {
                return Err(input(format!(
                    "tokenizer.json: malformed added token {added}"
                )));
            };
            let special = added
                .get("special")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            by_id.insert(
                id,
                (
                    content.to_string(),
                    if special { CONTROL } else { USER_DEFINED },
                ),
            );
        }
        let max_id = by_id.keys().max().copied().unwrap_or(0);
        let declared = config
            .and_then(|c| c.get("vocab_size"))
            .and_then(Value::as_u64);
        let size = declared.unwrap_or(max_id + 1);
        if max_id >= size {
            return Err(input(format!(
                "tokenizer.json has token id {max_id}, but config.json's vocab_size is {size}"
            )));
        }
        // A vocabulary larger than any real model guards the allocation below.
        if size > 16_000_000 {
            return Err(input(format!("vocab_size {size} is not plausible")));
        }
        let mut tokens = Vec::with_capacity(size as usize);
        let mut types = Vec::with_capacity(size as usize);
        let mut ids = HashMap::new();
        for i in 0..size {
            match by_id.remove(&i) {
                Some((t, ty)) => {
                    ids.insert(t.clone(), i as u32);
                    tokens.push(t);
                    types.push(ty);
                }
                None => {
                    tokens.push(format!("[PAD{i}]"));
                    types.push(UNUSED);
                }
            }
        }
        Ok(TokenTable { tokens, types, ids })
    }
}

/// The llama.cpp pre-tokenizer name for tokenizer.json's `pre_tokenizer`.
fn pre_tokenizer(pre: Option<&Value>) -> Option<&'static str> {
    let pre = pre?;
    let ty = pre.get("type")?.as_str()?;
    if ty == "ByteLevel" {
        return (pre.get("use_regex").and_then(Value::as_bool) != Some(false)).then_some("gpt-2");
    }
    if ty != "Sequence" {
        return None;
    }
    let parts = pre.get("pretokenizers")?.as_array()?;
    let [split, byte_level] = parts.as_slice() else {
        return None;
    };
    if byte_level.get("type")?.as_str()? != "ByteLevel"
        || byte_level.get("use_regex").and_then(Value::as_bool) != Some(false)
        || split.get("type")?.as_str()? != "Split"
    {
        return None;
    }
    let regex = split.get("pattern")?.get("Regex")?.as_str()?;
    if regex == GPT2_REGEX {
        return Some("gpt-2");
    }
    KNOWN_SPLITS
        .iter()
        .find(|(r, _)| *r == regex)
        .map(|(_, name)| *name)
}

/// `model.merges` as "a b" strings (tokenizer.json has strings or pairs).
fn merges(model: &Value) -> Result<Vec<String>> {
    let Some(list) = model.get("merges").and_then(Value::as_array) else {
        return Err(input("tokenizer.json: a BPE model without 'merges'"));
    };
    list.iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(input(format!("tokenizer.json: malformed merge {m}"))),
            },
            _ => Err(input(format!("tokenizer.json: malformed merge {m}"))),
        })
        .collect()
}

/// `SpecialVocab`: special token ids from tokenizer_config.json (names
/// looked up in the vocabulary) or config.json, `add_bos`/`add_eos`, and the
/// chat template.
fn special_tokens(hf: &HfFiles, tj: &Value, table: &TokenTable, kv: &mut KvList, wordpiece: bool) {
    let tc = hf.tokenizer_config.as_ref();
    let token_name = |key: &str| -> Option<String> {
        let v = tc?.get(key)?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        }
    };
    let kinds: &[(&str, &str)] = if wordpiece {
        &[
            ("unk_token", "unknown"),
            ("sep_token", "seperator"),
            ("pad_token", "padding"),
            ("cls_token", "cls"),
            ("mask_token", "mask"),
        ]
    } else {
        &[
            ("bos_token", "bos"),
            ("eos_token", "eos"),
            ("unk_token", "unknown"),
            ("pad_token", "padding"),
        ]
    };
    for (config_key, gguf_kind) in kinds {
        let id = token_name(config_key)
            .and_then(|name| table.ids.get(&name).copied())
            .or_else(|| {
                let key = format!("{}_token_id", &config_key[..config_key.len() - 6]);
                hf.config
                    .as_ref()?
                    .get(key)?
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
            });
        if let Some(id) = id.filter(|&id| (id as usize) < table.tokens.len()) {
            kv.u32(&format!("tokenizer.ggml.{gguf_kind}_token_id"), id);
        }
    }
    let flag = |key: &str| tc.and_then(|c| c.get(key)).and_then(Value::as_bool);
    let add_bos = flag("add_bos_token").or_else(|| post_processor_adds_bos(tj, table));
    if let Some(add) = add_bos {
        kv.bool("tokenizer.ggml.add_bos_token", add);
    }
    if let Some(add) = flag("add_eos_token") {
        kv.bool("tokenizer.ggml.add_eos_token", add);
    }
    if let Some(template) = tc
        .and_then(|c| c.get("chat_template"))
        .and_then(Value::as_str)
    {
        kv.string("tokenizer.chat_template", template);
    }
}

/// Whether tokenizer.json's `TemplateProcessing` post-processor starts a
/// single sequence with the bos token (what `SpecialVocab` checks when
/// tokenizer_config.json does not say).
fn post_processor_adds_bos(tj: &Value, table: &TokenTable) -> Option<bool> {
    let pp = tj.get("post_processor")?;
    let single = if pp.get("type")?.as_str()? == "TemplateProcessing" {
        pp.get("single")?
    } else {
        pp.get("processors")?
            .as_array()?
            .iter()
            .find(|p| p.get("type").and_then(Value::as_str) == Some("TemplateProcessing"))?
            .get("single")?
    };
    let first = single.as_array()?.first()?;
    let special = first.get("SpecialToken")?.get("id")?.as_str()?;
    Some(table.ids.contains_key(special))
}

#[cfg(test)]
mod tests;
