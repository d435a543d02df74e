use serde_json::json;

use super::*;

fn hf(tokenizer: Value, tokenizer_config: Value, vocab_size: u64) -> HfFiles {
    HfFiles {
        config: Some(json!({ "vocab_size": vocab_size })),
        tokenizer: Some(tokenizer),
        tokenizer_config: Some(tokenizer_config),
        generation_config: None,
    }
}

fn strings(v: &GgufValue) -> Vec<String> {
    match v {
        GgufValue::Array(_, items) => items
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        _ => panic!("not an array: {v}"),
    }
}

fn ints(v: &GgufValue) -> Vec<i32> {
    match v {
        GgufValue::Array(_, items) => items
            .iter()
            .map(|s| match s {
                GgufValue::I32(i) => *i,
                _ => panic!(),
            })
            .collect(),
        _ => panic!("not an array: {v}"),
    }
}

#[test]
fn byte_level_bpe_is_gpt2_with_types_merges_holes_and_special_ids() {
    let tj = json!({
        "model": {"type": "BPE", "vocab": {"a": 3, "b": 4, "ab": 5}, "merges": ["a b", ["ab", "b"]]},
        "added_tokens": [
            {"id": 0, "content": "<s>", "special": true},
            {"id": 1, "content": "</s>", "special": true},
            {"id": 2, "content": "<tool>", "special": false}
        ],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": KNOWN_SPLITS[0].0}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]}
    });
    let tc = json!({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": true,
                    "chat_template": "{{ messages }}"});
    let v = metadata(&hf(tj, tc, 7), "llama").unwrap();
    assert!(v.warnings.is_empty());
    let kv = &v.kv;
    assert_eq!(
        kv.get("tokenizer.ggml.model").unwrap().as_str(),
        Some("gpt2")
    );
    assert_eq!(
        kv.get("tokenizer.ggml.pre").unwrap().as_str(),
        Some("llama-bpe")
    );
    assert_eq!(
        strings(kv.get("tokenizer.ggml.tokens").unwrap()),
        ["<s>", "</s>", "<tool>", "a", "b", "ab", "[PAD6]"]
    );
    assert_eq!(
        ints(kv.get("tokenizer.ggml.token_type").unwrap()),
        [
            CONTROL,
            CONTROL,
            USER_DEFINED,
            NORMAL,
            NORMAL,
            NORMAL,
            UNUSED
        ]
    );
    assert_eq!(
        strings(kv.get("tokenizer.ggml.merges").unwrap()),
        ["a b", "ab b"]
    );
    assert_eq!(
        kv.get("tokenizer.ggml.bos_token_id"),
        Some(&GgufValue::U32(0))
    );
    assert_eq!(
        kv.get("tokenizer.ggml.eos_token_id"),
        Some(&GgufValue::U32(1))
    );
    assert_eq!(
        kv.get("tokenizer.ggml.add_bos_token"),
        Some(&GgufValue::Bool(true))
    );
    assert_eq!(
        kv.get("tokenizer.chat_template").unwrap().as_str(),
        Some("{{ messages }}")
    );
}

#[test]
fn unknown_split_regexes_warn_and_write_default() {
    let tj = json!({
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
        "pre_tokenizer": {"type": "Whitespace"}
    });
    let v = metadata(&hf(tj, json!({}), 1), "llama").unwrap();
    assert_eq!(
        v.kv.get("tokenizer.ggml.pre").unwrap().as_str(),
        Some("default")
    );
    assert_eq!(v.warnings.len(), 1);
}

#[test]
fn byte_fallback_bpe_is_sentencepiece_style_with_byte_tokens_and_scores() {
    let tj = json!({
        "model": {"type": "BPE", "byte_fallback": true, "vocab": {"<unk>": 0, "<0x0A>": 1, "▁a": 2}, "merges": []},
        "added_tokens": [{"id": 0, "content": "<unk>", "special": true}]
    });
    let v = metadata(&hf(tj, json!({"unk_token": "<unk>"}), 3), "llama").unwrap();
    assert_eq!(
        v.kv.get("tokenizer.ggml.model").unwrap().as_str(),
        Some("llama")
    );
    assert_eq!(
        ints(v.kv.get("tokenizer.ggml.token_type").unwrap()),
        [CONTROL, BYTE, NORMAL]
    );
    assert!(v.kv.get("tokenizer.ggml.scores").is_some());
    assert_eq!(
        v.kv.get("tokenizer.ggml.unknown_token_id"),
        Some(&GgufValue::U32(0))
    );
}

#[test]
fn wordpiece_is_bert_in_phantom_space_form() {
    let tj = json!({
        "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "##lo": 4}},
        "added_tokens": [
            {"id": 0, "content": "[PAD]", "special": true},
            {"id": 1, "content": "[CLS]", "special": true},
            {"id": 2, "content": "[SEP]", "special": true}
        ]
    });
    let tc = json!({"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"});
    let v = metadata(&hf(tj, tc, 5), "bert").unwrap();
    assert_eq!(
        v.kv.get("tokenizer.ggml.model").unwrap().as_str(),
        Some("bert")
    );
    assert_eq!(
        strings(v.kv.get("tokenizer.ggml.tokens").unwrap()),
        ["[PAD]", "[CLS]", "[SEP]", "\u{2581}hello", "lo"]
    );
    assert_eq!(
        v.kv.get("tokenizer.ggml.cls_token_id"),
        Some(&GgufValue::U32(1))
    );
    assert_eq!(
        v.kv.get("tokenizer.ggml.seperator_token_id"),
        Some(&GgufValue::U32(2))
    );
}

#[test]
fn ids_beyond_the_declared_vocabulary_are_input_errors() {
    let tj = json!({"model": {"type": "BPE", "vocab": {"a": 9}, "merges": []}});
    let err = metadata(&hf(tj, json!({}), 4), "llama")
        .unwrap_err()
        .to_string();
    assert!(err.contains("vocab_size is 4"), "{err}");
}
