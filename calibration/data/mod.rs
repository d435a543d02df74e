//! Calibration and evaluation data: samples read lazily, one at a time, from
//! `.npy`/`.npz` arrays, image folders, token-id files or (only on request)
//! random numbers, each checked against the graph's inputs.
//!
//! A [`Dataset`] never holds its samples: [`Dataset::sample`] reads sample
//! `i` when asked, so calibration over thousands of images keeps one sample
//! per worker in memory. Samples are numbered in a deterministic order (file
//! names sorted bytewise), which [`Split`] uses to set aside evaluation data.

mod arrays;
pub mod image;
mod random;
pub mod resample;
mod tokens;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result};
use crate::ir::graph::Graph;
use crate::ir::shape::{Dim, Shape};
use crate::ir::tensor::Tensor;

pub use image::{Channels, Filter, Layout, Preprocess, Resize};
pub use random::RandomOptions;
pub use tokens::TokenOptions;

/// Where samples come from.
#[derive(Clone, Debug)]
pub enum DataSpec {
    /// A directory of arrays, in one of three layouts:
    /// - one sub-directory per sample, holding `NAME.npy` for each input;
    /// - one `.npz` per sample, with a member `NAME` for each input;
    /// - one `NAME.npy` per input whose first axis counts the samples (an
    ///   array of the input's rank is cut into batches of one, one of rank
    ///   + 1 into its rows).
    ///
    /// Hidden entries and files of other extensions are ignored.
    Arrays(PathBuf),
    /// PNG and JPEG files in a directory (not its sub-directories), sorted by
    /// name, preprocessed into the one float input (or `input`).
    Images {
        dir: PathBuf,
        preprocess: Preprocess,
        input: Option<String>,
    },
    /// Token ids: a text file with one sequence of space-separated ids per
    /// line, or an integer `.npy` of shape `[sequences, length]`.
    Tokens {
        path: PathBuf,
        options: TokenOptions,
    },
    /// Random values; [`Dataset::warning`] says why this is a poor choice.
    Random(RandomOptions),
}

/// One graph input as the data must match it.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSig {
    pub name: String,
    /// `None` when the model does not say.
    pub dtype: Option<DType>,
    /// `None` for an unranked input.
    pub dims: Option<Vec<SigDim>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SigDim {
    Fixed(usize),
    /// A named symbol: every input of one sample must give it the same size.
    Symbol(String),
    /// An expression of symbols; any size is accepted.
    Any,
}

/// The graph inputs in order, detached from the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    pub inputs: Vec<InputSig>,
}

impl Signature {
    pub fn of(g: &Graph) -> Signature {
        let inputs = g
            .inputs
            .iter()
            .map(|&v| {
                let value = g.value(v);
                let dims = match &value.fact.shape {
                    Shape::Unranked => None,
                    Shape::Ranked(dims) => Some(
                        dims.iter()
                            .map(|d| match (d, d.as_symbol()) {
                                (Dim::Fixed(n), _) => usize::try_from(*n)
                                    .map(SigDim::Fixed)
                                    .unwrap_or(SigDim::Any),
                                (_, Some(s)) => SigDim::Symbol(g.symbols.name(s).to_string()),
                                _ => SigDim::Any,
                            })
                            .collect(),
                    ),
                };
                InputSig {
                    name: value.name.clone(),
                    dtype: value.fact.dtype,
                    dims,
                }
            })
            .collect();
        Signature { inputs }
    }

