use std::path::Path;

use super::header::{self, Header};
use super::*;
use crate::ir::dtype::DType;
use crate::ir::weights::WeightRole;
use crate::progress::Silent;

/// A safetensors file from a raw header text and data section.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A well-formed file holding `(name, dtype, shape, bytes)` tensors back to back.
fn build(tensors: &[(&str, &str, &[u64], Vec<u8>)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        entries.push(format!(
            r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{}]}}"#,
            data.len()
        ));
    }
    raw_file(&format!("{{{}}}", entries.join(",")), &data)
}

fn parse(bytes: &[u8]) -> crate::Result<Header> {
    header::parse(Path::new("t.safetensors"), bytes)
}

/// The offset of a parse error, failing the test on any other outcome.
fn error_offset(result: crate::Result<Header>) -> u64 {
    match result {
        Err(Error::Parse { offset, .. }) => offset,
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn error_text(result: crate::Result<Header>) -> String {
    result.expect_err("expected an error").to_string()
}

fn two_tensors() -> Vec<u8> {
    build(&[
        ("a", "F32", &[2, 2], vec![1; 16]),
        ("b", "I64", &[1], vec![2; 8]),
    ])
}

#[test]
fn every_supported_dtype_parses() {
    let cases = [
        ("F64", DType::F64, 8),
        ("F32", DType::F32, 4),
        ("F16", DType::F16, 2),
        ("BF16", DType::BF16, 2),
        ("I64", DType::I64, 8),
        ("I32", DType::I32, 4),
        ("I16", DType::I16, 2),
        ("I8", DType::I8, 1),
        ("U8", DType::U8, 1),
        ("U64", DType::U64, 8),
        ("U32", DType::U32, 4),
        ("U16", DType::U16, 2),
        ("BOOL", DType::Bool, 1),
    ];
    let names: Vec<String> = cases.iter().map(|c| format!("t_{}", c.0)).collect();
    let tensors: Vec<(&str, &str, &[u64], Vec<u8>)> = cases
        .iter()
        .zip(&names)
        .map(|(&(dtype, _, size), name)| (name.as_str(), dtype, &[3u64, 2][..], vec![0; 6 * size]))
        .collect();
    let header = parse(&build(&tensors)).unwrap();
    assert_eq!(header.tensors.len(), cases.len());
    for (entry, (_, dtype, size)) in header.tensors.iter().zip(cases) {
        assert_eq!(entry.dtype, dtype);
        assert_eq!(entry.shape, vec![3, 2]);
        assert_eq!(entry.bytes.len(), 6 * size);
    }
}

#[test]
fn files_written_by_the_reference_crate_parse_identically() {
    use safetensors::tensor::{Dtype, TensorView};
    let f32_data: Vec<u8> = (0..24).collect();
    let bf16_data: Vec<u8> = (0..6).collect();
    let bool_data = vec![1, 0, 1];
    let views = vec![
        (
            "w",
            TensorView::new(Dtype::F32, vec![2, 3], &f32_data).unwrap(),
        ),
        (
            "h",
            TensorView::new(Dtype::BF16, vec![3], &bf16_data).unwrap(),
        ),
        (
            "mask",
            TensorView::new(Dtype::BOOL, vec![3], &bool_data).unwrap(),
        ),
    ];
    let meta = [("format".to_string(), "pt".to_string())].into();
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let header = parse(&bytes).unwrap();
    assert_eq!(
        header.metadata.get("format").map(String::as_str),
        Some("pt")
    );
    for (name, data) in [("w", &f32_data), ("h", &bf16_data), ("mask", &bool_data)] {
        let entry = header.tensors.iter().find(|t| t.name == name).unwrap();
        assert_eq!(&bytes[entry.bytes.clone()], &data[..], "{name}");
    }
}

#[test]
fn f8_tensors_are_unsupported_all_at_once() {
    let bytes = build(&[
        ("x", "F8_E4M3", &[4], vec![0; 4]),
        ("ok", "F32", &[1], vec![0; 4]),
        ("y", "F8_E5M2", &[2], vec![0; 2]),
    ]);
    let err = parse(&bytes).unwrap_err();
    assert_eq!(err.exit_code(), crate::exit::UNSUPPORTED);
    let Error::Unsupported(items) = err else {
        panic!("expected unsupported");
    };
    let names: Vec<&str> = items.iter().map(|u| u.node.as_str()).collect();
    assert_eq!(names, ["x", "y"]);
    assert!(items[0].op.contains("F8_E4M3"));
}

#[test]
fn every_truncation_is_a_located_error() {
    let bytes = two_tensors();
    for cut in 0..bytes.len() {
        let offset = error_offset(parse(&bytes[..cut]));
        assert!(offset <= cut as u64, "cut {cut}: offset {offset}");
    }
}

#[test]
fn absurd_header_lengths_are_rejected_at_offset_zero() {
    let valid = two_tensors();
    for claimed in [u64::MAX, MAX_HEADER_BYTES + 1, valid.len() as u64 - 7] {
        let mut bytes = valid.clone();
        bytes[..8].copy_from_slice(&claimed.to_le_bytes());
        assert_eq!(error_offset(parse(&bytes)), 0, "claimed {claimed}");
    }
}

#[test]
fn bad_offsets_are_rejected_at_the_tensor_entry() {
    let cases = [
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}}"#,
            "run past",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
            "end before",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            "needs 8 bytes",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#,
            "overflows",
        ),
    ];
    for (header, expected) in cases {
        let result = parse(&raw_file(header, &[0; 8]));
        let text = error_text(parse(&raw_file(header, &[0; 8])));
        assert!(text.contains(expected), "{header}: {text}");
        assert_eq!(error_offset(result), 8 + 1, "{header}");
    }
}

