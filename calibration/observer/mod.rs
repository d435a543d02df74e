//! Per-tensor observers with bounded memory: what calibration learns about
//! one tensor's values over many samples, without keeping the values.
//!
//! Every method keeps [`Stats`] (count, non-finite count, min, max). The
//! moving average keeps two more floats; histogram methods (percentile,
//! MSE, entropy) keep one [`Histogram`] of a fixed number of bins. One
//! sample's contribution is a [`Partial`], made independently (on any
//! thread) and merged in sample order, so results do not depend on how
//! samples were spread over threads.

mod histogram;
mod search;

use std::fmt;
use std::str::FromStr;

use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;

pub use histogram::{Bins, Histogram};

/// Default histogram size: the data always spans more than half of it, so
/// searches see at least 2048 bins of signed values.
pub const DEFAULT_BINS: usize = 4096;

/// A calibrated range of real values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// How a tensor's range is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The smallest and largest value seen.
    MinMax,
    /// Per sample min and max, averaged as `r += momentum * (sample - r)`
    /// in sample order (PyTorch's MovingAverageMinMaxObserver; 0.01 there).
    MovingAverage { momentum: f32 },
    /// Clips the tails holding `100 - percentile` % of the values.
    Percentile { percentile: f64, symmetric: bool },
    /// Least squared int8 quantization error.
    Mse { symmetric: bool },
    /// Least KL divergence (TensorRT's entropy calibration).
    Entropy,
}

impl Method {
    fn needs_histogram(self) -> bool {
        matches!(
            self,
            Method::Percentile { .. } | Method::Mse { .. } | Method::Entropy
        )
    }
}

impl FromStr for Method {
    type Err = Error;

    /// `minmax`, `moving-average[:MOMENTUM]`, `percentile[:P]` (99.99),
    /// `percentile-symmetric[:P]`, `mse`, `mse-symmetric`, `entropy`.
    fn from_str(s: &str) -> Result<Method> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let number = |default: f64, ok: fn(f64) -> bool| -> Result<f64> {
            match arg {
                None => Ok(default),
                Some(a) => a.parse::<f64>().ok().filter(|&v| ok(v)).ok_or_else(|| {
                    Error::Input(format!("calibration method '{s}': bad value '{a}'"))
                }),
            }
        };
        let no_arg = || match arg {
            None => Ok(()),
            Some(_) => Err(Error::Input(format!(
                "calibration method '{name}' takes no value"
            ))),
        };
        Ok(match name {
            "minmax" => no_arg().map(|_| Method::MinMax)?,
            "moving-average" => Method::MovingAverage {
                momentum: number(0.01, |v| v > 0.0 && v <= 1.0)? as f32,
            },
            "percentile" | "percentile-symmetric" => Method::Percentile {
                percentile: number(99.99, |v| v > 0.0 && v <= 100.0)?,
                symmetric: name == "percentile-symmetric",
            },
            "mse" => no_arg().map(|_| Method::Mse { symmetric: false })?,
            "mse-symmetric" => no_arg().map(|_| Method::Mse { symmetric: true })?,
            "entropy" => no_arg().map(|_| Method::Entropy)?,
            _ => {
                return Err(Error::Input(format!(
                    "unknown calibration method '{s}' (minmax, moving-average[:M], percentile[:P], percentile-symmetric[:P], mse, mse-symmetric, entropy)"
                )));
            }
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Method::MinMax => write!(f, "minmax"),
            Method::MovingAverage { momentum } => write!(f, "moving-average:{momentum}"),
            Method::Percentile {
                percentile,
                symmetric,
            } => {
                let sym = if *symmetric { "-symmetric" } else { "" };
                write!(f, "percentile{sym}:{percentile}")
            }
            Method::Mse { symmetric: false } => write!(f, "mse"),
            Method::Mse { symmetric: true } => write!(f, "mse-symmetric"),
            Method::Entropy => write!(f, "entropy"),
        }
    }
}

/// What was seen of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Finite values seen.
    pub count: u64,
    /// NaN and infinite values seen (left out of every range).
    pub non_finite: u64,
    /// Of the finite values; `+inf`/`-inf` while `count` is 0.
    pub min: f32,
    pub max: f32,
    /// Samples that produced the tensor.
    pub samples: u64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            count: 0,
            non_finite: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            samples: 0,
        }
    }
}

