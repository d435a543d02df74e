//! edgeconv's GGML block codecs against ggml's own quantizer
//! (`ggml_quantize_chunk` in llama.cpp's libggml-base, what llama-quantize
//! runs): byte for byte on 10.5M weights per type from realistic
//! distributions, with and without an importance matrix; and the
//! dequantizers against gguf-py's.

mod common;

use std::path::Path;

use edgeconv::calibration::npy::encode_npy;
use edgeconv::ir::quant::{Codec, dequantize_rows, quantize_rows};
use edgeconv::ir::{GgmlType, Tensor};
use ndarray::{ArrayD, IxDyn};

/// A small deterministic generator (no dependency): xorshift64* and Box-Muller.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Rows as trained weights look: Gaussian of varied spread, heavy-tailed
/// (Laplace), a few huge outliers per row, half zeros, tiny magnitudes, constants.
fn realistic_rows(rows: usize, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        let std = 0.001 + 2.0 * rng.next();
        let constant = rng.normal();
        for _ in 0..n {
            let v = match r % 6 {
                0 => rng.normal() * std,
                1 => {
                    let u = rng.next() - 0.5;
                    -0.05 * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
                }
                2 => {
                    let base = rng.normal() * 0.02;
                    if rng.next() < 0.002 {
                        base * 300.0
                    } else {
                        base
                    }
                }
                3 => {
                    if rng.next() < 0.5 {
                        0.0
                    } else {
                        rng.normal() * 0.1
                    }
                }
                4 => rng.normal() * 1e-6,
                _ => constant,
            };
            out.push(v as f32);
        }
    }
    out
}

fn save(path: &Path, data: Vec<f32>, shape: &[usize]) {
    let t = Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap());
    std::fs::write(path, encode_npy(&t).unwrap()).unwrap();
}

const ROWS: usize = 2560;
const N: usize = 4096;

fn compare(name: &str, codec: Codec, with_imatrix: bool, dir: &Path) {
    compare_shape(name, codec, with_imatrix, dir, ROWS, N);
}

fn compare_shape(name: &str, codec: Codec, with_imatrix: bool, dir: &Path, rows: usize, n: usize) {
    let x = realistic_rows(rows, n, 0x5eed + name.len() as u64);
    let rows_path = dir.join(format!("{name}.npy"));
    save(&rows_path, x.clone(), &[rows, n]);
    let imatrix: Vec<f32> = {
        let mut rng = Rng(77);
        (0..n)
            .map(|_| (rng.normal().powi(2) + 0.01) as f32)
            .collect()
    };
    let mut args = vec![
        name.to_string(),
        rows_path.display().to_string(),
        dir.join(format!("{name}.bin")).display().to_string(),
    ];
    if with_imatrix {
        let path = dir.join("imatrix.npy");
        save(&path, imatrix.clone(), &[n]);
        args.push("--imatrix".into());
        args.push(path.display().to_string());
    }
    common::run_llama_python("ggml_quantize.py", &args);
    let theirs = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
    let mut ours = vec![0u8; codec.row_bytes(n).unwrap() * rows];
    quantize_rows(
        codec,
        &x,
        n,
        with_imatrix.then_some(imatrix.as_slice()),
        &mut ours,
    )
    .unwrap();
    assert_eq!(ours.len(), theirs.len(), "{name}");
    let block = match codec {
        Codec::Block(t) => t.layout().bytes,
        _ => 2,
    };
    let differing = ours
        .chunks(block)
        .zip(theirs.chunks(block))
        .filter(|(a, b)| a != b)
        .count();
    eprintln!(
        "{name} (imatrix {with_imatrix}): {} weights, {} blocks, {differing} differ",
        x.len(),
        ours.len() / block
    );
    assert_eq!(
        differing, 0,
        "{name}: {differing} blocks differ from ggml's"
    );
}

const BLOCK_TYPES: [(&str, GgmlType); 10] = [
    ("Q8_0", GgmlType::Q8_0),
    ("Q4_0", GgmlType::Q4_0),
    ("Q4_1", GgmlType::Q4_1),
    ("Q5_0", GgmlType::Q5_0),
    ("Q5_1", GgmlType::Q5_1),
    ("Q2_K", GgmlType::Q2K),
    ("Q3_K", GgmlType::Q3K),
    ("Q4_K", GgmlType::Q4K),
    ("Q5_K", GgmlType::Q5K),
    ("Q6_K", GgmlType::Q6K),
];

#[test]
fn block_quantizers_match_ggml_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in BLOCK_TYPES {
        compare(name, Codec::Block(t), false, dir.path());
    }
}

#[test]
fn importance_matrix_quantizers_match_ggml_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in BLOCK_TYPES {
        if Codec::Block(t).uses_importance() {
            compare(name, Codec::Block(t), true, dir.path());
        }
    }
}

/// The K-quant searches run two super-blocks side by side; a row with an
/// odd count (1 or 3) pairs the last one with a copy of itself. The 32-element
/// types get a row that is not a multiple of 256.
#[test]
fn short_and_odd_rows_match_ggml_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in BLOCK_TYPES {
        let n_values: &[usize] = if t.layout().elems == 256 {
            &[256, 768]
        } else {
            &[96]
        };
        for &n in n_values {
            for with_imatrix in [false, true] {
                if with_imatrix && !Codec::Block(t).uses_importance() {
                    continue;
                }
                compare_shape(name, Codec::Block(t), with_imatrix, dir.path(), 96, n);
            }
        }
    }
}

#[test]
fn float_conversions_match_ggml() {
    let dir = tempfile::tempdir().unwrap();
    compare("F16", Codec::F16, false, dir.path());
    compare("BF16", Codec::BF16, false, dir.path());
}

#[test]
fn dequantizers_match_gguf_py() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, n) = (64, 512);
    let x = realistic_rows(rows, n, 99);
    for (name, t) in BLOCK_TYPES {
        let codec = Codec::Block(t);
        let mut bytes = vec![0u8; codec.row_bytes(n).unwrap() * rows];
        quantize_rows(codec, &x, n, None, &mut bytes).unwrap();
        let mut ours = vec![0f32; rows * n];
        dequantize_rows(codec, &bytes, &mut ours).unwrap();
        let bin = dir.path().join(format!("{name}.bin"));
        std::fs::write(&bin, &bytes).unwrap();
        let out = dir.path().join(format!("{name}.npy"));
        let script = format!(
            "import gguf, numpy as np, sys\n\
             raw = np.fromfile(sys.argv[1], dtype=np.uint8).reshape({rows}, -1)\n\
             np.save(sys.argv[2], gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.{name}).astype(np.float32))\n"
        );
        let status = std::process::Command::new(common::llama_python())
            .args(["-c", &script])
            .arg(&bin)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success(), "gguf-py dequantize {name}");
        let theirs = common::quant::floats(&edgeconv::calibration::npy::read_npy(&out).unwrap());
        let worst = ours
            .iter()
            .zip(theirs.iter())
            .map(|(a, b)| (a - b).abs() / (1e-6 + b.abs()))
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-5,
            "{name}: dequantized values differ from gguf-py by {worst}"
        );
    }
}
