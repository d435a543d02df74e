//! Special token ids, `add_bos`/`add_eos`/`add_sep`, the chat template and
//! the normalizer flags, read as gguf-py's `SpecialVocab` reads them:
//! tokenizer.json's post-processor first (it wins over tokenizer_config.json's
//! `add_*_token`), token names from tokenizer_config.json looked up among
//! tokenizer.json's `added_tokens`, then config.json's `*_token_id` for the
//! kinds still unset.

use serde_json::{Map, Value};

use crate::ir::graph::HfFiles;

/// gguf-py's special token kinds, in its order, with their GGUF key stems.
const KINDS: [(&str, &str); 9] = [
    ("bos", "bos"),
    ("eos", "eos"),
    ("unk", "unknown"),
    ("sep", "seperator"),
    ("pad", "padding"),
    ("cls", "cls"),
    ("mask", "mask"),
    ("eot", "eot"),
    ("eom", "eom"),
];

#[derive(Debug, Default)]
pub struct Specials {
    /// (kind, id) in the order they were found.
    pub ids: Vec<(&'static str, u32)>,
    /// (kind, add) for bos, eos and sep (the kinds llama.cpp has keys for).
    pub add: Vec<(&'static str, bool)>,
    pub chat_template: Option<Value>,
    pub lowercase: Option<bool>,
    pub strip_accents: Option<bool>,
    pub warnings: Vec<String>,
}

impl Specials {
    fn set_id(&mut self, kind: &str, id: Option<&Value>, n_vocab: usize) {
        let Some(id) = id.filter(|v| v.is_i64() || v.is_u64()) else {
            return;
        };
        let Some(kind) = KINDS.iter().map(|(k, _)| *k).find(|k| *k == kind) else {
            return;
        };
        match id.as_u64() {
            Some(n) if (n as usize) < n_vocab => {
                if !self.ids.iter().any(|(k, _)| *k == kind) {
                    self.ids.push((kind, n as u32));
                }
            }
            _ => self.warnings.push(format!(
                "special token {kind} id {id} is outside the vocabulary of {n_vocab}; not written"
            )),
        }
    }

    fn set_add(&mut self, kind: &'static str, add: bool, overwrite: bool) {
        match self.add.iter_mut().find(|(k, _)| *k == kind) {
            Some(entry) if overwrite => entry.1 = add,
            Some(_) => {}
            None => self.add.push((kind, add)),
        }
    }

    /// The GGUF key of a special token kind.
    pub fn id_key(kind: &str) -> String {
        let stem = KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(kind, |(_, s)| s);
        format!("tokenizer.ggml.{stem}_token_id")
    }
}

/// Python truthiness of an optional JSON value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
    }
}

fn is(v: &Option<Value>, s: &str) -> bool {
    matches!(v, Some(Value::String(t)) if t == s)
}

fn special_token_id(item: &Value) -> Option<&str> {
    item.get("SpecialToken")?
        .get("id")?
        .as_str()
        .filter(|s| !s.is_empty())
}

