use super::*;

fn llama(n_layer: u32, n_head_kv: u32, tied: bool) -> (MixModel, Vec<MixTensor>) {
    let model = MixModel {
        arch: "llama".into(),
        n_layer,
        n_head: 32,
        n_head_kv,
    };
    let t = |name: String, ne: &[u64]| MixTensor {
        name,
        ne: ne.to_vec(),
        source: TensorType::F32,
    };
    let mut tensors = vec![
        t("token_embd.weight".into(), &[4096, 32000]),
        t("output_norm.weight".into(), &[4096]),
    ];
    if !tied {
        tensors.push(t("output.weight".into(), &[4096, 32000]));
    }
    for i in 0..n_layer {
        for (name, ne) in [
            ("attn_norm.weight", &[4096][..]),
            ("attn_q.weight", &[4096, 4096]),
            ("attn_k.weight", &[4096, 1024]),
            ("attn_v.weight", &[4096, 1024]),
            ("attn_output.weight", &[4096, 4096]),
            ("ffn_norm.weight", &[4096]),
            ("ffn_gate.weight", &[4096, 11008]),
            ("ffn_up.weight", &[4096, 11008]),
            ("ffn_down.weight", &[11008, 4096]),
        ] {
            tensors.push(t(format!("blk.{i}.{name}"), ne));
        }
    }
    (model, tensors)
}

fn type_of(tensors: &[MixTensor], choices: &[Choice], name: &str) -> TensorType {
    let i = tensors.iter().position(|t| t.name == name).unwrap();
    choices[i].ty
}

#[test]
fn q4_k_m_gives_q6_k_to_output_and_to_the_use_more_bits_layers_of_attn_v_and_ffn_down() {
    let (model, tensors) = llama(32, 8, false);
    let choices = choose_types(&model, &tensors, FileType::Q4KM, &[], false);
    assert_eq!(
        type_of(&tensors, &choices, "output.weight"),
        TensorType::Q6K
    );
    assert_eq!(
        type_of(&tensors, &choices, "token_embd.weight"),
        TensorType::Q4K
    );
    assert_eq!(
        type_of(&tensors, &choices, "output_norm.weight"),
        TensorType::F32
    );
    // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
    let more: Vec<u32> = (0..32)
        .filter(|&i| !(4..28).contains(&i) || (i as i64 - 4) % 3 == 2)
        .collect();
    assert_eq!(more.len(), 16);
    for i in 0..32 {
        let expected = if more.contains(&i) {
            TensorType::Q6K
        } else {
            TensorType::Q4K
        };
        for name in ["attn_v", "ffn_down"] {
            let ty = type_of(&tensors, &choices, &format!("blk.{i}.{name}.weight"));
            assert_eq!(ty, expected, "blk.{i}.{name}");
        }
        for name in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            let ty = type_of(&tensors, &choices, &format!("blk.{i}.{name}.weight"));
            assert_eq!(ty, TensorType::Q4K, "blk.{i}.{name}");
        }
    }
}

#[test]
fn tied_embeddings_take_the_output_rule() {
    let (model, tensors) = llama(4, 8, true);
    let choices = choose_types(&model, &tensors, FileType::Q4KM, &[], false);
    assert_eq!(
        type_of(&tensors, &choices, "token_embd.weight"),
        TensorType::Q6K
    );
    let choices = choose_types(&model, &tensors, FileType::Q8_0, &[], false);
    assert_eq!(
        type_of(&tensors, &choices, "token_embd.weight"),
        TensorType::Q8_0
    );
}

#[test]
fn q2_k_raises_attn_v_by_gqa_and_ffn_down_and_attn_output() {
    for (n_head_kv, attn_v) in [(8, TensorType::Q4K), (16, TensorType::Q3K)] {
        let (model, tensors) = llama(8, n_head_kv, false);
        let choices = choose_types(&model, &tensors, FileType::Q2K, &[], false);
        assert_eq!(type_of(&tensors, &choices, "blk.3.attn_v.weight"), attn_v);
        assert_eq!(
            type_of(&tensors, &choices, "blk.3.ffn_down.weight"),
            TensorType::Q3K
        );
        assert_eq!(
            type_of(&tensors, &choices, "blk.3.attn_output.weight"),
            TensorType::Q3K
        );
        assert_eq!(
            type_of(&tensors, &choices, "blk.3.ffn_up.weight"),
            TensorType::Q2K
        );
    }
}