#[test]
fn overlapping_and_duplicate_tensors_are_rejected() {
    let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let text = error_text(parse(&raw_file(overlap, &[0; 8])));
    assert!(text.contains("'b' overlaps tensor 'a'"), "{text}");

    let twice = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let result = parse(&raw_file(twice, &[0; 8]));
    let second = twice.rfind("\"a\"").unwrap() as u64;
    assert_eq!(error_offset(result), 8 + second);
}

#[test]
fn empty_tensors_may_share_an_offset() {
    let header = r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#;
    assert_eq!(parse(&raw_file(header, &[])).unwrap().tensors.len(), 2);
}

#[test]
fn bad_json_and_bad_fields_are_located() {
    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b": nope}"#;
    let offset = error_offset(parse(&raw_file(header, &[0; 4])));
    let nope = header.find("nope").unwrap() as u64;
    assert!((8 + nope..=8 + nope + 4).contains(&offset), "{offset}");

    let cases = [
        (
            r#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#,
            "unknown dtype 'Q4'",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            "bad JSON",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
            "bad JSON",
        ),
        (r#"{"a":{"dtype":"F32","shape":[1]}}"#, "data_offsets"),
        (r#"{"__metadata__":{"k":1}}"#, "bad JSON"),
        (r#"[1,2]"#, "bad JSON"),
        ("", "bad JSON"),
    ];
    for (header, expected) in cases {
        let text = error_text(parse(&raw_file(header, &[0; 4])));
        assert!(text.contains(expected), "{header}: {text}");
    }
    let deep = format!(
        r#"{{"a":{{"dtype":"U8","shape":{:?},"data_offsets":[0,1]}}}}"#,
        vec![1; 65]
    );
    assert!(error_text(parse(&raw_file(&deep, &[0]))).contains("more than 64 dims"));
}

#[test]
fn corrupted_files_never_panic() {
    let valid = two_tensors();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = valid.clone();
        let at = (state % bytes.len() as u64) as usize;
        bytes[at] = (state >> 32) as u8;
        let _ = parse(&bytes);
    }
}

/// A folder holding the given files.
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

fn llama_tensors() -> Vec<u8> {
    build(&[
        ("model.embed_tokens.weight", "F32", &[4, 2], vec![0; 32]),
        (
            "model.layers.0.self_attn.q_proj.weight",
            "BF16",
            &[2, 2],
            vec![0; 8],
        ),
        ("model.norm.weight", "F16", &[2], vec![0; 4]),
        ("rotary.inv_freq", "F32", &[1], vec![0; 4]),
    ])
}

#[test]
fn a_single_file_imports_as_zero_copy_weights() {
    let bytes = llama_tensors();
    let dir = folder(&[("m.safetensors", &bytes)]);
    let g = import(&dir.path().join("m.safetensors"), &Silent).unwrap();
    assert_eq!(g.name, "m");
    assert_eq!(g.metadata.source_format, "safetensors");
    assert!(g.inputs.is_empty() && g.outputs.is_empty() && g.node_count() == 0);
    assert_eq!(g.weights.len(), 4);
    assert_eq!(g.param_count(), 8 + 4 + 2 + 1);
    crate::ir::verify::verify(&g).unwrap();

    let ptrs: Vec<(usize, usize)> = g
        .weights
        .iter()
        .map(|(_, w)| (w.data.as_ptr() as usize, w.data.len()))
        .collect();
    let lowest = ptrs.iter().map(|p| p.0).min().unwrap();
    let highest = ptrs.iter().map(|p| p.0 + p.1).max().unwrap();
    assert_eq!(highest - lowest, 48, "weights are slices of one mapping");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let first = g.weights.iter().next().unwrap().1;
    assert_eq!(&first.data[..], &bytes[8 + header_len..8 + header_len + 32]);

    let roles: Vec<Option<WeightRole>> = g.weights.iter().map(|(_, w)| w.role).collect();
    assert_eq!(
        roles,
        [
            Some(WeightRole::TokenEmbedding),
            Some(WeightRole::AttnQ(0)),
            Some(WeightRole::OutputNorm),
            None
        ]
    );
}

#[test]
fn a_folder_brings_config_tokenizer_and_architecture() {
    let config = br#"{"model_type": "llama", "hidden_size": 2}"#;
    let dir = folder(&[
        ("model.safetensors", &llama_tensors()),
        ("config.json", config),
        ("tokenizer.json", b"{\"model\": {}}"),
        ("generation_config.json", b"{\"bos_token_id\": 1}"),
    ]);
    let g = import(dir.path(), &Silent).unwrap();
    assert_eq!(g.metadata.architecture.as_deref(), Some("llama"));
    assert_eq!(g.metadata.hf.config.as_ref().unwrap()["hidden_size"], 2);
    assert!(g.metadata.hf.tokenizer.is_some());
    assert!(g.metadata.hf.tokenizer_config.is_none());
    assert_eq!(
        g.metadata.hf.generation_config.as_ref().unwrap()["bos_token_id"],
        1
    );
}

#[test]
fn broken_json_files_are_located() {
    let dir = folder(&[
        ("model.safetensors", &llama_tensors()),
        ("config.json", b"{\"model_type\": \"llama\",\n \"x\": }"),
    ]);
    let err = import(dir.path(), &Silent).unwrap_err();
    let Error::Parse { path, offset, .. } = err else {
        panic!("expected a parse error, got {err:?}");
    };
    assert!(path.ends_with("config.json"));
    assert!((29..=31).contains(&offset), "{offset}");
}

#[test]
fn a_folder_without_weights_is_bad_input() {
    let dir = folder(&[("config.json", b"{}")]);
    let err = import(dir.path(), &Silent).unwrap_err();
    assert_eq!(err.exit_code(), crate::exit::BAD_INPUT);
    assert!(err.to_string().contains("no model.safetensors"));
}

fn index(entries: &[(&str, &str)]) -> Vec<u8> {
    let map: Vec<String> = entries
        .iter()
        .map(|(t, s)| format!("{t:?}: {s:?}"))
        .collect();
    format!(
        "{{\"metadata\": {{\"total_size\": 16}}, \"weight_map\": {{{}}}}}",
        map.join(", ")
    )
    .into_bytes()
}

#[test]
fn sharded_checkpoints_load_every_shard() {
    let one = build(&[("a", "F32", &[2], vec![0; 8])]);
    let two = build(&[
        ("b", "F32", &[1], vec![0; 4]),
        ("c", "U8", &[3], vec![7; 3]),
    ]);
    let dir = folder(&[
        ("model-1.safetensors", &one),
        ("part/model-2.safetensors", &two),
        (
            INDEX_FILE,
            &index(&[
                ("b", "part/model-2.safetensors"),
                ("a", "model-1.safetensors"),
                ("c", "part/model-2.safetensors"),
            ]),
        ),
    ]);
    let g = import(dir.path(), &Silent).unwrap();
    let names: Vec<&str> = g.weights.iter().map(|(_, w)| w.name.as_str()).collect();
    assert_eq!(names, ["b", "c", "a"]);
    assert_eq!(&g.weights.iter().nth(1).unwrap().1.data[..], &[7, 7, 7]);
}

#[test]
fn index_entries_must_match_their_shards() {
    let one = build(&[("a", "F32", &[2], vec![0; 8])]);
    let two = build(&[("a", "F32", &[1], vec![0; 4])]);
    let wrong_shard = folder(&[
        ("s1.safetensors", &one),
        ("s2.safetensors", &build(&[("b", "F32", &[1], vec![0; 4])])),
        (
            INDEX_FILE,
            &index(&[("a", "s2.safetensors"), ("b", "s2.safetensors")]),
        ),
    ]);
    let text = import(wrong_shard.path(), &Silent).unwrap_err().to_string();
    assert!(
        text.contains("weight_map entry 'a': tensor is not in"),
        "{text}"
    );

    let duplicated = folder(&[
        ("s1.safetensors", &one),
        ("s2.safetensors", &two),
        (
            INDEX_FILE,
            &index(&[("a", "s1.safetensors"), ("x", "s2.safetensors")]),
        ),
    ]);
    let text = import(duplicated.path(), &Silent).unwrap_err().to_string();
    assert!(text.contains("tensor 'a' is also in"), "{text}");

    let twice = folder(&[
        ("s1.safetensors", &one),
        (
            INDEX_FILE,
            &index(&[("a", "s1.safetensors"), ("a", "s1.safetensors")]),
        ),
    ]);
    let text = import(twice.path(), &Silent).unwrap_err().to_string();
    assert!(text.contains("'a': listed twice"), "{text}");
}

#[test]
fn shard_paths_cannot_leave_the_folder() {
    let outside = folder(&[(
        "evil.safetensors",
        &build(&[("a", "F32", &[1], vec![0; 4])]),
    )]);
    let outside_file = outside.path().join("evil.safetensors");
    let escapes = [
        "../evil.safetensors".to_string(),
        "sub/../../evil.safetensors".to_string(),
        outside_file.display().to_string(),
        String::new(),
    ];
    for shard in &escapes {
        let dir = folder(&[(INDEX_FILE, &index(&[("a", shard)]))]);
        let err = import(dir.path(), &Silent).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{shard}: {err}");
        assert!(
            err.to_string().contains("plain relative path"),
            "{shard}: {err}"
        );
    }
    #[cfg(unix)]
    {
        let dir = folder(&[(INDEX_FILE, &index(&[("a", "link.safetensors")]))]);
        std::os::unix::fs::symlink(&outside_file, dir.path().join("link.safetensors")).unwrap();
        let text = import(dir.path(), &Silent).unwrap_err().to_string();
        assert!(text.contains("outside the checkpoint folder"), "{text}");
    }
}
