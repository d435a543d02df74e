//! A Hugging Face tokenizer (`tokenizer.json`, `tokenizer_config.json`,
//! `config.json`) as llama.cpp's tokenizer metadata, the way llama.cpp's
//! converter (convert_hf_to_gguf.py, gguf-py's `SpecialVocab`) writes it:
//! - byte-level BPE as `gpt2` (`get_vocab_base`): tokens in id order with
//!   holes as `[PADi]`, token types, merges, the pre-tokenizer by name;
//! - BPE with byte fallback, for llama-family checkpoints, as
//!   SentencePiece-style `llama` (`_set_vocab_llama_hf`): tokens, scores,
//!   types with `<0xNN>` byte tokens;
//! - WordPiece as `bert`, tokens in phantom-space form;
//!
//! plus special token ids, `add_bos`/`add_eos`/`add_sep`, the chat template
//! and the normalizer flags (tokenizer/special.rs).
//!
//! Where the converter depends on running the tokenizer, this follows what
//! it does for the usual files: the pre-tokenizer is recognised from its
//! structure (tokenizer/pre.rs), not from a hash of a tokenization; added
//! tokens are taken as they are written (the converter round-trips
//! non-normalized ones through the tokenizer, which leaves them unchanged).
//! Two deliberate differences: in the `llama` style an added token marked
//! `special` is a control token even when tokenizer_config.json does not
//! name it (the converter asks `transformers` for its named special tokens
//! only), and the vocabulary is padded with unused `[PADi]` tokens up to
//! config.json's `vocab_size`, as the `gpt2` style does, so that the token
//! count matches the embedding rows.

mod pre;
mod special;

use std::collections::HashMap;

use serde_json::Value;

use super::container::{GgufValue, MetaType};
use super::kv::KvList;
use crate::ir::error::{Error, Result};
use crate::ir::graph::HfFiles;
use special::Specials;

/// llama.cpp's `llama_token_type`.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// The score `_set_vocab_llama_hf` gives every token.
const LLAMA_HF_SCORE: f32 = -1000.0;

/// A vocabulary larger than any real model's guards the allocations.
const MAX_VOCAB: u64 = 16_000_000;

/// The tokenizer keys, and what the user should know about them.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    pub kv: KvList,
    pub warnings: Vec<String>,
}

fn input(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

/// How llama.cpp's converter writes this tokenizer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Style {
    Gpt2,
    LlamaHf,
    Bert,
}