impl Stats {
    fn of(values: impl Iterator<Item = f32>) -> Stats {
        let mut s = Stats {
            samples: 1,
            ..Stats::default()
        };
        for v in values {
            if v.is_finite() {
                s.count += 1;
                s.min = s.min.min(v);
                s.max = s.max.max(v);
            } else {
                s.non_finite += 1;
            }
        }
        s
    }

    /// [`Stats::of`] for a slice, in lanes the compiler vectorizes; the
    /// rare slice holding a NaN or an infinity takes the exact path.
    fn of_slice(values: &[f32]) -> Stats {
        const LANES: usize = 16;
        let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
        let mut non_finite = 0u64;
        let chunks = values.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for j in 0..LANES {
                let v = chunk[j];
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
                non_finite += u64::from(!v.is_finite());
            }
        }
        for &v in rest {
            lo[0] = lo[0].min(v);
            hi[0] = hi[0].max(v);
            non_finite += u64::from(!v.is_finite());
        }
        if non_finite > 0 {
            return Stats::of(values.iter().copied());
        }
        Stats {
            count: values.len() as u64,
            non_finite: 0,
            min: lo.iter().copied().fold(f32::INFINITY, f32::min),
            max: hi.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            samples: 1,
        }
    }

    fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.non_finite += o.non_finite;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.samples += o.samples;
    }
}

/// One sample's contribution to an observer.
#[derive(Clone, Debug)]
pub struct Partial {
    stats: Stats,
    hist: Option<Histogram>,
    /// Sums along axis 1 (channels) of a tensor of rank 2 or more.
    channel_sums: Vec<f64>,
}

impl Partial {
    /// Observes one sample's values of a tensor.
    pub fn of_values(method: Method, bins: usize, values: &[f32]) -> Partial {
        let stats = Stats::of_slice(values);
        let hist = (method.needs_histogram() && stats.count > 0)
            .then(|| Histogram::of(values.iter().copied(), stats.min, stats.max, bins.max(2)));
        Partial {
            stats,
            hist,
            channel_sums: Vec::new(),
        }
    }

    /// Observes one sample's tensor; `None` for tensors that are not floats.
    pub fn of_tensor(method: Method, bins: usize, t: &Tensor) -> Option<Partial> {
        let mut partial = match t {
            Tensor::F32(a) => match a.as_slice_memory_order() {
                Some(s) => Partial::of_values(method, bins, s),
                None => Partial::of_iter(method, bins, || a.iter().copied()),
            },
            Tensor::F64(a) => Partial::of_iter(method, bins, || a.iter().map(|&v| v as f32)),
            Tensor::F16(a) => Partial::of_iter(method, bins, || a.iter().map(|v| v.to_f32())),
            Tensor::BF16(a) => Partial::of_iter(method, bins, || a.iter().map(|v| v.to_f32())),
            _ => return None,
        };
        partial.channel_sums = channel_sums(t);
        Some(partial)
    }

    fn of_iter<I: Iterator<Item = f32>>(
        method: Method,
        bins: usize,
        values: impl Fn() -> I,
    ) -> Partial {
        let stats = Stats::of(values());
        let hist = (method.needs_histogram() && stats.count > 0)
            .then(|| Histogram::of(values(), stats.min, stats.max, bins.max(2)));
        Partial {
            stats,
            hist,
            channel_sums: Vec::new(),
        }
    }
}

/// Sums of a float tensor along axis 1 (empty below rank 2).
fn channel_sums(t: &Tensor) -> Vec<f64> {
    let shape = t.shape();
    if shape.len() < 2 || shape[1] == 0 {
        return Vec::new();
    }
    let (channels, inner) = (shape[1], shape[2..].iter().product::<usize>().max(1));
    let mut sums = vec![0f64; channels];
    let add = |sums: &mut [f64], values: &[f32]| {
        for (k, run) in values.chunks(inner).enumerate() {
            // f32 partial sums per run, f64 across runs: exact enough for a mean.
            let s: f32 = run.iter().filter(|v| v.is_finite()).sum();
            sums[k % channels] += f64::from(s);
        }
    };
    match t {
        Tensor::F32(a) if a.is_standard_layout() => {
            add(&mut sums, a.as_slice().expect("standard layout"))
        }
        _ => {
            let values = t.to_f32();
            let values = values.as_standard_layout();
            add(&mut sums, values.as_slice().expect("standard layout"));
        }
    }
    sums
}

