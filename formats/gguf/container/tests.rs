use std::io::Write;
use std::path::Path;

use super::read::parse_bytes;
use super::*;
use crate::formats::gguf::types::TensorType;
use crate::ir::error::Error;
use crate::progress::Silent;

fn every_value() -> Vec<(String, GgufValue)> {
    vec![
        (
            "general.architecture".into(),
            GgufValue::String("llama".into()),
        ),
        ("u8".into(), GgufValue::U8(7)),
        ("i8".into(), GgufValue::I8(-7)),
        ("u16".into(), GgufValue::U16(700)),
        ("i16".into(), GgufValue::I16(-700)),
        ("u32".into(), GgufValue::U32(70_000)),
        ("i32".into(), GgufValue::I32(-70_000)),
        ("u64".into(), GgufValue::U64(1 << 40)),
        ("i64".into(), GgufValue::I64(-(1 << 40))),
        ("f32".into(), GgufValue::F32(0.25)),
        ("f64".into(), GgufValue::F64(-0.125)),
        ("bool".into(), GgufValue::Bool(true)),
        ("empty".into(), GgufValue::String(String::new())),
        (
            "strings".into(),
            GgufValue::strings(["a".to_string(), "é🦙".to_string()]),
        ),
        (
            "empty_array".into(),
            GgufValue::Array(MetaType::I32, vec![]),
        ),
        (
            "nested".into(),
            GgufValue::Array(
                MetaType::Array,
                vec![
                    GgufValue::Array(MetaType::U8, vec![GgufValue::U8(1)]),
                    GgufValue::Array(MetaType::U8, vec![]),
                ],
            ),
        ),
    ]
}

fn tensors() -> Vec<TensorSpec> {
    vec![
        TensorSpec {
            name: "a".into(),
            ne: vec![3, 2],
            ty: TensorType::F32.id(),
            bytes: 24,
        },
        TensorSpec {
            name: "b".into(),
            ne: vec![5],
            ty: TensorType::F16.id(),
            bytes: 10,
        },
    ]
}

fn write_file(dir: &Path, kv: &[(String, GgufValue)]) -> std::path::PathBuf {
    let path = dir.join("m.gguf");
    let produce = |i: usize, sink: &mut dyn Write| -> crate::ir::error::Result<()> {
        let bytes = vec![i as u8 + 1; tensors()[i].bytes as usize];
        sink.write_all(&bytes).map_err(|e| Error::io("sink", e))
    };
    write(&path, kv, &tensors(), &produce, &Silent).unwrap();
    path
}

#[test]
fn every_value_type_and_tensor_round_trips_with_aligned_data() {
    let dir = tempfile::tempdir().unwrap();
    for alignment in [None, Some(64u32)] {
        let mut kv = every_value();
        if let Some(a) = alignment {
            kv.push(("general.alignment".into(), GgufValue::U32(a)));
        }
        let path = write_file(dir.path(), &kv);
        let file = read(&path).unwrap();
        assert_eq!(file.kv, kv);
        let align = u64::from(alignment.unwrap_or(32));
        assert_eq!(file.alignment, align);
        assert_eq!(file.data_offset % align, 0);
        assert_eq!(file.tensors.len(), 2);
        for (i, t) in file.tensors.iter().enumerate() {
            assert_eq!(t.start % align, 0);
            assert!(file.data(t).iter().all(|&b| b == i as u8 + 1));
        }
        assert_eq!(file.tensors[1].ty, TensorType::F16);
        assert_eq!(file.tensors[0].ne, [3, 2]);
        assert_eq!(std::fs::metadata(&path).unwrap().len() % align, 0);
    }
}

