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

/// KL(P‖Q) for the first `sliced.len()` bins, `outliers` being the count beyond them.
pub(crate) fn kl_for_threshold(sliced: &[f64], outliers: f64) -> f64 {
    let i = sliced.len();
    let mut p = sliced.to_vec();
    p[i - 1] += outliers;
    let merged = i / ENTROPY_LEVELS;
    let mut q = vec![0.0; i];
    for level in 0..ENTROPY_LEVELS {
        let start = level * merged;
        let end = if level == ENTROPY_LEVELS - 1 {
            i
        } else {
            start + merged
        };
        let total: f64 = sliced[start..end].iter().sum();
        let nonzero = p[start..end].iter().filter(|&&v| v != 0.0).count();
        if nonzero > 0 {
            let share = total / nonzero as f64;
            for k in start..end {
                if p[k] != 0.0 {
                    q[k] = share;
                }
            }
        }
    }
    match (smooth(&p), smooth(&q)) {
        (Some(p), Some(q)) => kl_divergence(&p, &q),
        _ => f64::INFINITY,
    }
}

/// Moves a little mass onto empty bins so KL is finite (MXNet's
/// `_smooth_distribution`, eps 1e-4 of a count); `None` if nothing is
/// non-zero or a bin would turn non-positive.
fn smooth(p: &[f64]) -> Option<Vec<f64>> {
    const EPS: f64 = 1e-4;
    let zeros = p.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return None;
    }
    let eps1 = EPS * zeros as f64 / nonzeros as f64;
    let out: Vec<f64> = p
        .iter()
        .map(|&v| if v == 0.0 { EPS } else { v - eps1 })
        .collect();
    out.iter().all(|&v| v > 0.0).then_some(out)
}

/// KL divergence of the normalized distributions, as `scipy.stats.entropy(p, q)`.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            if a > 0.0 { a * (a / b).ln() } else { 0.0 }
        })
        .sum()
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
            let q = (x / step).round().min(127.0) * step;
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
    let zero = (-low / step).round();
    bins.counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 0)
        .map(|(i, &c)| {
            let x = bins.center(i);
            let q = ((x / step).round() + zero).clamp(0.0, 255.0);
            let y = (q - zero) * step;
            c as f64 * (x - y) * (x - y)
        })
        .sum()
}
