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

fn strings(v: Option<&GgufValue>) -> Vec<String> {
    match v {
        Some(GgufValue::Array(_, items)) => items
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        _ => panic!("not an array: {v:?}"),
    }
}

fn ints(v: Option<&GgufValue>) -> Vec<i32> {
    match v {
        Some(GgufValue::Array(_, items)) => items
            .iter()
            .map(|s| match s {
                GgufValue::I32(i) => *i,
                _ => panic!("not i32: {s}"),
            })
            .collect(),
        _ => panic!("not an array: {v:?}"),
    }
}

fn text<'a>(v: &'a Vocab, key: &str) -> Option<&'a str> {
    v.kv.get(key).and_then(GgufValue::as_str)
}

fn id(v: &Vocab, key: &str) -> Option<u32> {
    match v.kv.get(&format!("tokenizer.ggml.{key}_token_id")) {
        Some(GgufValue::U32(i)) => Some(*i),
        None => None,
        other => panic!("{key}: {other:?}"),
    }
}

fn flag(v: &Vocab, kind: &str) -> Option<bool> {
    match v.kv.get(&format!("tokenizer.ggml.add_{kind}_token")) {
        Some(GgufValue::Bool(b)) => Some(*b),
        None => None,
        other => panic!("{kind}: {other:?}"),
    }
}

fn split(regex: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn bpe_with(pre_tokenizer: Value, ignore_merges: bool) -> Value {
    json!({
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "ignore_merges": ignore_merges},
        "pre_tokenizer": pre_tokenizer
    })
}

