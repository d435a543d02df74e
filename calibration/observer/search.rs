//! Ranges chosen from a histogram: percentile, entropy (KL divergence) and
//! MSE-optimal. Each returns `(low, high)` inside the observed `[min, max]`.

use super::histogram::{Bins, Histogram};

/// Bins the entropy search works on (TensorRT's 2048).
const ENTROPY_BINS: usize = 2048;
/// Levels of one sign of int8 (TensorRT's 128).
const ENTROPY_LEVELS: usize = 128;
/// Bins the symmetric MSE search scans.
const MSE_SYMMETRIC_BINS: usize = 2048;
/// Bins the asymmetric MSE search walks (it evaluates O(bins²) errors).
const MSE_ASYMMETRIC_BINS: usize = 1024;

fn clip(h: &Histogram, low: f64, high: f64) -> (f64, f64) {
    (low.max(h.min()), high.min(h.max()))
}

/// Index of the first bin where the cumulative count reaches `fraction` of
/// `total` (a relative 1e-12 short counts as reached, so that 0.95 of 100
/// is 95 despite rounding).
fn quantile_bin(counts: &[u64], total: u64, fraction: f64) -> usize {
    let target = fraction * total as f64 * (1.0 - 1e-12);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen as f64 >= target {
            return i;
        }
    }
    counts.len().saturating_sub(1)
}

/// Symmetric: `±t` where `t` is the upper edge of the `|x|` bin in which
/// `percentile`% of the values are reached. Asymmetric: `(100 -
/// percentile) / 2`% cut from each end, at the outer edges of the bins where
/// the cuts fall. Onnxruntime's Percentile does the same with 2048 bins
/// (taking the lower edge of the bin); here the bins are the histogram's own.
pub fn percentile(h: &Histogram, percentile: f64, symmetric: bool) -> (f64, f64) {
    let p = (percentile / 100.0).clamp(0.0, 1.0);
    if symmetric {
        let abs = h.abs_view();
        let t = abs.edge(quantile_bin(&abs.counts, h.total(), p) + 1);
        clip(h, -t, t)
    } else {
        let bins = h.view();
        let cut = (1.0 - p) / 2.0;
        let low = quantile_bin(&bins.counts, h.total(), cut);
        let high = quantile_bin(&bins.counts, h.total(), 1.0 - cut);
        clip(h, bins.edge(low), bins.edge(high + 1))
    }
}

/// The KL-divergence threshold of TensorRT's calibrator (Migacz, "8-bit
/// inference with TensorRT", GTC 2017), as MXNet implements it, on the
/// `|x|` histogram in at most 2048 bins: for every candidate `i` from 128
/// bins up, `P` is the first `i` bins with the rest added to the last, `Q`
/// the same bins merged into 128 levels and spread back over the non-empty
/// bins; both are smoothed and the `i` with the least KL(P‖Q) wins. The range
/// is `±threshold` clipped to `[min, max]` (as onnxruntime clips it).
/// Onnxruntime's Entropy differs in details: a signed histogram of 128 bins
/// by default, integer `Q`, and `Q` not zeroed where `P` is empty.
pub fn entropy(h: &Histogram) -> (f64, f64) {
    let abs = h.abs_view().coarsen(ENTROPY_BINS);
    let n = abs.counts.len();
    if n <= ENTROPY_LEVELS {
        return (h.min(), h.max());
    }
    let counts: Vec<f64> = abs.counts.iter().map(|&c| c as f64).collect();
    let mut suffix = vec![0.0; n + 1];
    for i in (0..n).rev() {
        suffix[i] = suffix[i + 1] + counts[i];
    }
    let mut best = (f64::INFINITY, n);
    for i in ENTROPY_LEVELS..=n {
        let kl = kl_for_threshold(&counts[..i], suffix[i]);
        if kl < best.0 {
            best = (kl, i);
        }
    }
    let t = abs.edge(best.1);
    clip(h, -t, t)
}