#[test]
fn a_payload_of_the_wrong_size_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let produce = |_: usize, sink: &mut dyn Write| -> crate::ir::error::Result<()> {
        sink.write_all(&[0u8; 3]).map_err(|e| Error::io("sink", e))
    };
    let err = write(&path, &every_value(), &tensors(), &produce, &Silent).unwrap_err();
    assert!(err.to_string().contains("produced 3 bytes"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn good_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::read(write_file(dir.path(), &every_value())).unwrap()
}

fn parse_error(bytes: Vec<u8>) -> String {
    match parse_bytes(Path::new("h.gguf"), bytes) {
        Err(e @ Error::Parse { .. }) => e.to_string(),
        Err(e) => panic!("not a located parse error: {e}"),
        Ok(_) => panic!("hostile file accepted"),
    }
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Byte offset of the first tensor info (after the KV section).
fn first_info(bytes: &[u8]) -> usize {
    let needle = [1u8, 0, 0, 0, 0, 0, 0, 0, b'a', 2, 0, 0, 0];
    bytes.windows(13).position(|w| w == needle).unwrap()
}

#[test]
fn every_truncation_is_a_located_error() {
    let good = good_bytes();
    let file = parse_bytes(Path::new("g"), good.clone()).unwrap();
    let data_start = file.data_offset as usize;
    let last = file.tensors.last().unwrap();
    // Cuts in the header and inside the last tensor's data (its trailing
    // padding is not data, so a cut there is still a whole file).
    for cut in (0..data_start).chain([(last.start + last.bytes - 1) as usize]) {
        let msg = parse_error(good[..cut].to_vec());
        assert!(msg.contains("at byte"), "cut {cut}: {msg}");
    }
}

#[test]
fn hostile_headers_are_located_errors_never_allocations() {
    let good = good_bytes();
    let info = first_info(&good);
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let string_value = value_at(&good, "general.architecture") + 4;
    let array = value_at(&good, "strings");
    let boolean = value_at(&good, "bool");
    let byte = value_at(&good, "u8");
    let i8_key = value_at(&good, "i8");
    // The second tensor ("b", 1 dim) follows the first's 41-byte info.
    let second = info + 41;
    let cases: Vec<(&str, Corrupt, usize, &str)> = vec![
        ("magic", Box::new(|b| b[0] = b'X'), 0, "not a GGUF file"),
        ("version 1", Box::new(|b| b[4] = 1), 4, "version 1"),
        ("version 4", Box::new(|b| b[4] = 4), 4, "version 4"),
        (
            "big-endian",
            Box::new(|b| b[4..8].copy_from_slice(&3u32.to_be_bytes())),
            4,
            "big-endian",
        ),
        (
            "tensor count",
            Box::new(|b| put_u64(b, 8, 1 << 60)),
            8,
            "tensor count",
        ),
        (
            "kv count",
            Box::new(|b| put_u64(b, 16, 1 << 40)),
            16,
            "metadata count",
        ),
        (
            "key length",
            Box::new(|b| put_u64(b, 24, u64::MAX)),
            24,
            "key length",
        ),
        (
            "string value length",
            Box::new(move |b| put_u64(b, string_value, 1 << 60)),
            string_value,
            "string length",
        ),
        (
            "array length",
            Box::new(move |b| put_u64(b, array + 8, 1 << 62)),
            array + 8,
            "array length",
        ),
        (
            "array element type",
            Box::new(move |b| b[array + 4] = 13),
            array + 4,
            "not a GGUF value type",
        ),
        (
            "value type",
            Box::new(move |b| b[byte] = 99),
            byte,
            "not a GGUF value type",
        ),
        (
            "bool 2",
            Box::new(move |b| b[boolean + 4] = 2),
            boolean + 4,
            "neither 0 nor 1",
        ),
        (
            "duplicate key",
            Box::new(move |b| b[i8_key - 2] = b'u'),
            i8_key - 10,
            "appears twice",
        ),
        (
            "n_dims 9",
            Box::new(move |b| b[info + 9] = 9),
            info + 9,
            "dimensions",
        ),
        (
            "n_dims 2^32-1",
            Box::new(move |b| b[info + 9..info + 13].fill(0xff)),
            info + 9,
            "dimensions",
        ),
        (
            "n_dims 0",
            Box::new(move |b| b[info + 9] = 0),
            info + 9,
            "dimensions",
        ),
        (
            "dims overflow",
            Box::new(move |b| {
                put_u64(b, info + 13, 1 << 40);
                put_u64(b, info + 21, 1 << 40);
            }),
            info + 9,
            "not a valid",
        ),
        (
            "row not whole blocks",
            Box::new(move |b| b[info + 29] = TensorType::Q8_0.id() as u8),
            info + 9,
            "not a valid Q8_0 tensor",
        ),
        (
            "type id",
            Box::new(move |b| b[info + 29] = 16),
            info + 29,
            "IQ2_XXS",
        ),
        (
            "unknown type id",
            Box::new(move |b| b[info + 29] = 200),
            info + 29,
            "unknown type",
        ),
        (
            "misaligned offset",
            Box::new(move |b| put_u64(b, info + 33, 3)),
            info + 33,
            "not a multiple",
        ),
        (
            "offset past the end",
            Box::new(move |b| put_u64(b, info + 33, 1 << 40)),
            info + 33,
            "past the end",
        ),
        (
            "offset overflowing u64",
            Box::new(move |b| put_u64(b, info + 33, u64::MAX - 31)),
            info + 33,
            "overflows",
        ),
        (
            "overlap",
            Box::new(move |b| put_u64(b, second + 25, 0)),
            // Sorted by range, "a" (the longer) comes second and is named.
            info + 33,
            "overlaps",
        ),
        (
            "duplicate name",
            Box::new(move |b| b[second + 8] = b'a'),
            second,
            "appears twice",
        ),
    ];
    for (what, corrupt, offset, expected) in cases {
        let mut bytes = good.clone();
        corrupt(&mut bytes);
        let msg = parse_error(bytes);
        assert!(
            msg.contains(&format!("at byte {offset}:")) && msg.contains(expected),
            "{what}: expected byte {offset} and '{expected}': {msg}"
        );
    }
}

/// Byte offset of `key`'s value type (just after the key).
fn value_at(bytes: &[u8], key: &str) -> usize {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend(key.as_bytes());
    let at = bytes.windows(needle.len()).position(|w| w == needle);
    at.unwrap() + needle.len()
}

/// A file with no metadata and one F32 tensor of one element named `name`.
fn one_tensor_file(name: &str) -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend((name.len() as u64).to_le_bytes());
    bytes.extend(name.as_bytes());
    bytes.extend(1u32.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(TensorType::F32.id().to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.resize(bytes.len().div_ceil(32) * 32 + 32, 0);
    bytes
}

#[test]
fn tensor_names_are_limited_to_63_bytes_like_llama_cpp() {
    let ok = parse_bytes(Path::new("n"), one_tensor_file(&"n".repeat(MAX_NAME_BYTES))).unwrap();
    assert_eq!(ok.tensors[0].name.len(), 63);
    let msg = parse_error(one_tensor_file(&"n".repeat(MAX_NAME_BYTES + 1)));
    assert!(
        msg.contains("at byte 24:") && msg.contains("longer than 63"),
        "{msg}"
    );
}

#[test]
fn empty_and_header_only_files_are_located_errors() {
    assert!(parse_error(Vec::new()).contains("at byte 0:"));
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    let file = parse_bytes(Path::new("e"), bytes).unwrap();
    assert!(file.kv.is_empty() && file.tensors.is_empty());
    assert_eq!(file.data_offset, 32);
}

#[test]
fn bad_alignment_values_are_refused() {
    for bad in [0u32, 3, 48] {
        let mut kv = every_value();
        kv.push(("general.alignment".into(), GgufValue::U32(bad)));
        let dir = tempfile::tempdir().unwrap();
        let produce = |_: usize, _: &mut dyn Write| -> crate::ir::error::Result<()> { Ok(()) };
        assert!(write(&dir.path().join("x.gguf"), &kv, &[], &produce, &Silent).is_err());
        // Craft one by hand: header with only the alignment key.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(17u64.to_le_bytes());
        bytes.extend(b"general.alignment");
        bytes.extend(MetaType::U32.id().to_le_bytes());
        bytes.extend(bad.to_le_bytes());
        let msg = parse_error(bytes);
        // The value type just after the key.
        assert!(
            msg.contains("at byte 49:") && msg.contains("power of two"),
            "{msg}"
        );
    }
}

#[test]
fn deeply_nested_arrays_are_refused() {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.push(b'k');
    bytes.extend(MetaType::Array.id().to_le_bytes());
    for _ in 0..20 {
        bytes.extend(MetaType::Array.id().to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
    }
    bytes.extend(vec![0u8; 64]);
    assert!(parse_error(bytes).contains("nested"));
}

#[test]
fn inconsistent_specs_are_refused_before_anything_is_written() {
    type Change = Box<dyn Fn(&mut Vec<(String, GgufValue)>, &mut Vec<TensorSpec>)>;
    // `depth` + 1 arrays, one inside the other.
    let nested = |depth: usize| {
        (0..depth).fold(GgufValue::Array(MetaType::U8, vec![]), |inner, _| {
            GgufValue::Array(MetaType::Array, vec![inner])
        })
    };
    let cases: Vec<(&str, Change)> = vec![
        (
            "F16 takes 10 bytes, the spec says 24",
            Box::new(|_, t| t[1].bytes = 24),
        ),
        ("appears twice", Box::new(|_, t| t[1].name = "a".into())),
        (
            "type id 16",
            Box::new(|_, t| t[0].ty = 16), // IQ2_XXS
        ),
        (
            "not a valid Q8_0",
            Box::new(|_, t| t[0].ty = TensorType::Q8_0.id()),
        ),
        ("at most 63", Box::new(|_, t| t[0].name = "n".repeat(64))),
        ("1 to 4 dims", Box::new(|_, t| t[0].ne = vec![])),
        ("1 to 4 dims", Box::new(|_, t| t[0].ne = vec![1; 5])),
        (
            "not a valid F32",
            Box::new(|_, t| t[0].ne = vec![1 << 32, 1 << 32]),
        ),
        (
            "key 'u8' appears twice",
            Box::new(|kv, _| kv.push(("u8".into(), GgufValue::U8(1)))),
        ),
        (
            "an array of U8 holds a I8",
            Box::new(|kv, _| {
                kv.push((
                    "mixed".into(),
                    GgufValue::Array(MetaType::U8, vec![GgufValue::U8(1), GgufValue::I8(1)]),
                ))
            }),
        ),
        (
            "nested more than 8",
            Box::new(move |kv, _| kv.push(("deep".into(), nested(MAX_NESTING)))),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    let produce = |_: usize, _: &mut dyn Write| -> crate::ir::error::Result<()> {
        panic!("a payload was asked for")
    };
    for (expected, change) in cases {
        let (mut kv, mut specs) = (every_value(), tensors());
        change(&mut kv, &mut specs);
        match write(&path, &kv, &specs, &produce, &Silent) {
            Err(e @ Error::Input(_)) => assert!(e.to_string().contains(expected), "{e}"),
            other => panic!("{expected}: {other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
    // The deepest nesting allowed (MAX_NESTING arrays) writes and reads back.
    let mut kv = every_value();
    kv.push(("deep".into(), nested(MAX_NESTING - 1)));
    write_file(dir.path(), &kv);
    assert_eq!(read(&dir.path().join("m.gguf")).unwrap().kv, kv);
}