#[test]
fn rows_the_block_does_not_divide_fall_back_as_llama_cpp_does() {
    let model = MixModel {
        arch: "llama".into(),
        n_layer: 1,
        n_head: 4,
        n_head_kv: 4,
    };
    let t = |name: &str, ne0: u64| MixTensor {
        name: name.into(),
        ne: vec![ne0, 64],
        source: TensorType::F32,
    };
    let tensors = [
        t("blk.0.ffn_up.weight", 96),
        t("blk.0.ffn_gate.weight", 100),
        t("blk.0.attn_q.weight", 512),
        t("output.weight", 96),
    ];
    let choices = choose_types(&model, &tensors, FileType::Q4KM, &[], false);
    let types: Vec<TensorType> = choices.iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        [
            TensorType::Q5_0,
            TensorType::F16,
            TensorType::Q4K,
            TensorType::Q8_0
        ]
    );
    assert!(choices[0].fallback.as_deref().unwrap().contains("96"));
    assert!(choices[2].fallback.is_none());
    let choices = choose_types(&model, &tensors, FileType::Q6K, &[], false);
    assert_eq!(choices[0].ty, TensorType::Q8_0);
}

#[test]
fn overrides_win_over_the_rules_but_not_over_the_shape_fallback() {
    let (model, tensors) = llama(4, 8, false);
    let overrides = [
        TypeOverride::parse("blk.*.ffn_down.weight=q8_0").unwrap(),
        TypeOverride::parse("*attn_q*=Q2_K").unwrap(),
    ];
    let choices = choose_types(&model, &tensors, FileType::Q4KM, &overrides, false);
    assert_eq!(
        type_of(&tensors, &choices, "blk.0.ffn_down.weight"),
        TensorType::Q8_0
    );
    assert_eq!(
        type_of(&tensors, &choices, "blk.2.attn_q.weight"),
        TensorType::Q2K
    );
    // Without an override the rule still applies: use_more_bits(3, 4) holds, (0, 4) does not.
    assert_eq!(
        type_of(&tensors, &choices, "blk.3.attn_v.weight"),
        TensorType::Q6K
    );
    assert_eq!(
        type_of(&tensors, &choices, "blk.0.attn_v.weight"),
        TensorType::Q4K
    );
    assert!(TypeOverride::parse("nothing").is_err());
    assert!(TypeOverride::parse("x=Q9_K").is_err());
}

#[test]
fn float_file_types_convert_every_quantizable_tensor_and_keep_the_rest() {
    let (model, tensors) = llama(2, 8, false);
    let choices = choose_types(&model, &tensors, FileType::F16, &[], false);
    assert_eq!(
        type_of(&tensors, &choices, "output.weight"),
        TensorType::F16
    );
    assert_eq!(
        type_of(&tensors, &choices, "blk.1.ffn_down.weight"),
        TensorType::F16
    );
    assert_eq!(
        type_of(&tensors, &choices, "blk.1.ffn_norm.weight"),
        TensorType::F32
    );
}

#[test]
fn file_type_names_and_ids_follow_llama_cpp() {
    assert_eq!(FileType::parse("q4_k_m"), Some(FileType::Q4KM));
    assert_eq!(FileType::parse("Q4_K"), Some(FileType::Q4KM));
    assert_eq!(FileType::parse("F32").map(FileType::id), Some(0));
    assert_eq!(FileType::parse("BF16").map(FileType::id), Some(32));
    assert_eq!(FileType::parse("Q6_K").map(FileType::id), Some(18));
    assert_eq!(FileType::parse("IQ2_XXS"), None);
    for ftype in FileType::ALL {
        assert_eq!(FileType::parse(ftype.name()), Some(ftype));
    }
}

#[test]
fn llama_order_puts_global_tensors_first_then_layers_numerically() {
    let names = [
        "blk.10.a",
        "output.weight",
        "blk.2.b",
        "blk.2.a",
        "token_embd.weight",
    ];
    let order: Vec<&str> = llama_order(&names).into_iter().map(|i| names[i]).collect();
    assert_eq!(
        order,
        [
            "output.weight",
            "token_embd.weight",
            "blk.2.a",
            "blk.2.b",
            "blk.10.a"
        ]
    );
}