/// KL(P‖Q) for the first `sliced.len()` bins, `outliers` being the count
/// beyond them, with MXNet's smoothing (`_smooth_distribution`, eps 1e-4 of
/// a count). Computed in two passes without building P and Q: the
/// smoothing moves `EPS` onto each empty bin and takes it evenly from the
/// others, so it leaves each distribution's total unchanged.
pub(crate) fn kl_for_threshold(sliced: &[f64], outliers: f64) -> f64 {
    const EPS: f64 = 1e-4;
    let i = sliced.len();
    let merged = i / ENTROPY_LEVELS;
    let block = |level: usize| {
        let start = level * merged;
        let end = if level == ENTROPY_LEVELS - 1 {
            i
        } else {
            start + merged
        };
        start..end
    };
    let p_at = |k: usize| {
        if k == i - 1 {
            sliced[k] + outliers
        } else {
            sliced[k]
        }
    };
    // Pass 1: empty bins of P and Q, and the totals.
    let (mut p_zeros, mut q_zeros, mut p_total, mut q_total) = (0usize, 0usize, 0.0, 0.0);
    for level in 0..ENTROPY_LEVELS {
        let range = block(level);
        let total: f64 = sliced[range.clone()].iter().sum();
        let nonzero = range.clone().filter(|&k| p_at(k) != 0.0).count();
        p_zeros += range.len() - nonzero;
        q_zeros += if total == 0.0 {
            range.len()
        } else {
            range.len() - nonzero
        };
        p_total += range.clone().map(p_at).sum::<f64>();
        q_total += if nonzero > 0 { total } else { 0.0 };
    }
    if p_zeros == i || q_zeros == i {
        return f64::INFINITY;
    }
    let p_eps = EPS * p_zeros as f64 / (i - p_zeros) as f64;
    let q_eps = EPS * q_zeros as f64 / (i - q_zeros) as f64;
    // Pass 2: sum p ln(p / q) over the smoothed, normalized bins.
    let mut kl = 0.0;
    for level in 0..ENTROPY_LEVELS {
        let range = block(level);
        let total: f64 = sliced[range.clone()].iter().sum();
        let nonzero = range.clone().filter(|&k| p_at(k) != 0.0).count();
        let share = if nonzero > 0 {
            total / nonzero as f64
        } else {
            0.0
        };
        for k in range {
            let p = p_at(k);
            let q = if p != 0.0 { share } else { 0.0 };
            let p = if p == 0.0 { EPS } else { p - p_eps };
            let q = if q == 0.0 { EPS } else { q - q_eps };
            if p <= 0.0 || q <= 0.0 {
                return f64::INFINITY;
            }
            let (p, q) = (p / p_total, q / q_total);
            kl += p * (p / q).ln();
        }
    }
    kl
}

/// `x.round()` (half away from zero) for |x| < 2^63 without a libm call.
#[inline]
fn round(x: f64) -> f64 {
    ((x.abs() + 0.5) as i64 as f64).copysign(x)
}

/// The range whose int8 quantization of the histogram's values (each bin
/// taken at its centre) has the least squared error.
///
/// Symmetric: every `±t` with `t` a bin edge of the `|x|` histogram (at
/// most 2048 bins), 255 levels of step `t / 127`. Asymmetric: 256 levels
/// over `[low, high]` widened to hold 0 with the zero point rounded, as an
/// affine uint8/int8 quantizer does; starting from `[min, max]` in at most
/// 1024 bins, the end whose move inwards by one bin costs less moves, down
/// to a single bin, and the best range seen wins (PyTorch's
/// HistogramObserver walks the same way).
pub fn mse(h: &Histogram, symmetric: bool) -> (f64, f64) {
    if h.min() == h.max() {
        return (h.min(), h.max());
    }
    if symmetric {
        let abs = h.abs_view().coarsen(MSE_SYMMETRIC_BINS);
        let mut best = (f64::INFINITY, abs.counts.len());
        for i in 1..=abs.counts.len() {
            let err = symmetric_error(&abs, abs.edge(i));
            if err < best.0 {
                best = (err, i);
            }
        }
        let t = abs.edge(best.1);
        clip(h, -t, t)
    } else {
        let bins = h.view().coarsen(MSE_ASYMMETRIC_BINS);
        let (mut low, mut high) = (0, bins.counts.len());
        let error = |low: usize, high: usize| affine_error(&bins, bins.edge(low), bins.edge(high));
        let mut best = (error(low, high), low, high);
        while high - low > 1 {
            let (up, down) = (error(low + 1, high), error(low, high - 1));
            if up <= down {
                low += 1;
            } else {
                high -= 1;
            }
            let err = up.min(down);
            if err < best.0 {
                best = (err, low, high);
            }
        }
        clip(h, bins.edge(best.1), bins.edge(best.2))
    }
}

/// Squared error of symmetric int8 at threshold `t` over `|x|` bins.
pub(crate) fn symmetric_error(abs: &Bins, t: f64) -> f64 {
    let step = t / 127.0;
    abs.counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 0)
        .map(|(i, &c)| {
            let x = abs.center(i);
            let q = round(x / step).min(127.0) * step;
            c as f64 * (x - q) * (x - q)
        })
        .sum()
}

/// Squared error of 8-bit affine quantization of `[low, high]` over `bins`.
pub(crate) fn affine_error(bins: &Bins, low: f64, high: f64) -> f64 {
    let (low, high) = (low.min(0.0), high.max(0.0));
    let step = (high - low) / 255.0;
    if step <= 0.0 {
        return f64::INFINITY;
    }
    let zero = round(-low / step);
    bins.counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 0)
        .map(|(i, &c)| {
            let x = bins.center(i);
            let q = (round(x / step) + zero).clamp(0.0, 255.0);
            let y = (q - zero) * step;
            c as f64 * (x - y) * (x - y)
        })
        .sum()
}
