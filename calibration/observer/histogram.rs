//! A fixed-size histogram on a dyadic grid.
//!
//! Bins have width `2^exp` and sit at multiples of it: bin `i` holds the
//! values in `[(offset + i) * 2^exp, (offset + i + 1) * 2^exp)`. When data
//! outside the bins arrives, the width doubles (pairs of bins merge exactly,
//! no count is ever split) until `[min, max]` fits again. The width is
//! therefore a function of the overall `min` and `max` only, and each bin
//! counts exactly the values inside it, so the final histogram is the same
//! whatever order samples are added or partial histograms merged in. The
//! data always spans more than half of the bins.

/// Smallest bin exponent (below f32's smallest subnormal, 2^-149).
const EXP_FLOOR: i32 = -160;
/// Bin indices stay below 2^62 in magnitude.
const INDEX_BITS: i32 = 61;

#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    exp: i32,
    offset: i64,
    min: f64,
    max: f64,
    total: u64,
}

impl Histogram {
    /// A histogram of `bins` (at least 2) over the finite `values`, whose
    /// smallest and largest are `min` and `max` (values outside them are
    /// counted in the first or last bin).
    pub fn of(values: impl Iterator<Item = f32>, min: f32, max: f32, bins: usize) -> Histogram {
        let (min, max) = (f64::from(min), f64::from(max));
        let exp = fit_exp(min, max, bins);
        let offset = index(min, exp);
        let mut counts = vec![0u64; bins];
        let mut total = 0;
        // Multiplying by a power of two is exact, like dividing, and faster.
        let inverse = pow2(-exp);
        for v in values {
            if v.is_finite() {
                let at = floor_i64(f64::from(v) * inverse);
                let i = (at - offset).clamp(0, bins as i64 - 1);
                counts[i as usize] += 1;
                total += 1;
            }
        }
        Histogram {
            counts,
            exp,
            offset,
            min,
            max,
            total,
        }
    }

    /// Adds `other` (a histogram of the same bin count).
    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        if self.total == 0 {
            *self = other.clone();
            return;
        }
        let (min, max) = (self.min.min(other.min), self.max.max(other.max));
        let bins = self.counts.len();
        let exp = fit_exp(min, max, bins).max(self.exp).max(other.exp);
        let offset = index(min, exp);
        let mut counts = vec![0u64; bins];
        for h in [&*self, other] {
            let shift = exp - h.exp;
            for (i, &c) in h.counts.iter().enumerate() {
                if c != 0 {
                    counts[(coarser(h.offset + i as i64, shift) - offset) as usize] += c;
                }
            }
        }
        *self = Histogram {
            counts,
            exp,
            offset,
            min,
            max,
            total: self.total + other.total,
        };
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn min(&self) -> f64 {
        self.min
    }

    pub fn max(&self) -> f64 {
        self.max
    }

    pub fn bin_width(&self) -> f64 {
        pow2(self.exp)
    }

    /// The bins from the one holding `min` to the one holding `max`.
    pub fn view(&self) -> Bins {
        let used = (index(self.max, self.exp) - self.offset + 1) as usize;
        Bins {
            start: self.offset as f64 * pow2(self.exp),
            width: pow2(self.exp),
            counts: self.counts[..used.min(self.counts.len())].to_vec(),
        }
    }

    /// Counts of `|x|` in bins `[k w, (k + 1) w)` from 0 to the largest `|x|`.
    pub fn abs_view(&self) -> Bins {
        let top = index(self.max.abs().max(self.min.abs()), self.exp);
        let mut counts = vec![0u64; top as usize + 1];
        for (i, &c) in self.counts.iter().enumerate() {
            if c != 0 {
                let at = self.offset + i as i64;
                let k = if at >= 0 { at } else { -at - 1 };
                counts[k as usize] += c;
            }
        }
        Bins {
            start: 0.0,
            width: pow2(self.exp),
            counts,
        }
    }
}

/// Consecutive equal-width bins: bin `i` covers `[start + i w, start + (i + 1) w)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    pub start: f64,
    pub width: f64,
    pub counts: Vec<u64>,
}

impl Bins {
    /// Merges runs of `2^k` bins until at most `max_bins` remain. The runs
    /// are aligned to the dyadic grid, so the edges stay multiples of the width.
    pub fn coarsen(&self, max_bins: usize) -> Bins {
        let mut out = self.clone();
        while out.counts.len() > max_bins.max(1) {
            let first = (out.start / out.width).round() as i64;
            let base = first.div_euclid(2);
            let last = first + out.counts.len() as i64 - 1;
            let mut counts = vec![0u64; (last.div_euclid(2) - base + 1) as usize];
            for (i, &c) in out.counts.iter().enumerate() {
                counts[((first + i as i64).div_euclid(2) - base) as usize] += c;
            }
            out = Bins {
                start: base as f64 * out.width * 2.0,
                width: out.width * 2.0,
                counts,
            };
        }
        out
    }

    pub fn edge(&self, i: usize) -> f64 {
        self.start + i as f64 * self.width
    }

    pub fn center(&self, i: usize) -> f64 {
        self.start + (i as f64 + 0.5) * self.width
    }
}

fn pow2(exp: i32) -> f64 {
    // powi is exact for powers of two in f64's range.
    2f64.powi(exp)
}

