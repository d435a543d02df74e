use super::*;

fn sample(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

const ALL: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

fn round_trip(codec: Codec, x: &[f32], n: usize, imatrix: Option<&[f32]>) -> Vec<f32> {
    let mut bytes = vec![0u8; codec.row_bytes(n).unwrap() * (x.len() / n)];
    quantize_rows(codec, x, n, imatrix, &mut bytes).unwrap();
    let mut back = vec![0f32; x.len()];
    dequantize_rows(codec, &bytes, &mut back).unwrap();
    back
}

fn relative_rms(x: &[f32], y: &[f32]) -> f64 {
    let err: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let norm: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn every_type_reconstructs_within_its_bit_budget() {
    // Uniform data: error bounds from the level count, with margin.
    let bounds = [
        (GgmlType::Q2K, 0.30),
        (GgmlType::Q3K, 0.15),
        (GgmlType::Q4_0, 0.10),
        (GgmlType::Q4_1, 0.08),
        (GgmlType::Q4K, 0.07),
        (GgmlType::Q5_0, 0.05),
        (GgmlType::Q5_1, 0.04),
        (GgmlType::Q5K, 0.035),
        (GgmlType::Q6K, 0.02),
        (GgmlType::Q8_0, 0.006),
    ];
    let n = 512;
    let x = sample(n * 8, 7);
    let imatrix: Vec<f32> = sample(n, 9).iter().map(|v| v.abs() + 0.1).collect();
    for (t, bound) in bounds {
        for m in [None, Some(imatrix.as_slice())] {
            let back = round_trip(Codec::Block(t), &x, n, m);
            let err = relative_rms(&x, &back);
            assert!(
                err < bound,
                "{t:?} imatrix {}: relative error {err}",
                m.is_some()
            );
        }
    }
}

#[test]
fn zero_rows_stay_zero_and_floats_round_trip() {
    let n = 256;
    let zeros = vec![0f32; n * 2];
    for t in ALL {
        assert_eq!(round_trip(Codec::Block(t), &zeros, n, None), zeros, "{t:?}");
    }
    let x = sample(n, 3);
    assert_eq!(round_trip(Codec::F32, &x, n, None), x);
    let halves: Vec<f32> = x.iter().map(|&v| f16_to_f32(f32_to_f16(v))).collect();
    assert_eq!(round_trip(Codec::F16, &halves, n, None), halves);
    let brains: Vec<f32> = x.iter().map(|&v| bf16_to_f32(f32_to_bf16(v))).collect();
    assert_eq!(round_trip(Codec::BF16, &brains, n, None), brains);
}

#[test]
fn bad_lengths_and_non_finite_values_are_errors_not_panics() {
    let x = sample(512, 1);
    let mut out = vec![0u8; 1000];
    let q4k = Codec::Block(GgmlType::Q4K);
    assert!(quantize_rows(q4k, &x, 100, None, &mut out).is_err());
    assert!(quantize_rows(q4k, &x, 256, None, &mut out).is_err());
    let mut out = vec![0u8; 288];
    assert!(quantize_rows(q4k, &x, 256, Some(&[1.0; 3]), &mut out).is_err());
    let mut bad = x.clone();
    bad[300] = f32::NAN;
    let err = quantize_rows(q4k, &bad, 256, None, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 1, column 44"), "{err}");
    assert!(dequantize_rows(q4k, &out[..100], &mut [0f32; 256]).is_err());
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let n = 256;
    let x = sample(n * 300, 11);
    let codec = Codec::Block(GgmlType::Q3K);
    let mut serial = vec![0u8; codec.row_bytes(n).unwrap() * 300];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| quantize_rows(codec, &x, n, None, &mut serial))
        .unwrap();
    let mut parallel = vec![0u8; serial.len()];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    pool.install(|| quantize_rows(codec, &x, n, None, &mut parallel))
        .unwrap();
    assert_eq!(serial, parallel);
}

#[test]
fn the_avx2_build_writes_the_bytes_of_the_portable_build() {
    // On a CPU without AVX2 both calls run the portable code and agree trivially;
    // on one with AVX2 (where tests/gguf_codecs.rs compares with ggml) this is
    // what keeps a machine without it byte-identical too.
    let n = 768;
    let mut x = sample(n * 4, 21);
    x[5] *= 400.0;
    x[n..n + 300].fill(0.0);
    let imatrix: Vec<f32> = sample(n, 23).iter().map(|v| v.abs() + 0.05).collect();
    for t in ALL {
        let codec = Codec::Block(t);
        for m in [None, Some(imatrix.as_slice())] {
            let bytes = codec.row_bytes(n).unwrap();
            for row in x.chunks_exact(n) {
                let (mut dispatched, mut portable) = (vec![0u8; bytes], vec![0u8; bytes]);
                encode_row(codec, row, &mut dispatched, m);
                encode_row_portable(codec, row, &mut portable, m);
                assert_eq!(dispatched, portable, "{t:?} imatrix {}", m.is_some());
            }
        }
    }
}
