//! Corrupted and crafted inputs must give exit code 2 with a message that names
//! the file, never a panic, and leave no output file behind. Crafted models
//! named `unsupported_*` are well formed but ask for something edgeconv does
//! not support (exit 3).
//!
//! The corpus: crafted ONNX models (tests/oracles/make_hostile.py: absurd and
//! negative dims, byte counts that do not match, unknown dtypes, external data
//! escaping the model folder, cycles, duplicate and undefined names), plus
//! truncations at many offsets, flipped header bytes and absurd dims/lengths
//! derived here from the fixtures (ONNX, safetensors, npy).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rayon::prelude::*;

/// One corrupted input and how to feed it to the CLI.
struct Case {
    name: String,
    file: PathBuf,
    kind: Kind,
}

enum Kind {
    /// `edgeconv inspect FILE`
    Model,
    /// `edgeconv run fixtures/mlp.onnx -i x=FILE -o OUT.npz`
    MlpInput,
}

/// A small deterministic generator (64-bit LCG), so the corpus is the same every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn write_case(dir: &Path, cases: &mut Vec<Case>, name: String, bytes: &[u8], kind: Kind) {
    let file = dir.join(&name);
    fs::write(&file, bytes).unwrap();
    cases.push(Case { name, file, kind });
}

/// `count` truncations at distinct offsets strictly inside `data` (never empty, never whole).
fn truncations(data: &[u8], count: usize, seed: u64) -> Vec<usize> {
    let mut rng = Lcg(seed);
    let mut offsets: Vec<usize> = (0..count).map(|_| 1 + rng.below(data.len() - 1)).collect();
    offsets.push(0);
    offsets.sort();
    offsets.dedup();
    offsets
}

fn onnx_cases(dir: &Path, cases: &mut Vec<Case>) {
    for model in [
        "mlp",
        "cnn_bn",
        "mobilenet_block",
        "transformer_block",
        "dynamic_batch",
    ] {
        let data = fs::read(common::repo_root().join(format!("fixtures/{model}.onnx"))).unwrap();
        for at in truncations(&data, 20, model.len() as u64) {
            let name = format!("{model}_truncated_{at}.onnx");
            write_case(dir, cases, name, &data[..at], Kind::Model);
        }
        // The first byte is the ir_version field tag; wire types 6 and 7 do not exist.
        for (i, tag) in [0x0e_u8, 0x0f, 0x07, 0x06].into_iter().enumerate() {
            let mut bad = data.clone();
            bad[0] = tag;
            write_case(
                dir,
                cases,
                format!("{model}_bad_tag_{i}.onnx"),
                &bad,
                Kind::Model,
            );
        }
        // The graph field's length varint (after tag 0x3a) claims more than the file holds.
        let graph_tag = data.iter().position(|&b| b == 0x3a).unwrap();
        let mut bad = data[..graph_tag + 1].to_vec();
        bad.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        bad.extend_from_slice(&data[graph_tag + 1..]);
        write_case(
            dir,
            cases,
            format!("{model}_graph_length.onnx"),
            &bad,
            Kind::Model,
        );
    }
}