/// The dyadic bin of `v` at width `2^exp`: `floor(v / 2^exp)`, exact.
fn index(v: f64, exp: i32) -> i64 {
    floor_i64(v / pow2(exp))
}

/// `x.floor() as i64` for |x| < 2^63 without a libm call (baseline x86-64
/// has no floor instruction): truncate, then step down for negatives.
#[inline]
pub(crate) fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x { t - 1 } else { t }
}

/// The bin holding absolute bin `at` after the width grows by `2^shift`.
fn coarser(at: i64, shift: i32) -> i64 {
    if shift >= 63 {
        if at < 0 { -1 } else { 0 }
    } else {
        at >> shift
    }
}

/// The smallest exponent at which `[min, max]` fits in `bins` bins, but
/// no finer than keeps bin indices small.
fn fit_exp(min: f64, max: f64, bins: usize) -> i32 {
    let magnitude = min.abs().max(max.abs());
    let floor = if magnitude > 0.0 {
        (magnitude.log2().floor() as i32 - INDEX_BITS).max(EXP_FLOOR)
    } else {
        EXP_FLOOR
    };
    let span = max - min;
    let mut exp = if span > 0.0 {
        ((span / bins as f64).log2().floor() as i32 - 1).max(floor)
    } else {
        floor
    };
    while index(max, exp) - index(min, exp) >= bins as i64 {
        exp += 1;
    }
    exp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[f32], bins: usize) -> Histogram {
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Histogram::of(values.iter().copied(), min, max, bins)
    }

    #[test]
    fn bins_are_dyadic_and_hold_exact_counts() {
        // [0, 1) in 4 bins: width 1/4.
        let h = hist(&[0.0, 0.1, 0.3, 0.5, 0.99], 4);
        assert_eq!(h.bin_width(), 0.25);
        let v = h.view();
        assert_eq!(v.start, 0.0);
        assert_eq!(v.counts, vec![2, 1, 1, 1]);
        assert_eq!(h.total(), 5);
    }

    #[test]
    fn growing_the_range_merges_pairs_of_bins() {
        let mut h = hist(&[0.0, 0.1, 0.3, 0.5, 0.99], 4);
        // 1.5 does not fit [0, 1): the width doubles to 1/2, then 1 when -1 arrives.
        h.merge(&hist(&[1.5], 4));
        assert_eq!(h.bin_width(), 0.5);
        assert_eq!(h.view().counts, vec![3, 2, 0, 1]);
        h.merge(&hist(&[-1.0], 4));
        assert_eq!(h.bin_width(), 1.0);
        let v = h.view();
        assert_eq!((v.start, v.counts.clone()), (-1.0, vec![1, 5, 1]));
        assert_eq!(h.total(), 7);
    }

    #[test]
    fn merge_order_does_not_matter() {
        let parts: Vec<Vec<f32>> = (0..6)
            .map(|k| {
                (0..50)
                    .map(|i| ((i * 37 + k * 11) % 97) as f32 * 0.013 * (k as f32 - 2.5))
                    .collect()
            })
            .collect();
        let hists: Vec<Histogram> = parts.iter().map(|p| hist(p, 64)).collect();
        let mut forward = hists[0].clone();
        for h in &hists[1..] {
            forward.merge(h);
        }
        let mut backward = hists[5].clone();
        for h in hists[..5].iter().rev() {
            backward.merge(h);
        }
        let all: Vec<f32> = parts.concat();
        assert_eq!(forward, backward);
        assert_eq!(forward, hist(&all, 64));
    }

    #[test]
    fn constant_and_extreme_values_are_handled() {
        let h = hist(&[3.0; 10], 8);
        assert_eq!(h.view().counts, vec![10]);
        let h = hist(&[0.0; 4], 8);
        assert_eq!(h.view().counts, vec![4]);
        let mut h = hist(&[f32::MIN_POSITIVE], 8);
        h.merge(&hist(&[f32::MAX, -f32::MAX], 8));
        assert_eq!(h.total(), 3);
        assert_eq!(h.view().counts.iter().sum::<u64>(), 3);
    }

    #[test]
    fn abs_view_folds_negative_bins() {
        let h = hist(&[-0.9, -0.1, 0.1, 0.2, 0.8], 8);
        assert_eq!(h.bin_width(), 0.25);
        // |x| bins of 1/4: 0.1, 0.1, 0.2 | - | - | 0.9, 0.8
        assert_eq!(h.abs_view().counts, vec![3, 0, 0, 2]);
    }

    #[test]
    fn floor_matches_f64_floor() {
        for x in [
            -2.5,
            -2.0,
            -1e-300,
            -0.0,
            0.0,
            0.5,
            1.0,
            3.999,
            -3.999,
            1e15 + 0.5,
        ] {
            assert_eq!(floor_i64(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn coarsening_keeps_the_grid() {
        let b = Bins {
            start: -0.75,
            width: 0.25,
            counts: vec![1, 2, 3, 4, 5],
        };
        // Pairs aligned at multiples of 1/2: [-1, -0.5) [-0.5, 0) [0, 0.5).
        let c = b.coarsen(3);
        assert_eq!((c.start, c.width, c.counts), (-1.0, 0.5, vec![1, 5, 9]));
    }
}
