use std::io::Write;
use std::path::Path;

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use super::*;

fn parse(bytes: &[u8]) -> Result<Tensor> {
    parse_npy(Path::new("a.npy"), bytes)
}

/// A `.npy` file of the given version with a raw header text.
fn raw_npy(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn error_offset(result: Result<Tensor>) -> u64 {
    match result {
        Err(Error::Parse { offset, .. }) => offset,
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn error_text(result: Result<Tensor>) -> String {
    result.expect_err("expected an error").to_string()
}

fn f32_tensor(shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::F32(
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f32 - 2.5).collect()).unwrap(),
    )
}

fn every_dtype() -> Vec<(&'static str, Tensor)> {
    let shape = IxDyn(&[2, 3]);
    let ints: Vec<i64> = vec![-3, -1, 0, 1, 2, 100];
    let int = |dtype| {
        Tensor::from_i64(&[2, 3], ints.clone())
            .unwrap()
            .cast(dtype)
            .unwrap()
    };
    vec![
        (
            "bool",
            Tensor::Bool(
                ArrayD::from_shape_vec(shape.clone(), vec![true, false, true, true, false, false])
                    .unwrap(),
            ),
        ),
        ("u8", int(DType::U8)),
        ("i8", int(DType::I8)),
        ("u16", int(DType::U16)),
        ("i16", int(DType::I16)),
        ("u32", int(DType::U32)),
        ("i32", int(DType::I32)),
        ("u64", int(DType::U64)),
        ("i64", int(DType::I64)),
        (
            "f16",
            Tensor::F16(
                ArrayD::from_shape_vec(
                    shape.clone(),
                    [0.5, -1.0, 2.0, 65504.0, 0.0, -0.25]
                        .map(f16::from_f32)
                        .to_vec(),
                )
                .unwrap(),
            ),
        ),
        ("f32", f32_tensor(&[2, 3])),
        (
            "f64",
            Tensor::F64(
                ArrayD::from_shape_vec(shape, vec![1e-300, -2.0, 3.5, 0.0, 1e300, -0.0]).unwrap(),
            ),
        ),
    ]
}

#[test]
fn every_dtype_round_trips() {
    for (name, tensor) in every_dtype() {
        let bytes = encode_npy(&tensor).unwrap();
        assert_eq!(parse(&bytes).unwrap(), tensor, "{name}");
    }
}

#[test]
fn shapes_of_every_rank_round_trip() {
    for shape in [&[][..], &[5], &[0, 3], &[1, 2, 3, 1]] {
        let tensor = f32_tensor(shape);
        assert_eq!(
            parse(&encode_npy(&tensor).unwrap()).unwrap(),
            tensor,
            "{shape:?}"
        );
    }
}

#[test]
fn encoding_matches_numpy_save() {
    let bytes = encode_npy(&f32_tensor(&[2, 3])).unwrap();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(&bytes[10..10 + header.len()], header.as_bytes());
    assert_eq!(bytes[10 + header_len - 1], b'\n');
    assert_eq!(bytes.len(), 10 + header_len + 24);
}

#[test]
fn versions_two_and_three_and_old_spellings_parse() {
    let data: Vec<u8> = [1i16, -2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let expected = Tensor::from_i64(&[3], vec![1, -2, 3])
        .unwrap()
        .cast(DType::I16)
        .unwrap();
    for (major, header) in [
        (
            2,
            "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }\n",
        ),
        (
            3,
            "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<i2\"}   \n",
        ),
        (1, "{'descr':'<i2','fortran_order':False,'shape':(3,)}"),
    ] {
        assert_eq!(
            parse(&raw_npy(major, header, &data)).unwrap(),
            expected,
            "{header}"
        );
    }
    let one_byte = raw_npy(
        1,
        "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }",
        &[7, 8],
    );
    assert_eq!(parse(&one_byte).unwrap().to_f64_vec(), [7.0, 8.0]);
}

#[test]
fn every_truncation_is_a_located_error() {
    let bytes = encode_npy(&f32_tensor(&[2, 3])).unwrap();
    for cut in 0..bytes.len() {
        let offset = error_offset(parse(&bytes[..cut]));
        assert!(offset <= cut as u64, "cut {cut}: offset {offset}");
    }
}

#[test]
fn unsupported_layouts_are_clear_errors() {
    let header = |descr: &str, fortran: &str, shape: &str| {
        format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}")
    };
    let cases = [
        (header("'>f4'", "False", "(1,)"), "big-endian dtype '>f4'"),
        (header("'<f4'", "True", "(1,)"), "Fortran-order"),
        (
            header("'<c8'", "False", "(1,)"),
            "dtype '<c8' is not supported",
        ),
        (header("'=f4'", "False", "(1,)"), "no explicit byte order"),
        (header("'<U4'", "False", "(1,)"), "not supported"),
        (
            header("[('a', '<f4')]", "False", "(1,)"),
            "structured dtypes",
        ),
        (
            header("'<f4'", "False", "(4294967296, 4294967296, 4294967296)"),
            "overflows",
        ),
        (
            header("'<f4'", "False", "(99999999999999999999999,)"),
            "dim too large",
        ),
        (header("'<f4'", "False", "(-1,)"), "expected a dim"),
        (header("'<f4'", "false", "(1,)"), "expected True or False"),
        (
            header("'<f4'", "False", "(2,)"),
            "4 data bytes for f32 of shape [2], expected 8",
        ),
        (
            "{'descr': '<f4', 'shape': (1,)}".into(),
            "no 'fortran_order'",
        ),
        (
            format!("{}x", header("'<f4'", "False", "(1,)")),
            "after the header",
        ),
        ("{'descr': '<f4', 'descr': '<f4'}".into(), "given twice"),
        (
            "{'descr': '<f4', 'extra': 1}".into(),
            "unexpected header key 'extra'",
        ),
        ("{'descr: '<f4'}".into(), "expected ':'"),
        ("{'descr': '<f4}".into(), "unterminated string"),
        (
            header("'<f4'", "False", &format!("({})", ["1"; 65].join(","))),
            "more than 64 dims",
        ),
    ];
    for (header, expected) in cases {
        let text = error_text(parse(&raw_npy(1, &header, &[0; 4])));
        assert!(text.contains(expected), "{header}: {text}");
    }
    let trailing = raw_npy(1, &header("'<f4'", "False", "(1,)"), &[0; 5]);
    assert_eq!(
        error_offset(parse(&trailing)),
        10 + header("'<f4'", "False", "(1,)").len() as u64
    );
}

#[test]
fn hostile_prefixes_are_rejected() {
    assert!(error_text(parse(b"PK\x03\x04")).contains("missing the"));
    assert!(error_text(parse(&raw_npy(4, "{}", &[]))).contains("version 4.0"));
    let mut huge = MAGIC.to_vec();
    huge.extend_from_slice(&[2, 0]);
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(error_text(parse(&huge)).contains("exceeds"));
    let mut past_end = MAGIC.to_vec();
    past_end.extend_from_slice(&[1, 0, 100, 0, b'{']);
    assert!(error_text(parse(&past_end)).contains("past the end"));
    let mut bytes = raw_npy(3, "{'descr': 'x'}", &[]);
    bytes[12 + 2] = 0xff;
    assert!(error_text(parse(&bytes)).contains("not valid text"));
}

#[test]
fn corrupted_files_never_panic() {
    let valid = encode_npy(&f32_tensor(&[3, 4])).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = valid.clone();
        let at = (state % 128) as usize;
        bytes[at] = (state >> 40) as u8;
        let _ = parse(&bytes);
    }
}

