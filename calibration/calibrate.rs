//! Calibration: runs the reference interpreter over a dataset and observes
//! every float value the graph computes (and its float inputs).
//!
//! Samples run in parallel, a bounded number at a time: each sample's
//! tensors are folded into per-sample [`Partial`]s as the interpreter
//! produces them (the tensors themselves are freed as usual), and the
//! partials are merged into the observers in sample order. So memory is
//! bounded by the observers plus `in_flight` samples, and the result is the
//! same for any number of threads.

use rayon::prelude::*;

use super::data::{Dataset, Signature};
use super::observer::{DEFAULT_BINS, Method, Observer, Partial, Range, Stats};
use crate::ir::error::{Error, Result};
use crate::ir::eval;
use crate::ir::graph::{Graph, ValueId};
use crate::progress::Progress;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub method: Method,
    /// Histogram size for the histogram methods.
    pub bins: usize,
    /// Samples run at once; `None`: the rayon pool's thread count.
    pub in_flight: Option<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            method: Method::MinMax,
            bins: DEFAULT_BINS,
            in_flight: None,
        }
    }
}

/// The calibrated range of one value.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRange {
    pub value: ValueId,
    pub name: String,
    /// `None` when the value never held a finite number.
    pub range: Option<Range>,
    pub stats: Stats,
    /// Mean of each index of axis 1 (channels of NCHW, features of
    /// `[batch, features]`); empty below rank 2.
    pub channel_means: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub method: Method,
    pub samples: usize,
    /// Float graph inputs and node outputs, in value id order.
    pub tensors: Vec<TensorRange>,
}

impl Calibration {
    pub fn get(&self, value: ValueId) -> Option<&TensorRange> {
        self.tensors
            .binary_search_by_key(&value, |t| t.value)
            .ok()
            .map(|i| &self.tensors[i])
    }