fn safetensors_header(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

fn safetensors_cases(dir: &Path, cases: &mut Vec<Case>) {
    let data = fs::read(common::repo_root().join("fixtures/tiny_llama/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    for at in truncations(&data, 30, 7) {
        let name = format!("llama_truncated_{at}.safetensors");
        write_case(dir, cases, name, &data[..at], Kind::Model);
    }
    for byte in 2..8 {
        let mut bad = data.clone();
        bad[byte] = 0x7f;
        let name = format!("llama_header_length_{byte}.safetensors");
        write_case(dir, cases, name, &bad, Kind::Model);
    }
    let structural: Vec<usize> = (8..8 + header_len)
        .filter(|&i| matches!(data[i], b'{' | b'}' | b'[' | b']' | b':' | b'"'))
        .collect();
    let mut rng = Lcg(11);
    for _ in 0..15 {
        let at = structural[rng.below(structural.len())];
        let mut bad = data.clone();
        bad[at] = 0x01;
        let name = format!("llama_header_byte_{at}.safetensors");
        write_case(dir, cases, name, &bad, Kind::Model);
    }
    let crafted = [
        r#"{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,1099511627776]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        r#"{"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2]}}"#,
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
        r#"[1,2,3]"#,
        r#"{"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}}"#,
    ];
    for (i, json) in crafted.iter().enumerate() {
        let mut bytes = safetensors_header(json);
        bytes.extend_from_slice(&[0u8; 8]);
        let name = format!("crafted_{i}.safetensors");
        write_case(dir, cases, name, &bytes, Kind::Model);
    }
}

fn npy_bytes(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut dict = header.to_string();
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn npy_cases(dir: &Path, cases: &mut Vec<Case>) {
    let data = fs::read(common::repo_root().join("fixtures/inputs/mlp/0/x.npy")).unwrap();
    for at in truncations(&data, 15, 3) {
        let name = format!("x_truncated_{at}.npy");
        write_case(dir, cases, name, &data[..at], Kind::MlpInput);
    }
    for (i, at) in [0usize, 1, 5, 6, 8, 9].into_iter().enumerate() {
        let mut bad = data.clone();
        bad[at] ^= 0xff;
        write_case(
            dir,
            cases,
            format!("x_flipped_{i}.npy"),
            &bad,
            Kind::MlpInput,
        );
    }
    let payload = vec![0u8; 64];
    let crafted = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 16), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 17), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), }",
        "{'descr': '<x9', 'fortran_order': False, 'shape': (1, 16), }",
        "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 16), }",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 16), }",
        "{'descr': '<f4', 'shape': (1, 16), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16) ",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 16), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }",
    ];
    for (i, header) in crafted.iter().enumerate() {
        let name = format!("x_crafted_{i}.npy");
        write_case(
            dir,
            cases,
            name,
            &npy_bytes(header, &payload),
            Kind::MlpInput,
        );
    }
}

fn hostile_onnx_cases(cases: &mut Vec<Case>) {
    let dir = common::hostile_models_dir();
    let listed = fs::read_to_string(dir.join("COMPLETE")).unwrap();
    for name in listed.lines() {
        cases.push(Case {
            name: name.to_string(),
            file: dir.join(name),
            kind: Kind::Model,
        });
    }
}

/// Runs one case; `Err` says how the CLI misbehaved.
fn check(case: &Case, out_dir: &Path) -> Result<(), String> {
    let exe = env!("CARGO_BIN_EXE_edgeconv");
    let out = out_dir.join(format!("{}.npz", case.name));
    let output = match case.kind {
        Kind::Model => Command::new(exe).arg("inspect").arg(&case.file).output(),
        Kind::MlpInput => Command::new(exe)
            .arg("run")
            .arg(common::repo_root().join("fixtures/mlp.onnx"))
            .arg("-i")
            .arg(format!("x={}", case.file.display()))
            .arg("-o")
            .arg(&out)
            .output(),
    }
    .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file_name = case.file.file_name().unwrap().to_string_lossy();
    if stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    let expected = if case.name.starts_with("unsupported_") {
        3
    } else {
        2
    };
    if output.status.code() != Some(expected) {
        return Err(format!("exit {:?}, stderr: {stderr}", output.status.code()));
    }
    if !stderr.contains(file_name.as_ref()) {
        return Err(format!("message does not name the file: {stderr}"));
    }
    if out.exists() {
        return Err("an output file was left behind".into());
    }
    Ok(())
}

#[test]
fn corrupted_inputs_exit_2_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    hostile_onnx_cases(&mut cases);
    onnx_cases(dir.path(), &mut cases);
    safetensors_cases(dir.path(), &mut cases);
    npy_cases(dir.path(), &mut cases);
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let crafted = cases
        .iter()
        .take_while(|c| !c.file.starts_with(dir.path()))
        .count();
    println!(
        "{} corrupted inputs, {crafted} of them crafted ONNX models",
        cases.len()
    );

    let failures: Vec<String> = cases
        .par_iter()
        .filter_map(|c| {
            check(c, dir.path())
                .err()
                .map(|e| format!("{}: {e}", c.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} corrupted inputs were mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