#[test]
fn npz_round_trips_in_order_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let arrays = every_dtype();
    let mut named: Vec<(String, Tensor)> = arrays
        .into_iter()
        .map(|(n, t)| (format!("/out/{n}:0"), t))
        .collect();
    named.reverse();
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let first = dir.path().join("a.npz");
    let second = dir.path().join("b.npz");
    write_npz(&first, &refs).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_npz(&second, &refs).unwrap();
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    assert_eq!(read_npz(&first).unwrap(), named);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "no partial files left behind");
}

#[test]
fn npz_writing_refuses_duplicates_and_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npz");
    let t = f32_tensor(&[1]);
    let text = write_npz(&path, &[("a", &t), ("a", &t)])
        .unwrap_err()
        .to_string();
    assert!(text.contains("'a' given twice"), "{text}");
    let half = Tensor::BF16(ArrayD::from_elem(IxDyn(&[1]), bf16::ONE));
    let text = write_npz(&path, &[("h", &half)]).unwrap_err().to_string();
    assert!(text.contains("bf16 has no NumPy dtype"), "{text}");
    assert!(!path.exists());
}

/// Writes a zip with the given members, deflated or stored.
fn zip_file(path: &Path, members: &[(&str, &[u8])], method: CompressionMethod) {
    let mut zip = ZipWriter::new(File::create(path).unwrap());
    for (name, bytes) in members {
        zip.start_file(
            *name,
            SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn deflated_npz_members_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.npz");
    let t = f32_tensor(&[4, 4]);
    zip_file(
        &path,
        &[("x.npy", &encode_npy(&t).unwrap())],
        CompressionMethod::Deflated,
    );
    assert_eq!(read_npz(&path).unwrap(), vec![("x".to_string(), t)]);
}

#[test]
fn bad_npz_archives_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = encode_npy(&f32_tensor(&[2])).unwrap();

    let not_npy = dir.path().join("n.npz");
    zip_file(
        &not_npy,
        &[("x.npy", &good), ("notes.txt", b"hi")],
        CompressionMethod::Stored,
    );
    let text = read_npz(&not_npy).unwrap_err().to_string();
    assert!(
        text.contains("member 'notes.txt': not a .npy array"),
        "{text}"
    );

    let broken_member = dir.path().join("b.npz");
    zip_file(
        &broken_member,
        &[("x.npy", &good[..good.len() - 1])],
        CompressionMethod::Deflated,
    );
    let err = read_npz(&broken_member).unwrap_err();
    let Error::Parse { path, .. } = &err else {
        panic!("expected a parse error, got {err:?}");
    };
    assert!(path.ends_with("b.npz/x.npy"), "{}", path.display());

    let valid = dir.path().join("v.npz");
    write_npz(&valid, &[("x", &f32_tensor(&[8]))]).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    let cut = dir.path().join("cut.npz");
    for len in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = read_npz(&cut).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::BAD_INPUT, "{len}: {err}");
    }
    let mut flipped = bytes.clone();
    let data_byte = bytes.len() / 2;
    flipped[data_byte] ^= 0xff;
    std::fs::write(&cut, &flipped).unwrap();
    assert!(read_npz(&cut).is_err(), "CRC mismatch is detected");
}