    pub fn by_name(&self, name: &str) -> Option<&TensorRange> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Calibrates `g` on every sample of `data` (opened for `g`'s inputs).
pub fn calibrate(
    g: &Graph,
    data: &Dataset,
    options: &Options,
    progress: &dyn Progress,
) -> Result<Calibration> {
    if *data.signature() != Signature::of(g) {
        return Err(Error::Input(format!(
            "{} was opened for other inputs than the graph's",
            data.describe()
        )));
    }
    let (method, bins) = (options.method, options.bins);
    let in_flight = options
        .in_flight
        .unwrap_or_else(rayon::current_num_threads)
        .max(1);
    let mut observers: Vec<Option<Observer>> = vec![None; g.value_count()];
    progress.start("calibrating", data.len() as u64);
    let mut start = 0;
    while start < data.len() {
        let end = (start + in_flight).min(data.len());
        let partials: Vec<Result<Vec<(ValueId, Partial)>>> = (start..end)
            .into_par_iter()
            .map(|i| observe_sample(g, data, i, method, bins))
            .collect();
        for sample in partials {
            for (v, partial) in sample? {
                observers[v.index()]
                    .get_or_insert_with(|| Observer::new(method, bins))
                    .merge(partial);
            }
            progress.advance(1);
        }
        start = end;
    }
    progress.finish();

    let observed: Vec<(usize, Observer)> = observers
        .into_iter()
        .enumerate()
        .filter_map(|(i, o)| o.map(|o| (i, o)))
        .collect();
    let tensors = observed
        .into_par_iter()
        .map(|(i, o)| {
            let value = ValueId(i as u32);
            TensorRange {
                value,
                name: g.value(value).name.clone(),
                range: o.range(),
                stats: *o.stats(),
                channel_means: o.channel_means(),
            }
        })
        .collect();
    Ok(Calibration {
        method,
        samples: data.len(),
        tensors,
    })
}

/// Reads sample `i`, runs it, and returns what each float value contributed.
fn observe_sample(
    g: &Graph,
    data: &Dataset,
    i: usize,
    method: Method,
    bins: usize,
) -> Result<Vec<(ValueId, Partial)>> {
    let sample = data.sample(i)?;
    let mut parts = Vec::new();
    for (&v, t) in g.inputs.iter().zip(&sample.inputs) {
        if let Some(p) = Partial::of_tensor(method, bins, t) {
            parts.push((v, p));
        }
    }
    let file = sample.files.first().cloned().unwrap_or_default();
    eval::run_observed(g, sample.inputs, &mut |v, t| {
        if let Some(p) = Partial::of_tensor(method, bins, t) {
            parts.push((v, p));
        }
    })
    .map_err(|e| e.in_file(file))?;
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::data::{DataSpec, RandomOptions};
    use crate::calibration::npy::encode_npy;
    use crate::ir::tensor::Tensor;
    use crate::progress::Silent;

    fn graph() -> Graph {
        crate::ir::text::parse(
            "graph g {
  input x: f32[N,3]
  weight w: f32[3,2] = [1,-2,3,0.5,-1,2]
  node mm: y: f32[N,2] = MatMul (x, w)
  node r: z: f32[N,2] = Relu (y)
  node s: s: i64[2] = Shape {\"start\":0,\"end\":null} (z)
  output z, s
}
",
        )
        .unwrap()
    }

    fn random(g: &Graph, samples: usize) -> Dataset {
        let options = RandomOptions {
            samples,
            seed: 3,
            symbols: [("N".to_string(), 5)].into(),
            ..RandomOptions::default()
        };
        Dataset::open(&DataSpec::Random(options), g).unwrap()
    }

    fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn min_max_covers_every_float_value_the_graph_computes() {
        let g = graph();
        let data = random(&g, 7);
        let options = Options::default();
        let cal = calibrate(&g, &data, &options, &Silent).unwrap();
        assert_eq!(cal.samples, 7);
        let names: Vec<&str> = cal.tensors.iter().map(|t| t.name.as_str()).collect();
        // Float values only: the i64 shape is not calibrated.
        assert_eq!(names, vec!["x", "y", "z"]);
        // The same ranges by running every sample by hand.
        let (mut lo, mut hi) = (vec![f32::INFINITY; 2], vec![f32::NEG_INFINITY; 2]);
        for s in data.iter() {
            let s = s.unwrap();
            let x = s.inputs[0].clone();
            let outputs = eval::run(&g, s.inputs).unwrap();
            for (k, t) in [x, outputs[0].clone()].iter().enumerate() {
                for v in t.to_f64_vec() {
                    lo[k] = lo[k].min(v as f32);
                    hi[k] = hi[k].max(v as f32);
                }
            }
        }
        let x = cal.by_name("x").unwrap();
        assert_eq!(
            x.range,
            Some(Range {
                min: lo[0],
                max: hi[0]
            })
        );
        assert_eq!(x.stats.count, 7 * 5 * 3);
        assert_eq!(x.stats.samples, 7);
        let z = cal.by_name("z").unwrap();
        assert_eq!(
            z.range,
            Some(Range {
                min: lo[1],
                max: hi[1]
            })
        );
        assert_eq!(cal.get(z.value), Some(z));
    }

    #[test]
    fn results_do_not_depend_on_threads_or_samples_in_flight() {
        let g = graph();
        let data = random(&g, 9);
        for method in [
            Method::MovingAverage { momentum: 0.1 },
            Method::Entropy,
            Method::Mse { symmetric: false },
            Method::Percentile {
                percentile: 99.0,
                symmetric: true,
            },
        ] {
            let options = |in_flight| Options {
                method,
                bins: 512,
                in_flight,
            };
            let one = with_threads(1, || calibrate(&g, &data, &options(None), &Silent).unwrap());
            let two = with_threads(2, || calibrate(&g, &data, &options(None), &Silent).unwrap());
            let four = with_threads(2, || {
                calibrate(&g, &data, &options(Some(4)), &Silent).unwrap()
            });
            assert_eq!(one, two, "{method}");
            assert_eq!(one, four, "{method}");
        }
    }

    #[test]
    fn a_bad_sample_stops_calibration_with_its_file() {
        let g = graph();
        let dir = tempfile::tempdir().unwrap();
        for (k, shape) in [[2, 3], [2, 4]].iter().enumerate() {
            let folder = dir.path().join(format!("s{k}"));
            std::fs::create_dir_all(&folder).unwrap();
            let t = Tensor::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(shape)));
            std::fs::write(folder.join("x.npy"), encode_npy(&t).unwrap()).unwrap();
        }
        let data = Dataset::open(&DataSpec::Arrays(dir.path().to_path_buf()), &g).unwrap();
        let e = calibrate(&g, &data, &Options::default(), &Silent).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.exit_code(), 2, "{text}");
        assert!(
            text.contains("input 'x' from") && text.contains("s1/x.npy"),
            "{text}"
        );

        // Data opened for another graph is refused.
        let other = crate::ir::text::parse(
            "graph h {\n  input q: f32[3]\n  node r: z: f32[3] = Relu (q)\n  output z\n}\n",
        )
        .unwrap();
        let e = calibrate(&other, &data, &Options::default(), &Silent).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
