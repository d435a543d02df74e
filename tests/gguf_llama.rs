//! `convert --target gguf` checked in llama.cpp (llama-cpp-python 0.3.36):
//! the files load and run, float32 logits match the numpy reference forward
//! pass, tokenization matches the `tokenizers` library, and for every file
//! type the tensor types and bytes equal what llama.cpp's own quantizer
//! (`llama_model_quantize`) makes from edgeconv's F32 file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use edgeconv::ir::Tensor;
use serde_json::Value;

fn edgeconv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgeconv"))
}

fn convert(model: &Path, quant: &str, out: &Path, extra: &[&str]) {
    let output = edgeconv()
        .args(["-q", "convert"])
        .arg(model)
        .args(["--target", "gguf", "--quant", quant, "-o"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "convert {} --quant {quant}: {}",
        model.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn f32_npy(path: &Path) -> Vec<f32> {
    common::quant::floats(&edgeconv::calibration::npy::read_npy(path).unwrap())
}

/// Reference logits and the token ids, from fixtures/llama_reference.py.
fn reference(model: &Path, dir: &Path) -> (Vec<f32>, String) {
    let (logits, ids) = (dir.join("ref.npy"), dir.join("ids.npy"));
    let text = "The quick brown fox, naïve café 🚀 def f(x): return 42 and 3.14";
    let script = common::repo_root().join("fixtures/llama_reference.py");
    let output = Command::new(common::llama_python())
        .arg(script)
        .arg(&logits)
        .arg("--model")
        .arg(model)
        .args(["--text", text, "--ids-out"])
        .arg(&ids)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids = match edgeconv::calibration::npy::read_npy(&ids).unwrap() {
        Tensor::I64(a) => a.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        _ => panic!("ids"),
    };
    (f32_npy(&logits), ids)
}

fn llama_logits(gguf: &Path, ids: &str, out: &Path) -> Vec<f32> {
    common::run_llama_python(
        "llama_cpp_run.py",
        &[
            gguf.as_os_str(),
            "logits".as_ref(),
            "--ids".as_ref(),
            ids.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    );
    f32_npy(out)
}

/// max |a - b| / max |b|, and the share of positions whose argmax agrees.
fn agreement(ours: &[f32], reference: &[f32], vocab: usize) -> (f64, f64) {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let err = ours
        .iter()
        .zip(reference)
        .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            )
            .0
    };
    let rows = ours.len() / vocab;
    let same = (0..rows)
        .filter(|r| argmax(&ours[r * vocab..][..vocab]) == argmax(&reference[r * vocab..][..vocab]))
        .count();
    (err / scale, same as f64 / rows as f64)
}

fn checkpoints() -> Vec<(PathBuf, usize)> {
    let dir = common::llm_checkpoints_dir();
    vec![
        (common::repo_root().join("fixtures/tiny_llama"), 384),
        (dir.join("llama"), 32000),
        (dir.join("qwen2"), 32000),
    ]
}

#[test]
fn llama_cpp_runs_every_file_type_and_f32_matches_the_numpy_reference() {
    // Relative error bounds per file type: F32 is the acceptance bound. For
    // the quantized types llama.cpp also quantizes activations in its matmuls
    // (and these random checkpoints have near-flat logits), so the bounds are
    // no more than finite logits (the near-flat logits of random checkpoints make top-1 noise); the exact check of the
    // quantized tensors is their byte identity with llama.cpp's quantizer.
    let bounds = [
        ("F32", 1e-3, 1.0),
        ("F16", 1e-2, 0.9),
        ("Q8_0", f64::INFINITY, 0.0),
        ("Q6_K", f64::INFINITY, 0.0),
        ("Q4_K_M", f64::INFINITY, 0.0),
        ("Q2_K", f64::INFINITY, 0.0),
    ];
    for (model, vocab) in checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (reference, ids) = reference(&model, dir.path());
        for (quant, max_err, min_top1) in bounds {
            let gguf = dir.path().join(format!("{quant}.gguf"));
            convert(&model, quant, &gguf, &[]);
            let logits = llama_logits(&gguf, &ids, &dir.path().join(format!("{quant}.npy")));
            assert!(
                logits.iter().all(|v| v.is_finite()),
                "{quant}: non-finite logits"
            );
            let (err, top1) = agreement(&logits, &reference, vocab);
            eprintln!(
                "{} {quant}: relative error {err:.2e}, top-1 agreement {top1:.3}",
                model.display()
            );
            assert!(
                err <= max_err,
                "{} {quant}: relative error {err}",
                model.display()
            );
            assert!(
                top1 >= min_top1,
                "{} {quant}: top-1 agreement {top1}",
                model.display()
            );
        }
    }
}

fn compare(a: &Path, b: &Path) -> Value {
    let out = common::run_llama_python("gguf_compare.py", &[a, b]);
    serde_json::from_slice(&out.stdout).unwrap()
}

const FILE_TYPES: [&str; 16] = [
    "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_L", "Q3_K_M",
    "Q3_K_S", "Q2_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
];

fn assert_same_as_llama_quantize(
    model: &Path,
    f32: &Path,
    quant: &str,
    dir: &Path,
    extra: &[&str],
) {
    let theirs = dir.join(format!("llama-{quant}.gguf"));
    let mut args: Vec<String> = vec![
        f32.display().to_string(),
        theirs.display().to_string(),
        quant.into(),
    ];
    args.extend(["--threads".into(), "2".into()]);
    if let Some(i) = extra.iter().position(|a| *a == "--imatrix") {
        args.extend(["--imatrix".into(), extra[i + 1].into()]);
    }
    common::run_llama_python("llama_quantize.py", &args);
    let ours = dir.join(format!("edgeconv-{quant}.gguf"));
    convert(model, quant, &ours, extra);
    let c = compare(&theirs, &ours);
    let tensors = c["tensors"].as_u64().unwrap();
    assert!(
        c["same_names"].as_bool().unwrap(),
        "{quant}: tensor names differ"
    );
    assert_eq!(
        c["types_equal"].as_u64(),
        Some(tensors),
        "{} {quant}: type mix differs: {}",
        model.display(),
        c["type_mismatches"]
    );
    assert_eq!(
        c["bytes_equal"].as_u64(),
        Some(tensors),
        "{} {quant}: tensor bytes differ",
        model.display()
    );
}

#[test]
fn every_file_type_has_llama_quantizes_type_mix_and_bytes() {
    for (model, _) in checkpoints().into_iter().skip(1) {
        let dir = tempfile::tempdir().unwrap();
        let f32 = dir.path().join("F32.gguf");
        convert(&model, "F32", &f32, &[]);
        for quant in FILE_TYPES {
            assert_same_as_llama_quantize(&model, &f32, quant, dir.path(), &[]);
        }
    }
}

#[test]
fn importance_matrix_quantization_matches_llama_quantize() {
    let model = common::llm_checkpoints_dir().join("llama");
    let dir = tempfile::tempdir().unwrap();
    let f32 = dir.path().join("F32.gguf");
    convert(&model, "F32", &f32, &[]);
    // A legacy-format imatrix over every matrix (sums over 10 calls).
    let imatrix = dir.path().join("m.imatrix");
    let script = r#"
import gguf, numpy as np, struct, sys
r = gguf.GGUFReader(sys.argv[1]); rng = np.random.default_rng(5)
ts = [t for t in r.tensors if len(t.shape) == 2]
out = struct.pack('<i', len(ts))
for t in ts:
    v = (rng.gamma(0.7, 1.0, int(t.shape[0])) * 10).astype('<f4')
    out += struct.pack('<i', len(t.name)) + t.name.encode() + struct.pack('<ii', 10, v.size) + v.tobytes()
open(sys.argv[2], 'wb').write(out)
"#;
    let status = Command::new(common::llama_python())
        .args(["-c", script])
        .arg(&f32)
        .arg(&imatrix)
        .status()
        .unwrap();
    assert!(status.success());
    let m = imatrix.display().to_string();
    for quant in ["Q4_K_M", "Q2_K", "Q3_K_S", "Q5_K_S", "Q6_K", "Q4_0", "Q5_1"] {
        assert_same_as_llama_quantize(&model, &f32, quant, dir.path(), &["--imatrix", &m]);
    }
}

#[test]
fn requantizing_a_gguf_and_a_sharded_checkpoint_give_the_same_tensors() {
    let dir = common::llm_checkpoints_dir();
    let tmp = tempfile::tempdir().unwrap();
    let direct = tmp.path().join("direct.gguf");
    convert(&dir.join("llama"), "Q4_K_M", &direct, &[]);
    let f32 = tmp.path().join("f32.gguf");
    convert(&dir.join("llama"), "F32", &f32, &[]);
    let requantized = tmp.path().join("requantized.gguf");
    convert(&f32, "Q4_K_M", &requantized, &[]);
    let sharded = tmp.path().join("sharded.gguf");
    convert(&dir.join("llama-sharded"), "Q4_K_M", &sharded, &[]);
    for other in [&requantized, &sharded] {
        let c = compare(&direct, other);
        assert_eq!(c["bytes_equal"], c["tensors"], "{}", other.display());
    }
    // Same inputs and flags: the same file, whatever the thread count.
    let one = tmp.path().join("one.gguf");
    let status = edgeconv()
        .env("RAYON_NUM_THREADS", "1")
        .args(["-q", "convert"])
        .arg(dir.join("llama"))
        .args(["--target", "gguf", "--quant", "Q4_K_M", "-o"])
        .arg(&one)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(&one).unwrap(),
        std::fs::read(&direct).unwrap()
    );
}

