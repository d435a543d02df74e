//! The GGUF container against gguf-py (the llama.cpp venv's `gguf` package,
//! tests/oracles/gguf_dump.py): a file edgeconv writes reads back in gguf-py
//! with every metadata value (exact types, float bit patterns, nested and
//! empty arrays), tensor info and payload byte equal; a file gguf-py's
//! GGUFWriter writes reads in edgeconv (reader, importer and `inspect`) the
//! same way; and hostile headers through the CLI exit 2 naming the offset.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use edgeconv::formats::gguf::container::{
    self, GgufFile, GgufValue, MetaType, TensorSpec, import, read,
};
use edgeconv::formats::gguf::types::TensorType;
use edgeconv::ir::error::{Error, Result};
use edgeconv::progress::Silent;
use rayon::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn edgeconv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgeconv"))
}

/// A value as gguf_dump.py prints it.
fn value_json(v: &GgufValue) -> Value {
    let ty = v.meta_type().id();
    match v {
        GgufValue::U8(x) => json!({"type": ty, "value": x}),
        GgufValue::I8(x) => json!({"type": ty, "value": x}),
        GgufValue::U16(x) => json!({"type": ty, "value": x}),
        GgufValue::I16(x) => json!({"type": ty, "value": x}),
        GgufValue::U32(x) => json!({"type": ty, "value": x}),
        GgufValue::I32(x) => json!({"type": ty, "value": x}),
        GgufValue::U64(x) => json!({"type": ty, "value": x}),
        GgufValue::I64(x) => json!({"type": ty, "value": x}),
        GgufValue::F32(x) => json!({"type": ty, "bits": x.to_bits()}),
        GgufValue::F64(x) => json!({"type": ty, "bits": x.to_bits()}),
        GgufValue::Bool(x) => json!({"type": ty, "value": x}),
        GgufValue::String(x) => json!({"type": ty, "value": x}),
        GgufValue::Array(elem, items) => json!({
            "type": ty,
            "elem": elem.id(),
            "items": items.iter().map(value_json).collect::<Vec<_>>(),
        }),
    }
}