pub fn read(hf: &HfFiles, n_vocab: usize) -> Specials {
    let mut out = Specials::default();
    let mut kinds: Vec<&'static str> = KINDS[..7].iter().map(|(k, _)| *k).collect();
    // The Python code edits its copy of tokenizer_config.json as it goes.
    let mut tc: Option<Map<String, Value>> = hf
        .tokenizer_config
        .as_ref()
        .and_then(Value::as_object)
        .cloned();
    let tc_truthy = |tc: &Option<Map<String, Value>>| tc.as_ref().is_some_and(|m| !m.is_empty());
    let added: &[Value] = hf
        .tokenizer
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    if let Some(tj) = hf.tokenizer.as_ref().filter(|t| truthy(Some(t))) {
        if let Some(normalizer) = tj.get("normalizer") {
            parse_normalizer(normalizer, &mut out);
        }
        let get = |tc: &Option<Map<String, Value>>, key: &str| {
            tc.as_ref().and_then(|m| m.get(key)).cloned()
        };
        let mut bos = get(&tc, "bos_token");
        let mut cls = get(&tc, "cls_token");
        let mut eos = get(&tc, "eos_token");
        let mut sep = get(&tc, "sep_token");
        if !truthy(bos.as_ref()) && truthy(cls.as_ref()) && tc_truthy(&tc) {
            bos = cls.clone();
            put(&mut tc, "bos_token", &bos);
        }
        if !truthy(eos.as_ref()) && truthy(sep.as_ref()) && tc_truthy(&tc) {
            eos = sep.clone();
            put(&mut tc, "eos_token", &eos);
        }
        if let Some(pp) = tj.get("post_processor").filter(|p| truthy(Some(p))) {
            let processors: Vec<&Value> = match pp.get("processors").and_then(Value::as_array) {
                Some(list) => list.iter().collect(),
                None => vec![pp],
            };
            for p in processors {
                match p.get("type").and_then(Value::as_str) {
                    Some("ByteLevel") => {
                        out.set_add("bos", false, false);
                        out.set_add("eos", false, false);
                    }
                    Some("RobertaProcessing") => {
                        for kind in ["bos", "eos", "sep"] {
                            out.set_add(kind, true, true);
                        }
                        if !truthy(cls.as_ref()) && tc_truthy(&tc) {
                            cls = p.get("cls").and_then(|c| c.get(0)).cloned().or(bos.clone());
                            put(&mut tc, "cls_token", &cls);
                        }
                        if !truthy(sep.as_ref()) && tc_truthy(&tc) {
                            sep = p.get("sep").and_then(|c| c.get(0)).cloned().or(eos.clone());
                            put(&mut tc, "sep_token", &sep);
                        }
                    }
                    Some("TemplateProcessing") => {
                        let empty = Vec::new();
                        let single = p.get("single").and_then(Value::as_array).unwrap_or(&empty);
                        let pair = p.get("pair").and_then(Value::as_array).unwrap_or(&empty);
                        let mut first = None;
                        let mut last = None;
                        if single.len() > 1 {
                            first = special_token_id(&single[0]);
                            if let Some(f) = first {
                                if !tc_truthy(&tc) {
                                    bos = Some(Value::from(f));
                                } else if !is(&bos, f) && !is(&cls, f) {
                                    if !truthy(bos.as_ref()) {
                                        bos = Some(Value::from(f));
                                        put(&mut tc, "bos_token", &bos);
                                    }
                                    if !truthy(cls.as_ref()) {
                                        cls = Some(Value::from(f));
                                        put(&mut tc, "cls_token", &cls);
                                    }
                                }
                                out.set_add("bos", is(&bos, f) || is(&cls, f), true);
                            }
                            last = special_token_id(&single[single.len() - 1]);
                            if let Some(l) = last {
                                if !tc_truthy(&tc) {
                                    eos = Some(Value::from(l));
                                } else if !is(&eos, l) {
                                    // The old eos becomes the end-of-turn token.
                                    for extra in ["eot", "eom"] {
                                        if !kinds.contains(&extra) {
                                            kinds.push(extra);
                                            put(&mut tc, &format!("{extra}_token"), &eos);
                                            break;
                                        }
                                    }
                                    eos = Some(Value::from(l));
                                    put(&mut tc, "eos_token", &eos);
                                }
                                out.set_add("eos", is(&eos, l), true);
                            }
                        }
                        if !pair.is_empty() {
                            let add_sep = pair_adds_sep(pair, first, last, &sep, &eos);
                            if let Some(add) = add_sep {
                                out.set_add("sep", add, true);
                                if add && !truthy(sep.as_ref()) && tc_truthy(&tc) {
                                    put(&mut tc, "sep_token", &eos);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    if tc_truthy(&tc) {
        let tc = tc.unwrap_or_default();
        out.chat_template = match tc.get("chat_template") {
            Some(t @ (Value::String(_) | Value::Array(_))) => Some(t.clone()),
            None | Some(Value::Null) => None,
            Some(_) => {
                out.warnings
                    .push("tokenizer_config.json: 'chat_template' is neither text nor a list of templates; ignored".into());
                None
            }
        };
        for kind in &kinds {
            if let Some(Value::Bool(add)) = tc.get(&format!("add_{kind}_token")) {
                if matches!(*kind, "bos" | "eos" | "sep") {
                    out.set_add(kind, *add, false);
                }
            }
            let content = match tc.get(&format!("{kind}_token")) {
                Some(Value::String(s)) => s.as_str(),
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => continue,
                },
                _ => continue,
            };
            let id = added
                .iter()
                .find(|t| t.get("content").and_then(Value::as_str) == Some(content))
                .and_then(|t| t.get("id"));
            out.set_id(kind, id, n_vocab);
        }
    }
    if let Some(config) = hf.config.as_ref() {
        for kind in &kinds {
            let key = format!("{kind}_token_id");
            let id = config
                .get(&key)
                .filter(|v| !v.is_null())
                .or_else(|| config.get("text_config")?.get(&key));
            out.set_id(kind, id, n_vocab);
        }
    }
    out
}

fn put(tc: &mut Option<Map<String, Value>>, key: &str, value: &Option<Value>) {
    if let Some(map) = tc.as_mut() {
        map.insert(key.to_string(), value.clone().unwrap_or(Value::Null));
    }
}

/// Whether TemplateProcessing's pair template puts a separator between the
/// sequences (`A [sep] B` or `A [sep] [eos] B`), None when it has no middle.
fn pair_adds_sep(
    pair: &[Value],
    first: Option<&str>,
    last: Option<&str>,
    sep: &Option<Value>,
    eos: &Option<Value>,
) -> Option<bool> {
    let start = usize::from(first.is_some() && special_token_id(&pair[0]) == first);
    let stop = if last.is_some() && pair.last().and_then(special_token_id) == last {
        pair.len() - 1
    } else {
        pair.len()
    };
    let inner = pair.get(start..stop).filter(|s| !s.is_empty())?;
    let seq = |v: &Value| v.get("Sequence")?.get("id")?.as_str().map(str::to_string);
    let a = seq(&inner[0]);
    let b = seq(&inner[inner.len() - 1]);
    if a.as_deref() != Some("A") || b.as_deref() != Some("B") || inner.len() <= 2 {
        return None;
    }
    let middle = &inner[1..inner.len() - 1];
    let is_sep = |v: &Value| special_token_id(v).is_some_and(|s| is(sep, s) || is(eos, s));
    let mut add = is_sep(&middle[0]) && last.is_none();
    if middle.len() == 2 && is_sep(&middle[1]) {
        add = true;
    }
    Some(add)
}

fn parse_normalizer(n: &Value, out: &mut Specials) {
    match n.get("type").and_then(Value::as_str) {
        Some("Lowercase") => out.lowercase = Some(true),
        Some("StripAccents") => out.strip_accents = Some(true),
        Some("BertNormalizer") => {
            if let Some(v) = n.get("lowercase") {
                out.lowercase = v.as_bool();
            }
            if let Some(v) = n.get("strip_accents") {
                out.strip_accents = v.as_bool();
            }
        }
        Some("Sequence") => {
            for inner in n
                .get("normalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                parse_normalizer(inner, out);
            }
        }
        _ => {}
    }
}