    pub fn get(&self, name: &str) -> Option<&InputSig> {
        self.inputs.iter().find(|i| i.name == name)
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

impl fmt::Display for InputSig {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let dtype = self.dtype.map_or("?".to_string(), |d| d.name());
        match &self.dims {
            None => write!(f, "{dtype}[unranked]"),
            Some(dims) => {
                let dims: Vec<String> = dims
                    .iter()
                    .map(|d| match d {
                        SigDim::Fixed(n) => n.to_string(),
                        SigDim::Symbol(s) => s.clone(),
                        SigDim::Any => "?".into(),
                    })
                    .collect();
                write!(f, "{dtype}[{}]", dims.join(","))
            }
        }
    }
}

/// One array a source read: which input it is for and the file it came from.
pub(crate) struct Entry {
    pub input: String,
    pub tensor: Tensor,
    pub file: PathBuf,
}

/// A sequence of samples readable in any order from any thread.
pub(crate) trait Source: Send + Sync {
    fn len(&self) -> usize;
    /// The arrays of sample `index` (< `len()`), in any order.
    fn load(&self, index: usize) -> Result<Vec<Entry>>;
    fn describe(&self) -> String;
    /// Where sample `index` is, for messages (a folder, a file, a line).
    fn locate(&self, index: usize) -> String;
}

/// One sample, checked against the graph's inputs.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The sample's position in the dataset it was read from.
    pub index: usize,
    /// One tensor per graph input, in graph input order.
    pub inputs: Vec<Tensor>,
    /// The file each input came from (for random data, a description).
    pub files: Vec<PathBuf>,
}

/// A lazily read, validated sequence of samples (calibration or evaluation data).
#[derive(Clone)]
pub struct Dataset {
    source: Arc<dyn Source>,
    signature: Arc<Signature>,
    /// The part of the source this set covers.
    range: Range<usize>,
    warning: Option<String>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("source", &self.source.describe())
            .field("range", &self.range)
            .finish()
    }
}

impl Dataset {
    /// Opens `spec` for the inputs of `g`. Files are listed and headers
    /// checked now; sample data is read by [`Dataset::sample`].
    pub fn open(spec: &DataSpec, g: &Graph) -> Result<Dataset> {
        Dataset::open_for(spec, Signature::of(g))
    }

    /// Like [`Dataset::open`] for a signature instead of a graph.
    pub fn open_for(spec: &DataSpec, signature: Signature) -> Result<Dataset> {
        let mut warning = None;
        let source: Arc<dyn Source> = match spec {
            DataSpec::Arrays(dir) => Arc::new(arrays::Arrays::open(dir, &signature)?),
            DataSpec::Images {
                dir,
                preprocess,
                input,
            } => Arc::new(image::Images::open(
                dir,
                preprocess,
                input.as_deref(),
                &signature,
            )?),
            DataSpec::Tokens { path, options } => {
                Arc::new(tokens::Tokens::open(path, options, &signature)?)
            }
            DataSpec::Random(options) => {
                let random = random::Random::new(options, &signature)?;
                warning = Some(random.warning());
                Arc::new(random)
            }
        };
        let len = source.len();
        if len == 0 {
            return Err(Error::Input(format!("{}: no samples", source.describe())));
        }
        Ok(Dataset {
            source,
            signature: Arc::new(signature),
            range: 0..len,
            warning,
        })
    }

    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// What the data is, for messages: `images in DIR, samples 0..80`.
    pub fn describe(&self) -> String {
        let all = self.range.start == 0 && self.range.end == self.source.len();
        if all {
            format!("{} ({} samples)", self.source.describe(), self.len())
        } else {
            format!(
                "{}, samples {}..{} ({} samples)",
                self.source.describe(),
                self.range.start,
                self.range.end,
                self.len()
            )
        }
    }

    /// A warning the caller must show the user (random data).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Reads sample `i` (0-based within this set) and checks it: every graph
    /// input present once, no other array, dtype and shape as the graph says
    /// (a symbol the same size in every input of the sample), floats finite.
    /// Errors name the input and the file.
    pub fn sample(&self, i: usize) -> Result<Sample> {
        if i >= self.len() {
            return Err(Error::Input(format!(
                "sample {i} of {} that has {}",
                self.describe(),
                self.len()
            )));
        }
        let index = self.range.start + i;
        let entries = self.source.load(index)?;
        bind(&self.signature, entries, index, &|| {
            self.source.locate(index)
        })
    }