/// Everything calibration keeps about one tensor.
#[derive(Clone, Debug)]
pub struct Observer {
    method: Method,
    bins: usize,
    stats: Stats,
    /// The moving average's current (min, max).
    average: Option<(f32, f32)>,
    hist: Option<Histogram>,
    channel_sums: Vec<f64>,
}

impl Observer {
    /// `bins` is the histogram size for the histogram methods ([`DEFAULT_BINS`]).
    pub fn new(method: Method, bins: usize) -> Observer {
        Observer {
            method,
            bins: bins.max(2),
            stats: Stats::default(),
            average: None,
            hist: None,
            channel_sums: Vec::new(),
        }
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn bins(&self) -> usize {
        self.bins
    }

    /// Observes one sample's values (one batch, for the moving average).
    pub fn observe(&mut self, values: &[f32]) {
        self.merge(Partial::of_values(self.method, self.bins, values));
    }

    /// Adds one sample's partial; call in sample order.
    pub fn merge(&mut self, p: Partial) {
        if let Method::MovingAverage { momentum } = self.method {
            if p.stats.count > 0 {
                let (min, max) = (p.stats.min, p.stats.max);
                self.average = Some(match self.average {
                    None => (min, max),
                    Some((a, b)) => (a + momentum * (min - a), b + momentum * (max - b)),
                });
            }
        }
        self.stats.merge(&p.stats);
        if self.channel_sums.is_empty() {
            self.channel_sums = p.channel_sums;
        } else if self.channel_sums.len() == p.channel_sums.len() {
            for (a, b) in self.channel_sums.iter_mut().zip(&p.channel_sums) {
                *a += b;
            }
        }
        if let Some(h) = p.hist {
            match &mut self.hist {
                None => self.hist = Some(h),
                Some(mine) => mine.merge(&h),
            }
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The mean of each index of axis 1 over every sample (empty below
    /// rank 2), for bias correction.
    pub fn channel_means(&self) -> Vec<f64> {
        let channels = self.channel_sums.len();
        if channels == 0 || self.stats.count == 0 {
            return Vec::new();
        }
        let per_channel = (self.stats.count + self.stats.non_finite) as f64 / channels as f64;
        self.channel_sums.iter().map(|s| s / per_channel).collect()
    }

    pub fn histogram(&self) -> Option<&Histogram> {
        self.hist.as_ref()
    }

    /// The calibrated range; `None` when no finite value was seen.
    pub fn range(&self) -> Option<Range> {
        if self.stats.count == 0 {
            return None;
        }
        let (lo, hi) = match (self.method, &self.hist) {
            (Method::MinMax, _) => return Some(minmax(&self.stats)),
            (Method::MovingAverage { .. }, _) => {
                let (a, b) = self.average?;
                return Some(Range { min: a, max: b });
            }
            (_, None) => return Some(minmax(&self.stats)),
            (
                Method::Percentile {
                    percentile,
                    symmetric,
                },
                Some(h),
            ) => search::percentile(h, percentile, symmetric),
            (Method::Mse { symmetric }, Some(h)) => search::mse(h, symmetric),
            (Method::Entropy, Some(h)) => search::entropy(h),
        };
        Some(Range {
            min: lo as f32,
            max: hi as f32,
        })
    }
}

fn minmax(s: &Stats) -> Range {
    Range {
        min: s.min,
        max: s.max,
    }
}

/// Min and max of each slice of `t` along `axis`, for per-channel weight
/// ranges. Non-finite values are left out; a slice with none finite is `0..0`.
pub fn per_channel_min_max(t: &Tensor, axis: usize) -> Result<Vec<Range>> {
    if axis >= t.shape().len() {
        return Err(Error::Input(format!(
            "axis {axis} of a tensor of shape {:?}",
            t.shape()
        )));
    }
    let a = match t {
        Tensor::F32(a) => a.clone(),
        other => other.to_f32(),
    };
    Ok(a.axis_iter(ndarray::Axis(axis))
        .map(|slice| {
            let s = Stats::of(slice.iter().copied());
            if s.count == 0 {
                Range { min: 0.0, max: 0.0 }
            } else {
                minmax(&s)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
