use super::histogram::Bins;
use super::search::{affine_error, kl_for_threshold, symmetric_error};
use super::*;

fn observe(method: Method, bins: usize, samples: &[&[f32]]) -> Observer {
    let mut o = Observer::new(method, bins);
    for s in samples {
        o.observe(s);
    }
    o
}

fn range(method: Method, bins: usize, samples: &[&[f32]]) -> (f32, f32) {
    let r = observe(method, bins, samples).range().unwrap();
    (r.min, r.max)
}

/// Deterministic N(0, 1) samples (Box-Muller on a fixed LCG).
fn gaussian(n: usize) -> Vec<f32> {
    let mut state = 12345u64;
    let mut unit = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (unit(), unit());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

#[test]
fn min_max_skips_and_counts_non_finite_values() {
    let o = observe(
        Method::MinMax,
        16,
        &[&[1.0, -2.0, f32::NAN], &[3.0, f32::INFINITY], &[0.5]],
    );
    assert_eq!(
        o.range(),
        Some(Range {
            min: -2.0,
            max: 3.0
        })
    );
    let s = o.stats();
    assert_eq!((s.count, s.non_finite, s.samples), (4, 2, 3));
    assert_eq!(observe(Method::MinMax, 16, &[&[f32::NAN]]).range(), None);
}

#[test]
fn moving_average_follows_samples_in_order() {
    let m = Method::MovingAverage { momentum: 0.5 };
    // (0, 10), then halfway to (-2, 6): (-1, 8), then halfway to (4, 4): (1.5, 6).
    assert_eq!(
        range(m, 16, &[&[0.0, 10.0], &[-2.0, 6.0], &[4.0]]),
        (1.5, 6.0)
    );
    // Another order, another average: the merge order is part of the result.
    assert_eq!(
        range(m, 16, &[&[4.0], &[-2.0, 6.0], &[0.0, 10.0]]),
        (0.5, 7.5)
    );
}

#[test]
fn percentile_on_a_known_histogram() {
    // 0, 1, ..., 99 in 128 bins: the bins have width 1, one value each.
    let values: Vec<f32> = (0..100).map(|v| v as f32).collect();
    let sym = Method::Percentile {
        percentile: 90.0,
        symmetric: true,
    };
    // 90 values are reached in |x| bin 89, whose upper edge is 90; -90 clips to min 0.
    assert_eq!(range(sym, 128, &[&values]), (0.0, 90.0));
    let asym = Method::Percentile {
        percentile: 90.0,
        symmetric: false,
    };
    // 5 % cut from each end: bin 4 (cumulative 5) and bin 94 (cumulative 95).
    assert_eq!(range(asym, 128, &[&values]), (4.0, 95.0));
    // Symmetric data: the |x| histogram folds both signs.
    let both: Vec<f32> = (0..100).map(|v| v as f32 - 50.0).collect();
    assert_eq!(range(sym, 128, &[&both]), (-45.0, 45.0));
}

#[test]
fn kl_divergence_by_hand() {
    // 128 bins of one count each: P == Q, so KL is 0.
    let ones = vec![1.0; 128];
    assert_eq!(kl_for_threshold(&ones, 0.0), 0.0);
    // One outlier lands in the last bin of P only: P = (1, ..., 1, 2) / 129,
    // Q = 1/128 everywhere (no empty bins, so no smoothing).
    let kl = kl_for_threshold(&ones, 1.0);
    let expected =
        127.0 / 129.0 * (128.0f64 / 129.0).ln() + 2.0 / 129.0 * (2.0 * 128.0f64 / 129.0).ln();
    assert!((kl - expected).abs() < 1e-12, "{kl} vs {expected}");
    // 256 bins alternating 2, 0 merge in pairs into 128 levels of 2, spread
    // back onto the non-empty bin of each pair: Q == P again.
    let alternating: Vec<f64> = (0..256)
        .map(|i| if i % 2 == 0 { 2.0 } else { 0.0 })
        .collect();
    assert!(kl_for_threshold(&alternating, 0.0).abs() < 1e-12);
    // Spread over both bins of a pair where both are non-empty: P = (3, 1),
    // Q = (2, 2) in every pair; smoothing does not apply (no zeros).
    let pairs: Vec<f64> = (0..256)
        .map(|i| if i % 2 == 0 { 3.0 } else { 1.0 })
        .collect();
    let expected = 0.75 * (0.75f64 / 0.5).ln() + 0.25 * (0.25f64 / 0.5).ln();
    assert!((kl_for_threshold(&pairs, 0.0) - expected).abs() < 1e-12);
    // Only outliers: Q is empty everywhere, so no KL is defined.
    assert_eq!(kl_for_threshold(&[0.0; 128], 5.0), f64::INFINITY);
}

#[test]
fn quantization_errors_by_hand() {
    // Three values at 2.5 (the centre of |x| bin 2 of width 1).
    let abs = Bins {
        start: 0.0,
        width: 1.0,
        counts: vec![0, 0, 3],
    };
    // Step 2.54 / 127 = 0.02 puts a level exactly on 2.5.
    assert!(symmetric_error(&abs, 2.54) < 1e-20);
    // Step 0.01: 2.5 clips to 1.27.
    assert!((symmetric_error(&abs, 1.27) - 3.0 * 1.23f64.powi(2)).abs() < 1e-9);

    // -0.5 and 0.5 over [-1, 1]: step 2/255, zero point round(127.5) = 128,
    // so each lands on +-64 steps = +-128/255.
    let signed = Bins {
        start: -1.0,
        width: 1.0,
        counts: vec![1, 1],
    };
    let expected = 2.0 * (0.5f64 - 128.0 / 255.0).powi(2);
    assert!((affine_error(&signed, -1.0, 1.0) - expected).abs() < 1e-15);
    // A range that leaves out 0 is widened to hold it.
    assert_eq!(
        affine_error(&signed, 0.5, 1.0),
        affine_error(&signed, 0.0, 1.0)
    );
}

/// Squared error of symmetric int8 quantization at threshold `t`, on raw values.
fn raw_symmetric_error(values: &[f32], t: f64) -> f64 {
    let step = t / 127.0;
    values
        .iter()
        .map(|&v| {
            let x = f64::from(v);
            let q = (x / step).round().clamp(-127.0, 127.0) * step;
            (x - q).powi(2)
        })
        .sum()
}

#[test]
fn mse_finds_the_best_threshold_of_a_gaussian() {
    let values = gaussian(200_000);
    let (lo, hi) = range(Method::Mse { symmetric: true }, 4096, &[&values]);
    assert_eq!(lo, -hi);
    // Brute force on the raw values over a fine grid of thresholds.
    let best = (1..=600)
        .map(|k| k as f64 * 0.01)
        .map(|t| (raw_symmetric_error(&values, t), t))
        .fold((f64::INFINITY, 0.0), |a, b| if b.0 < a.0 { b } else { a });
    let found = raw_symmetric_error(&values, f64::from(hi));
    assert!(
        found <= best.0 * 1.01,
        "threshold {hi} costs {found}, the best ({}) {}",
        best.1,
        best.0
    );
    // Clipping pays off for a Gaussian: well inside the largest |x| (~4.7).
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(f64::from(hi) < f64::from(max) * 0.95, "{hi} vs max {max}");

    // The asymmetric walk keeps the whole range of uniform data.
    let uniform: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
    let (lo, hi) = range(Method::Mse { symmetric: false }, 4096, &[&uniform]);
    assert!(lo <= 0.001 && hi >= 0.99, "{lo}..{hi}");
}

#[test]
fn entropy_clips_long_tails_and_keeps_flat_data() {
    // Uniform data: nothing to gain by clipping.
    let uniform: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
    let (lo, hi) = range(Method::Entropy, 4096, &[&uniform]);
    assert_eq!(lo, 0.0);
    assert!(hi > 0.95, "{hi}");
    // A Gaussian with a few far outliers: the threshold stays near the bulk.
    let mut values = gaussian(100_000);
    values.extend([40.0, -45.0, 50.0]);
    let (lo, hi) = range(Method::Entropy, 4096, &[&values]);
    assert_eq!(lo, -hi);
    assert!((2.0..12.0).contains(&hi), "{hi}");
}

#[test]
fn histogram_ranges_do_not_depend_on_how_samples_were_cut() {
    let values = gaussian(30_000);
    for method in [
        Method::Entropy,
        Method::Mse { symmetric: false },
        Method::Mse { symmetric: true },
        Method::Percentile {
            percentile: 99.9,
            symmetric: false,
        },
    ] {
        let whole = range(method, 1024, &[&values]);
        let pieces: Vec<&[f32]> = values.chunks(777).collect();
        let mut reversed = pieces.clone();
        reversed.reverse();
        assert_eq!(range(method, 1024, &pieces), whole, "{method}");
        assert_eq!(range(method, 1024, &reversed), whole, "{method}");
    }
}

#[test]
fn methods_parse_and_print() {
    for text in [
        "minmax",
        "moving-average:0.01",
        "percentile:99.99",
        "percentile-symmetric:99.9",
        "mse",
        "mse-symmetric",
        "entropy",
    ] {
        let m: Method = text.parse().unwrap();
        assert_eq!(m.to_string(), text);
    }
    assert_eq!(
        "percentile".parse::<Method>().unwrap(),
        Method::Percentile {
            percentile: 99.99,
            symmetric: false
        }
    );
    for bad in ["kl", "percentile:101", "moving-average:0", "mse:3"] {
        let e = bad.parse::<Method>().unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}

#[test]
fn per_channel_ranges_of_a_weight() {
    let w = Tensor::F32(
        ndarray::ArrayD::from_shape_vec(vec![2, 3], vec![1.0, -2.0, 3.0, 0.5, 0.25, f32::NAN])
            .unwrap(),
    );
    let r = per_channel_min_max(&w, 0).unwrap();
    assert_eq!(
        r,
        vec![
            Range {
                min: -2.0,
                max: 3.0
            },
            Range {
                min: 0.25,
                max: 0.5
            }
        ]
    );
    assert_eq!(per_channel_min_max(&w, 1).unwrap().len(), 3);
    assert!(per_channel_min_max(&w, 2).is_err());
}

#[test]
fn channel_means_of_tensors_in_any_memory_layout() {
    // [1, 2, 3] as a permuted (non-standard) view, in f32 and f64: the
    // means of axis 1 are those of the standard-layout copy.
    let base = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&[1, 3, 2]),
        vec![1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0],
    )
    .unwrap();
    let permuted = base.clone().permuted_axes(ndarray::IxDyn(&[0, 2, 1]));
    assert!(!permuted.is_standard_layout());
    let wide = permuted.mapv(f64::from);
    for t in [Tensor::F32(permuted), Tensor::F64(wide)] {
        let mut o = Observer::new(Method::MinMax, 16);
        o.merge(Partial::of_tensor(Method::MinMax, 16, &t).unwrap());
        assert_eq!(o.channel_means(), vec![2.0, 20.0]);
    }
}