    /// Every sample in order, each read when the iterator reaches it.
    pub fn iter(&self) -> impl Iterator<Item = Result<Sample>> + '_ {
        (0..self.len()).map(|i| self.sample(i))
    }

    /// Cuts this set in two, `(calibration, evaluation)`, as `split` says.
    /// Both parts must be non-empty.
    pub fn split(&self, split: Split) -> Result<(Dataset, Dataset)> {
        let n = self.len();
        let take = split.amount.count_of(n);
        if take == 0 || take >= n {
            return Err(Error::Input(format!(
                "--calib-split {split} of {n} samples leaves {} for calibration and {} for evaluation; both need at least one",
                take.min(n),
                n - take.min(n)
            )));
        }
        let (start, end) = (self.range.start, self.range.end);
        let (calib, eval) = match split.from {
            End::First => (start..start + take, start + take..end),
            End::Last => (end - take..end, start..end - take),
        };
        let part = |range| Dataset {
            range,
            ..self.clone()
        };
        Ok((part(calib), part(eval)))
    }
}

/// Which samples calibrate; the rest evaluate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Split {
    pub from: End,
    pub amount: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    First,
    Last,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// In (0, 1): the count is `floor(fraction * len)`.
    Fraction(f64),
    Count(usize),
}

impl Amount {
    fn count_of(self, n: usize) -> usize {
        match self {
            Amount::Count(c) => c,
            Amount::Fraction(f) => (f * n as f64).floor() as usize,
        }
    }
}

impl FromStr for Split {
    type Err = Error;

    /// `[first:|last:]AMOUNT`, the amount a count (`100`), a fraction
    /// (`0.8`) or a percentage (`80%`); `first` when no end is named.
    fn from_str(s: &str) -> Result<Split> {
        let bad = |why: &str| {
            Error::Input(format!(
                "split '{s}': {why} (expected [first:|last:]COUNT, FRACTION or PERCENT%, e.g. 0.8, 80%, last:100)"
            ))
        };
        let (from, amount) = match s.split_once(':') {
            Some(("first", rest)) => (End::First, rest),
            Some(("last", rest)) => (End::Last, rest),
            Some(_) => return Err(bad("the end must be 'first' or 'last'")),
            None => (End::First, s),
        };
        let fraction = |f: f64| {
            if f > 0.0 && f < 1.0 {
                Ok(Amount::Fraction(f))
            } else {
                Err(bad("a fraction must be between 0 and 1"))
            }
        };
        let amount = if let Some(percent) = amount.strip_suffix('%') {
            fraction(percent.parse::<f64>().map_err(|_| bad("not a number"))? / 100.0)?
        } else if amount.contains('.') {
            fraction(amount.parse::<f64>().map_err(|_| bad("not a number"))?)?
        } else {
            Amount::Count(amount.parse::<usize>().map_err(|_| bad("not a number"))?)
        };
        Ok(Split { from, amount })
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let end = match self.from {
            End::First => "first",
            End::Last => "last",
        };
        match self.amount {
            Amount::Count(c) => write!(f, "{end}:{c}"),
            Amount::Fraction(x) => write!(f, "{end}:{x}"),
        }
    }
}