fn kv_json(kv: &[(String, GgufValue)]) -> Value {
    kv.iter()
        .map(|(k, v)| json!([k, value_json(v)]))
        .collect::<Vec<_>>()
        .into()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// edgeconv's view of `path` in gguf_dump.py's form: offsets and metadata
/// from `read`, tensor bytes, IR shapes and dtypes from `import`.
fn edgeconv_json(path: &Path) -> Value {
    let file: GgufFile = read(path).unwrap();
    let g = import(path, &Silent).unwrap();
    // As JSON, where NaN equals itself bit for bit.
    assert_eq!(
        kv_json(&g.metadata.kv),
        kv_json(&file.kv),
        "import keeps the metadata"
    );
    assert_eq!(g.outputs.len(), file.tensors.len());
    let tensors: Vec<Value> = file
        .tensors
        .iter()
        .zip(&g.outputs)
        .map(|(t, &out)| {
            let w = g.weight_of(out).unwrap();
            assert_eq!(w.name, t.name);
            assert!(
                w.dtype.name().eq_ignore_ascii_case(t.ty.name()),
                "{}: {} imported as {}",
                t.name,
                t.ty,
                w.dtype.name()
            );
            let mut info = json!({
                "name": t.name,
                "type": t.ty.id(),
                "ne": t.ne,
                "start": t.start,
                "bytes": t.bytes,
                "sha256": sha256(&w.data),
            });
            if matches!(t.ty, TensorType::F32 | TensorType::F16) {
                info["shape"] = json!(w.shape);
            }
            info
        })
        .collect();
    json!({
        "version": file.version,
        "alignment": file.alignment,
        "data_offset": file.data_offset,
        "kv": kv_json(&file.kv),
        "tensors": tensors,
    })
}

fn gguf_py(mode: &str, path: &Path) -> Value {
    let out = common::run_llama_python("gguf_dump.py", &[mode.as_ref(), path.as_os_str()]);
    serde_json::from_slice(&out.stdout).expect("gguf_dump.py prints JSON")
}

/// Every value type, extremes and float bit patterns gguf-py must keep
/// (NaN, -0.0, infinity, subnormal), empty strings and arrays, arrays of
/// every type, arrays nested three deep with an empty one inside.
fn every_value() -> Vec<(String, GgufValue)> {
    use GgufValue as V;
    let scalars = [
        V::U8(255),
        V::I8(i8::MIN),
        V::U16(u16::MAX),
        V::I16(i16::MIN),
        V::U32(u32::MAX),
        V::I32(i32::MIN),
        V::U64(u64::MAX),
        V::I64(i64::MIN),
        V::F32(f32::NAN),
        V::F64(f64::MIN_POSITIVE / 8.0),
        V::Bool(true),
        V::String("llama 🦙 é\0tab\t".into()),
    ];
    let mut kv = vec![(
        "general.architecture".to_string(),
        V::String("llama".into()),
    )];
    for (i, s) in scalars.iter().enumerate() {
        kv.push((format!("scalar.{i}"), s.clone()));
        kv.push((
            format!("array.{i}"),
            V::Array(s.meta_type(), vec![s.clone(), s.clone()]),
        ));
        kv.push((format!("empty_array.{i}"), V::Array(s.meta_type(), vec![])));
    }
    kv.extend([
        ("f32.neg_zero".into(), V::F32(-0.0)),
        ("f32.inf".into(), V::F32(f32::INFINITY)),
        (
            "f64.nan".into(),
            V::F64(f64::from_bits(0x7ff8_0000_dead_beef)),
        ),
        ("bool.false".into(), V::Bool(false)),
        ("string.empty".into(), V::String(String::new())),
        (
            "strings".into(),
            V::strings(["".to_string(), "a".into(), "ü🦙".into()]),
        ),
        (
            "nested".into(),
            V::Array(
                MetaType::Array,
                vec![
                    V::Array(
                        MetaType::Array,
                        vec![V::Array(MetaType::I16, vec![V::I16(-1), V::I16(2)])],
                    ),
                    V::Array(MetaType::Array, vec![]),
                ],
            ),
        ),
        (
            "nested_strings".into(),
            V::Array(
                MetaType::Array,
                vec![V::strings(["x".to_string()]), V::strings([])],
            ),
        ),
        ("empty_nested".into(), V::Array(MetaType::Array, vec![])),
    ]);
    kv
}

/// (spec, payload) for F32, F16, BF16, Q8_0 and Q6_K tensors of uneven sizes.
fn tensors() -> Vec<(TensorSpec, Vec<u8>)> {
    let f32s: Vec<u8> = (0..15)
        .flat_map(|i| (i as f32 * 0.37 - 2.0).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = (0..7)
        .flat_map(|i| half::f16::from_f32(i as f32 / 3.0).to_le_bytes())
        .collect();
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let spec = |name: &str, ne: Vec<u64>, ty: TensorType, payload: Vec<u8>| {
        (
            TensorSpec {
                name: name.into(),
                ne,
                ty: ty.id(),
                bytes: payload.len() as u64,
            },
            payload,
        )
    };
    vec![
        spec("w.f32", vec![3, 5], TensorType::F32, f32s),
        spec("w.f16", vec![7], TensorType::F16, f16s),
        spec("w.bf16", vec![4, 2, 1], TensorType::BF16, pattern(16, 1)),
        spec("w.q8_0", vec![64, 3], TensorType::Q8_0, pattern(3 * 68, 2)),
        spec(
            "w.q6_k",
            vec![256, 2, 1, 1],
            TensorType::Q6K,
            pattern(2 * 210, 3),
        ),
    ]
}

fn write_edgeconv(path: &Path, kv: &[(String, GgufValue)]) {
    let tensors = tensors();
    let specs: Vec<TensorSpec> = tensors.iter().map(|(s, _)| s.clone()).collect();
    let produce = |i: usize, sink: &mut dyn Write| -> Result<()> {
        sink.write_all(&tensors[i].1)
            .map_err(|e| Error::io("payload", e))
    };
    container::write(path, kv, &specs, &produce, &Silent).unwrap();
}

#[test]
fn edgeconv_files_read_the_same_in_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    for alignment in [None, Some(64u32), Some(8)] {
        let mut kv = every_value();
        if let Some(a) = alignment {
            kv.insert(1, ("general.alignment".into(), GgufValue::U32(a)));
        }
        let path = dir.path().join(format!("edgeconv-{alignment:?}.gguf"));
        write_edgeconv(&path, &kv);
        let theirs = gguf_py("dump", &path);
        let align = u64::from(alignment.unwrap_or(32));
        assert_eq!(theirs["version"], 3);
        assert_eq!(theirs["alignment"], align);
        assert_eq!(theirs["kv"], kv_json(&kv), "metadata as gguf-py reads it");
        // Tensor data: from the aligned data start, each tensor at the next
        // multiple of the alignment after the previous one.
        let data_offset = theirs["data_offset"].as_u64().unwrap();
        assert_eq!(data_offset % align, 0);
        let mut start = data_offset;
        let expected: Vec<Value> = tensors()
            .iter()
            .map(|(spec, payload)| {
                let mut info = json!({
                    "name": spec.name,
                    "type": spec.ty,
                    "ne": spec.ne,
                    "start": start,
                    "bytes": spec.bytes,
                    "sha256": sha256(payload),
                });
                if spec.ty <= 1 {
                    info["shape"] = json!(spec.ne.iter().rev().collect::<Vec<_>>());
                }
                start = (start + spec.bytes).div_ceil(align) * align;
                info
            })
            .collect();
        assert_eq!(
            theirs["tensors"],
            json!(expected),
            "tensors as gguf-py reads them"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), start, "padded end");
        assert_eq!(
            edgeconv_json(&path),
            theirs,
            "edgeconv reads what gguf-py reads"
        );
    }
}