/// When the probe venv with NumPy exists, NumPy must read our archive as we
/// wrote it, and we must read what NumPy writes (compressed). The Rust-only
/// round trip above is the primary check; this one pins compatibility.
#[test]
fn numpy_agrees_when_available() {
    let python = Path::new("/tmp/probevenv/bin/python");
    if !python.exists() {
        eprintln!("skipping: {} not found", python.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.npz");
    let arrays = every_dtype();
    let refs: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (*n, t)).collect();
    write_npz(&ours, &refs).unwrap();
    let theirs = dir.path().join("theirs.npz");
    let script = r#"
import sys, json, numpy as np
z = np.load(sys.argv[1])
out = {k: [z[k].dtype.str, list(z[k].shape), z[k].astype('f8').ravel().tolist()] for k in z.files}
out["_order"] = list(z.files)
np.savez_compressed(sys.argv[2], **{k: z[k] for k in z.files})
print(json.dumps(out))
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&ours)
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let order: Vec<&str> = arrays.iter().map(|(n, _)| *n).collect();
    assert_eq!(seen["_order"], serde_json::json!(order));
    for (name, tensor) in &arrays {
        let [descr, shape, values] = seen[*name].as_array().unwrap().as_slice() else {
            panic!("{name}: unexpected numpy summary");
        };
        assert_eq!(
            descr.as_str(),
            Some(descr_of(tensor.dtype()).unwrap()),
            "{name}"
        );
        assert_eq!(shape, &serde_json::json!(tensor.shape()), "{name}");
        assert_eq!(values, &serde_json::json!(tensor.to_f64_vec()), "{name}");
    }
    let read_back = read_npz(&theirs).unwrap();
    let expected: Vec<(String, Tensor)> = arrays
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    assert_eq!(read_back, expected);
}

#[test]
fn npy_file_decodes_rows_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let t = f32_tensor(&[4, 2, 3]);
    std::fs::write(&path, encode_npy(&t).unwrap()).unwrap();
    let file = NpyFile::open(&path).unwrap();
    assert_eq!((file.dtype(), file.shape()), (DType::F32, &[4, 2, 3][..]));
    assert_eq!(file.tensor().unwrap(), t);
    let Tensor::F32(a) = &t else { unreachable!() };
    let row = |i: usize| Tensor::F32(a.index_axis(ndarray::Axis(0), i).to_owned());
    assert_eq!(file.row(2).unwrap(), row(2));
    let two = file.rows(1, 2).unwrap();
    assert_eq!(two.shape(), &[2, 2, 3]);
    assert_eq!(
        two,
        Tensor::F32(
            a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(1..3))
                .to_owned()
        )
    );
    for (start, count) in [(4, 1), (3, 2), (usize::MAX, 2)] {
        let text = file.rows(start, count).unwrap_err().to_string();
        assert!(text.contains("x.npy: rows"), "{text}");
    }
    let scalar = dir.path().join("s.npy");
    std::fs::write(&scalar, encode_npy(&Tensor::scalar_f32(1.0)).unwrap()).unwrap();
    assert!(NpyFile::open(&scalar).unwrap().row(0).is_err());
    // A header that promises more data than the file has is refused on open.
    let mut short = encode_npy(&t).unwrap();
    short.truncate(short.len() - 4);
    std::fs::write(&path, short).unwrap();
    assert_eq!(
        NpyFile::open(&path).err().map(|e| e.exit_code()),
        Some(crate::ir::error::exit::BAD_INPUT)
    );
}
