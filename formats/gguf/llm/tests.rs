use super::*;
use crate::formats::gguf::container::GgufValue;
use crate::formats::safetensors;
use crate::progress::Silent;

fn tiny_llama() -> Graph {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny_llama");
    safetensors::import(&dir, &Silent).unwrap()
}

#[test]
fn interleave_matches_the_converters_reshape_swapaxes() {
    // numpy: W.reshape(heads, 2, hd/2).swapaxes(1, 2).reshape(rows)
    let (heads, rows) = (2, 8);
    let order = RowOrder::InterleaveHeads { heads };
    let got: Vec<usize> = (0..rows).map(|r| order.source_row(r, rows)).collect();
    assert_eq!(got, [0, 2, 1, 3, 4, 6, 5, 7]);
    let order = RowOrder::InterleaveHeads { heads: 1 };
    let got: Vec<usize> = (0..6).map(|r| order.source_row(r, 6)).collect();
    assert_eq!(got, [0, 3, 1, 4, 2, 5]);
}

#[test]
fn tiny_llama_maps_every_tensor_with_llama_names_and_keys() {
    let g = tiny_llama();
    let plan = plan(&g).unwrap().expect("llama checkpoint");
    assert_eq!(plan.arch, "llama");
    let names: Vec<&str> = plan.tensors.iter().map(|t| t.name.as_str()).collect();
    for name in [
        "token_embd.weight",
        "output_norm.weight",
        "output.weight",
        "blk.0.attn_q.weight",
        "blk.1.ffn_down.weight",
        "blk.1.attn_norm.weight",
        "blk.1.ffn_norm.weight",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(names.len(), 3 + 2 * 9);
    let q = plan
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.attn_q.weight")
        .unwrap();
    assert_eq!(q.rows, RowOrder::InterleaveHeads { heads: 4 });
    assert_eq!(q.ne, [64, 64]);
    let k = plan
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.attn_k.weight")
        .unwrap();
    assert_eq!(k.rows, RowOrder::InterleaveHeads { heads: 2 });
    assert_eq!(k.ne, [64, 32]);
    let v = plan
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.attn_v.weight")
        .unwrap();
    assert_eq!(v.rows, RowOrder::Same);
    for (key, value) in [
        ("llama.block_count", GgufValue::U32(2)),
        ("llama.embedding_length", GgufValue::U32(64)),
        ("llama.feed_forward_length", GgufValue::U32(128)),
        ("llama.attention.head_count", GgufValue::U32(4)),
        ("llama.attention.head_count_kv", GgufValue::U32(2)),
        ("llama.rope.dimension_count", GgufValue::U32(16)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        ),
        ("llama.rope.freq_base", GgufValue::F32(10000.0)),
        ("llama.vocab_size", GgufValue::U32(384)),
    ] {
        assert_eq!(plan.kv.get(key), Some(&value), "{key}");
    }
    assert_eq!(plan.mix.n_head_kv, 2);
}

#[test]
fn a_tied_checkpoint_has_no_output_tensor() {
    let mut g = tiny_llama();
    if let Some(config) = g.metadata.hf.config.as_mut() {
        config["tie_word_embeddings"] = serde_json::Value::Bool(true);
    }
    let plan = plan(&g).unwrap().unwrap();
    assert!(plan.tensors.iter().all(|t| t.name != "output.weight"));
    assert_eq!(plan.dropped, ["lm_head.weight"]);
}

#[test]
fn missing_or_inconsistent_hyperparameters_are_input_errors() {
    let mut g = tiny_llama();
    g.metadata.hf.config.as_mut().unwrap()["rms_norm_eps"] = serde_json::Value::Null;
    let err = plan(&g).unwrap_err().to_string();
    assert!(err.contains("rms_norm_eps"), "{err}");
    let mut g = tiny_llama();
    g.metadata.hf.config.as_mut().unwrap()["num_key_value_heads"] = serde_json::json!(3);
    let err = plan(&g).unwrap_err().to_string();
    assert!(err.contains("key/value heads"), "{err}");
}

#[test]
fn unknown_architectures_are_not_planned() {
    let mut g = tiny_llama();
    g.metadata.architecture = Some("gpt2".into());
    assert!(plan(&g).unwrap().is_none());
}
