//! The `edgeconv` command as a user runs it: output contracts and exit codes
//! (docs/CLI.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::tensor::{Dtype, TensorView};

fn edgeconv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeconv"))
        .args(args)
        .output()
        .expect("the edgeconv binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code and that stderr holds one `error: ...` line
/// containing `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

/// The checked-in fixtures; `EDGECONV_FIXTURES` points elsewhere (a checkout
/// whose fixtures are not committed yet).
fn fixtures() -> PathBuf {
    std::env::var_os("EDGECONV_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
}

/// Writes a safetensors file with the reference crate.
fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>)]) {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, dtype, shape)| vec![0u8; shape.iter().product::<usize>() * dtype.bitsize() / 8])
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, dtype, shape), bytes)| {
            (
                *name,
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn inspect_json_on_the_tiny_llama_fixture() {
    let model = fixtures().join("tiny_llama");
    assert!(
        model.is_dir(),
        "{} is missing (set EDGECONV_FIXTURES to a fixtures folder)",
        model.display()
    );
    let out = edgeconv(&["inspect", "--json", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for key in [
        "inputs",
        "outputs",
        "ops",
        "params",
        "params_bytes_by_dtype",
        "opsets",
        "architecture",
        "symbols",
        "largest_tensors",
    ] {
        assert!(json.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(json["architecture"], "llama");

    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let elements: u64 = reference
        .tensors()
        .iter()
        .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
        .sum();
    assert_eq!(json["params"], elements);
    assert_eq!(json["params_bytes_by_dtype"]["f32"], elements * 4);
    let largest = json["largest_tensors"].as_array().unwrap();
    assert_eq!(largest.len(), 10);
    assert_eq!(largest[0]["name"], "lm_head.weight");
    assert_eq!(largest[0]["role"], "Output");
}

#[test]
fn inspect_text_and_ir_on_a_bert_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &[
            (
                "bert.embeddings.word_embeddings.weight",
                Dtype::F16,
                vec![30, 8],
            ),
            (
                "bert.encoder.layer.0.attention.self.query.weight",
                Dtype::F16,
                vec![8, 8],
            ),
            ("bert.embeddings.position_ids", Dtype::I64, vec![1, 16]),
        ],
    );
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"architectures": ["BertModel"]}"#,
    )
    .unwrap();
    let folder = dir.path().to_str().unwrap();

    let out = edgeconv(&["inspect", folder]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("architecture  bert"), "{text}");
    assert!(text.contains("320 in 3 weights"), "{text}");
    assert!(text.contains("TokenEmbedding"), "{text}");
    assert!(text.contains("  i64"), "{text}");

    let out = edgeconv(&["--quiet", "inspect", "--ir", folder]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("weight bert.embeddings.word_embeddings.weight: f16[30,8]"));
}

#[test]
fn usage_errors_exit_2() {
    assert_fails(
        &edgeconv(&["inspect", "--no-such-flag", "m.onnx"]),
        2,
        "--no-such-flag",
    );
    assert_fails(&edgeconv(&["inspect"]), 2, "MODEL");
    assert_fails(&edgeconv(&[]), 2, "Usage");
    assert_fails(&edgeconv(&["frobnicate"]), 2, "frobnicate");
    assert_fails(&edgeconv(&["inspect", "--json", "--ir", "m"]), 2, "--ir");
    assert_eq!(edgeconv(&["--version"]).status.code(), Some(0));
    let help = edgeconv(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("inspect"));
}

#[test]
fn unreadable_models_exit_2_with_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    assert_fails(
        &edgeconv(&["inspect", missing.to_str().unwrap()]),
        2,
        "error: ",
    );
    assert_fails(
        &edgeconv(&["inspect", missing.to_str().unwrap()]),
        2,
        "nope.safetensors",
    );

    let whole = dir.path().join("whole.safetensors");
    write_safetensors(&whole, &[("w", Dtype::F32, vec![4, 4])]);
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    for len in [0, 5, 20, bytes.len() - 1] {
        std::fs::write(&truncated, &bytes[..len]).unwrap();
        let out = edgeconv(&["inspect", truncated.to_str().unwrap()]);
        assert_fails(&out, 2, "truncated.safetensors: at byte ");
        assert!(!stderr(&out).contains("panicked"));
    }

    let unknown = dir.path().join("model.bin");
    std::fs::write(&unknown, b"1234").unwrap();
    assert_fails(
        &edgeconv(&["inspect", unknown.to_str().unwrap()]),
        2,
        "cannot tell the model format",
    );
}

#[test]
fn unsupported_dtypes_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f8.safetensors");
    write_safetensors(&path, &[("w", Dtype::F8_E4M3, vec![4])]);
    assert_fails(
        &edgeconv(&["inspect", path.to_str().unwrap()]),
        3,
        "F8_E4M3",
    );
}