#[test]
fn byte_level_bpe_is_gpt2_with_types_merges_holes_and_special_ids() {
    let tj = json!({
        "model": {"type": "BPE", "vocab": {"a": 5, "b": 6, "ab": 7}, "merges": ["a b", ["ab", "b"]], "ignore_merges": true},
        "added_tokens": [
            {"id": 0, "content": "<s>", "special": true},
            {"id": 1, "content": "</s>", "special": true},
            {"id": 2, "content": "<tool>", "special": false},
            {"id": 3, "content": "<|im_start|>", "special": false},
            {"id": 4, "content": "\u{2581}user", "special": false}
        ],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(pre::LLAMA3), byte_level(false)]},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [], "special_tokens": {}}
    });
    let tc = json!({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": true,
                    "chat_template": "{{ messages }}"});
    let v = metadata(&hf(tj, tc, 9), "llama").unwrap();
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    assert_eq!(text(&v, "tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(text(&v, "tokenizer.ggml.pre"), Some("llama-bpe"));
    assert_eq!(
        strings(v.kv.get("tokenizer.ggml.tokens")),
        [
            "<s>",
            "</s>",
            "<tool>",
            "<|im_start|>",
            " user",
            "a",
            "b",
            "ab",
            "[PAD8]"
        ]
    );
    assert_eq!(
        ints(v.kv.get("tokenizer.ggml.token_type")),
        [
            CONTROL,
            CONTROL,
            USER_DEFINED,
            CONTROL,
            USER_DEFINED,
            NORMAL,
            NORMAL,
            NORMAL,
            UNUSED
        ]
    );
    assert_eq!(strings(v.kv.get("tokenizer.ggml.merges")), ["a b", "ab b"]);
    assert_eq!((id(&v, "bos"), id(&v, "eos")), (Some(0), Some(1)));
    assert_eq!(flag(&v, "bos"), Some(true));
    assert_eq!(text(&v, "tokenizer.chat_template"), Some("{{ messages }}"));
    assert!(v.kv.get("tokenizer.ggml.scores").is_none());
}

#[test]
fn pre_tokenizers_are_recognised_by_their_splits_and_ignore_merges() {
    let seq = |parts: Vec<Value>| json!({"type": "Sequence", "pretokenizers": parts});
    let digits = json!({"type": "Digits", "individual_digits": true});
    let cases = [
        (byte_level(true), false, Some("gpt-2")),
        (json!({"type": "ByteLevel"}), false, Some("gpt-2")),
        (
            seq(vec![split(pre::GPT2), byte_level(false)]),
            false,
            Some("gpt-2"),
        ),
        (
            seq(vec![split(pre::LLAMA3), byte_level(false)]),
            true,
            Some("llama-bpe"),
        ),
        (
            seq(vec![split(pre::LLAMA3), byte_level(false)]),
            false,
            Some("smaug-bpe"),
        ),
        (
            seq(vec![split(pre::QWEN2), byte_level(false)]),
            false,
            Some("qwen2"),
        ),
        (
            seq(vec![split(pre::GPT4O), byte_level(false)]),
            false,
            Some("gpt-4o"),
        ),
        (
            seq(vec![split(pre::TEKKEN), byte_level(false)]),
            true,
            Some("tekken"),
        ),
        (
            seq(vec![digits.clone(), byte_level(true)]),
            false,
            Some("starcoder"),
        ),
        // The byte-level step must come last, without a prefix space.
        (seq(vec![byte_level(false), split(pre::QWEN2)]), false, None),
        (
            json!({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}),
            false,
            None,
        ),
        (seq(vec![split(r"\s+"), byte_level(false)]), false, None),
        (json!({"type": "Whitespace"}), false, None),
    ];
    for (pre_tokenizer, ignore_merges, want) in cases {
        let tj = bpe_with(pre_tokenizer.clone(), ignore_merges);
        let v = metadata(&hf(tj, json!({}), 1), "qwen2").unwrap();
        assert_eq!(
            text(&v, "tokenizer.ggml.pre"),
            Some(want.unwrap_or("default")),
            "{pre_tokenizer}"
        );
        assert_eq!(
            v.warnings.len(),
            usize::from(want.is_none()),
            "{pre_tokenizer}"
        );
    }
    // Qwen2's splits with ignore_merges: written as qwen2, with a warning.
    let tj = bpe_with(seq(vec![split(pre::QWEN2), byte_level(false)]), true);
    let v = metadata(&hf(tj, json!({}), 1), "qwen2").unwrap();
    assert_eq!(text(&v, "tokenizer.ggml.pre"), Some("qwen2"));
    assert!(v.warnings[0].contains("ignore_merges"), "{:?}", v.warnings);
}

#[test]
fn merge_pairs_with_spaces_are_written_as_gguf_py_does() {
    let tj =
        json!({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a b", "c"], ["x", "y"]]}});
    let v = metadata(&hf(tj, json!({}), 1), "qwen2").unwrap();
    assert_eq!(
        strings(v.kv.get("tokenizer.ggml.merges")),
        ["a\u{120}b c", "x y"]
    );
    for bad in [json!([["a"]]), json!([1]), json!("a b")] {
        let tj = json!({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": bad}});
        let err = metadata(&hf(tj, json!({}), 1), "qwen2").unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        assert!(err.to_string().contains("model.merges"), "{err}");
    }
}

#[test]
fn the_post_processor_decides_add_bos_over_tokenizer_config() {
    // A ByteLevel post-processor adds nothing, whatever tokenizer_config says.
    let tj = json!({
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
        "added_tokens": [{"id": 1, "content": "<|endoftext|>", "special": true}],
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
    });
    let tc =
        json!({"add_bos_token": true, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"});
    let v = metadata(&hf(tj, tc, 2), "qwen2").unwrap();
    assert_eq!(
        (flag(&v, "bos"), flag(&v, "eos")),
        (Some(false), Some(false))
    );
    assert_eq!((id(&v, "bos"), id(&v, "eos")), (Some(1), Some(1)));
}

#[test]
fn a_trailing_template_token_other_than_eos_becomes_eos_and_the_old_one_eot() {
    let tj = json!({
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
        "added_tokens": [
            {"id": 1, "content": "<s>", "special": true},
            {"id": 2, "content": "</s>", "special": true},
            {"id": 3, "content": "<end>", "special": true}
        ],
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<end>"}}],
            "pair": []}
    });
    let tc = json!({"bos_token": "<s>", "eos_token": "</s>", "add_eos_token": false});
    let v = metadata(&hf(tj, tc, 4), "qwen2").unwrap();
    assert_eq!(
        (id(&v, "bos"), id(&v, "eos"), id(&v, "eot")),
        (Some(1), Some(3), Some(2))
    );
    assert_eq!((flag(&v, "bos"), flag(&v, "eos")), (Some(true), Some(true)));
}

#[test]
fn special_names_are_looked_up_in_added_tokens_then_config_ids() {
    // "<s>" is only in the model vocabulary: the converter does not find it
    // by name and takes config.json's bos_token_id.
    let tj = json!({
        "model": {"type": "BPE", "vocab": {"<s>": 0, "a": 1, "<pad>": 2}, "merges": []},
        "added_tokens": [{"id": 2, "content": "<pad>", "special": false}]
    });
    let mut files = hf(tj, json!({"bos_token": "<s>", "pad_token": "<pad>"}), 3);
    files.config = Some(
        json!({"vocab_size": 3, "bos_token_id": 1, "eos_token_id": [0, 1], "unk_token_id": 7}),
    );
    let v = metadata(&files, "qwen2").unwrap();
    assert_eq!(
        (id(&v, "bos"), id(&v, "padding"), id(&v, "eos")),
        (Some(1), Some(2), None)
    );
    // <pad> looks special: a control token although not marked special.
    assert_eq!(ints(v.kv.get("tokenizer.ggml.token_type"))[2], CONTROL);
    assert_eq!(id(&v, "unknown"), None);
    assert!(
        v.warnings.iter().any(|w| w.contains("unk id 7")),
        "{:?}",
        v.warnings
    );
}

#[test]
fn byte_fallback_bpe_is_sentencepiece_style_for_llama_only() {
    let tj = json!({
        "model": {"type": "BPE", "byte_fallback": true,
                  "vocab": {"<unk>": 0, "<s>": 1, "<0x0A>": 2, "\u{2581}a": 3, "[INST]": 4}, "merges": []},
        "decoder": {"type": "Sequence", "decoders": []},
        "added_tokens": [
            {"id": 0, "content": "<unk>", "special": true},
            {"id": 1, "content": "<s>", "special": true},
            {"id": 4, "content": "[INST]", "special": true},
            {"id": 5, "content": "<tool>", "special": false}
        ]
    });
    let tc = json!({"unk_token": "<unk>", "bos_token": "<s>", "add_prefix_space": false});
    let v = metadata(&hf(tj.clone(), tc.clone(), 7), "llama").unwrap();
    assert_eq!(text(&v, "tokenizer.ggml.model"), Some("llama"));
    assert_eq!(text(&v, "tokenizer.ggml.pre"), Some("default"));
    assert_eq!(
        strings(v.kv.get("tokenizer.ggml.tokens")),
        [
            "<unk>",
            "<s>",
            "<0x0A>",
            "\u{2581}a",
            "[INST]",
            "<tool>",
            "[PAD6]"
        ]
    );
    assert_eq!(
        ints(v.kv.get("tokenizer.ggml.token_type")),
        [
            CONTROL,
            CONTROL,
            BYTE,
            NORMAL,
            CONTROL,
            USER_DEFINED,
            UNUSED
        ]
    );
    match v.kv.get("tokenizer.ggml.scores") {
        Some(GgufValue::Array(MetaType::F32, s)) => {
            assert_eq!(s.len(), 7);
            assert!(s.iter().all(|x| *x == GgufValue::F32(-1000.0)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((id(&v, "unknown"), id(&v, "bos")), (Some(0), Some(1)));
    assert_eq!(
        v.kv.get("tokenizer.ggml.add_space_prefix"),
        Some(&GgufValue::Bool(false))
    );
    assert!(v.kv.get("tokenizer.ggml.merges").is_none());
    // The converter's qwen2 path knows only SentencePiece files and gpt2.
    let v = metadata(&hf(tj, tc, 7), "qwen2").unwrap();
    assert_eq!(text(&v, "tokenizer.ggml.model"), Some("gpt2"));
    assert!(v.kv.get("tokenizer.ggml.add_space_prefix").is_none());
}

#[test]
fn wordpiece_is_bert_in_phantom_space_form_with_cls_as_bos() {
    let added: Vec<Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "content": t, "special": true}))
        .collect();
    let tj = json!({
        "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5, "##lo": 6}},
        "normalizer": {"type": "BertNormalizer", "lowercase": true, "strip_accents": null},
        "added_tokens": added,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]"}}, {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "[SEP]"}}],
            "pair": [{"SpecialToken": {"id": "[CLS]"}}, {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "[SEP]"}},
                     {"Sequence": {"id": "B"}}, {"SpecialToken": {"id": "[SEP]"}}]}
    });
    let tc = json!({"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"});
    let v = metadata(&hf(tj, tc, 7), "bert").unwrap();
    assert_eq!(text(&v, "tokenizer.ggml.model"), Some("bert"));
    assert_eq!(
        strings(v.kv.get("tokenizer.ggml.tokens")),
        [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            "\u{2581}hello",
            "lo"
        ]
    );
    let ids: Vec<_> = [
        "bos",
        "eos",
        "unknown",
        "seperator",
        "padding",
        "cls",
        "mask",
    ]
    .iter()
    .map(|k| id(&v, k))
    .collect();
    assert_eq!(ids, [2, 3, 1, 3, 0, 2, 4].map(Some));
    assert_eq!(
        (flag(&v, "bos"), flag(&v, "eos"), flag(&v, "sep")),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(
        v.kv.get("tokenizer.ggml.normalizer.lowercase"),
        Some(&GgufValue::Bool(true))
    );
    assert!(
        v.kv.get("tokenizer.ggml.normalizer.strip_accents")
            .is_none()
    );
}

#[test]
fn a_list_of_chat_templates_is_written_by_name() {
    let tj = json!({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}});
    let tc = json!({"chat_template": [
        {"name": "tool use", "template": "T"}, {"name": "default", "template": "D"}, {"name": "rag", "template": "R"}
    ]});
    let v = metadata(&hf(tj, tc, 1), "qwen2").unwrap();
    assert_eq!(text(&v, "tokenizer.chat_template"), Some("D"));
    assert_eq!(text(&v, "tokenizer.chat_template.tool_use"), Some("T"));
    assert_eq!(text(&v, "tokenizer.chat_template.rag"), Some("R"));
    assert_eq!(
        strings(v.kv.get("tokenizer.chat_templates")),
        ["rag", "tool_use"]
    );
}

#[test]
fn malformed_files_are_input_errors_naming_the_file() {
    let cases = [
        (
            json!({"model": {"type": "BPE", "vocab": {"a": 9}, "merges": []}}),
            4,
            "vocab_size is 4",
        ),
        (
            json!({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}),
            4,
            "model.vocab token \"a\"",
        ),
        (
            json!({"model": {"type": "BPE", "vocab": ["a"]}}),
            4,
            "model.vocab",
        ),
        (
            json!({"model": {"type": "BPE", "vocab": {}}, "added_tokens": {}}),
            4,
            "added_tokens",
        ),
        (
            json!({"model": {"type": "BPE", "vocab": {}}, "added_tokens": [{"id": 1}]}),
            4,
            "malformed added token",
        ),
        (
            json!({"model": {"type": "BPE", "vocab": {"a": 0}}}),
            99_000_000,
            "vocab_size",
        ),
        (json!({}), 4, "no 'model'"),
    ];
    for (tj, size, want) in cases {
        let err = metadata(&hf(tj.clone(), json!({}), size), "llama").unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{tj}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(want), "{tj}: {msg}");
        assert!(msg.contains(".json"), "{tj}: {msg}");
    }
    let tj = json!({"model": {"type": "Unigram", "vocab": []}});
    assert!(matches!(
        metadata(&hf(tj, json!({}), 1), "llama"),
        Err(Error::Unsupported(_))
    ));
    let none = HfFiles::default();
    assert!(matches!(metadata(&none, "llama"), Err(Error::Input(_))));
}