#[test]
fn llama_cpp_tokenizes_like_the_tokenizers_library() {
    let texts = [
        "Hello world",
        "naïve café, Ångström, São Paulo, Zürich",
        "🚀🦙 emoji 👍🏽 and flags 🇫🇷",
        "def f(x):\n    return {'a': [1, 2, 3]}  # code\n\ttabbed",
        "3 33 333 3333 33333 3.14159 1e-5 0x1F",
        "  multiple   spaces\t\ttabs\n\n\nnewlines  ",
        "我想在apple工作 日本語のテキスト 한국어",
        "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
        "Привет мир. Γειά σου κόσμε.",
    ];
    let dir = tempfile::tempdir().unwrap();
    let texts_path = dir.path().join("texts.json");
    std::fs::write(&texts_path, serde_json::to_string(&texts).unwrap()).unwrap();
    for model in ["llama", "qwen2"] {
        let model = common::llm_checkpoints_dir().join(model);
        let gguf = dir.path().join("m.gguf");
        convert(&model, "Q8_0", &gguf, &[]);
        let ours = dir.path().join("llama.json");
        common::run_llama_python(
            "llama_cpp_run.py",
            &[
                gguf.as_os_str(),
                "tokenize".as_ref(),
                "--texts".as_ref(),
                texts_path.as_os_str(),
                "--out".as_ref(),
                ours.as_os_str(),
            ],
        );
        let expected = dir.path().join("hf.json");
        let script = "import json, sys\nfrom tokenizers import Tokenizer\n\
                      t = Tokenizer.from_file(sys.argv[1])\n\
                      json.dump([t.encode(s, add_special_tokens=False).ids for s in json.load(open(sys.argv[2]))], open(sys.argv[3], 'w'))\n";
        let status = Command::new(common::llama_python())
            .args(["-c", script])
            .arg(model.join("tokenizer.json"))
            .arg(&texts_path)
            .arg(&expected)
            .status()
            .unwrap();
        assert!(status.success());
        let ours: Vec<Vec<u32>> = serde_json::from_slice(&std::fs::read(&ours).unwrap()).unwrap();
        let expected: Vec<Vec<u32>> =
            serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
        for ((text, a), b) in texts.iter().zip(&ours).zip(&expected) {
            assert_eq!(a, b, "{}: {text:?}", model.display());
        }
    }
}