#[test]
fn gguf_py_files_read_the_same_in_edgeconv() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gguf-py.gguf");
    let theirs = gguf_py("write", &path);
    // The script's file has what this test means to check.
    assert_eq!(theirs["alignment"], 64);
    let kv = theirs["kv"].as_array().unwrap();
    let types: std::collections::BTreeSet<u64> =
        kv.iter().map(|e| e[1]["type"].as_u64().unwrap()).collect();
    assert_eq!(
        types.len(),
        MetaType::ALL.len(),
        "every value type: {types:?}"
    );
    assert!(kv.iter().any(|e| e[1]["elem"] == MetaType::Array.id()));
    assert_eq!(theirs["tensors"].as_array().unwrap().len(), 5);

    assert_eq!(edgeconv_json(&path), theirs);

    let g = import(&path, &Silent).unwrap();
    assert_eq!(g.metadata.architecture.as_deref(), Some("llama"));
    assert_eq!(g.metadata.source_format, "gguf");
    let output = edgeconv().arg("inspect").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for expected in [
        "architecture  llama",
        "w.f32: f32[5,3]",
        "w.q4_k: q4_k[1,256]",
    ] {
        assert!(stdout.contains(expected), "no '{expected}' in:\n{stdout}");
    }
}

/// A small edgeconv file and the offsets of fields to corrupt.
struct Layout {
    bytes: Vec<u8>,
    /// Value type of `general.alignment`.
    alignment_type: usize,
    /// First tensor info ("w.f32", 2 dims).
    info: usize,
    data_offset: usize,
}

fn small_file(dir: &Path) -> Layout {
    let path = dir.join("small.gguf");
    let kv = vec![
        (
            "general.architecture".into(),
            GgufValue::String("llama".into()),
        ),
        ("general.alignment".into(), GgufValue::U32(32)),
    ];
    write_edgeconv(&path, &kv);
    let bytes = std::fs::read(&path).unwrap();
    let data_offset = read(&path).unwrap().data_offset as usize;
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    Layout {
        alignment_type: find(b"general.alignment") + 17,
        info: find(b"w.f32") - 8,
        data_offset,
        bytes,
    }
}

#[test]
fn hostile_gguf_headers_exit_2_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let l = small_file(dir.path());
    let put = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let info = l.info;
    // (name, corrupted file, byte the message must name)
    let mut cases: Vec<(String, Vec<u8>, Option<usize>)> = Vec::new();
    let mut corrupt = |name: &str, at: usize, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = l.bytes.clone();
        f(&mut b);
        cases.push((name.into(), b, Some(at)));
    };
    corrupt("magic", 0, &|b| b[..4].copy_from_slice(b"GGJT"));
    corrupt("version 1", 4, &|b| b[4] = 1);
    corrupt("tensor count 2^62", 8, &|b| put(b, 8, 1 << 62));
    corrupt("kv count 2^40", 16, &|b| put(b, 16, 1 << 40));
    corrupt("key length 2^60", 24, &|b| put(b, 24, 1 << 60));
    corrupt("string length 2^63", 24 + 8 + 20 + 4, &|b| {
        put(b, 24 + 8 + 20 + 4, 1 << 63)
    });
    corrupt("alignment 0", l.alignment_type, &|b| {
        b[l.alignment_type + 4..l.alignment_type + 8].fill(0)
    });
    corrupt("alignment 3", l.alignment_type, &|b| {
        b[l.alignment_type + 4] = 3
    });
    corrupt("n_dims 2^32-1", info + 13, &|b| {
        b[info + 13..info + 17].fill(0xff)
    });
    corrupt("dims product overflow", info + 13, &|b| {
        put(b, info + 17, u64::MAX);
        put(b, info + 25, 3);
    });
    corrupt("type IQ2_XXS", info + 33, &|b| b[info + 33] = 16);
    corrupt("type 1000", info + 33, &|b| put(b, info + 33, 1000));
    corrupt("misaligned offset", info + 37, &|b| b[info + 37] = 4);
    corrupt("offset past the end", info + 37, &|b| {
        put(b, info + 37, 1 << 41)
    });
    corrupt("duplicate name", info + 45, &|b| {
        // The second tensor ("w.f16") renamed "w.f32".
        b[info + 45 + 8..info + 45 + 13].copy_from_slice(b"w.f32")
    });
    // Every cut inside the header, and inside the last tensor's data.
    for cut in (0..l.data_offset).step_by(3).chain([l.bytes.len() - 60]) {
        cases.push((format!("cut at {cut}"), l.bytes[..cut].to_vec(), None));
    }
    let failures: Vec<String> = cases
        .par_iter()
        .enumerate()
        .filter_map(|(i, (name, bytes, at))| {
            let path = dir.path().join(format!("hostile-{i}.gguf"));
            std::fs::write(&path, bytes).unwrap();
            let output = edgeconv().arg("inspect").arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            let located = match at {
                Some(at) => stderr.contains(&format!("at byte {at}:")),
                None => stderr.contains("at byte "),
            };
            let ok = output.status.code() == Some(2)
                && located
                && stderr.contains(&*path.to_string_lossy())
                && !stderr.contains("panicked");
            (!ok).then(|| format!("{name} ({:?}): {stderr}", output.status.code()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