/// The GGUF tokenizer metadata of a checkpoint whose llama.cpp architecture
/// is `arch` (`llama` for llama and mistral checkpoints, `qwen2`, `bert`).
pub fn metadata(hf: &HfFiles, arch: &str) -> Result<Vocab> {
    let tj = hf.tokenizer.as_ref().ok_or_else(|| {
        input("the checkpoint has no tokenizer.json; llama.cpp needs the vocabulary in the GGUF")
    })?;
    let model = tj
        .get("model")
        .ok_or_else(|| input("tokenizer.json: no 'model'"))?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
    let style = match kind {
        "WordPiece" => Style::Bert,
        "BPE" if arch == "llama" && is_llama_hf(tj) => Style::LlamaHf,
        "BPE" => Style::Gpt2,
        other => {
            return Err(Error::Unsupported(vec![crate::ir::error::Unsupported {
                node: "tokenizer.json".into(),
                op: if other.is_empty() {
                    "(no model type)"
                } else {
                    other
                }
                .into(),
                reason: "edgeconv converts BPE and WordPiece tokenizers to GGUF".into(),
            }]));
        }
    };
    let entries = Entries::read(tj)?;
    let table = match style {
        Style::LlamaHf => TokenTable::llama_hf(&entries, hf)?,
        Style::Gpt2 | Style::Bert => TokenTable::vocab_base(&entries, hf.config.as_ref())?,
    };
    let mut vocab = Vocab::default();
    let kv = &mut vocab.kv;
    if arch == "llama" {
        let prefix = hf
            .tokenizer_config
            .as_ref()
            .and_then(|c| c.get("add_prefix_space"))
            .and_then(Value::as_bool);
        if let Some(add) = prefix {
            kv.bool("tokenizer.ggml.add_space_prefix", add);
        }
    }
    match style {
        Style::Bert => {
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
        Style::LlamaHf => {
            kv.string("tokenizer.ggml.model", "llama");
            kv.string("tokenizer.ggml.pre", "default");
            kv.set(
                "tokenizer.ggml.tokens",
                GgufValue::strings(table.tokens.clone()),
            );
            kv.set(
                "tokenizer.ggml.scores",
                GgufValue::Array(
                    MetaType::F32,
                    vec![GgufValue::F32(LLAMA_HF_SCORE); table.tokens.len()],
                ),
            );
            kv.set("tokenizer.ggml.token_type", i32_array(&table.types));
        }
        Style::Gpt2 => {
            kv.string("tokenizer.ggml.model", "gpt2");
            let pre = match pre::recognise(tj) {
                pre::Recognised::Name(name) => name,
                pre::Recognised::MergesDiffer(name) => {
                    vocab.warnings.push(format!(
                        "tokenizer.json's pre-tokenizer splits as llama.cpp's '{name}', but its \
                         BPE 'ignore_merges' differs from that one's; wrote '{name}' (a few words \
                         may tokenize differently in llama.cpp)"
                    ));
                    name
                }
                pre::Recognised::Unknown => {
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
    }
    let specials = special::read(hf, table.tokens.len());
    write_specials(&specials, kv);
    vocab.warnings.extend(specials.warnings);
    Ok(vocab)
}

/// `LlamaHfVocab` accepts BPE with byte fallback and a `Sequence` decoder
/// (Llama 2 and Mistral style); anything else goes the `gpt2` way.
fn is_llama_hf(tj: &Value) -> bool {
    let model = &tj["model"];
    model.get("byte_fallback").and_then(Value::as_bool) == Some(true)
        && tj
            .get("decoder")
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
            == Some("Sequence")
}

fn write_specials(s: &Specials, kv: &mut KvList) {
    for (kind, id) in &s.ids {
        kv.u32(&Specials::id_key(kind), *id);
    }
    for (kind, add) in &s.add {
        kv.bool(&format!("tokenizer.ggml.add_{kind}_token"), *add);
    }
    match &s.chat_template {
        Some(Value::String(t)) => kv.string("tokenizer.chat_template", t),
        Some(Value::Array(choices)) => named_templates(choices, kv),
        _ => {}
    }
    if let Some(lower) = s.lowercase {
        kv.bool("tokenizer.ggml.normalizer.lowercase", lower);
    }
    if let Some(strip) = s.strip_accents {
        kv.bool("tokenizer.ggml.normalizer.strip_accents", strip);
    }
}

/// A list of `{name, template}` chat templates as `GGUFWriter` writes it:
/// `default` as `tokenizer.chat_template`, the others under their names
/// (non-alphanumerics replaced by `_`) and listed in `tokenizer.chat_templates`
/// (sorted here; gguf-py lists them in set order).
fn named_templates(choices: &[Value], kv: &mut KvList) {
    let mut names = Vec::new();
    let mut default = None;
    for choice in choices {
        let name: String = choice
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let Some(template) = choice.get("template").and_then(Value::as_str) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if name == "default" {
            default = Some(template);
        } else {
            kv.string(&format!("tokenizer.chat_template.{name}"), template);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if !names.is_empty() {
        names.sort();
        kv.set("tokenizer.chat_templates", GgufValue::strings(names));
    }
    if let Some(t) = default {
        kv.string("tokenizer.chat_template", t);
    }
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

/// Added tokens some models do not mark special but that are control
/// tokens (`does_token_look_special` in the converter).
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// An added token of tokenizer.json.
struct Added {
    id: u64,
    content: String,
    special: bool,
}

/// tokenizer.json's model vocabulary and added tokens, validated.
struct Entries {
    vocab: Vec<(String, u64)>,
    added: Vec<Added>,
}

impl Entries {
    fn read(tj: &Value) -> Result<Entries> {
        let map = tj
            .get("model")
            .and_then(|m| m.get("vocab"))
            .and_then(Value::as_object)
            .ok_or_else(|| input("tokenizer.json: 'model.vocab' is not a token -> id map"))?;
        let mut vocab = Vec::with_capacity(map.len());
        for (token, id) in map {
            let id = id.as_u64().filter(|&i| i < MAX_VOCAB).ok_or_else(|| {
                input(format!(
                    "tokenizer.json: model.vocab token {token:?} has id {id}, not an id below {MAX_VOCAB}"
                ))
            })?;
            vocab.push((token.clone(), id));
        }
        let mut added = Vec::new();
        let list = match tj.get("added_tokens") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(other) => {
                return Err(input(format!(
                    "tokenizer.json: 'added_tokens' is not a list: {other}"
                )));
            }
        };
        for a in list {
            let (Some(id), Some(content)) = (
                a.get("id")
                    .and_then(Value::as_u64)
                    .filter(|&i| i < MAX_VOCAB),
                a.get("content").and_then(Value::as_str),
            ) else {
                return Err(input(format!("tokenizer.json: malformed added token {a}")));
            };
            let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
            added.push(Added {
                id,
                content: content.to_string(),
                special,
            });
        }
        Ok(Entries { vocab, added })
    }

    /// Content by id, the added tokens overriding the model vocabulary, as
    /// `transformers`' `get_vocab()` has them.
    fn by_id(&self) -> HashMap<u64, &str> {
        let mut by_id: HashMap<u64, &str> = HashMap::with_capacity(self.vocab.len());
        for (t, id) in &self.vocab {
            by_id.insert(*id, t);
        }
        for a in &self.added {
            by_id.insert(a.id, &a.content);
        }
        by_id
    }
}

/// The size config.json declares, checked against the ids in use.
fn declared_size(config: Option<&Value>, max_id: Option<u64>, otherwise: u64) -> Result<u64> {
    let size = match config.and_then(|c| c.get("vocab_size")) {
        None | Some(Value::Null) => otherwise,
        Some(v) => v.as_u64().filter(|&n| n <= MAX_VOCAB).ok_or_else(|| {
            input(format!(
                "config.json: vocab_size {v} is not a vocabulary size (at most {MAX_VOCAB})"
            ))
        })?,
    };
    if let Some(max_id) = max_id.filter(|&m| m >= size) {
        return Err(input(format!(
            "tokenizer.json has token id {max_id}, but config.json's vocab_size is {size}"
        )));
    }
    Ok(size)
}

/// Tokens in id order with llama.cpp's types.
struct TokenTable {
    tokens: Vec<String>,
    types: Vec<i32>,
}

impl TokenTable {
    /// `get_vocab_base`: every id below the vocabulary size, holes as
    /// unused `[PADi]`, added tokens as control or user-defined tokens.
    fn vocab_base(e: &Entries, config: Option<&Value>) -> Result<TokenTable> {
        let by_id = e.by_id();
        let distinct: std::collections::HashSet<&str> = by_id.values().copied().collect();
        let max_id = by_id.keys().max().copied();
        let natural = max_id.map_or(0, |m| m + 1).max(distinct.len() as u64);
        let size = declared_size(config, max_id, natural)?;
        let added: HashMap<&str, &Added> =
            e.added.iter().map(|a| (a.content.as_str(), a)).collect();
        let mut table = TokenTable::with_capacity(size);
        for i in 0..size {
            match by_id.get(&i) {
                None => table.push(format!("[PAD{i}]"), UNUSED),
                Some(&t) => match added.get(t) {
                    Some(a) if a.special || looks_special(t) => table.push(t.to_string(), CONTROL),
                    Some(_) => table.push(t.replace('\u{2581}', " "), USER_DEFINED),
                    None => table.push(t.to_string(), NORMAL),
                },
            }
        }
        Ok(table)
    }

    /// `LlamaHfVocab`: the model vocabulary with byte tokens and special
    /// tokens typed, then the added tokens beyond it; all scores -1000.
    fn llama_hf(e: &Entries, hf: &HfFiles) -> Result<TokenTable> {
        let by_id = e.by_id();
        let base = e.vocab.len() as u64;
        let max_id = by_id.keys().max().copied();
        let natural = max_id.map_or(0, |m| m + 1).max(base);
        let size = declared_size(hf.config.as_ref(), max_id, natural)?.max(natural);
        let named = named_specials(hf);
        let special_ids: std::collections::HashSet<u64> = e
            .added
            .iter()
            .filter(|a| a.special || named.contains(&a.content.as_str()))
            .map(|a| a.id)
            .chain(
                e.vocab
                    .iter()
                    .filter(|(t, _)| named.contains(&t.as_str()))
                    .map(|(_, id)| *id),
            )
            .collect();
        let mut table = TokenTable::with_capacity(size);
        for i in 0..size {
            let Some(&t) = by_id.get(&i) else {
                table.push(format!("[PAD{i}]"), UNUSED);
                continue;
            };
            let ty = if i < base && is_byte_token(t) {
                BYTE
            } else if special_ids.contains(&i) {
                CONTROL
            } else if i >= base {
                USER_DEFINED
            } else {
                NORMAL
            };
            table.push(t.to_string(), ty);
        }
        Ok(table)
    }

    fn with_capacity(size: u64) -> TokenTable {
        TokenTable {
            tokens: Vec::with_capacity(size as usize),
            types: Vec::with_capacity(size as usize),
        }
    }

    fn push(&mut self, token: String, ty: i32) {
        self.tokens.push(token);
        self.types.push(ty);
    }
}

/// The tokens tokenizer_config.json names as special (`transformers`'
/// `all_special_tokens`).
fn named_specials(hf: &HfFiles) -> Vec<&str> {
    let Some(tc) = hf.tokenizer_config.as_ref() else {
        return Vec::new();
    };
    let mut names: Vec<&str> = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
        .iter()
        .filter_map(|k| tc.get(format!("{k}_token")).and_then(content))
        .collect();
    if let Some(extra) = tc
        .get("additional_special_tokens")
        .and_then(Value::as_array)
    {
        names.extend(extra.iter().filter_map(content));
    }
    names
}

fn content(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
}

/// `model.merges` as "a b" strings. tokenizer.json has strings or pairs;
/// in pairs a space inside a part is written as U+0120, as gguf-py does,
/// since llama.cpp splits a merge at its first space after the first byte.
fn merges(model: &Value) -> Result<Vec<String>> {
    let list = match model.get("merges") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(input(format!(
                "tokenizer.json: model.merges is not a list: {}",
                truncated(other)
            )));
        }
    };
    let escape = |s: &str| s.replace(' ', "\u{0120}");
    list.iter()
        .enumerate()
        .map(|(i, m)| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{} {}", escape(a), escape(b))),
                _ => Err(input(format!(
                    "tokenizer.json: model.merges[{i}] is not a pair of strings: {}",
                    truncated(m)
                ))),
            },
            _ => Err(input(format!(
                "tokenizer.json: model.merges[{i}] is neither \"a b\" nor [\"a\", \"b\"]: {}",
                truncated(m)
            ))),
        })
        .collect()
}

fn truncated(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

#[cfg(test)]
mod tests;