#[test]
fn a_hostile_gguf_exits_2_naming_the_offset_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend((1u64 << 50).to_le_bytes());
    bytes.extend([0u8; 64]);
    let path = dir.path().join("hostile.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let out = dir.path().join("out.gguf");
    for args in [
        vec!["inspect"],
        vec!["convert", "--target", "gguf", "-o", out.to_str().unwrap()],
    ] {
        let output = edgeconv()
            .args(&args[..1])
            .arg(&path)
            .args(&args[1..])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("at byte 16") && stderr.contains("metadata count"),
            "{stderr}"
        );
    }
    assert!(!out.exists());
}

#[test]
fn an_onnx_model_becomes_a_tensor_file_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp.gguf");
    let output = edgeconv()
        .args(["convert"])
        .arg(common::repo_root().join("fixtures/mlp.onnx"))
        .args(["--target", "gguf", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("weights only"),
        "{stderr}"
    );
    let f = edgeconv::formats::gguf::container::read(&out).unwrap();
    assert!(!f.tensors.is_empty());
}

#[test]
fn minilm_embeddings_in_llama_cpp_match_the_numpy_reference() {
    let model = common::real_models_dir().join("all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "A man is eating food.",
        "The quick brown fox jumps over the lazy dog.",
        "naïve café in São Paulo",
        "Machine learning models run on phones, in 2026, at 3.5 watts!",
    ];
    let texts_path = dir.path().join("texts.json");
    std::fs::write(&texts_path, serde_json::to_string(&texts).unwrap()).unwrap();
    let reference = dir.path().join("ref.npy");
    common::run_llama_python(
        "bert_reference.py",
        &[
            model.as_os_str(),
            texts_path.as_os_str(),
            reference.as_os_str(),
        ],
    );
    let reference = f32_npy(&reference);
    // Quantized BERT files crash llama.cpp 0.3.36's AMX kernels on this
    // machine for multi-token batches (see llama_cpp_run.py); F32 and F16 run.
    for quant in ["F32", "F16"] {
        let gguf = dir.path().join(format!("minilm-{quant}.gguf"));
        convert(&model, quant, &gguf, &[]);
        let out = dir.path().join(format!("{quant}.npy"));
        common::run_llama_python(
            "llama_cpp_run.py",
            &[
                gguf.as_os_str(),
                "embed".as_ref(),
                "--texts".as_ref(),
                texts_path.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
        );
        let ours = f32_npy(&out);
        let dim = ours.len() / texts.len();
        assert_eq!(dim, 384);
        for (i, text) in texts.iter().enumerate() {
            let (a, b) = (&ours[i * dim..][..dim], &reference[i * dim..][..dim]);
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let cosine = dot / norm(a) / norm(b);
            eprintln!("{quant} {text:?}: cosine {cosine:.6}");
            assert!(cosine >= 0.999, "{quant} {text:?}: cosine {cosine}");
        }
    }
}

#[test]
fn a_bf16_checkpoint_writes_f32_vectors_and_runs_in_llama_cpp() {
    let model = common::llm_checkpoints_dir().join("llama-bf16");
    let dir = tempfile::tempdir().unwrap();
    let (reference, ids) = reference(&model, dir.path());
    // BF16 keeps the checkpoint's matrices, so its norms are the test; F32
    // checks the bf16 decoding against the reference exactly.
    for quant in ["BF16", "Q4_K_M", "F32"] {
        let gguf = dir.path().join(format!("{quant}.gguf"));
        convert(&model, quant, &gguf, &[]);
        let c = compare(&gguf, &gguf);
        for (name, ty) in c["types"].as_object().unwrap() {
            if name.ends_with("_norm.weight") {
                assert_eq!(ty, "F32", "{quant}: {name}");
            }
        }
        let logits = llama_logits(&gguf, &ids, &dir.path().join(format!("{quant}.npy")));
        assert!(
            logits.iter().all(|v| v.is_finite()),
            "{quant}: non-finite logits"
        );
        if quant == "F32" {
            let (err, _) = agreement(&logits, &reference, 32000);
            eprintln!("bf16 checkpoint as F32: relative error {err:.2e}");
            assert!(err < 1e-3, "F32: relative error {err}");
        }
    }
}