/// Orders `entries` as the signature's inputs and checks them.
fn bind(
    signature: &Signature,
    entries: Vec<Entry>,
    index: usize,
    locate: &dyn Fn() -> String,
) -> Result<Sample> {
    let mut slots: Vec<Option<Entry>> = signature.inputs.iter().map(|_| None).collect();
    for entry in entries {
        let Some(at) = signature.inputs.iter().position(|i| i.name == entry.input) else {
            return Err(Error::Input(format!(
                "{}: the model has no input '{}'; its inputs are: {}",
                entry.file.display(),
                entry.input,
                signature.names()
            )));
        };
        if let Some(first) = &slots[at] {
            return Err(Error::Input(format!(
                "input '{}' is given twice in sample {index}: {} and {}",
                entry.input,
                first.file.display(),
                entry.file.display()
            )));
        }
        slots[at] = Some(entry);
    }
    let mut symbols: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut inputs = Vec::with_capacity(slots.len());
    let mut files = Vec::with_capacity(slots.len());
    for (sig, slot) in signature.inputs.iter().zip(slots) {
        let Some(entry) = slot else {
            return Err(Error::Input(format!(
                "input '{}' ({sig}) is missing from sample {index} ({})",
                sig.name,
                locate()
            )));
        };
        check(sig, &entry.tensor, &mut symbols).map_err(|msg| {
            Error::Input(format!(
                "input '{}' from {}: {msg}",
                sig.name,
                entry.file.display()
            ))
        })?;
        inputs.push(entry.tensor);
        files.push(entry.file);
    }
    Ok(Sample {
        index,
        inputs,
        files,
    })
}

fn check<'a>(
    sig: &'a InputSig,
    tensor: &Tensor,
    symbols: &mut BTreeMap<&'a str, (usize, &'a str)>,
) -> Result<(), String> {
    if sig.dtype.is_some_and(|d| d != tensor.dtype()) {
        return Err(format!(
            "dtype {} does not match the model's {sig}",
            tensor.dtype()
        ));
    }
    if let Some(dims) = &sig.dims {
        let shape = tensor.shape();
        if dims.len() != shape.len() {
            return Err(format!(
                "shape {shape:?} does not match the model's {sig} (rank {} instead of {})",
                shape.len(),
                dims.len()
            ));
        }
        for (i, (dim, &actual)) in dims.iter().zip(shape).enumerate() {
            match dim {
                SigDim::Fixed(n) if *n != actual => {
                    return Err(format!(
                        "shape {shape:?} does not match the model's {sig} (dim {i} is {actual}, not {n})"
                    ));
                }
                SigDim::Symbol(s) => {
                    let (bound, by) = *symbols.entry(s).or_insert((actual, &sig.name));
                    if bound != actual {
                        return Err(format!(
                            "shape {shape:?}: {s} is {actual} here but {bound} in input '{by}' (model: {sig})"
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(at) = first_non_finite(tensor) {
        return Err(format!("element {at} is {}", at_value(tensor, at)));
    }
    Ok(())
}

/// Index of the first NaN or infinity of a float tensor.
fn first_non_finite(t: &Tensor) -> Option<usize> {
    match t {
        Tensor::F32(a) => a.iter().position(|v| !v.is_finite()),
        Tensor::F64(a) => a.iter().position(|v| !v.is_finite()),
        Tensor::F16(a) => a.iter().position(|v| !v.is_finite()),
        Tensor::BF16(a) => a.iter().position(|v| !v.is_finite()),
        _ => None,
    }
}

fn at_value(t: &Tensor, at: usize) -> String {
    let v = t.to_f64_vec()[at];
    let index = unravel(at, t.shape());
    format!("{v} (at {index:?}); calibration data must be finite")
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &d) in index.iter_mut().zip(shape).rev() {
        if d > 0 {
            *slot = flat % d;
            flat /= d;
        }
    }
    index
}

/// Entries of `dir` that are not hidden, sorted by file name.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(paths)
}

/// The lower-cased extension of `path`, if it has one.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// The shape a per-sample tensor gets for `sig`: `[1, ...]` (a batch of one)
/// when the input has one more dim than the produced data.
fn batch_of_one(sig: &InputSig, shape: &[usize]) -> Vec<usize> {
    match &sig.dims {
        Some(dims) if dims.len() == shape.len() + 1 => {
            let mut with_batch = vec![1];
            with_batch.extend_from_slice(shape);
            with_batch
        }
        _ => shape.to_vec(),
    }
}

#[cfg(test)]
mod tests;
